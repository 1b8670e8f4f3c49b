"""DaaR at scale on a GPU: random-weight models of real shapes, timed stage by stage, within a
time budget, every figure printed (and flushed) as soon as it is measured.

Run on a GPU machine (everything also runs on CPU, as a smoke test):

    python benchmarks/gpu.py --pool POOL --tokenizer TOKENIZER_DIR \\
        --examples-file configs/examples_smollm2_generated.yaml \\
        --shapes smollm2,qwen2-7b,llama3-8b --out runs/gpu --budget-s 300 [--tune-shape qwen2-7b] [--ray-check]
    python benchmarks/gpu.py ... --shapes tiny --sample 500 --out runs/gpu-cpu   # CPU smoke test

Weights are random: a prober's speed depends on its width, not on what it learned. For each shape,
in this order, while the budget lasts (a step that would not fit is skipped with a printed reason):

1. the checkpoint: 4 decoder layers (the prober reads 3), made on the GPU and saved;
2. the feature stage as `daar select` runs it (load, then the pass into memory maps), the same
   pass one stage at a time (tokenise / pad / host-to-device / forward / device-to-host / write,
   on the first `--split-rows` rows), a torch.profiler table of the pass (`--profile-rows` rows),
   and the bare model over the same texts at the batch size daar chose and at `--bare-tokens`;
3. with `--select`, `daar select` end to end; with `--paper-heads`, both heads with the authors'
   batch-1 schedule (4,850 steps) at the shape's width.

Then `daar tune` on a whole 7B-shaped model (`--tune-shape`, all layers, random weights made on the
GPU instead of read from a 15 GB checkpoint, LoRA, bf16, gradient checkpointing when the estimate
says the activations would not fit): tokens/s and peak memory. `--ray-check` (needs ray) scores a
sample on one GPU with two Ray actors of 0.5 GPU each and checks that the selection is the local one.

Why the earlier version printed nothing in 200 s for qwen2-7b: it printed only after a whole shape,
and a shape did all of this in a row: built the 1.3 B-parameter checkpoint on the CPU (random
init of every tensor, measured 71 s on 2 cores here, plus a 17 s save), ran the full `daar select`
(63.6 s measured in the issue, a third of it model loading, heads and the map), a bare pass over
all 16k rows at four batch sizes, and both paper-schedule heads (9,700 optimizer steps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gpu_profile import bare, feature_stage, profile, say, split
from gpu_shapes import SHAPES, build


class Budget:
    """Seconds left of --budget-s; a step starts only if its estimate fits, else says why not."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds - _process_age()  # imports count too

    def left(self) -> float:
        return self.end - time.perf_counter()

    def allows(self, step: str, estimate: float) -> bool:
        if self.left() >= estimate:
            return True
        say(f"  skipped {step}: about {estimate:.0f} s needed, {max(self.left(), 0):.0f} s of the budget left")
        return False


def _process_age() -> float:
    try:
        import psutil  # accelerate's dependency, so on any machine daar tunes on

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # no psutil: the budget counts from here
        return 0.0


