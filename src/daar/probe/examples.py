"""Model-aware domain examples (docs/METHOD.md, step 3): the instruct model writes examples of each domain.

Small models do not follow "answer in JSON" reliably, so the answer is started for them (the
assistant turn is pre-filled with `{"instruction": "`), generation stops at the closing quote, and
every candidate is parsed and validated; the model then answers each instruction, and a pair is
kept only when its cosine similarity to every accepted pair (mean last hidden state of the
generating model) is below the threshold. Every raw answer is kept with the verdict on it, and
each finished domain is cached, so a rerun regenerates nothing.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import ValidationError

from daar.config import Domain, ExampleRow, SelectConfig, SynthesisConfig, load_yaml_file
from daar.errors import UserError
from daar.models import load_causal_lm, load_tokenizer
from daar.probe.sampling import Sampler, Sampling
from daar.utils.cache import read_json, write_json
from daar.utils.progress import console

_INSTRUCTION = re.compile(r'"instruction"\s*:\s*"((?:[^"\\]|\\.)*)"', re.S)
_META = re.compile(r"\bjson\b|\binstruction\b|\bnew task\b|\bai assistant\b", re.I)


# Tokens an instruction may take (measured with SmolLM2-135M on the demo: of 121 round candidates 35
# ran past 48 tokens, all of them extra keys or text after the closing quote or run-on answers).
INSTRUCTION_TOKENS = 48

# Each candidate's instruction is started with one of these words (drawn with the seed). A small
# model shown three accepted examples tends to copy them; a different first word steers it to a
# different question (measured with SmolLM2-135M: without starters most candidates of a round
# repeated one earlier question, e.g. "How to determine if a number is prime").
STARTERS = ["What", "How", "Why", "Which", "Explain", "Write", "Calculate", "Describe", "Compare", "Give", "Find", "If"]


class ExampleError(UserError):
    """Too few valid examples; the message says how to give examples instead."""


def example_text(example: ExampleRow) -> str:
    """The same text layout the prober reads for pool rows (daar.read.Record.text)."""
    parts = [f"Instruction: {example.instruction}"]
    if example.input:
        parts.append(f"Input: {example.input}")
    parts.append(f"Output: {example.output}")
    return "\n".join(parts)


def parse_instructions(text: str) -> list[str]:
    """Every usable "instruction" string in a model answer, in order.

    Usable means: valid JSON string, at least 15 characters, and not a restatement of our own
    request (small models often answer "Write a new task in JSON..." instead of writing one).
    """
    found = []
    for match in _INSTRUCTION.finditer(text):
        try:
            instruction = json.loads(f'"{match.group(1)}"').strip()
        except json.JSONDecodeError:
            continue
        if len(instruction) >= 15 and not _META.search(instruction):
            found.append(instruction)
    return found


def _label(domain: Domain) -> str:
    return f"{domain.name.replace('_', ' ')} ({domain.description})"


class ExampleWriter:
    """Generates, validates and de-duplicates example pairs for each domain with one loaded model.

    A pair is written in two steps. The model is asked for the instruction as JSON (the answer is
    pre-filled with `{"instruction": "` and stops at the closing quote), which is parsed and
    validated; then it answers that instruction as an ordinary chat turn, which every instruct
    model does well. Asking a 135M model for instruction and output in one JSON object fails
    most of the time (measured: 1 usable pair of 56 for common sense), while this way most
    answers are usable. Both steps sample (top_p, temperature from the config).
    """

    def __init__(
        self,
        model_dir: Path,
        cfg: SynthesisConfig,
        seed: int,
        device: str,
        dtype: torch.dtype,
        trust_remote_code: bool = False,
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        self.device = device
        self.tokenizer = load_tokenizer(model_dir, trust_remote_code)
        self.tokenizer.padding_side = "right"  # for the similarity vectors; sampling pads itself
        self.model = load_causal_lm(model_dir, dtype, device, trust_remote_code)
        self.sampler = Sampler(self.model, self.tokenizer, device)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def _chat(self, user: str) -> str:
        messages = [{"role": "user", "content": user}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return f"{user}\n\n"

    def _generate(self, requests: list[tuple[str, str]], max_new_tokens: int, stop: list[str] | None) -> list[str]:
        """What the model writes after each (prompt, pre-fill); one batch for all of them."""
        cfg = Sampling(self.cfg.top_p, self.cfg.temperature, max_new_tokens, tuple(stop or ()), self.cfg.top_k)
        return self.sampler.sample(requests, cfg, self.generator)

    @torch.inference_mode()
    def _vectors(self, pairs: list[ExampleRow]) -> torch.Tensor:
        """Mean last-layer hidden state per pair: the authors' similarity space."""
        batch = self.tokenizer(
            [example_text(p) for p in pairs], return_tensors="pt", padding=True, truncation=True, max_length=512
        ).to(self.device)
        hidden = self.model(**batch, output_hidden_states=True).hidden_states[-1].float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1).cpu()

    def write(self, states: list[DomainState], on_round: Callable[[], None] = lambda: None) -> None:
        """The warm-up round, then rounds showing accepted pairs, for all domains at once: each round is
        one batched sampling call for every unfinished domain's candidates and one for their answers.
        Results accumulate in `states`.

        What a round costs on a CPU is mostly its number of sequential decoding steps, and little
        the number of rows (measured with SmolLM2-135M, bf16, one thread: 93 ms a step for 4 rows,
        244 ms for 64). So a round samples many single instructions side by side, and the warm-up
        is sampled the same way: its prompt asks for `warmup_pairs` questions, each row keeps the
        first one. The earlier warm-up, one list of 5 per domain in up to 240 steps, gave one or two
        usable questions per domain (the model wrote one and added keys). By default no round
        showing accepted pairs follows (`max_rounds` 0) unless a domain is short of min_pairs: on
        the demo (seed 0) 20 warm-up candidates per domain gave 31 accepted pairs of 80, a round of
        20 more showing accepted ones 4 of 80, most of them copies of what it was shown.
        """
        cfg = self.cfg
        target = cfg.warmup_pairs + cfg.pairs_per_domain
        self._round(states, lambda st: (self._chat(st.warmup_prompt(cfg.warmup_pairs)), "["), "warmup", target)
        on_round()
        # Then as many rounds again (at least one) go to the domains still short of min_pairs:
        # sampling is chance, and with the 135M default one domain of four sometimes ended a run
        # with 2 pairs (measured: 2 / 11 / 5 / 6 accepted after changing only the attention
        # kernel), which would otherwise stop the whole selection.
        for round_no in range(cfg.max_rounds + max(cfg.max_rounds, 1)):
            wanted = target if round_no < cfg.max_rounds else cfg.min_pairs
            pending = [st for st in states if len(st.accepted) < wanted]
            if not pending:
                break
            # one prompt per domain, read once for its candidates
            self._round(pending, lambda st: (self._chat(st.round_prompt()), ""), f"round {round_no + 1}", target)
            on_round()

    def _round(
        self, states: list[DomainState], ask: Callable[[DomainState], tuple[str, str]], stage: str, target: int
    ) -> None:
        """`candidates_per_round` instructions per domain from its (prompt, opening), each pre-filled
        with `{"instruction": "` and a starter word and stopped at the closing quote, then considered."""
        requests, owners = [], []
        for st in states:
            prompt, opening = ask(st)
            for _ in range(self.cfg.candidates_per_round):
                requests.append((prompt, opening + '{"instruction": "' + st.rng.choice(STARTERS)))
                owners.append(st)
        # The pre-fill opens the JSON string, so its first quote closes it: what the model adds after
        # (more keys, an answer) was never read and cost up to a third of the steps.
        flat = self._generate(requests, INSTRUCTION_TOKENS, ['"'])
        raws = [
            [prefill + a for (_, prefill), a, o in zip(requests, flat, owners, strict=True) if o is st] for st in states
        ]
        self._consider(states, raws, stage, target)
        self._progress(states, stage, target)

    @staticmethod
    def _progress(states: list[DomainState], stage: str, target: int) -> None:
        done = ", ".join(f"{st.domain.name} {len(st.accepted)}/{target}" for st in states)
        console.print(f"  examples {stage}: {done}")

    def _consider(self, states: list[DomainState], raws: list[list[str]], stage: str, target: int) -> None:
        """Parse each raw answer, answer its instructions, keep pairs unlike every accepted one."""
        found: list[tuple[DomainState, str, str]] = []
        for st, answers in zip(states, raws, strict=True):
            seen = [s.instruction for s in st.accepted]
            for raw in answers:
                instructions = [t for t in parse_instructions(raw) if not _echoes(t, st.intro)]
                if not instructions:
                    st.log.append({"stage": stage, "raw": raw, "verdict": "no usable JSON instruction"})
                for text in instructions:
                    if any(_echoes(text, other) for other in seen):
                        # a copy of a shown example: rejected before paying for an answer
                        st.log.append({"stage": stage, "raw": raw, "verdict": "repeats an earlier instruction"})
                        continue
                    seen.append(text)
                    found.append((st, raw, text))
        if not found:
            return
        outputs = [
            o.strip() for o in self._generate([(self._chat(t), "") for _, _, t in found], self.cfg.max_new_tokens, None)
        ]
        pairs = [
            ExampleRow(instruction=text, output=out) if len(out) >= 2 else None
            for (_, _, text), out in zip(found, outputs, strict=True)
        ]
        # one forward pass for every answered pair of the round, not one per pair
        answered = [p for p in pairs if p is not None]
        vectors = iter(self._vectors(answered) if answered else [])
        for (st, raw, _), output, pair in zip(found, outputs, pairs, strict=True):
            entry = {"stage": stage, "raw": raw, "answer": output}
            if pair is None:
                st.log.append({**entry, "verdict": "empty answer"})
                continue
            vec = next(vectors)
            verdict = "accepted"
            if len(st.accepted) >= target:
                verdict = "not needed (enough accepted)"
            else:
                best = max((float(vec @ v) for v in st.vectors), default=0.0)
                if best >= self.cfg.similarity_threshold:
                    verdict = f"too similar to an accepted pair (cosine {best:.3f})"
                else:
                    st.accepted.append(pair)
                    st.vectors.append(vec)
            st.log.append({**entry, "pair": pair.model_dump(), "verdict": verdict})


