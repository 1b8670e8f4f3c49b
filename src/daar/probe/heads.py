"""The two small heads DaaR trains on frozen prober features (DESIGN steps 5 and 7).

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

Kind = Literal["classify", "regress"]


def make_mlp(dim: int, out: int) -> nn.Sequential:
    sizes = [dim, 2 * dim, dim, max(1, dim // 2), 256, out]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclass
class Head:
    """A trained head: the MLP, its input standardisation and its validation metrics."""

    mlp: nn.Sequential
    mean: torch.Tensor
    std: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)

    @torch.inference_mode()
    def predict(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """Raw outputs (logits for a classifier, values for a regressor), shape (N, out)."""
        self.mlp.eval()
        outs = []
        for start in range(0, len(x), batch):
            chunk = torch.from_numpy(np.array(x[start : start + batch], dtype=np.float32))
            outs.append(self.mlp((chunk - self.mean) / self.std))
        width = self.mlp[-1].out_features
        return torch.cat(outs).numpy() if outs else np.zeros((0, width), np.float32)

    def state(self) -> dict[str, torch.Tensor]:
        tensors = {f"mlp.{k}": v.detach().clone().contiguous() for k, v in self.mlp.state_dict().items()}
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


def train_head(x: np.ndarray, y: np.ndarray, kind: Kind, out: int, cfg: HeadConfig, seed: int) -> Head:
    """Fit a head with Adam (cross-entropy or MSE) and report validation metrics.

    Deterministic for a given seed: initialisation, split and batch order all derive from it.
    """
    x = np.asarray(x, dtype=np.float32)
    train, val = split_rows(len(x), cfg.val_fraction, seed)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.array(x, dtype=np.float32))
    mean = xt[train].mean(0)
    std = xt[train].std(0, unbiased=False).clamp(min=1e-6)
    mlp = make_mlp(x.shape[1], out)
    target = torch.as_tensor(y, dtype=torch.long if kind == "classify" else torch.float32)
    loss_fn = nn.CrossEntropyLoss() if kind == "classify" else nn.MSELoss()
    optimizer = torch.optim.Adam(mlp.parameters(), lr=cfg.lr)
    inputs = (xt - mean) / std
    losses: list[float] = []
    mlp.train()
    for _ in range(cfg.epochs):
        order = torch.as_tensor(train)[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            pred = mlp(inputs[rows])
            loss = loss_fn(pred, target[rows]) if kind == "classify" else loss_fn(pred[:, 0], target[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    head = Head(mlp, mean, std)
    tail = losses[-max(1, len(losses) // 10) :] if losses else [float("nan")]
    head.metrics = {"train_rows": len(train), "val_rows": len(val), "final_train_loss": float(np.mean(tail))}
    head.metrics.update(_validate(head, x[val], np.asarray(y)[val], kind, np.asarray(y)[train]))
    return head


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
        "val_spearman": _spearman(values, y),
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation: the reward model only has to order rows, so this is what matters."""
    if len(a) < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])
