"""Turning selected records into supervised examples whose loss falls on the assistant's turns only.

With a chat template, a record is its dialogue (`Record.messages`: a chat row's own turns, or one
user and one assistant turn for an instruction row) rendered by the learner's own template, so the
learner trains on what it sees at use. The rendering is cut into pieces at each assistant turn:
what comes before the turn (earlier turns, then the template's generation prompt) is context and
gets no label; the turn itself, up to where the template ends it (its end-of-turn token included),
is learned. Each piece is tokenised on its own and the ids joined, so the boundary between "what the
model is given" and "what it must learn to write" is exact whatever the tokenizer does at the seam;
generation later starts from the same prompt ids (see `encode_prompt`). An instruction row is
therefore encoded as it was before chat rows kept their turns (tests/tune/test_chat.py).

The plain template (tokenizers without a chat template, or `template: plain`) is single-turn: the
record's prompt (a chat row's earlier turns as "role: content" lines) and its last answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from daar.errors import UserError
from daar.read import Record
from daar.tune.settings import TemplateName

IGNORE_INDEX = -100
"""Label value that PyTorch's cross-entropy (and so every HF causal LM) leaves out of the loss."""

PLAIN_PROMPT = "### Instruction:\n{prompt}\n\n### Response:\n"
"""Template for tokenizers without a chat template; the response follows, then the EOS token."""


class TuneError(UserError):
    """Tuning cannot start or go on (no usable example, checkpoints from other settings...)."""


def _chat_texts(tokenizer: Any, prompt: str, output: str) -> tuple[str, str]:
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": output}], tokenize=False)
    if not isinstance(head, str) or not isinstance(full, str) or not full.startswith(head):
        raise TuneError("the tokenizer's chat template does not render the prompt as a prefix of the dialogue")
    return head, full[len(head) :]


def choose_template(tokenizer: Any, wanted: TemplateName = "auto") -> Literal["chat", "plain"]:
    """The chat template when the tokenizer has a usable one, else the documented plain template.

    "Usable" is tested on a sample dialogue: some templates (e.g. ones that rewrite earlier turns)
    do not render the prompt as a prefix of the full dialogue, and then prompt masking would be wrong.
    """
    if wanted == "plain":
        return "plain"
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if has_template:
        try:
            _chat_texts(tokenizer, "What is 2 + 2?", "4")
            return "chat"
        except Exception as err:  # jinja raises its own error types for templates that reject the dialogue
            if wanted == "chat":
                raise TuneError(f"the chat template cannot be used for training: {err}") from err
            return "plain"
    if wanted == "chat":
        raise TuneError("template 'chat' was asked for but the tokenizer has no chat template")
    return "plain"


def encode_prompt(tokenizer: Any, prompt: str, template: Literal["chat", "plain"]) -> list[int]:
    """Prompt token ids exactly as the learner saw them in training; generation continues from here."""
    if template == "chat":
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        # a chat template writes its own special tokens; adding them again would double the BOS
        return list(tokenizer(head, add_special_tokens=False)["input_ids"])
    return list(tokenizer(PLAIN_PROMPT.format(prompt=prompt), add_special_tokens=True)["input_ids"])


