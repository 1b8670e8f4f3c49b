"""The selection written also as Parquet or as a `datasets` folder (`--output-format parquet|hf`).

selected.jsonl is always written (rows exactly as they were); `parquet` adds selected.parquet and
`hf` adds selected/ (`Dataset.save_to_disk`: `datasets.load_from_disk("RUN/selected")`). Both are
made from one Arrow stream of the selected rows, with the pool's own Arrow schema when it has one
(a Parquet, Arrow or `datasets` pool: types and `datasets` features are kept), else with a schema
inferred over every selected row (JSON and CSV pools: a column's type is the one its values share,
a key missing from a row is null). The stream is built a batch of rows at a time, so the selection
never has to fit in memory. Their rows are counted back (`count_rows`) like the JSON lines'.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from daar.errors import UserError
from daar.utils.cache import atomic_dir, atomic_path

OutputFormat = Literal["jsonl", "parquet", "hf"]
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "hf")
PARQUET = "selected.parquet"
HF_FOLDER = "selected"
STREAM = ".selected.arrow.tmp"  # the Arrow stream both are made from, removed once they are
BATCH_ROWS = 1024
ROW_GROUP_ROWS = 100_000  # Parquet row groups a block-by-block reader can skip (README, "Pools of any size")


def check_format(output_format: str) -> OutputFormat:
    if output_format not in OUTPUT_FORMATS:
        raise UserError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    return output_format  # type: ignore[return-value]


class ArrowTee:
    """Passes the selected rows through (to selected.jsonl) while writing them to an Arrow stream
    with the pool's schema. A row the schema cannot hold (a value the reader turned into text, such
    as a nanosecond time) stops the tee: the stream is then made from selected.jsonl instead."""

    def __init__(self, out_dir: Path, schema: Any) -> None:
        self.path = out_dir / STREAM
        self.schema = schema
        self.failed = schema is None
        self._writer: Any = None
        self._batch: list[dict[str, Any]] = []

    def rows(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        try:
            for row in rows:
                if not self.failed:
                    self._batch.append(row)
                    if len(self._batch) >= BATCH_ROWS:
                        self._flush()
                yield row
            if not self.failed:
                self._flush()
        finally:  # also when writing selected.jsonl failed: the stream's file is not left open
            self.close()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._writer is None:
            self._writer = pa.ipc.new_stream(str(self.path), self.schema)
        try:
            table = pa.Table.from_pylist(self._batch, schema=self.schema)
        except (pa.ArrowException, TypeError, ValueError):
            self.failed = True
        else:
            self._writer.write_table(table)
        self._batch = []

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_formats(out_dir: Path, output_format: OutputFormat, tee: ArrowTee | None) -> None:
    """selected.parquet or selected/ from the tee's stream, or from selected.jsonl when there is none."""
    if output_format == "jsonl":
        return
    stream = out_dir / STREAM
    try:
        if tee is None or tee.failed:
            _stream_from_jsonl(out_dir / "selected.jsonl", stream)
        if output_format == "parquet":
            _to_parquet(stream, out_dir / PARQUET)
        else:
            _to_dataset(stream, out_dir / HF_FOLDER)
    finally:
        stream.unlink(missing_ok=True)


def _jsonl_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                batch.append(json.loads(line))
                if len(batch) >= BATCH_ROWS:
                    yield batch
                    batch = []
    if batch:
        yield batch


def _columns(batch: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in batch:
        names.update(dict.fromkeys(row))
    return list(names)


def _stream_from_jsonl(source: Path, target: Path) -> None:
    """Two passes over selected.jsonl: the schema its rows share, then the rows in that schema."""
    import pyarrow as pa

    schemas = [
        pa.schema([pa.field(k, _column(source, batch, k).type) for k in _columns(batch)])
        for batch in _jsonl_batches(source)
    ]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except pa.ArrowException as err:
        raise _not_one_table(source, str(err)) from None
    with pa.ipc.new_stream(str(target), schema) as writer:
        for batch in _jsonl_batches(source):
            columns = {f.name: _column(source, batch, f.name, f.type) for f in schema}
            writer.write_table(pa.table(columns, schema=schema))


def _column(source: Path, batch: list[dict[str, Any]], name: str, kind: Any = None) -> Any:
    """One field of a batch of rows as an Arrow array; values of kinds no one column holds (ids
    that are integers in some rows and strings in others, which the reader accepts) are a UserError
    naming the field."""
    import pyarrow as pa

    try:
        return pa.array([r.get(name) for r in batch], type=kind)
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise _not_one_table(source, f"field '{name}': {err}") from None


def _not_one_table(source: Path, why: str) -> UserError:
    return UserError(
        f"{source}: the selected rows cannot be written as one table ({why}); "
        "the selection is in selected.jsonl, or rerun with --output-format jsonl"
    )


def _to_parquet(stream: Path, target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pa.memory_map(str(stream)) as source, atomic_path(target) as tmp:
        reader = pa.ipc.open_stream(source)
        with pq.ParquetWriter(tmp, reader.schema) as writer:
            pending: list[Any] = []
            rows = 0
            for batch in reader:
                pending.append(batch)
                rows += batch.num_rows
                if rows >= ROW_GROUP_ROWS:
                    writer.write_table(pa.Table.from_batches(pending, reader.schema), row_group_size=ROW_GROUP_ROWS)
                    pending, rows = [], 0
            writer.write_table(pa.Table.from_batches(pending, reader.schema), row_group_size=ROW_GROUP_ROWS)


def _to_dataset(stream: Path, target: Path) -> None:
    """`Dataset.save_to_disk` of the stream (memory-mapped by `datasets`, not read into memory)."""
    import datasets
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    dataset = datasets.Dataset.from_file(str(stream))
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # a bar per write of a few rows is noise in daar's own output
    try:
        with atomic_dir(target) as tmp:
            shutil.rmtree(tmp, ignore_errors=True)  # save_to_disk makes its own folder
            dataset.save_to_disk(str(tmp))
    finally:
        if not quiet:
            enable_progress_bars()
    del dataset


def count_rows(out_dir: Path, output_format: str) -> dict[str, int]:
    """Rows of the extra files, read back: from the Parquet footer, from the folder's Arrow files."""
    if output_format == "parquet":
        import pyarrow.parquet as pq

        return {PARQUET: pq.ParquetFile(out_dir / PARQUET).metadata.num_rows}
    if output_format == "hf":
        from daar.read.columnar import arrow_batches
        from daar.read.streams import dataset_files

        files = dataset_files(out_dir / HF_FOLDER) or []
        return {f"{HF_FOLDER}/": sum(b.num_rows for f in files for b in arrow_batches(f))}
    return {}
