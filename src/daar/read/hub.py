"""Hugging Face `datasets` as pools: what a POOL argument names, and a `datasets.Dataset` read as rows.

What a pool names, in this order (`open_pool`):

- a `datasets.Dataset` (Python): its rows; a `DatasetDict` needs `split`;
- a data file: the file (`--split` / `--subset` are refused: a file has neither);
- a `Dataset.save_to_disk` folder: a pool of its Arrow files, as before; a `DatasetDict` folder
  (`dataset_dict.json`) is its `split` subfolder, which is one of those (a single split is taken
  without `--split`);
- another folder, with `split` or `subset`: `datasets.load_dataset(folder, subset, split=split)`
  (a folder of `train.jsonl` / `test.jsonl`, or a dataset repository cloned with its README's
  configs); without either it stays a folder of shard files, as before;
- a glob: its shard files, as before;
- anything else: a hub id for `datasets.load_dataset`, through the Hugging Face cache and, unless
  offline (HF_HUB_OFFLINE=1, `daar --offline`), the hub. A dataset with one split needs no `--split`.

A loaded `Dataset` is read a record batch at a time, row by row, with the Parquet rules of
daar.read (the same checks and reasons: "alpaca[train] row 17: field 'output' is missing"), and
named in the manifest by its id, subset, split, datasets' fingerprint and the sha256 of its rows'
Arrow data. For block-by-block scoring its shards are the Arrow files `datasets` keeps in its
cache (`pool_files`), when they hold exactly its rows.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daar.read.columnar import BATCH_ROWS
from daar.read.raw import SUFFIXES, PoolError
from daar.read.streams import COLUMNAR, arrow_batches, dataset_files, split_names
from daar.utils.hub import hub_offline, offline_reason


@dataclass(frozen=True)
class DatasetPool:
    """A `datasets.Dataset` as a pool: `name` prefixes its rejection reasons, `source` is the
    manifest's `input`."""

    dataset: Any
    name: str
    source: dict[str, Any] = field(default_factory=dict)


PoolSource = str | Path | DatasetPool


def is_dataset(value: Any, kind: str = "Dataset") -> bool:
    """Whether `value` is a datasets.Dataset (or `kind`), without importing datasets for a path."""
    module = sys.modules.get("datasets")
    return module is not None and isinstance(value, getattr(module, kind))


def open_pool(spec: Any, split: str | None = None, subset: str | None = None) -> PoolSource:
    """What `spec` names as a pool (see the module docstring): a path or glob as before, or a dataset."""
    if isinstance(spec, DatasetPool):
        return spec
    if is_dataset(spec):
        if split or subset:
            raise PoolError("a datasets.Dataset has no splits or subsets: give the Dataset itself")
        split = str(spec.split) if spec.split else None
        source = {"dataset": "(a datasets.Dataset)", "split": split}
        return DatasetPool(spec, f"dataset[{split}]" if split else "dataset", source)
    if is_dataset(spec, "DatasetDict"):
        if subset:
            raise PoolError("a DatasetDict has splits, not subsets: give split=NAME")
        name = _one_split(list(spec), split, "the DatasetDict")
        return DatasetPool(spec[name], name, {"dataset": "(a datasets.DatasetDict)", "split": name})
    if not isinstance(spec, str | os.PathLike):
        hint = "; load it without streaming=True" if is_dataset(spec, "IterableDataset") else ""
        raise PoolError(
            f"a pool is a path, a dataset id, or a datasets.Dataset or DatasetDict, not {type(spec).__name__}{hint}"
        )
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        if split or subset:
            raise PoolError(f"{path}: --split and --subset are for datasets; a data file has neither")
        return spec
    if path.is_dir():
        return _folder(path, split, subset)
    if any(c in text for c in "*?[") or not looks_like_hub_id(text):
        return spec  # a glob, or a file that is not there: the readers say so
    return load_hub_dataset(text, split, subset)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_hub_id(text: str) -> bool:
    """`name` or `owner/name`, not spelled like a data file: a missing "data/pool.jsonl" is a
    missing file, never a request to the hub."""
    return bool(_HUB_ID.match(text)) and not text.lower().endswith(SUFFIXES) and ".." not in text


