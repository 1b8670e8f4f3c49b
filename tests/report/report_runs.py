"""Hand-built run folders as `daar select` writes them: a DaaR run (all files) and a random one (few).

60 rows in 3 well-separated clusters; the analysis and map files are computed with the real
daar.analyze functions, so the report reads exactly the structures the pipeline writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from daar.analyze.diversity import domain_mix, kept_per_domain, summarize
from daar.analyze.maps import MapResult

DOMAINS = ["coding", "mathematics", "reasoning"]
N_ROWS = 60
REJECTED = [7, 33, 51]  # positions rejected by the reader (empty output)
EVIL = "<script>alert('owned')</script>"


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def pool_rows() -> list[dict]:
    rows = []
    for i in range(N_ROWS):
        domain = DOMAINS[i % 3]
        rows.append({"id": f"row-{i:03d}", "instruction": f"Task {i} about {domain}", "input": "", "output": "ok" * i})
        rows[-1]["domain"] = domain
    return rows


def _embeddings() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.array([i % 3 for i in range(N_ROWS)])
    x = np.eye(3, 16)[labels] * 5 + rng.normal(scale=0.5, size=(N_ROWS, 16))
    return x, labels


def _analysis(x: np.ndarray, labels: np.ndarray, selected: np.ndarray, label_name: str) -> dict:
    return {
        "labels": label_name,
        "names": DOMAINS,
        "pool": summarize(x, labels, DOMAINS),
        "selected": summarize(x[selected], labels[selected], DOMAINS),
        "mix": {"pool": domain_mix(labels, DOMAINS), "selected": domain_mix(labels[selected], DOMAINS)},
        "kept": kept_per_domain(labels, selected, DOMAINS),
    }


def make_run(folder: Path, method: str = "daar", n_selected: int = 12, seed: int = 0) -> Path:
    """A run folder; method "daar" writes every optional file, any other method only the basic ones."""
    daar = method == "daar"
    rows = pool_rows()
    kept_pos = [i for i in range(N_ROWS) if i not in REJECTED]
    rng = np.random.default_rng(seed)
    x_all, labels_all = _embeddings()
    x, truth = x_all[kept_pos], labels_all[kept_pos]
    n = len(kept_pos)
    reward = rng.uniform(0.1, 1.09, size=n)
    score = reward if daar else rng.uniform(size=n)
    order = np.lexsort((np.arange(n), -score))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    selected = rank <= n_selected
    table = {
        "position": kept_pos,
        "id": [rows[i]["id"] for i in kept_pos],
        "score": score,
        "rank": rank,
        "selected": selected,
    }
    if daar:
        probs = rng.dirichlet(np.ones(3), size=n)
        entropy = -(probs * np.log(probs)).sum(1)
        entropy[rng.choice(n, size=20, replace=False)] = np.nan  # rows outside the probe set
        table |= {"reward": reward, "entropy": entropy, "pseudo_domain": [DOMAINS[j] for j in probs.argmax(1)]}
        table |= {f"prob_{d}": probs[:, j] for j, d in enumerate(DOMAINS)}
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(folder / "scores.parquet")
    counts = {
        "rows_in": N_ROWS,
        "selected": int(selected.sum()),
        "not_selected": int((~selected).sum()),
        "rejected": len(REJECTED),
        "sampled_out": 0,
        "scored": n,
    }
    stages = {"read": {"seconds": 0.2, "cached": False}, "score": {"seconds": 3.5, "cached": False}}
    manifest = {
        "daar_version": "0.1.0",
        "method": method,
        "created": "2025-06-01T12:00:00+00:00",
        "config": {
            "method": method,
            "model": "smollm2-135m-instruct",
            "domains": [{"name": d, "description": f"questions on {d}", "examples": []} for d in DOMAINS],
            "ratio": 0.2,
            "strategy": "overall",
            "clip_layer": 3,
            "heads": {"lr": 1e-4, "epochs": 3},
        },
        "versions": {"torch": "2.13.0", "transformers": "5.23.0"},
        "machine": {"cpus": 2, "device": "cpu"},
        "input": {"path": "/data/pool.jsonl", "sha256": "ab" * 32},
        "counts": counts,
        "stages": stages,
        "domains": DOMAINS,
        "ground_truth": {
            "field": "domain",
            "pool": domain_mix(truth, DOMAINS),
            "selected": domain_mix(truth[selected], DOMAINS),
        },
    }
    if daar:
        stages |= {"examples": {"seconds": 40.0, "cached": True}, "probe": {"seconds": 5.0, "cached": False}}
        manifest["probe"] = {
            "val_accuracy": 0.8125,
            "train_rows": 50,
            "val_rows": 7,
            "pseudo_domain_sizes": {"coding": 20, "mathematics": 18, "reasoning": 19},
        }
        manifest["reward"] = {
            "val_mse": 0.0123,
            "val_mae": 0.0871,
            "train_rows": 35,
            "val_rows": 2,
            "entropy_max": 1.0986,
        }
        manifest["warnings"] = [
            {"kind": "dominant_pseudo_domain", "value": 0.6, "threshold": 0.5, "message": f"{EVIL} holds 60%"}
        ]
    _write_json(folder / "manifest.json", manifest)
    (folder / "selected.jsonl").write_text(
        "".join(json.dumps(rows[kept_pos[i]]) + "\n" for i in np.flatnonzero(selected)), encoding="utf-8"
    )
    (folder / "rejected.jsonl").write_text(
        "".join(json.dumps({"position": p, "id": rows[p]["id"], "reason": "empty output"}) + "\n" for p in REJECTED),
        encoding="utf-8",
    )
    # As the pipeline writes it: a section per labelling, the first one (pseudo-domains) copied to the top.
    pseudo = np.array([DOMAINS.index(p) for p in table["pseudo_domain"]]) if daar else truth
    analysis: dict = {"available": True, "ground_truth": _analysis(x, truth, selected, "domain")}
    if daar:
        analysis["pseudo_domain"] = _analysis(x, pseudo, selected, "pseudo_domain")
    analysis |= analysis["pseudo_domain" if daar else "ground_truth"]
    if daar:
        coords = x[:, :2] + rng.normal(scale=0.1, size=(n, 2))
        _write_json(folder / "map.json", MapResult(coords, np.arange(n), "tsne").to_json(pseudo, DOMAINS, selected))
        for j, d in enumerate(DOMAINS):
            accepted = [
                {"instruction": f"Write a {d} task {k}", "input": "", "output": f"answer {k}"} for k in range(4)
            ]
            if j == 0:
                accepted[0]["instruction"] = f"Explain {EVIL} & escaping"
            raw = [
                {"domain": d, "stage": "warmup", "raw": '[{"instruction": "..."}]', "verdict": "accepted"},
                {"domain": d, "stage": "round 1", "raw": f"not json {EVIL}", "verdict": "unparseable"},
                {
                    "domain": d,
                    "stage": "round 1",
                    "raw": "{}",
                    "pair": accepted[1],
                    "verdict": "too similar to an accepted pair (cosine 0.912)",
                },
            ]
            _write_json(folder / "examples" / f"{d}.json", {"domain": d, "accepted": accepted})
            _write_json(folder / "examples" / f"{d}.raw.json", raw)
    _write_json(folder / "analysis.json", analysis)
    return folder
