"""Whether daar may reach the Hugging Face hub, decided as huggingface_hub and transformers decide it.

`HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`, or `daar --offline`, which sets the first) means
models and datasets come from local folders and the Hugging Face cache only. huggingface_hub reads
the variable once, at import; daar reads it at each call and passes `local_files_only` itself, so
a variable set later in the process (a test, `daar --offline`) still counts.
"""

from __future__ import annotations

import os

OFFLINE_VARIABLE = "HF_HUB_OFFLINE"
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    return any(os.environ.get(name, "").upper() in _TRUE for name in (OFFLINE_VARIABLE, "TRANSFORMERS_OFFLINE"))


def offline_reason() -> str:
    """What made this process offline, for an error message."""
    if os.environ.get(OFFLINE_VARIABLE, "").upper() in _TRUE:
        return f"{OFFLINE_VARIABLE}={os.environ[OFFLINE_VARIABLE]} / daar --offline"
    return f"TRANSFORMERS_OFFLINE={os.environ.get('TRANSFORMERS_OFFLINE')}"