class DomainState:
    """One domain's prompt, accepted pairs, their vectors and the log of every raw answer."""

    def __init__(self, domain: Domain, others: list[Domain], seed: int) -> None:
        self.domain = domain
        avoid = ", ".join(o.name.replace("_", " ") for o in others)
        self.intro = f"Topic: {_label(domain)}. Not about: {avoid}."
        self.rng = random.Random(f"{seed}:{domain.name}")
        self.accepted: list[ExampleRow] = []
        self.vectors: list[torch.Tensor] = []
        self.log: list[dict] = []

    def warmup_prompt(self, count: int) -> str:
        return (
            f"{self.intro}\nWrite {count} different questions about this. "
            'Reply in JSON: [{"instruction": "<question 1>"}, {"instruction": "<question 2>"}, ...]'
        )

    def round_prompt(self) -> str:
        shown = self.rng.sample(self.accepted, min(3, len(self.accepted)))
        ask = f"{self.intro}\nWrite one question about this."
        if shown:
            ask += " It must be different from these:" + "".join(f"\n- {s.instruction}" for s in shown)
        return ask + '\nReply in JSON: {"instruction": "<the question>"}'


def _echoes(instruction: str, prompt: str) -> bool:
    """True when most of the instruction's word trigrams occur in `prompt`: a restatement of our
    request, or a copy of an instruction already seen."""
    words = re.findall(r"\w+", instruction.lower())
    source = " ".join(re.findall(r"\w+", prompt.lower()))
    grams = [" ".join(words[i : i + 3]) for i in range(len(words) - 2)]
    return bool(grams) and sum(g in source for g in grams) / len(grams) > 0.5


