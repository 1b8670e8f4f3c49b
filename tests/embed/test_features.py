"""e(x) and f(x) from one pass of the truncated prober, batching, truncation and resume.

A small subclass of FeatureExtractor counts (and can interrupt) the real forward passes, so the
tests can tell which rows a rerun recomputed; every number is checked against an independent
computation (embedding-matrix rows, the truncated model run on one unpadded text).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daar.embed import FeatureExtractor, Features, length_batches, load_cached
from daar.embed.batching import (
    MAX_GPU_BATCH_TOKENS,
    MIN_GPU_BATCH_TOKENS,
    activation_bytes_per_token,
    auto_batch_tokens,
    gpu_batch_tokens,
)
from daar.models import Checkpoint, load_truncated

CLIP = 2
TEXTS = [
    "Instruction: Add 2 and 3.\nOutput: 5",
    "Hi",
    "Instruction: Write a Python function that returns the n-th Fibonacci number.\nOutput: def fib(n):\n"
    "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "Instruction: Which is heavier, a kilogram of feathers or a kilogram of steel?\nOutput: Neither; both weigh 1 kg.",
    "Instruction: Translate to English\nInput: bonjour le monde\nOutput: hello world",
    "Instruction: Explain photosynthesis in one paragraph.\nOutput: " + "Plants turn light into sugar. " * 12,
    "Instruction: Ünïcödé — 漢字 ✓\nOutput: ok",
    "Instruction: Solve 3x + 5 = 20.\nOutput: 3x = 15, so x = 5.",
]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny matmuls on a shared 2-core machine: one thread avoids OpenMP waits (30 ms per call) and is exact."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CountingExtractor(FeatureExtractor):
    """Records every batch it really runs; optionally dies after `fail_after` batches, like a killed run."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[list[list[int]]] = []
        self.fail_after: int | None = None

    def forward(self, input_ids, mask):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("simulated interruption")
        self.calls.append([row[: int(m.sum())].tolist() for row, m in zip(input_ids, mask, strict=True)])
        return super().forward(input_ids, mask)


@pytest.fixture(scope="module")
def extractor(tiny_model) -> CountingExtractor:
    return CountingExtractor(tiny_model, CLIP, batch_tokens=8192)


@pytest.fixture
def ext(extractor) -> CountingExtractor:
    """The shared extractor, reset to its defaults for each test."""
    extractor.calls.clear()
    extractor.fail_after = None
    extractor.batch_tokens = 8192
    extractor.block_rows = 4096
    return extractor


@pytest.fixture(scope="module")
def embedding(tiny_model) -> np.ndarray:
    checkpoint = Checkpoint.open(tiny_model)
    key = checkpoint.find(("embed_tokens.weight",))
    return checkpoint.read([key])[key].numpy().astype(np.float64)


@pytest.fixture(scope="module")
def truncated(tiny_model) -> torch.nn.Module:
    """An independently loaded truncated model, run on one unpadded text at a time."""
    return load_truncated(tiny_model, CLIP)


