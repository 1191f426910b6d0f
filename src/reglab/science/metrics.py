"""What a run measures, per member: data loss and accuracy by task, and the state of the weights.
Pure functions of an `MLP` of K members and tensors, every value of shape [K]; computed once per
evaluated epoch on whole splits, on the device, never per step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reglab.science.data import Task
from reglab.science.model import MLP


def _mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Each member's mean over its rows, [K]: Σ w·v / Σ w with row weights `weight` (0: a padding row)."""
    return values.mean(-1) if weight is None else (values * weight).sum(-1) / weight.sum(-1)


def data_loss(logits: Tensor, y: Tensor, task: Task, weight: Tensor | None = None) -> Tensor:
    """Each member's mean loss over its batch, shape [K]: BCE on the sigmoid (binary),
    cross-entropy (multiclass), MSE (regression). `logits` [K, n, out], `y` [K, n] or [n]; `weight`
    [K, n]: the mean over the rows of weight 1 only (0: padding, `RegLabDataModule.weights`)."""
    if task == "binary":
        target = y.to(logits.dtype).expand(logits.shape[:-1])
        return _mean(F.binary_cross_entropy_with_logits(logits.squeeze(-1), target, reduction="none"), weight)
    if task == "multiclass":
        target = y.expand(logits.shape[:-1])
        return _mean(F.cross_entropy(logits.transpose(1, 2), target, reduction="none"), weight)
    return _mean((logits.squeeze(-1) - y).square(), weight)


def prediction_metrics(logits: Tensor, y: Tensor, task: Task, weight: Tensor | None = None) -> dict[str, Tensor]:
    """`loss` and `acc` (classification) or `loss`, `mse` and `r2` (regression), each [K]. `acc`
    counts sigmoid(logit) > 0.5 or argmax equal to the label; r2 = 1 − RSS/TSS, TSS = Σ(y − ȳ)².
    `weight`: as `data_loss`'s (sums and means over the rows of weight 1)."""
    loss = data_loss(logits, y, task, weight)
    if task == "binary":
        return {"loss": loss, "acc": _mean(((torch.sigmoid(logits.squeeze(-1)) > 0.5).long() == y).float(), weight)}
    if task == "multiclass":
        return {"loss": loss, "acc": _mean((logits.argmax(-1) == y).float(), weight)}
    y = y.expand(logits.shape[:-1])
    w = torch.ones_like(y) if weight is None else weight
    rss = (w * (y - logits.squeeze(-1)).square()).sum(-1)
    tss = (w * (y - _mean(y, weight)[..., None]).square()).sum(-1)
    return {"loss": loss, "mse": loss, "r2": 1 - rss / tss}


def weight_metrics(model: MLP, threshold: float = 1e-3) -> dict[str, Tensor]:
    """Norms and sparsity of the weight matrices (biases excluded), per layer and in total, per member,
    summed in float64. `zero_frac`: fraction exactly 0; `small_frac`: fraction with |w| < threshold;
    `dead_units`: hidden units whose incoming weights are all exactly 0."""
    with torch.no_grad():
        out: dict[str, Tensor] = {}
        parts = []
        for name, layer in model.linear_layers().items():
            w = layer.weight.flatten(1).double()  # [K, out·in]
            part = {"l1": w.abs().sum(1), "sq": w.square().sum(1), "max": w.abs().amax(1)}
            part |= {"zero": (w == 0).sum(1), "small": (w.abs() < threshold).sum(1)}
            out[f"weights/{name}/l1"] = part["l1"]
            out[f"weights/{name}/l2"] = part["sq"].sqrt()
            out[f"weights/{name}/max_abs"] = part["max"]
            out[f"weights/{name}/zero_frac"] = part["zero"] / w.shape[1]
            parts.append(part)
        total = {key: torch.stack([p[key] for p in parts]) for key in parts[0]}
        n = n_weights(model)
        out["weights/l1"] = total["l1"].sum(0)
        out["weights/l2"] = total["sq"].sum(0).sqrt()
        out["weights/max_abs"] = total["max"].amax(0)
        out["weights/zero_frac"] = total["zero"].sum(0) / n
        out["weights/small_frac"] = total["small"].sum(0) / n
        hidden = [layer for name, layer in model.linear_layers().items() if name != "output"]
        dead = [((layer.weight != 0).sum(2) == 0).sum(1) for layer in hidden]
        out["weights/dead_units"] = torch.stack(dead).sum(0).double() if dead else torch.zeros(model.members)
        return out


def feature_l1(model: MLP) -> list[list[float]]:
    """Per member, the L1 norm of each input's outgoing first-layer weights (0: the input is dropped)."""
    with torch.no_grad():
        first = next(iter(model.linear_layers().values()))
        return first.weight.double().abs().sum(1).tolist()


def n_weights(model: MLP) -> int:
    """Weights of one member (biases excluded)."""
    return sum(layer.weight[0].numel() for layer in model.linear_layers().values())
