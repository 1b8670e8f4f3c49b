"""The two GPU checks of `benchmarks/gpu.py` after the feature stage: `daar tune` on a whole
7B-shaped model, and two Ray actors sharing one GPU against the local scorer.

`daar tune` runs as it does for a user (peft LoRA on all linear layers, the Trainer, response-only
loss, one pass of 16 rows per step on a GPU), except that its weight loading is replaced by random
bf16 weights made on the GPU: a 7B checkpoint would be 15 GB to write and read back, minutes of the
budget that say nothing about training speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from gpu_profile import say

# Activation bytes per token per decoder layer kept for the backward pass without checkpointing,
# in vectors of the hidden and MLP sizes (bf16): a rough, generous count of the inputs each
# linear, norm, attention and MLP product saves.
SAVED_VECTORS = (24, 4)
LOGIT_BYTES = 12  # per token and vocabulary entry: bf16 logits, their fp32 copy and its gradient


def tune_memory_gb(config, rows_tokens: int, checkpointing: bool) -> float:
    hidden, inter = int(config.hidden_size), int(config.intermediate_size)
    layers, vocab = int(config.num_hidden_layers), int(config.vocab_size)
    params = layers * (4 * hidden * hidden + 3 * hidden * inter) + 2 * vocab * hidden
    per_layer = (SAVED_VECTORS[0] * hidden + SAVED_VECTORS[1] * inter) * 2
    kept = hidden * 2 * layers + per_layer if checkpointing else per_layer * layers  # one layer re-run at a time
    return (2 * params + rows_tokens * (kept + LOGIT_BYTES * vocab)) / 2**30


def tune_timing(shape: str, args: argparse.Namespace, budget, device: str) -> dict:
    from gpu_shapes import SHAPES, model_config, random_model
    from transformers import AutoTokenizer

    import daar.tune.lora as lora
    from daar.read import read_pool
    from daar.tune import TuneConfig, tune
    from daar.utils.cache import write_jsonl

    say(f"== daar tune, {shape} shape, all {SHAPES[shape][5]} layers ({budget.left():.0f} s of the budget left)")
    cuda = device == "cuda"
    if not cuda and SHAPES[shape][1] > 1024:
        say("  skipped daar tune: no GPU (a CPU would take hours at this size)")
        return {"skipped": "no GPU"}
    if not budget.allows("daar tune", 60):
        return {"skipped": "budget"}

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    config = model_config(shape, tokenizer)
    folder = Path(args.out) / "models" / f"{shape}-full"
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = TuneConfig(max_steps=args.tune_steps, device=device, save_steps=10**6, logging_steps=1)
    rows_per_step = settings.batch_size * settings.grad_accum
    records = read_pool(args.pool).records[: rows_per_step * args.tune_steps]
    rows = Path(args.out) / "tune_rows.jsonl"
    write_jsonl(rows, (r.raw for r in records))
    longest = max(len(x) for x in tokenizer([r.text for r in records])["input_ids"]) + 32  # template tokens
    step_tokens = rows_per_step * min(longest, settings.max_length)
    free = (torch.cuda.mem_get_info()[0] if cuda else _free_host_bytes()) / 2**30
    plain = tune_memory_gb(config, step_tokens, checkpointing=False)
    checkpointing = plain > 0.85 * free
    need = tune_memory_gb(config, step_tokens, checkpointing)
    say(
        f"  {rows_per_step} rows per step, padded to {min(longest, settings.max_length)} tokens: estimated "
        f"{plain:.0f} GB without gradient checkpointing, {free:.0f} GB free -> checkpointing {checkpointing}"
    )
    if need > 0.95 * free:
        say(f"  skipped daar tune: about {need:.0f} GB needed even with checkpointing, {free:.0f} GB free")
        return {"skipped": "memory", "estimate_gb": round(need, 1), "free_gb": round(free, 1)}
    settings = settings.model_copy(update={"gradient_checkpointing": checkpointing})

    def random_weights(folder: Path, dtype, device: str, trust_remote_code: bool = False):
        return random_model(config, device).eval()

    real = lora.load_causal_lm
    lora.load_causal_lm = random_weights
    out = Path(args.out) / f"tune-{shape}"
    shutil.rmtree(out, ignore_errors=True)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        result = tune(rows, str(folder), out, settings)
    except torch.cuda.OutOfMemoryError as err:
        say(f"  daar tune ran out of memory (checkpointing {checkpointing}): {str(err)[:200]}")
        return {"skipped": "out of memory", "gradient_checkpointing": checkpointing}
    finally:
        lora.load_causal_lm = real
    m = result.manifest
    found = {
        "shape": shape,
        "steps": m["steps"],
        "rows_per_step": rows_per_step,
        "seconds": round(time.perf_counter() - start, 2),
        "seconds_per_step": m["seconds_per_step"],
        "tokens_per_second": m["tokens_per_second"],
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "gradient_checkpointing": checkpointing,
        "trainable_parameters": m["trainable_parameters"],
    }
    say(f"  daar tune: {found}")
    return found


def _free_host_bytes() -> int:
    import psutil

    return psutil.virtual_memory().available


def ray_check(args: argparse.Namespace, budget, device: str) -> dict:
    """One GPU, two Ray actors of 0.5 GPU each: the selection must be the local scorer's."""
    say(f"== Ray on one GPU: 2 actors x 0.5 GPU against local scoring ({budget.left():.0f} s of the budget left)")
    try:
        import ray  # noqa: F401
    except ImportError:
        say("  skipped the Ray check: ray is not installed here (carry its wheel)")
        return {"skipped": "no ray"}
    if device != "cuda":
        say("  skipped the Ray check: no GPU (tests/scale covers the CPU path)")
        return {"skipped": "no GPU"}
    if not budget.allows("the Ray check", 120):
        return {"skipped": "budget"}
    from daar.config import SelectConfig
    from daar.pipeline import sample_pool
    from daar.read import read_pool
    from daar.scale.cut import select_from_scores
    from daar.scale.fit import fit_pool
    from daar.scale.score import score_pool
    from daar.utils.cache import write_jsonl

    work = Path(args.out) / "ray-check"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pool = work / "pool.jsonl"
    rows = sample_pool(read_pool(args.pool), args.ray_rows, SelectConfig().seed)[0].records
    write_jsonl(pool, (r.raw for r in rows))
    from gpu_shapes import build

    model = build(args.ray_shape, Path(args.tokenizer), Path(args.out) / "models" / args.ray_shape, device)
    config = SelectConfig(model=str(model), examples_file=args.examples_file, device="cuda", probe_size=2000)
    start = time.perf_counter()
    fit_pool(config, pool, work / "fitted")
    found: dict = {"rows": len(rows), "fit_seconds": round(time.perf_counter() - start, 2)}
    for name, extra in (("local", {}), ("ray", {"executor": "ray", "workers": 2, "gpus_per_worker": 0.5})):
        start = time.perf_counter()
        score_pool(pool, work / "fitted", work / f"scores-{name}", chunk_rows=1024, **extra)
        found[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
        select_from_scores(work / f"scores-{name}", work / f"run-{name}")
        say(f"  {name}: scored in {found[f'{name}_seconds']} s")
    selected = [(work / f"run-{n}" / "selected.jsonl").read_bytes() for n in ("local", "ray")]
    found["same_selection"] = selected[0] == selected[1]
    import pandas as pd

    scores = [pd.read_parquet(work / f"run-{n}" / "scores.parquet").set_index("id")["score"] for n in ("local", "ray")]
    found["max_score_difference"] = float((scores[0] - scores[1].loc[scores[0].index]).abs().max())
    found["selected_rows"] = selected[0].count(b"\n")
    say(f"  same selection: {found['same_selection']}; {json.dumps(found)}")
    return found
