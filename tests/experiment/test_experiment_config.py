"""ExperimentConfig: what a YAML file may say, how mistakes are reported, and what each cell gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from daar.experiment.config import ConfigError, load_experiment

REPO = Path(__file__).resolve().parents[2]


def write_config(folder: Path, **settings) -> Path:
    data = {"pool": "pool.jsonl", "methods": ["random"], **settings}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_relative_paths_are_read_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump({"coding": [{"instruction": "Sort a list.", "output": "x"}]}))
    path = write_config(tmp_path, select={"examples_file": "seeds.yaml"}, eval={"data_dir": "bench"}, out="res")
    config = load_experiment(path)
    assert config.pool == tmp_path / "pool.jsonl"
    assert config.out == tmp_path / "res"
    assert config.select["examples_file"] == str(tmp_path / "seeds.yaml")
    assert config.eval.data_dir == tmp_path / "bench"
    assert load_experiment(path, out=Path("elsewhere")).out == Path("elsewhere")


def test_cells_get_their_method_ratio_and_seed_over_the_sections(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        methods=["random", "instruction_length"],
        ratios=[0.1, 0.25],
        seeds=[1, 2],
        device="cpu",
        select={"probe_size": 100, "heads": {"epochs": 1}},
        tune={"max_steps": 3, "lr": 1e-4},
    )
    config = load_experiment(path)
    select = config.select_config("instruction_length", 0.25, 2)
    assert (select.method, select.ratio, select.seed, select.probe_size) == ("instruction_length", 0.25, 2, 100)
    assert select.heads.epochs == 1 and select.device == "cpu" and select.model == config.model
    tune = config.tune_config(7)
    assert (tune.seed, tune.max_steps, tune.lr, tune.device) == (7, 3, 1e-4, "cpu")
    assert config.eval.mode == "generate" and config.eval.items_seed == 42


def test_named_methods_carry_their_own_settings(tmp_path: Path) -> None:
    paper = {"strategy": "overall", "heads": {"lr": 1e-5, "epochs": 1, "batch_size": 1, "patience": None}}
    path = write_config(
        tmp_path,
        methods=["random", {"name": "daar-paper", "method": "daar", "select": paper}, "daar"],
        select={"probe_size": 100},
    )
    config = load_experiment(path)
    assert config.method_names == ["random", "daar-paper", "daar"]
    named = config.select_config("daar-paper", 0.2, 1)
    plain = config.select_config("daar", 0.2, 1)
    assert (named.method, named.strategy, named.heads.patience, named.probe_size) == ("daar", "overall", None, 100)
    assert (plain.method, plain.strategy, plain.heads.patience) == ("daar", "balanced", 2)
    from daar.experiment.cells import plan

    names = [cell.name for cell in plan(config)]
    assert names[:4] == ["base", "random-r0.2-s42", "daar-paper-r0.2-s42", "daar-r0.2-s42"]  # seed by seed


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"methods": ["random", {"name": "random", "method": "random"}]}, "repeated entries: random"),
        ({"methods": [{"name": "x", "method": "daar", "select": {"seed": 3}}]}, "seed set per cell"),
        ({"methods": [{"name": "x", "method": "daar", "select": {"strategy": "best"}}]}, "methods.x.select.strategy"),
        ({"methods": [{"name": "x", "method": "nope"}]}, "unknown 'nope'"),
        ({"ratio": [0.2]}, "ratio: unknown key"),
        ({"tune": {"learning_rate": 1e-4}}, "tune.learning_rate: unknown key"),
        ({"select": {"probe_sise": 10}}, "select.probe_sise: unknown key"),
        ({"select": {"heads": {"lr": "fast"}}}, "select.heads.lr"),
        ({"eval": {"mode": "accuracy"}}, "eval.mode"),
        ({"eval": {"limit": 0}}, "eval.limit"),
        ({"ratios": [0.2, 1.5]}, "every ratio must be in (0, 1]"),
        ({"seeds": [1, 1]}, "seeds: Value error, repeated entries: 1"),
        ({"methods": []}, "methods"),
        ({"select": {"ratio": 0.5}}, "ratio set per cell"),
        ({"tune": {"seed": 3}}, "seed is set per cell"),
        ({"methods": ["randon"]}, "unknown 'randon'"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, settings: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match="exp.yaml") as caught:
        load_experiment(write_config(tmp_path, **settings))
    assert expected in str(caught.value)


def test_examples_file_is_checked_at_load(tmp_path: Path) -> None:
    domains = [{"name": "numbers", "description": "arithmetic"}, {"name": "programs", "description": "code"}]
    with pytest.raises(ConfigError, match="select.examples_file: cannot read .*absent.yaml: No such file"):
        load_experiment(write_config(tmp_path, select={"examples_file": "absent.yaml", "domains": domains}))
    (tmp_path / "seeds.yaml").write_text("poetry:\n  - {instruction: Write a haiku., output: Leaves fall.}\n")
    with pytest.raises(ConfigError, match="select.examples_file: .*unknown domains \\['poetry'\\]"):
        load_experiment(write_config(tmp_path, select={"examples_file": "seeds.yaml", "domains": domains}))
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump({"numbers": [{"instruction": "What is 2+2?", "output": "4"}]}))
    config = load_experiment(write_config(tmp_path, select={"examples_file": "seeds.yaml", "domains": domains}))
    assert config.select_config("random", 0.2, 1).examples_file == tmp_path / "seeds.yaml"
    own = {"name": "mine", "method": "daar", "select": {"examples_file": "absent.yaml"}}
    with pytest.raises(ConfigError, match="methods.mine.select.examples_file: cannot read"):
        load_experiment(write_config(tmp_path, methods=["random", own], select={"domains": domains}))
    own["select"] = {"examples_file": "seeds.yaml", "heads": {"lr": 1e-3}}
    config = load_experiment(write_config(tmp_path, methods=[own], select={"domains": domains, "heads": {"epochs": 2}}))
    merged = config.select_config("mine", 0.2, 1)
    assert merged.examples_file == tmp_path / "seeds.yaml" and (merged.heads.lr, merged.heads.epochs) == (1e-3, 2)
    targeted = {"name": "t", "method": "daar", "select": {"strategy": "customized"}}
    config = load_experiment(
        write_config(tmp_path, methods=[targeted], select={"domains": domains, "target": "numbers"})
    )
    assert config.select_config("t", 0.2, 1).target == "numbers"  # validated merged, not alone


def test_missing_required_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text("methods: [random]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pool: Field required"):
        load_experiment(tmp_path / "exp.yaml")
    (tmp_path / "exp.yaml").write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_experiment(tmp_path / "exp.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_experiment(tmp_path / "absent.yaml")


def test_cli_prints_one_red_line_and_exits_2(tmp_path: Path) -> None:
    from daar.cli import app

    path = write_config(tmp_path, tune={"learning_rate": 1e-4})
    result = CliRunner().invoke(app, ["experiment", str(path)])
    assert result.exit_code == 2
    assert "tune.learning_rate: unknown key" in result.output
    assert len(result.output.strip().splitlines()) == 1

    missing_pool = write_config(tmp_path, pool="nowhere.jsonl", eval={"tasks": ["nq"]})
    result = CliRunner().invoke(app, ["experiment", str(missing_pool), "--dry-run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file" in result.output


def test_example_cpu_config_is_valid() -> None:
    config = load_experiment(REPO / "configs" / "experiment_cpu.yaml")
    assert config.methods == ["daar", "random"] and config.ratios == [0.2] and config.seeds == [1, 2]
    assert config.sample == 800 and config.eval.mode == "nll" and config.eval.limit == 60
    assert config.pool.resolve() == (REPO.parent / "shared" / "data" / "pool" / "pool.jsonl.gz").resolve()


def test_a_dataset_pool_by_split_is_written_once_for_every_cell(tmp_path: Path, monkeypatch) -> None:
    """`pool:` a folder read by datasets.load_dataset (with `split:`), or a hub id, which stays as given."""
    import datasets

    from daar.experiment.runner import prepare_pool

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    (tmp_path / "mydata").mkdir()
    rows = [{"id": f"r{i}", "instruction": f"Q{i}", "output": f"A{i}" if i != 3 else ""} for i in range(12)]
    (tmp_path / "mydata" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_experiment(write_config(tmp_path, pool="mydata", split="train"))
    assert config.pool == tmp_path / "mydata" and config.split == "train"
    path, info = prepare_pool(config, tmp_path / "out")
    assert path == tmp_path / "out" / "pool.jsonl"
    written = [json.loads(line)["id"] for line in path.read_text().splitlines()]
    assert written == [f"r{i}" for i in range(12) if i != 3]  # the usable rows, in order
    assert info["rows"] == 11 and info["source_rows"] == 11 and info["split"] == "train"
    assert prepare_pool(config, tmp_path / "out") == (path, info)  # kept while the source is the same
    assert load_experiment(write_config(tmp_path, pool="someone/some-dataset", split="train")).pool == Path(
        "someone/some-dataset"
    )
