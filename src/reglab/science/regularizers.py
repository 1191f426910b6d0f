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

The same rules act on K independent members at once (`reglab.science.stacked.StackedMLP`,
weights of shape [K, out, in]): bound to such a model, `strength` may be a sequence or tensor
of K values, one λ per member, every sum below is taken per member, and `penalty()` has shape
[K]. Each formula is written once, in terms of `lam`, the strength shaped to broadcast over the
tensor at hand (`_lam`): a float for one model, a [K, 1, …] tensor for stacked members.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, cast

import torch
from torch import Tensor

from reglab.science.model import MLP

if TYPE_CHECKING:
    from reglab.science.stacked import StackedMLP

Coefficient = float | Tensor  # a float for one model; for stacked members, a tensor that broadcasts per member


def _sum_abs(tensors: list[Tensor], members: bool = False) -> Tensor:
    """Σ|w| over `tensors`; per member (shape [K]) if they are stacked [K, …] tensors."""
    if members:
        return torch.stack([t.abs().flatten(1).sum(1) for t in tensors]).sum(0)
    return torch.stack(torch._foreach_norm(tensors, 1)).sum()


def _sum_squares(tensors: list[Tensor], members: bool = False) -> Tensor:
    """Σw² over `tensors`; per member if stacked. (Summed squares, not a squared norm, for members:
    its backward is two multiplications where a norm's needs a division and a mask.)"""
    if members:
        return torch.stack([t.square().flatten(1).sum(1) for t in tensors]).sum(0)
    return torch.stack(torch._foreach_norm(tensors, 2)).square().sum()


class Regularizer:
    """No regularization. The base class: selects the tensors a rule acts on.

    Acts on the weight matrices of every layer not listed in `exclude`, and on their biases too
    if `include_bias` (Keras' `kernel_regularizer` and PyTorch's optimizers differ here; the
    default follows Keras).
    """

    name: ClassVar[str] = "none"
    explicit: ClassVar[bool] = False  # True: penalty() is added to the loss and differentiated

    def __init__(
        self, strength: float | Sequence[float] | Tensor = 0.0, include_bias: bool = False, exclude: Sequence[str] = ()
    ) -> None:
        self.strength = strength
        self.include_bias = include_bias
        self.exclude = tuple(exclude)
        self.params: list[Tensor] = []
        self.members: int | None = None  # K when bound to stacked members

    @property
    def strength(self) -> float | Tensor:
        """λ: a float, or (stacked members) a float64 tensor of shape [K] on the CPU."""
        return self._strength

    @strength.setter
    def strength(self, value: float | Sequence[float] | Tensor) -> None:
        if isinstance(value, (int, float)):
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"regularizer.strength={value} is negative; λ must be >= 0")
            self._strength: float | Tensor = float(value)
        else:
            value = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)
            if not bool((value >= 0).all()):
                raise ValueError(f"regularizer.strength={value.tolist()} has a negative value; λ must be >= 0")
            self._strength = value
        self._shaped: dict[tuple, Tensor] = {}

    def bind(self, model: MLP | StackedMLP) -> Regularizer:
        """Select the tensors the rule acts on. `model` may be a `StackedMLP` (it has `members`)."""
        layers = model.linear_layers()
        unknown = [name for name in self.exclude if name not in layers]
        if unknown:
            raise ValueError(f"regularizer.exclude names no layer {unknown[0]!r}; the layers are: {', '.join(layers)}")
        self.members = getattr(model, "members", None)
        if isinstance(self.strength, Tensor) and len(self.strength) != (self.members or 1):
            raise ValueError(
                f"regularizer.strength has {len(self.strength)} values; the model has {self.members or 1} member(s)"
            )
        if self.members is not None and isinstance(self.strength, float):
            self.strength = torch.full((self.members,), self.strength, dtype=torch.float64)
        if self.members is None and isinstance(self.strength, Tensor):  # [λ] for one model is λ
            self.strength = float(self.strength[0])
        self.layers = {name: layer for name, layer in layers.items() if name not in self.exclude}
        self.params = [
            p
            for layer in self.layers.values()
            for p in ((layer.weight, layer.bias) if self.include_bias else (layer.weight,))
        ]
        return self

    def _lam(self, like: Tensor, coefficient: Callable[[Coefficient], Coefficient] = lambda lam: lam) -> Coefficient:
        """`coefficient(λ)` shaped to broadcast over `like`: computed in double precision, as Python
        does for a float, then cast to `like`'s dtype; per member ([K, 1, …]) when stacked."""
        if self.members is None:
            return coefficient(self.strength)
        key = (like.device, like.dim())
        if key not in self._shaped:
            self._shaped[key] = self.strength.to(like.device).view(-1, *[1] * (like.dim() - 1))  # type: ignore[union-attr]
        return coefficient(self._shaped[key]).to(like.dtype)  # type: ignore[union-attr]

    def _each(self, coefficient: Callable[[Coefficient], Coefficient]) -> float | list[Tensor]:
        """`coefficient(λ)` for `torch._foreach_*` over `self.params`: one float, or one tensor per parameter."""
        if self.members is None:
            return cast(float, coefficient(self.strength))  # one model's λ is a float
        return [self._lam(p, coefficient) for p in self.params]  # type: ignore[misc]

    def _active(self) -> bool:
        """Whether any λ is non-zero (a host-side check: no device sync)."""
        return bool(self.strength) if self.members is None else bool(self.strength.any())  # type: ignore[union-attr]

    def penalty(self) -> Tensor:
        shape = () if self.members is None else (self.members,)
        return torch.zeros(shape, device=self.params[0].device) if self.params else torch.zeros(shape)

    @torch.no_grad()
    def before_step(self, lr: float) -> None:
        """Decoupled update, applied to the weights the gradient was computed at."""

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        """Proximal map, applied to the weights the optimizer produced."""

    def __repr__(self) -> str:
        lam = self.strength
        shown = f"{lam:g}" if isinstance(lam, float) else "[" + ", ".join(f"{v:g}" for v in lam.tolist()) + "]"
        return f"{type(self).__name__}(strength={shown})"