def encode_response(tokenizer: Any, prompt: str, output: str, template: Literal["chat", "plain"]) -> list[int]:
    """Response token ids, ending the way the template ends an assistant turn (EOS for plain)."""
    if template == "chat":
        _, tail = _chat_texts(tokenizer, prompt, output)
        return list(tokenizer(tail, add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(output, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def mask_prompt(prompt_ids: Sequence[int], response_ids: Sequence[int], max_length: int) -> tuple[list[int], list[int]]:
    """Input ids and labels of one example: labels are IGNORE_INDEX on the prompt, cut to max_length.

    Cutting keeps the start (the prompt, then as much of the response as fits) because a response
    without its instruction teaches nothing; a prompt that fills the window leaves no label at all,
    which the caller treats as "too long".
    """
    input_ids = (list(prompt_ids) + list(response_ids))[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + list(response_ids))[:max_length]
    return input_ids, labels


@dataclass
class Examples:
    """Tokenised examples plus the counts the manifest reports."""

    items: list[dict[str, list[int]]]
    too_long: int = 0
    truncated: int = 0
    tokens: int = 0


def build_examples(
    records: Sequence[Record], tokenizer: Any, template: Literal["chat", "plain"], max_length: int
) -> Examples:
    """One example per record; records whose prompt alone fills max_length are counted and skipped."""
    result = Examples(items=[])
    for record in records:
        input_ids, labels, truncated = encode_example(record, tokenizer, template, max_length)
        if all(label == IGNORE_INDEX for label in labels):
            result.too_long += 1
            continue
        result.truncated += truncated
        result.tokens += len(input_ids)
        result.items.append({"input_ids": input_ids, "labels": labels})
    return result


def encode_example(
    record: Record, tokenizer: Any, template: Literal["chat", "plain"], max_length: int
) -> tuple[list[int], list[int], bool]:
    """Input ids and labels of one record as training sees them, and whether they were cut.

    Cutting keeps the start, as `mask_prompt` does: an answer without the turns it answers teaches nothing.
    """
    if template == "plain":
        prompt_ids = encode_prompt(tokenizer, record.prompt, template)
        response_ids = encode_response(tokenizer, record.prompt, record.output, template)
        input_ids, labels = mask_prompt(prompt_ids, response_ids, max_length)
        return input_ids, labels, len(prompt_ids) + len(response_ids) > max_length
    try:
        texts = chat_pieces(tokenizer, record.messages)
    except Exception as err:  # jinja raises its own error types for dialogues a template rejects
        raise TuneError(
            f"row '{record.id}' (position {record.position}): the chat template cannot render its turns "
            f"for training ({err}); --template plain trains on it as one turn"
        ) from err
    pieces = [(list(tokenizer(text, add_special_tokens=False)["input_ids"]), learned) for text, learned in texts]
    input_ids = [i for ids, _ in pieces for i in ids]
    labels = [i if learned else IGNORE_INDEX for ids, learned in pieces for i in ids]
    return input_ids[:max_length], labels[:max_length], len(input_ids) > max_length


def chat_pieces(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The template's rendering of a dialogue cut into (text, learned) pieces; the texts join to the
    rendering of the whole dialogue.

    A learned piece is one assistant turn: the rendering of the dialogue up to and including it,
    less the rendering up to it with the generation prompt. An assistant turn before any other turn
    has nothing to answer and stays context. The template must render each turn the same whatever
    follows it (most do; the error says when one does not).
    """
    pieces: list[tuple[str, bool]] = []
    done = ""
    for end, message in enumerate(messages):
        if message["role"] != "assistant" or end == 0:
            continue
        head = tokenizer.apply_chat_template(messages[:end], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages[: end + 1], tokenize=False)
        if not head.startswith(done) or not full.startswith(head):
            raise ValueError(f"turn {end} changes how the template renders the turns before it")
        pieces += [(head[len(done) :], False), (full[len(head) :], True)]
        done = full
    return [(text, learned) for text, learned in pieces if text]


def example_tokens(
    records: Sequence[Record], tokenizer: Any, template: Literal["chat", "plain"], max_length: int
) -> list[int]:
    """Tokens each record trains on (0 for a record too long to leave a label), summing to
    `build_examples(...).tokens`: what a token budget counts."""
    counts = []
    for record in records:
        input_ids, labels, _ = encode_example(record, tokenizer, template, max_length)
        counts.append(0 if all(label == IGNORE_INDEX for label in labels) else len(input_ids))
    return counts


class ExampleDataset(torch.utils.data.Dataset):
    """A list of examples behind the Dataset interface the Trainer's sampler expects."""

    def __init__(self, items: list[dict[str, list[int]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


@dataclass
class PadCollator:
    """Right-pads a batch to its longest example; padded positions get no attention and no label.

    Padding is found by position, not by token id, because many tokenizers pad with the EOS token,
    which must keep its label where it really ends a response.
    """

    pad_token_id: int

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            size = len(item["input_ids"])
            input_ids[row, :size] = torch.tensor(item["input_ids"], dtype=torch.long)
            labels[row, :size] = torch.tensor(item["labels"], dtype=torch.long)
            attention[row, :size] = 1
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def pack_collator() -> Any:
    """A batch's examples joined into one row without padding (transformers' DataCollatorWithFlattening,
    which is what TRL's padding-free collator does too): position ids restart at 0 for each example,
    so the model keeps attention inside each one (transformers builds the block-diagonal mask from the
    position ids), and each example's first label is IGNORE_INDEX, so no token is predicted from the
    end of the example before it. The loss over the step's learned tokens is then the padded layout's;
    only the padding's compute is gone (tests/tune/test_packing.py). transformers looks for packed rows
    only when the model runs without a KV cache, as tuning does (`use_cache` off), not otherwise."""
    from transformers import DataCollatorWithFlattening  # here: importing transformers costs seconds

    return DataCollatorWithFlattening(separator_id=IGNORE_INDEX)
