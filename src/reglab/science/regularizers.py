"""Regularizers: where a penalty or a decoupled update touches the weights. Each class states its
rule in its docstring; what λ means and how it converts to other libraries is in the README,
section "Conventions". `RegLabModule._step` calls `penalty()` (added to the loss if `explicit`, else
reported as `train/penalty`), `before_step(lr)` and `after_step(lr)` with the optimizer's current lr,
so a scheduler scales these updates as it scales the gradient step. The rules act on the K members
of an `MLP` at once: `strength` holds one λ per member, `penalty()` is [K], `lam` is λ shaped [K, 1, …]."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import torch
from torch import Tensor

from reglab.science import proximal
from reglab.science.conventions import REGULARIZER_NAMES, check_strength
from reglab.science.model import MLP
from reglab.science.proximal import ADAM_FAMILY

Strength = float | Sequence[float] | Tensor  # λ: one for every member, or one per member


def _sum_abs(tensors: list[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """Σ|w| per member over the stacked [K, …] `tensors`: shape [K]."""
    sums = [t.abs().sum(tuple(range(1, t.dim())), dtype=dtype) for t in tensors]
    return sums[0] if len(sums) == 1 else torch.stack(sums).sum(0)


def _sum_squares(tensors: list[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """Σw² per member: shape [K] (not a squared norm, whose backward needs a division and a mask)."""
    sums = [(t if dtype is None else t.to(dtype)).square().sum(tuple(range(1, t.dim()))) for t in tensors]
    return sums[0] if len(sums) == 1 else torch.stack(sums).sum(0)


def _values(value: object) -> list:
    """A strength as a flat list: a tensor's entries, a sequence's (or NumPy array's) items, or a scalar alone."""
    if isinstance(value, Tensor):
        return value.detach().reshape(-1).tolist()
    if hasattr(value, "tolist"):  # a NumPy array or scalar
        value = value.tolist()
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


class Regularizer:
    """No regularization. The base class: selects the tensors a rule acts on, the weight matrices
    of every layer not in `exclude`, and their biases too if `include_bias` (default: not, as Keras)."""

    name: ClassVar[str] = REGULARIZER_NAMES["Regularizer"]  # its config name; a subclass's from the same table

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = REGULARIZER_NAMES.get(cls.__name__, cls.__name__.lower())

    explicit: ClassVar[bool] = False  # True: penalty() is added to the loss and differentiated

    def __init__(self, strength: Strength = 0.0, include_bias: bool = False, exclude: Sequence[str] = ()) -> None:
        self.strength = strength
        self.include_bias = include_bias
        self.exclude = tuple(exclude)
        self.params: list[Tensor] = []
        self.members = len(self.strength)
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def strength(self) -> Tensor:
        """λ per member: a float64 tensor of shape [K] on the CPU."""
        return self._strength

    @strength.setter
    def strength(self, value: Strength) -> None:
        check_strength(_values(value))
        self._strength = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)
        self._shaped: dict[tuple, Tensor] = {}

    def hyperparameters(self) -> dict[str, Any]:
        """The rule's name and every argument of its constructors (this class's and its bases'), read back
        from the attributes they set, as plain data: what a checkpoint saves to build the rule again."""
        names = [
            p.name
            for cls in type(self).__mro__
            if "__init__" in vars(cls) and issubclass(cls, Regularizer)
            for p in inspect.signature(vars(cls)["__init__"]).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
        ]
        values = {name: getattr(self, name) for name in dict.fromkeys(names)}
        return {"name": self.name, **values, "strength": self.strength.tolist(), "exclude": list(self.exclude)}

    @staticmethod
    def from_hyperparameters(hp: dict[str, Any]) -> Regularizer:
        """The rule of `hyperparameters()`, unbound (`bind` it to its model)."""
        arguments = {key: value for key, value in hp.items() if key != "name"}
        return REGULARIZERS[hp["name"]](**arguments)

    def bind(self, model: MLP) -> Regularizer:
        """Select the tensors the rule acts on; one λ is every member's."""
        layers = model.linear_layers()
        unknown, names = [name for name in self.exclude if name not in layers], ", ".join(layers)
        if unknown:
            raise ValueError(f"regularizer.exclude names no layer {unknown[0]!r}; the layers are: {names}")
        if self.name != Regularizer.name and not set(layers) - set(self.exclude):
            raise ValueError(
                f"regularizer.exclude={list(self.exclude)} leaves no layer to regularize; the layers are: {names}"
            )
        if (n := len(self.strength)) not in (1, model.members):
            raise ValueError(f"regularizer.strength has {n} values; the model has {model.members} members")
        self.members = model.members
        self.strength = self.strength.expand(model.members).clone()
        self.layers = {name: layer for name, layer in layers.items() if name not in self.exclude}
        kinds = ("weight", "bias") if self.include_bias else ("weight",)
        self.params = [getattr(layer, kind) for layer in self.layers.values() for kind in kinds]
        return self

    def use_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer that steps `params` (its state may shape a proximal map; see ProxL1)."""
        self.optimizer = optimizer

    def _lam(self, like: Tensor, coefficient: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """`coefficient(λ)` (default λ itself) shaped [K, 1, …] over `like`, in float64 (as Python) cast to
        `like`'s dtype. λ itself is cast once per device, shape and dtype: the penalty needs it every step."""
        key = (like.device, like.dim())
        if key not in self._shaped:
            self._shaped[key] = self.strength.to(like.device).view(-1, *[1] * (like.dim() - 1))
        if coefficient is not None:
            return coefficient(self._shaped[key]).to(like.dtype)
        cast_key = (*key, like.dtype)
        if cast_key not in self._shaped:
            self._shaped[cast_key] = self._shaped[key].to(like.dtype)
        return self._shaped[cast_key]

    def _each(self, coefficient: Callable[[Tensor], Tensor]) -> list[Tensor]:
        """`coefficient(λ)` for `torch._foreach_*` over `self.params`: one tensor per parameter."""
        return [self._lam(p, coefficient) for p in self.params]

    def _active(self) -> bool:
        """Whether any λ is non-zero (a host-side check: no device sync)."""
        return bool(self.strength.any())

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        """The penalty per member, [K]; `dtype=torch.float64` for a reported value exact to 1e-12."""
        device = self.params[0].device if self.params else None
        return torch.zeros(self.members, device=device, dtype=dtype)

    def before_step(self, lr: float) -> None:
        """Decoupled update, applied to the weights the gradient was computed at."""

    def after_step(self, lr: float) -> None:
        """Proximal map, applied to the weights the optimizer produced."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength=[{', '.join(f'{v:g}' for v in self.strength.tolist())}])"


class L1(Regularizer):
    """Explicit L1 (lasso): objective += λ·Σ|w|; subgradient λ·sign(w). Keras' `l1(λ)`.
    Leaves weights oscillating around 0 rather than at 0: use `ProxL1` for exact zeros."""

    explicit = True

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        total = _sum_abs(self.params, dtype)
        return self._lam(total) * total


class L2(Regularizer):
    """Explicit L2 (ridge): objective += λ·Σw²; gradient 2λ·w. Keras' `l2(λ)`.
    Under plain SGD this equals `WeightDecay(2λ)` and `torch.optim.SGD(weight_decay=2λ)`."""

    explicit = True

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        total = _sum_squares(self.params, dtype)
        return self._lam(total) * total


class ElasticNet(Regularizer):
    """Explicit elastic net: objective += λ·(α·Σ|w| + (1 − α)·Σw²), α = `l1_ratio`.
    λ₁ = αλ and λ₂ = (1 − α)λ are Keras' `L1L2(l1=λ₁, l2=λ₂)`."""

    explicit = True

    def __init__(self, strength: float = 0.0, l1_ratio: float = 0.5, **kwargs) -> None:
        super().__init__(strength, **kwargs)
        if not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"regularizer.l1_ratio={l1_ratio} must be in [0, 1]")
        self.l1_ratio = float(l1_ratio)

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        total = self.l1_ratio * _sum_abs(self.params, dtype) + (1 - self.l1_ratio) * _sum_squares(self.params, dtype)
        return self._lam(total) * total


