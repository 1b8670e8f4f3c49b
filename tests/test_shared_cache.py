"""The shared cache: every command's default, keyed by content, so a run into a new folder reuses
what an earlier one computed; token ids keyed by the texts and the tokenizer alone; a clean-up
that bounds its size and leaves entries being computed alone."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app
from daar.config import SelectConfig
from daar.pipeline import run_select
from daar.select.base import Context
from daar.utils.cache import shared_cache
from daar.utils.cache_size import clean, entries
from daar.utils.lock import folder_lock
from daar.write.run import RunManifest

EXAMPLES = {
    "numbers": [{"instruction": "What is 12 times 7?", "output": "84."}],
    "words": [{"instruction": "Capital of France?", "output": "Paris."}],
}


def make_config(model: Path, examples: Path, **extra) -> SelectConfig:
    return SelectConfig.model_validate(
        {
            "model": str(model),
            "domains": [{"name": k, "description": f"{k} questions"} for k in EXAMPLES],
            "examples_file": str(examples),
            "device": "cpu",
            "heads": {"epochs": 1, "batch_size": 16},
            **extra,
        }
    )


def test_a_new_output_folder_reuses_the_shared_cache(tiny_model, real_rows, tmp_path) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:50])
    (tmp_path / "examples.yaml").write_text(yaml.safe_dump(EXAMPLES))
    config = make_config(tiny_model, tmp_path / "examples.yaml")
    first = run_select(config, pool, tmp_path / "a", report=False)
    second = run_select(config, pool, tmp_path / "b", report=False)  # another folder, another ratio below
    third = run_select(config.model_copy(update={"ratio": 0.1}), pool, tmp_path / "c", report=False)
    assert not first.manifest["stages"]["features"]["cached"]
    assert second.manifest["stages"]["features"]["cached"] and third.manifest["stages"]["probe"]["cached"]
    assert first.selected_path.read_bytes() == second.selected_path.read_bytes()
    assert not (tmp_path / "a" / "cache").exists()  # nothing cached inside the run folder
    assert {e.kind for e in entries(shared_cache())} >= {"features", "stages", "token_ids"}
    for run in (first, second, third):
        RunManifest.model_validate(json.loads((run.out_dir / "manifest.json").read_text()))


def test_token_ids_are_keyed_by_texts_and_tokenizer(tiny_model, tmp_path) -> None:
    twin = tmp_path / "twin"  # the same tokenizer, other weights: the ids are reused
    shutil.copytree(tiny_model, twin)
    (twin / "model.safetensors").write_bytes((twin / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    cache = tmp_path / "cache"
    texts = ["Instruction: add 2 and 3\nOutput: 5", "Instruction: name a colour\nOutput: red"]
    base = Context(make_config(tiny_model, tmp_path / "x.yaml"), cache)
    ids = base.token_ids(texts, base.extractor())
    assert len(list((cache / "token_ids").glob("*.safetensors"))) == 1
    other = Context(make_config(twin, tmp_path / "x.yaml"), cache)
    assert other.token_ids(texts, base.extractor()) == ids
    assert len(list((cache / "token_ids").glob("*.safetensors"))) == 1
    base.token_ids(texts[:1], base.extractor())  # other texts: another entry
    config = json.loads((twin / "tokenizer_config.json").read_text())
    config["model_max_length"] = 77  # another tokenizer file: another entry
    (twin / "tokenizer_config.json").write_text(json.dumps(config))
    other.token_ids(texts, base.extractor())
    assert len(list((cache / "token_ids").glob("*.safetensors"))) == 3


def test_cache_clean_removes_the_least_recently_used_first(tmp_path) -> None:
    root = tmp_path / "cache"
    for i, kind in enumerate(["features/old", "features/busy", "features/new"]):
        (root / kind).mkdir(parents=True)
        (root / kind / "emb.npy").write_bytes(b"x" * 1000)
        os.utime(root / kind / "emb.npy", (1_000_000 + i, 1_000_000 + i))
        os.utime(root / kind, (1_000_000 + i, 1_000_000 + i))
    result = CliRunner().invoke(app, ["cache", "--cache-dir", str(root), "--max-size", "1KB", "--dry-run"])
    assert result.exit_code == 0 and "would remove 2 entries" in result.output
    assert len(entries(root)) == 3
    with folder_lock(root / "features" / "busy", "a run computing it"):
        removed, kept = clean(root, 1000)
    assert [e.paths[0].name for e in removed] == ["old", "new"]  # oldest first; busy is skipped while held
    assert [e.paths[0].name for e in kept] == ["busy"] and (root / "features" / "busy").is_dir()
    assert CliRunner().invoke(app, ["cache", "--cache-dir", str(root), "--max-size", "lots"]).exit_code == 2
