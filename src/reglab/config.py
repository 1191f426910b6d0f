"""The rules of a composed config that no single constructor sees, each failing in one line that
names the key, the value and what is allowed. Light (no torch, no scikit-learn): they run before
Hydra makes the run directory. The constructors check their own arguments when the preflight builds
the stack (`reglab.preflight`), and a `_target_` node's keys and types come from its signature
(`check_targets`, `reglab.schema`)."""

from __future__ import annotations

import copy
import math
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import cast

from omegaconf import DictConfig, OmegaConf

import reglab.science.memory as memory
from reglab.errors import ConfigError, one_line, require, shown
from reglab.members import MEMBER_KEYS, member_axes, regularizer_name
from reglab.schema import check_arguments, check_types
from reglab.science.conventions import check_strength, require_int

# The package's own configs: a link to the repository's configs/, shipped in the wheel as package data.
CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
# A short random suffix (hydra.run.dir): two runs started in the same second get different directories.
OmegaConf.register_new_resolver("run_suffix", lambda: secrets.token_hex(3), use_cache=True, replace=True)
TOP_LEVEL_KEYS = {
    *("data", "model", "regularizer", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "sweep"),
    *("name", "seed", "sparsity_threshold", "optimized_metric", "force", "retries", "tags", "cpu_threads"),
    "report",
}


def _number(cfg: DictConfig, key: str) -> float:
    value = OmegaConf.select(cfg, key)
    require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{key}={value!r} is not a number")
    return float(value)


