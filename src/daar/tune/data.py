"""Turning selected records into supervised examples whose loss falls on the response only.

The prompt and the response are tokenised separately and concatenated, so the boundary between
"what the model is given" and "what it must learn to write" is exact whatever the tokenizer does
at the seam; generation later starts from the same prompt ids (see `encode_prompt`).
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
    """Input ids and labels of one record as training sees them, and whether they were cut."""
    prompt_ids = encode_prompt(tokenizer, record.prompt, template)
    response_ids = encode_response(tokenizer, record.prompt, record.output, template)
    input_ids, labels = mask_prompt(prompt_ids, response_ids, max_length)
    return input_ids, labels, len(prompt_ids) + len(response_ids) > max_length


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


@dataclass
class PackCollator:
    """A batch's examples joined into one row without padding: position ids restart at 0 for each
    example, so the model keeps attention inside each one (transformers builds the block-diagonal
    mask from the position ids), and each example's first label is IGNORE_INDEX, so no token is
    predicted from the end of the example before it. The loss over the step's response tokens is
    then the padded layout's; only the padding's compute is gone. transformers looks for packed rows
    only when the model runs without a KV cache, as tuning does (`use_cache` off), not otherwise."""

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for item in batch:
            input_ids += item["input_ids"]
            labels += [IGNORE_INDEX, *item["labels"][1:]]
            positions += range(len(item["input_ids"]))
        return {
            "input_ids": torch.tensor([input_ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
        }
