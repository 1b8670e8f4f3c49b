"""The feature stage of `benchmarks/gpu.py`, measured in parts: daar's own pass, the same work done
one stage at a time with the clock stopped between stages, the bare model over the same batches,
and a torch.profiler table of the pass. Every figure is printed as soon as it is measured.

The stage-at-a-time pass is slower than daar's pipelined one by design (nothing overlaps); what it
gives is the share of each stage: tokenise (CPU), pad (CPU), host-to-device copy, forward (the
model, e(x) and f(x) means), device-to-host copy, and the write into memory-mapped arrays with the
flushes daar's pass makes. A forward share far below 100% names what to fix next.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def say(text: str) -> None:
    print(text, flush=True)


def syncer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def feature_stage(extractor, texts: list[str], folder: Path) -> dict:
    """daar's feature pass over `texts` into memory maps in `folder`, as `daar select` runs it
    (model already loaded); seconds and tokens/s."""
    sync = syncer(extractor.device)
    shutil.rmtree(folder, ignore_errors=True)
    sync()
    start = time.perf_counter()
    feats = extractor.extract(texts, folder)
    sync()
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    tokens = int(feats.tokens.sum())
    return {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds)}


def split(extractor, texts: list[str], folder: Path) -> dict:
    """The pass one stage at a time (see the module docstring): seconds per stage."""
    from daar.embed.batching import length_batches
    from daar.embed.features import _open_maps

    sync = syncer(extractor.device)
    device = extractor.device
    clock = time.perf_counter
    parts = dict.fromkeys(("tokenise", "pad", "host_to_device", "forward", "device_to_host", "write"), 0.0)
    start = clock()
    ids = extractor.tokenize(texts)
    parts["tokenise"] = clock() - start
    lengths = np.array([len(x) for x in ids])
    shutil.rmtree(folder, ignore_errors=True)
    emb, hid, done = _open_maps(folder, len(texts), int(extractor.model.config.hidden_size))
    waiting = 0
    for batch in length_batches(lengths, extractor.batch_tokens):
        t0 = clock()
        input_ids, mask = extractor.pad([ids[i] for i in batch])
        t1 = clock()
        input_ids, mask = input_ids.to(device), mask.to(device)
        sync()
        t2 = clock()
        e, h = extractor.forward(input_ids, mask)
        sync()
        t3 = clock()
        e, h = e.cpu(), h.cpu()
        t4 = clock()
        emb[batch], hid[batch] = e.numpy(), h.numpy()
        waiting += len(batch)
        if waiting >= extractor.block_rows:  # daar's writer flushes once per block of rows
            emb.flush(), hid.flush()
            done[batch] = 1
            done.flush()
            waiting = 0
        t5 = clock()
        for name, seconds in zip(list(parts)[1:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[name] += seconds
    emb.flush(), hid.flush(), done.flush()
    shutil.rmtree(folder, ignore_errors=True)
    total = sum(parts.values())
    return {
        "seconds": {k: round(v, 3) for k, v in parts.items()},
        "share": {k: round(v / total, 3) for k, v in parts.items()},
        "total": round(total, 2),
    }


def bare(extractor, texts: list[str], sizes: list[int]) -> dict[str, dict]:
    """The truncated model alone over the same texts, batches padded (and pinned) before the clock
    starts and copied to the device inside it: the ceiling of the feature stage, per batch size."""
    from daar.embed.batching import length_batches

    sync = syncer(extractor.device)
    device = extractor.device
    ids = extractor.tokenize(texts)
    lengths = np.array([len(x) for x in ids])
    found = {}
    for size in sizes:
        padded = [extractor.pad([ids[i] for i in batch]) for batch in length_batches(lengths, size)]
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            for input_ids, mask in padded:
                extractor.model(
                    input_ids=input_ids.to(device, non_blocking=True), attention_mask=mask.to(device, non_blocking=True)
                )
            sync()
        seconds = time.perf_counter() - start
        entry = {"seconds": round(seconds, 2), "tokens_per_s": round(int(lengths.sum()) / seconds)}
        if device.startswith("cuda"):
            entry["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        found[str(size)] = entry
        say(f"    bare pass, {size} tokens per batch: {entry}")
    return found


def profile(extractor, texts: list[str], rows: int = 12) -> dict[str, list]:
    """torch.profiler over daar's pass on `texts`: the top ops by self device time and by self CPU
    time (milliseconds, calls), printed as two short tables."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    cuda = extractor.device.startswith("cuda")
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    with torch_profile(activities=activities) as prof:
        extractor.extract(texts)
        syncer(extractor.device)()
    events = prof.key_averages()

    def device_us(event) -> float:
        for name in ("self_device_time_total", "self_cuda_time_total"):
            value = getattr(event, name, None)
            if value is not None:
                return float(value)
        return 0.0

    tables = {}
    for title, key in (("device", device_us), ("cpu", lambda e: float(e.self_cpu_time_total))):
        if title == "device" and not cuda:
            continue
        top = sorted(events, key=key, reverse=True)[:rows]
        total = sum(key(e) for e in events) or 1.0
        tables[title] = [[e.key[:60], round(key(e) / 1000, 2), round(key(e) / total, 3), e.count] for e in top]
        say(f"    top ops by self {title} time (ms, share, calls):")
        for name, ms, share, calls in tables[title]:
            say(f"      {ms:10.2f} ms {share:6.1%} {calls:7d}  {name}")
    return tables
