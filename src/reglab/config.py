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
        _validate_stack(cfg)
        for member in member_configs(cfg):
            _validate_one(member)
    except OmegaConfBaseException as e:  # a key removed (~trainer.max_epochs) or a group set to null
        key = getattr(e, "full_key", None)
        if key and ("not in struct" in str(e) or "Missing" in type(e).__name__):
            raise ConfigError(f"{key} is missing: it was removed or left unset, and the run needs it") from None
        raise ConfigError(_one_line(e)) from None


def _validate_stack(cfg: DictConfig) -> None:
    """The rules about the whole stack of members (lists in `MEMBER_KEYS`), before any member's."""
    chunk = OmegaConf.select(cfg, "sweep.chunk")
    _require(
        chunk is None or (isinstance(chunk, int) and not isinstance(chunk, bool) and chunk >= 1),
        f"sweep.chunk={chunk!r} must be an integer >= 1, or null for all members at once",
    )
    path = OmegaConf.select(cfg, "sweep.path")
    _require(isinstance(path, bool), f"sweep.path={path!r} must be true or false")
    _require(
        not path or OmegaConf.is_list(OmegaConf.select(cfg, "regularizer.strength")),
        "sweep.path=true needs a list of λ: regularizer.strength=[...]",
    )
    _check_memory(cfg)


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
        strength >= 0 and math.isfinite(strength),
        f"regularizer.strength={strength:g} is {'negative' if strength < 0 else 'not finite'}; λ must be a number >= 0",
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
        _require(
            opt.get("nesterov") is not True or opt.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0"
        )

    unknown = sorted(set(cfg) - TOP_LEVEL_KEYS)
    _require(not unknown, f"{unknown[0] if unknown else ''} is not a key of the config: check its spelling")
    for group in ("model", "regularizer", "optimizer", "scheduler", "trainer"):
        if cfg.get(group):
            _check_arguments(cfg[group], group)
    for group in ("callbacks", "logger"):  # groups of named `_target_` nodes
        for key, node in (cfg.get(group) or {}).items():
            if OmegaConf.is_dict(node) and "_target_" in node:
                _check_arguments(node, f"{group}.{key}")
    _check_types(data, "data", datasets.GENERATORS[data.name], f"data set {data.name!r}")

    epochs = cfg.trainer.max_epochs
    _require(isinstance(epochs, int) and epochs >= 1, f"trainer.max_epochs={epochs!r} must be an integer >= 1")
    _require(isinstance(cfg.seed, int) and not isinstance(cfg.seed, bool), f"seed={cfg.seed!r} must be an integer")
    _require(isinstance(cfg.get("force", False), bool), f"force={cfg.get('force')!r} must be true or false")
    threshold = _number(cfg, "sparsity_threshold")
    _require(threshold >= 0, f"sparsity_threshold={threshold:g} must be >= 0")
    retries = cfg.get("retries", 0)
    _require(
        isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0,
        f"retries={retries!r} must be an integer >= 0",
    )
    _check_paths(cfg)


# What a run logs, so that a metric a sweep optimizes names something that exists.
METRIC = re.compile(r"^(train|val|test)/(loss|acc|mse|r2|gap|penalty|objective)$|^weights/\S+$")


def _check_paths(cfg: DictConfig) -> None:
    """`name` and the log root may not climb out of the log root; an absolute path is the user's choice."""
    name = str(cfg.name)
    _require(
        name.strip() != "" and "/" not in name and "\\" not in name and name not in (".", ".."),
        f"name={name!r} must be a plain name (it is a directory under logs/multiruns/)",
    )
    paths = cfg.get("paths")
    _require(OmegaConf.is_dict(paths) and "log_dir" in paths, "paths.log_dir is missing: it names the log root")
    for key in cast("Iterable[str]", paths):
        if OmegaConf.is_interpolation(paths, key):  # paths.output_dir: Hydra's run directory
            continue
        value = paths[key]
        _require(isinstance(value, str) and value.strip() != "", f"paths.{key}={value!r} must name a directory")
        _require(
            Path(value).is_absolute() or ".." not in Path(value).parts,
            f"paths.{key}={value} climbs out of the launch directory with '..'; give an absolute path instead",
        )
    metric = cfg.get("optimized_metric")
    _require(
        not metric or bool(METRIC.match(str(metric))),
        f"optimized_metric={metric} names no logged value; use e.g. val/acc, val/loss, val/r2, val/gap or weights/zero_frac",
    )


