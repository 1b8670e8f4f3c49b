"""`daar select` from the command line: a full run, its summary, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.cli import app


def _seeds(path):
    rows = {
        "alpha": [{"instruction": "Add 2 and 2.", "output": "4"}, {"instruction": "What is 9 - 3?", "output": "6"}],
        "beta": [
            {"instruction": "Name a colour.", "output": "Blue."},
            {"instruction": "Name a fruit.", "output": "Pear."},
        ],
    }
    path.write_text(yaml.safe_dump(rows), encoding="utf-8")
    return path


def _domains(path):
    path.write_text(
        yaml.safe_dump([{"name": "alpha", "description": "numbers"}, {"name": "beta", "description": "words"}]),
        encoding="utf-8",
    )
    return path


def test_select_runs_and_prints_a_summary(tmp_path, tiny_model, real_rows):
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:60])
    args = ["select", str(pool), "--out", str(tmp_path / "run"), "--model", str(tiny_model)]
    args += ["--domains", str(_domains(tmp_path / "d.yaml")), "--examples-file", str(_seeds(tmp_path / "s.yaml"))]
    args += ["--count", "7", "--probe-size", "50", "--set", "heads.epochs=1", "--show-domain-field", "domain"]
    result = CliRunner().invoke(app, args + ["--no-report"])
    assert result.exit_code == 0, result.output
    assert "60 rows in, 7 selected, 53 not selected" in result.output and "0 rejected" in result.output
    assert "domain mix" in result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["heads"]["epochs"] == 1 and manifest["config"]["count"] == 7
    assert len((tmp_path / "run" / "selected.jsonl").read_text().splitlines()) == 7


def test_show_field_counts_the_share_kept_of_every_value(tmp_path, real_rows):
    rows = real_rows[:50]
    del rows[3]["source"]  # a row without the field is counted, as "(missing)"
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    args = ["select", str(pool), "--out", str(tmp_path / "run"), "--method", "output_length", "--count", "10"]
    result = CliRunner().invoke(app, args + ["--show-field", "source", "--show-field", "domain"])
    assert result.exit_code == 0, result.output
    assert "share kept of each value of the rows' 'source' field" in result.output
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "share kept of each value of &#39;source&#39;" in report or "share kept of each value of 'source'" in report
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    kept_ids = {json.loads(line)["id"] for line in (tmp_path / "run" / "selected.jsonl").read_text().splitlines()}
    for field in ("source", "domain"):
        shown = manifest["shown_fields"][field]
        assert (shown["rows"], shown["kept"]) == (50, 10)
        for value, counts in shown["values"].items():
            members = [r for r in rows if str(r.get(field, "(missing)")) == value]
            assert counts["rows"] == len(members)
            assert counts["kept"] == sum(r["id"] in kept_ids for r in members)
            assert counts["share_kept"] == counts["kept"] / counts["rows"]
    assert manifest["shown_fields"]["source"]["values"]["(missing)"]["rows"] == 1


def test_baseline_by_name_and_field_mapping(tmp_path, real_rows):
    rows = [{"prompt": r["instruction"], "response": r["output"]} for r in real_rows[:30]]
    pool = write_jsonl(tmp_path / "renamed.jsonl", rows)
    args = ["select", str(pool), "--out", str(tmp_path / "run"), "--method", "output_length", "--ratio", "0.1"]
    result = CliRunner().invoke(
        app, args + ["--field", "instruction=prompt", "--field", "output=response", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    selected = [json.loads(line) for line in (tmp_path / "run" / "selected.jsonl").read_text().splitlines()]
    longest = sorted(rows, key=lambda r: -len(r["response"]))[:3]
    assert sorted(r["response"] for r in selected) == sorted(r["response"] for r in longest)


def test_errors_are_one_line_with_exit_code_2(tmp_path, real_rows):
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:10])
    runner = CliRunner()
    cases = [
        (["select", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")], "missing.jsonl"),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--method", "randm"], "Did you mean 'random'"),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--ratio", "2"], "ratio"),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--strategy", "customized"], "target"),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--set", "nonsense=1"], "nonsense"),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--model", str(tmp_path)], str(tmp_path)),
        (["select", str(pool), "--out", str(tmp_path / "o"), "--gpus-per-worker", "1"], "--executor ray"),
        (
            ["score", str(pool), "--fitted", str(tmp_path), "--out", str(tmp_path / "s"), "--gpus-per-worker", "1"],
            "for --executor ray",
        ),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "error:" in result.output and expected in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_help_explains_every_option():
    result = CliRunner().invoke(app, ["select", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--domains", "--examples-file", "--clip-layer", "--probe-size", "--ratio", "--count"):
        assert option in result.output
    for option in ("--strategy", "--target", "--seed", "--batch-tokens", "--device", "--dtype", "--field"):
        assert option in result.output


def test_a_dataset_folder_by_split_runs_in_memory(tmp_path, real_rows, monkeypatch):
    """`daar select FOLDER --split train` reads the folder through datasets.load_dataset."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "train.jsonl", real_rows[:40])
    write_jsonl(tmp_path / "data" / "test.jsonl", real_rows[40:50])
    args = ["select", str(tmp_path / "data"), "--split", "train", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args + ["--method", "output_length", "--count", "4", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "40 rows in, 4 selected, 36 not selected" in result.output
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["command"] == "select" and manifest["input"]["split"] == "train"
    longest = sorted(real_rows[:40], key=lambda r: -len(r["output"]))[:4]
    selected = [json.loads(line)["id"] for line in (tmp_path / "run" / "selected.jsonl").read_text().splitlines()]
    assert sorted(selected) == sorted(r["id"] for r in longest)


def test_version_and_offline_flags(tmp_path, real_rows, monkeypatch):
    from daar import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"daar {__version__}"
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'version = "{__version__}"' in pyproject

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online by the environment; --offline wins
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:20])
    args = ["--offline", "select", str(pool), "--out", str(tmp_path / "run"), "--method", "ifd"]
    result = CliRunner().invoke(app, args + ["--model", "daar-test-nobody/not-cached"])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "model 'daar-test-nobody/not-cached' is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message
