"""Full-pool benchmark: DaaR end to end on the 16,000-row shared pool, run by hand.

    .venv/bin/python benchmarks/full_pool.py [--pool PATH] [--out runs/bench-full] [--fresh]
    .venv/bin/python benchmarks/full_pool.py --memory-only

Prints rows/s per stage, total wall time and peak RSS, measures one bare forward pass of the
truncated model over the same tokens in the same process (the floor for the feature work) and
prints the ratio, and compares with the authors' procedure (1.6-1.7 s per row per padded pass,
3 x 5,000 + 16,000 passes, measured on this machine). The memory check builds a random
24-layer checkpoint and measures the peak RSS of feature extraction with clip_layer=3 in a fresh
process against 1.5 x (embedding matrix + 3 layers) bytes, in the dtype `daar select` picks on
this CPU (prober_dtype: bf16 layers and an fp32 embedding table where the CPU has bf16 units).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"
AUTHORS_SECONDS_PER_PASS = 1.65


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_pass(model_dir: Path, texts: list[str], clip_layer: int, batch_tokens: int) -> tuple[float, int]:
    """Seconds for one forward pass of the truncated model over `texts`, length-bucketed, no pooling."""
    import torch

    from daar.embed import length_batches
    from daar.embed.batching import pad_right
    from daar.models import load_tokenizer, load_truncated

    tokenizer = load_tokenizer(model_dir)
    model = load_truncated(model_dir, clip_layer)
    ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
    import numpy as np

    lengths = np.array([len(x) for x in ids])
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in length_batches(lengths, batch_tokens):
            input_ids, mask = pad_right([ids[i] for i in batch], tokenizer.pad_token_id)
            model(input_ids=input_ids, attention_mask=mask)
    return time.perf_counter() - start, int(lengths.sum())


def run_full(pool: Path, out: Path, fresh: bool, skip_bare: bool) -> None:
    from daar.config import SelectConfig
    from daar.pipeline import run_select
    from daar.read import read_pool

    if fresh and out.exists():
        shutil.rmtree(out)
    config = SelectConfig()
    start = time.perf_counter()
    result = run_select(config, pool, out, show_domain_field="domain")
    wall = time.perf_counter() - start
    manifest = result.manifest
    rows = manifest["counts"]["scored"]
    print(f"\nDaaR on {pool} ({rows} rows), default model, clip_layer {config.clip_layer}")
    print(f"{'stage':<16}{'seconds':>10}{'rows/s':>12}  cached")
    for name, info in manifest["stages"].items():
        secs = info["seconds"]
        rate = f"{rows / secs:,.0f}" if secs > 0 else "-"
        print(f"{name:<16}{secs:>10.1f}{rate:>12}  {'yes' if info['cached'] else ''}")
    print(f"{'total':<16}{wall:>10.1f}{rows / wall:>12,.1f}")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB")
    authors = (3 * min(5000, rows) + rows) * AUTHORS_SECONDS_PER_PASS
    print(
        f"authors' procedure (estimated): {authors / 3600:.1f} h; "
        f"this run: {wall / 60:.1f} min, {authors / wall:.0f}x faster"
    )
    if skip_bare:
        return
    texts = read_pool(pool).texts
    from daar.embed.batching import DEFAULT_BATCH_TOKENS
    from daar.models import resolve_model

    # The floor is the bare pass: 8k-token batches, nothing kept, no memory given back.
    bare_tokens = config.batch_tokens or DEFAULT_BATCH_TOKENS
    seconds, tokens = bare_pass(resolve_model(config.model), texts, config.clip_layer, bare_tokens)
    feature = manifest["stages"]["features"]["seconds"]
    rate = tokens / seconds
    print(f"bare pass, {bare_tokens}-token batches: {tokens:,} tokens in {seconds:.1f} s ({rate:,.0f} tokens/s)")
    cached = manifest["stages"]["features"]["cached"]
    note = " (features were cached in this run; use --fresh)" if cached else ""
    print(f"feature stage / bare pass: {feature / seconds:.2f}{note}")


MEMORY_CHILD = r"""
import json, sys, time, torch
import transformers.models.llama.modeling_llama  # library code is loaded before measuring: not model bytes
from transformers import AutoConfig, AutoModel
from daar.embed import FeatureExtractor
from daar.models import load_tokenizer, prober_dtype
def rss(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field): return int(line.split()[1]) * 1024
torch.set_num_threads(2)
load_tokenizer(sys.argv[1])
dtype = prober_dtype("auto", "cpu")
with torch.inference_mode():  # warm the kernels on a one-layer toy so their code pages are not counted
    tiny = AutoConfig.from_pretrained(sys.argv[1], num_hidden_layers=1, hidden_size=64, intermediate_size=128,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
    toy = AutoModel.from_config(tiny).to(dtype)  # in the prober's dtype: bf16 kernels are JIT-built on first use
    toy(input_ids=torch.ones(2, 8, dtype=torch.long), attention_mask=torch.ones(2, 8))
before = rss()
extractor = FeatureExtractor(sys.argv[1], 3, batch_tokens=int(sys.argv[2]) or None, dtype=dtype)
loaded = rss()
texts = [f"Instruction: question number {i} about a topic\nOutput: " + "word " * (i % 300) for i in range(600)]
start = time.perf_counter()
extractor.extract(texts)
print(json.dumps({"before": before, "loaded": loaded, "peak": rss("VmHWM"), "seconds": time.perf_counter() - start,
                  "batch_tokens": extractor.batch_tokens}))
"""


# Shapes of real 24+-layer checkpoints, filled with random weights. Activations grow with the
# hidden size and weights with its square, so the small-hidden shape is the hard case.
SHAPES = {
    "qwen2.5-0.5b": dict(
        arch="qwen2", hidden=896, layers=24, intermediate=4864, heads=14, kv_heads=2, vocab=151936, tie=True
    ),
    "smollm2-135m x 24 layers": dict(
        arch="llama", hidden=576, layers=24, intermediate=1536, heads=9, kv_heads=3, vocab=49152, tie=True
    ),
}


def memory_check(shape: str = "qwen2.5-0.5b", batch_tokens: int = 0) -> bool:
    """Peak RSS growth of clip_layer=3 feature extraction on a generated checkpoint, in a fresh process."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from daar.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "deep"
        spec = SHAPES[shape]
        layers = spec["layers"]
        config = (LlamaConfig if spec["arch"] == "llama" else Qwen2Config)(
            vocab_size=spec["vocab"],
            hidden_size=spec["hidden"],
            intermediate_size=spec["intermediate"],
            num_hidden_layers=layers,
            num_attention_heads=spec["heads"],
            num_key_value_heads=spec["kv_heads"],
            tie_word_embeddings=spec["tie"],
        )
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        from safetensors import safe_open

        sizes: dict[str, int] = {}
        for file in folder.glob("*.safetensors"):
            with safe_open(file, "pt") as handle:
                for key in handle.keys():
                    tensor = handle.get_tensor(key)
                    sizes[key] = tensor.numel() * tensor.element_size()
        total = sum(sizes.values())
        needed = sum(v for k, v in sizes.items() if "embed_tokens" in k or any(f"layers.{i}." in k for i in range(3)))
        child = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(folder), str(batch_tokens)], capture_output=True, text=True
        )
        if child.returncode != 0:
            print(child.stderr[-2000:])
            return False
        report = json.loads(child.stdout.strip().splitlines()[-1])
    growth = report["peak"] - report["before"]
    limit = 1.5 * needed
    mb = 1024**2
    print(
        f"\nmemory check, {shape} shape: {layers}-layer checkpoint {total / mb:.0f} MB; "
        f"embedding + 3 layers {needed / mb:.0f} MB"
    )
    print(f"RSS growth after loading the truncated model: {(report['loaded'] - report['before']) / mb:.0f} MB")
    print(
        f"peak RSS growth during clip_layer=3 extraction (batches of {report['batch_tokens']} tokens, "
        f"{report['seconds']:.1f} s): {growth / mb:.0f} MB (limit 1.5x = {limit / mb:.0f} MB)"
    )
    ok = growth < limit
    print("memory check:", "PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-full")
    parser.add_argument("--fresh", action="store_true", help="delete --out first, so nothing is cached")
    parser.add_argument("--memory-only", action="store_true")
    parser.add_argument(
        "--batch-tokens", type=int, default=0, help="prober batch size of the memory check (0: the automatic size)"
    )
    parser.add_argument("--skip-bare", action="store_true", help="do not measure the bare forward pass")
    args = parser.parse_args()
    if not args.memory_only:
        run_full(args.pool, args.out, args.fresh, args.skip_bare)
    results = [memory_check(shape, args.batch_tokens) for shape in SHAPES]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