def _is_fraction(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first problem found, in any member. The first member is checked
    whole; the others differ only in their λ and seed, and only those are checked again."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        _validate_stack(cfg)
        axes = member_axes(cfg)
        member = copy.deepcopy(cfg) if axes else cfg
        for key, values in axes.items():
            OmegaConf.update(member, key, values[0], merge=False)
        _validate_one(member)
        _check_member_values(member)
        for key, values in axes.items():
            for value in values[1:]:
                OmegaConf.update(member, key, value, merge=False)
                _check_member_values(member)
            OmegaConf.update(member, key, values[0], merge=False)
    except OmegaConfBaseException as e:  # a key removed (~trainer.max_epochs) or a group set to null
        missing = getattr(e, "full_key", None)
        if missing and ("not in struct" in str(e) or "Missing" in type(e).__name__):
            raise ConfigError(f"{missing} is missing: it was removed or left unset, and the run needs it") from None
        raise ConfigError(one_line(e)) from None


def _check_member_values(member: DictConfig) -> None:
    """The rules on a member's own values: its seed, and its λ (the regularizers' own rule, run here
    so that a negative λ is refused without importing torch)."""
    _check_seed(member.seed)
    strength = member.regularizer.get("strength", 0.0)
    try:
        check_strength(list(strength) if OmegaConf.is_list(strength) else [strength])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _check_regularizer_rules(member)


SEED_MAX = 2**32 - 1  # numpy's seeds, and so every generator's here


def _check_seed(seed: object) -> None:
    require(
        isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX,
        f"seed={seed!r} must be an integer from 0 to {SEED_MAX}",
    )


def _validate_stack(cfg: DictConfig) -> None:
    """The rules about the whole stack of members (lists in `MEMBER_KEYS`), before any member's."""
    chunk = OmegaConf.select(cfg, "sweep.chunk")
    if chunk is not None:
        _int(chunk, "sweep.chunk", allowed=", or null for all members at once")
    path = OmegaConf.select(cfg, "sweep.path")
    require(isinstance(path, bool), f"sweep.path={path!r} must be true or false")
    require(
        not path or OmegaConf.is_list(OmegaConf.select(cfg, "regularizer.strength")),
        "sweep.path=true needs a list of λ: regularizer.strength=[...]",
    )
    _check_memory(cfg)


def _validate_one(cfg: DictConfig) -> None:
    """The rules of one member's config that no single constructor sees."""
    _check_task_rules(cfg)
    _check_optimizer_rules(cfg)
    _check_run_settings(cfg)
    _check_intervals(cfg)
    _check_paths(cfg)


def check_targets(cfg: DictConfig) -> None:
    """Every `_target_` node holds only its target's arguments, of their declared types
    (`reglab.schema`). Imports the targets (torch, Lightning): the preflight runs it, after `validate`."""
    for group in ("model", "regularizer", "optimizer", "scheduler", "trainer"):
        if cfg.get(group):
            check_arguments(cfg[group], group)
    for group in ("callbacks", "logger"):  # groups of named `_target_` nodes
        for key, node in (cfg.get(group) or {}).items():
            if OmegaConf.is_dict(node) and "_target_" in node:
                check_arguments(node, f"{group}.{key}")


def _check_task_rules(cfg: DictConfig) -> None:
    """The optimized metric and the split's sizes against the data set (the task picks the loss)."""
    from reglab.science import datasets

    data = cfg.data
    generator = datasets.GENERATORS.get(data.name)
    if generator is None:  # an unknown data set: `datasets.load` names the known ones
        return
    # Counts and noise: the generators' own check says it (`datasets.load`); the other arguments' types here.
    typed = {k: v for k, v in data.items() if k not in (*datasets.COUNTS, "noise")}
    check_types(OmegaConf.create(typed), "data", generator, f"data set {data.name!r}")
    split, n = data.split, data.get("n_samples")
    fractions = OmegaConf.is_list(split) and len(split) == 3 and all(_is_fraction(f) for f in split)
    fractions = fractions and split[0] > 0 and split[1] > 0  # an empty train or val split: check_split says so
    if isinstance(n, int) and n >= 1 and fractions and data.get("fold") is None:  # else the data module says
        try:
            datasets.check_split_sizes(datasets.split_sizes(n, tuple(split)), list(split))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    try:  # a file's task is read from it: a bad file is refused here, in one line
        task = datasets.task_of(data.name, data)
    except ValueError as e:
        raise ConfigError(one_line(e)) from None
    metric = cfg.get("optimized_metric")
    require(
        not (metric and str(metric).split("/")[-1] == "acc" and task == "regression"),
        f"optimized_metric={metric} needs a classification data set; {data.name!r} is a regression: "
        "use val/loss or val/r2",
    )


def _check_regularizer_rules(cfg: DictConfig) -> None:
    name, strength = regularizer_name(cfg), cfg.regularizer.strength
    require(
        name != "none" or not isinstance(strength, (int, float)) or strength == 0,
        f"regularizer.strength={shown(strength)} with regularizer=none would be ignored; "
        "use λ=0 or another regularizer",
    )


def _check_optimizer_rules(cfg: DictConfig) -> None:
    """torch's optimizers take a learning rate of 0 and say "Invalid momentum value": said here in the
    config's words, with the rules between their keys and reglab's regularizers."""
    opt = cfg.optimizer
    lr = _number(cfg, "optimizer.lr")
    require(lr > 0 and math.isfinite(lr), f"optimizer.lr={lr:g} must be > 0")
    require(
        "weight_decay" not in opt,
        "optimizer.weight_decay would hide an L2 penalty in the optimizer; "
        "use regularizer=weight_decay (AdamW, SGDW) or regularizer=l2",
    )
    if "momentum" in opt:
        require(_number(cfg, "optimizer.momentum") >= 0, f"optimizer.momentum={opt.momentum} must be >= 0")
        require(
            opt.get("nesterov") is not True or opt.momentum > 0, "optimizer.nesterov=true needs optimizer.momentum > 0"
        )


def _int(value: object, key: str, minimum: int = 1, allowed: str = "") -> None:
    """`conventions.require_int` as a ConfigError."""
    try:
        require_int(value, key, minimum, allowed)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_run_settings(cfg: DictConfig) -> None:
    """The run's own top-level settings: no constructor takes them."""
    unknown = sorted(set(cfg) - TOP_LEVEL_KEYS)
    require(not unknown, f"{unknown[0] if unknown else ''} is not a key of the config: check its spelling")
    _int(cfg.trainer.max_epochs, "trainer.max_epochs")
    require(isinstance(cfg.get("force", False), bool), f"force={cfg.get('force')!r} must be true or false")
    threshold = _number(cfg, "sparsity_threshold")
    require(threshold >= 0, f"sparsity_threshold={threshold:g} must be >= 0")
    threads = cfg.get("cpu_threads", "auto")
    if threads != "auto":
        _int(threads, "cpu_threads", allowed=" or auto")
    tags = cfg.get("tags")
    require(
        tags is None or (OmegaConf.is_list(tags) and all(isinstance(t, str) for t in tags)),
        f"tags={shown(tags)} must be a list of strings (W&B's tags)",
    )
    _int(cfg.get("retries", 0), "retries", minimum=0)


# Intervals in epochs that Lightning and torch take at 0 or below and then do something else: no
# checkpoint (so no resume and no `load_run`), an evaluation every epoch, a decay every epoch.
INTERVALS = (
    "callbacks.model_checkpoint.every_n_epochs", "trainer.check_val_every_n_epoch",
    "scheduler.step_size", "scheduler.T_max",
)  # fmt: skip


def _check_intervals(cfg: DictConfig) -> None:
    for key in INTERVALS:
        value = OmegaConf.select(cfg, key)
        if value is not None:
            _int(value, key, allowed=" (epochs)")


# What a run logs, so that a metric a sweep optimizes names something that exists.
METRIC = re.compile(r"^(train|val|test)/(loss|acc|mse|r2|gap|penalty|objective)$|^weights/\S+$")


def _check_paths(cfg: DictConfig) -> None:
    """`name` and the log root may not climb out of the log root; an absolute path is the user's choice."""
    name = str(cfg.name)
    require(
        name.strip() != "" and "/" not in name and "\\" not in name and name not in (".", ".."),
        f"name={name!r} must be a plain name (it is a directory under logs/multiruns/)",
    )
    paths = cfg.get("paths")
    require(OmegaConf.is_dict(paths) and "log_dir" in paths, "paths.log_dir is missing: it names the log root")
    for key in cast("Iterable[str]", paths):
        if OmegaConf.is_interpolation(paths, key):  # paths.output_dir: Hydra's run directory
            continue
        value = paths[key]
        require(isinstance(value, str) and value.strip() != "", f"paths.{key}={value!r} must name a directory")
        require(
            Path(value).is_absolute() or ".." not in Path(value).parts,
            f"paths.{key}={value} climbs out of the launch directory with '..'; give an absolute path instead",
        )
    metric = cfg.get("optimized_metric")
    require(
        not metric or bool(METRIC.match(str(metric))),
        f"optimized_metric={metric} names no logged value; "
        "use e.g. val/acc, val/loss, val/r2, val/gap or weights/zero_frac",
    )


def _check_memory(cfg: DictConfig) -> None:
    """Refuse a data set or model that cannot fit in this machine's memory, with the estimate: for
    the members trained in one fit (`sweep.chunk` of them at most), before anything is allocated."""

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
    members = math.prod(sizes.values())  # λ × seed × fold
    chunk = OmegaConf.select(cfg, "sweep.chunk")
    if isinstance(chunk, int) and chunk >= 1:
        members = min(members, chunk)
    data_sets = min(sizes["seed"] * sizes["data.fold"], members)  # one per distinct seed and fold (science.memory)
    data_bytes = memory.data_bytes(n, d, data_sets)
    model_bytes = memory.model_bytes(widths, members)
    activation_bytes = memory.activation_bytes(widths, n, members)
    need = data_bytes + model_bytes + activation_bytes
    if memory.fits(need):
        return
    total = memory.allowed_bytes()
    shown = OmegaConf.select(cfg, "data.n_samples")
    what = f"data.n_samples={shown:g}" if isinstance(shown, float) else f"data.n_samples={shown}"
    raise ConfigError(
        f"{what}, model.hidden={[int(w) for w in hidden]} and {members} member(s) need about "
        f"{need / 2**30:.1f} GiB of memory (data {data_bytes / 2**30:.1f}, model {model_bytes / 2**30:.1f}, "
        f"activations {activation_bytes / 2**30:.1f}); this machine (or its cap) allows {total / 2**30:.1f} GiB"
    )
