"""One pass of the truncated prober over every row gives both features DaaR needs.

e(x), the mean token-embedding vector (DESIGN step 2), is the prober's layer-0 hidden state, and
f(x), the masked mean of its last truncated layer (step 5), comes out of the same forward pass, so
the model reads each row once. Rows are sorted by length and packed into batches under a token
budget (no padding to a fixed length), and results go straight into memory-mapped arrays with a
per-row "done" flag: a killed run resumes at the first unfinished batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from daar.models import load_tokenizer, load_truncated
from daar.models.adapter import LoraWeights
from daar.utils.cache import write_json
from daar.utils.progress import progress_bar


@dataclass
class Features:
    emb: np.ndarray  # (N, d) mean token embedding, e(x)
    hid: np.ndarray  # (N, d) masked mean of the last truncated layer, f(x)
    tokens: np.ndarray  # (N,) tokens read per row after truncation

    def __len__(self) -> int:
        return len(self.tokens)

    def take(self, indices: np.ndarray) -> Features:
        return Features(self.emb[indices], self.hid[indices], self.tokens[indices])


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


class FeatureExtractor:
    """Holds the tokenizer and the truncated model; `extract` may be called on many text lists."""

    def __init__(
        self,
        model_dir: Path,
        clip_layer: int,
        *,
        max_length: int = 512,
        batch_tokens: int | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        trust_remote_code: bool = False,
        adapter: Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.clip_layer = clip_layer
        self.max_length = max_length
        self.device = device
        self.dtype = dtype
        self.tokenizer = load_tokenizer(self.model_dir, trust_remote_code)
        # a LoRA adapter (co-evolution: the tuned learner probes) is merged into the read layers only
        self.lora = LoraWeights(adapter) if adapter is not None else None
        self.model = load_truncated(self.model_dir, clip_layer, dtype, device, trust_remote_code, adapter=self.lora)
        self.batch_tokens = batch_tokens or auto_batch_tokens(self.model, device)
        for layer in getattr(self.model, "layers", []):
            if isinstance(getattr(layer, "mlp", None), torch.nn.Module):
                layer.mlp.forward = _token_chunked(layer.mlp.forward, MLP_CHUNK_TOKENS)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max(1, max(len(x) for x in ids))  # a batch of empty texts still runs (and gives zeros)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        weights = mask.unsqueeze(-1).to(torch.float32)
        denom = weights.sum(1).clamp(min=1)
        emb = (embeds.float() * weights).sum(1) / denom
        out = self.model(inputs_embeds=embeds, attention_mask=mask)
        hid = (out.last_hidden_state.float() * weights).sum(1) / denom
        return emb.cpu().numpy(), hid.cpu().numpy()

    def extract(self, texts: list[str], cache_dir: Path | None = None, description: str = "features") -> Features:
        """Features of `texts`; with `cache_dir`, computed into (and resumed from) memory maps there."""
        ids = self.tokenize(texts)
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        n, d = len(texts), int(self.model.config.hidden_size)
        if cache_dir is None:
            emb, hid = np.zeros((n, d), np.float32), np.zeros((n, d), np.float32)
            done = np.zeros(n, np.uint8)
        else:
            emb, hid, done = _open_maps(Path(cache_dir), n, d)
        batches = [b for b in length_batches(lengths, self.batch_tokens) if not done[b].all()]
        with progress_bar(transient=cache_dir is None) as bar:
            task = bar.add_task(description, total=int(lengths.sum()), info="", completed=int(lengths[done == 1].sum()))
            for batch in batches:
                e, h = self._forward([ids[i] for i in batch])
                emb[batch], hid[batch] = e, h
                if cache_dir is not None:
                    emb.flush(), hid.flush()
                done[batch] = 1
                if cache_dir is not None:
                    done.flush()
                bar.update(task, advance=int(lengths[batch].sum()), info="tokens")
                if self.device == "cpu":
                    release_freed_memory()
        if cache_dir is not None:
            np.save(Path(cache_dir) / "tokens.npy", lengths)
            write_json(Path(cache_dir) / "complete.json", {"rows": n, "dim": d, "tokens": int(lengths.sum())})
        return Features(np.asarray(emb), np.asarray(hid), lengths)


# Activation bytes per token of a decoder layer, in fp32 vectors of the hidden and the MLP size:
# measured peaks of clip_layer=3 passes (benchmarks/full_pool.py --memory-only) on two 24-layer
# shapes are about 20 hidden-size and 3 intermediate-size vectors per token of the batch.
ACTIVATION_VECTORS = (20, 3)
DEFAULT_BATCH_TOKENS = 8192
MIN_CPU_BATCH_TOKENS = 1024  # smallest batch measured as fast per token as 8k on CPU


def auto_batch_tokens(model: torch.nn.Module, device: str, share: float = 0.4) -> int:
    """Token budget of a CPU batch whose activations stay under `share` of the prober's weights.

    On CPU, throughput is flat from about 1k tokens per batch up, so a small-hidden model (whose
    activations are large next to its weights) gets small batches for free and its peak memory
    stays near the size of the weights it needs. On a GPU, bigger batches pay, and memory is
    rarely the limit for a 3-layer prober: 8,192 tokens.
    """
    if device != "cpu":
        return DEFAULT_BATCH_TOKENS
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    config = model.config
    width = ACTIVATION_VECTORS[0] * config.hidden_size + ACTIVATION_VECTORS[1] * getattr(
        config, "intermediate_size", 4 * config.hidden_size
    )
    per_token = width * next(model.parameters()).element_size()  # activations share the weights' dtype
    return int(min(DEFAULT_BATCH_TOKENS, max(MIN_CPU_BATCH_TOKENS, share * weights // per_token)))


def _libc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Give the activations freed by the last batch back to the OS (glibc only; a no-op elsewhere).

    glibc keeps large freed blocks in its heap once it has seen them reused, so without this a
    long pass holds the high-water mark of every batch shape it met (measured: +330 MB over the
    weights on a 24-layer 576-wide shape) instead of one batch's worth; the cost is about 10%.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# The MLP's intermediate activations (3 x tokens x intermediate size) are the largest tensors of
# a forward pass; the MLP works token by token, so running it on slices of the batch gives the
# same result with a fraction of the peak memory, while attention still sees whole batches.
MLP_CHUNK_TOKENS = 1024


def _token_chunked(forward, size: int):
    def run(x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[:-1].numel() <= size:
            return forward(x)
        flat = x.reshape(-1, x.shape[-1])
        return torch.cat([forward(part) for part in flat.split(size)]).reshape(*x.shape[:-1], -1)

    return run


def _open_maps(folder: Path, n: int, d: int) -> tuple[np.memmap, np.memmap, np.memmap]:
    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "shape.json"
    fresh = not meta.exists() or json.loads(meta.read_text()) != {"rows": n, "dim": d}
    if fresh:
        for name in ("emb.f32", "hid.f32", "done.u8", "complete.json"):
            (folder / name).unlink(missing_ok=True)
        write_json(meta, {"rows": n, "dim": d})
    mode = "w+" if fresh else "r+"
    emb = np.memmap(folder / "emb.f32", np.float32, mode, shape=(n, d))
    hid = np.memmap(folder / "hid.f32", np.float32, mode, shape=(n, d))
    done = np.memmap(folder / "done.u8", np.uint8, mode, shape=(n,))
    return emb, hid, done


def load_cached(folder: Path) -> Features | None:
    """Features a finished run left in `folder`, or None if it never finished."""
    folder = Path(folder)
    if not (folder / "complete.json").exists():
        return None
    info = json.loads((folder / "complete.json").read_text())
    n, d = info["rows"], info["dim"]
    emb = np.memmap(folder / "emb.f32", np.float32, "r", shape=(n, d))
    hid = np.memmap(folder / "hid.f32", np.float32, "r", shape=(n, d))
    tokens = np.load(folder / "tokens.npy", allow_pickle=False)
    return Features(np.asarray(emb), np.asarray(hid), tokens)