def _check_memory(cfg: DictConfig) -> None:
    """Refuse a data set or model that cannot fit in this machine's memory, with the estimate: for
    the members trained in one fit (`sweep.chunk` of them at most), before anything is allocated."""
    import os

    def count(key: str, default: int) -> int | None:  # None: not a number (the member checks say so)
        value = OmegaConf.select(cfg, key, default=default)
        if value is None:
            return default
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return max(int(value), 0) if ok else None

    n, d = count("data.n_samples", 0), count("data.n_features", 2)
    hidden = OmegaConf.select(cfg, "model.hidden")
    if n is None or d is None or not OmegaConf.is_list(hidden):
        return
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in hidden):
        return
    widths = [d, *[max(int(w), 0) for w in hidden], 1]
    sizes = {key: len(v) if OmegaConf.is_list(v) else 1 for key in MEMBER_KEYS for v in [OmegaConf.select(cfg, key)]}
    members = sizes["regularizer.strength"] * sizes["seed"]
    chunk = OmegaConf.select(cfg, "sweep.chunk")
    if isinstance(chunk, int) and chunk >= 1:
        members = min(members, chunk)
    seeds = min(sizes["seed"], members)  # a data set per distinct seed
    # Data: float64 generation and split, float32 tensors. Model, per member and weight: the weights,
    # their gradients, Adam's two moments, the preflight's copy and a checkpoint's serialised copy.
    # Activations: a whole split evaluated at once.
    data_bytes = 40 * n * d * seeds
    model_bytes = 40 * members * sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    activation_bytes = 8 * members * n * sum(widths[1:])
    need = data_bytes + model_bytes + activation_bytes
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need < 0.8 * total:
        return
    shown = OmegaConf.select(cfg, "data.n_samples")
    what = f"data.n_samples={shown:g}" if isinstance(shown, float) else f"data.n_samples={shown}"
    raise ConfigError(
        f"{what}, model.hidden={[int(w) for w in hidden]} and {members} member(s) need about "
        f"{need / 2**30:.1f} GiB of memory (data {data_bytes / 2**30:.1f}, model {model_bytes / 2**30:.1f}, "
        f"activations {activation_bytes / 2**30:.1f}); this machine has {total / 2**30:.1f} GiB"
    )


def _check_arguments(node: DictConfig, group: str) -> None:
    """Every key of a `_target_` node must be an argument of the target, of the type its signature
    declares: nothing is silently ignored, and a constructor's own annotations are its rules."""
    import inspect

    from hydra.utils import get_object

    try:
        target = get_object(node._target_)
    except Exception as e:  # ImportError, AttributeError: Hydra's _locate
        first = " ".join(str(e).split())
        raise ConfigError(f"{group}._target_={node._target_} cannot be imported: {first}") from None
    allowed: set[str] = set()
    for fn in (
        [vars(c)["__init__"] for c in inspect.getmro(target) if "__init__" in vars(c)]
        if inspect.isclass(target)
        else [target]
    ):
        parameters = inspect.signature(fn).parameters.values()
        allowed |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        _check_types(node, group, fn, node._target_)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # no **kwargs passed further up
    # the keys of a config node are strings
    unknown = sorted(k for k in cast("Iterable[str]", node) if not k.startswith("_") and k not in allowed)
    _require(not unknown, f"{group}.{unknown[0] if unknown else ''} is not an argument of {node._target_}")


