"""Checks of a composed config, run before anything is built or trained.

Each check fails with one line naming the key, the value and what is allowed. Unknown keys and
unknown group choices are already refused by Hydra (struct mode, the config groups).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import cast

from omegaconf import DictConfig, OmegaConf

# Imported only by the checks that need them: `reglab-train --cfg job` or `--help` should not
# pay for torch and scikit-learn.

TASK_OF_LOSS = {"bce": "binary", "cross_entropy": "multiclass", "mse": "regression"}
LOSS_OF_TASK = {task: loss for loss, task in TASK_OF_LOSS.items()}


def regularizer_of_target() -> dict[str, str]:
    """`regularizer._target_` → the regularizer's name ("reglab.science.regularizers.L1" → "l1")."""
    from reglab.science.regularizers import REGULARIZERS

    return {f"{cls.__module__}.{cls.__name__}": name for name, cls in REGULARIZERS.items()}


TOP_LEVEL_KEYS = {
    *("data", "model", "regularizer", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "sweep"),
    *("name", "seed", "loss", "sparsity_threshold", "optimized_metric", "force", "retries", "tags", "cpu_threads"),
}


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


# Keys that may hold a list: the stacked members of one run (`reglab.fit`).
MEMBER_KEYS = ("regularizer.strength", "seed")


def member_configs(cfg: DictConfig) -> list[DictConfig]:
    """One config per member: the product of the `MEMBER_KEYS` lists, each value set as a scalar."""
    axes = {}
    for key in MEMBER_KEYS:
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_list(value) or isinstance(value, list):
            _require(len(value) > 0, f"{key}=[] is an empty list; give at least one value")
            axes[key] = list(value)
    members = []
    for combination in itertools.product(*axes.values()):
        member = copy.deepcopy(cfg)
        for key, value in zip(axes, combination):
            OmegaConf.update(member, key, value, merge=False)
        members.append(member)
    return members


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first problem found, in any member."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        for member in member_configs(cfg):
            _validate_one(member)
    except OmegaConfBaseException as e:  # a key removed (~trainer.max_epochs) or a group set to null
        raise ConfigError(_one_line(e)) from None


