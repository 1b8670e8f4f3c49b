"""The model shapes `benchmarks/gpu.py` times, as random bf16 weights made on the device they run on."""

from __future__ import annotations

from pathlib import Path

import torch

SHAPES = {
    # name: (config class, hidden, intermediate, heads, kv heads, layers of the whole model)
    "smollm2": ("llama", 576, 1536, 9, 3, 30),
    "qwen2-7b": ("qwen2", 3584, 18944, 28, 4, 28),
    "llama3-8b": ("llama", 4096, 14336, 32, 8, 32),
    "tiny": ("llama", 64, 128, 4, 2, 4),  # a smoke test of every path, in seconds
}
PROBER_LAYERS = 4  # written for the feature stage; the prober reads 3


def model_config(shape: str, tokenizer, layers: int | None = None):
    from transformers import LlamaConfig, Qwen2Config

    kind, hidden, inter, heads, kv, total = SHAPES[shape]
    return (LlamaConfig if kind == "llama" else Qwen2Config)(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers or total,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=8192,
        tie_word_embeddings=shape == "smollm2",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_model(config, device: str):
    """Random bf16 weights made where they will run: on a GPU in a fraction of a second, where a
    CPU init of a 7B-wide model takes minutes."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def build(shape: str, tokenizer_dir: Path, folder: Path, device: str) -> Path:
    from transformers import AutoTokenizer

    if (folder / "config.json").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = random_model(model_config(shape, tokenizer, PROBER_LAYERS), device)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder
