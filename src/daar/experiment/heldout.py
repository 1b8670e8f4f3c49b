"""Held-out NLL: does the tuned model fit every part of the pool's mixture better?

Why this is the primary measure of docs/EVIDENCE.md's second study: a benchmark scores the learner
on other people's formats (a 135M model answers MMLU at chance, and a single letter's NLL moved the
first study's average most), while the question a selection must answer is whether tuning on it
teaches the whole mixture. So rows of the pool that no selection could pick (outside the
experiment's `sample`) are scored: the NLL per token of each row's full response, given its prompt,
encoded exactly as `daar tune` trains on it (daar.tune.data.encode_example). Rows are grouped by a
field the user names (here `source`, which no selector reads) and the groups are macro-averaged, so
a method that fits one large source better and starves the others cannot win by size alone.

Every cell is scored on the same rows (drawn once, per group, with their own seed), and each row's
(NLL sum, tokens) is kept, so comparisons pair items as well as seeds.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from daar.config import FieldMap
from daar.errors import UserError
from daar.read import Pool, read_pool
from daar.utils.cache import read_json, write_json, write_jsonl

HELDOUT_FILE = "heldout.jsonl"
SAMPLES_FILE = "heldout.samples.jsonl"
MACRO = "macro"
BATCH_TOKENS = 4096  # tokens per forward pass (rows sorted by length, padded to the longest)


class HeldoutSettings(BaseModel):
    """Which rows outside the sample are scored: `rows_per_group` per value of `field`, drawn with `seed`."""

    model_config = ConfigDict(extra="forbid")
    field: str = Field(min_length=1)
    rows_per_group: int = Field(30, ge=1)
    seed: int = 42


def draw_heldout(
    pool: Pool, outside: Sequence[int], settings: HeldoutSettings, source: Path
) -> list[dict[str, Any]]:
    """Up to `rows_per_group` raw rows of each group among the positions `outside` the sample.

    A row without the field is an error naming the file and row: a group the user cannot see would
    be averaged silently otherwise."""
    groups: dict[str, list[int]] = {}
    for index in outside:
        record = pool.records[index]
        value = record.raw.get(settings.field)
        if value in (None, ""):
            raise UserError(
                f"{source}: row {record.position} (id {record.id!r}) has no {settings.field!r}; "
                f"heldout.field must name a field every row has"
            )
        groups.setdefault(str(value), []).append(index)
    if not groups:
        raise UserError(f"{source}: no row lies outside the sample, so nothing can be held out (lower `sample`)")
    chosen = []
    for name in sorted(groups):
        members = groups[name]
        size = min(settings.rows_per_group, len(members))
        picked = sorted(random.Random(f"{settings.seed}/{name}").sample(members, size))
        chosen += [{"group": name, "row": pool.records[i].raw} for i in picked]
    return chosen


def write_heldout(rows: list[dict[str, Any]], folder: Path) -> Path:
    path = Path(folder) / HELDOUT_FILE
    write_jsonl(path, rows)
    return path


def score_heldout(
    model: str,
    adapter: Path | None,
    heldout: Path,
    out: Path,
    *,
    device: str = "cpu",
    template: str = "auto",
    max_length: int = 2048,
    fields: FieldMap | None = None,
) -> dict[str, Any]:
    """Per-group and macro NLL per response token of the held-out rows for `model` (+ `adapter`);
    every row's (NLL sum, tokens) goes to `out`/heldout.samples.jsonl, the summary is returned."""
    import torch

    from daar.models.adapter import load_tuned
    from daar.tune.data import IGNORE_INDEX, choose_template, encode_example

    entries = _read_entries(heldout)
    rows_file = Path(out) / ".heldout_rows.jsonl"
    write_jsonl(rows_file, (e["row"] for e in entries))
    pool = read_pool(rows_file, fields or FieldMap())
    rows_file.unlink()
    if pool.rejected:
        first = pool.rejected[0]
        raise UserError(f"{heldout}: held-out row {first.position} cannot be read: {first.reason}")
    lm, tokenizer = load_tuned(model, adapter, device=device, dtype="float32")
    chosen = choose_template(tokenizer, template)  # type: ignore[arg-type]
    encoded = [encode_example(r, tokenizer, chosen, max_length)[:2] for r in pool.records]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    totals: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    with torch.inference_mode():
        for batch in _batches(order, [len(e[0]) for e in encoded]):
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                size = len(encoded[i][0])
                ids[row, :size] = torch.tensor(encoded[i][0])
                labels[row, :size] = torch.tensor(encoded[i][1])
                mask[row, :size] = 1
            hidden = decoder(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).last_hidden_state
            # the vocabulary projection only where a label is scored: prompts are most of the positions
            target = labels[:, 1:].to(hidden.device)
            keep = target != IGNORE_INDEX
            logits = head(hidden[:, :-1][keep]).float()
            picked = torch.log_softmax(logits, dim=-1).gather(-1, target[keep].unsqueeze(-1)).squeeze(-1)
            nll = torch.zeros(keep.shape, dtype=torch.float64, device=hidden.device)
            nll[keep] = -picked.double()
            nll = nll.sum(1)
            for row, i in enumerate(batch):
                totals[i] = (float(nll[row]), int(keep[row].sum()))
    samples = [
        {"id": record.id, "group": entry["group"], "nll": [value, tokens]}
        for record, entry, (value, tokens) in zip(pool.records, entries, totals, strict=True)
    ]
    write_jsonl(Path(out) / SAMPLES_FILE, samples)
    summary = summarize(samples) | {"template": chosen, "rows": len(samples)}
    write_json(Path(out) / "heldout.json", summary)
    return summary


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """NLL per token inside each group (summed NLL over summed tokens) and their unweighted mean."""
    sums: dict[str, list[float]] = {}
    for sample in samples:
        value, tokens = sample["nll"]
        total = sums.setdefault(sample["group"], [0.0, 0.0])
        total[0] += value
        total[1] += tokens
    groups = {name: total / max(count, 1.0) for name, (total, count) in sorted(sums.items())}
    return {"groups": groups, MACRO: math.fsum(groups.values()) / max(len(groups), 1)}


def _read_entries(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    if not entries:
        raise UserError(f"{path}: no held-out rows")
    return entries


def _batches(order: list[int], lengths: list[int]) -> list[list[int]]:
    """Rows sorted by length, cut into passes of at most BATCH_TOKENS padded tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and lengths[i] * (len(current) + 1) > BATCH_TOKENS:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def load_summary(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / "heldout.json"
    return read_json(path) if path.is_file() else None
