"""Seconds and quality of the 2-D map on a pool's cached features, full t-SNE fit against the fitted subset.

    python benchmarks/map_speed.py --features RUN/cache/features/KEY [--repeats 3]

Times `embed_2d` as `daar select` calls it (2,000 drawn points, a fifth selected), once with the
whole sample fitted for 1,000 iterations (the earlier map) and once with the defaults, and prints
the trustworthiness of each map (sklearn: how many of each point's 10 nearest neighbours in the
PCA-50 space stay near it in 2-D; 1.0 = all) so a faster map is seen not to be a worse one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    from daar.analyze import maps
    from daar.embed import load_cached

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="a finished features folder (emb.f32, complete.json)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    feats = load_cached(args.features)
    if feats is None:
        raise SystemExit(f"{args.features}: no finished features there")
    selected = np.zeros(len(feats), dtype=bool)
    selected[np.random.default_rng(0).choice(len(feats), len(feats) // 5, replace=False)] = True
    variants = {"full fit (1,000 iterations)": (10**9, 1000), "default": (maps.FIT_POINTS, maps.TSNE_ITERATIONS)}
    for name, (fit_points, iterations) in variants.items():
        maps.FIT_POINTS, maps.TSNE_ITERATIONS = fit_points, iterations
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = maps.embed_2d(feats.emb, seed=42, max_points=2000, selected=selected)
            seconds.append(time.perf_counter() - start)
        reduced = PCA(n_components=50, random_state=42).fit_transform(feats.emb[result.indices])
        trust = trustworthiness(reduced, result.coords, n_neighbors=10, metric="cosine")
        runs = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"{name}: {len(feats)} rows -> {len(result.indices)} points, seconds {runs}; trustworthiness {trust:.3f}")


if __name__ == "__main__":
    main()