def _check_types(node: DictConfig, group: str, fn: Callable, source: str) -> None:
    """Each value of `node` that `fn` takes must have the type `fn`'s annotation declares (where it
    is plain: bool, int, float, str, None, a Literal, a fixed-length tuple, or a union of them)."""
    import inspect
    import typing

    try:
        hints = typing.get_type_hints(fn)
        parameters = inspect.signature(fn).parameters
    except Exception:  # an annotation that does not resolve: the constructor checks for itself
        return
    for key in cast("Iterable[str]", node):
        if key.startswith("_") or key not in hints or key not in parameters or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=False)
        if value is None and parameters[key].default is None:
            continue
        if _fits(value, hints[key]) is False:
            shown = value if isinstance(value, (list, tuple)) else repr(value)
            raise ConfigError(f"{group}.{key}={shown} must be {_describe(hints[key])} (from {source})")


def _fits(value: object, hint: object) -> bool | None:
    """Whether `value` has the type `hint`; None where the annotation is not plain enough to tell."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        results = [_fits(value, a) for a in args]
        return True if True in results else None if None in results else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple and args and Ellipsis not in args:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return False
        results = [_fits(v, a) for v, a in zip(value, args)]
        return False if False in results else True if all(results) else None
    return None


def _describe(hint: object) -> str:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if _fits(None, a) is not None or typing.get_origin(a) is not None]
        return " or ".join(dict.fromkeys(p for p in parts if p)) or str(hint)
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} values"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, "")  # type: ignore[call-overload]


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
    config_name: str = "train",
    group_options: Callable[[str], list[str]] | None = None,
) -> None:
    """Compose and validate every job a sweep's overrides describe, before any of them runs, so that
    a bad value anywhere in a sweep list (or at either end of an Optuna interval) is one line and
    costs no job. `overrides` are Hydra's own (the sweeper's params, then the command line's); each
    value of a sweep list is checked against the first value of the others. The sweeper's params
    of the composed config (an experiment's grid, an Optuna search space) are read here too, so the
    command line alone is enough. `build(cfg)`, if given, builds each job in memory
    (`reglab.fit.preflight`) after its checks."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_group_choices(overrides, config_dir, group_options)
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(_one_line(e)) from None
    jobs = _jobs(parsed)
    # The first job with Hydra's own config: the sweeper's params (an experiment's grid, an Optuna
    # search space) may add jobs; without params it is the first job's config, composed once.
    first, params = _compose_with_sweeper(jobs[0], parsed, config_name)
    if params:
        try:
            parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parsed
        except HydraException as e:
            raise ConfigError(f"hydra.sweeper.params: {_one_line(e)}") from None
        _check_fixed_grid(parsed, params)
        jobs, first = _jobs(parsed), None
    for i, job in enumerate(jobs):
        try:
            cfg = first if i == 0 and first is not None else compose(job)
        except (HydraException, OmegaConfBaseException, ValueError) as e:  # ValueError: a group set to null
            raise ConfigError(_one_line(e)) from None
        validate(cfg)
        if build is not None:  # everything the job needs, built in memory: a constructor's own checks
            build(cfg)


def _jobs(parsed: list) -> list[list[str]]:
    """The jobs to check: the first value of every key, then each other value of a sweep list (or
    the other end of an interval) with the first value of the others."""
    from hydra.core.override_parser.types import IntervalSweep

    base: dict[str, str] = {}  # the first value of every key (later overrides of a key win)
    variants: dict[str, list[str]] = {}  # the other values of the swept keys
    for override in parsed:
        key = override.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            continue
        if not override.is_sweep_override():
            base[key], variants[key] = override.input_line or f"{key}={override.get_value_element_as_str()}", []
            continue
        if override.is_discrete_sweep():
            values = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            value = override.value()
            _check_interval(override)
            ends = (value.start, value.end) if isinstance(value, IntervalSweep) else ()
            values = [f"{key}={v}" for v in ends]
        if values:
            base[key], variants[key] = values[0], values[1:]
    jobs = [list(base.values())]
    jobs += [[v if k == key else line for k, line in base.items()] for key, others in variants.items() for v in others]
    return jobs


def _compose_with_sweeper(job: list[str], parsed: list, config_name: str) -> tuple[DictConfig | None, dict[str, str]]:
    """The config of `job` (without its `hydra` node) and the sweeper's params, with the sweeper's
    own settings checked; (None, {}) where Hydra is not initialized or the job does not compose."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    if not GlobalHydra.instance().is_initialized():
        return None, {}
    settings = [o.input_line for o in parsed if o.get_key_element().startswith("hydra") and o.input_line]
    try:
        cfg = compose(config_name=config_name, overrides=[*job, *settings], return_hydra_config=True)
    except Exception:  # composing the job again says what is wrong, in one line
        return None, {}
    sweeper = cfg.hydra.sweeper
    if "optuna" in str(sweeper.get("_target_", "")).lower():
        _check_optuna(sweeper)
    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, params


def _check_optuna(sweeper: DictConfig) -> None:
    trials = sweeper.get("n_trials")
    _require(
        isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1,
        f"hydra.sweeper.n_trials={trials!r} must be an integer >= 1",
    )
    jobs = sweeper.get("n_jobs")
    _require(
        isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 1,
        f"hydra.sweeper.n_jobs={jobs!r} must be an integer >= 1",
    )
    direction = sweeper.get("direction")
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    _require(
        all(str(d).lower() in ("minimize", "maximize") for d in directions),
        f"hydra.sweeper.direction={direction} must be minimize or maximize (or a list of them)",
    )


def _check_fixed_grid(parsed: list, params: dict[str, str]) -> None:
    """A command-line value for a key the config sweeps (an experiment's grid) would replace the
    whole sweep with that one value, silently: refuse it, and say how to sweep it or run it alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept = {}
    for key, value in params.items():
        (override,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
        if override.is_sweep_override():
            swept[key] = value
    for override in parsed:
        key = override.get_key_element()
        if key in swept and not override.is_sweep_override():
            line = override.input_line or f"{key}={override.get_value_element_as_str()}"
            value = line.split("=", 1)[1]
            grid = swept[key].replace(" ", "")
            other = f"sweep it with the grid ({key}={grid},{value})" if "(" not in grid else f"search another range ({key}=interval(low,high))"  # fmt: skip
            raise ConfigError(
                f"{key}={value} would replace the config's sweep {key}={grid} (hydra.sweeper.params) with one "
                f"value; {other}, or run it alone on purpose ({key}=choice({value}))"
            )


def _check_interval(override: object) -> None:
    """An interval of a search space (Optuna) as its sampler will take it: low <= high, low > 0 on a
    log scale. Built by the Optuna sweeper's own function (a dependency of reglab)."""
    from hydra.core.override_parser.types import IntervalSweep, Override

    assert isinstance(override, Override)
    key, value = override.get_key_element(), override.value()
    if not isinstance(value, IntervalSweep):
        return
    shown = override.input_line or key
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    try:
        create_optuna_distribution_from_override(override)
    except (ValueError, AssertionError, NotImplementedError) as e:
        raise ConfigError(f"{shown}: {' '.join(str(e).split())} (from optuna)") from None


def _check_group_choices(overrides: list[str], config_dir: str, group_options: Callable[[str], list[str]] | None = None) -> None:  # fmt: skip
    """`group=name` must name a config of that group (a file of configs/<group>/, or of any
    directory on Hydra's search path with `group_options`); all names of a sweep list are checked."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or "." in key or "/" in key or "(" in value:
            continue
        if group_options is not None:
            options = sorted(group_options(key))
        else:
            group = Path(config_dir, key)
            options = sorted(p.stem for p in group.glob("*.yaml")) if group.is_dir() else []
        if not options:  # not a config group
            continue
        for name in value.split(","):
            _require(
                name in options,
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
