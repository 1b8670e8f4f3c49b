"""Which seeded step makes two DaaR runs select different rows? (run by hand; docs/RESULTS.md)

    .venv/bin/python benchmarks/selection_stability.py --features CACHE/features/KEY \
        --fitted RUN/fitted [--seeds 42,43,44,45,46]

Two default runs of the 16k pool that differ only in `--seed` share about 60% of their selected
rows (benchmarks/head_schedules.py). A seed enters four steps: the draw of the 5,000 probe rows,
k-means, the probe head and the reward head. This varies one group at a time, all else at the
first seed, on cached features and fixed seed centroids, and cuts 20% with the default `balanced`
strategy, as `daar select` does. It also ranks by the probe's own entropy (no reward model), to
see how much of the spread the regression adds. Printed per variant: mean overlap of the
selections over all seed pairs, and the true-domain balance (the pool's `domain` field, read for
evaluation only).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POOL = ROOT.parent / "shared" / "data" / "pool" / "pool.jsonl.gz"


def main() -> None:
    from daar.analyze.diversity import domain_mix, encode_labels
    from daar.config import HeadConfig
    from daar.embed import load_cached
    from daar.pipeline import truth_labels
    from daar.probe.domains import probe_rows, pseudo_labels
    from daar.probe.entropy import entropy, softmax
    from daar.probe.heads import train_head
    from daar.read import read_pool
    from daar.select.daar import DaarSelector
    from daar.select.strategies import balanced

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--fitted", type=Path, required=True, help="a run's fitted/ folder: its domains and centroids")
    parser.add_argument("--seeds", default="42,43,44,45,46", type=lambda s: [int(x) for x in s.split(",")])
    args = parser.parse_args()

    features = load_cached(args.features)
    assert features is not None, f"{args.features}: no finished feature pass"
    emb, hid = features.emb, features.hid
    fitted = DaarSelector.load(args.fitted)
    domains, centroids = fitted.domains, fitted.centroids
    truth, names = encode_labels(truth_labels(read_pool(args.pool), "domain") or [])

    def balance(rows: np.ndarray) -> float:
        return domain_mix(truth[rows], names)["normalized_entropy"]

    cfg = HeadConfig()
    n = len(hid) // 5
    first = args.seeds[0]

    def probe_set(seed: int) -> tuple[np.ndarray, np.ndarray]:
        idx = probe_rows(len(emb), 5000, seed)
        return idx, pseudo_labels(emb[idx], centroids, seed)[0]

    probes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def probed(set_seed: int, probe_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probe rows, their entropies, every row's probabilities), trained once per seed pair."""
        if (set_seed, probe_seed) not in probes:
            idx, labels = probe_set(set_seed)
            probe = train_head(hid[idx], labels, "classify", len(centroids), cfg, probe_seed)
            probe_entropy = entropy(softmax(probe.predict(hid[idx])))
            probes[set_seed, probe_seed] = idx, probe_entropy, softmax(probe.predict(hid))
        return probes[set_seed, probe_seed]

    def run(set_seed: int, probe_seed: int, reward_seed: int) -> dict[str, np.ndarray]:
        idx, probe_entropy, probs = probed(set_seed, probe_seed)
        reward = train_head(hid[idx], probe_entropy, "regress", 1, cfg, reward_seed)
        group = np.array(domains, dtype=object)[probs.argmax(1)]
        by_reward = balanced(reward.predict(hid)[:, 0], group, domains, n, "proportional")
        by_entropy = balanced(entropy(probs), group, domains, n, "proportional")
        return {"reward": by_reward, "entropy": by_entropy}

    variants = {
        "reward head": lambda s: run(first, first, s),
        "both heads": lambda s: run(first, s, s),
        "probe rows + k-means": lambda s: run(s, first, first),
        "all (as --seed)": lambda s: run(s, s, s),
    }
    print("| seed varies in | ranked by | mean overlap over seed pairs | min | balance, mean |")
    print("|---|---|--:|--:|--:|")
    for name, make in variants.items():
        picks = [make(seed) for seed in args.seeds]
        for score in ("reward", "entropy"):
            sets = [set(p[score].tolist()) for p in picks]
            overlaps = [len(a & b) / n for a, b in itertools.combinations(sets, 2)]
            balances = [balance(p[score]) for p in picks]
            print(
                f"| {name} | {score} | {np.mean(overlaps):.3f} | {min(overlaps):.3f} | {np.mean(balances):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
