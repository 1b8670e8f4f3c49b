"""Co-evolution: the learner tuned on the selection so far probes the rows not yet selected.

The paper gives one LLM two roles, selecting data at its output end and being tuned at its input
end, and describes the loop without releasing it. Each round here: the current model (the base in
round 1, then base + the last round's LoRA adapter, merged into the prober's layers only) computes
fresh f(x) for the remaining rows, the probe and reward heads are refitted on them, the round's
budget of rows is selected by the usual strategy, and the learner is tuned on the selection so far.

OUT/round-01 ... holds, per round: picks.json (the rows added, their rewards and pseudo-domains,
the probe's metrics, the domain examples used), fitted/, scores.parquet (every candidate's reward this
round), train.jsonl (the selection so far, rows as in the input), adapter/ (`daar tune` output),
eval/ and round.json, written last. OUT itself ends as a `daar select` run folder (selected.jsonl,
rejected.jsonl, scores.parquet with the round of each pick, manifest.json last) plus rounds.csv.

Resuming: a finished round (its round.json carries this run's key) is read back, never redone. In
an unfinished one, picks.json keeps the selection, `tune` continues from its checkpoints, and only
an evaluation repeats. Round folders made with other settings or another pool are removed when
this run starts its first round.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.coevolve.config import CoevolveConfig
from daar.coevolve.summary import RoundEval, evaluate_round, reward_stats, write_outputs
from daar.config import Domain, ExampleRow
from daar.models import fingerprint, resolve_model
from daar.pipeline import sample_pool
from daar.probe.examples import ExampleError, ExampleWriter, domain_examples
from daar.read import Pool, check_pool, file_sha256, read_pool
from daar.select.base import Context, choose, make_selector
from daar.tune import tune
from daar.utils.cache import atomic_path, read_json, shared_cache, stable_key, write_json, write_jsonl
from daar.utils.code import code_closure
from daar.utils.progress import console
from daar.write import MANIFEST
from daar.write.run import RunResult, RunWriter

ROUND_FILE = "round.json"
PICKS_FILE = "picks.json"
EXAMPLES_FILE = "examples.json"
# The code behind the rounds: everything this module reaches, and the selectors (found by name).
CODE = ("daar.coevolve.rounds", "daar.select")


@dataclass
class CoevolveResult(RunResult):
    """A finished co-evolution: its run folder (as every selecting command's) and each round's record."""

    rounds: list[dict[str, Any]] = field(default_factory=list)


def round_dir(out_dir: Path, r: int) -> Path:
    return Path(out_dir) / f"round-{r:02d}"


class Coevolution:
    """`Coevolution(config).run(pool_path, out_dir)`: every round, resumable, then the run folder."""

    def __init__(self, config: CoevolveConfig) -> None:
        self.config = config

    def run(
        self, pool_path: Path, out_dir: Path, *, cache_dir: Path | None = None, show_domain_field: str | None = None
    ) -> CoevolveResult:

        cfg = self.config
        out_dir = Path(out_dir)
        cache = Path(cache_dir or cfg.cache_dir or shared_cache())
        check_pool(pool_path)  # before the output folder is made
        with RunWriter(out_dir, "coevolve", "coevolve") as run:  # cache entries lock themselves
            full = read_pool(pool_path, cfg.select.fields)
            pool, sampled_out = sample_pool(full, cfg.select.sample, cfg.seed)
            sizes = cfg.round_sizes(len(pool))
            run_key = self._run_key(full.sha256)
            keys = [stable_key(run_key, r) for r in range(1, len(sizes) + 1)]
            if not _finished(out_dir, keys[0]):
                _remove_stale_rounds(out_dir, keys)
            base_eval = evaluate_round(cfg, None, out_dir / "base-eval") if cfg.eval else None
            rounds: list[dict[str, Any]] = []
            taken: list[int] = []  # indices into `pool`, in the order the rounds picked them
            index = {rec.position: i for i, rec in enumerate(pool.records)}
            for r, (n, key) in enumerate(zip(sizes, keys, strict=True), start=1):
                record = _finished(out_dir, key)
                if record is None:
                    record = self._round(r, n, key, pool, index, taken, out_dir, cache, sizes)
                elif cfg.eval is not None:  # a finished round under other evaluation settings
                    record = _reevaluate(cfg, round_dir(out_dir, r), record)
                picked = [index[p] for p in record["positions"]]
                if set(picked) & set(taken):
                    raise RuntimeError(f"round {r} picked a row an earlier round had picked; please report this bug")
                taken += picked
                rounds.append(record)
                _print_round(record)
            manifest = write_outputs(cfg, run, full, pool, sampled_out, rounds, base_eval, show_domain_field, pool_path)
        return CoevolveResult(out_dir, manifest, [pool.records[i].id for i in sorted(taken)], rounds)

    def _run_key(self, pool_sha256: str) -> str:
        """What the rounds' selections and learners depend on: pool, model and examples file content,
        select and tune settings, the loop's settings and the code. Not the evaluation (each one is
        keyed by itself), except whether there is one: it decides if the last round is tuned."""

        cfg = self.config
        loop = cfg.result_dict()
        for unkeyed in ("eval", "device", "cache_dir"):
            loop.pop(unkeyed)
        for part in ("select", "tune"):
            loop[part].pop("cache_dir")
        examples = cfg.select.examples_file
        return stable_key(
            pool_sha256,
            loop,
            cfg.eval is None,
            fingerprint(resolve_model(cfg.select.model)),
            file_sha256(Path(examples)) if examples and Path(examples).is_file() else None,
            code_closure(CODE),
        )

    # ------------------------------------------------------------------------------- one round
    def _round(
        self,
        r: int,
        n: int,
        key: str,
        pool: Pool,
        index: dict[int, int],
        taken: list[int],
        out_dir: Path,
        cache: Path,
        sizes: list[int],
    ) -> dict[str, Any]:
        cfg = self.config
        folder = round_dir(out_dir, r)
        folder.mkdir(parents=True, exist_ok=True)
        last = len(sizes)
        console.rule(f"[bold]co-evolution round {r} of {last}[/]: {n} rows from {len(pool) - len(taken)} left")
        learner = round_dir(out_dir, r - 1) / "adapter" if r > 1 else None
        seconds: dict[str, float] = {}

        start = time.perf_counter()
        picks = _load_keyed(folder / PICKS_FILE, key)
        if picks is None:
            picks = self._select(r, n, pool, taken, folder, cache, learner)
            write_json(folder / PICKS_FILE, {"key": key, **picks})
            gc.collect()  # the prober goes before the learner loads: one model in memory at a time
        seconds["select"] = picks.get("seconds", round(time.perf_counter() - start, 3))

        selected = sorted([*taken, *(index[p] for p in picks["positions"])])
        write_jsonl(folder / "train.jsonl", (pool.records[i].raw for i in selected))
        needs_learner = r < last or cfg.eval is not None
        tuned: dict[str, Any] | None = None
        if needs_learner and selected:
            start = time.perf_counter()
            tuned = self._tune(r, folder, learner)
            gc.collect()
            seconds["tune"] = tuned["train_seconds"] if tuned["cached"] else round(time.perf_counter() - start, 3)
        evaluation: RoundEval | None = None
        if cfg.eval is not None and tuned is not None:
            start = time.perf_counter()
            evaluation = evaluate_round(cfg, folder / "adapter", folder / "eval")
            seconds["eval"] = round(time.perf_counter() - start, 3)
        record = {
            "key": key,
            "round": r,
            **{k: v for k, v in picks.items() if k != "key"},
            "rows_total": len(selected),
            "prober": str(learner) if learner else "base",
            "tune": tuned,
            "eval": evaluation.as_dict() if evaluation else None,
            "seconds": seconds,
        }
        write_json(folder / ROUND_FILE, record)  # last: the round is finished
        return record

    def _select(
        self, r: int, n: int, pool: Pool, taken: list[int], folder: Path, cache: Path, learner: Path | None
    ) -> dict[str, Any]:
        cfg = self.config
        start = time.perf_counter()
        left = np.setdiff1d(np.arange(len(pool)), np.asarray(taken, dtype=np.int64))
        candidates = pool.subset(left.tolist())
        settings = cfg.select.model_copy(update={"adapter": learner})
        examples_source = "round 1"
        if r == 1:
            given = cfg.select.examples_file or all(d.examples for d in cfg.select.domains)
            examples_source = "given" if given else "base model"
        else:
            if cfg.examples == "keep":  # round 1's rows: their e(x), and so the centroids, are unchanged
                examples = _read_examples(round_dir(folder.parent, 1) / EXAMPLES_FILE)
            else:
                examples, examples_source = self._regenerate_examples(r, folder, learner)
            domains = _with_examples(cfg.select.domains, examples)
            settings = settings.model_copy(update={"domains": domains, "examples_file": None})
        ctx = Context(settings, cache)
        selector = make_selector(settings.method).fit(candidates, ctx)
        scores = selector.score(candidates, ctx)
        chosen = choose(selector, candidates, ctx, n, scores)
        mask = np.zeros(len(candidates), dtype=bool)
        mask[chosen] = True
        selector.save(folder / "fitted")
        artifacts = selector.artifacts()
        if artifacts.examples:
            rows = {d: [s.model_dump() for s in found] for d, found in artifacts.examples.items()}
            write_json(folder / EXAMPLES_FILE, rows)
        _write_round_scores(folder, candidates, scores, mask)
        fitted = artifacts.manifest
        reward = np.asarray(scores.get("reward", scores["score"]), dtype=np.float64)
        return {
            "positions": [candidates.records[i].position for i in chosen],
            "ids": [candidates.records[i].id for i in chosen],
            "pseudo_domain": [str(v) for v in np.asarray(scores["pseudo_domain"])[chosen]],
            "rewards": [float(v) for v in reward[chosen]],
            "reward": {"picked": reward_stats(reward[mask]), "rest": reward_stats(reward[~mask])},
            "candidates": len(candidates),
            "examples": examples_source,
            "probe": fitted.get("probe", {}),
            "reward_model": fitted.get("reward", {}),
            "seconds": round(time.perf_counter() - start, 3),
        }

    def _regenerate_examples(
        self, r: int, folder: Path, learner: Path | None
    ) -> tuple[dict[str, list[ExampleRow]], str]:
        """Examples written by the last round's tuned model; the previous round's if it writes too few."""
        cfg = self.config.select
        previous = _read_examples(round_dir(folder.parent, r - 1) / EXAMPLES_FILE)
        merged = learner / "merged" if learner else None
        if merged is None or not (merged / "config.json").is_file():
            return previous, f"round {r - 1} (no merged learner to write examples)"
        domains = [Domain(name=d.name, description=d.description) for d in cfg.domains]
        ctx = Context(cfg, folder)

        def writer() -> ExampleWriter:
            seed = cfg.seed + r
            return ExampleWriter(merged, cfg.synthesis, seed, ctx.device, ctx.prober_dtype, cfg.trust_remote_code)

        try:
            return domain_examples(domains, folder / "examples", writer, cfg.synthesis.min_pairs), "regenerated"
        except ExampleError as err:
            console.print(f"[yellow]round {r}: the tuned model wrote too few valid examples; kept round {r - 1}'s[/]")
            return previous, f"round {r - 1} (fallback: {err})"

    def _tune(self, r: int, folder: Path, learner: Path | None) -> dict[str, Any]:
        cfg = self.config
        update: dict[str, Any] = {"merge": cfg.examples == "regenerate"}  # a merged model writes the next ones
        if cfg.learner == "continue" and learner is not None:
            update["init_adapter"] = learner
        if (folder / "adapter" / "checkpoints").is_dir():
            update["resume"] = True  # an interrupted round continues
        return tune(
            folder / "train.jsonl", cfg.select.model, folder / "adapter", cfg.tune.model_copy(update=update)
        ).summary()


def _reevaluate(cfg: CoevolveConfig, folder: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The round's record with the evaluation these settings ask for (read back when it exists)."""
    evaluation = evaluate_round(cfg, folder / "adapter", folder / "eval").as_dict()
    if evaluation != record.get("eval"):
        record = {**record, "eval": evaluation}
        write_json(folder / ROUND_FILE, record)
    return record


