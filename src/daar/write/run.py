"""The one way to write a run folder, and the one schema of its manifest.

`daar select`, the block-by-block cut (`daar select --scores`), co-evolution and `daar pools` all
end in the same four files (daar.write.folder): selected.jsonl, rejected.jsonl, scores.parquet
and manifest.json. `RunWriter` writes them for every command: it holds the folder's lock for the
whole run, clears the earlier run's outputs only when the new rows are ready, counts the rows back
from the files (`account`), and writes the manifest last, checked against `RunManifest`. What a
command adds (fitted/, examples/, analysis.json, report.html, rounds.csv) goes between the rows and
the manifest, so a folder without a manifest is never mistaken for a finished run.

The manifest's schema is versioned (`manifest_version`); its fields are listed in README.md,
"Outputs of daar select". Every manifest has the fields of `RunManifest`; a command adds sections
of its own (probe, reward, ground_truth, rounds, per_domain, ...), which the schema allows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from daar import __version__
from daar.config import FieldMap
from daar.utils.lock import folder_lock
from daar.utils.machine import machine_info, package_versions
from daar.write.folder import SELECTED, AccountingError, account, clear_outputs, finish, write_rows, write_scores
from daar.write.formats import ArrowTee, check_format, count_rows, write_formats
from daar.write.trainers import RowKinds, write_dataset_info

MANIFEST_VERSION = 1
Command = Literal["select", "select --scores", "coevolve", "pools"]


class Counts(BaseModel):
    """Every input row once: selected, not selected (below the cut or outside a sample) or rejected."""

    model_config = ConfigDict(extra="forbid")
    rows_in: int
    selected: int
    not_selected: int
    rejected: int
    sampled_out: int
    scored: int
    adds_up: Literal[True]


class RunManifest(BaseModel):
    """The fields every run folder's manifest.json has, whichever command wrote it."""

    model_config = ConfigDict(extra="allow")
    manifest_version: Literal[1]
    command: Command
    method: str
    daar_version: str
    created: str
    config: dict[str, Any]
    input: dict[str, Any]
    counts: Counts
    domains: list[str]
    versions: dict[str, Any]
    machine: dict[str, Any]
    wall_seconds: float


@dataclass
class RunResult:
    """A finished run folder: where it is, its manifest, and the ids of the rows it selected."""

    out_dir: Path
    manifest: dict[str, Any]
    selected_ids: list[str] = field(default_factory=list)
    selected_positions: list[int] = field(default_factory=list)  # each row's place in the pool, from 0

    @property
    def selected_path(self) -> Path:
        return self.out_dir / SELECTED


def ranked(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """scores.parquet's columns for scored rows: `rank` (1 = highest score, ties by row order) after
    the score columns, then `selected` and `in_sample`."""
    score = frame["score"].to_numpy(np.float64)
    order = np.lexsort((np.arange(len(score)), -score))
    rank = np.empty(len(score), dtype=np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    frame = frame.copy()
    frame["rank"] = pd.array(rank, dtype="Int64")
    frame["selected"] = mask
    frame["in_sample"] = True
    return frame


class RunWriter:
    """Writes one run folder; use as a context manager around the whole run (it holds the lock)."""

    def __init__(self, out_dir: Path, command: Command, method: str, output_format: str = "jsonl") -> None:
        self.out_dir = Path(out_dir)
        self.command: Command = command
        self.method = method
        self.output_format = check_format(output_format)
        self.started = time.perf_counter()
        self.counts: dict[str, Any] | None = None
        self.outputs: dict[str, Any] | None = None
        self._lock = folder_lock(self.out_dir, f"daar {command}")

    def __enter__(self) -> Self:
        self._lock.__enter__()
        self.started = time.perf_counter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._lock.__exit__(kind, error, trace)

    def write_rows(
        self,
        selected: Iterable[dict[str, Any]],
        rejected: Iterable[dict[str, Any]],
        scores: pd.DataFrame,
        rows_in: int,
        id_field: str,
        *,
        schema: Any = None,
        fields: FieldMap | None = None,
    ) -> dict[str, Any]:
        """The earlier run's outputs go only now, then the three row files (and selected.parquet or
        selected/ for the run's output format, with the pool's Arrow `schema` when it has one); the
        counts are read back from them (and checked to cover every input row once). With `fields`,
        the rows' kind is seen on the way and dataset_info.json written for LLaMA-Factory."""
        clear_outputs(self.out_dir)
        kinds = RowKinds(fields) if fields is not None else None
        tee = ArrowTee(self.out_dir, schema) if self.output_format != "jsonl" else None
        rows = kinds.rows(selected) if kinds is not None else selected
        write_rows(self.out_dir, tee.rows(rows) if tee is not None else rows, rejected)
        write_formats(self.out_dir, self.output_format, tee)
        write_scores(self.out_dir, scores)
        self.counts = account(self.out_dir, rows_in, id_field)
        extra = count_rows(self.out_dir, self.output_format)
        wrong = {name: n for name, n in extra.items() if n != self.counts["selected"]}
        if wrong:
            selected = self.counts["selected"]
            problem = f"{wrong} rows written but {SELECTED} has {selected}"
            raise AccountingError(f"{self.out_dir}: {problem}; please report this bug")
        self.outputs = {"format": self.output_format, "rows": {SELECTED: self.counts["selected"], **extra}}
        if kinds is not None:
            self.outputs |= write_dataset_info(self.out_dir, kinds)
        return self.counts

    def header(self, config: dict[str, Any], source: dict[str, Any], domains: list[str]) -> dict[str, Any]:
        """The manifest's common fields, in their order; a command's own sections follow them."""
        if self.counts is None:
            raise RuntimeError("write_rows first: the manifest's counts are read back from the files")
        return {
            "manifest_version": MANIFEST_VERSION,
            "command": self.command,
            "method": self.method,
            "daar_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config,
            "input": source,
            "counts": self.counts,
            "domains": domains,
            "versions": package_versions(),
            "machine": machine_info(),
        } | ({"outputs": self.outputs} if self.outputs is not None else {})

    def finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest (a `header` plus sections), with the run's wall time, checked and written last."""
        manifest = {**manifest, "wall_seconds": round(time.perf_counter() - self.started, 3)}
        RunManifest.model_validate(manifest)
        finish(self.out_dir, manifest)
        return manifest
