"""Probing with a tuned model: a LoRA adapter merged into the prober's first `clip_layer` layers.

Adapters are made for real with peft on a random 4-layer Llama (the SmolLM2 tokenizer). A fresh
LoRA has B = 0, so it is the "zero adapter"; filling B with noise makes a non-zero one. The merge is
checked against peft's own merge_and_unload, and the bytes read against the adapter file's header.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, write_jsonl
from typer.testing import CliRunner

from daar.cli import app
from daar.config import SelectConfig
from daar.embed import FeatureExtractor
from daar.models import ModelError, load_truncated
from daar.models.adapter import ADAPTER_WEIGHTS, LoraWeights, load_tuned
from daar.models.files import safetensors_header
from daar.select.base import Context

LAYERS, CLIP = 4, 2
TEXTS = ["Add 2 and 3. The answer is 5.", "Write a function that squares x.", "Why is the sky blue?"]


def make_adapter(base: Path, folder: Path, nonzero: bool, **extra) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", **extra))
    if nonzero:
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.2)
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    base = make_tiny_model(root / "base", layers=LAYERS)
    return {
        "base": base,
        "zero": make_adapter(base, root / "zero", nonzero=False),
        "tuned": make_adapter(base, root / "tuned", nonzero=True),
    }


def features(models: dict[str, Path], adapter: str | None):
    extractor = FeatureExtractor(models["base"], CLIP, adapter=models[adapter] if adapter else None)
    return extractor.extract(TEXTS)


def test_a_zero_adapter_probes_like_the_base_and_a_tuned_one_does_not(models):
    base, zero, tuned = features(models, None), features(models, "zero"), features(models, "tuned")
    np.testing.assert_allclose(zero.hid, base.hid, atol=1e-6)
    assert np.abs(tuned.hid - base.hid).max() > 1e-2
    # e(x) comes from the embedding matrix, which LoRA on linear layers leaves alone
    np.testing.assert_array_equal(tuned.emb, base.emb)


def test_the_merge_matches_peft_on_the_layers_read(models):
    merged, _ = load_tuned(str(models["base"]), models["tuned"], device="cpu", dtype=torch.float32)
    expected = {k.removeprefix("model."): v for k, v in merged.state_dict().items()}
    probe = load_truncated(models["base"], CLIP, adapter=LoraWeights(models["tuned"]))
    state = probe.state_dict()
    assert any(k.startswith(f"layers.{CLIP - 1}.") for k in state)
    for name, value in state.items():
        torch.testing.assert_close(value, expected[name], atol=1e-5, rtol=1e-5)


def test_only_the_adapter_tensors_of_the_read_layers_are_read(models):
    header = safetensors_header(models["tuned"] / ADAPTER_WEIGHTS)
    total = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
    needed = sum(
        e["data_offsets"][1] - e["data_offsets"][0]
        for k, e in header.items()
        if any(f".layers.{i}." in k for i in range(CLIP))
    )
    lora = LoraWeights(models["tuned"])
    load_truncated(models["base"], CLIP, adapter=lora)
    assert lora.bytes_read == needed
    assert 0 < needed < total * CLIP / LAYERS + 1  # the other layers' tensors stayed on disk


def test_feature_cache_keys_include_the_adapter(models, tmp_path):
    def key(adapter: str | None) -> str:
        config = SelectConfig(model=str(models["base"]), adapter=models[adapter] if adapter else None)
        return Context(config, tmp_path).features_dir(TEXTS).name

    assert len({key(None), key("zero"), key("tuned")}) == 3
    assert key("tuned") == key("tuned")


def test_an_adapter_of_another_base_is_a_clear_error(models, tmp_path, real_rows):
    other = make_tiny_model(tmp_path / "other", layers=LAYERS, hidden=32)
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:20])
    result = CliRunner().invoke(
        app,
        [
            "select",
            str(pool),
            "--out",
            str(tmp_path / "run"),
            "--model",
            str(other),
            "--adapter",
            str(models["tuned"]),
            "--method",
            "random",
        ],
    )
    assert result.exit_code == 2
    assert "trained on another base model" in result.output
    with pytest.raises(ModelError, match="another base"):
        Context(SelectConfig(model=str(other), adapter=models["tuned"]), tmp_path).extractor()


def test_adapters_a_merge_cannot_cover_are_refused_by_name(models, tmp_path):
    dora = make_adapter(models["base"], tmp_path / "dora", nonzero=True, use_dora=True)
    with pytest.raises(ModelError, match="use_dora"):
        LoraWeights(dora)
    config = json.loads((models["tuned"] / "adapter_config.json").read_text())
    broken = tmp_path / "renamed"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps(config))
    from safetensors.torch import load_file, save_file

    tensors = load_file(models["tuned"] / ADAPTER_WEIGHTS)
    save_file(
        {k.replace("base_model.model.model.", "base_model.model.decoder."): v for k, v in tensors.items()},
        broken / ADAPTER_WEIGHTS,
    )
    with pytest.raises(ModelError, match="matches no weight"):
        load_truncated(models["base"], CLIP, adapter=LoraWeights(broken))
