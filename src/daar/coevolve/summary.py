"""What a co-evolution run leaves besides its round folders: per-round evaluation, the run folder
(selected / rejected / scores / manifest, as `daar select` writes it), rounds.csv and the report."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
import pandas as pd

from daar.coevolve.config import CoevolveConfig
from daar.evaluate.settings import SCORING_ENTRY, headline_metrics
from daar.models.adapter import adapter_fingerprint
from daar.pipeline import ground_truth, truth_labels
from daar.read import Pool
from daar.report import write_report_safely
from daar.utils.cache import read_json, stable_key, write_json, write_text
from daar.utils.code import code_closure
from daar.write.run import RunWriter

EVAL_FILE = "round_eval.json"


@dataclass
class RoundEval:
    """The headline score of each task (NLL per token in nll mode, else the task's metric)."""

    scores: dict[str, float]
    metrics: dict[str, str]
    average: float
    items: dict[str, int]
    report: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_round(cfg: CoevolveConfig, adapter: Path | None, out: Path) -> RoundEval:
    """`daar eval` of the base (+ adapter); a finished evaluation of the same model and settings is reused."""
    e = cfg.eval
    assert e is not None
    key = stable_key(
        e.model_dump(mode="json"),
        cfg.select.model,
        adapter_fingerprint(adapter) if adapter else None,
        cfg.device,
        code_closure(SCORING_ENTRY),
    )
    saved = Path(out) / EVAL_FILE
    if saved.is_file():
        data = read_json(saved)
        if data.get("key") == key:
            return RoundEval(**data["result"])
    report = e.run(cfg.select.model, adapter, cfg.device, out)
    metrics = headline_metrics(list(report["tasks"]), e.mode)
    scores = {task: float(report["tasks"][task]["metrics"][name]) for task, name in metrics.items()}
    items = {task: int(value["n"]) for task, value in report["tasks"].items()}
    result = RoundEval(scores, metrics, fmean(scores.values()), items, str(Path(out) / "eval.json"))
    write_json(saved, {"key": key, "result": result.as_dict()})
    return result


def reward_stats(values: np.ndarray) -> dict[str, float | int | None]:
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"rows": 0, "mean": None, "p10": None, "p50": None, "p90": None}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"rows": len(values), "mean": float(values.mean()), "p10": float(p10), "p50": float(p50), "p90": float(p90)}


def round_rows(
    rounds: list[dict[str, Any]], base_eval: Any, domains: list[str], truth: dict[int, str] | None
) -> list[dict[str, Any]]:
    """One flat row per round (round 0: the base model), the content of rounds.csv: rows added,
    the selection-so-far mix by pseudo-domain (and by true domain, shown only), reward, probe
    metrics, seconds and benchmark scores."""
    rows: list[dict[str, Any]] = []
    if base_eval is not None:
        rows.append({"round": 0, "rows_added": 0, "rows_total": 0, **_scores(base_eval.as_dict())})
    pseudo: list[str] = []
    true: list[str] = []
    for record in rounds:
        pseudo += record["pseudo_domain"]
        if truth is not None:
            true += [truth[p] for p in record["positions"]]
        row: dict[str, Any] = {
            "round": record["round"],
            "rows_added": len(record["positions"]),
            "rows_total": record["rows_total"],
            "candidates": record["candidates"],
            "examples": record["examples"],
        }
        row |= {f"mix_{d}": round(pseudo.count(d) / max(1, len(pseudo)), 4) for d in domains}
        if truth is not None:
            row |= {f"truth_{d}": round(true.count(d) / max(1, len(true)), 4) for d in sorted(set(truth.values()))}
        row |= {
            "reward_picked_mean": record["reward"]["picked"]["mean"],
            "reward_rest_mean": record["reward"]["rest"]["mean"],
            "probe_val_accuracy": record["probe"].get("val_accuracy"),
            "probe_val_majority_accuracy": record["probe"].get("val_majority_accuracy"),
            "reward_val_mse": record["reward_model"].get("val_mse"),
            "reward_val_mse_of_mean": record["reward_model"].get("val_mse_of_mean"),
            "reward_val_spearman": record["reward_model"].get("val_spearman"),
        }
        row |= {f"seconds_{k}": v for k, v in record["seconds"].items()}
        if record.get("tune"):
            row["tune_final_loss"] = record["tune"]["final_loss"]
        row |= _scores(record.get("eval"))
        rows.append(row)
    return rows


def _scores(evaluation: dict[str, Any] | None) -> dict[str, Any]:
    if not evaluation:
        return {}
    return {**{f"score_{t}": v for t, v in evaluation["scores"].items()}, "score_average": evaluation["average"]}


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(
    cfg: CoevolveConfig,
    run: RunWriter,
    full: Pool,
    pool: Pool,
    sampled_out: list[int],
    rounds: list[dict[str, Any]],
    base_eval: Any,
    show_domain_field: str | None,
    pool_path: Path,
) -> dict[str, Any]:
    """The run folder as `daar select` leaves it (counts read back from the files), plus rounds.csv."""
    picked_round: dict[int, int] = {}
    picked_reward: dict[int, float] = {}
    picked_domain: dict[int, str] = {}
    for record in rounds:
        for pos, domain, reward in zip(record["positions"], record["pseudo_domain"], record["rewards"], strict=True):
            picked_round[pos], picked_domain[pos], picked_reward[pos] = record["round"], domain, reward
    outside = full.subset(sampled_out)
    frame = pd.DataFrame(
        {
            "position": [r.position for r in pool.records] + [r.position for r in outside.records],
            "id": pool.ids + outside.ids,
            "in_sample": [True] * len(pool) + [False] * len(outside),
        }
    )
    frame["selected"] = frame["position"].isin(picked_round.keys())
    frame["round"] = pd.array([picked_round.get(p) for p in frame["position"]], dtype="Int64")
    frame["reward"] = [picked_reward.get(p, np.nan) for p in frame["position"]]
    frame["pseudo_domain"] = [picked_domain.get(p) for p in frame["position"]]

    labels = truth_labels(pool, show_domain_field)
    truth = dict(zip((r.position for r in pool.records), labels, strict=True)) if labels is not None else None
    domains = [d.name for d in cfg.select.domains]
    rows = round_rows(rounds, base_eval, domains, truth)
    by_position = {r.position: r for r in pool.records}
    run.write_rows(
        (by_position[p].raw for p in sorted(picked_round)),
        ({"position": r.position, "id": r.id, "reason": r.reason} for r in full.rejected),
        frame,
        full.rows_in,
        cfg.select.fields.id,
    )
    write_text(run.out_dir / "rounds.csv", to_csv(rows))
    source = {"path": str(Path(pool_path).resolve()), "sha256": full.sha256}
    manifest = run.header(cfg.result_dict(), source, domains)
    manifest["rounds"] = rows
    manifest["stages"] = {
        f"round {rec['round']} {part}": {"seconds": sec, "cached": False}
        for rec in rounds
        for part, sec in rec["seconds"].items()
    }
    if labels is not None:
        selected = frame["selected"].to_numpy(bool)[: len(pool)]
        manifest["ground_truth"] = ground_truth(labels, selected, show_domain_field)
    write_report_safely(run.out_dir, manifest)
    return run.finish(manifest)
