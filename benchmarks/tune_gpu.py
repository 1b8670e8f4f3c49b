"""`daar tune` at the paper's settings on a GPU: where a step's time goes, and each way of running it.

Prints each figure as soon as it is measured and stops starting new runs at --budget-s:

1. a profile of a few optimiser steps of today's path (one pass of 16 rows right-padded to the
   longest): wall time per step against the time the GPU was busy, kernel launches per step, and
   the operators with the most self time on the CPU and on the GPU;
2. `daar tune` runs of --steps steps for each variant x seed: padded (today's path), packed (the
   new one-pass default: rows joined, no padding) and packed+compile (decoder layers compiled):
   seconds per step, tokens/s and the logged loss at steps 50, 100 and 200 (each the mean over the
   10 steps before it), so the variants' curves can be held against the seed-to-seed spread.

    python benchmarks/tune_gpu.py --pool POOL --budget-s 150 --out /tmp/tunebench
    python benchmarks/tune_gpu.py --pool POOL --device cpu --rows 64 --steps 3 --profile-steps 1  # smoke test
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

import torch

VARIANTS = {"padded": (False, False), "packed": (True, False), "packed+compile": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rows", type=int, default=3200, help="rows drawn from the pool (seed 0) to tune on")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--variants", default="padded,packed,packed+compile")
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--budget-s", type=float, default=150.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tune_gpu"))
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    selection = draw_rows(args.pool, args.rows, args.out / "selection.jsonl")
    print(f"# {args.rows} rows of {args.pool.name}; model {args.model}; budget {args.budget_s:.0f} s", flush=True)
    if args.profile_steps:
        profile(selection, args.model, args.device, args.profile_steps)
    results = []
    for variant in args.variants.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            left = args.budget_s - (time.perf_counter() - started)
            if left < 10:
                print(f"# budget spent: {variant} seed {seed} not run", flush=True)
                continue
            results.append(run(selection, args, variant, seed))
            (args.out / "tune_gpu.json").write_text(json.dumps(results, indent=2))
    print(f"# done in {time.perf_counter() - started:.0f} s; {args.out / 'tune_gpu.json'}", flush=True)


def draw_rows(pool: Path, rows: int, target: Path) -> Path:
    opener = gzip.open if pool.suffix == ".gz" else open
    with opener(pool, "rt", encoding="utf-8") as handle:
        lines = handle.readlines()
    chosen = random.Random(0).sample(lines, min(rows, len(lines)))
    target.write_text("".join(chosen), encoding="utf-8")
    return target


def run(selection: Path, args: argparse.Namespace, variant: str, seed: int) -> dict:
    from daar.tune import TuneConfig, tune

    packing, compiled = VARIANTS[variant]
    settings = TuneConfig(
        device=args.device, seed=seed, max_steps=args.steps, packing=packing, compile=compiled, logging_steps=10
    )
    out = args.out / f"{variant}-s{seed}"
    clock = time.perf_counter()
    result = tune(selection, args.model, out, settings)
    wall = time.perf_counter() - clock
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = {str(row["step"]): round(row["loss"], 4) for row in log if row["step"] in (50, 100, 200)}
    m = result.manifest
    found = {
        "variant": variant,
        "seed": seed,
        "wall_s": round(wall, 1),
        "s_per_step": m["seconds_per_step"],
        "tokens_per_s": m["tokens_per_second"],
        "loss": losses,
        "compile_error": m.get("compile_error"),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
    }
    print(json.dumps(found), flush=True)
    return found


def profile(selection: Path, model: str, device: str, steps: int) -> None:
    """Today's step (one pass of 16 padded rows, AdamW, clipping) under torch.profiler."""
    from peft import LoraConfig, get_peft_model
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from daar.models import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model
    from daar.read import read_pool
    from daar.tune.data import PadCollator, build_examples, choose_template

    device = pick_device(device)
    folder = resolve_model(model)
    tokenizer = load_tokenizer(folder)
    records = read_pool(selection).records[: 16 * (steps + 2)]
    items = build_examples(records, tokenizer, choose_template(tokenizer), 2048)
    base = load_causal_lm(folder, dtype=pick_dtype("auto", device), device=device)
    base.config.use_cache = False
    net = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"))
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=5e-5)
    collate = PadCollator(int(tokenizer.pad_token_id))
    batches = [collate(items.items[i : i + 16]) for i in range(0, len(items.items), 16)]

    def step(batch: dict) -> None:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=device != "cpu"):
            loss = net(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:2]:
        step(batch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    _sync(device)
    clock = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        for batch in batches[2 : 2 + steps]:
            step(batch)
        _sync(device)
    wall = (time.perf_counter() - clock) / steps
    events = prof.key_averages()
    gpu_busy = sum(e.self_device_time_total for e in events) / 1e6 / steps
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[2 : 2 + steps]) / steps
    print(
        f"# profile, today's path: {wall:.3f} s per step ({tokens:.0f} tokens, {tokens / wall:.0f} tokens/s), "
        f"GPU busy {gpu_busy:.3f} s per step ({100 * gpu_busy / wall:.0f}%), {launches / steps:.0f} kernel "
        "launches per step",
        flush=True,
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=12), flush=True)
    if device.startswith("cuda"):
        print(events.table(sort_by="self_cuda_time_total", row_limit=12), flush=True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
