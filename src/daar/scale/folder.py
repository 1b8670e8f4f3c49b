"""A scores folder (the output of `daar score`) and a fitted folder's settings, read by every part
of the block-by-block path: the executors, the scoring, the cut.

A scores folder holds plan.json (shards, block size, the fit's checksum), blocks/<block>.parquet
(each written atomically and last: a block file that exists is finished), features/ (unless
--no-features) and complete.json once every block is there.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.config import SelectConfig
from daar.errors import UserError
from daar.scale.shards import Block, Shard
from daar.select.base import FITTED_SETTINGS as SETTINGS
from daar.utils.cache import atomic_path, read_json, save_arrays, write_json
from daar.utils.entry import CacheEntry, Damaged, warn_damaged


def fitted_settings(fitted: Path) -> SelectConfig:
    """The settings a fitted folder was made with (written by `daar fit` and `daar select`)."""
    path = Path(fitted) / SETTINGS
    if not path.is_file():
        raise UserError(f"{fitted}: not a fitted folder (no {SETTINGS}); make one with `daar fit`")
    return SelectConfig.model_validate(read_json(path))


def fitted_digest(fitted: Path) -> str:
    """A name of the fit: DaaR's daar.json lists the sha256 of every file of its state; a method
    without state is named by its settings."""
    names = ("daar.json", SETTINGS) if (Path(fitted) / "daar.json").is_file() else (SETTINGS,)
    return hashlib.sha256((Path(fitted) / names[0]).read_bytes()).hexdigest()


@dataclass
class ScoreFolder:
    """Where one scoring run writes; see the module docstring for the layout."""

    root: Path

    @property
    def blocks(self) -> Path:
        return self.root / "blocks"

    def block_file(self, block: Block) -> Path:
        return self.blocks / f"{block.name}.parquet"

    def features_file(self, block: Block) -> Path:
        return self.root / "features" / f"{block.name}.safetensors"

    def write_block(self, block: Block, frame: pd.DataFrame, arrays: dict[str, np.ndarray] | None) -> None:
        """Features first, the block's scores last: a block file that exists means a finished block.
        Each file's digest list (daar.utils.entry) is written before it is in place."""
        if arrays is not None:
            save_arrays(self.features_file(block), **arrays)
            CacheEntry.at(self.features_file(block)).seal([self.features_file(block).name])
        name = self.block_file(block).name
        with atomic_path(self.block_file(block)) as tmp:
            frame.to_parquet(tmp, index=False)
            CacheEntry.at(self.block_file(block)).seal([name], staged={name: tmp})

    def finished(self, block: Block, features: bool) -> bool:
        """Whether the block was written whole (with its features, when asked for) and is unchanged
        since: a damaged one is named in a warning and scored again."""
        files = [self.block_file(block), *([self.features_file(block)] if features else [])]
        if not all(path.exists() for path in files):
            return False
        for path in files:
            entry = CacheEntry.at(path)
            try:
                if entry.read([path.name]) is None:
                    return False  # written by an older daar: scored again
            except Damaged as err:
                warn_damaged("scores block", entry, str(err))
                return False
        return True

    def read_block(self, block: Block) -> pd.DataFrame:
        """A finished block's rows, checked against its digests."""
        path = self.block_file(block)
        try:
            found = CacheEntry.at(path).read([path.name]) if path.exists() else None
        except Damaged as err:
            raise UserError(
                f"{self.root}: block {block.name} is damaged ({err}); run `daar score` again, which scores it again"
            ) from None
        if found is None:
            raise UserError(f"{self.root}: block {block.name} is not finished; run `daar score` again")
        return pd.read_parquet(io.BytesIO(bytes(found[path.name])))

    def open(self, plan: dict[str, Any]) -> None:
        """Keep the blocks of an earlier run with the same plan; start afresh otherwise."""
        path = self.root / "plan.json"
        if path.exists() and read_json(path) == plan:
            return
        (self.root / "complete.json").unlink(missing_ok=True)
        for name in ("blocks", "features"):
            shutil.rmtree(self.root / name, ignore_errors=True)
        write_json(path, plan)

    def plan(self) -> dict[str, Any]:
        if not (self.root / "complete.json").exists():
            raise UserError(f"{self.root}: not a finished scores folder (no complete.json); run `daar score` again")
        return read_json(self.root / "plan.json")

    def shards(self) -> list[Shard]:
        return [Shard.from_json(s) for s in self.plan()["shards"]]