def attempt(step: str, run, *args, **kwargs):
    """`run(...)`, or None after printing why it failed: one failed step never costs the others."""
    try:
        return run(*args, **kwargs)
    except Exception as err:  # reported, and the benchmark goes on
        say(f"  {step} failed: {type(err).__name__}: {str(err)[:300]}")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def run_shape(shape: str, args: argparse.Namespace, texts: list[str], budget: Budget, device: str) -> dict:
    from daar.embed import FeatureExtractor
    from daar.models import prober_dtype

    wide = SHAPES[shape][1] >= 2048
    result: dict = {"shape": shape, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}
    say(f"== {shape} ({len(texts)} rows, {budget.left():.0f} s of the budget left)")
    if not budget.allows(f"{shape} (checkpoint)", 40 if wide else 10):
        return result
    start = time.perf_counter()
    folder = attempt("checkpoint", build, shape, Path(args.tokenizer), Path(args.out) / "models" / shape, device)
    if folder is None:
        return result
    result["build_seconds"] = round(time.perf_counter() - start, 2)
    say(f"  checkpoint made and saved: {result['build_seconds']} s")
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    extractor = attempt(
        "loading the prober", FeatureExtractor, folder, 3, device=device, dtype=prober_dtype("auto", device)
    )
    if extractor is None:
        return result
    result["load_seconds"] = round(time.perf_counter() - start, 2)
    result["batch_tokens"] = extractor.batch_tokens
    say(f"  prober loaded in {result['load_seconds']} s; batch of {extractor.batch_tokens} tokens")
    start = time.perf_counter()
    attempt("warm-up", extractor.extract, texts[:256])  # first kernels and allocations, off the clock
    say(f"  warm-up pass over 256 rows: {time.perf_counter() - start:.2f} s")
    work = Path(args.out) / "features" / shape
    if budget.allows(f"{shape} feature stage", 60 if wide else 20):
        found = attempt("feature stage", feature_stage, extractor, texts, work)
        if found is not None:
            result["features"] = found
            if device == "cuda":
                found["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            say(f"  feature stage (daar's pass into memory maps): {found}")
    if budget.allows(f"{shape} stage split", 30 if wide else 10):
        found = attempt("stage split", split, extractor, texts[: args.split_rows], work)
        if found is not None:
            result["split"] = found
            say(f"  one stage at a time, {min(len(texts), args.split_rows)} rows: {found}")
    if budget.allows(f"{shape} profile", 20 if wide else 10):
        result["profile"] = attempt("profile", profile, extractor, texts[: args.profile_rows])
    sizes = sorted({extractor.batch_tokens, *args.bare_tokens})
    if budget.allows(f"{shape} bare pass", (15 if wide else 5) * len(sizes)):
        found = attempt("bare pass", bare, extractor, texts, sizes)
        if found:
            result["bare"] = found
            best = min(v["seconds"] for v in found.values())
            if "features" in result:
                result["features_share_of_bare"] = round(best / result["features"]["seconds"], 3)
                say(f"  feature stage at {result['features_share_of_bare']:.0%} of the best bare pass ({best} s)")
    del extractor
    if device == "cuda":
        torch.cuda.empty_cache()
    if args.select and budget.allows(f"{shape} daar select", 120 if wide else 60):
        result.update(attempt("daar select", select_timing, shape, folder, args, device) or {})
    if args.paper_heads and budget.allows(f"{shape} paper heads", 40):
        result["paper_heads_seconds"] = attempt("paper heads", paper_heads, SHAPES[shape][1], device)
        say(f"  both heads, the authors' schedule: {result['paper_heads_seconds']} s")
    if args.eval_limit and shape == args.shapes.split(",")[0] and budget.allows("daar eval", 60):
        from daar.evaluate import evaluate

        start = time.perf_counter()
        done = attempt(
            "daar eval", evaluate, str(folder), mode="nll", limit=args.eval_limit, device=device, batch_size=64,
            data_dir=args.bench,
        )  # fmt: skip
        if done is not None:
            result["eval_nll_seconds"] = round(time.perf_counter() - start, 2)
            say(f"  daar eval (NLL, {args.eval_limit} items per task): {result['eval_nll_seconds']} s")
    return result


def select_timing(shape: str, folder: Path, args: argparse.Namespace, device: str) -> dict:
    from daar.config import SelectConfig
    from daar.pipeline import run_select

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    config = SelectConfig(model=str(folder), examples_file=args.examples_file, device=device, sample=args.sample)
    start = time.perf_counter()
    run = run_select(config, Path(args.pool), Path(args.out) / "select" / shape, report=False)
    found = {
        "select_seconds": round(time.perf_counter() - start, 2),
        "stages": {k: v["seconds"] for k, v in run.manifest["stages"].items()},
    }
    if device == "cuda":
        found["select_peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    say(f"  daar select (no map, no report): {found}")
    return found


def paper_heads(width: int, device: str) -> float:
    """Both heads with the authors' schedule (4,850 steps at batch 1) on random features of this
    width: the schedule is fixed, so random features time it as well as real ones."""
    from daar.config import PAPER_HEADS
    from daar.probe.heads import train_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, width)).astype(np.float32)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    train_head(x, rng.integers(0, 4, len(x)), "classify", 4, PAPER_HEADS, seed=0, device=device)
    train_head(x, rng.random(len(x)), "regress", 1, PAPER_HEADS, seed=0, device=device)
    sync()
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--tokenizer", required=True, help="folder with the SmolLM2 tokenizer files")
    parser.add_argument("--examples-file", required=True)
    parser.add_argument("--shapes", default="smollm2,qwen2-7b,llama3-8b")
    parser.add_argument("--budget-s", type=float, default=300, help="stop starting steps after this many seconds")
    parser.add_argument("--sample", type=int, default=None, help="a seeded sample of the pool (a CPU smoke test)")
    parser.add_argument("--split-rows", type=int, default=4096)
    parser.add_argument("--profile-rows", type=int, default=2048)
    parser.add_argument("--bare-tokens", default="32768", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--select", action="store_true", help="also time `daar select` end to end per shape")
    parser.add_argument("--paper-heads", action="store_true", help="also time the authors' head schedule")
    parser.add_argument("--tune-shape", default="qwen2-7b", help="shape for `daar tune` ('' to skip)")
    parser.add_argument("--tune-steps", type=int, default=6)
    parser.add_argument("--ray-check", action="store_true", help="two Ray actors at 0.5 GPU against local")
    parser.add_argument("--ray-rows", type=int, default=4000, help="rows the Ray check scores")
    parser.add_argument("--ray-shape", default="smollm2", help="the prober shape of the Ray check")
    parser.add_argument("--eval-limit", type=int, default=0, help="`daar eval` NLL smoke test on the first shape")
    parser.add_argument("--bench", default=None, help="benchmark folder for --eval-limit (default: daar's lookup)")
    parser.add_argument("--out", default="runs/gpu")
    args = parser.parse_args()
    budget = Budget(args.budget_s)
    from daar.config import SelectConfig
    from daar.pipeline import sample_pool  # the rows `daar select --sample` reads
    from daar.read import read_pool

    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}; torch {torch.__version__}")
    texts = sample_pool(read_pool(args.pool), args.sample, SelectConfig().seed)[0].texts
    results: dict = {"shapes": []}

    def save() -> None:
        (out / "gpu.json").write_text(json.dumps(results, indent=2))

    for shape in [s for s in args.shapes.split(",") if s]:
        results["shapes"].append(attempt(shape, run_shape, shape, args, texts, budget, device) or {"shape": shape})
        save()
    if args.tune_shape:
        from gpu_tune import tune_timing

        results["tune"] = attempt("daar tune", tune_timing, args.tune_shape, args, budget, device)
        save()
    if args.ray_check:
        from gpu_tune import ray_check

        results["ray_check"] = attempt("the Ray check", ray_check, args, budget, device)
        save()
    print_table(results["shapes"])
    say(f"done with {budget.left():.0f} s of the budget left; all figures in {out / 'gpu.json'}")


def print_table(results: list[dict]) -> None:
    """The docs/RESULTS.md table: load, feature stage, bare passes and the ratio."""
    sizes = sorted({int(k) for r in results for k in r.get("bare", {})})
    head = ["shape", "device", "load s", "batch tokens", "features s", "peak GB"]
    head += [f"bare {b // 1024}k s" for b in sizes] + ["features / best bare", "forward share (split)"]
    say("| " + " | ".join(head) + " |")
    say("|" + "---|" * len(head))
    for r in results:
        feats = r.get("features", {})
        cells = [r["shape"], r.get("device", "-"), r.get("load_seconds", "-"), r.get("batch_tokens", "-")]
        cells += [feats.get("seconds", "-"), feats.get("peak_gpu_gb", "-")]
        cells += [r.get("bare", {}).get(str(b), {}).get("seconds", "-") for b in sizes]
        share = r.get("features_share_of_bare")
        cells += [f"{share:.0%}" if share is not None else "-"]
        cells += [f"{r['split']['share']['forward']:.0%}" if "split" in r else "-"]
        say("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