def _validate_one(cfg: DictConfig) -> None:
    from reglab.science import datasets
    from reglab.science.model import ACTIVATIONS, INITS
    from reglab.science.regularizers import REGULARIZERS

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
    names = regularizer_of_target()
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
    _require(
        names[reg._target_] == "none" or bool(set(layers) - set(reg.exclude)),
        f"regularizer.exclude={list(reg.exclude)} leaves no layer to regularize; the layers are: {', '.join(layers)}",
    )

    opt = cfg.optimizer
    lr = _number(cfg, "optimizer.lr")
    _require(lr > 0 and math.isfinite(lr), f"optimizer.lr={lr:g} must be > 0")
    _require(
        "weight_decay" not in opt,
        "optimizer.weight_decay would hide an L2 penalty in the optimizer; use regularizer=weight_decay (AdamW, SGDW) or regularizer=l2",
    )
    if "momentum" in opt:
        _require(_number(cfg, "optimizer.momentum") >= 0, f"optimizer.momentum={opt.momentum} must be >= 0")
        _require(not opt.get("nesterov") or opt.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0")

    unknown = sorted(set(cfg) - TOP_LEVEL_KEYS)
    _require(not unknown, f"{unknown[0] if unknown else ''} is not a key of the config: check its spelling")
    for group in ("model", "regularizer", "optimizer", "scheduler", "trainer"):
        if cfg.get(group):
            _check_arguments(cfg[group], group)

    epochs = cfg.trainer.max_epochs
    _require(isinstance(epochs, int) and epochs >= 1, f"trainer.max_epochs={epochs!r} must be an integer >= 1")
    _require(isinstance(cfg.seed, int), f"seed={cfg.seed!r} must be an integer")
    threshold = _number(cfg, "sparsity_threshold")
    _require(threshold >= 0, f"sparsity_threshold={threshold:g} must be >= 0")
    retries = cfg.get("retries", 0)
    _require(isinstance(retries, int) and retries >= 0, f"retries={retries!r} must be an integer >= 0")
    _check_paths(cfg)
    _check_memory(cfg)


# What a run logs, so that a metric a sweep optimizes names something that exists.
METRIC = re.compile(r"^(train|val|test)/(loss|acc|mse|r2|gap|penalty|objective)$|^weights/\S+$")


def _check_paths(cfg: DictConfig) -> None:
    """`name` and the log root may not climb out of the log root; an absolute path is the user's choice."""
    name = str(cfg.name)
    _require(
        name.strip() != "" and "/" not in name and "\\" not in name and name not in (".", ".."),
        f"name={name!r} must be a plain name (it is a directory under logs/multiruns/)",
    )
    log_dir = OmegaConf.select(cfg, "paths.log_dir")
    _require(isinstance(log_dir, str) and log_dir.strip() != "", f"paths.log_dir={log_dir!r} must name a directory")
    _require(
        Path(log_dir).is_absolute() or ".." not in Path(log_dir).parts,
        f"paths.log_dir={log_dir} climbs out of the launch directory with '..'; give an absolute path instead",
    )
    metric = cfg.get("optimized_metric")
    _require(
        not metric or bool(METRIC.match(str(metric))),
        f"optimized_metric={metric} names no logged value; use e.g. val/acc, val/loss, val/r2, val/gap or weights/zero_frac",
    )


def _check_memory(cfg: DictConfig) -> None:
    """Refuse a data set or model that cannot fit in this machine's memory, with the estimate."""
    import os

    n = OmegaConf.select(cfg, "data.n_samples") or 0
    d = OmegaConf.select(cfg, "data.n_features") or 2
    widths = [d, *[int(w) for w in cfg.model.hidden], 1]
    members = 1
    for key in MEMBER_KEYS:
        value = OmegaConf.select(cfg, key)
        members *= len(value) if OmegaConf.is_list(value) else 1
    # float64 generation and split, float32 tensors; per member weights with Adam's two moments and grads
    data_bytes = 40 * int(n) * int(d)
    model_bytes = 16 * members * sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = data_bytes + model_bytes
    _require(
        need < 0.8 * total,
        f"data.n_samples={n} and the model need about {need / 2**30:.1f} GiB; this machine has {total / 2**30:.1f} GiB",
    )


def _check_arguments(node: DictConfig, group: str) -> None:
    """Every key of a `_target_` node must be an argument of the target: nothing is silently ignored."""
    import inspect

    from hydra.utils import get_object

    target = get_object(node._target_)
    allowed: set[str] = set()
    for fn in (
        [vars(c)["__init__"] for c in inspect.getmro(target) if "__init__" in vars(c)]
        if inspect.isclass(target)
        else [target]
    ):
        parameters = inspect.signature(fn).parameters.values()
        allowed |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # no **kwargs passed further up
    # the keys of a config node are strings
    unknown = sorted(k for k in cast("Iterable[str]", node) if not k.startswith("_") and k not in allowed)
    _require(not unknown, f"{group}.{unknown[0] if unknown else ''} is not an argument of {node._target_}")


def regularizer_name(cfg: DictConfig) -> str:
    return regularizer_of_target()[cfg.regularizer._target_]


def task_of(cfg: DictConfig) -> str:
    from reglab.science import datasets

    return datasets.TASKS[cfg.data.name]


def check_jobs(
    overrides: list[str],
    compose: Callable[[list[str]], DictConfig],
    config_dir: str,
    build: Callable[[DictConfig], object] | None = None,
) -> None:
    """Compose and validate every job a sweep's overrides describe, before any of them runs, so that
    a bad value anywhere in a sweep list (or at either end of an Optuna interval) is one line and
    costs no job. `overrides` are Hydra's own (the sweeper's params, then the command line's); each
    value of a sweep list is checked against the first value of the others. `build(cfg)`, if
    given, builds each job in memory (`reglab.fit.preflight`) after its checks."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_group_choices(overrides, config_dir)
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(_one_line(e)) from None
    base: dict[str, str] = {}  # the first value of every key (later overrides of a key win)
    variants: dict[str, list[str]] = {}  # the other values of the swept keys
    for override in parsed:
        key = override.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            continue
        if not override.is_sweep_override():
            base[key], variants[key] = override.input_line or "", []
            continue
        if override.is_discrete_sweep():
            values = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            value = override.value()
            ends = (value.start, value.end) if isinstance(value, IntervalSweep) else ()
            values = [f"{key}={v}" for v in ends]
        if values:
            base[key], variants[key] = values[0], values[1:]
    jobs = [list(base.values())]
    jobs += [[v if k == key else line for k, line in base.items()] for key, others in variants.items() for v in others]
    for job in jobs:
        try:
            cfg = compose(job)
        except (HydraException, OmegaConfBaseException, ValueError) as e:  # ValueError: a group set to null
            raise ConfigError(_one_line(e)) from None
        validate(cfg)
        if build is not None:  # everything the job needs, built in memory: a constructor's own checks
            build(cfg)


def _check_group_choices(overrides: list[str], config_dir: str) -> None:
    """`group=name` must name a file of configs/<group>/; all names of a sweep list are checked."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+").partition("=")
        group = Path(config_dir, key)
        if not sep or "." in key or "/" in key or not group.is_dir() or "(" in value:
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for name in value.split(","):
            _require(
                name in options or name == "null",
                f"{key}={name} is not a {key} config; choose one of: {', '.join(options)}",
            )


def one_line_error(error: BaseException) -> str:
    """An exception said in one line: Hydra's instantiation errors name the config key they came from."""
    cause: BaseException = error
    while cause.__cause__ is not None and type(cause).__name__ == "InstantiationException":
        cause = cause.__cause__
    text = " ".join(str(cause).split())
    key = getattr(error, "full_key", None) or ""
    return f"{key}: {text}" if key and key not in text else text


def hydra_error_line(text: str) -> str:
    """Hydra's multi-line composition error messages, said in one line."""
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return f"{group}={name} is not a {group} config; choose one of: {', '.join(options)}"
    return _one_line(Exception(text))


def _one_line(error: Exception) -> str:
    """Hydra's multi-line composition errors, said in one line."""
    text = str(error)
    if text.startswith("Could not override"):
        key = text.split("'")[1]
        return f"{key} is not a key of the config: check its spelling"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("full_key", "object_type"))
    ]
    return " ".join(lines)
