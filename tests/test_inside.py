"""Readers stay inside what they were given (issue 26): the files a `datasets` folder's state.json,
a fitted folder's daar.json, a fitted folder copied into a run, a cache entry's digest list or a
domain's examples name are plain names inside that folder; `..`, an absolute path or a symbolic
link leading out is refused with an error naming the entry, and nothing outside is read."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from conftest import write_jsonl
from pydantic import ValidationError
from typer.testing import CliRunner

from daar.cli import app
from daar.config import Domain, SelectConfig
from daar.errors import UserError
from daar.read import PoolError, file_sha256
from daar.scale.cut import select_from_scores
from daar.scale.shards import shard_paths
from daar.select.daar import DaarSelector
from daar.utils.cache_size import entries, verify


def outside_dataset(root: Path, name: str) -> Path:
    """A `datasets` folder whose state.json names `name` as its data file; a real Arrow file with
    other rows sits beside the folder, at ../outside.arrow."""
    datasets.Dataset.from_list([{"instruction": "inside", "output": "x"}]).save_to_disk(str(root / "ds"))
    datasets.Dataset.from_list([{"instruction": "OUTSIDE", "output": "y"}]).save_to_disk(str(root / "other"))
    shutil.copyfile(next((root / "other").glob("*.arrow")), root / "outside.arrow")
    state = json.loads((root / "ds" / "state.json").read_text())
    state["_data_files"] = [{"filename": name}]
    (root / "ds" / "state.json").write_text(json.dumps(state))
    return root / "ds"


@pytest.mark.parametrize("name", ["../outside.arrow", "ABSOLUTE", "link.arrow"])
def test_a_datasets_folder_names_only_its_own_files(tmp_path, name):
    if name == "ABSOLUTE":
        name = str(tmp_path / "outside.arrow")
    folder = outside_dataset(tmp_path, name)
    if name == "link.arrow":
        os.symlink(tmp_path / "outside.arrow", folder / "link.arrow")
    with pytest.raises(PoolError, match=r"state.json: _data_files\[0\]\.filename: .* daar reads nothing outside it"):
        shard_paths(folder)


def test_a_dataset_dict_folder_names_only_its_own_splits(tmp_path):
    from daar.read import open_pool

    rows = [{"instruction": "OUTSIDE", "output": "y"}]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "elsewhere"))
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["../elsewhere"]}))
    with pytest.raises(PoolError, match=r"dataset_dict.json: splits\[0\]: '../elsewhere' is not a plain name"):
        open_pool(tmp_path / "dd", split="../elsewhere")


def test_the_issue_repro_selects_nothing_from_outside(tiny_model, tmp_path):
    folder = outside_dataset(tmp_path, "../outside.arrow")
    result = CliRunner().invoke(
        app, ["select", str(folder), "--out", str(tmp_path / "run"), "--model", str(tiny_model)]
    )
    assert result.exit_code == 2
    assert "_data_files[0].filename: '../outside.arrow' is not a plain name" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def fitted(tiny_model, real_rows, tmp_path_factory) -> Path:
    from daar.pipeline import run_select

    root = tmp_path_factory.mktemp("inside")
    pool = write_jsonl(root / "pool.jsonl", real_rows[:40])
    (root / "examples.yaml").write_text(
        yaml.safe_dump({"a": [{"instruction": "1+1?", "output": "2"}], "b": [{"instruction": "Hi?", "output": "Hi"}]})
    )
    config = SelectConfig.model_validate(
        {
            "model": str(tiny_model),
            "domains": [{"name": "a", "description": "sums"}, {"name": "b", "description": "greetings"}],
            "examples_file": str(root / "examples.yaml"),
            "device": "cpu",
            "heads": {"epochs": 1, "batch_size": 16},
        }
    )
    run_select(config, pool, root / "run", cache_dir=root / "cache", report=False)
    return root / "run" / "fitted"


@pytest.mark.parametrize("how", ["dotdot", "absolute", "link"])
def test_a_fitted_folder_names_only_its_own_files(fitted, tmp_path, how):
    folder = shutil.copytree(fitted, tmp_path / "fitted")
    secret = tmp_path / "secret.safetensors"
    shutil.copyfile(folder / "reward.safetensors", secret)
    meta = json.loads((folder / "daar.json").read_text())
    name = {"dotdot": "../secret.safetensors", "absolute": str(secret), "link": "link.safetensors"}[how]
    if how == "link":
        os.symlink(secret, folder / name)
    meta["files"][name] = file_sha256(secret)  # the digest matches: only the name is wrong
    (folder / "daar.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"daar.json: files: .* daar reads nothing outside it"):
        DaarSelector.load(folder)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"instruction": "q", "output": "a"}])
    result = CliRunner().invoke(app, ["score", str(pool), "--fitted", str(folder), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "daar reads nothing outside it" in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()


def test_a_fitted_folder_copied_into_a_run_keeps_its_links_out(fitted, tmp_path):
    """`daar select --scores` copies the fitted folder into the run: never a file a link in it leads to."""
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"instruction": "q", "output": "a"}])
    folder = tmp_path / "fitted"
    folder.mkdir()
    (folder / "select.json").write_text(SelectConfig(method="random").model_dump_json())
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", folder / "notes.txt")
    scores = tmp_path / "scores"
    scores.mkdir()
    shard = {"path": str(pool), "rows": 1, "offset": 0, "sha256": file_sha256(pool)}
    (scores / "plan.json").write_text(json.dumps({"shards": [shard], "chunk_rows": 10, "fitted_path": str(folder)}))
    (scores / "complete.json").write_text("{}")
    with pytest.raises(UserError, match="'notes.txt' is a symbolic link leading out of"):
        select_from_scores(scores, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_cache_digest_list_naming_files_outside_its_entry_is_damage(tmp_path):
    stages = tmp_path / "cache" / "stages"
    stages.mkdir(parents=True)
    (tmp_path / "cache" / "keep.txt").write_text("not the cache's")
    (stages / "probe-0001.safetensors").write_bytes(b"weights")
    listed = {"../keep.txt": {"bytes": 15, "digest": "0" * 32}}
    (stages / "probe-0001.digests.json").write_text(json.dumps({"hash": "xxh3_128", "files": listed}))
    damaged, _, _ = verify(tmp_path / "cache")
    assert [reason for _, reason in damaged] == [
        "its digest list names '../keep.txt', which is not a file of the entry"
    ]
    assert entries(tmp_path / "cache") == [] and (tmp_path / "cache" / "keep.txt").read_text() == "not the cache's"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "c\\d"])
def test_a_domain_name_is_a_file_name(name):
    with pytest.raises(ValidationError, match="cannot name a file"):
        Domain(name=name, description="d")
