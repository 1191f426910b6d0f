"""The multilayer perceptron every experiment trains, as a stack of K ≥ 1 independent members.

Member k is the ordinary network of the tensors `hidden.0.weight[k]`, …, `output.bias[k]`. Nothing
mixes members (batched matmuls, elementwise activations), so the sum of the members' losses gives
member k exactly the gradient of its own loss, and an elementwise optimizer (SGD, Adam, AdamW) over
the stacked tensors is K independent optimizers. Shapes: weights [K, out, in], biases [K, out];
inputs [n, in] (shared by every member) or [K, n, in]; outputs [K, n, out].
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.modules import module as nn_module

ACTIVATIONS: dict[str, type[nn.Module]] = dict(
    relu=nn.ReLU, tanh=nn.Tanh, gelu=nn.GELU, sigmoid=nn.Sigmoid, leaky_relu=nn.LeakyReLU
)
INITS = ("glorot_uniform", "torch_default")


class StackedLinear(nn.Module):
    """K affine maps at once: y[k] = x[k] · weight[k]ᵀ + bias[k]."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(members, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # one input shared by every member: a stride-0 view, no copy
            x = x.expand(self.weight.shape[0], *x.shape)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class MLP(nn.Module):
    """in_features → hidden[0] → … → hidden[-1] → out_features, `activation` after each hidden layer.

    Layers are named `hidden.0`, `hidden.1`, …, `output` (the names of a regularizer's `exclude`);
    `hidden=[]` is a linear (or logistic) model. The output is a logit (or a regression value).
    `init="glorot_uniform"` with zero biases is Keras' `Dense` default (the article's Keras code);
    `"torch_default"` is `nn.Linear`'s. `seeds` (one per member) draws member k's initial weights
    from its own generator, so it starts where its K = 1 run with that seed starts."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "glorot_uniform",
        members: int = 1,
        seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        for key, value, known in (("activation", activation, ACTIVATIONS), ("init", init, INITS)):
            if value not in known:
                raise ValueError(f"model.{key}={value!r} is unknown; choose one of: {', '.join(known)}")
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool):
            raise ValueError(f"model.dropout={dropout!r} is not a number")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout={dropout} must be in [0, 1)")
        is_list = isinstance(hidden, Sequence) and not isinstance(hidden, str)
        if not is_list or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in hidden):
            shown = list(hidden) if is_list else repr(hidden)
            raise ValueError(f"model.hidden={shown} must be a list of widths > 0 ([] for a linear model)")
        if dropout > 0 and members > 1:
            raise ValueError(
                f"model.dropout={dropout} with {members} stacked members: they would draw their masks from one "
                "generator and differ from their single runs; use dropout 0, or one λ and seed per run (-m)"
            )
        self.members: int = members
        self.in_features: int = in_features
        self.out_features: int = out_features
        self.widths: list[int] = list(hidden)
        self.activation_name: str = activation
        self.dropout_p: float = float(dropout)
        self.init: str = init
        widths = [in_features, *hidden]
        layers = (StackedLinear(members, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.hidden: nn.ModuleList = nn.ModuleList(layers)
        self.output: StackedLinear = StackedLinear(members, widths[-1], out_features)
        self.activation: nn.Module = ACTIVATIONS[activation]()
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.direct: bool = False  # see `direct_calls`
        self.reset_parameters(seeds)

    def reset_parameters(self, seeds: Sequence[int] | None = None) -> None:
        """Draw every member's initial weights (member k from `seeds[k]`, else the global RNG)."""
        with torch.no_grad():
            if self.output.weight.is_meta:  # `member()` loads the weights it needs
                return
            if seeds is not None and len(seeds) != self.members:
                raise ValueError(f"{len(seeds)} seeds for {self.members} members")
            for k in range(self.members):
                generator = torch.Generator().manual_seed(int(seeds[k])) if seeds is not None else None
                for layer in self.linear_layers().values():
                    fan_in, fan_out = layer.in_features, layer.out_features
                    if self.init == "glorot_uniform":
                        bound, bias_bound = math.sqrt(6.0 / (fan_in + fan_out)), 0.0
                    else:  # nn.Linear: kaiming_uniform(a=√5) for the weight, U(±1/√fan_in) for the bias
                        bound = bias_bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                    weight = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=generator)
                    bias = torch.empty(fan_out).uniform_(-bias_bound, bias_bound, generator=generator)
                    layer.weight[k].copy_(weight)
                    layer.bias[k].copy_(bias if bias_bound else torch.zeros(fan_out))

    def linear_layers(self) -> dict[str, StackedLinear]:
        """The affine layers by name, input first."""
        hidden = {f"hidden.{i}": cast(StackedLinear, layer) for i, layer in enumerate(self.hidden)}
        return hidden | {"output": self.output}

    def forward(self, x: Tensor) -> Tensor:
        direct = self.direct
        activation = self.activation.forward if direct else self.activation
        for layer in self.hidden:
            x = activation(layer.forward(x) if direct else layer(x))
            if self.dropout_p:  # no call at all without dropout: each module call costs microseconds a step
                x = self.dropout(x)
        return self.output.forward(x) if direct else self.output(x)

    @contextmanager
    def direct_calls(self) -> Iterator[bool]:
        """Within it, where no module of the model and no global hook is registered (nothing for nn.Module's
        call to run), `forward` calls each layer's `forward` itself: ~2 µs less a module call, a third of
        a small K = 1 step's Python. Yields whether it does; a hook registered meanwhile waits for the next."""
        hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
        called = (self, self.activation, self.output, *self.hidden)  # what `forward` calls (dropout: always a call)
        hooked = any(getattr(nn_module, f"_global{name}", True) for name in hooks)  # unknown: as if hooked
        direct = not (hooked or any(getattr(m, name) for m in called for name in hooks))
        vars(self)["direct"] = direct  # a plain attribute: not through nn.Module's __setattr__ checks, twice an epoch
        try:
            yield direct
        finally:
            vars(self)["direct"] = False

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member k's tensors as a K = 1 model's `state_dict()` (copies, on the CPU)."""
        return {name: tensor[k : k + 1].detach().cpu().clone() for name, tensor in self.state_dict().items()}

    def hyperparameters(self) -> dict:
        """The arguments that build this model again, as plain data (saved with checkpoints)."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "hidden": list(self.widths),
            "activation": self.activation_name,
            "dropout": self.dropout_p,
            "init": self.init,
            "members": self.members,
        }

    @classmethod
    def from_hyperparameters(cls, hp_model: dict, members: int = 1) -> MLP:
        """An `MLP` of `members` members from `hyperparameters()` (its "members" unread; absent keys: the
        defaults) on the meta device, drawing and allocating nothing: load with `load_state_dict(w, assign=True)`."""
        sizes = hp_model["in_features"], hp_model["out_features"], list(hp_model["hidden"])
        optional = {key: hp_model[key] for key in ("activation", "dropout", "init") if key in hp_model}
        with torch.device("meta"):
            return cls(*sizes, members=members, **optional)

    def member(self, k: int) -> MLP:
        """Member k as a K = 1 `MLP` on the CPU (built on the meta device: draws no random numbers)."""
        model = MLP.from_hyperparameters(self.hyperparameters())
        model.load_state_dict(self.member_state_dict(k), assign=True)
        return model
