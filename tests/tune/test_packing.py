"""Packed passes train what padded passes train: the same loss and gradients, no compute on padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_jsonl

from daar.models import load_tokenizer
from daar.read import read_pool
from daar.tune import TuneConfig, tune
from daar.tune.data import IGNORE_INDEX, PadCollator, build_examples, choose_template, pack_collator

CHAT = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome, since 1871."},
    ]
}


@pytest.fixture(scope="module")
def examples(tiny_model: Path, real_rows: list[dict], tmp_path_factory) -> list[dict]:
    """Instruction rows and a chat row, whose labels come in two pieces (one per assistant turn)."""
    path = write_jsonl(tmp_path_factory.mktemp("pack") / "rows.jsonl", real_rows[:3] + [CHAT] + real_rows[3:6])
    tokenizer = load_tokenizer(tiny_model)
    return build_examples(read_pool(path).records, tokenizer, choose_template(tokenizer), 256).items


def test_pack_collator_joins_rows_and_restarts_positions(examples: list[dict]) -> None:
    batch = pack_collator()(examples[:3])
    lengths = [len(e["input_ids"]) for e in examples[:3]]
    assert batch["input_ids"].shape == (1, sum(lengths))
    starts = [0, lengths[0], lengths[0] + lengths[1]]
    assert [int(batch["position_ids"][0, s]) for s in starts] == [0, 0, 0]
    assert int(batch["position_ids"][0, -1]) == lengths[2] - 1
    assert all(int(batch["labels"][0, s]) == IGNORE_INDEX for s in starts)
    assert "attention_mask" not in batch  # the position ids say where each row starts


def test_packed_and_padded_passes_have_the_same_loss_and_gradients(tiny_model: Path, examples: list[dict]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa"),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    model.config.use_cache = False  # as in tuning: transformers finds packed rows only without a KV cache
    for module in model.modules():  # LoRA's B starts at zero; give it values so its gradient path is exercised
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)
    tokenizer = load_tokenizer(tiny_model)
    found = []
    for batch in (PadCollator(int(tokenizer.pad_token_id))(examples), pack_collator()(examples)):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        found.append((loss.detach(), grads))
    (padded_loss, padded), (packed_loss, packed) = found
    assert torch.allclose(padded_loss, packed_loss, atol=1e-5)
    for name in padded:
        assert torch.allclose(padded[name], packed[name], atol=1e-8, rtol=1e-4), name


def test_tune_with_packing_trains_the_same_adapter(tiny_model: Path, real_rows: list[dict], tmp_path: Path) -> None:
    selection = write_jsonl(tmp_path / "sel.jsonl", real_rows[:28] + [CHAT] * 4)
    # dropout off: its masks are drawn per position, so the two layouts would draw different ones
    common = dict(device="cpu", max_steps=3, batch_size=8, grad_accum=1, max_length=256, compile=False, dropout=0.0)
    padded = tune(selection, str(tiny_model), tmp_path / "padded", TuneConfig(**common, packing=False))
    packed = tune(selection, str(tiny_model), tmp_path / "packed", TuneConfig(**common, packing=True))
    assert (padded.manifest["packing"], packed.manifest["packing"]) == (False, True)
    assert packed.final_loss == pytest.approx(padded.final_loss, abs=1e-4)
    # every real token counted once, none of the padding
    assert packed.manifest["tokens_this_run"] == padded.manifest["tokens_this_run"]
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "padded" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "packed" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
