"""What a run ran on: the machine and the package versions, recorded next to its numbers.

A selection, a tuned model or a table of scores is only comparable with another one made on the
same stack; seconds only with the same hardware. Every manifest (select, tune, eval, experiment)
records both with these two functions.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Any

PACKAGES = (
    "daar",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "lm-eval",
    "datasets",
    "numpy",
    "scikit-learn",
    "pydantic",
    "matplotlib",
    "safetensors",
)


def package_versions() -> dict[str, str]:
    """Versions of Python and of every package that can change a selection, a tuned model or a score."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_info() -> dict[str, Any]:
    """Platform, CPU and GPU of this machine; GPU fields are None without CUDA."""
    import torch

    cuda = torch.cuda.is_available()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
    }


def _memory_gb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.virtual_memory().total / 2**30, 1)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch CPU threads (None: unchanged), restoring the previous count after."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
