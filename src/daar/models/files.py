"""Reading model folders: content keys, and safetensors tensors by name without loading the rest.

Everything here reads files only (no model is built), so every other models/ module may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from daar.errors import UserError
from daar.utils.cache import cache_root


class ModelError(UserError):
    """The model cannot be found or read; the message says what to do."""


@dataclass
class Checkpoint:
    """Index of the tensors in a model folder's safetensors files; reads only the names asked for."""

    folder: Path
    where: dict[str, Path] = field(default_factory=dict)
    bytes_read: int = 0

    @classmethod
    def open(cls, folder: Path) -> Checkpoint:
        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            return cls(folder, {k: folder / v for k, v in weight_map.items()})
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise ModelError(f"{folder}: no .safetensors weights (pickled .bin weights are not loaded)")
        where: dict[str, Path] = {}
        for file in files:
            with safe_open(file, framework="pt") as handle:
                where.update({key: file for key in handle.keys()})
        return cls(folder, where)

    def find(self, suffixes: tuple[str, ...]) -> str:
        for key in self.where:
            if key.endswith(suffixes):
                return key
        raise ModelError(f"{self.folder}: no tensor named like {suffixes}")

    def read(self, names: list[str]) -> dict[str, torch.Tensor]:
        by_file: dict[Path, list[str]] = {}
        for name in names:
            if name not in self.where:
                raise ModelError(f"{self.folder}: tensor {name!r} is not in the checkpoint")
            by_file.setdefault(self.where[name], []).append(name)
        tensors: dict[str, torch.Tensor] = {}
        for file, keys in by_file.items():
            for key, tensor in read_safetensors(file, keys).items():
                self.bytes_read += tensor.numel() * tensor.element_size()
                tensors[key] = tensor
        return tensors


_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def safetensors_header(file: Path) -> dict[str, dict]:
    """The tensor entries of a .safetensors file's JSON header (name -> dtype, shape, offsets)."""
    with open(file, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    header.pop("__metadata__", None)
    return header


def read_safetensors(file: Path, keys: list[str]) -> dict[str, torch.Tensor]:
    """Named tensors of one .safetensors file, read with plain file reads into their own buffers.

    safetensors' own loader memory-maps the file, and every mapped page it touches counts in the
    process's resident memory next to the copy it returns, doubling the peak while loading. The
    format is a JSON header of offsets followed by raw bytes, so reading exactly the wanted byte
    ranges keeps the peak at the size of the tensors themselves.
    """
    tensors: dict[str, torch.Tensor] = {}
    with open(file, "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_len))
        base = 8 + header_len
        for key in keys:
            meta = header[key]
            if meta["dtype"] not in _DTYPES:
                raise ModelError(f"{file}: tensor {key!r} has unsupported dtype {meta['dtype']}")
            start, end = meta["data_offsets"]
            buffer = bytearray(end - start)
            handle.seek(base + start)
            handle.readinto(buffer)
            flat = torch.frombuffer(buffer, dtype=_DTYPES[meta["dtype"]]) if buffer else torch.zeros(0)
            tensors[key] = flat.reshape(meta["shape"])
    return tensors


# Files of a model folder that cannot change what the model computes or how text is tokenised.
_NOT_MODEL = ("README", "LICENSE", "NOTICE", ".gitattributes", "USE_POLICY")


def fingerprint(folder: Path) -> str:
    """A content key of everything that shapes the model's outputs: config, weights, tokenizer and
    chat template files (every file of the folder but its docs).

    Whole-second mtimes miss a file rewritten within a second, and a tokenizer or template change
    alters every feature, so this hashes content. Hashing is memoised per file (path, size, inode,
    nanosecond mtime and ctime, which every write changes and nobody can set back) under the cache
    root, so a 16 GB checkpoint is read once, not on every run.
    """
    folder = Path(folder)
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and not p.name.startswith(_NOT_MODEL)
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()[:16]


# Files that decide how text becomes token ids (tokenizer.json, tokenizer.model, vocab and merges,
# special tokens, the tokenizer's config and chat template): the key of cached token ids.
_TOKENIZER = ("tokenizer", "vocab", "merges", "special_tokens_map", "added_tokens", "spiece", "chat_template")


def tokenizer_fingerprint(folder: Path) -> str:
    """A content key of the model folder's tokenizer files only: token ids cached under it serve
    every checkpoint, adapter and layer count that tokenises the same way."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(_TOKENIZER))
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{file_digest(file)}\0".encode())
    return digest.hexdigest()[:16]


def file_digest(path: Path) -> str:
    stat = path.stat()
    memo_key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"
    memo_dir = cache_root() / "fingerprints"
    memo = memo_dir / hashlib.sha256(memo_key.encode()).hexdigest()[:32]
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:
        memo_dir.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(value)
        os.replace(tmp, memo)
    except OSError:  # a read-only cache only costs the re-hash
        pass
    return value
