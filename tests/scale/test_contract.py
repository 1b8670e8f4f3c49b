"""Every method on every path: the selector contract lets the block-by-block path (fit, score, cut)
run any method that streams, with the in-memory selection, and refuse the others with their reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl

from daar.config import SelectConfig
from daar.errors import UserError
from daar.pipeline import run_select
from daar.scale.cut import select_from_scores
from daar.scale.fit import fit_pool
from daar.scale.score import score_pool
from daar.select.base import available_selectors, make_selector, streams
from daar.write.run import RunManifest

EXAMPLES = {
    "numbers": [
        {"instruction": "What is 12 times 7?", "output": "84."},
        {"instruction": "Solve 3x = 9.", "output": "3"},
    ],
    "words": [
        {"instruction": "Capital of France?", "output": "Paris."},
        {"instruction": "Who wrote Hamlet?", "output": "Shakespeare."},
    ],
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory, real_rows) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("contract")
    (root / "examples.yaml").write_text(yaml.safe_dump(EXAMPLES), encoding="utf-8")
    return root, write_jsonl(root / "pool.jsonl", real_rows[:90])


def settings(model: Path, examples: Path, method: str) -> SelectConfig:
    return SelectConfig.model_validate(
        {
            "method": method,
            "model": str(model),
            "domains": [{"name": k, "description": f"{k} questions"} for k in EXAMPLES],
            "examples_file": str(examples),
            "device": "cpu",
            "dtype": "float32",  # streamed and in-memory features agree to the bit in fp32
            "heads": {"epochs": 2, "batch_size": 16, "val_fraction": 0.1},
        }
    )


@pytest.mark.parametrize("method", ["stratified", "output_length"])
def test_block_by_block_selects_what_memory_selects(pool, tiny_model, tmp_path, method) -> None:
    root, path = pool
    config = settings(tiny_model, root / "examples.yaml", method)
    memory = run_select(config, path, tmp_path / "memory", report=False)
    fit_pool(config, path, tmp_path / "fitted")
    score_pool(path, tmp_path / "fitted", tmp_path / "scores", chunk_rows=25)
    streamed = select_from_scores(tmp_path / "scores", tmp_path / "streamed")
    assert (tmp_path / "streamed" / "selected.jsonl").read_bytes() == memory.selected_path.read_bytes()
    RunManifest.model_validate(streamed)
    assert streamed["command"] == "select --scores" and streamed["method"] == method
    features = list((tmp_path / "scores" / "features").glob("*"))
    assert bool(features) == make_selector(method).needs_features  # a length baseline reads no prober


def test_methods_that_need_the_whole_pool_say_why(pool, tiny_model, tmp_path) -> None:
    root, path = pool
    whole = {name for name in available_selectors() if streams(name) is not None}
    assert whole == {"random", "kcenter", "deita"}
    with pytest.raises(UserError, match="cannot score a pool block by block: its draw is one permutation"):
        fit_pool(settings(tiny_model, root / "examples.yaml", "random"), path, tmp_path / "fitted")
