"""Finding a model and loading only the parts of it that a step needs.

The embedding step needs one matrix and the probe steps need the first `clip_layer` decoder layers;
reading those tensors straight from the safetensors files keeps memory near their size instead of
the whole model's, which matters once the model is 7B and the pool is large.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from daar.models.builtin import BUILTIN_MODELS, converted_builtin
from daar.models.files import Checkpoint, ModelError
from daar.utils.hub import OFFLINE_VARIABLE, hub_offline, offline_reason


class WeightDeltas(Protocol):
    """What `load_truncated` merges into the weights it loads (a LoRA adapter's W + scale * B @ A)."""

    def deltas(self, weights: dict[str, str], clip_layer: int) -> dict[str, torch.Tensor]: ...


def resolve_model(name: str, offline: bool | None = None) -> Path:
    """A local folder for `name`: a built-in alias, a local folder, or a hub id, resolved through the
    Hugging Face cache as transformers does it (downloaded when missing, unless offline: `offline`,
    or HF_HUB_OFFLINE=1 / `daar --offline` when it is None)."""
    if name in BUILTIN_MODELS:
        return converted_builtin(name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path}: no config.json; expected a Hugging Face model folder")
        return path
    if path.exists():
        raise ModelError(f"{path}: expected a model folder, got a file")
    return hub_model(name, hub_offline() if offline is None else offline)


# The files of a hub model that daar reads: config, safetensors weights and their index, tokenizer
# and chat template files, and the model's own code (run only with --trust-remote-code). Pickled
# .bin weights, GGUF, ONNX and the like, and every subfolder (original/, onnx/), are not fetched.
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py"]


def hub_model(name: str, offline: bool) -> Path:
    """The Hugging Face cache's snapshot of hub model `name`, downloaded into the cache when it is
    missing and `offline` is False."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    aliases = ", ".join(BUILTIN_MODELS)
    try:
        folder = snapshot_download(name, allow_patterns=HUB_FILES, ignore_patterns=["*/*"], local_files_only=offline)
        return Path(folder)
    except HFValidationError:
        raise ModelError(
            f"model {name!r} is neither a local folder nor a valid hub id (owner/name); built-ins: {aliases}"
        ) from None
    except LocalEntryNotFoundError as err:
        if offline:
            raise ModelError(
                f"model {name!r} is not in the Hugging Face cache, and {offline_reason()} forbids downloading it: "
                f"download it once online (unset {OFFLINE_VARIABLE}), or use a local folder or a built-in: {aliases}"
            ) from None
        unreachable = f"not in the Hugging Face cache, and the hub cannot be reached ({err})"
        raise ModelError(f"model {name!r}: {unreachable}") from None
    except HfHubHTTPError as err:  # not found, gated, private without a token, ...
        raise ModelError(f"model {name!r}: the Hugging Face hub refused it ({type(err).__name__}: {err})") from None


def load_truncated(
    folder: Path,
    clip_layer: int,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    trust_remote_code: bool = False,
    checkpoint: Checkpoint | None = None,
    adapter: WeightDeltas | None = None,
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
