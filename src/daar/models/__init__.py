"""Model resolution and partial loading (embedding matrix, truncated prober, full learner)."""

from daar.models.loader import (
    BUILTIN_MODELS,
    Checkpoint,
    ModelError,
    cache_root,
    fingerprint,
    load_causal_lm,
    load_embedding_matrix,
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
    "cache_root",
    "fingerprint",
    "load_causal_lm",
    "load_embedding_matrix",
    "load_tokenizer",
    "load_truncated",
    "pick_device",
    "pick_dtype",
    "prober_dtype",
    "resolve_model",
]
