"""Shared fixtures: a tiny random Llama with the real SmolLM2 tokenizer, and real pool rows."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("DAAR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
POOL = SHARED_DATA / "pool" / "pool.jsonl.gz"

# Tiny test models do microsecond-sized matrix products; with two threads the synchronisation
# costs far more than the work (measured ~30 ms per product on a busy 2-core machine).
torch.set_num_threads(1)


def make_tiny_model(folder: Path, layers: int = 4, hidden: int = 64, arch: str = "llama") -> Path:
    """A randomly initialised model with the real tokenizer: real code paths, seconds to run."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from daar.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlamaConfig(**common, tie_word_embeddings=True) if arch == "llama" else Qwen2Config(**common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _own_shared_cache(tmp_path_factory):
    """Each test module gets its own shared cache (daar's default cache folder), so no module sees
    entries another one made and "computed, not cached" checks mean what they say."""
    old = os.environ.get("DAAR_CACHE_DIR")
    os.environ["DAAR_CACHE_DIR"] = str(tmp_path_factory.mktemp("shared-cache"))
    yield
    if old is None:
        os.environ.pop("DAAR_CACHE_DIR", None)
    else:
        os.environ["DAAR_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def real_rows() -> list[dict]:
    """The first 400 rows of the shared pool (skips only if ../shared is absent)."""
    if not POOL.exists():
        pytest.skip(f"shared pool not found at {POOL}")
    rows = []
    with gzip.open(POOL, "rt", encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == 400:
                break
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
