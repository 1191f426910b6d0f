"""K independent MLPs trained as one: stacked weights, batched matmuls, per-member metrics.

Member k of a `StackedMLP` is the `MLP` whose tensors are `hidden.0.weight[k]`, `hidden.0.bias[k]`,
…, `output.bias[k]`. Nothing mixes members: each layer is one batched matmul (`torch.baddbmm`)
over the member dimension, activations are elementwise, and the training loss is the *sum* of
the members' mean losses, so member k's gradient is exactly the gradient of its own loss. An
elementwise optimizer (SGD, Adam, AdamW: every update reads only its own parameter's entries)
over the stacked tensors is then K independent optimizers, and a regularizer bound to the stack
(`reglab.science.regularizers`, per-member λ) K independent regularizers.

Shapes: weights [K, out, in], biases [K, out], inputs [K, n, in] (or [n, in], shared), logits
[K, n, out], labels [K, n]; every metric here is a tensor of shape [K], one value per member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import vmap

from reglab.science.datasets import Task
from reglab.science.metrics import data_loss
from reglab.science.model import ACTIVATIONS, MLP


class StackedLinear(nn.Module):
    """K affine maps at once: y[k] = x[k] · weight[k]ᵀ + bias[k]."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # one input shared by every member: a stride-0 view, no copy
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedMLP(nn.Module):
    """K `MLP`s of the same shape in one module, with the same layer names (`hidden.0`, …, `output`).

    Build it from the members with `stack(models)`, so that each member starts from exactly the
    weights its own `MLP` was initialised with; `member(k)` gives member k back as an `MLP`.
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.widths, self.activation_name, self.dropout_p = list(hidden), activation, dropout
        widths = [in_features, *hidden]
        self.hidden = nn.ModuleList(StackedLinear(members, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.output = StackedLinear(members, widths[-1], out_features)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @classmethod
    def stack(cls, models: Sequence[MLP]) -> StackedMLP:
        """The members `models` (same shape), their weights copied into the stack."""
        first = models[0]
        activation = next(name for name, act in ACTIVATIONS.items() if isinstance(first.activation, act))
        dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
        widths = [cast(nn.Linear, layer).out_features for layer in first.hidden]
        in_features = next(iter(first.linear_layers().values())).in_features
        stacked = cls(len(models), in_features, first.output.out_features, widths, activation, dropout)
        states = [model.state_dict() for model in models]
        with torch.no_grad():
            for name, tensor in stacked.state_dict().items():
                tensor.copy_(torch.stack([state[name] for state in states]))
        return stacked.to(first.output.weight.device)

    def linear_layers(self) -> dict[str, StackedLinear]:
        """The affine layers by name, input first: the names of `MLP.linear_layers`."""
        layers = {f"hidden.{i}": cast(StackedLinear, layer) for i, layer in enumerate(self.hidden)}
        layers["output"] = self.output
        return layers

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = self.dropout(self.activation(layer(x)))
        return self.output(x)

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's tensors under the keys of `MLP.state_dict()` (copies, on the CPU)."""
        return {name: tensor[k].detach().cpu().clone() for name, tensor in self.state_dict().items()}

    def member(self, k: int) -> MLP:
        """Member k as an `MLP` on the CPU (built on the meta device: draws no random numbers)."""
        with torch.device("meta"):
            model = MLP(self.in_features, self.out_features, self.widths, self.activation_name, self.dropout_p)
        model.load_state_dict(self.member_state_dict(k), assign=True)
        return model


def member_losses(logits: Tensor, y: Tensor, task: Task) -> Tensor:
    """`metrics.data_loss` of each member on its own batch: shape [K]."""
    return vmap(data_loss, in_dims=(0, 0, None))(logits, y, task)


def member_prediction_metrics(logits: Tensor, y: Tensor, task: Task) -> dict[str, Tensor]:
    """`metrics.prediction_metrics` per member, each value of shape [K].

    The same definitions as torchmetrics' (which cannot be vmapped): accuracy counts
    sigmoid(logit) > 0.5 (binary) or argmax (multiclass) equal to the label; r2 = 1 − RSS/TSS
    with TSS = Σy² − (Σy)²/n, in torchmetrics' order of operations.
    """
    loss = member_losses(logits, y, task)
    if task == "binary":
        correct = (torch.sigmoid(logits.squeeze(-1)) > 0.5).long() == y
        return {"loss": loss, "acc": correct.float().mean(-1)}
    if task == "multiclass":
        return {"loss": loss, "acc": (logits.argmax(-1) == y).float().mean(-1)}
    pred = logits.squeeze(-1)
    rss = (y - pred).square().sum(-1)
    sum_obs, n = y.sum(-1), y.shape[-1]
    tss = y.square().sum(-1) - sum_obs * (sum_obs / n)
    return {"loss": loss, "mse": loss, "r2": 1 - rss / tss}


@torch.no_grad()
def member_weight_metrics(model: StackedMLP, threshold: float = 1e-3) -> dict[str, Tensor]:
    """`metrics.weight_metrics` of each member, values of shape [K]: the same keys and definitions
    (the tests compare them member by member), computed per layer once and combined, since
    vmapping the single-model function costs three times as much per epoch."""
    out: dict[str, Tensor] = {}
    parts = []
    for name, layer in model.linear_layers().items():
        w = layer.weight.flatten(1)  # [K, out·in]; each statistic one pass over it, no copies but one
        norm = partial(torch.linalg.vector_norm, w, dim=1)
        part = {"l1": norm(1), "l2": norm(2), "max": norm(math.inf), "n": w.shape[1]}
        part["zero"] = w.shape[1] - torch.count_nonzero(w, dim=1)
        part["small"] = torch.count_nonzero(w.abs() < threshold, dim=1)
        part["sq"] = part["l2"].square()
        parts.append((name, part))
        out[f"weights/{name}/l1"] = part["l1"]
        out[f"weights/{name}/l2"] = part["l2"]
        out[f"weights/{name}/max_abs"] = part["max"]
        out[f"weights/{name}/zero_frac"] = part["zero"] / part["n"]
    n = sum(p["n"] for _, p in parts)
    out["weights/l1"] = torch.stack([p["l1"] for _, p in parts]).sum(0)
    out["weights/l2"] = torch.stack([p["sq"] for _, p in parts]).sum(0).sqrt()
    out["weights/max_abs"] = torch.stack([p["max"] for _, p in parts]).amax(0)
    out["weights/zero_frac"] = torch.stack([p["zero"] for _, p in parts]).sum(0) / n
    out["weights/small_frac"] = torch.stack([p["small"] for _, p in parts]).sum(0) / n
    hidden = [layer.weight for name, layer in model.linear_layers().items() if name != "output"]
    dead = [((w != 0).sum(2) == 0).sum(1) for w in hidden]  # units whose incoming weights are all 0
    out["weights/dead_units"] = torch.stack(dead).sum(0).float() if dead else torch.zeros(model.members)
    return out
