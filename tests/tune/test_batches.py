"""Length-balanced micro-batches (daar.tune.batches): same rows per step, each once, less padding."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from accelerate.data_loader import SeedableRandomSampler
from conftest import write_jsonl

from daar.config import FieldMap
from daar.models import load_tokenizer
from daar.read.records import to_record
from daar.tune import TRAIN_LOG, TuneConfig, build_examples, tune
from daar.tune.batches import OnceEachSampler


def _random_steps(n: int, rows_per_step: int, seed: int, epoch: int) -> list[set[int]]:
    """The rows of each step with random micro-batches: the Trainer's seeded sampler, cut in order."""
    sampler = SeedableRandomSampler(range(n), data_seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [set(order[i : i + rows_per_step]) for i in range(0, n, rows_per_step)]


@pytest.mark.parametrize("n", [1, 3, 4, 5, 15, 16, 17, 19, 20, 33, 50, 51])
def test_each_step_takes_the_random_steps_rows_and_every_row_once(n):
    """Rows mod 16 in 1..3 is where the library sampler alone repeats rows to fill 4 passes."""
    rng = random.Random(n)
    lengths = [rng.choice([20, 60, 300, 1500, 2048]) + rng.randrange(10) for _ in range(n)]
    sampler = OnceEachSampler(lengths, rows_per_step=16, passes=4, seed=7)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        passes = list(sampler)
        assert len(passes) == len(sampler) and all(passes)
        assert sorted(i for p in passes for i in p) == list(range(n))  # every row exactly once
        steps = [passes[i : i + 4] for i in range(0, len(passes), 4)]  # how the Trainer groups passes
        assert [set().union(*map(set, step)) for step in steps] == _random_steps(n, 16, seed=7, epoch=epoch)
        assert sum(len(p) for p in passes) == n and len(steps) == -(-n // 16)
        assert [len(step) for step in steps[:-1]] == [4] * (len(steps) - 1)
        assert len(steps[-1]) == min(4, n - 16 * (len(steps) - 1))


def _epoch_through_the_trainer(tiny_model: Path, items: list[dict], sampling: str, tmp_path: Path):
    """Per optimiser step: the rows (as token tuples) and padded positions of the Trainer's dataloader."""
    from daar.tune.lora import _lora_model, _trainer

    settings = TuneConfig(sampling=sampling, device="cpu")  # 4 x 4 on CPU
    model = _lora_model(tiny_model, settings, torch.float32, "cpu")
    tokenizer = load_tokenizer(tiny_model)
    trainer, _ = _trainer(model, tokenizer, items, tmp_path / sampling, tmp_path, settings, torch.float32, "cpu")
    passes = list(trainer.get_train_dataloader())
    steps, padded = [], 0
    for start in range(0, len(passes), 4):
        rows = []
        for batch in passes[start : start + 4]:
            mask = batch["attention_mask"].bool()
            padded += int((~mask).sum())
            rows += [tuple(ids[m].tolist()) for ids, m in zip(batch["input_ids"], mask, strict=True)]
        steps.append(sorted(rows))
    return steps, padded


def test_balanced_passes_hold_the_same_steps_with_far_less_padding(tiny_model, real_rows, tmp_path):
    tokenizer = load_tokenizer(tiny_model)
    records = [to_record(row, i, FieldMap()) for i, row in enumerate(real_rows)]
    items = build_examples(records, tokenizer, "chat", 2048).items[:387]  # 24 steps of 16, then 3 rows
    lengths = [len(item["input_ids"]) for item in items]
    assert max(lengths) > 6 * min(lengths)  # real rows: 45 to 443 tokens

    random_steps, random_padding = _epoch_through_the_trainer(tiny_model, items, "random", tmp_path)
    balanced_steps, balanced_padding = _epoch_through_the_trainer(tiny_model, items, "balanced", tmp_path)
    assert len(balanced_steps) == 25 and balanced_steps == random_steps
    assert sorted(r for step in balanced_steps for r in step) == sorted(tuple(i["input_ids"]) for i in items)
    # measured: 30,452 padded positions with random passes, 8,230 balanced (27%)
    assert balanced_padding < 0.4 * random_padding, (balanced_padding, random_padding)


def test_balanced_and_random_passes_train_the_same_adapter(tiny_model, real_rows, tmp_path):
    """The loss is averaged over all response tokens of a step, so its cut into passes does not matter.

    35 rows: the last step has 3 rows, fewer than the 4 passes; seed 7: not the library's default.
    """
    from safetensors.torch import load_file

    selection = write_jsonl(tmp_path / "sel.jsonl", real_rows[:35])
    common = dict(
        lr=2e-2, warmup_ratio=0.0, batch_size=4, grad_accum=4, max_length=128, dropout=0.0, seed=7, logging_steps=1
    )
    runs = {
        s: tune(selection, str(tiny_model), tmp_path / s, TuneConfig(**common, sampling=s))
        for s in ("random", "balanced")
    }
    assert {s: r.manifest["sampler"] for s, r in runs.items()} == {"random": "random", "balanced": "balanced"}
    assert runs["random"].steps == runs["balanced"].steps == 3
    assert runs["random"].manifest["key"] != runs["balanced"].manifest["key"]
    a, b = (load_file(str(tmp_path / s / "adapter_model.safetensors")) for s in ("random", "balanced"))
    diff = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a))
    assert diff < 0.01 * torch.sqrt(sum((a[k] ** 2).sum() for k in a))
    losses = [[json.loads(line)["loss"] for line in (tmp_path / s / TRAIN_LOG).read_text().splitlines()] for s in runs]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], abs=1e-4)
