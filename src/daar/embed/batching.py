"""How many tokens the prober reads per batch, and which rows go together.

On CPU the budget keeps peak memory near the size of the weights (throughput is flat from about
1k tokens up); on a GPU it keeps the device busy without running out of memory. Both are pure
functions of the model's shape and a memory figure, so they can be tested without the hardware.
"""

from __future__ import annotations

import numpy as np
import torch

# Activation bytes per token of a decoder layer, in vectors of the hidden and the MLP size:
# measured peaks of clip_layer=3 passes (benchmarks/full_pool.py --memory-only) on two 24-layer
# shapes are about 20 hidden-size and 3 intermediate-size vectors per token of the batch.
ACTIVATION_VECTORS = (20, 3)
DEFAULT_BATCH_TOKENS = 8192
MIN_CPU_BATCH_TOKENS = 1024  # smallest batch measured as fast per token as 8k on CPU

# On a GPU a batch pays until the device is saturated, which a wide model reaches at fewer tokens.
# Measured on an H100 (issue 9, bare truncated pass over the 16k pool, bf16): the SmolLM2 shape ran
# 3.5 s at 32k-token batches against 13.2 s at 8k, the Qwen2-7B width 5.7 s at 8k against 8.2 s at
# 32k. Batches of about 2 GiB of activations give ~7.5k tokens at 7B width and the 32k cap at 576.
GPU_ACTIVATION_BYTES = 2 * 2**30
GPU_FREE_SHARE = 0.5  # of the free device memory, leaving room for the allocator's fragmentation
MIN_GPU_BATCH_TOKENS = 1024
MAX_GPU_BATCH_TOKENS = 32768


def length_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices grouped so that rows x longest row stays under `batch_tokens`; longest first."""
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, batch_tokens // longest)
        batches.append(order[start : start + size])
        start += size
    return batches


def pad_right(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of one batch, right-padded to its longest row (at least one
    position, so a batch of empty texts still runs)."""
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    width = max(1, int(lengths.max()))
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def activation_bytes_per_token(config, dtype: torch.dtype, max_length: int) -> int:
    """Estimated peak activation bytes per token of a batch; the last term is the attention scores
    of one layer when attention falls back to materialising them (eager or masked math kernels)."""
    hidden = int(config.hidden_size)
    inter = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    vectors = ACTIVATION_VECTORS[0] * hidden + ACTIVATION_VECTORS[1] * inter + heads * max_length
    return vectors * dtype.itemsize


def gpu_batch_tokens(free_bytes: int, per_token_bytes: int) -> int:
    """Tokens per GPU batch for `free_bytes` of free device memory (after the weights are loaded).

    Grows with the free memory up to the saturating size (GPU_ACTIVATION_BYTES), never beyond
    MAX_GPU_BATCH_TOKENS, never below MIN_GPU_BATCH_TOKENS (a device that cannot hold that little
    fails with its own out-of-memory error rather than crawling).
    """
    budget = min(GPU_FREE_SHARE * max(free_bytes, 0), GPU_ACTIVATION_BYTES)
    tokens = int(budget // max(per_token_bytes, 1))
    return max(MIN_GPU_BATCH_TOKENS, min(MAX_GPU_BATCH_TOKENS, tokens))


def cpu_batch_tokens(weight_bytes: int, per_token_bytes: int, share: float = 0.4) -> int:
    """Tokens per CPU batch whose activations stay under `share` of the prober's weights.

    Throughput on CPU is flat from about 1k tokens per batch up, so a small-hidden model (whose
    activations are large next to its weights) gets small batches for free and its peak memory
    stays near the size of the weights it needs.
    """
    return int(min(DEFAULT_BATCH_TOKENS, max(MIN_CPU_BATCH_TOKENS, share * weight_bytes // per_token_bytes)))


def auto_batch_tokens(model: torch.nn.Module, device: str, free_bytes: int | None = None, max_length: int = 512) -> int:
    """The batch budget for `model` on `device`; on CUDA from `free_bytes` (default: what the
    device reports free now)."""
    # activations share the layers' dtype (the embedding table may be kept in fp32)
    table = model.get_input_embeddings().weight
    dtype = next(p for p in model.parameters() if p is not table).dtype
    if device == "cpu":
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        cpu_per_token = activation_bytes_per_token(model.config, dtype, 0)  # MLP slicing bounds the rest
        return cpu_batch_tokens(weights, cpu_per_token)
    if free_bytes is None:
        if not device.startswith("cuda"):
            return DEFAULT_BATCH_TOKENS
        free_bytes = torch.cuda.mem_get_info(torch.device(device))[0]
    return gpu_batch_tokens(free_bytes, activation_bytes_per_token(model.config, dtype, max_length))
