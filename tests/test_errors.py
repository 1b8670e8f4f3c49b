"""User errors end in one line and exit code 2; bugs keep their traceback; --debug shows both."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from daar.errors import UserError, friendly


def _app(error: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @friendly
    def run() -> None:
        raise error

    @app.command()
    def other() -> None:  # a second command, so typer keeps command names
        pass

    return app


def test_a_user_error_is_one_line_and_exit_2():
    result = CliRunner().invoke(_app(UserError("pool.jsonl: no such file")), ["run"])
    assert result.exit_code == 2 and "error: pool.jsonl: no such file" in result.output
    assert result.exception is not None and isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("bug", [KeyError("missing"), ValueError("bad internal state"), OSError("disk")])
def test_a_bug_keeps_its_traceback(bug):
    result = CliRunner().invoke(_app(bug), ["run"])
    assert result.exit_code == 1 and result.exception is bug  # not swallowed into a friendly line


def test_debug_shows_the_traceback_of_user_errors_too(tmp_path):
    args = [sys.executable, "-m", "daar", "select", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]
    plain = subprocess.run(args, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stdout + plain.stderr
    assert "nope.jsonl: no such file" in " ".join((plain.stdout + plain.stderr).split())
    debug = subprocess.run([*args[:3], "--debug", *args[3:]], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "PoolError" in debug.stderr


def test_a_selector_that_breaks_the_contract_is_a_bug(tmp_path):
    from daar.config import SelectConfig
    from daar.read.formats import Pool
    from daar.read.records import Record
    from daar.select.base import Context, Selector, choose

    class Sloppy(Selector):
        name = "sloppy"

        def score(self, pool, ctx):
            return {"score": np.arange(len(pool), dtype=float)}

        def select(self, pool, ctx, n, scores):
            return np.array([0, 0, 1])  # a repeated row and too few

    records = [Record(i, f"#{i}", f"q{i}", "", f"a{i}", {}) for i in range(10)]
    pool = Pool(tmp_path / "p.jsonl", records, rows_in=10)
    ctx = Context(SelectConfig(method="random"), tmp_path / "cache")
    with pytest.raises(RuntimeError, match="returned 3 indices \\(2 distinct\\) for a budget of 4"):
        choose(Sloppy(), pool, ctx, 4, {"score": np.zeros(10)})


def test_cache_keys_follow_the_code_that_made_the_entry(tmp_path, monkeypatch):
    import importlib

    from daar.utils.cache import code_version

    module = tmp_path / "made_up_stage.py"
    module.write_text("PROMPT = 'Write one question.'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("made_up_stage")
    before = code_version("made_up_stage")
    assert before == code_version("made_up_stage") and len(before) == 12
    module.write_text("PROMPT = 'Write two questions.'\n")
    assert code_version("made_up_stage") != before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--set", "fields=x", "--set", "fields.id=y"], "'fields' is not a section of settings"),
        (["--set", "ratio=["], "the value is not valid YAML"),
        (["--config", "CONFIG"], "not UTF-8 text"),
        (["--set", "heads=fast"], "unknown head schedule 'fast'; known: default, paper, batched"),
    ],
)
def test_bad_settings_are_user_errors(tmp_path, extra, expected):
    from daar.cli import app

    (tmp_path / "latin1.yaml").write_bytes(b"ratio: 0.2 # caf\xe9\n")
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "q", "output": "a"}\n')
    args = ["select", str(pool), "--out", str(tmp_path / "o"), "--method", "random"]
    args += [str(tmp_path / "latin1.yaml") if item == "CONFIG" else item for item in extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
