"""Hugging Face `datasets` as pools (daar.read.hub): a data folder through `datasets.load_dataset`
with a split and a subset, a DatasetDict saved to disk, a `datasets.Dataset` from Python, and a hub
id that is not cached while offline. Every dataset here is made locally; nothing reaches the hub."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from daar.read import PoolError, open_pool, pool_files, read_pool

ROWS = [
    {"id": "a", "instruction": "Add 2 and 3.", "output": "5"},
    {"id": "b", "instruction": "Name a colour.", "output": ""},  # empty output: rejected
    {"id": "c", "instruction": "Say hi.", "output": "hi"},
    {"id": "a", "instruction": "Again.", "output": "again"},  # duplicate id: rejected
]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """load_dataset writes its Arrow files under the datasets cache: a private one per test."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_data_folder_loads_by_split_with_every_row_checked(tmp_path):
    folder = tmp_path / "mydata"
    _jsonl(folder / "train.jsonl", ROWS)
    _jsonl(folder / "test.jsonl", ROWS[:1])
    pool = read_pool(folder, split="train")
    assert pool.ids == ["a", "c"] and pool.rows_in == 4
    assert [(r.position, r.reason) for r in pool.rejected] == [
        (1, "mydata[train] row 1: field 'output' is empty"),
        (3, "mydata[train] row 3: field 'id': duplicate id 'a' (first seen at row 0)"),
    ]
    assert pool.source["split"] == "train" and pool.source["dataset"] == str(folder.resolve())
    assert len(pool.sha256) == 64 and pool.schema.names == ["id", "instruction", "output"]
    assert read_pool(folder, split="test").ids == ["a"]
    with pytest.raises(PoolError, match=r"cannot load .*Unknown split"):
        read_pool(folder, split="dev")
    # without --split or --subset a folder stays a folder of shard files (block by block)
    assert open_pool(folder) == folder


def test_a_subset_is_a_configuration_of_the_folder(tmp_path):
    """A dataset repository's README names its configurations (subsets) and their files."""
    folder = tmp_path / "repo"
    _jsonl(folder / "math" / "train.jsonl", ROWS[:1])
    _jsonl(folder / "chat" / "train.jsonl", ROWS[2:3])
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: math\n  data_files:\n  - split: train\n    path: math/train.jsonl\n"
        "- config_name: chat\n  data_files:\n  - split: train\n    path: chat/train.jsonl\n---\n",
        encoding="utf-8",
    )
    assert read_pool(folder, subset="chat", split="train").ids == ["c"]
    pool = read_pool(folder, subset="math")  # one split: no --split needed
    assert pool.ids == ["a"] and pool.source["subset"] == "math" and pool.path.name == "repo[math:train]"


def test_a_saved_datasetdict_is_read_by_split(tmp_path):
    folder = tmp_path / "dict"
    splits = {"train": datasets.Dataset.from_list(ROWS), "validation": datasets.Dataset.from_list(ROWS[2:3])}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    assert open_pool(folder, split="validation") == folder / "validation"  # a Dataset folder: shards
    pool = read_pool(folder, split="train")
    assert pool.ids == ["a", "c"]
    assert pool.rejected[0].reason == "data-00000-of-00001.arrow row 1: field 'output' is empty"
    with pytest.raises(PoolError, match=r"DatasetDict with splits train, validation; give --split NAME"):
        read_pool(folder)
    with pytest.raises(PoolError, match=r"no split 'test'; its splits are train, validation"):
        read_pool(folder, split="test")
    with pytest.raises(PoolError, match="has no splits or subsets"):
        read_pool(folder / "train", split="train")


def test_a_dataset_from_python_is_checked_row_by_row(tmp_path):
    dataset = datasets.Dataset.from_list(ROWS)
    pool = read_pool(dataset)
    assert pool.ids == ["a", "c"] and pool.rows_in == 4
    assert pool.rejected[0].reason == "dataset row 1: field 'output' is empty"
    # a selection of a Dataset is read through its indices, in their order
    picked = read_pool(dataset.select([2, 0]))
    assert picked.ids == ["c", "a"] and picked.rows_in == 2
    assert picked.sha256 != pool.sha256
    assert read_pool(datasets.Dataset.from_list(ROWS)).sha256 == pool.sha256  # the rows name the content
    assert read_pool(datasets.DatasetDict({"train": dataset}), split="train").ids == ["a", "c"]
    with pytest.raises(PoolError, match="no splits or subsets"):
        read_pool(dataset, split="train")


def test_what_is_no_pool_is_named_not_a_traceback():
    """A streaming dataset, or rows in a list, are a clear PoolError naming what was given."""
    streaming = datasets.Dataset.from_list(ROWS).to_iterable_dataset()
    with pytest.raises(PoolError, match="DatasetDict, not IterableDataset; load it without streaming=True"):
        read_pool(streaming)
    with pytest.raises(PoolError, match=r"a pool is a path, a dataset id, .* not list$"):
        read_pool(ROWS)


def test_block_by_block_reads_the_arrow_files_datasets_keeps(tmp_path):
    folder = tmp_path / "mydata"
    _jsonl(folder / "train.jsonl", ROWS)
    source = open_pool(folder, split="train")
    files = pool_files(source)
    assert [f.suffix for f in files] == [".arrow"] and all(f.is_file() for f in files)
    with pytest.raises(PoolError, match="save it with Dataset.save_to_disk"):
        pool_files(open_pool(source.dataset.select([0, 2])))


def test_an_uncached_hub_id_offline_is_one_clear_error(tmp_path):
    with pytest.raises(PoolError) as caught:
        read_pool("daar-test-nobody/no-such-dataset", split="train")
    message = str(caught.value)
    assert message.startswith("daar-test-nobody/no-such-dataset: no such file or folder, and a dataset id")
    assert "HF_HUB_OFFLINE=1" in message
    # a missing file is a missing file, never a question to the hub
    with pytest.raises(PoolError, match=r"nope\.jsonl: no such file$"):
        read_pool(tmp_path / "nope.jsonl")
