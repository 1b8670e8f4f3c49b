"""A run folder: the files every selecting command writes, and the one row accounting over them.

`daar select` and `daar pools` both end in selected.jsonl (rows as they were), rejected.jsonl
(position, id, reason), scores.parquet (one row per usable input row, `selected` flag) and
manifest.json. Two promises hold for every such folder:

- A folder never looks finished when it is not, and never mixes two runs. A run holds the
  folder's lock from its start (`locked`); only when its results are computed, just before the
  first write, `clear_outputs` deletes the manifest (its presence means "finished") and then every
  output an earlier run left. A run that fails before that (a typo in an examples file, a model that
  cannot be loaded) leaves the earlier finished run whole; one that dies while writing leaves a
  folder without a manifest.
- No row is lost. `account` counts what is on disk (lines of selected.jsonl and rejected.jsonl,
  rows of scores.parquet) and checks that the positions of scored and rejected rows cover every
  input row exactly once, that the selected counts agree, and that every selected row that carries
  an id is one the scores flag as selected; a mismatch is a bug and stops the run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.utils.cache import atomic_path, write_json, write_jsonl
from daar.utils.lock import folder_lock
from daar.write.formats import HF_FOLDER, PARQUET
from daar.write.trainers import DATASET_INFO

MANIFEST = "manifest.json"
SELECTED = "selected.jsonl"
REJECTED = "rejected.jsonl"
SCORES = "scores.parquet"
# Everything a selecting run may have written; the cache is not an output and stays.
# ("seeds" is where runs before 0.2 kept the domains' examples: cleared too, so no stale folder stays.)
OUTPUTS = (SELECTED, REJECTED, SCORES, "analysis.json", "map.json", "report.html", "figures", "examples", "seeds")
OUTPUTS += ("fitted", PARQUET, HF_FOLDER, DATASET_INFO)


class AccountingError(RuntimeError):
    """The files on disk do not account for every input row: a bug in daar, never a user error."""


@contextmanager
def locked(out_dir: Path, purpose: str, *extra_locks: Path) -> Iterator[Path]:
    """Hold the lock of `out_dir` (and of any extra folders, e.g. a shared cache) for a whole run."""
    out_dir = Path(out_dir)
    with ExitStack() as stack:
        for folder in (out_dir, *extra_locks):
            stack.enter_context(folder_lock(folder, purpose))
        yield out_dir


def clear_outputs(out_dir: Path) -> None:
    """The manifest first, then every output and half-written temporary an earlier run left."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    leftovers = [p for p in out_dir.glob(".*") if p.name.endswith((".tmp", ".old"))]
    for path in [*(out_dir / name for name in OUTPUTS), *leftovers]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


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


def account(out_dir: Path, rows_in: int, id_field: str = "id") -> dict[str, Any]:
    """Counts read back from the files, checked against `rows_in` (rows the reader saw)."""
    # ids only, never the rows: a selection may be larger than memory
    selected = 0
    carried: list[str] = []
    for row in _jsonl(out_dir / SELECTED):
        selected += 1
        if isinstance(row, dict) and row.get(id_field) is not None:
            carried.append(str(row[id_field]).strip())
    rejected = [row["position"] for row in _jsonl(out_dir / REJECTED)]
    scores = pd.read_parquet(out_dir / SCORES)
    flags = scores["selected"].to_numpy(bool)
    positions = np.concatenate([scores["position"].to_numpy(np.int64), np.asarray(rejected, dtype=np.int64)])
    problems = []
    if int(flags.sum()) != selected:
        problems.append(f"{SELECTED} has {selected} rows but {SCORES} flags {int(flags.sum())}")
    if len(positions) != rows_in or not np.array_equal(np.sort(positions), np.arange(rows_in)):
        problems.append(f"scored and rejected positions do not cover rows 0..{rows_in - 1} exactly once")
    flagged_ids = set(scores.loc[flags, "id"].astype(str))
    # ids as the reader makes them (daar.read.records): text, surrounding whitespace stripped
    # (an empty CSV id cell means "no id": such rows are known by position only)
    strangers = [i for i in carried if i and i not in flagged_ids]
    if strangers:
        problems.append(f"{SELECTED} holds rows the scores do not flag as selected (id {strangers[0]!r})")
    if problems:
        raise AccountingError(f"row accounting of {out_dir} is off, please report this bug: {'; '.join(problems)}")
    in_sample = scores["in_sample"].to_numpy(bool) if "in_sample" in scores else np.ones(len(scores), bool)
    return {
        "rows_in": rows_in,
        "selected": selected,
        "not_selected": int((~flags).sum()),
        "rejected": len(rejected),
        "sampled_out": int((~in_sample).sum()),
        "scored": int(in_sample.sum()),
        "adds_up": True,  # the checks above passed: every input row is in exactly one of the files
    }


def finish(out_dir: Path, manifest: dict[str, Any]) -> None:
    """The manifest, written last: its presence marks the folder as finished."""
    write_json(out_dir / MANIFEST, manifest)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    import json

    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
