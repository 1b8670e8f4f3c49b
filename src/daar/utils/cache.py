"""Atomic writes and content keys: the two things every cached, resumable stage relies on.

A stage's output is written under a temporary name and renamed, so a killed run leaves either the
old file or the new one, never half of one; its key hashes everything the output depends on, so a
rerun reuses it exactly when nothing relevant changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def stable_key(*parts: Any, length: int = 16) -> str:
    """A hex digest of JSON-serialisable parts (dict keys sorted), short enough for file names."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def code_version(*modules: str) -> str:
    """A digest of the source of the modules that compute a cached result, so an entry made by
    other code (a new prompt, another pooling) is never reused. Docstring edits count too: a
    recomputation costs minutes, a stale result costs trust."""
    import importlib

    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        digest.update(Path(module.__file__ or name).read_bytes())
    return digest.hexdigest()[:12]


def texts_key(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


@contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(target: Path):
    """Yield a temporary folder beside `target`; it replaces `target` only if the block succeeds.

    Two renames (old out of the way, new in), so a crash between them leaves no `target` at all,
    which readers treat as "not there", never a mix of old and new files."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path, data: Any) -> None:
    write_text(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(target: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def save_arrays(target: Path, **arrays: np.ndarray) -> None:
    """Arrays as safetensors (no pickle), written atomically."""
    from safetensors.numpy import save_file

    with atomic_path(target) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Load `path` if a previous run finished it, else compute and save it."""
    if path.exists():
        return load_arrays(path)
    arrays = compute()
    save_arrays(path, **arrays)
    return arrays
