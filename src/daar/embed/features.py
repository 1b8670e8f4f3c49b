"""One pass of the truncated prober over every row gives both features DaaR needs.

e(x), the mean token-embedding vector (docs/METHOD.md, step 2), is the prober's layer-0 hidden state, and
f(x), the masked mean of its last truncated layer (step 5), comes out of the same forward pass, so
the model reads each row once. Rows are sorted by length and packed into batches under a token
budget (no padding to a fixed length), and results go into memory-mapped arrays with a per-row
"done" flag, set only once a row's values are written: a killed run resumes at the first
unfinished rows.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from daar.embed.batching import auto_batch_tokens, length_batches, pad_right
from daar.models import load_tokenizer, load_truncated
from daar.models.adapter import LoraWeights
from daar.utils.cache import atomic_path, write_json
from daar.utils.entry import CacheEntry, Contents, Damaged
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


# Results are written to the memory maps in blocks of about this many bytes per array: large
# enough that flushes are rare, small enough that a killed run loses little and, on CPU, that the
# two host buffers stay small next to the weights (the CPU memory guarantee).
BLOCK_BYTES = {"cpu": 2**20, "cuda": 16 * 2**20}


class FeatureExtractor:
    """Holds the tokenizer and the truncated model; `extract` may be called on many text lists.

    A pass is a pipeline: a worker thread pads (and on CUDA pins) batch k+1 while the model runs
    batch k, results are copied back without waiting (non-blocking into pinned buffers on CUDA),
    and a second worker writes them to the arrays a block at a time, waiting for the copies only
    then. Each stage gives exactly what the plain loop pad -> forward -> write would.
    """

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
        release_freed_memory()  # the checkpoint's fp32 copies of layers now held in bf16
        self.batch_tokens = batch_tokens or auto_batch_tokens(self.model, device, max_length=max_length)
        width = int(self.model.config.hidden_size)
        self.block_rows = max(1, BLOCK_BYTES["cpu" if device == "cpu" else "cuda"] // (4 * width))
        if device == "cpu":  # a memory measure; on a GPU it would only cut the batches up
            for layer in getattr(self.model, "layers", []):
                if isinstance(getattr(layer, "mlp", None), torch.nn.Module):
                    layer.mlp.forward = _token_chunked(layer.mlp.forward, MLP_CHUNK_TOKENS)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # ids only: building the attention masks as Python lists too cost 17% more CPU time (16k
        # pool rows, one thread), and `pad` makes the masks the model reads
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return encoded["input_ids"]

    def pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask of one batch, right-padded; pinned when a GPU reads them."""
        tensors = pad_right(ids, self.tokenizer.pad_token_id or 0)
        if self.device != "cpu":
            return tensors[0].pin_memory(), tensors[1].pin_memory()
        return tensors

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e(x) and f(x) of one padded batch, as float32 tensors left on the model's device."""
        input_ids = input_ids.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        # .forward, not the call: it skips the hook that casts to the layers' dtype, so e(x) is
        # the mean of the fp32 table's rows whatever dtype the layers run in (load_truncated)
        embeds = self.model.get_input_embeddings().forward(input_ids)
        weights = mask.unsqueeze(-1).to(torch.float32)
        denom = weights.sum(1).clamp(min=1)
        emb = (embeds.float() * weights).sum(1) / denom
        out = self.model(inputs_embeds=embeds.to(self.dtype), attention_mask=mask)
        hid = (out.last_hidden_state.float() * weights).sum(1) / denom
        return emb, hid

    def extract(
        self,
        texts: list[str],
        cache_dir: Path | None = None,
        description: str = "features",
        ids: list[list[int]] | None = None,
    ) -> Features:
        """Features of `texts`; with `cache_dir`, computed into (and resumed from) memory maps there.
        `ids`: their token ids (`tokenize(texts)`) when a worker computed them ahead of the pass."""
        if ids is None:
            ids = self.tokenize(texts)
        elif len(ids) != len(texts):
            raise ValueError(f"{len(ids)} token id lists for {len(texts)} texts")
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        n, d = len(texts), int(self.model.config.hidden_size)
        if cache_dir is None:
            emb, hid = np.zeros((n, d), np.float32), np.zeros((n, d), np.float32)
            done = np.zeros(n, np.uint8)
        else:
            emb, hid, done = _open_maps(Path(cache_dir), n, d)
        batches = [b for b in length_batches(lengths, self.batch_tokens) if not done[b].all()]
        sink = BlockWriter((emb, hid, done), d, self.block_rows, self.device, durable=cache_dir is not None)
        with progress_bar(transient=cache_dir is None) as bar, sink:
            task = bar.add_task(description, total=int(lengths.sum()), info="", completed=int(lengths[done == 1].sum()))
            for batch, (input_ids, mask) in self._prepared(ids, batches):
                sink.add(batch, *self.forward(input_ids, mask))
                bar.update(task, advance=int(lengths[batch].sum()), info="tokens")
                if self.device == "cpu":
                    release_freed_memory()
        if cache_dir is not None:
            folder = Path(cache_dir)
            with atomic_path(folder / "tokens.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, lengths)
            write_json(folder / "complete.json", {"rows": n, "dim": d, "tokens": int(lengths.sum())})
            CacheEntry.at(folder).seal(feature_files(folder))  # last: the folder is finished
        return Features(np.asarray(emb), np.asarray(hid), lengths)

    def _prepared(
        self, ids: list[list[int]], batches: list[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]]]:
        """Each batch with its padded tensors, the next one padded in a worker meanwhile."""
        with ThreadPoolExecutor(1, thread_name_prefix="daar-pad") as worker:
            ahead = worker.submit(self.pad, [ids[i] for i in batches[0]]) if batches else None
            for k, batch in enumerate(batches):
                ready = ahead.result()
                if k + 1 < len(batches):
                    ahead = worker.submit(self.pad, [ids[i] for i in batches[k + 1]])
                yield batch, ready


