"""Settings: one runtime section shared by every command, and the old names of examples and seeds
accepted for one release with a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from daar.coevolve.config import CoevolveConfig
from daar.config import Domain, SelectConfig, old_option
from daar.errors import UserError
from daar.evaluate.settings import EvalSettings
from daar.experiment.config import ExperimentConfig
from daar.tune.settings import TuneConfig


def test_old_names_still_read_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="'seeds_file' is now called 'examples_file'"):
        assert SelectConfig(seeds_file="x.yaml").examples_file == Path("x.yaml")
    with pytest.warns(FutureWarning, match="'seeds' is now called 'examples'"):
        domain = Domain(name="a", description="b", seeds=[{"instruction": "q", "output": "a"}])
    assert domain.examples[0].instruction == "q"
    with pytest.warns(FutureWarning, match="'seed' is now called 'items_seed'"):
        assert EvalSettings(seed=7).items_seed == 7
    with pytest.warns(FutureWarning):
        assert CoevolveConfig(seeds="regenerate").examples == "regenerate"
    with pytest.warns(FutureWarning, match="--seeds-file is now called --examples-file"):
        assert old_option(None, Path("e.yaml"), "--seeds-file", "--examples-file") == "e.yaml"


def test_old_and_new_name_together_is_an_error() -> None:
    with pytest.raises(ValidationError, match="give 'examples_file' only"):
        SelectConfig(seeds_file="x.yaml", examples_file="y.yaml")
    with pytest.raises(UserError, match="give --examples-file only"):
        old_option(Path("a"), Path("b"), "--seeds-file", "--examples-file")


def test_coevolution_runtime_is_set_once_and_shared() -> None:
    config = CoevolveConfig(device="cpu", seed=7, dtype="float32")
    assert (config.select.device, config.select.seed, config.select.dtype) == ("cpu", 7, "float32")
    assert (config.tune.device, config.tune.seed) == ("cpu", 7)
    with pytest.raises(ValidationError, match="select.device: set it once, at the top level"):
        CoevolveConfig(device="cpu", select=SelectConfig(device="cuda"))


def test_experiment_runtime_goes_to_every_cell(tmp_path: Path) -> None:
    config = ExperimentConfig(pool=tmp_path / "p.jsonl", methods=["random"], device="cpu", dtype="bfloat16", seed=3)
    select, tune = config.select_config("random", 0.2, 5), config.tune_config(5)
    assert (select.device, select.dtype, select.seed) == ("cpu", "bfloat16", 5)  # the cell's seed, not the sample's
    assert (tune.device, tune.dtype, tune.seed) == ("cpu", "bfloat16", 5)
    with pytest.raises(ValidationError, match="select.device: set it once, at the top of the file"):
        ExperimentConfig(pool=tmp_path / "p.jsonl", methods=["random"], select={"device": "cpu"})
    assert set(TuneConfig.model_fields) >= {"device", "dtype", "seed", "cache_dir"}  # the one runtime section
