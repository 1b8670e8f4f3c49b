"""Model resolution and partial loading (truncated prober, full learner), built-in GGUF models, adapters."""

from daar.models.builtin import BUILTIN_MODELS
from daar.models.files import Checkpoint, ModelError, fingerprint
from daar.models.loader import (
    load_causal_lm,
    load_tokenizer,
    load_truncated,
    pick_device,
    pick_dtype,
    prober_dtype,
    resolve_model,
)

__all__ = [
    "BUILTIN_MODELS",
    "Checkpoint",
    "ModelError",
    "fingerprint",
    "load_causal_lm",
    "load_tokenizer",
    "load_truncated",
    "pick_device",
    "pick_dtype",
    "prober_dtype",
    "resolve_model",
]