class BlockWriter:
    """Gathers batch results in host buffers and writes each full block to the arrays in a worker.

    Rows are marked done only after their values are written (and, when `durable`, flushed), so a
    run killed at any point resumes from correct flags. On CUDA the copies into the pinned buffers
    do not wait for the GPU; the worker waits on an event recorded after them, just before writing.
    Leaving the `with` block writes what was gathered, also when the pass failed half way.
    """

    def __init__(
        self, arrays: tuple[np.ndarray, np.ndarray, np.ndarray], dim: int, rows: int, device: str, durable: bool
    ):
        self.arrays, self.dim, self.rows, self.durable = arrays, dim, rows, durable
        self.cuda = device != "cpu"
        self.free: queue.SimpleQueue[tuple[torch.Tensor, torch.Tensor]] = queue.SimpleQueue()
        self.spares = 2  # buffers not made yet: one being filled while the other is written
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        self.batches: list[np.ndarray] = []
        self.filled = 0
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="daar-write")
        self.writes: list[Future] = []

    def __enter__(self) -> BlockWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._submit()
            for write in self.writes:
                write.result()
        finally:
            self.worker.shutdown(wait=True)

    def add(self, batch: np.ndarray, emb: torch.Tensor, hid: torch.Tensor) -> None:
        if self.filled + len(batch) > self.rows:
            self._submit()
        if self.current is None:
            self.current = self._buffers(len(batch))
        for buffer, values in zip(self.current, (emb, hid), strict=True):
            buffer[self.filled : self.filled + len(batch)].copy_(values, non_blocking=self.cuda)
        self.batches.append(batch)
        self.filled += len(batch)

    def _buffers(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        if rows > self.rows:  # a batch larger than a block (many very short rows) gets its own
            return self._new(rows)
        if self.spares:
            self.spares -= 1
            return self._new(self.rows)
        return self.free.get()  # blocks until the worker has written a buffer out

    def _new(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        def make() -> torch.Tensor:
            return torch.empty((rows, self.dim), dtype=torch.float32, pin_memory=self.cuda)

        return make(), make()

    def _submit(self) -> None:
        if self.current is None:
            return
        event = None
        if self.cuda:
            event = torch.cuda.Event()
            event.record()
        self.writes.append(self.worker.submit(self._write, self.current, np.concatenate(self.batches), event))
        self.current, self.batches, self.filled = None, [], 0
        for write in [w for w in self.writes if w.done()]:
            write.result()  # a failed write stops the pass now, not at its end
            self.writes.remove(write)

    def _write(self, buffers: tuple[torch.Tensor, torch.Tensor], rows: np.ndarray, event) -> None:
        try:
            if event is not None:
                event.synchronize()
            emb, hid, done = self.arrays
            emb[rows] = buffers[0][: len(rows)].numpy()
            hid[rows] = buffers[1][: len(rows)].numpy()
            if self.durable:
                emb.flush(), hid.flush()
            done[rows] = 1
            if self.durable:
                done.flush()
        finally:
            if len(buffers[0]) == self.rows:
                self.free.put(buffers)  # back in use even after a failure, so `add` never waits forever


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


FEATURE_FILES = ("emb.f32", "hid.f32", "tokens.npy", "complete.json")


def feature_files(folder: Path) -> list[str]:
    """The files of a finished features folder, as its cache entry names them (daar.utils.entry)."""
    return [f"{Path(folder).name}/{name}" for name in FEATURE_FILES]


def features_from(folder: Path, contents: Contents) -> Features:
    """The features in the checked contents of a features folder's files (read-only arrays)."""
    emb, hid, tokens, complete = (contents[name] for name in feature_files(folder))
    info = json.loads(bytes(complete))
    n, d = int(info["rows"]), int(info["dim"])
    return Features(
        np.frombuffer(emb, np.float32).reshape(n, d),
        np.frombuffer(hid, np.float32).reshape(n, d),
        np.load(io.BytesIO(bytes(tokens)), allow_pickle=False),
    )


def load_cached(folder: Path) -> Features | None:
    """Features a finished run left in `folder`, checked against their digests; None if it never
    finished or has been damaged since (daar.select.base.Context computes it again)."""
    folder = Path(folder)
    try:
        contents = CacheEntry.at(folder).read(feature_files(folder))
        return None if contents is None else features_from(folder, contents)
    except (Damaged, ValueError, KeyError):
        return None
