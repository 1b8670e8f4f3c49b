"""The exact cut over the scores of a whole pool, and the run folder it leaves.

Only the scores are gathered: one small row per input row (position, id, score, pseudo-domain,
probabilities), never a text. The cut is the fitted selector's own (`Selector.cut`), so any
strategy gives the rows it gives in memory. selected.jsonl is then written by reading the shards
once more and copying the chosen rows as they were read; rejected.jsonl, scores.parquet,
manifest.json and the row accounting are the ones `daar select` writes (daar.write).

Duplicate ids are found here, because blocks are scored apart: as `read_pool` does, the first
row keeps its id and every later one is rejected with a reason naming the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daar.config import SelectConfig
from daar.errors import UserError
from daar.read import file_sha256
from daar.read.columnar import COLUMNAR, file_schema
from daar.read.records import duplicate_id_problem, free_positional_id
from daar.scale.folder import ScoreFolder, fitted_settings
from daar.scale.shards import Shard, blocks_of, raw_rows_at
from daar.select.base import check_choice, load_selector, target_count
from daar.utils.cache import atomic_dir
from daar.utils.inside import inside
from daar.write.run import RunWriter, ranked

KEY_COLUMNS = ("position", "id", "explicit_id", "line", "reason")


def gather(folder: ScoreFolder) -> pd.DataFrame:
    """Every block's rows in pool order (scored rows and rows rejected on reading), each block
    checked against its digests."""
    plan = folder.plan()
    blocks = blocks_of(folder.shards(), int(plan["chunk_rows"]))
    frame = pd.concat([folder.read_block(b) for b in blocks], ignore_index=True)
    return frame.sort_values("position", kind="stable").reset_index(drop=True)


def reject_duplicates(frame: pd.DataFrame, shards: list[Shard], id_field: str) -> pd.DataFrame:
    """Later rows with an explicit id seen before get a reason (see the module docstring)."""
    usable = frame["reason"].isna() if "reason" in frame else pd.Series(True, index=frame.index)
    if "reason" not in frame:
        frame["reason"] = pd.Series([None] * len(frame), dtype=object)
    explicit = usable & frame["explicit_id"].fillna(False).astype(bool)
    later = explicit & frame["id"].where(explicit).duplicated(keep="first")
    if later.any():
        first = frame[explicit].drop_duplicates("id").set_index("id")["position"]
        offsets = np.array([s.offset for s in shards])
        for i in np.flatnonzero(later.to_numpy()):
            position, row_id = int(frame.at[i, "position"]), frame.at[i, "id"]
            shard = shards[int(np.searchsorted(offsets, position, side="right")) - 1]
            seen = int(first[row_id])
            home = shards[int(np.searchsorted(offsets, seen, side="right")) - 1]
            line = frame.at[i, "line"]
            where = f" (line {line})" if not pd.isna(line) else ""
            there = "" if home is shard else f"{home.path.name} "
            problem = duplicate_id_problem(id_field, row_id, f"{there}row {seen - home.offset}")
            frame.at[i, "reason"] = f"{shard.path.name} row {position - shard.offset}{where}: {problem}"
    ids = set(frame.loc[explicit & ~later, "id"])
    positional = frame["reason"].isna() & ~frame["explicit_id"].fillna(False).astype(bool)
    for i in np.flatnonzero(positional.to_numpy()):  # "#17" taken by a real id: "##17" (daar.read)
        frame.at[i, "id"] = free_positional_id(frame.at[i, "id"], ids)
    return frame


def shards_schema(shards: list[Shard]) -> Any:
    """The Arrow schema the shards share when they are all Parquet or Arrow files (the chosen rows
    are then written back in it); None for text shards or schemas that differ."""
    if not all(s.path.name.lower().endswith(COLUMNAR) for s in shards):
        return None
    schemas = [file_schema(s.path) for s in shards]
    return schemas[0] if all(schema.equals(schemas[0]) for schema in schemas) else None


def select_from_scores(
    scores_dir: Path,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    output_format: str = "jsonl",
) -> dict[str, Any]:
    """Cut the scores in `scores_dir` and write a run folder; returns its manifest (plus `extra`).
    `overrides` change the cut's settings (ratio, count, strategy, ...), never the fitted prober;
    `output_format` as in `daar select` (daar.write.formats)."""
    folder = ScoreFolder(Path(scores_dir))
    plan = folder.plan()
    fitted = Path(plan["fitted_path"])
    config = fitted_settings(fitted)
    if overrides:
        config = SelectConfig.model_validate({**config.model_dump(mode="json"), **overrides})
    shards = folder.shards()
    for shard in shards:
        if not shard.path.is_file() or file_sha256(shard.path) != shard.sha256:
            raise UserError(f"{shard.path}: changed or missing since it was scored into {scores_dir}; score it again")
    selector = load_selector(fitted)
    # copied into the run folder: files of the fitted folder only, never where a link in it leads
    fitted_files = [inside(fitted, p.name, f"fitted folder {fitted}") for p in sorted(fitted.iterdir()) if p.is_file()]
    with RunWriter(Path(out_dir), "select --scores", config.method, output_format) as run:
        frame = reject_duplicates(gather(folder), shards, config.fields.id)
        rejected = frame[frame["reason"].notna()]
        scored = frame[frame["reason"].isna()].drop(columns=["reason"]).reset_index(drop=True)
        if scored.empty:
            first = f"; first problem: {rejected['reason'].iloc[0]}" if len(rejected) else ""
            raise UserError(f"{shards[0].path}: no usable row among {sum(s.rows for s in shards)}{first}")
        columns = [c for c in scored.columns if c not in KEY_COLUMNS]
        scores = {c: scored[c].to_numpy() for c in columns}
        n = target_count(len(scored), config.ratio, config.count)
        chosen = check_choice(selector.name, selector.cut(scores, n, config), n, len(scored))
        mask = np.zeros(len(scored), dtype=bool)
        mask[chosen] = True

        chosen_positions = set(scored["position"].to_numpy()[mask].tolist())
        run.write_rows(
            (raw for shard in shards for raw in raw_rows_at(shard, chosen_positions)),
            rejected[["position", "id", "reason"]].to_dict("records"),
            ranked(scored.drop(columns=["explicit_id", "line"]), mask),
            sum(s.rows for s in shards),
            config.fields.id,
            schema=shards_schema(shards),
            fields=config.fields,
        )
        with atomic_dir(run.out_dir / "fitted") as tmp:
            for path in fitted_files:
                (tmp / path.name).write_bytes(path.read_bytes())
        source = {"shards": plan["shards"], "scores": str(Path(scores_dir).resolve())}
        manifest = run.header(config.result_dict(), source, [d.name for d in config.domains])
        manifest = run.finish({**manifest, **(extra or {})})
    return manifest