def domain_examples(
    domains: list[Domain],
    folder: Path,
    make_writer: Callable[[], ExampleWriter],
    min_pairs: int,
) -> dict[str, list[ExampleRow]]:
    """Seeds per domain: user-given ones as they are, the rest generated once and cached in `folder`.

    `make_writer` builds the ExampleWriter lazily, so a run whose domains all carry examples (or whose
    examples are cached) never loads the generating model. Domains are generated together; each
    one's accepted pairs and raw answers are saved as soon as generation ends.
    """
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[ExampleRow]] = {}
    todo: list[Domain] = []
    for domain in domains:
        done = folder / f"{domain.name}.json"
        if domain.examples:
            result[domain.name] = list(domain.examples)
        elif done.exists():
            result[domain.name] = [ExampleRow.model_validate(s) for s in read_json(done)["accepted"]]
        else:
            todo.append(domain)
    if not todo:
        return result
    writer = make_writer()
    console.print(f"[bold]examples[/]: the model writes examples for {', '.join(d.name for d in todo)}")
    states = [DomainState(d, [o for o in domains if o.name != d.name], writer.seed) for d in todo]

    def save_logs() -> None:
        for st in states:
            write_json(folder / f"{st.domain.name}.raw.json", [{"domain": st.domain.name, **e} for e in st.log])

    writer.write(states, save_logs)
    save_logs()
    short = [st for st in states if len(st.accepted) < min_pairs]
    for st in states:
        if st not in short:
            write_json(
                folder / f"{st.domain.name}.json",
                {"domain": st.domain.name, "accepted": [s.model_dump() for s in st.accepted]},
            )
            result[st.domain.name] = st.accepted
    if short:
        names = ", ".join(f"'{st.domain.name}' ({len(st.accepted)})" for st in short)
        raise ExampleError(
            f"the model wrote too few valid, distinct example pairs for {names}; at least {min_pairs} are "
            f"needed. Raw answers and verdicts are in {folder}/<domain>.raw.json. Give examples yourself "
            "with --examples-file (YAML: domain name -> list of {instruction, output}), or use a larger "
            "instruct model with --model."
        )
    return result


def load_examples_file(path: Path, domains: list[Domain]) -> list[Domain]:
    """Attach example rows from a YAML/JSON file ({domain: [rows]} or a domains list) to the domains."""

    data = load_yaml_file(Path(path))
    if isinstance(data, list):
        if not all(isinstance(item, dict) and "name" in item for item in data):
            raise UserError(f"{path}: a list of domains needs a 'name' in every entry")
        data = {item["name"]: item.get("examples", item.get("seeds", [])) for item in data}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of domain name -> list of example rows")
    known = {d.name for d in domains}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: examples for unknown domains {unknown}; domains are {sorted(known)}")
    updated = []
    for domain in domains:
        rows = data.get(domain.name) or []
        try:
            examples = [ExampleRow.model_validate(r) for r in rows]
        except (ValidationError, TypeError) as err:
            raise UserError(f"{path}: domain '{domain.name}': {err}") from None
        updated.append(domain.model_copy(update={"examples": examples or domain.examples}))
    return updated


def resolve_domains(config: SelectConfig) -> list[Domain]:
    """The configured domains with the examples file (if any) attached."""
    if config.examples_file is None:
        return list(config.domains)
    return load_examples_file(config.examples_file, list(config.domains))
