"""Regularizers: where a penalty or a decoupled update touches the weights.

Each class states its rule in its docstring; the conventions (what λ means, which tensors it
sees, how it converts to Keras, PyTorch and scikit-learn) are in the README, section
"Conventions". A regularizer is bound to a model once and then asked three things per step:

    objective = data_loss + reg.penalty()     # only if reg.explicit: differentiated with the loss
    reg.before_step(lr)                       # after backward, before optimizer.step()
    optimizer.step()
    reg.after_step(lr)                        # proximal maps

`penalty()` of a non-explicit regularizer is the term its update minimises; it is reported as
`train/penalty`, never differentiated. `lr` is the optimizer's current learning rate, so a
scheduler scales the decoupled and proximal updates as it scales the gradient step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from reglab.science.model import MLP


def _sum_abs(tensors: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(tensors, 1)).sum()


def _sum_squares(tensors: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(tensors, 2)).square().sum()


class Regularizer:
    """No regularization. The base class: selects the tensors a rule acts on.

    Acts on the weight matrices of every layer not listed in `exclude`, and on their biases too
    if `include_bias` (Keras' `kernel_regularizer` and PyTorch's optimizers differ here; the
    default follows Keras).
    """

    name: ClassVar[str] = "none"
    explicit: ClassVar[bool] = False  # True: penalty() is added to the loss and differentiated

    def __init__(self, strength: float = 0.0, include_bias: bool = False, exclude: Sequence[str] = ()) -> None:
        if not strength >= 0:  # also rejects NaN
            raise ValueError(f"regularizer.strength={strength} is negative; λ must be >= 0")
        self.strength = float(strength)
        self.include_bias = include_bias
        self.exclude = tuple(exclude)
        self.params: list[Tensor] = []

    def bind(self, model: MLP) -> Regularizer:
        layers = model.linear_layers()
        unknown = [name for name in self.exclude if name not in layers]
        if unknown:
            raise ValueError(f"regularizer.exclude names no layer {unknown[0]!r}; the layers are: {', '.join(layers)}")
        self.layers = {name: layer for name, layer in layers.items() if name not in self.exclude}
        self.params = [
            p
            for layer in self.layers.values()
            for p in ((layer.weight, layer.bias) if self.include_bias else (layer.weight,))
        ]
        return self

    def penalty(self) -> Tensor:
        return torch.zeros((), device=self.params[0].device) if self.params else torch.zeros(())

    @torch.no_grad()
    def before_step(self, lr: float) -> None:
        """Decoupled update, applied to the weights the gradient was computed at."""

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        """Proximal map, applied to the weights the optimizer produced."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength:g})"


class L1(Regularizer):
    """Explicit L1 (lasso): objective += λ·Σ|w|; subgradient λ·sign(w). Keras' `l1(λ)`.

    Drives weights towards zero but, being a subgradient step, leaves them oscillating around
    it rather than at exactly 0: use `ProxL1` for exact zeros.
    """

    name = "l1"
    explicit = True

    def penalty(self) -> Tensor:
        return self.strength * _sum_abs(self.params)


class L2(Regularizer):
    """Explicit L2 (ridge): objective += λ·Σw²; gradient 2λ·w. Keras' `l2(λ)`.

    Under plain SGD this equals `WeightDecay(2λ)` and `torch.optim.SGD(weight_decay=2λ)`.
    """

    name = "l2"
    explicit = True

    def penalty(self) -> Tensor:
        return self.strength * _sum_squares(self.params)


class ElasticNet(Regularizer):
    """Explicit elastic net: objective += λ·(α·Σ|w| + (1 − α)·Σw²), α = `l1_ratio`.

    λ₁ = αλ and λ₂ = (1 − α)λ are Keras' `L1L2(l1=λ₁, l2=λ₂)`.
    """

    name = "elastic_net"
    explicit = True

    def __init__(self, strength: float = 0.0, l1_ratio: float = 0.5, **kwargs) -> None:
        super().__init__(strength, **kwargs)
        if not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"regularizer.l1_ratio={l1_ratio} must be in [0, 1]")
        self.l1_ratio = float(l1_ratio)

    def penalty(self) -> Tensor:
        a = self.l1_ratio
        return self.strength * (a * _sum_abs(self.params) + (1 - a) * _sum_squares(self.params))


