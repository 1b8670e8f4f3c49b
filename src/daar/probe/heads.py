"""The two small heads DaaR trains on frozen prober features (docs/METHOD.md, steps 5 and 7).

Both heads have the authors' shape d -> 2d -> d -> d/2 -> 256 -> out with ReLU, and both are
trained on the cached f(x), never by re-running the model. Inputs are standardised with the
training rows' mean and std: hidden states of small LMs have a few huge dimensions (SmolLM2's
layer-3 mean has entries near 100), which otherwise dominate an MLP trained for a few epochs.
The state (weights + standardisation) is a flat dict of tensors, so it saves as safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from daar.config import HeadConfig
from daar.utils.machine import torch_threads
from daar.utils.progress import progress_bar
from daar.utils.stats import spearman

Kind = Literal["classify", "regress"]


def layer_sizes(dim: int, out: int) -> list[int]:
    return [dim, 2 * dim, dim, max(1, dim // 2), 256, out]


def make_mlp(dim: int, out: int) -> nn.Sequential:
    sizes = layer_sizes(dim, out)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def head_parameters(dim: int, out: int) -> int:
    """Weights and biases of `make_mlp(dim, out)`, without building it (58 M at width 3,584)."""
    sizes = layer_sizes(dim, out)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


@dataclass
class Head:
    """A trained head: the MLP, its input standardisation and its validation metrics."""

    mlp: nn.Sequential
    mean: torch.Tensor
    std: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)

    @torch.inference_mode()
    def predict(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Raw outputs (logits for a classifier, values for a regressor), shape (N, out), computed
        on the device the head is on."""
        self.mlp.eval()
        device = self.mlp[0].weight.device
        mean, std = self.mean.to(device), self.std.to(device)
        outs = []
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(np.array(x[start : start + batch], dtype=np.float32)).to(device)
            outs.append(self.mlp((chunk - mean) / std).float().cpu())
        width = self.mlp[-1].out_features
        return torch.cat(outs).numpy() if outs else np.zeros((0, width), np.float32)

    def to(self, device: str) -> Head:
        self.mlp.to(device)
        return self

    def state(self) -> dict[str, torch.Tensor]:
        tensors = {f"mlp.{k}": v.detach().cpu().clone().contiguous() for k, v in self.mlp.state_dict().items()}
        return {**tensors, "input.mean": self.mean.clone(), "input.std": self.std.clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], metrics: dict[str, float] | None = None) -> Head:
        mean, std = state["input.mean"], state["input.std"]
        out = int(state[f"mlp.{len(make_mlp(1, 1)) - 1}.bias"].shape[0])
        mlp = make_mlp(int(mean.shape[0]), out)
        mlp.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("mlp.")})
        return cls(mlp, mean, std, dict(metrics or {}))


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation indices; validation gets at least one row when there are 10 or more."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 10:
        n_val = max(1, n_val)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# A head this small steps in microseconds; more CPU threads only add synchronisation, and on a
