"""A base model with a LoRA adapter applied: the one loader that tuning, evaluation and probing share.

An adapter only makes sense on the base it was trained on. `daar tune` records the base's content
fingerprint in its manifest; an adapter from elsewhere names its base in adapter_config.json,
which is checked when that name resolves to a local model. Either way a mismatch is a clear
error, not a silently wrong score.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from daar.models.files import ModelError, file_digest, fingerprint, read_safetensors, safetensors_header
from daar.models.loader import load_causal_lm, load_tokenizer, pick_device, pick_dtype, resolve_model

TUNE_MANIFEST = "tune_manifest.json"


def check_adapter(adapter: Path, base_folder: Path, base_name: str) -> None:
    """Raise ModelError unless `adapter` is a PEFT adapter folder trained on `base_folder`."""
    adapter = Path(adapter)
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise ModelError(f"{adapter}: no adapter_config.json; expected a PEFT/LoRA adapter folder (`daar tune` output)")
    trained_on = None
    manifest = adapter / TUNE_MANIFEST
    if manifest.is_file():
        trained_on = _read_json(manifest).get("model", {}).get("fingerprint")
    else:
        named = _read_json(config_path).get("base_model_name_or_path")
        if named and Path(named).is_dir() and (Path(named) / "config.json").is_file():
            trained_on = fingerprint(Path(named))
    if trained_on and trained_on != fingerprint(base_folder):
        raise ModelError(f"{adapter} was trained on another base model than {base_name!r} ({base_folder})")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def load_tuned(
    model: str,
    adapter: Path | None = None,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    merge: bool = True,
    trust_remote_code: bool = False,
):
    """(model, tokenizer): the base model, with `adapter` applied when given.

    The adapter is merged by default because a plain model generates faster than one that adds
    the low-rank product at every layer; the tokenizer comes from the adapter folder when it has
    one (`daar tune` saves it there), so special tokens added in tuning are kept.
    """
    folder = resolve_model(model)
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device) if isinstance(dtype, str) else dtype
    tokenizer_dir = folder
    if adapter is not None:
        adapter = Path(adapter)
        check_adapter(adapter, folder, model)
        if (adapter / "tokenizer_config.json").exists():
            tokenizer_dir = adapter
    tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code=trust_remote_code)
    base = load_causal_lm(folder, dtype=torch_dtype, device=device, trust_remote_code=trust_remote_code)
    if adapter is None:
        return base, tokenizer
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(base, adapter)
    if merge:
        tuned = tuned.merge_and_unload()
    return tuned.to(device).eval(), tokenizer


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."


def adapter_fingerprint(adapter: Path) -> str:
    """Content key of what an adapter computes (its config and weights; not logs or tokenizer files)."""
    adapter = Path(adapter)
    digest = hashlib.sha256()
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (adapter / name).is_file():
            raise ModelError(f"{adapter}: no {name}; expected a PEFT/LoRA adapter folder (`daar tune` output)")
        digest.update(f"{name}\0{file_digest(adapter / name)}\0".encode())
    return digest.hexdigest()[:16]


class LoraWeights:
    """The low-rank updates of a LoRA adapter, read module by module from its safetensors file.

    The prober needs only the first `clip_layer` decoder layers, so it merges W + scale * B @ A into
    exactly those weights while they are read, and reads only the A and B tensors that touch them:
    a 7B adapter's other layers never leave the disk. Adapters that change a needed module in a way
    a plain merge does not cover (DoRA, per-module ranks, LoRA biases, embedding LoRA, replaced
    modules) are refused by name rather than merged wrongly.
    """

    def __init__(self, adapter: Path) -> None:
        self.folder = Path(adapter)
        config = _read_json(self.folder / ADAPTER_CONFIG) if (self.folder / ADAPTER_CONFIG).is_file() else None
        if config is None or not (self.folder / ADAPTER_WEIGHTS).is_file():
            raise ModelError(f"{self.folder}: expected a PEFT/LoRA adapter folder with {ADAPTER_WEIGHTS}")
        if str(config.get("peft_type", "")).upper() != "LORA":
            raise ModelError(f"{self.folder}: a {config.get('peft_type')} adapter; only LoRA adapters can probe")
        for feature in ("use_dora", "rank_pattern", "alpha_pattern", "lora_bias"):
            if config.get(feature):
                raise ModelError(
                    f"{self.folder}: adapters with {feature} cannot be merged layer by layer; merge it into "
                    "the base first (`daar tune --merge`) and probe with the merged folder as --model"
                )
        rank = int(config["r"])
        alpha = float(config.get("lora_alpha", rank))
        self.scale = alpha / rank**0.5 if config.get("use_rslora") else alpha / rank
        self.transpose = bool(config.get("fan_in_fan_out"))
        self.keys = set(safetensors_header(self.folder / ADAPTER_WEIGHTS))
        self.bytes_read = 0

    def deltas(self, weights: dict[str, str], clip_layer: int) -> dict[str, torch.Tensor]:
        """scale * B @ A (float32) for each of `weights` (model name -> module path in the causal LM) the adapter
        changes. Every LoRA module of decoder layers below `clip_layer` must be among them: an
        adapter whose names do not match the checkpoint would otherwise probe as the bare base."""
        pairs: dict[str, tuple[str, str]] = {}
        for name, key in weights.items():
            module = f"{_PEFT_PREFIX}{key.removesuffix('.weight')}."
            a, b = f"{module}lora_A.weight", f"{module}lora_B.weight"
            odd = [k for k in self.keys if k.startswith(module) and k not in (a, b)]
            if odd:
                raise ModelError(f"{self.folder}: {odd[0]!r} changes a layer the prober reads in a way a merge cannot")
            if a in self.keys and b in self.keys:
                pairs[name] = (a, b)
        matched = {k for pair in pairs.values() for k in pair}
        stray = [k for k in self.keys if k not in matched and _layer(k) is not None and _layer(k) < clip_layer]
        if stray:
            raise ModelError(f"{self.folder}: adapter tensor {stray[0]!r} matches no weight of the base model")
        tensors = read_safetensors(self.folder / ADAPTER_WEIGHTS, sorted(matched))
        self.bytes_read += sum(t.numel() * t.element_size() for t in tensors.values())
        result = {}
        for name, (a, b) in pairs.items():
            delta = self.scale * (tensors[b].float() @ tensors[a].float())
            result[name] = delta.T if self.transpose else delta
        return result


def _layer(key: str) -> int | None:
    """The decoder layer an adapter tensor belongs to (`...layers.7.self_attn...` -> 7), if any."""
    found = re.search(r"\.(?:layers|h|blocks)\.(\d+)\.", key)
    return int(found.group(1)) if found else None
