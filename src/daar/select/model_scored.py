"""Baselines that score rows with the full causal LM: Superfiltering's IFD and Alpagasus ratings.

Both are costly next to DaaR's three-layer prober, so rows are scored in length-bucketed batches
under `config.batch_tokens`, logits are computed only at the positions a score needs (the
vocabulary projection dominates memory otherwise), and results are cached in chunks of rows under
`ctx.cache_dir`, keyed by the model's fingerprint, the settings and the chunk's texts: a killed run
resumes at the first unfinished chunk and a rerun costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from daar.embed import Features
from daar.embed.batching import DEFAULT_BATCH_TOKENS, length_batches
from daar.models import ModelError, load_causal_lm, load_tokenizer
from daar.models.adapter import load_tuned
from daar.read import Record
from daar.select.base import Context, Scores, Selector, register
from daar.utils.cache import stable_key, texts_key
from daar.utils.entry import cached_arrays
from daar.utils.progress import progress_bar

CHUNK_ROWS = 256
_LOGIT_CHUNK = 1024  # target positions projected onto the vocabulary at once

# The Alpaca prompt Superfiltering conditions on (no chat template: its scorer is GPT-2).
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)

RATING_PROMPT = (
    "You are grading the answer an AI assistant gave to a task. Judge only how accurate, complete "
    "and helpful the response is for the instruction{and_input}. Reply with a single digit from 1 "
    "(useless or wrong) to 5 (excellent), and nothing else.\n\n{row}"
)
_MARK = "\u2063DAAR_ROW\u2063"


class _LM:
    """The full model and tokenizer, loaded on first use only (a fully cached run never loads them)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._model = None
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.ctx.model_dir, self.ctx.config.trust_remote_code)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            ctx = self.ctx
            if ctx.config.adapter is None:
                self._model = load_causal_lm(ctx.model_dir, ctx.dtype, ctx.device, ctx.config.trust_remote_code)
            else:  # the tuned model scores (its tokenizer is the base's: daar tune adds no tokens)
                self._model, _ = load_tuned(
                    ctx.config.model, ctx.config.adapter, ctx.device, ctx.dtype, True, ctx.config.trust_remote_code
                )
        return self._model

    @torch.inference_mode()
    def hidden(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Last hidden states of right-padded `seqs`, with their ids and mask."""
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        ids, mask = ids.to(self.ctx.device), mask.to(self.ctx.device)
        out = self.model.base_model(input_ids=ids, attention_mask=mask)
        return out.last_hidden_state, ids, mask

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # Plain projection: models with logit soft-capping (Gemma 2) would differ slightly here.
        return self.model.get_output_embeddings()(hidden).float()

    @torch.inference_mode()
    def target_nll(self, seqs: Sequence[Sequence[int]], starts: Sequence[int]) -> np.ndarray:
        """Per sequence, the mean negative log-likelihood of its tokens from index `starts[i]` on."""
        hidden, ids, mask = self.hidden(seqs)
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        begin = torch.tensor([max(1, s) for s in starts], device=ids.device).unsqueeze(1)
        target = (positions >= begin) & mask.bool()
        target = target[:, 1:]  # token t is predicted by the hidden state at t - 1
        rows = target.nonzero()[:, 0]
        states = hidden[:, :-1][target]
        labels = ids[:, 1:][target]
        losses = []
        for start in range(0, len(states), _LOGIT_CHUNK):
            logits = self.logits(states[start : start + _LOGIT_CHUNK])
            chunk_labels = labels[start : start + _LOGIT_CHUNK]
            losses.append(torch.nn.functional.cross_entropy(logits, chunk_labels, reduction="none"))
        nll = torch.cat(losses).cpu().numpy().astype(np.float64) if losses else np.zeros(0)
        rows_np = rows.cpu().numpy()
        total = np.bincount(rows_np, weights=nll, minlength=len(seqs))
        count = np.bincount(rows_np, minlength=len(seqs))
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    @torch.inference_mode()
    def last_logits(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token logits after the last token of each sequence."""
        hidden, _, mask = self.hidden(seqs)
        last = mask.sum(1) - 1
        return self.logits(hidden[torch.arange(len(seqs), device=hidden.device), last])


def chunked_scores(
    ctx: Context,
    kind: str,
    settings: dict,
    keys: list[str],
    compute: Callable[[np.ndarray], dict[str, np.ndarray]],
    description: str,
) -> dict[str, np.ndarray]:
    """Run `compute(row_indices)` chunk by chunk, each chunk cached on disk under its own key."""
    model_key = ctx.prober_fingerprint
    folder = Path(ctx.cache_dir) / kind
    parts: list[dict[str, np.ndarray]] = []
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(keys), info="")
        for start in range(0, len(keys), CHUNK_ROWS):
            rows = np.arange(start, min(start + CHUNK_ROWS, len(keys)))
            key = stable_key(kind, model_key, settings, texts_key(keys[start : rows[-1] + 1]))
            path = folder / f"{key}.safetensors"
            parts.append(cached_arrays(path, lambda rows=rows: compute(rows), f"{kind} scores")[0])
            bar.update(task, advance=len(rows), info="rows")
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _batches(lengths: list[int], ctx: Context) -> list[np.ndarray]:
    return length_batches(np.asarray(lengths, dtype=np.int64), ctx.config.batch_tokens or DEFAULT_BATCH_TOKENS)


