"""The multilayer perceptron every experiment trains."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}
INITS = ("glorot_uniform", "torch_default")


class MLP(nn.Module):
    """in_features → hidden[0] → … → hidden[-1] → out_features, `activation` after each hidden layer.

    Layers are named `hidden.0`, `hidden.1`, …, `output`: these are the names a regularizer's
    `exclude` list refers to. `hidden=[]` is a linear (or logistic) model. The output is a logit
    (or a regression value); the loss applies the sigmoid or softmax.

    `init="glorot_uniform"` with zero biases is Keras' `Dense` default, so a model here starts
    from the same distribution as the article's Keras code; `"torch_default"` keeps `nn.Linear`'s.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: list[int] | tuple[int, ...] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "glorot_uniform",
    ) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.output = nn.Linear(widths[-1], out_features)
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if init == "glorot_uniform":
            for layer in self.linear_layers().values():
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def linear_layers(self) -> dict[str, nn.Linear]:
        """The affine layers by name, input first."""
        layers = {f"hidden.{i}": cast(nn.Linear, layer) for i, layer in enumerate(self.hidden)}
        layers["output"] = self.output
        return layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = self.dropout(self.activation(layer(x)))
        return self.output(x)