def _finished(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The record of a finished round with this key, found by its key among the round folders."""
    for path in sorted(Path(out_dir).glob(f"round-*/{ROUND_FILE}")):
        record = _load_keyed(path, key)
        if record is not None:
            return record
    return None


def _load_keyed(path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key else None


def _remove_stale_rounds(out_dir: Path, keys: list[str]) -> None:
    """Round folders of another run (other settings, pool or code): their picks must not be reused,
    and the run folder they made no longer looks finished."""
    for folder in sorted(Path(out_dir).glob("round-*")):
        picks = folder / PICKS_FILE
        try:
            key = read_json(picks).get("key") if picks.is_file() else None
        except (OSError, ValueError):
            key = None
        if key not in keys:
            (Path(out_dir) / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(folder)


def _with_examples(domains: list[Domain], examples: dict[str, list[ExampleRow]]) -> list[Domain]:
    return [d.model_copy(update={"examples": list(examples[d.name])}) for d in domains]


def _read_examples(path: Path) -> dict[str, list[ExampleRow]]:
    return {d: [ExampleRow.model_validate(s) for s in rows] for d, rows in read_json(path).items()}


def _write_round_scores(folder: Path, candidates: Pool, scores: dict[str, np.ndarray], mask: np.ndarray) -> None:
    frame = pd.DataFrame(
        {
            "position": [r.position for r in candidates.records],
            "id": candidates.ids,
            "reward": np.asarray(scores.get("reward", scores["score"]), dtype=np.float64),
            "entropy": np.asarray(scores["entropy"], dtype=np.float64),
            "pseudo_domain": [str(v) for v in scores["pseudo_domain"]],
            "picked": mask,
        }
    )
    with atomic_path(folder / "scores.parquet") as tmp:
        frame.to_parquet(tmp, index=False)


def _print_round(record: dict[str, Any]) -> None:
    mix: dict[str, int] = {}
    for name in record["pseudo_domain"]:
        mix[name] = mix.get(name, 0) + 1
    scores = (record.get("eval") or {}).get("scores") or {}
    shown = ", ".join(f"{t} {v:.4f}" for t, v in scores.items())
    console.print(
        f"round {record['round']}: +{len(record['positions'])} rows ({record['rows_total']} in all), "
        f"picked pseudo-domains {mix}; examples: {record['examples']}" + (f"; eval: {shown}" if shown else "")
    )