class WeightDecay(Regularizer):
    """Decoupled weight decay: w ← (1 − lr·λ)·w before every optimizer step. With Adam exactly
    `torch.optim.AdamW(weight_decay=λ)`, with SGD SGDW (Loshchilov & Hutter, 2019). `penalty()`
    reports (λ/2)·Σw², the objective term it equals under plain SGD."""

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        total = _sum_squares(self.params, dtype)
        return self._lam(total, lambda lam: 0.5 * lam) * total

    def before_step(self, lr: float) -> None:
        with torch.no_grad():
            if self._active():
                torch._foreach_mul_(self.params, self._each(lambda lam: 1.0 - lr * lam))


class _Proximal(Regularizer):
    """A proximal map of λR, in the optimizer's metric diag(D), D = √v̂ + ε, when it has one:

        w ← argmin_x  λR(x) + (1/(2η))·(x − z)ᵀ diag(D) (x − z),   z = the weights the optimizer produced

    `preconditioned`: "auto" uses D when `use_optimizer` attaches one of ADAM_FAMILY, else the plain map
    (D = 1); true requires it; false never uses it. README, "Conventions"; derivation: docs/conventions.md."""

    def __init__(self, strength: Strength = 0.0, preconditioned: str | bool = "auto", **kwargs) -> None:
        super().__init__(strength, **kwargs)
        if not (isinstance(preconditioned, bool) or preconditioned == "auto"):
            raise ValueError(f"regularizer.preconditioned={preconditioned!r} must be one of: auto, true, false")
        self.preconditioned = preconditioned
        self._metric = False  # whether after_step reads D from the optimizer: set by use_optimizer

    def use_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        super().use_optimizer(optimizer)
        adam = isinstance(optimizer, ADAM_FAMILY)
        if self.preconditioned is True and not adam:
            raise ValueError(
                f"regularizer.preconditioned=true needs an optimizer with Adam's second moment "
                f"({', '.join(c.__name__ for c in (*ADAM_FAMILY, torch.optim.AdamW))}); "
                f"{type(optimizer).__name__} is not one of them: use regularizer.preconditioned=auto or false"
            )
        self._metric = adam and self.preconditioned is not False

    def _denominators(self, tensors: Sequence[Tensor]) -> list[Tensor | None] | None:
        """D of each tensor (`proximal.adam_denominators`); None if the plain map applies."""
        if not self._metric or self.optimizer is None:
            if self.preconditioned is True:
                raise ValueError(
                    "regularizer.preconditioned=true needs the optimizer: call use_optimizer(optimizer) first"
                )
            return None
        return proximal.adam_denominators(self.optimizer, tensors)