class L1(Regularizer):
    """Explicit L1 (lasso): objective += λ·Σ|w|; subgradient λ·sign(w). Keras' `l1(λ)`.

    Drives weights towards zero but, being a subgradient step, leaves them oscillating around
    it rather than at exactly 0: use `ProxL1` for exact zeros.
    """

    name = "l1"
    explicit = True

    def penalty(self) -> Tensor:
        total = _sum_abs(self.params, self.members is not None)
        return self._lam(total) * total


class L2(Regularizer):
    """Explicit L2 (ridge): objective += λ·Σw²; gradient 2λ·w. Keras' `l2(λ)`.

    Under plain SGD this equals `WeightDecay(2λ)` and `torch.optim.SGD(weight_decay=2λ)`.
    """

    name = "l2"
    explicit = True

    def penalty(self) -> Tensor:
        total = _sum_squares(self.params, self.members is not None)
        return self._lam(total) * total


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
        a, members = self.l1_ratio, self.members is not None
        total = a * _sum_abs(self.params, members) + (1 - a) * _sum_squares(self.params, members)
        return self._lam(total) * total


class WeightDecay(Regularizer):
    """Decoupled weight decay: w ← (1 − lr·λ)·w before every optimizer step.

    Outside the gradient and the optimizer's moments: with Adam this is exactly
    `torch.optim.AdamW(weight_decay=λ)`, with SGD it is SGDW (Loshchilov & Hutter, 2019).
    `penalty()` reports (λ/2)·Σw², the objective term it equals under plain SGD.
    """

    name = "weight_decay"

    def penalty(self) -> Tensor:
        total = _sum_squares(self.params, self.members is not None)
        return self._lam(total, lambda lam: 0.5 * lam) * total

    @torch.no_grad()
    def before_step(self, lr: float) -> None:
        if self._active():
            torch._foreach_mul_(self.params, self._each(lambda lam: 1.0 - lr * lam))


class ProxL1(Regularizer):
    """Proximal L1 (ISTA-style): after every step w ← sign(w)·max(|w| − lr·λ, 0).

    Minimises loss + λ·Σ|w| like `L1`, but weights that the gradient cannot hold above the
    threshold lr·λ become exactly 0 and stay there.
    """

    name = "prox_l1"

    def penalty(self) -> Tensor:
        total = _sum_abs(self.params, self.members is not None)
        return self._lam(total) * total

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if self._active():
            t, minus_t = self._each(lambda lam: lr * lam), self._each(lambda lam: -(lr * lam))
            # w − clip(w, −t, t) is the soft threshold, exactly 0 wherever |w| ≤ t.
            inside = torch._foreach_clamp_min(torch._foreach_clamp_max(self.params, t), minus_t)
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

    def bind(self, model: MLP | StackedMLP) -> Regularizer:
        super().bind(model)
        # (weight, bias or None, dim along which a group's entries lie; negative, so that it also
        # holds for stacked [K, out, in] weights)
        self.groups: list[tuple[Tensor, Tensor | None, int]] = [
            (layer.weight, layer.bias if self.include_bias else None, -1)
            for name, layer in self.layers.items()
            if name != "output"
        ]
        first = next(iter(model.linear_layers()))
        if self.input_features and first in self.layers:
            self.groups.append((self.layers[first].weight, None, -2))
        return self

    @staticmethod
    def _norms(weight: Tensor, bias: Tensor | None, dim: int) -> Tensor:
        sq = weight.square().sum(dim)
        return (sq + bias.square() if bias is not None else sq).sqrt()

    def penalty(self) -> Tensor:
        total = super().penalty()
        for weight, bias, dim in self.groups:
            size = weight.shape[dim] + (bias is not None)
            total = total + math.sqrt(size) * self._norms(weight, bias, dim).sum(-1)
        return self._lam(total) * total

    @torch.no_grad()
    def after_step(self, lr: float) -> None:
        if not self._active():
            return
        for weight, bias, dim in self.groups:
            size = weight.shape[dim] + (bias is not None)
            norms = self._norms(weight, bias, dim)
            threshold = self._lam(norms, lambda lam: lr * lam * math.sqrt(size))  # noqa: B023 (called at once)
            scale = (1 - threshold / norms.clamp_min(1e-30)).clamp_min(0)
            weight.mul_(scale.unsqueeze(dim))
            if bias is not None:
                bias.mul_(scale)


REGULARIZERS: dict[str, type[Regularizer]] = {
    cls.name: cls for cls in (Regularizer, L1, L2, ElasticNet, WeightDecay, ProxL1, GroupLasso)
}
