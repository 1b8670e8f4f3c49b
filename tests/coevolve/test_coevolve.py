"""Co-evolution rounds on a tiny random Llama with real pool rows: the learner of each round probes
the next, no row is picked twice, counts add up, a killed run resumes where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA, write_jsonl

from daar.coevolve import Coevolution, CoevolveConfig
from daar.coevolve.rounds import PICKS_FILE, ROUND_FILE
from daar.evaluate.settings import EvalSettings
from daar.select.daar import DaarSelector
from daar.tune.settings import TuneConfig
from daar.write.run import RunManifest

DOMAINS = [
    {"name": "math", "description": "arithmetic and word problems"},
    {"name": "code", "description": "programming tasks"},
    {"name": "trivia", "description": "general knowledge questions"},
]
SEEDS = {
    "math": [
        {"instruction": "What is 12 times 7?", "output": "84"},
        {"instruction": "Solve x + 3 = 5.", "output": "2"},
    ],
    "code": [
        {"instruction": "Write a Python function that reverses a string.", "output": "def rev(s):\n    return s[::-1]"},
        {"instruction": "Print the numbers 0 to 9 in Python.", "output": "for i in range(10):\n    print(i)"},
    ],
    "trivia": [
        {"instruction": "What is the capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "William Shakespeare."},
    ],
}
BENCH = SHARED_DATA / "bench"


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory, real_rows) -> Path:
    path = write_jsonl(tmp_path_factory.mktemp("pool") / "pool.jsonl", real_rows[:100])
    with open(path, "ab") as handle:
        handle.write(json.dumps({"id": "no-output", "instruction": "Say hi"}).encode() + b"\n")
    return path


def make_config(tiny_model: Path, tmp: Path, evaluate: bool, **extra) -> CoevolveConfig:
    seeds = tmp / "seeds.yaml"
    seeds.write_text(yaml.safe_dump(SEEDS), encoding="utf-8")
    settings = {
        "select": {
            "model": str(tiny_model),
            "domains": DOMAINS,
            "examples_file": str(seeds),
            "probe_size": 60,
            "device": "cpu",
            "heads": {"epochs": 2, "batch_size": 16, "val_fraction": 0.1},
        },
        "rounds": 2,
        "per_round": 10,
        "tune": TuneConfig(lr=5e-3, warmup_ratio=0.0, batch_size=4, grad_accum=1, max_steps=2, max_length=128),
        "eval": EvalSettings(tasks=["nq", "gsm8k"], mode="nll", limit=2, data_dir=BENCH, batch_size=4)
        if evaluate
        else None,
        "device": "cpu",
    }
    return CoevolveConfig.model_validate(settings | extra)


@pytest.fixture(scope="module")
def finished(tiny_model, pool_file, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coevolve")
    config = make_config(tiny_model, tmp, evaluate=True)
    return Coevolution(config).run(pool_file, tmp / "out", show_domain_field="domain"), config


def _round_ids(out: Path, r: int) -> list[str]:
    return json.loads((out / f"round-{r:02d}" / PICKS_FILE).read_text())["ids"]


def test_rounds_add_distinct_rows_and_the_counts_add_up(finished, pool_file):
    result, _ = finished
    out = result.out_dir
    first, second = _round_ids(out, 1), _round_ids(out, 2)
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    selected = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in selected) == sorted(first + second)
    counts = result.manifest["counts"]
    assert counts == {**counts, "rows_in": 101, "selected": 20, "rejected": 1, "not_selected": 80}
    RunManifest.model_validate(json.loads((out / "manifest.json").read_text()))
    assert result.manifest["command"] == result.manifest["method"] == "coevolve"
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["round"].value_counts().to_dict() == {1: 10, 2: 10}
    # round 2 chose among the rows round 1 left, probing with round 1's learner
    round2 = json.loads((out / "round-02" / ROUND_FILE).read_text())
    assert round2["candidates"] == 90 and round2["prober"].endswith("round-01/adapter")
    assert pd.read_parquet(out / "round-02" / "scores.parquet")["id"].isin(first).sum() == 0


def test_the_tuned_learner_probes_differently_and_examples_are_kept(finished):
    result, _ = finished
    out = result.out_dir
    first, second = DaarSelector.load(out / "round-01" / "fitted"), DaarSelector.load(out / "round-02" / "fitted")
    assert first.info["model"] != second.info["model"] and "+lora-" in second.info["model"]
    assert (first.centroids == second.centroids).all()  # round 1's examples and centroids, kept
    assert json.loads((out / "round-02" / ROUND_FILE).read_text())["examples"] == "round 1"


def test_rounds_csv_and_report_show_every_round(finished):
    result, _ = finished
    out = result.out_dir
    rows = pd.read_csv(out / "rounds.csv")
    assert rows["round"].tolist() == [0, 1, 2]
    assert rows["rows_total"].tolist() == [0, 10, 20]
    assert {"score_nq", "score_gsm8k", "mix_math", "truth_coding"} <= set(rows.columns)
    assert rows.loc[1:, [c for c in rows.columns if c.startswith("mix_")]].sum(axis=1).round(3).eq(1).all()
    assert (rows.loc[1:, "score_nq"] > 0).all()
    assert "Co-evolution" in (out / "report.html").read_text()
    assert (out / "manifest.json").is_file()


def test_a_killed_run_resumes_at_the_first_unfinished_step(finished, tiny_model, pool_file, tmp_path, monkeypatch):
    config = make_config(tiny_model, tmp_path, evaluate=False)
    out = tmp_path / "out"
    real_select, real_tune = Coevolution._select, Coevolution._tune
    calls: list[int] = []

    def killed_before_round_2(self, r, *args):
        if r == 2:
            raise KeyboardInterrupt
        return real_select(self, r, *args)

    monkeypatch.setattr(Coevolution, "_select", killed_before_round_2)
    with pytest.raises(KeyboardInterrupt):
        Coevolution(config).run(pool_file, out)
    first_round = out / "round-01" / ROUND_FILE
    assert first_round.is_file() and not (out / "round-02" / PICKS_FILE).exists()
    assert not (out / "manifest.json").exists()  # nothing looks finished
    finished_at = first_round.stat().st_mtime_ns

    def counted(self, r, *args):
        calls.append(r)
        return real_select(self, r, *args)

    def killed_in_tuning(self, r, folder, learner):
        raise KeyboardInterrupt

    monkeypatch.setattr(Coevolution, "_select", counted)
    monkeypatch.setattr(Coevolution, "_tune", killed_in_tuning)
    result = Coevolution(config).run(pool_file, out)  # the last round trains nothing without an evaluation
    monkeypatch.setattr(Coevolution, "_tune", real_tune)
    assert calls == [2]  # round 1 was read back, not redone
    assert first_round.stat().st_mtime_ns == finished_at
    # the same rows as an uninterrupted run (evaluation does not change what is selected)
    assert sorted(result.selected_ids) == sorted(finished[0].selected_ids)
    assert not (out / "round-02" / "adapter").exists()


def test_other_settings_recompute_every_round(finished, tiny_model, pool_file, tmp_path):
    config = make_config(tiny_model, tmp_path, evaluate=False)
    out = tmp_path / "out"
    Coevolution(config).run(pool_file, out)
    result = Coevolution(config.model_copy(update={"per_round": 5})).run(pool_file, out)
    assert result.manifest["counts"]["selected"] == 10
    assert len(_round_ids(out, 1)) == len(_round_ids(out, 2)) == 5


def test_a_round_killed_while_tuning_keeps_its_selection(tiny_model, pool_file, tmp_path, monkeypatch):
    config = make_config(tiny_model, tmp_path, evaluate=False)
    out = tmp_path / "out"
    real_select, real_tune = Coevolution._select, Coevolution._tune

    def killed(self, r, folder, learner):
        raise KeyboardInterrupt

    monkeypatch.setattr(Coevolution, "_tune", killed)
    with pytest.raises(KeyboardInterrupt):
        Coevolution(config).run(pool_file, out)
    picks = json.loads((out / "round-01" / PICKS_FILE).read_text())
    assert not (out / "round-01" / ROUND_FILE).exists()
    calls: list[int] = []

    def counted(self, r, *args):
        calls.append(r)
        return real_select(self, r, *args)

    monkeypatch.setattr(Coevolution, "_tune", real_tune)
    monkeypatch.setattr(Coevolution, "_select", counted)
    Coevolution(config).run(pool_file, out)
    assert calls == [2]
    assert json.loads((out / "round-01" / ROUND_FILE).read_text())["ids"] == picks["ids"]


def test_regenerated_examples_fall_back_and_the_learner_can_continue(tiny_model, pool_file, tmp_path):
    config = make_config(
        tiny_model, tmp_path, evaluate=False, rounds=3, per_round=5, examples="regenerate", learner="continue"
    )
    synthesis = {"max_new_tokens": 16, "candidates_per_round": 2, "max_rounds": 1, "warmup_pairs": 1}
    config.select.synthesis = config.select.synthesis.model_copy(update=synthesis)
    out = tmp_path / "out"
    result = Coevolution(config).run(pool_file, out)
    assert result.manifest["counts"]["selected"] == 15
    # a random model writes no valid example: the round says so and keeps the previous round's examples
    second = json.loads((out / "round-02" / ROUND_FILE).read_text())
    assert second["examples"].startswith("round 1 (fallback")
    assert json.loads((out / "round-02" / "examples.json").read_text()) == json.loads(
        (out / "round-01" / "examples.json").read_text()
    )
    # round 2's learner went on from round 1's adapter instead of a fresh one
    manifest = json.loads((out / "round-02" / "adapter" / "tune_manifest.json").read_text())
    assert Path(manifest["settings"]["init_adapter"]) == out / "round-01" / "adapter"
    first = json.loads((out / "round-01" / "adapter" / "tune_manifest.json").read_text())
    assert first["settings"]["init_adapter"] is None


def test_the_command_runs_rounds_and_refuses_bad_settings(tiny_model, pool_file, tmp_path):
    from typer.testing import CliRunner

    from daar.cli import app

    settings = make_config(tiny_model, tmp_path, evaluate=False).result_dict()
    settings.pop("eval")
    config = tmp_path / "coevolve.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    out = tmp_path / "cli"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "coevolve",
            str(pool_file),
            "--out",
            str(out),
            "--config",
            str(config),
            "--rounds",
            "2",
            "--per-round",
            "4",
            "--no-evaluate",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "rows_total" in result.output and len((out / "selected.jsonl").read_text().splitlines()) == 8
    bad = runner.invoke(
        app, ["coevolve", str(pool_file), "--out", str(out), "--config", str(config), "--learner", "sideways"]
    )
    assert bad.exit_code == 2 and "invalid setting learner" in bad.output
    other = runner.invoke(app, ["coevolve", str(pool_file), "--out", str(out), "--set", "select.method=random"])
    assert other.exit_code == 2 and "select with DaaR" in other.output


def test_another_evaluation_reuses_every_round(tiny_model, pool_file, tmp_path, monkeypatch):
    config = make_config(tiny_model, tmp_path, evaluate=True, rounds=2, per_round=4)
    out = tmp_path / "out"
    Coevolution(config).run(pool_file, out)
    calls: list[int] = []
    real_select = Coevolution._select

    def counted(self, r, *args):
        calls.append(r)
        return real_select(self, r, *args)

    monkeypatch.setattr(Coevolution, "_select", counted)
    fewer = config.model_copy(update={"eval": config.eval.model_copy(update={"limit": 1})})
    result = Coevolution(fewer).run(pool_file, out)
    assert calls == []  # the rounds are read back; only the evaluations are new
    assert result.manifest["rounds"][1]["score_nq"] > 0 and (out / "round-02" / "adapter").is_dir()
    items = json.loads((out / "round-01" / "eval" / "round_eval.json").read_text())["result"]["items"]
    assert items == {"nq": 1, "gsm8k": 1}


def test_budgets_the_pool_cannot_hold_and_eval_defaults(tiny_model, tmp_path):
    from daar.errors import UserError

    config = make_config(tiny_model, tmp_path, evaluate=False, rounds=3, per_round=50)
    with pytest.raises(UserError, match="does not fit 100 usable rows"):
        config.round_sizes(100)
    assert config.model_copy(update={"per_round": 30}).round_sizes(100) == [30, 30, 30]
    assert make_config(tiny_model, tmp_path, evaluate=False, per_round=None).round_sizes(100) == [10, 10]
    partial = CoevolveConfig.model_validate({"eval": {"tasks": ["nq"]}})
    assert (partial.eval.mode, partial.eval.limit) == ("nll", 100)
