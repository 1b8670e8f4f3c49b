"""A Trainer callback that keeps a plain-JSON loss curve next to the adapter.

The Trainer's own logs go to the console (and `trainer_state.json` only inside checkpoints, which
are removed after a finished run); one JSON line per logging step survives the run, can be
plotted by the report code, and stays consistent across a resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from daar.utils.cache import write_text


class TrainLogCallback(TrainerCallback):
    """Appends {step, loss, lr, epoch, ...} to a JSONL file at every logging step."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started = time.perf_counter()
        self.first_step = 0
        self.last_loss: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # On resume the state already holds the checkpoint's step: rows logged after that checkpoint
        # by the interrupted run will be written again, so drop them to keep every step once.
        self.first_step = int(state.global_step)
        self.started = time.perf_counter()
        kept: list[str] = []
        if self.first_step > 0 and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the crash
                if int(row.get("step", 0)) <= self.first_step:
                    kept.append(json.dumps(row))
                    if row.get("loss") is not None:
                        self.last_loss = float(row["loss"])
        write_text(self.path, "".join(line + "\n" for line in kept))  # whole or not at all
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # Make sure the final loss is logged even when max_steps is not a multiple of logging_steps.
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True
        return control

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not logs or "loss" not in logs:
            return control  # the end-of-training summary has train_loss etc., not a step loss
        row = {
            "step": int(state.global_step),
            "loss": float(logs["loss"]),
            "lr": float(logs.get("learning_rate", 0.0)),
            "epoch": float(logs.get("epoch", state.epoch or 0.0)),
            "grad_norm": None if logs.get("grad_norm") is None else float(logs["grad_norm"]),
            "seconds": round(time.perf_counter() - self.started, 3),
            "tokens": int(getattr(state, "num_input_tokens_seen", 0) or 0),
        }
        self.last_loss = row["loss"]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        return control
