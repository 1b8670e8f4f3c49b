"""How much do two `daar select` runs that differ only in --seed agree, with and without an ensemble?

    .venv/bin/python benchmarks/ensemble_stability.py --out runs/stability \
        [--variants 'default:,ensemble5:ensemble=5,ens-len:ensemble=5;reward_adjust=length'] [--seeds 42,43,44,45,46]

Each variant is run once per seed through `run_select` on the whole pool (20%, the default
`balanced` cut, SmolLM2's own examples from configs/examples_smollm2_generated.yaml), all runs
sharing one cache (daar's shared user cache unless --cache-dir), so the prober's features are
computed once and an ensemble's member 0 is the plain run's fit. Printed per variant, as each
finishes: the overlap of every pair of seeds' selections (shared rows / selected rows; mean and
min), the true-domain balance of the selections (the pool's `domain` field, read for this figure
only; 1 = every domain equally represented), the mean text length of the selected rows, and the
seconds of the runs after the first.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"


def parse_variants(text: str) -> dict[str, dict]:
    """'name:key=value;key=value,name2:' -> {name: {key: value}} (values read as YAML scalars)."""
    found = {}
    for item in text.split(","):
        name, _, settings = item.partition(":")
        pairs = [p.split("=", 1) for p in settings.split(";") if p]
        found[name] = {k: yaml.safe_load(v) for k, v in pairs}
    return found


def main() -> None:
    from daar.analyze.diversity import domain_mix, encode_labels
    from daar.config import SelectConfig
    from daar.pipeline import run_select, truth_labels
    from daar.read import read_pool

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", default="42,43,44,45,46", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--variants", default="default:,ensemble5:ensemble=5,ens-len:ensemble=5;reward_adjust=length")
    parser.add_argument("--examples-file", type=Path, default=ROOT / "configs" / "examples_smollm2_generated.yaml")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: daar's shared user cache")
    args = parser.parse_args()

    pool = read_pool(args.pool)
    truth, names = encode_labels(truth_labels(pool, "domain") or [])
    position = {r.id: i for i, r in enumerate(pool.records)}
    chars = np.array([len(t) for t in pool.texts])
    print("| variant | seeds | overlap between seeds, mean | min | balance, mean | min | chars per row | s per run |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|", flush=True)
    for name, settings in parse_variants(args.variants).items():
        picks, seconds = [], []
        for seed in args.seeds:
            config = SelectConfig.model_validate({"examples_file": str(args.examples_file), "seed": seed, **settings})
            clock = time.perf_counter()
            run = run_select(config, args.pool, args.out / f"{name}-{seed}", cache_dir=args.cache_dir, report=False)
            seconds.append(time.perf_counter() - clock)
            picks.append(np.array(sorted(position[i] for i in run.selected_ids)))
        sets = [set(p.tolist()) for p in picks]
        overlaps = [len(a & b) / len(a) for a, b in itertools.combinations(sets, 2)]
        balances = [domain_mix(truth[p], names)["normalized_entropy"] for p in picks]
        later = np.mean(seconds[1:]) if len(seconds) > 1 else seconds[0]
        print(
            f"| {name} | {len(picks)} | {np.mean(overlaps):.3f} | {min(overlaps):.3f} | {np.mean(balances):.3f} | "
            f"{min(balances):.3f} | {np.mean([chars[p].mean() for p in picks]):.0f} | {later:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
