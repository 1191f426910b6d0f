"""What a run measures: data loss and accuracy by task, and the state of the weights.

Pure functions of a model and tensors, computed once per epoch on whole splits, never per step.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional import r2_score
from torchmetrics.functional.classification import binary_accuracy, multiclass_accuracy

from reglab.science.datasets import Task
from reglab.science.model import MLP


def data_loss(logits: Tensor, y: Tensor, task: Task) -> Tensor:
    """Mean over the batch: BCE on the sigmoid (binary), cross-entropy (multiclass), MSE (regression)."""
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), y.to(logits.dtype))
    if task == "multiclass":
        return F.cross_entropy(logits, y)
    return F.mse_loss(logits.squeeze(-1), y)


def prediction_metrics(logits: Tensor, y: Tensor, task: Task) -> dict[str, Tensor]:
    """`loss` and `acc` (classification) or `loss`, `mse` and `r2` (regression), as 0-d tensors."""
    loss = data_loss(logits, y, task)
    if task == "binary":
        return {"loss": loss, "acc": binary_accuracy(torch.sigmoid(logits.squeeze(-1)), y)}
    if task == "multiclass":
        return {"loss": loss, "acc": multiclass_accuracy(logits, y, num_classes=logits.shape[-1], average="micro")}
    return {"loss": loss, "mse": loss, "r2": r2_score(logits.squeeze(-1), y)}


@torch.no_grad()
def weight_metrics(model: MLP, threshold: float = 1e-3) -> dict[str, Tensor]:
    """Norms and sparsity of the weight matrices (biases excluded), per layer and in total.

    `zero_frac`: fraction of weights exactly 0; `small_frac`: fraction with |w| < threshold;
    `dead_units`: hidden units whose incoming weights are all exactly 0.
    """
    out: dict[str, Tensor] = {}
    weights = {name: layer.weight for name, layer in model.linear_layers().items()}
    for name, w in weights.items():
        out[f"weights/{name}/l1"] = w.abs().sum()
        out[f"weights/{name}/l2"] = w.norm()
        out[f"weights/{name}/max_abs"] = w.abs().max()
        out[f"weights/{name}/zero_frac"] = (w == 0).float().mean()
    flat = torch.cat([w.flatten() for w in weights.values()])
    out["weights/l1"] = flat.abs().sum()
    out["weights/l2"] = flat.norm()
    out["weights/max_abs"] = flat.abs().max()
    out["weights/zero_frac"] = (flat == 0).float().mean()
    out["weights/small_frac"] = (flat.abs() < threshold).float().mean()
    hidden = [w for name, w in weights.items() if name != "output"]
    # sum() of a non-empty list of tensors is a tensor, never its start value 0
    out["weights/dead_units"] = (
        cast(Tensor, sum(((w != 0).sum(1) == 0).sum() for w in hidden)).float() if hidden else torch.zeros(())
    )
    return out


@torch.no_grad()
def feature_l1(model: MLP) -> list[float]:
    """L1 norm of each input feature's outgoing weights in the first layer: 0 means the feature is dropped."""
    first = next(iter(model.linear_layers().values()))
    return first.weight.abs().sum(0).tolist()


def n_weights(model: MLP) -> int:
    return sum(layer.weight.numel() for layer in model.linear_layers().values())