def _folder(path: Path, split: str | None, subset: str | None) -> PoolSource:
    names = split_names(path)
    if names is not None:  # a DatasetDict saved to disk: its split is a Dataset folder
        if subset:
            raise PoolError(f"{path}: a DatasetDict folder has splits ({', '.join(names)}), not subsets")
        return path / _one_split(names, split, str(path))
    if dataset_files(path) is not None:
        if split or subset:
            raise PoolError(f"{path}: a datasets Dataset folder has no splits or subsets: drop --split/--subset")
        return path
    if split or subset:
        return load_hub_dataset(str(path), split, subset)
    return path


def _one_split(names: list[str], split: str | None, where: str) -> str:
    if split is None:
        if len(names) == 1:
            return names[0]
        raise PoolError(f"{where}: a DatasetDict with splits {', '.join(names) or '(none)'}; give --split NAME")
    if split not in names:
        raise PoolError(f"{where}: no split {split!r}; its splits are {', '.join(names)}")
    return split


def load_hub_dataset(spec: str, split: str | None, subset: str | None) -> DatasetPool:
    """`datasets.load_dataset(spec, subset, split=split)`: a hub id (through the Hugging Face cache,
    downloaded unless offline) or a local folder of data files."""
    try:
        import datasets
    except ImportError as err:  # a declared dependency: only a broken install lands here
        raise PoolError(f"{spec}: reading a dataset id needs the `datasets` package ({err})") from None
    local = Path(spec).expanduser().is_dir()
    try:
        loaded = datasets.load_dataset(spec, subset, split=split)
    except Exception as err:  # datasets raises many unrelated types for "cannot load"
        what = "a folder that" if local else "no such file or folder, and a dataset id that"
        offline = f"; offline ({offline_reason()}): only cached datasets load" if hub_offline() else ""
        where = f"{spec}: {what} datasets.load_dataset"
        raise PoolError(f"{where} cannot load ({type(err).__name__}: {err}){offline}") from None
    if is_dataset(loaded, "DatasetDict"):
        split = _one_split(list(loaded), None, spec)
        loaded = loaded[split]
    label = Path(spec).name if local else spec.rsplit("/", 1)[-1]
    name = f"{label}[{subset}:{split}]" if subset else f"{label}[{split}]"
    source = {"dataset": str(Path(spec).resolve()) if local else spec, "subset": subset, "split": str(split)}
    return DatasetPool(loaded, name, source | {"fingerprint": getattr(loaded, "_fingerprint", None)})


def dataset_tables(pool: DatasetPool) -> Iterator[Any]:
    """The dataset's rows as Arrow tables of up to BATCH_ROWS rows, in order (a selection or a
    shuffle of a Dataset included: its indices are followed)."""
    yield from pool.dataset.with_format("arrow").iter(batch_size=BATCH_ROWS)


class ArrowDigest:
    """sha256 of record batches as Arrow IPC (the schema once, then every batch): the same rows in
    the same batches give the same digest, wherever `datasets` stores them."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._schema = False

    def update(self, table: Any) -> None:
        if not self._schema:
            self._digest.update(table.schema.serialize().to_pybytes())
            self._schema = True
        for batch in table.to_batches():
            self._digest.update(batch.serialize().to_pybytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def pool_files(source: PoolSource) -> str | Path | list[Path]:
    """What the block-by-block path reads: a path or glob as given, or a dataset's Arrow files in
    the datasets cache when they hold exactly its rows."""
    if not isinstance(source, DatasetPool):
        return source
    dataset = source.dataset
    files = [Path(f["filename"]) for f in dataset.cache_files]
    if getattr(dataset, "_indices", None) is None and files and all(f.name.endswith(COLUMNAR) for f in files):
        rows = sum(batch.num_rows for f in files for batch in arrow_batches(f))
        if rows == len(dataset):
            return files
    raise PoolError(
        f"{source.name}: not stored as whole Arrow files (a slice, a selection or a dataset in memory), so it "
        "cannot be read block by block; save it with Dataset.save_to_disk and give the folder"
    )
