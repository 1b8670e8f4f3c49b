"""A failed command leaves nothing it did not have (issue 26): its inputs are checked before its
output folder is made, a folder it made is removed when it fails before its first output, and a
folder that was there (an earlier run) is left as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app

EXAMPLES = {"numbers": [{"instruction": "What is 12 times 7?", "output": "84."}]}


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


@pytest.fixture
def experiment(tmp_path) -> Path:
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({"pool": "missing.jsonl", "methods": ["random"], "seeds": [1]}))
    return config


COMMANDS = {
    "select": lambda out, _: ["select", "missing.jsonl", "--out", out],
    "select --scores": lambda out, _: ["select", "--scores", "missing-scores", "--out", out],
    "fit": lambda out, _: ["fit", "missing.jsonl", "--out", out],
    "score": lambda out, _: ["score", "missing.jsonl", "--fitted", "missing-fit", "--out", out],
    "tune": lambda out, _: ["tune", "missing.jsonl", "--out", out],
    "experiment": lambda out, config: ["experiment", config, "--out", out],
    "coevolve": lambda out, _: ["coevolve", "missing.jsonl", "--out", out],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_input_leaves_no_folder(command, experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = invoke(*COMMANDS[command](tmp_path / "new" / "out", experiment))
    assert "missing" in message
    assert not (tmp_path / "new").exists()  # neither the folder nor the parent the command would have made


@pytest.mark.parametrize("command", COMMANDS)
def test_a_failed_command_leaves_an_earlier_folder_as_it_was(command, experiment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "earlier"
    (out / "examples").mkdir(parents=True)
    (out / "selected.jsonl").write_text('{"id": "kept"}\n')
    (out / "examples" / "numbers.json").write_text("{}")
    before = tree(out)
    invoke(*COMMANDS[command](out, experiment))
    assert tree(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    invoke(*COMMANDS[command](empty, experiment))
    assert empty.is_dir() and tree(empty) == {}  # made by the user, not by the command: it stays


def test_a_failure_inside_the_run_removes_the_folder_it_made(tiny_model, real_rows, tmp_path):
    """Inputs that only the run can judge (an examples file naming an unknown domain) fail after
    the folder is locked; the folder, holding nothing but its lock, goes."""
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:20])
    bad = tmp_path / "examples.yaml"
    bad.write_text(yaml.safe_dump({**EXAMPLES, "nope": EXAMPLES["numbers"]}))
    domains = tmp_path / "domains.yaml"
    domains.write_text(yaml.safe_dump([{"name": "numbers", "description": "sums"}, {"name": "x", "description": "y"}]))
    args = ["--model", tiny_model, "--domains", domains, "--examples-file", bad, "--device", "cpu"]
    message = invoke("select", pool, "--out", tmp_path / "runs" / "a", *args)
    assert "unknown domains ['nope']" in message
    assert not (tmp_path / "runs").exists()
    message = invoke("fit", pool, "--out", tmp_path / "fits" / "a", *args)
    assert "unknown domains ['nope']" in message
    assert not (tmp_path / "fits").exists()