class ProxL1(_Proximal):
    """Proximal L1: minimises loss + λ·Σ|w| (like `L1`), with exact zeros. After every step

        w ← sign(w)·max(|w| − t, 0),   t = η·λ           plain (ISTA; SGD, or preconditioned=false)
                                       t = η·λ / D,      D = √v̂ + ε   preconditioned (Adam, AdamW, NAdam)

    README, "Conventions"; see `_Proximal`."""

    penalty = L1.penalty  # λ·Σ|w|

    def after_step(self, lr: float) -> None:
        with torch.no_grad():
            if not self._active():
                return
            denominators = self._denominators(self.params)
            if denominators is None:
                proximal.soft_threshold_(self.params, self._each(lambda lam: lr * lam))  # t = η·λ
                return
            for w, d in zip(self.params, denominators):
                if d is not None:
                    proximal.preconditioned_soft_threshold_(w, self._lam(w, lambda lam: lr * lam), d)  # t = η·λ / D


class GroupLasso(_Proximal):
    """Proximal group lasso on hidden units: objective += λ·Σ_g √p_g·‖w_g‖₂. After every step

        w_g ← w_g · max(0, 1 − c / ‖w_g‖₂),   c = η·λ·√p_g      plain (SGD, preconditioned=false)

    and under Adam its proximal map in Adam's metric (`proximal.preconditioned_group_shrink_`,
    `newton_steps` Newton steps). A group g is one hidden unit's incoming weights (plus its bias if
    `include_bias`), p_g its size: a whole unit switches off at once. With `input_features`, the
    first layer's columns are groups too, shrunk after the units. README, "Conventions"."""

    newton_steps: ClassVar[int] = 12  # float32 reaches its rounding error after about 8 on random groups

    def __init__(
        self, strength: Strength = 0.0, input_features: bool = False, preconditioned: str | bool = "auto", **kwargs
    ) -> None:
        super().__init__(strength, preconditioned, **kwargs)
        self.input_features = input_features

    def bind(self, model: MLP) -> Regularizer:
        super().bind(model)
        # (weight, bias or None, the dim along which a group's entries lie; see proximal.group_norms)
        hidden = [layer for name, layer in self.layers.items() if name != "output"]
        self.groups: list[tuple[Tensor, Tensor | None, int]] = [
            (layer.weight, layer.bias if self.include_bias else None, -1) for layer in hidden
        ]
        first = next(iter(model.linear_layers()))
        if self.input_features and first in self.layers:
            self.groups.append((self.layers[first].weight, None, -2))
        return self

    def penalty(self, dtype: torch.dtype | None = None) -> Tensor:
        total = super().penalty(dtype)
        for weight, bias, dim in self.groups:
            size = weight.shape[dim] + (bias is not None)
            total = total + math.sqrt(size) * proximal.group_norms(weight, bias, dim, dtype).sum(-1)
        return self._lam(total) * total

    def after_step(self, lr: float) -> None:
        with torch.no_grad():
            if not self._active():
                return
            for weight, bias, dim in self.groups:
                size = weight.shape[dim] + (bias is not None)
                denominators = self._denominators([weight] if bias is None else [weight, bias])
                if denominators is None:
                    c = self._lam(weight, lambda lam: lr * lam * math.sqrt(size))  # noqa: B023 (called at once)
                    proximal.group_shrink_(weight, bias, dim, c)
                elif all(d is not None for d in denominators):
                    lr_root_p = lr * math.sqrt(size)
                    c = self._lam(weight, lambda lam: lr_root_p * lam)  # noqa: B023 (called at once)
                    shrink = cast(list[Tensor], denominators)  # none is None here
                    proximal.preconditioned_group_shrink_(weight, bias, dim, shrink, c, self.newton_steps)


REGULARIZERS: dict[str, type[Regularizer]] = {
    REGULARIZER_NAMES[cls.__name__]: cls for cls in (Regularizer, L1, L2, ElasticNet, WeightDecay, ProxL1, GroupLasso)
}
