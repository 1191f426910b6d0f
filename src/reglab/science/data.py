"""What every data set is, whatever made it: a `Dataset` (a generator's arrays or a table read by
`reglab.science.files`) and its `Splits` (split and standardised by `reglab.science.datasets.prepare`).
Plain data, imported by both modules: neither imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression"]


@dataclass
class Dataset:
    x: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) int64 class labels, or float32 targets for regression
    task: Task
    n_classes: int = 0  # 0 for regression
    support: list[int] | None = None  # indices of the inputs that carry signal, when known
    coef: list[float] | None = None  # the true linear coefficients (sparse_regression)
    feature_names: list[str] | None = None  # the inputs' names, where they have some (a table's columns)
    encoding: dict[str, Any] | None = None  # raw rows -> inputs, classes -> labels (`files.encode`), as plain data
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None  # (train rows, val rows) that `data.fold` picks
    source: list[dict[str, Any]] | None = None  # path, size and sha256 of the files read
    rows: Any = None  # a table's rows as read (a DataFrame of its feature and target columns), which x and y encode


@dataclass
class Splits:
    """Standardised train/val/test arrays; statistics from the training split only."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    task: Task
    n_classes: int
    support: list[int] | None = None
    coef: list[float] | None = None
    flipped: int = 0  # number of training labels flipped by label noise
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.ones(0))
    y_mean: float = 0.0  # a regression's targets: y_std = (y - y_mean) / y_std
    y_std: float = 1.0
    feature_names: list[str] | None = None
    encoding: dict[str, Any] | None = None
    source: list[dict[str, Any]] | None = None
    rows: Any = None  # the data set's raw rows (a table's), shared, not split: `index` picks each split's
    index: dict[str, np.ndarray] = field(default_factory=dict)  # each split's rows of the data set, in order

    def input_transform(self) -> dict[str, Any]:
        """What `reglab.load_run` needs to take raw rows and give back labels or values, as plain data."""
        out: dict[str, Any] = {"mean": self.mean.tolist(), "std": self.std.tolist()}
        if self.task == "regression":
            out |= {"target_mean": float(self.y_mean), "target_std": float(self.y_std)}
        return out | ({"encoding": self.encoding} if self.encoding is not None else {})


SPLIT_NAMES = ("train", "val", "test")