def _alone(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    return out.last_hidden_state[0].double().mean(0).numpy()


def test_one_batch_with_padding_gives_the_masked_means(ext, embedding, truncated):
    feats = ext.extract(TEXTS)
    ids = ext.tokenizer(TEXTS)["input_ids"]
    lengths = [len(x) for x in ids]
    assert feats.tokens.tolist() == lengths
    assert len(set(lengths)) > 4 and min(lengths) < 5 < 60 < max(lengths)
    assert len(ext.calls) == 1 and len(ext.calls[0]) == len(TEXTS)  # all rows padded together in one batch
    assert feats.emb.shape == feats.hid.shape == (len(TEXTS), 64)
    assert feats.emb.dtype == feats.hid.dtype == np.float32
    for i, row in enumerate(ids):
        # e(x): the mean of the embedding-matrix rows of the text's tokens, padding not counted
        np.testing.assert_allclose(feats.emb[i], embedding[row].mean(0), rtol=0, atol=1e-5)
        # f(x): the truncated model's output averaged over the real tokens only
        np.testing.assert_allclose(feats.hid[i], _alone(truncated, row), rtol=0, atol=1e-5)


def test_bf16_layers_keep_e_x_exact_and_f_x_close(tiny_model, ext):
    """The prober may run its layers in bf16 (the default on CPUs with bf16 units); the
    embedding table stays fp32, so e(x) is bit for bit the fp32 one and only f(x) is rounded."""
    full = ext.extract(TEXTS)
    half = FeatureExtractor(tiny_model, CLIP, dtype=torch.bfloat16, batch_tokens=8192).extract(TEXTS)
    np.testing.assert_array_equal(half.emb, full.emb)
    assert half.hid.dtype == np.float32 and not np.array_equal(half.hid, full.hid)
    cosine = (half.hid * full.hid).sum(1) / np.linalg.norm(half.hid, axis=1) / np.linalg.norm(full.hid, axis=1)
    assert cosine.min() > 0.999


def test_batched_equals_one_at_a_time(ext):
    batched = ext.extract(TEXTS)
    ext.batch_tokens = 96  # several length-bucketed batches
    bucketed = ext.extract(TEXTS)
    assert len(ext.calls) > 2
    for i, text in enumerate(TEXTS):
        single = ext.extract([text])
        np.testing.assert_allclose(batched.emb[i], single.emb[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(batched.hid[i], single.hid[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(bucketed.emb, batched.emb, rtol=0, atol=1e-5)
    np.testing.assert_allclose(bucketed.hid, batched.hid, rtol=0, atol=1e-5)


def test_real_rows_batched_match_single_rows(ext, real_rows, embedding, truncated):
    texts = [f"Instruction: {r['instruction']}\nOutput: {r['output']}" for r in real_rows[:48]]
    ext.batch_tokens = 2048
    feats = ext.extract(texts)
    assert len(ext.calls) >= 3
    for batch in ext.calls:  # length-bucketed under the token budget
        assert len(batch) * max(len(x) for x in batch) <= 2048 or len(batch) == 1
    ids = ext.tokenize(texts)
    for i in range(0, len(texts), 6):
        np.testing.assert_allclose(feats.emb[i], embedding[ids[i]].mean(0), rtol=0, atol=1e-5)
        np.testing.assert_allclose(feats.hid[i], _alone(truncated, ids[i]), rtol=0, atol=1e-5)


def test_max_length_truncates_the_tokens_read(tiny_model, ext, embedding, truncated):
    short = FeatureExtractor(tiny_model, CLIP, max_length=16)
    long_text, tiny_text = TEXTS[5], TEXTS[1]
    full_ids = ext.tokenize([long_text])[0]
    assert len(full_ids) > 40
    feats = short.extract([long_text, tiny_text])
    assert feats.tokens.tolist() == [16, len(ext.tokenize([tiny_text])[0])]
    np.testing.assert_allclose(feats.emb[0], embedding[full_ids[:16]].mean(0), rtol=0, atol=1e-5)
    np.testing.assert_allclose(feats.hid[0], _alone(truncated, full_ids[:16]), rtol=0, atol=1e-5)
    unclipped = ext.extract([tiny_text])
    np.testing.assert_allclose(feats.hid[1], unclipped.hid[0], rtol=0, atol=1e-5)
    assert FeatureExtractor.__init__.__kwdefaults__["max_length"] == 512  # docs/METHOD.md, step 2


def test_empty_inputs_do_not_crash(ext):
    feats = ext.extract(["", "Hi"])
    assert feats.tokens.tolist() == [0, 1]
    assert np.all(feats.emb[0] == 0) and np.all(feats.hid[0] == 0)
    assert np.isfinite(feats.hid).all()
    ext.batch_tokens = 1  # the empty text alone in its batch
    alone = ext.extract(["", "Hi"])
    np.testing.assert_allclose(alone.hid, feats.hid, rtol=0, atol=1e-5)
    assert len(ext.extract([])) == 0


def test_length_batches_respect_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=200)
    lengths[7] = 5000  # longer than the whole budget: a batch of its own
    batches = length_batches(lengths, 1024)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(200))
    assert batches[0].tolist() == [7]
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 1024
    longest = [int(lengths[b].max()) for b in batches]
    assert longest == sorted(longest, reverse=True)
    assert length_batches(np.array([], dtype=np.int64), 100) == []


# --- the on-disk cache and resume ----------------------------------------------------------------


def test_cache_files_and_load_cached(ext, tmp_path):
    cache = tmp_path / "feats"
    assert load_cached(cache) is None  # no folder at all
    feats = ext.extract(TEXTS, cache)
    assert {p.name for p in cache.iterdir()} >= {"emb.f32", "hid.f32", "done.u8", "tokens.npy", "complete.json"}
    assert json.loads((cache / "complete.json").read_text()) == {
        "rows": len(TEXTS),
        "dim": 64,
        "tokens": int(feats.tokens.sum()),
    }
    assert (cache / "emb.f32").stat().st_size == len(TEXTS) * 64 * 4
    assert np.fromfile(cache / "done.u8", np.uint8).tolist() == [1] * len(TEXTS)
    loaded = load_cached(cache)
    assert isinstance(loaded, Features)
    np.testing.assert_array_equal(loaded.emb, feats.emb)
    np.testing.assert_array_equal(loaded.hid, feats.hid)
    np.testing.assert_array_equal(loaded.tokens, feats.tokens)
    # a finished cache is not recomputed
    ext.calls.clear()
    again = ext.extract(TEXTS, cache)
    assert ext.calls == []
    np.testing.assert_array_equal(again.hid, feats.hid)


# one block for the whole pass, then a block every two batches (written out half full at the kill)
@pytest.mark.parametrize(("block_rows", "fail_after"), [(4096, 3), (2, 5)])
def test_an_interrupted_pass_keeps_finished_rows_and_resumes(ext, tmp_path, block_rows, fail_after):
    ext.batch_tokens = 1  # one row per batch, so the forward calls count rows
    ext.block_rows = block_rows
    reference = ext.extract(TEXTS)
    cache = tmp_path / "feats"
    ext.calls.clear()
    ext.fail_after = fail_after
    with pytest.raises(RuntimeError, match="simulated interruption"):
        ext.extract(TEXTS, cache)
    assert load_cached(cache) is None  # incomplete: never reported as finished
    done = np.fromfile(cache / "done.u8", np.uint8)
    assert done.sum() == fail_after  # the finished batches are written out, also a half-full block
    emb = np.fromfile(cache / "emb.f32", np.float32).reshape(len(TEXTS), -1)
    np.testing.assert_array_equal(emb[done == 1], reference.emb[done == 1])
    finished_ids = [x for batch in ext.calls for x in batch]

    ext.calls.clear()
    ext.fail_after = None
    resumed = ext.extract(TEXTS, cache)
    assert len(ext.calls) == len(TEXTS) - fail_after
    recomputed = [x for batch in ext.calls for x in batch]
    assert not any(x in recomputed for x in finished_ids)
    all_ids = ext.tokenize(TEXTS)
    assert sorted(map(tuple, recomputed)) == sorted(tuple(all_ids[i]) for i in np.flatnonzero(done == 0))
    np.testing.assert_array_equal(resumed.emb, reference.emb)
    np.testing.assert_array_equal(resumed.hid, reference.hid)
    loaded = load_cached(cache)
    np.testing.assert_array_equal(loaded.hid, resumed.hid)


def test_rows_marked_undone_are_recomputed_and_only_they(ext, tmp_path):
    ext.batch_tokens = 1
    cache = tmp_path / "feats"
    original = ext.extract(TEXTS, cache)
    original_emb, original_hid = original.emb.copy(), original.hid.copy()
    # simulate a run killed half way: half the rows not done, their values garbage, no completion mark
    n = len(TEXTS)
    undone = np.arange(0, n, 2)
    done = np.memmap(cache / "done.u8", np.uint8, "r+", shape=(n,))
    done[undone] = 0
    done.flush()
    for name in ("emb.f32", "hid.f32"):
        values = np.memmap(cache / name, np.float32, "r+", shape=(n, 64))
        values[undone] = np.nan
        values[undone[:1]] = 1e6
        values.flush()
    (cache / "complete.json").unlink()
    assert load_cached(cache) is None

    ext.calls.clear()
    resumed = ext.extract(TEXTS, cache)
    assert len(ext.calls) == len(undone)
    all_ids = ext.tokenize(TEXTS)
    assert sorted(tuple(b[0]) for b in ext.calls) == sorted(tuple(all_ids[i]) for i in undone)
    np.testing.assert_array_equal(resumed.emb, original_emb)
    np.testing.assert_array_equal(resumed.hid, original_hid)
    np.testing.assert_array_equal(load_cached(cache).emb, original_emb)


def test_a_cache_of_another_shape_starts_over(ext, tmp_path):
    cache = tmp_path / "feats"
    ext.extract(TEXTS[:3], cache)
    ext.calls.clear()
    feats = ext.extract(TEXTS, cache)
    assert sum(len(b) for b in ext.calls) == len(TEXTS)
    reference = ext.extract(TEXTS)
    np.testing.assert_allclose(feats.hid, reference.hid, rtol=0, atol=1e-6)
    assert json.loads((cache / "complete.json").read_text())["rows"] == len(TEXTS)


def test_features_take(ext):
    feats = ext.extract(TEXTS[:4])
    part = feats.take(np.array([3, 0]))
    assert len(part) == 2
    np.testing.assert_array_equal(part.hid, feats.hid[[3, 0]])
    np.testing.assert_array_equal(part.tokens, feats.tokens[[3, 0]])


def test_cache_folder_path_may_be_a_string(ext, tmp_path):
    folder = str(Path(tmp_path) / "as-string")
    feats = ext.extract(TEXTS[:2], folder)
    np.testing.assert_array_equal(load_cached(folder).emb, feats.emb)


def _empty_model(**shape) -> torch.nn.Module:
    from accelerate import init_empty_weights
    from transformers import AutoModel, Qwen2Config

    with init_empty_weights():
        return AutoModel.from_config(Qwen2Config(num_hidden_layers=3, tie_word_embeddings=True, **shape))


def test_batch_budget_follows_the_model_size_on_cpu(tiny_model, ext):
    # Qwen2.5-0.5B cut to 3 layers: 180.9 M fp32 weights x 0.4 / (20 x 896 + 3 x 4864) x 4 bytes per token
    qwen = _empty_model(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_attention_heads=14, num_key_value_heads=2
    )
    assert auto_batch_tokens(qwen, "cpu") == 2225
    assert auto_batch_tokens(qwen, "cuda", free_bytes=0) == MIN_GPU_BATCH_TOKENS
    huge_vocab = _empty_model(
        vocab_size=2_000_000, hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2
    )
    assert auto_batch_tokens(huge_vocab, "cpu") == 8192  # capped
    assert FeatureExtractor(tiny_model, CLIP).batch_tokens == 1024  # a tiny model gets the floor
    assert ext.batch_tokens == 8192  # an explicit budget is kept


# --- the pipelined pass: prefetched padding, block writes, batch sizing on a GPU -----------------


def _plain_loop(ext: FeatureExtractor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The simple synchronous path: pad, run and store one batch after another."""
    ids = ext.tokenize(texts)
    d = ext.model.config.hidden_size
    emb, hid = np.zeros((len(texts), d), np.float32), np.zeros((len(texts), d), np.float32)
    for batch in length_batches(np.array([len(x) for x in ids]), ext.batch_tokens):
        e, h = ext.forward(*ext.pad([ids[i] for i in batch]))
        emb[batch], hid[batch] = e.numpy(), h.numpy()
    return emb, hid


@pytest.mark.parametrize("block_rows", [1, 5, 4096])
def test_pipelined_pass_equals_the_plain_loop(ext, real_rows, tmp_path, block_rows):
    texts = [f"Instruction: {r['instruction']}\nOutput: {r['output']}" for r in real_rows[:40]] + TEXTS
    ext.batch_tokens = 512  # many batches of varying row counts, some larger than a block
    ext.block_rows = block_rows
    emb, hid = _plain_loop(ext, texts)
    in_memory = ext.extract(texts)
    cached = ext.extract(texts, tmp_path / "feats")
    for feats in (in_memory, cached, load_cached(tmp_path / "feats")):
        np.testing.assert_array_equal(feats.emb, emb)
        np.testing.assert_array_equal(feats.hid, hid)
    assert np.fromfile(tmp_path / "feats" / "done.u8", np.uint8).all()


def test_gpu_batches_grow_with_free_memory_within_bounds():
    per_token = 300_000  # about a 7B-wide layer in bf16
    sizes = [gpu_batch_tokens(free, per_token) for free in (0, 2**28, 2**30, 2**32, 2**34, 2**40)]
    assert sizes == sorted(sizes)  # monotone in the budget
    assert sizes[0] == MIN_GPU_BATCH_TOKENS and sizes[1] == MIN_GPU_BATCH_TOKENS  # never below the floor
    assert MIN_GPU_BATCH_TOKENS < sizes[2] < sizes[3]  # 1 GiB free -> 1,789 tokens, 4 GiB -> 7,158
    assert sizes[-1] == sizes[-2] < MAX_GPU_BATCH_TOKENS  # beyond saturation more memory adds nothing
    assert gpu_batch_tokens(2**40, 1_000) == MAX_GPU_BATCH_TOKENS  # a narrow model reaches the cap


def test_wider_models_get_fewer_tokens_per_gpu_batch():
    from transformers import LlamaConfig, Qwen2Config

    smol = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9)
    qwen7b = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_attention_heads=28)
    free = 70 * 2**30
    smol_tokens = gpu_batch_tokens(free, activation_bytes_per_token(smol, torch.bfloat16, 512))
    qwen_tokens = gpu_batch_tokens(free, activation_bytes_per_token(qwen7b, torch.bfloat16, 512))
    assert smol_tokens == MAX_GPU_BATCH_TOKENS
    assert 4096 < qwen_tokens < 16384
    assert activation_bytes_per_token(qwen7b, torch.float32, 512) == 2 * activation_bytes_per_token(
        qwen7b, torch.bfloat16, 512
    )


def test_an_explicit_budget_overrides_the_sizing(tiny_model):
    assert FeatureExtractor(tiny_model, CLIP, batch_tokens=333).batch_tokens == 333
