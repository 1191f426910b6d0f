"""Checks of a composed config, run before anything is built or trained.

Each check fails with one line naming the key, the value and what is allowed. Unknown keys and
unknown group choices are already refused by Hydra (struct mode, the config groups).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from reglab.science import datasets
from reglab.science.model import ACTIVATIONS, INITS
from reglab.science.regularizers import REGULARIZERS

TASK_OF_LOSS = {"bce": "binary", "cross_entropy": "multiclass", "mse": "regression"}
LOSS_OF_TASK = {task: loss for loss, task in TASK_OF_LOSS.items()}


class ConfigError(ValueError):
    """A user mistake in the config: reported in one line, never as a traceback."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _number(cfg: DictConfig, key: str) -> float:
    value = OmegaConf.select(cfg, key)
    _require(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        f"{key}={value!r} is not a number",
    )
    return float(value)


def _class_name(node: DictConfig) -> str:
    return str(node.get("_target_", "")).rsplit(".", 1)[-1]


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first problem found."""
    data = cfg.data
    datasets_known = ", ".join(datasets.GENERATORS)
    _require(
        data.name in datasets.GENERATORS, f"data.name={data.name!r} is not a data set; choose one of: {datasets_known}"
    )
    dataset_kwargs = {
        k: v for k, v in data.items() if k not in ("_target_", "name", "split", "batch_size", "label_noise", "seed")
    }
    try:
        datasets.check_arguments(data.name, dataset_kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for key in ("n_samples", "n_features", "n_informative"):
        if key in data:
            _require(isinstance(data[key], int) and data[key] >= 1, f"data.{key}={data[key]!r} must be an integer >= 1")
    if "noise" in data:
        _require(_number(cfg, "data.noise") >= 0, f"data.noise={data.noise} must be >= 0")
    task = datasets.TASKS[data.name]

    split = data.split
    _require(
        isinstance(split, Sequence) and len(split) == 3 and all(isinstance(f, (int, float)) for f in split),
        f"data.split={OmegaConf.to_object(split) if OmegaConf.is_config(split) else split!r} must be three fractions [train, val, test]",
    )
    _require(
        all(f >= 0 for f in split) and sum(split) <= 1 + 1e-9,
        f"data.split={list(split)} must be fractions >= 0 that sum to at most 1",
    )
    _require(split[0] > 0, f"data.split={list(split)} leaves no training set: the train fraction must be > 0")
    _require(split[1] > 0, f"data.split={list(split)} leaves no validation set: the val fraction must be > 0")
    n = data.get("n_samples")
    if n is not None:
        _require(
            round(split[0] * n) >= 2,
            f"data.split={list(split)} with data.n_samples={n} leaves fewer than 2 training samples",
        )
        _require(
            round(split[1] * n) >= 1, f"data.split={list(split)} with data.n_samples={n} leaves no validation sample"
        )
    label_noise = _number(cfg, "data.label_noise")
    _require(0 <= label_noise < 1, f"data.label_noise={label_noise} must be in [0, 1)")
    _require(
        task != "regression" or label_noise == 0,
        f"data.label_noise={label_noise} needs class labels; data set {data.name!r} is a regression",
    )
    bs = data.batch_size
    _require(
        bs is None or (isinstance(bs, int) and bs >= 1),
        f"data.batch_size={bs!r} must be an integer >= 1, or null for full batch",
    )

    loss = cfg.loss
    _require(
        loss == "auto" or loss in TASK_OF_LOSS,
        f"loss={loss!r} is not a loss; choose one of: auto, {', '.join(TASK_OF_LOSS)}",
    )
    _require(
        loss in ("auto", LOSS_OF_TASK[task]),
        f"loss={loss} is for {TASK_OF_LOSS.get(loss)} tasks, but data set {data.name!r} is {task}: use loss={LOSS_OF_TASK[task]} or loss=auto",
    )
    metric = cfg.get("optimized_metric")
    if metric:
        classification_only = metric.split("/")[-1] == "acc"
        _require(
            not (classification_only and task == "regression"),
            f"optimized_metric={metric} needs a classification data set; {data.name!r} is a regression: use val/loss or val/r2",
        )

    model = cfg.model
    hidden = model.hidden
    _require(
        OmegaConf.is_list(hidden) and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in hidden),
        f"model.hidden={OmegaConf.to_object(hidden) if OmegaConf.is_config(hidden) else hidden!r} must be a list of widths > 0 ([] for a linear model)",
    )
    _require(
        model.activation in ACTIVATIONS,
        f"model.activation={model.activation!r} is unknown; choose one of: {', '.join(ACTIVATIONS)}",
    )
    dropout = _number(cfg, "model.dropout")
    _require(0 <= dropout < 1, f"model.dropout={dropout} must be in [0, 1)")
    _require(model.init in INITS, f"model.init={model.init!r} is unknown; choose one of: {', '.join(INITS)}")

    reg = cfg.regularizer
    names = {f"{cls.__module__}.{cls.__name__}": name for name, cls in REGULARIZERS.items()}
    _require(
        reg._target_ in names,
        f"regularizer._target_={reg._target_!r} is not a regularizer; choose regularizer= one of: {', '.join(REGULARIZERS)}",
    )
    strength = _number(cfg, "regularizer.strength")
    _require(
        strength >= 0 and math.isfinite(strength), f"regularizer.strength={strength:g} is negative; λ must be >= 0"
    )
    _require(
        names[reg._target_] != "none" or strength == 0,
        f"regularizer.strength={strength:g} with regularizer=none would be ignored; use λ=0 or another regularizer",
    )
    if "l1_ratio" in reg:
        _require(
            0 <= _number(cfg, "regularizer.l1_ratio") <= 1, f"regularizer.l1_ratio={reg.l1_ratio} must be in [0, 1]"
        )
    layers = [f"hidden.{i}" for i in range(len(hidden))] + ["output"]
    for name in reg.exclude:
        _require(name in layers, f"regularizer.exclude names no layer {name!r}; the layers are: {', '.join(layers)}")

    opt = cfg.optimizer
    lr = _number(cfg, "optimizer.lr")
    _require(lr > 0 and math.isfinite(lr), f"optimizer.lr={lr:g} must be > 0")
    if "momentum" in opt:
        _require(_number(cfg, "optimizer.momentum") >= 0, f"optimizer.momentum={opt.momentum} must be >= 0")
        _require(not opt.get("nesterov") or opt.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0")

    epochs = cfg.trainer.max_epochs
    _require(isinstance(epochs, int) and epochs >= 1, f"trainer.max_epochs={epochs!r} must be an integer >= 1")
    _require(isinstance(cfg.seed, int), f"seed={cfg.seed!r} must be an integer")
    threshold = _number(cfg, "sparsity_threshold")
    _require(threshold >= 0, f"sparsity_threshold={threshold:g} must be >= 0")


def regularizer_name(cfg: DictConfig) -> str:
    return {f"{c.__module__}.{c.__name__}": n for n, c in REGULARIZERS.items()}[cfg.regularizer._target_]


def task_of(cfg: DictConfig) -> str:
    return datasets.TASKS[cfg.data.name]