@register
class IFDSelector(Selector):
    """Superfiltering (Li et al. 2024, "Superfiltering: weak-to-strong data filtering for fast
    instruction-tuning"): the Instruction-Following Difficulty of a row scored by a small LM.

    IFD = loss(output | prompt) / loss(output alone), each the mean token cross-entropy over the
    same output tokens; the prompt is the Alpaca template Superfiltering uses, the "alone" pass sees
    only a start token (BOS, else EOS) before the output. The paper writes IFD with perplexities;
    the ratio of mean losses (Cherry LLM's definition) has the same IFD > 1 cut. The scorer is
    `config.model` (SmolLM2-135M by default, where Superfiltering used GPT-2 124M). Texts are cut to
    `config.max_length` tokens: the output keeps its start, the prompt keeps its end.

    Higher IFD = the instruction helps less = a harder, more informative row, kept first. Rows with
    IFD >= 1 are those where the instruction does not help at all; as the IFD authors do, they are
    treated as unusable: scored -IFD, so they rank after every row with IFD < 1 and enter a
    selection only when nothing else is left. Cost: two forward passes of the full model per row.
    """

    name = "ifd"

    def __init__(self) -> None:
        self._lm: _LM | None = None  # loaded once, for every block a run scores

    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        self._lm = lm = self._lm or _LM(ctx)
        max_length = ctx.config.max_length
        keys = ["\x1f".join((r.instruction, r.input, r.output)) for r in records]

        def compute(rows: np.ndarray) -> dict[str, np.ndarray]:
            tok = lm.tokenizer
            start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            if start_id is None:
                raise ModelError(f"{ctx.model_dir}: the tokenizer has neither a BOS nor an EOS token")
            cond_seqs, cond_starts, alone_seqs = [], [], []
            for i in rows:
                record = records[int(i)]
                prompt_ids, output_ids = _ifd_ids(tok, record, max_length)
                cond_seqs.append(prompt_ids + output_ids)
                cond_starts.append(len(prompt_ids))
                alone_seqs.append([start_id] + output_ids)
            conditioned, alone = np.zeros(len(rows)), np.zeros(len(rows))
            for batch in _batches([len(s) for s in cond_seqs], ctx):
                starts = [cond_starts[b] for b in batch]
                conditioned[batch] = lm.target_nll([cond_seqs[b] for b in batch], starts)
            for batch in _batches([len(s) for s in alone_seqs], ctx):
                alone[batch] = lm.target_nll([alone_seqs[b] for b in batch], [1] * len(batch))
            return {"loss_conditioned": conditioned, "loss_alone": alone}

        settings = {"max_length": max_length, "template": "alpaca-v1", "dtype": str(ctx.dtype)}
        out = chunked_scores(ctx, "ifd", settings, keys, compute, "IFD (full model, 2 passes/row)")
        ifd = out["loss_conditioned"] / np.where(out["loss_alone"] > 0, out["loss_alone"], np.nan)
        ifd = np.nan_to_num(ifd, nan=np.inf)
        score = np.where(ifd < 1.0, ifd, -np.minimum(ifd, 1e6))
        return {"score": score, "ifd": ifd, **out}


