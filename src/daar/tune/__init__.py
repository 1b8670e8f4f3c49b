"""The learner (docs/METHOD.md, step 9): LoRA fine-tuning on a selection, and loading the tuned model back.

Names are imported on first use: the training code pulls in the transformers Trainer, which
would add seconds to every `daar` command even when nothing is tuned.
"""

from __future__ import annotations

from daar.utils.lazy import lazy_exports

_EXPORTS = {
    "TuneConfig": "daar.tune.settings",
    "IGNORE_INDEX": "daar.tune.data",
    "PLAIN_PROMPT": "daar.tune.data",
    "TuneError": "daar.tune.data",
    "build_examples": "daar.tune.data",
    "choose_template": "daar.tune.data",
    "encode_prompt": "daar.tune.data",
    "encode_response": "daar.tune.data",
    "mask_prompt": "daar.tune.data",
    "MANIFEST": "daar.tune.lora",
    "TRAIN_LOG": "daar.tune.lora",
    "TuneResult": "daar.tune.lora",
    "load_tuned": "daar.models.adapter",
    "tune": "daar.tune.lora",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
