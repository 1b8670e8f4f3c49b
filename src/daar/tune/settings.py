"""Settings of the learner, kept apart from the training code so the CLI can build them cheaply."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from daar.config import Runtime

TemplateName = Literal["auto", "chat", "plain"]


class TuneConfig(Runtime):
    """Settings of `daar tune`; the defaults are the paper's (rank 8, alpha 16, lr 5e-5, 4 x 4, ...).
    The runtime (daar.config.Runtime): device; dtype (auto: bf16 on GPUs, fp32 on CPUs); seed for
    the adapter's init, the row order and dropout; cache_dir is not used."""

    model_config = ConfigDict(extra="forbid")
    # Go on training this adapter (a `daar tune` output of the same base) instead of a fresh one;
    # its rank, alpha and target modules then win over the settings here.
    init_adapter: Path | None = None
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    lr: float = Field(5e-5, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    scheduler: str = "linear"
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(2048, ge=8)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(4, ge=1)
    # Rows per forward pass; the gradient of each optimiser step is the same whatever it is (the
    # loss is averaged over every response token of the batch_size x grad_accum rows). None: all
    # of them in one pass on a GPU (measured several times faster for small models), batch_size on
    # CPU. Must divide batch_size x grad_accum.
    micro_batch_size: int | None = Field(None, ge=1)
    # Which rows of a step share a forward pass when a step takes several (CPU default: 4): balanced
    # groups them by length (transformers' BatchRebalanceSampler, see daar.tune.batches), so far
    # less compute goes to padding; each step keeps the rows random passes would give it, so the
    # adapter differs from random's by float rounding only. random (passes in drawn order) is kept
    # to reproduce earlier adapters bit for bit. No effect with one pass per step (the GPU default).
    sampling: Literal["balanced", "random"] = "balanced"
    # A pass's rows joined into one sequence, positions restarting at each row, attention kept inside
    # each row, instead of right-padded to the longest: the same loss and gradient with no compute on
    # padding (tests/tune/test_packing.py). None: on when a step is one pass (the GPU default).
    packing: bool | None = None
    # torch.compile each decoder layer (one compiled graph serves all layers, shapes dynamic): a small
    # model's step on a GPU waits on the launches of thousands of small kernels, which compilation
    # fuses. Off by default until measured on a GPU (benchmarks/tune_gpu.py): its compile time may
    # cost more than a 200-step run saves. A compilation error falls back to the uncompiled model.
    compile: bool = False
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)
    template: TemplateName = "auto"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    merge: bool = False
    resume: bool = False
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(50, ge=1)
    save_total_limit: int = Field(2, ge=1)
    keep_checkpoints: bool = False

    @model_validator(mode="after")
    def _micro_divides(self) -> TuneConfig:
        effective = self.batch_size * self.grad_accum
        if self.micro_batch_size is not None and effective % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} must divide batch_size x grad_accum = {effective}"
            )
        return self
