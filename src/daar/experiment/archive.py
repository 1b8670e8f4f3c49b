"""An experiment's cells packed small enough to commit, and read back to rebuild every table.

Why: the first evidence study's per-item results and selections lived under the ignored `runs/`,
so nobody could recompute its numbers from the repository. `pack` keeps, for every finished cell,
its result (cell.json, paths made relative), its selected ids, every benchmark item's and every
held-out row's score (gzip JSON lines), and the display-only fields of the sample's rows (so the
per-source selection rates can be counted without the pool). `load` gives cells that
`daar.experiment.runner.write_tables` and `daar.experiment.paired` read exactly as they read a run.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from daar.experiment.heldout import SAMPLES_FILE as HELDOUT_SAMPLES
from daar.utils.cache import read_json, write_json

CELLS = "cells"
ITEMS = "items"
ROWS = "rows.jsonl.gz"  # the sample's ids with their display-only fields


def pack(out_dir: Path, target: Path, fields: tuple[str, ...] = ("domain", "source")) -> list[str]:
    """Copy the finished cells of experiment `out_dir` into `target` (replacing what was packed
    before); returns the packed cells' names."""
    out_dir, target = Path(out_dir), Path(target)
    shutil.rmtree(target / CELLS, ignore_errors=True)
    shutil.rmtree(target / ITEMS, ignore_errors=True)
    names = []
    for path in sorted((out_dir / CELLS).glob("*/cell.json")):
        cell = read_json(path)
        name = path.parent.name
        items = target / ITEMS / name
        items.mkdir(parents=True, exist_ok=True)
        samples = Path(cell["eval_report"]).with_name("eval.samples.jsonl")
        _gzip_copy(samples, items / "eval.samples.jsonl.gz")
        cell["eval_report"] = f"{ITEMS}/{name}/eval.json"
        if cell.get("heldout"):
            _gzip_copy(Path(cell["heldout"]["samples"]), items / f"{HELDOUT_SAMPLES}.gz")
            cell["heldout"]["samples"] = f"{ITEMS}/{name}/{HELDOUT_SAMPLES}"
        if cell.get("selection"):
            cell["selection"]["path"] = None  # the ids are kept; the rows are the pool's
        write_json(target / CELLS / f"{name}.json", cell)
        names.append(name)
    with gzip.open(target / ROWS, "wt", encoding="utf-8") as handle:
        for line in (out_dir / "pool.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            handle.write(json.dumps({"id": row["id"], **{f: row.get(f) for f in fields}}) + "\n")
    for name in ("experiment.json", "pool.json"):
        if (out_dir / name).is_file():
            shutil.copyfile(out_dir / name, target / name)
    return names


def _gzip_copy(source: Path, target: Path) -> None:
    with open(source, "rb") as read, gzip.GzipFile(target, "wb", mtime=0) as write:
        shutil.copyfileobj(read, write)


def load(target: Path, scratch: Path | None = None) -> list[dict[str, Any]]:
    """The packed cells, their item files unpacked (gzip -> plain) into `scratch` (a new temporary
    folder by default, never the repository) so that every reader of a run reads them as it reads a
    run's files."""
    target = Path(target).resolve()
    scratch = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="daar-archive-"))
    cells = []
    for path in sorted((target / CELLS).glob("*.json")):
        cell = read_json(path)
        for packed in sorted((target / ITEMS / path.stem).glob("*.gz")):
            plain = scratch / ITEMS / path.stem / packed.with_suffix("").name
            plain.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(packed, "rb") as read, open(plain, "wb") as write:
                shutil.copyfileobj(read, write)
        cell["eval_report"] = str(scratch / cell["eval_report"])
        if cell.get("heldout"):
            cell["heldout"]["samples"] = str(scratch / cell["heldout"]["samples"])
        cells.append(cell)
    return cells


def sample_fields(target: Path) -> dict[str, dict[str, Any]]:
    """id -> the display-only fields of each row of the packed study's sample."""
    with gzip.open(Path(target) / ROWS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {r["id"]: r for r in rows}
