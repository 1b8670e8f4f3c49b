"""One cell of the experiment grid: select -> tune -> evaluate, cached as one JSON file.

A cell's `cell.json` is written atomically and last, with a key over everything its numbers
depend on; a rerun finds it and skips the cell, so an interrupted experiment resumes where it
stopped. Inside an unfinished cell the parts resume too: `run_select` caches each stage in
`select/`, `tune` reuses a finished adapter with the same key and continues from its last
checkpoint, and only the evaluation is repeated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from daar.coevolve.config import CoevolveConfig
from daar.coevolve.rounds import Coevolution
from daar.config import runtime_of
from daar.evaluate.settings import SCORING_ENTRY, headline_metrics
from daar.experiment.config import COEVOLVE, ExperimentConfig
from daar.experiment.heldout import SAMPLES_FILE as HELDOUT_SAMPLES
from daar.experiment.heldout import score_heldout
from daar.pipeline import run_select
from daar.read import file_sha256
from daar.tune import tune
from daar.utils.cache import read_json, stable_key, write_json
from daar.utils.code import code_closure

BASE = "base"
CELL_FILE = "cell.json"


@dataclass(frozen=True)
class Cell:
    """A method at a ratio with a tuning seed (and, for a method drawn several times per seed, its
    draw); the base model is the cell with method `base` and none of them."""

    method: str
    ratio: float | None = None
    seed: int | None = None
    draw: int = 1

    @property
    def is_base(self) -> bool:
        return self.method == BASE

    @property
    def name(self) -> str:
        if self.is_base:
            return BASE
        return f"{self.method}-r{self.ratio:g}-s{self.seed}" + (f"-d{self.draw}" if self.draw > 1 else "")

    @property
    def selection_seed(self) -> int:
        assert self.seed is not None
        return selection_seed(self.seed, self.draw)


def selection_seed(seed: int, draw: int) -> int:
    """The seed of a cell's selection: the tuning seed for the first draw (so a one-draw method is
    selected as before draws existed), 10,000 x draw + seed for the others."""
    return seed if draw == 1 else 10_000 * draw + seed


def plan(config: ExperimentConfig) -> list[Cell]:
    """Every cell: the base model first, then seed by seed every method at every ratio (each draw),
    so that an experiment stopped half-way already holds comparable cells of every method."""
    cells = [Cell(BASE)]
    for s in config.seeds:
        for m in config.method_names:
            draws = config.method_spec(m).draws
            cells += [Cell(m, r, s, d) for r in config.ratios for d in range(1, draws + 1)]
    return cells


def matched_cell(config: ExperimentConfig, cell: Cell) -> Cell | None:
    """The cell whose selection sets this cell's token budget (its method's `match_tokens`), if any."""
    if cell.is_base:
        return None
    other = config.method_spec(cell.method).match_tokens
    return Cell(other, cell.ratio, cell.seed) if other else None


# The code behind a cell's numbers is everything this module imports, directly or not (selectors are
# found by name, so their package is named too): a finished cell made by other code is computed again.
CELL_ENTRY = ("daar.experiment.cells", "daar.select")
HELDOUT_ENTRY = ("daar.experiment.heldout",)


def cell_key(
    config: ExperimentConfig,
    cell: Cell,
    pool_sha256: str,
    model_fingerprint: str,
    matched_key: str | None = None,
    heldout_sha256: str | None = None,
) -> str:
    """Hash of everything the cell's numbers depend on (the base model's: only the model and scoring):
    settings, the pool's, held-out rows' and examples file's content, the model's content, the code
    it runs (the import closure of its entry module, daar.utils.code), and the key of the cell
    whose selection sets its token budget."""
    scoring = (
        "model",
        config.model,
        model_fingerprint,
        "eval",
        config.eval.model_dump(mode="json"),
        config.device,
        code_closure(SCORING_ENTRY),
        *_heldout_key(config, heldout_sha256),
    )
    if cell.is_base:
        return stable_key(*scoring)
    assert cell.ratio is not None and cell.seed is not None
    select = config.select_config(cell.method, cell.ratio, cell.selection_seed)
    examples = select.examples_file
    examples_sha = file_sha256(examples) if examples and Path(examples).is_file() else None
    # where the cache lies changes no number
    tune = config.tune_config(cell.seed).model_dump(mode="json", exclude={"cache_dir"})
    spec = config.method_spec(cell.method)
    rounds = (spec.method, spec.coevolve) if spec.method == COEVOLVE else None
    return stable_key(
        *scoring,
        "pool",
        pool_sha256,
        "select",
        select.model_dump(mode="json", exclude={"cache_dir"}),
        examples_sha,
        rounds,
        "tune",
        tune,
        code_closure(CELL_ENTRY),
        *(("draw", cell.draw) if cell.draw > 1 else ()),
        *(("matched", matched_key) if matched_key else ()),
    )


def _heldout_key(config: ExperimentConfig, heldout_sha256: str | None) -> tuple[Any, ...]:
    if config.heldout is None or heldout_sha256 is None:
        return ()
    return ("heldout", heldout_sha256, config.heldout.model_dump(mode="json"), code_closure(HELDOUT_ENTRY))


def load_cell(folder: Path, key: str | None = None) -> dict[str, Any] | None:
    """The finished result in `folder` (None if absent, unreadable or, given `key`, made from other inputs)."""
    path = folder / CELL_FILE
    if not path.is_file():
        return None
    try:
        result = read_json(path)
    except (OSError, ValueError):
        return None
    if key is not None and result.get("key") != key:
        return None
    return result


def run_cell(
    config: ExperimentConfig,
    cell: Cell,
    pool_path: Path,
    folder: Path,
    cache_dir: Path,
    key: str,
    heldout: Path | None = None,
) -> dict[str, Any]:
    """Compute one cell (select, tune, evaluate; the base cell only evaluates) and write its cell.json;
    with `heldout` (the experiment's held-out rows), their NLL too."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    cached: dict[str, bool] = {}
    result: dict[str, Any] = {"cell": cell.name, "method": cell.method, "ratio": cell.ratio, "seed": cell.seed}
    result["draw"] = cell.draw
    adapter: Path | None = None
    if not cell.is_base:
        assert cell.ratio is not None and cell.seed is not None
        start = time.perf_counter()
        other = matched_cell(config, cell)
        matched = folder.parent / other.name / "select" if other else None
        selection = _select(config, cell, pool_path, folder / "select", cache_dir, matched)
        seconds["select"] = round(time.perf_counter() - start, 3)
        result["selection"] = selection
        start = time.perf_counter()
        tuned = _tune(config, cell.seed, Path(selection["path"]), folder / "tune")
        cached["tune"] = tuned.pop("cached")
        # a reused adapter (the cell was interrupted after tuning) reports the time its training took
        spent = tuned["train_seconds"] if cached["tune"] and tuned["train_seconds"] else time.perf_counter() - start
        seconds["tune"] = round(spent, 3)
        result["tune"] = tuned
        adapter = folder / "tune"
    start = time.perf_counter()
    report = _evaluate(config, adapter, folder / "eval")
    seconds["eval"] = round(time.perf_counter() - start, 3)
    if config.heldout is not None and heldout is not None:
        start = time.perf_counter()
        template = config.tune_config(cell.seed or 0).template
        result["heldout"] = score_heldout(
            config.model, adapter, heldout, folder / "eval", device=config.device, template=template
        ) | {"samples": str(folder / "eval" / HELDOUT_SAMPLES)}
        seconds["heldout"] = round(time.perf_counter() - start, 3)

    metrics = headline_metrics(list(report["tasks"]), config.eval.mode)
    scores = {task: float(report["tasks"][task]["metrics"][name]) for task, name in metrics.items()}
    result |= {
        "key": key,
        "mode": config.eval.mode,
        "metrics": metrics,
        "scores": scores,
        "average": fmean(scores.values()),
        "items": {task: int(value["n"]) for task, value in report["tasks"].items()},
        "all_metrics": {task: value["metrics"] for task, value in report["tasks"].items()},
        "seconds": seconds,
        "parts_cached": cached,
        "eval_report": str(folder / "eval" / "eval.json"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(folder / CELL_FILE, result)  # last: its presence marks the cell as done
    return result


def _select(
    config: ExperimentConfig, cell: Cell, pool_path: Path, out: Path, cache_dir: Path, matched: Path | None
) -> dict[str, Any]:

    assert cell.ratio is not None and cell.seed is not None
    settings = config.select_config(cell.method, cell.ratio, cell.selection_seed, matched)
    spec = config.method_spec(cell.method)
    if spec.method == COEVOLVE:
        run = _coevolve(config, settings, spec.coevolve, cell.seed, pool_path, out, cache_dir)
    else:
        run = run_select(
            settings, pool_path, out, cache_dir=cache_dir, show_domain_field=config.domain_field, report=False
        )
    stages = run.manifest.get("stages", {})
    found: dict[str, Any] = {
        "path": str(run.selected_path),
        "rows": len(run.selected_ids),
        "ids": run.selected_ids,  # the overlap between seeds is computed from these
        "stages": {name: _stage_seconds(value) for name, value in stages.items()},
    }
    if run.manifest.get("token_budget"):
        found["token_budget"] = run.manifest["token_budget"]
    truth = run.manifest.get("ground_truth")
    if truth:  # the share of each true domain in the selection: display only, never seen by a selector
        found["domain_mix"] = truth.get("selected")
    return found


def _coevolve(
    config: ExperimentConfig,
    settings: Any,
    rounds: dict[str, Any],
    seed: int,
    pool_path: Path,
    out: Path,
    cache_dir: Path,
) -> Any:
    """Co-evolution with the cell's budget and the experiment's tuning; no evaluation per round: the
    cell evaluates the final selection like every other method's."""

    runtime = runtime_of(settings)  # the cell's: the experiment's device, dtype and cache, the cell's seed
    coevolve = CoevolveConfig(select=settings, tune=config.tune_config(seed), eval=None, **runtime, **rounds)
    return Coevolution(coevolve).run(pool_path, out, cache_dir=cache_dir, show_domain_field=config.domain_field)


def _stage_seconds(value: Any) -> Any:
    """A stage's seconds whether the manifest stores a number or a mapping with `seconds`."""
    return value.get("seconds") if isinstance(value, dict) else value


def _tune(config: ExperimentConfig, seed: int, selection: Path, out: Path) -> dict[str, Any]:
    settings = config.tune_config(seed)
    if (out / "checkpoints").is_dir():
        settings = settings.model_copy(update={"resume": True})  # an interrupted run continues
    return tune(selection, config.model, out, settings).summary()


def _evaluate(config: ExperimentConfig, adapter: Path | None, out: Path) -> dict[str, Any]:
    return config.eval.run(config.model, adapter, config.device, out)
