"""How much does the heads' batch size move DaaR's selection? (run by hand; docs/RESULTS.md "Heads at 7B width")

    .venv/bin/python benchmarks/head_schedules.py --examples-file S.yaml --cache-dir C [--sample 0]
        [--schedules default:8:1e-4,b256:256:5.7e-4] [--seeds 42,43] [--out /tmp/head_schedules]

A 7B-wide head (58 M parameters) steps at about the same speed for batch 1 and batch 64 on a CPU,
because its time is the optimizer pass over every parameter, so a larger batch is the only way to
make an epoch short there. Whether that is allowed depends on what it does to the selection, which
this measures with the prober whose real features we have (SmolLM2-135M, width 576).

Each schedule `name:batch:lr` runs `daar select` (the pipeline, in this process) on the same pool,
seed rows and cached features, once per `--seeds` value. The first schedule at the first seed is
the reference. Printed per run: the heads' seconds and epochs, probe accuracy, reward Spearman, the
true-domain balance of the selection (the pool's `domain` field, read for evaluation only) and the
share of the reference's selected rows it also selects. The reference at another seed gives the
run-to-run spread that any other schedule's overlap should be read against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"


def parse_schedules(text: str) -> list[tuple[str, int, float]]:
    out = []
    for item in text.split(","):
        name, batch, lr = item.split(":")
        out.append((name, int(batch), float(lr)))
    return out


def main() -> None:
    from daar.config import HeadConfig, SelectConfig
    from daar.pipeline import run_select

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--examples-file", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/head_schedules"))
    parser.add_argument("--sample", type=int, default=0, help="0: the whole pool")
    parser.add_argument("--schedules", type=parse_schedules, default=parse_schedules("default:8:1e-4"))
    parser.add_argument("--seeds", default="42,43", type=lambda s: [int(x) for x in s.split(",")])
    args = parser.parse_args()

    rows = []
    reference: set[str] | None = None
    for name, batch, lr in args.schedules:
        for seed in args.seeds:
            config = SelectConfig(
                examples_file=args.examples_file,
                sample=args.sample or None,
                seed=seed,
                heads=HeadConfig(batch_size=batch, lr=lr),
            )
            out = args.out / f"{name}-{seed}"
            run_select(config, args.pool, out, cache_dir=args.cache_dir, show_domain_field="domain", report=False)
            manifest = json.loads((out / "manifest.json").read_text())
            scores = pd.read_parquet(out / "scores.parquet", columns=["id", "selected"])
            chosen = set(scores.loc[scores["selected"], "id"])
            reference = chosen if reference is None else reference
            stages, probe, reward = manifest["stages"], manifest["probe"], manifest["reward"]
            rows.append(
                {
                    "schedule": name,
                    "batch": batch,
                    "lr": lr,
                    "seed": seed,
                    "heads_s": round(stages["probe"]["seconds"] + stages["reward"]["seconds"], 1),
                    "epochs": f"{probe['epochs']:.0f}+{reward['epochs']:.0f}",
                    "probe_acc": round(probe["val_accuracy"], 3),
                    "reward_spearman": round(reward["val_spearman"], 3),
                    "true_balance": round(manifest["ground_truth"]["selected"]["normalized_entropy"], 3),
                    "overlap": round(len(chosen & reference) / len(reference), 3),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