# shared machine spinning threads turn seconds into minutes (measured: 15 s -> 1,000+ s for the
# demo's heads with three daar processes on 2 cores). Larger heads (7B-wide) keep the threads.
SINGLE_THREAD_PARAMS = 4_000_000
# Fused Adam runs on CPU from torch 2.4; older torch (the project asks for >= 2.2) keeps plain Adam.
CPU_FUSED_ADAM = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4)


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    kind: Kind,
    out: int,
    cfg: HeadConfig,
    seed: int,
    device: str = "cpu",
    label: str | None = None,
) -> Head:
    """Fit a head with Adam (cross-entropy or MSE) on `device` and report validation metrics.

    Deterministic for a given seed: initialisation, split and batch order all derive from it. All
    rows and targets go to the device once; the loop reads the loss back only at the end, so a
    GPU is never stalled by a per-step copy to the host. With a `label`, a transient progress bar
    counts the steps (a 7B-wide head on CPU takes minutes even batched); its total is the
    `epochs` cap, which early stopping usually cuts short.
    """
    x = np.asarray(x, dtype=np.float32)
    train, val = split_rows(len(x), cfg.val_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.array(x, dtype=np.float32))
    mean = xt[train].mean(0)
    std = xt[train].std(0, unbiased=False).clamp(min=1e-6)
    mlp = make_mlp(x.shape[1], out).to(device)
    target = torch.as_tensor(y, dtype=torch.long if kind == "classify" else torch.float32).to(device)
    loss_fn = nn.CrossEntropyLoss() if kind == "classify" else nn.MSELoss()
    small = head_parameters(x.shape[1], out) < SINGLE_THREAD_PARAMS
    # Fused Adam: one kernel over all parameters instead of a dozen whole-tensor passes. On CPU it
    # made a 7B-wide head's optimizer step (58 M parameters) 10x faster (4.4 s -> 0.43 s on 2
    # shared cores, benchmarks/heads_cpu.py). Small heads on CPU keep plain Adam: its rounding
    # differs, and the reward head amplifies that (SmolLM2 on the 16k pool: top-20% overlap 0.91
    # between the two optimizers), so the default selection stays what it was.
    fused = device != "cpu" or (not small and CPU_FUSED_ADAM)
    optimizer = torch.optim.Adam(mlp.parameters(), lr=cfg.lr, fused=fused or None)
    inputs = ((xt - mean) / std).to(device)
    orders = torch.stack(
        [torch.as_tensor(train)[torch.randperm(len(train), generator=generator)] for _ in range(cfg.epochs)]
    ).to(device)
    starts = range(0, len(train), cfg.batch_size)
    losses = torch.zeros((cfg.epochs, len(starts)), device=device)
    val_rows = torch.as_tensor(val, device=device)
    stopper = _EarlyStop(cfg.patience, inputs[val_rows], target[val_rows], loss_fn)
    bar = progress_bar(transient=True, disable=label is None)
    with torch_threads(1 if small and device == "cpu" else None), bar:
        task = bar.add_task(f"{label} head", total=cfg.epochs * len(starts), info=f"epoch 1 of <= {cfg.epochs}")
        for epoch in range(cfg.epochs):
            mlp.train()
            for i, start in enumerate(starts):
                rows = orders[epoch, start : start + cfg.batch_size]
                pred = mlp(inputs[rows])
                loss = loss_fn(pred, target[rows]) if kind == "classify" else loss_fn(pred[:, 0], target[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses[epoch, i] = loss.detach()
                bar.advance(task)
            if stopper.done(mlp, kind):
                break
            bar.update(task, info=f"epoch {epoch + 2} of <= {cfg.epochs}")
    stopper.restore(mlp)
    ran = losses[: stopper.epochs_run].flatten()
    head = Head(mlp, mean, std)
    tail = ran[-max(1, len(ran) // 10) :].cpu().numpy() if len(ran) else np.array([float("nan")])
    head.metrics = {
        "train_rows": len(train),
        "val_rows": len(val),
        "final_train_loss": float(np.mean(tail)),
        "epochs": float(stopper.epochs_run),
        "best_epoch": float(stopper.best_epoch or stopper.epochs_run),
    }
    head.metrics.update(_validate(head, x[val], np.asarray(y)[val], kind, np.asarray(y)[train]))
    return head


class _EarlyStop:
    """Stop when the validation loss has not improved for `patience` epochs; keep the best weights.

    Without a patience (the authors' fixed schedule) or without validation rows it never stops."""

    def __init__(self, patience: int | None, x_val: torch.Tensor, y_val: torch.Tensor, loss_fn: nn.Module) -> None:
        self.patience = patience if len(x_val) else None
        self.x_val, self.y_val, self.loss_fn = x_val, y_val, loss_fn
        self.best = float("inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.epochs_run = 0

    @torch.no_grad()
    def done(self, mlp: nn.Sequential, kind: Kind) -> bool:
        self.epochs_run += 1
        if self.patience is None:
            return False
        mlp.eval()
        pred = mlp(self.x_val)
        loss = float(self.loss_fn(pred, self.y_val) if kind == "classify" else self.loss_fn(pred[:, 0], self.y_val))
        if loss < self.best:
            self.best, self.best_epoch = loss, self.epochs_run
            self.best_state = {k: v.detach().clone() for k, v in mlp.state_dict().items()}
        return self.epochs_run - self.best_epoch >= self.patience

    def restore(self, mlp: nn.Sequential) -> None:
        if self.best_state is not None:
            mlp.load_state_dict(self.best_state)


def _validate(head: Head, x: np.ndarray, y: np.ndarray, kind: Kind, y_train: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {}
    pred = head.predict(x)
    if kind == "classify":
        majority = np.bincount(y_train).argmax() if len(y_train) else 0
        return {
            "val_accuracy": float((pred.argmax(1) == y).mean()),
            "val_majority_accuracy": float((y == majority).mean()),
        }
    values = pred[:, 0]
    baseline = float(np.mean((y - y_train.mean()) ** 2)) if len(y_train) else float("nan")
    return {
        "val_mse": float(np.mean((values - y) ** 2)),
        "val_mae": float(np.mean(np.abs(values - y))),
        "val_mse_of_mean": baseline,
        "val_spearman": spearman(values, y),  # the reward model only has to order rows
    }