class WeightDecay(Regularizer):
    """Decoupled weight decay: w ← (1 − lr·λ)·w before every optimizer step.

    Outside the gradient and the optimizer's moments: with Adam this is exactly
    `torch.optim.AdamW(weight_decay=λ)`, with SGD it is SGDW (Loshchilov & Hutter, 2019).
    `penalty()` reports (λ/2)·Σw², the objective term it equals under plain SGD.
    """

    name = "weight_decay"

    def penalty(self) -> Tensor:
        return 0.5 * self.strength * _sum_squares(self.params)

    @torch.no_grad()
    def before_step(self, lr: float) -> None:
        if self.strength:
            torch._foreach_mul_(self.params, 1.0 - lr * self.strength)


class ProxL1(Regularizer):
    """Proximal L1 (ISTA-style): after every step w ← sign(w)·max(|w| − lr·λ, 0).

    Minimises loss + λ·Σ|w| like `L1`, but weights that the gradient cannot hold above the
    threshold lr·λ become exactly 0 and stay there.
    """

    name = "prox_l1"

    def penalty(self) -> Tensor:
        return self.strength * _sum_abs(self.params)

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self.strength:
            t = lr * self.strength
            # w − clip(w, −t, t) is the soft threshold, exactly 0 wherever |w| ≤ t.
            inside = torch._foreach_clamp_min(torch._foreach_clamp_max(self.params, t), -t)
            torch._foreach_sub_(self.params, inside)


class GroupLasso(Regularizer):
    """Proximal group lasso on hidden units: objective += λ·Σ_g √p_g·‖w_g‖₂.

    A group g is one hidden unit's incoming weights (a row of its layer's weight matrix, plus
    its bias if `include_bias`), p_g its size. After every step
        w_g ← w_g · max(0, 1 − lr·λ·√p_g / ‖w_g‖₂),
    so a whole unit switches off at once. With `input_features`, the columns of the first
    layer (one input feature's outgoing weights) are groups too, shrunk after the units.
    The output layer has no units to switch off and is never grouped by rows.
    """

    name = "group_lasso"

    def __init__(self, strength: float = 0.0, input_features: bool = False, **kwargs) -> None:
        super().__init__(strength, **kwargs)
        self.input_features = input_features

    def bind(self, model: MLP) -> Regularizer:
        super().bind(model)
        # (weight, bias or None, dim along which a group's entries lie)
        self.groups: list[tuple[Tensor, Tensor | None, int]] = [
            (layer.weight, layer.bias if self.include_bias else None, 1)
            for name, layer in self.layers.items()
            if name != "output"
        ]
        first = next(iter(model.linear_layers()))
        if self.input_features and first in self.layers:
            self.groups.append((self.layers[first].weight, None, 0))
        return self

    @staticmethod
    def _norms(weight: Tensor, bias: Tensor | None, dim: int) -> Tensor:
        sq = weight.square().sum(dim)
        return (sq + bias.square() if bias is not None else sq).sqrt()

    def penalty(self) -> Tensor:
        total = super().penalty()
        for weight, bias, dim in self.groups:
            size = weight.shape[dim] + (bias is not None)
            total = total + math.sqrt(size) * self._norms(weight, bias, dim).sum()
        return self.strength * total

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if not self.strength:
            return
        for weight, bias, dim in self.groups:
            size = weight.shape[dim] + (bias is not None)
            norms = self._norms(weight, bias, dim)
            scale = (1 - lr * self.strength * math.sqrt(size) / norms.clamp_min(1e-30)).clamp_min(0)
            weight.mul_(scale.unsqueeze(dim))
            if bias is not None:
                bias.mul_(scale)


REGULARIZERS: dict[str, type[Regularizer]] = {
    cls.name: cls for cls in (Regularizer, L1, L2, ElasticNet, WeightDecay, ProxL1, GroupLasso)
}