def _ifd_ids(tokenizer, record: Record, max_length: int) -> tuple[list[int], list[int]]:
    template = ALPACA_PROMPT_INPUT if record.input else ALPACA_PROMPT
    prompt = template.format(instruction=record.instruction, input=record.input)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    output_ids = tokenizer(record.output, add_special_tokens=False)["input_ids"]
    output_ids = output_ids[: max(1, max_length - min(len(prompt_ids), max_length // 2))]
    prompt_ids = prompt_ids[-max(1, max_length - len(output_ids)) :]
    return prompt_ids, output_ids


@register
class AlpagasusSelector(Selector):
    """Alpagasus (Chen et al. 2024, "AlpaGasus: training a better Alpaca with fewer data"): an LLM
    grades every row and the best-graded rows are kept.

    The paper asks ChatGPT for a 0-5 accuracy score and keeps rows scored >= 4.5. Here the local
    instruct model (`config.model`) reads a fixed grading prompt (`RATING_PROMPT`, our wording),
    wrapped in its chat template with the assistant turn opened, and instead of sampling an answer
    we read its next-token distribution over the digits "1".."5": renormalised over those five, the
    expected rating is the score (ties are rarer than with a sampled integer). `digit_mass`, the
    probability the model puts on the five digits at all, says how seriously to take the rating.
    Models without a chat template get the prompt followed by "\\nRating: ". The row is cut to fit
    `config.max_length` tokens (its start kept). Cost: one forward pass of the full model per row,
    about ten times DaaR's 3-of-30-layer prober with the default model.
    """

    name = "alpagasus"

    def __init__(self) -> None:
        self._lm: _LM | None = None  # loaded once, for every block a run scores

    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        self._lm = lm = self._lm or _LM(ctx)
        max_length = ctx.config.max_length
        keys = ["\x1f".join((r.instruction, r.input, r.output)) for r in records]

        def compute(rows: np.ndarray) -> dict[str, np.ndarray]:
            tok = lm.tokenizer
            digits = _digit_ids(tok)
            seqs = [_rating_ids(tok, records[int(i)], max_length) for i in rows]
            rating, mass = np.zeros(len(rows)), np.zeros(len(rows))
            values = torch.arange(1, 6, dtype=torch.float32)
            for batch in _batches([len(s) for s in seqs], ctx):
                logits = lm.last_logits([seqs[b] for b in batch])
                logprobs = torch.log_softmax(logits, dim=-1)[:, digits].cpu()
                mass[batch] = logprobs.exp().sum(1).numpy()
                rating[batch] = (torch.softmax(logprobs, dim=-1) * values).sum(1).numpy()
            return {"rating": rating, "digit_mass": mass}

        settings = {"max_length": max_length, "prompt": RATING_PROMPT, "dtype": str(ctx.dtype)}
        out = chunked_scores(ctx, "alpagasus", settings, keys, compute, "Alpagasus ratings (full model)")
        return {"score": out["rating"], **out}


def _digit_ids(tokenizer) -> list[int]:
    ids = []
    for digit in "12345":
        encoded = tokenizer(digit, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ModelError(f"the tokenizer splits the digit {digit!r} into {len(encoded)} tokens")
        ids.append(encoded[0])
    return ids


def _rating_ids(tokenizer, record: Record, max_length: int) -> list[int]:
    """Prompt tokens with the row's text cut so the whole stays near `max_length`."""
    user = RATING_PROMPT.format(and_input=" and its input" if record.input else "", row=_MARK)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = user + "\nRating: "
    head, tail = text.split(_MARK)
    row = f"### Instruction:\n{record.instruction}\n\n"
    if record.input:
        row += f"### Input:\n{record.input}\n\n"
    row += f"### Response:\n{record.output}"
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"]
    row_ids = tokenizer(row, add_special_tokens=False)["input_ids"]
    budget = max(32, max_length - len(head_ids) - len(tail_ids))
    return head_ids + row_ids[:budget] + tail_ids
