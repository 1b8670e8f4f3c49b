"""A base model with a LoRA adapter applied: the one loader that tuning, evaluation and probing share.

An adapter only makes sense on the base it was trained on. `daar tune` records the base's content
fingerprint in its manifest; an adapter from elsewhere names its base in adapter_config.json,
which is checked when that name resolves to a local model. Either way a mismatch is a clear
error, not a silently wrong score.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from daar.models.loader import (
    ModelError,
    fingerprint,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    pick_dtype,
    resolve_model,
)

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
