"""A run folder: the files every selecting command writes, and the one row accounting over them.

`daar select` and `daar pools` both end in selected.jsonl (rows as they were), rejected.jsonl
(position, id, reason), scores.parquet (one row per usable input row, `selected` flag) and
manifest.json. Two promises hold for every such folder:

- A folder never looks finished when it is not. `begin` takes the folder's lock, deletes the
  manifest first (its presence means "finished") and then every output an earlier run left, so a
  crash leaves a folder without a manifest, never an old manifest beside new, partial files.
- No row is lost. `account` counts what is on disk (lines of selected.jsonl and rejected.jsonl,
  rows of scores.parquet) and checks that the positions of scored and rejected rows cover every
  input row exactly once and that the selected counts agree; a mismatch is a bug and stops the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.utils.cache import atomic_path, read_json, write_json, write_jsonl
from daar.utils.lock import folder_lock

MANIFEST = "manifest.json"
SELECTED = "selected.jsonl"
REJECTED = "rejected.jsonl"
SCORES = "scores.parquet"
# Everything a selecting run may have written; the cache is not an output and stays.
OUTPUTS = (SELECTED, REJECTED, SCORES, "analysis.json", "map.json", "report.html", "figures", "seeds", "fitted")


class AccountingError(RuntimeError):
    """The files on disk do not account for every input row: a bug in daar, never a user error."""


@contextmanager
def run_folder(out_dir: Path, purpose: str, *extra_locks: Path) -> Iterator[Path]:
    """Lock `out_dir` (and any extra folders, e.g. a shared cache) and clear its earlier outputs."""
    out_dir = Path(out_dir)
    with ExitStack() as stack:
        for folder in (out_dir, *extra_locks):
            stack.enter_context(folder_lock(folder, purpose))
        (out_dir / MANIFEST).unlink(missing_ok=True)
        for name in OUTPUTS:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        yield out_dir


def write_rows(out_dir: Path, selected: Iterable[dict[str, Any]], rejected: Iterable[dict[str, Any]]) -> None:
    """selected.jsonl (raw rows) and rejected.jsonl (position, id, reason), each written whole."""
    write_jsonl(out_dir / SELECTED, selected)
    write_jsonl(out_dir / REJECTED, sorted(rejected, key=lambda r: r["position"]))


def write_scores(out_dir: Path, frame: pd.DataFrame) -> None:
    """scores.parquet; needs `position` and `selected` columns, one row per usable input row."""
    missing = {"position", "selected"} - set(frame.columns)
    if missing:
        raise ValueError(f"scores frame lacks {sorted(missing)}")
    with atomic_path(out_dir / SCORES) as tmp:
        frame.to_parquet(tmp, index=False)


def account(out_dir: Path, rows_in: int) -> dict[str, Any]:
    """Counts read back from the files, checked against `rows_in` (rows the reader saw)."""
    selected_lines = _count_lines(out_dir / SELECTED)
    rejected = [row["position"] for row in _jsonl(out_dir / REJECTED)]
    scores = pd.read_parquet(out_dir / SCORES, columns=["position", "selected"])
    flagged = int(scores["selected"].sum())
    positions = np.concatenate([scores["position"].to_numpy(np.int64), np.asarray(rejected, dtype=np.int64)])
    counts = {
        "rows_in": rows_in,
        "selected": selected_lines,
        "not_selected": len(scores) - flagged,
        "rejected": len(rejected),
    }
    problems = []
    if flagged != selected_lines:
        problems.append(f"{SELECTED} has {selected_lines} rows but {SCORES} flags {flagged}")
    if len(positions) != rows_in or not np.array_equal(np.sort(positions), np.arange(rows_in)):
        problems.append(f"scored and rejected positions do not cover rows 0..{rows_in - 1} exactly once")
    if problems:
        raise AccountingError(f"row accounting of {out_dir} is off, please report this bug: {'; '.join(problems)}")
    counts["adds_up"] = counts["selected"] + counts["not_selected"] + counts["rejected"] == rows_in
    return counts


def finish(out_dir: Path, manifest: dict[str, Any]) -> None:
    """The manifest, written last: its presence marks the folder as finished."""
    write_json(out_dir / MANIFEST, manifest)


def finished_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    return read_json(path) if path.is_file() else None


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    import json

    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
