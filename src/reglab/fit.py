"""The driver: every run is a stack of K ≥ 1 members, trained as one Lightning fit.

The members are the product of the list-valued keys among `MEMBER_KEYS`:

    reglab-train regularizer=l1 regularizer.strength=[0,1e-4,1e-3] seed=[0,1,2]   # K = 9
    reglab-train regularizer=l1 regularizer.strength=1e-3 seed=0                  # K = 1

Member k trains exactly as the K = 1 run with its λ and seed would: its own data set, split and
batch order, its own initial weights, the same steps. With no list the run directory is
`paths.output_dir`; with lists each member gets a run directory of the same format below it:

    <output dir>/regularizer.strength=0.001,seed=0/   .hydra/config.yaml, metrics.json, metrics.csv,
                                                      checkpoints/last.ckpt (a K = 1 checkpoint)
    <output dir>/.stack/   the stack's Hydra files, members.json, and the stacked checkpoints a
                           re-launch resumes from

`fit` builds everything in memory first (data, model, regularizer, optimizer, scheduler,
callbacks, trainer) and takes one step on a copy, so a config that cannot train fails before a
file is written; then it trains, tests and writes each member's files (`reglab.rundir`).

Warm-started λ paths (`sweep.path=true`): the λ values are trained one after another in increasing
order, each from the previous λ's final weights; the seeds are the members of each stage.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import platform
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from reglab import rundir
from reglab.config import MEMBER_KEYS, ConfigError, one_line_error, regularizer_name, task_of, validate
from reglab.rundir import flatten

log = logging.getLogger("reglab.fit")
PATH_KEY = "regularizer.strength"
STACK_DIR = ".stack"
# Keys that change no result: a finished run is found again whatever they are.
NOT_IDENTITY = ("force", "paths", "logger", "tags", "retries", "name", "cpu_threads")


# The members -----------------------------------------------------------------------------------
def trained_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of a config that decides what is trained: unresolved (no run paths), without the
    keys that change no result (`NOT_IDENTITY`, the progress bar)."""
    container = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    for key in NOT_IDENTITY:
        container.pop(key, None)
    (container.get("callbacks") or {}).pop("progress_bar", None)
    (container.get("trainer") or {}).pop("enable_progress_bar", None)
    return container


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a config trains, so a re-launch can tell a finished run from a changed one."""
    return hashlib.sha256(json.dumps(trained_config(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_identity(members: list[Member], force: bool) -> None:
    """Refuse, in one line naming the differing keys, to train into a run directory that holds a
    run of another config: a run directory holds exactly what its config trained."""
    for m in members:
        try:
            record = rundir.read_metrics_json(m.run_dir)
        except (OSError, ValueError):
            continue
        if force or record.get("config_hash") in (None, m.config_hash):
            continue
        ours, theirs = flatten(trained_config(m.cfg)), flatten(record.get("config") or {})
        keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        if record.get("config_yaml") and not m.values:  # Hydra has already written the new config there
            rundir.atomic_write_text(m.run_dir / ".hydra" / "config.yaml", record["config_yaml"])
        raise ConfigError(
            f"{m.run_dir} holds a run of another config (it differs in {', '.join(keys[:5]) or 'its hash'}); "
            "retrain it there with force=true, or write to another directory"
        )


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass
class Member:
    values: dict[str, Any]  # its values of the listed keys ({} for a single run)
    cfg: DictConfig  # the config of its K = 1 run
    run_dir: Path
    config_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.config_hash = config_hash(self.cfg)

    @property
    def name(self) -> str:
        """`regularizer.strength=0.001,seed=0`, as Hydra names a job by its overrides."""
        return ",".join(f"{key}={_format(self.values[key])}" for key in sorted(self.values)) or self.run_dir.name

    def finished(self) -> bool:
        """Completed or diverged before, with this very config."""
        return rundir.is_finished(self.run_dir) and rundir.read_metrics_json(self.run_dir).get("config_hash") == self.config_hash  # fmt: skip


def members_of(cfg: DictConfig) -> list[Member]:
    """The members of `cfg`: one per element of the product of the `MEMBER_KEYS` lists."""
    root = Path(cfg.paths.output_dir)
    axes: dict[str, list[Any]] = {}
    for key in MEMBER_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, (ListConfig, list)):
            if not value:
                raise ConfigError(f"{key}=[] is an empty list; give at least one value")
            axes[key] = list(value)
    if not axes:
        return [Member({}, cfg, root)]
    grid = [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]
    base = cast(dict, OmegaConf.to_container(cfg, resolve=False))
    members = []
    for values in grid:
        member = Member(values, OmegaConf.create({}), root)
        member.run_dir = root / member.name
        member.cfg = _member_config(cfg, base, values, member.run_dir, member.name)
        member.config_hash = config_hash(member.cfg)
        members.append(member)
    names = [m.name for m in members]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"the lists give member {twice[0]} more than once; list each value once")
    return members


def _member_config(cfg: DictConfig, base: dict, values: dict[str, Any], run_dir: Path, name: str) -> DictConfig:
    """The config a K = 1 run of this member would have had: scalar values, its own run directory
    and W&B name; other `${hydra:…}` values resolved now (members are written outside Hydra's job)."""

    def fix(node: Any, path: str) -> Any:
        if path in values:
            return values[path]
        if isinstance(node, dict):
            return {k: fix(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v, f"{path}.{i}") for i, v in enumerate(node)]
        if isinstance(node, str) and "${hydra:" in node:
            if path == "paths.output_dir":
                return str(run_dir)
            if path.startswith("logger.") and path.endswith(".name"):
                return name
            return OmegaConf.select(cfg, path)
        return node

    return OmegaConf.create(fix(base, ""))


def identity(cfg: DictConfig) -> dict[str, Any]:
    """What a run is, read from its (K = 1) config alone: enough for a report even if nothing was built."""
    return {
        "name": cfg.name,
        "dataset": cfg.data.name,
        "task": task_of(cfg),
        "regularizer": regularizer_name(cfg),
        "strength": float(cfg.regularizer.strength),
        "seed": int(cfg.seed),
        "optimizer": str(cfg.optimizer._target_).rsplit(".", 1)[-1],
        "lr": float(cfg.optimizer.lr),
        "batch_size": cfg.data.batch_size,
    }


def environment() -> dict[str, str]:
    import lightning
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__, "device": device}  # fmt: skip


# Building a stack in memory --------------------------------------------------------------------
@dataclass
class Stack:
    """Everything one Lightning fit of some members needs, built in memory, nothing written."""

    members: list[Member]
    module: Any  # RegLabModule
    datamodule: Any  # RegLabDataModule
    trainer: Any  # lightning.Trainer
    history: Any  # MetricsHistory
    loggers: list[Any]  # WandbRuns, TensorBoardRuns: `finish` with the members' records
    checkpoint: Path  # the stack's last.ckpt


def build(cfg: DictConfig, members: list[Member], checkpoint: Path, init: list[dict] | None = None) -> Stack:
    """Instantiate the stack of `members` (from `init` weights if given) and take one training
    step on a copy of its module: any error a constructor or the first step raises, raises here."""
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    from reglab.lightning.callbacks import AtomicCheckpointIO, MetricsHistory
    from reglab.lightning.module import RegLabModule

    first = members[0].cfg
    seeds = [int(m.cfg.seed) for m in members]
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners
    _cpu_threads(cfg.get("cpu_threads", "auto"), len(members), cfg)
    with blame("seed"):
        L.seed_everything(seeds[0], workers=True, verbose=False)  # dropout (K = 1 only)
    with blame("data", cfg.data, _data_probe(cfg.data, seeds)):
        datamodule = instantiate(cfg.data, seed=seeds)
    with blame("model", cfg.model):
        model = instantiate(
            cfg.model,
            in_features=datamodule.in_features,
            out_features=datamodule.out_features,
            members=len(members),
            seeds=seeds,
        )
    if init is not None:
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(torch.cat([weights[name] for weights in init]))
    strengths = [float(m.cfg.regularizer.strength) for m in members]
    with blame("regularizer", cfg.regularizer):
        regularizer = instantiate(cfg.regularizer, strength=strengths, _convert_="all")
    with blame("scheduler", cfg.get("scheduler")):
        scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    with blame("optimizer", cfg.optimizer):
        optimizer = _fused(instantiate(cfg.optimizer))
    with blame("trainer", cfg.trainer):  # trainer.gradient_clip_val: the module clips, reglab optimizes manually
        module = RegLabModule(
            model,
            regularizer,
            optimizer,
            datamodule.task,
            scheduler,
            first.sparsity_threshold,
            first.trainer.get("gradient_clip_val"),
        )
    named = {}
    for key, c in (cfg.callbacks or {}).items():
        if c and key != "metrics_history":
            with blame(f"callbacks.{key}", c):
                named[key] = instantiate(c)
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning would refuse a bar it was told not to show
        named = {key: c for key, c in named.items() if not isinstance(c, ProgressBar)}
    callbacks = list(named.values())
    for c in callbacks:
        if hasattr(c, "dirpath") and hasattr(c, "save_last"):  # ModelCheckpoint: the stack's checkpoint
            c.dirpath, c.filename = str(checkpoint.parent), checkpoint.stem
    history_cfg = (cfg.callbacks or {}).get("metrics_history") or {}
    with blame("callbacks.metrics_history", history_cfg):
        history = MetricsHistory([m.run_dir for m in members], history_cfg.get("write_every_n_epochs", 50))
    loggers = []
    for key, c in (cfg.logger or {}).items():
        if c:
            with blame(f"logger.{key}", c):
                loggers.append(instantiate(c))
    if loggers:  # each logger keeps one run per member (W&B, TensorBoard): it learns who they are
        configs = [cast(dict, OmegaConf.to_container(m.cfg, resolve=True)) for m in members]
        identities = [identity(m.cfg) for m in members]
        for logger in loggers:
            logger.attach([m.name for m in members], [m.run_dir for m in members], configs, identities, [m.values for m in members])  # fmt: skip
    # Resolved whole: a nested node (trainer.profiler) may interpolate keys outside `trainer`.
    with blame("trainer", cfg.trainer):
        trainer_cfg = {k: v for k, v in cast(dict, OmegaConf.to_container(cfg.trainer, resolve=True)).items() if k != "gradient_clip_val"}  # fmt: skip
    with blame("trainer", cfg.trainer, _trainer_probe(trainer_cfg)):
        trainer = instantiate(
            trainer_cfg,
            callbacks=[history, *callbacks, *loggers],
            logger=False,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=any(hasattr(c, "save_last") for c in callbacks),
        )
    _check_steps(trainer)
    metrics = _one_step(module, datamodule, cfg)
    for key, c in named.items():
        if getattr(c, "monitor", None) is not None and c.monitor not in metrics:  # early stopping, best checkpoint
            raise ConfigError(f"callbacks.{key}.monitor={c.monitor} names no metric; choose one of: {', '.join(sorted(metrics))}")  # fmt: skip
    return Stack(members, module, datamodule, trainer, history, loggers, checkpoint)


@contextlib.contextmanager
def blame(key: str, node: Any = None, probe: Any = None) -> Iterator[None]:
    """Say which config key a constructor's error came from, in one line (ConfigError). With the
    config `node` the constructor was given, the line names the key of `node` it came from where
    that can be told (`scheduler.step_size=0: …`): the key the message names, or whose value it
    quotes; for a division by zero the key that is 0; for a negative learning rate the negative
    key; else the keys that `probe(key)` (the constructor again, that key at its default) clears."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError, RuntimeError, AttributeError, ImportError, AssertionError, InstantiationException, OmegaConfBaseException) as e:  # fmt: skip
        raise ConfigError(_blame_line(key, node, probe, e)) from e


def _blame_line(key: str, node: Any, probe: Any, error: BaseException) -> str:
    message = one_line_error(error)
    group = key.split(" ")[0]
    top = group.split(".")[0]
    if message.startswith(tuple(f"{g}{c}" for g in (group, top) for c in ".=:")):  # it names its key
        return message
    if node is None or not OmegaConf.is_dict(node):
        return f"{key}: {message}"
    target = node.get("_target_")
    source = f" (from {target})" if target else ""
    culprits = _culprits(node, message, error, probe)
    if not culprits:
        return f"{key}: {message}{source}"
    if len(culprits) == 1 and message.startswith(f"{culprits[0]}="):  # "write_every_n_epochs=0 must be …"
        return f"{group}.{message}{source}"
    named = ", ".join(f"{group}.{k}={_shown(node, k)}" for k in culprits)
    if isinstance(error, ZeroDivisionError):
        return (
            f"{named} must not be 0{source.rstrip(')')}: {message})" if source else f"{named} must not be 0: {message}"
        )
    return f"{named}: {message}{source}"


def _shown(node: Any, key: str) -> str:
    if OmegaConf.is_interpolation(node, key):
        return str(node._get_node(key)._value())
    value = node[key]
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value, resolve=False)).replace(" ", "")
    return _format(value)


def _culprits(node: Any, message: str, error: BaseException, probe: Any) -> list[str]:
    """The keys of `node` an error message points at (see `blame`); [] if none can be told."""
    import re

    keys = [str(k) for k in node if not str(k).startswith("_") and str(k) not in ("name", "seed")]
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", message)}
    text = message.lower()

    def said(word: str) -> bool:
        return word in words or (len(word) >= 3 and any(len(w) >= 3 and (w.startswith(word) or word.startswith(w)) for w in words))  # fmt: skip

    def named(k: str) -> bool:
        if re.search(rf"(?<![\w.]){re.escape(k.lower())}(?![\w])", text):
            return True
        tokens = [t for t in k.lower().split("_") if len(t) >= 3]
        return bool(tokens) and all(said(t) for t in tokens)

    def value(k: str) -> Any:
        return None if OmegaConf.is_interpolation(node, k) else node[k]

    def quoted(k: str) -> bool:
        v = value(k)
        if isinstance(v, bool) or v is None or OmegaConf.is_config(v) or v in (0, 1):
            return False
        return re.search(rf"(?<![\w.]){re.escape(str(v).lower())}(?![\w])", text) is not None

    def number(k: str) -> float | None:
        v = value(k)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    if "must stay finite and >= 0" in message:  # the schedule's learning rate (`_check_schedule`)
        found = [k for k in keys if (number(k) or 0) < 0]
        if found:
            return found
    if isinstance(error, ZeroDivisionError):
        zeros = [k for k in keys if number(k) == 0]
        integers = [k for k in zeros if isinstance(value(k), int)]
        if zeros:
            return integers if integers and "integer" in message else zeros
    if probe is not None:
        found = [k for k in keys if probe(k)]
        if found:
            return found
    found = [k for k in keys if named(k)]
    return found or [k for k in keys if quoted(k)]


def _data_probe(data: DictConfig, seeds: list[int]) -> Any:
    """For `blame`: whether the data module builds with `key` at its default (the data set's or
    the module's), the other keys as configured."""
    from reglab.science import datasets

    def probe(key: str) -> bool:
        from reglab.lightning.datamodule import RegLabDataModule

        generator = datasets.GENERATORS.get(str(data.get("name")))
        defaults = {**_defaults(RegLabDataModule.__init__), **(_defaults(generator) if generator else {})}
        if key not in defaults:
            return False
        plain = cast(dict, OmegaConf.to_container(data, resolve=True))
        kwargs = {str(k): v for k, v in plain.items() if not str(k).startswith("_")}
        if kwargs.get(key) == defaults[key]:
            return False
        kwargs.update({key: defaults[key], "seed": seeds[:1]})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                RegLabDataModule(**kwargs)
        except Exception:
            return False
        return True

    return probe


def _trainer_probe(trainer_cfg: dict[str, Any]) -> Any:
    """For `blame`: whether a bare Trainer builds with `key` at its default, the other keys as configured."""

    def probe(key: str) -> bool:
        import lightning as L
        from hydra.utils import instantiate

        defaults = _defaults(L.Trainer.__init__)
        if key not in defaults or trainer_cfg.get(key) == defaults[key]:
            return False
        kwargs = {k: v for k, v in trainer_cfg.items() if k not in ("default_root_dir",)} | {key: defaults[key]}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                instantiate(kwargs, logger=False, enable_checkpointing=False, callbacks=[])
        except Exception:
            return False
        return True

    return probe


def _defaults(fn: Any) -> dict[str, Any]:
    import inspect

    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not p.empty}


def _check_steps(trainer: Any) -> None:
    """Refuse a trainer that would train no step: such a run would end with nothing trained."""
    limit = getattr(trainer, "limit_train_batches", 1.0)
    # Every epoch is one Lightning batch here (the minibatches of all members run inside it).
    batches = min(1, limit) if isinstance(limit, int) else int(1 * (limit if limit is not None else 1.0))
    if batches < 1:
        raise ConfigError(
            f"trainer.limit_train_batches={limit} trains no step: each epoch is one Lightning batch here "
            "(the minibatches run inside it); leave it out, or use 1.0"
        )
    if getattr(trainer, "max_steps", -1) == 0:
        raise ConfigError("trainer.max_steps=0 trains no step; leave it out (-1), or use trainer.max_epochs")


def _cpu_threads(setting: Any, members: int, cfg: DictConfig) -> None:
    """torch's intra-op threads on the CPU. `auto`: one thread for stacks whose matmuls are too small
    to share (on a busy 2-core machine two threads of a tiny model wait on each other and run 10×
    slower), torch's default otherwise. Subnormal floats are flushed to zero: Adam's second moments
    of weights that get no gradient decay into them, and they slow CPU arithmetic many times over."""
    import torch

    torch.set_flush_denormal(True)
    if setting == "auto":
        widths = [int(w) for w in cfg.model.get("hidden", [])] or [1]
        work = members * sum(a * b for a, b in zip(widths[:-1], widths[1:])) * (cfg.data.get("batch_size") or 1000)
        setting = 1 if work < 50_000_000 else None
    if setting is not None:
        if not isinstance(setting, int) or setting < 1:
            raise ConfigError(f"cpu_threads={setting!r} must be an integer >= 1 or auto")
        torch.set_num_threads(setting)


def preflight(cfg: DictConfig, members: list[Member], checkpoint: Path) -> Stack:
    """`build`, with what a constructor or the first step refuses said as a ConfigError in one line."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return build(cfg, members, checkpoint)
    except (ValueError, TypeError, KeyError, ArithmeticError, InstantiationException, OmegaConfBaseException) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(one_line_error(e)) from e


def _one_step(module: Any, datamodule: Any, cfg: DictConfig) -> list[str]:
    """A training step of a copy of `module` on a few samples: the optimizer, the penalty and the
    proximal maps all run once, each error blamed on its config key; the real module is untouched.
    Then the scheduler runs through every epoch of training on that copy's optimizer, so that a
    schedule that fails, or leaves the learning rate negative or not finite, is refused up front.
    Returns the names of the metrics an evaluated epoch gives (what a callback may monitor)."""
    trial = copy.deepcopy(module)
    scheduler_cfg = cfg.get("scheduler")
    with blame("optimizer", cfg.optimizer):
        optimizer = trial.optimizer_factory(trial.model.parameters())
    with blame("regularizer", cfg.regularizer):
        trial.regularizer.use_optimizer(optimizer)
    with blame("scheduler", scheduler_cfg):
        scheduler = trial.scheduler_factory(optimizer) if trial.scheduler_factory is not None else None
    x, y = datamodule.inputs("train")
    with blame("model", cfg.model):
        trial.regularized_loss(x[..., :4, :], y[..., :4]).sum().backward()
    lr = optimizer.param_groups[0]["lr"]
    with blame("regularizer", cfg.regularizer):
        trial.regularizer.before_step(lr)
    with blame("optimizer", cfg.optimizer):
        optimizer.step()
    with blame("regularizer", cfg.regularizer):
        trial.regularizer.after_step(lr)
    if scheduler is not None:
        with blame("scheduler", scheduler_cfg):
            _check_schedule(scheduler, optimizer, cfg.trainer.get("max_epochs"))
    return list(trial.evaluate("val", datamodule, lr))


def _check_schedule(scheduler: Any, optimizer: Any, epochs: Any) -> None:
    """Step `scheduler` once per epoch of training (at most 100 000) and check each learning rate."""
    import math

    epochs = epochs if isinstance(epochs, int) and epochs > 0 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for epoch in range(1, min(epochs, 100_000) + 1):
            scheduler.step()
            for group in optimizer.param_groups:
                lr = group["lr"]
                if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
                    raise ValueError(
                        f"the learning rate becomes {lr} after epoch {epoch}; it must stay finite and >= 0"
                    )


def _fused(factory: Any) -> Any:
    """The configured optimizer with PyTorch's fused kernel where it has one (Adam, AdamW, SGD on
    the CPU or a GPU): the same update rule in one pass over the stacked tensors."""
    import inspect

    import torch

    cls, keywords = getattr(factory, "func", None), getattr(factory, "keywords", {})
    if cls not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD) or "fused" in keywords:
        return factory
    if "fused" not in inspect.signature(cls).parameters:
        return factory
    return lambda params: factory(params, fused=True)


# Training ---------------------------------------------------------------------------------------
def fit(cfg: DictConfig) -> list[dict[str, Any]]:
    """Train the members of `cfg` that are not finished yet; return every member's metrics.json
    record. Raises ConfigError, before a file is written, for a config that cannot train."""
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13 deprecation noise
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    validate(cfg)
    members = members_of(cfg)
    check_identity(members, cfg.force)
    root = Path(cfg.paths.output_dir)
    stacked = bool(members[0].values)
    checkpoints = root / STACK_DIR / "checkpoints" if stacked else root / "checkpoints"
    if cfg.sweep.get("path"):
        return _fit_path(cfg, members, checkpoints)
    chunk = cfg.sweep.get("chunk")
    chunk = len(members) if chunk is None else chunk
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError(f"sweep.chunk={chunk!r} must be an integer >= 1, or null for all members at once")
    units = [members[i : i + chunk] for i in range(0, len(members), chunk)]
    todo = [u for u in units if cfg.force or not all(m.finished() for m in u)]
    built = [preflight(cfg, unit, _unit_checkpoint(checkpoints, unit, members, stacked)) for unit in todo]
    records: dict[str, dict[str, Any]] = {}
    if stacked:
        _write_stack_files(root, members)
    for unit in units:
        if unit not in todo:
            if len(unit) == 1:
                log.info("%s already finished; skipped (force=true trains it again)", unit[0].run_dir)
            else:
                log.info("%s: %d members already finished; skipped (force=true trains them again)", root, len(unit))
            records |= {m.name: rundir.read_metrics_json(m.run_dir) for m in unit}
    for stack in built:
        records |= {m.name: r for m, r in zip(stack.members, train_stack(cfg, stack))}
    return [records[m.name] for m in members]


def _unit_checkpoint(checkpoints: Path, unit: list[Member], members: list[Member], stacked: bool) -> Path:
    if not stacked:
        return checkpoints / "last.ckpt"
    name = "all" if len(unit) == len(members) else f"members-{members.index(unit[0])}-{members.index(unit[-1])}"
    return checkpoints / name / "last.ckpt"


def _fit_path(cfg: DictConfig, members: list[Member], checkpoints: Path) -> list[dict[str, Any]]:
    if PATH_KEY not in members[0].values:
        raise ConfigError("sweep.path=true needs a list of λ: regularizer.strength=[...]")
    lams = sorted({float(m.values[PATH_KEY]) for m in members})
    stages = [[m for m in members if float(m.values[PATH_KEY]) == lam] for lam in lams]
    preflight(cfg, stages[0], checkpoints / "stage-0" / "last.ckpt")  # the stages differ only in λ and init
    _write_stack_files(Path(cfg.paths.output_dir), members)
    records, init = [], None
    for j, stage in enumerate(stages):
        stack = build(cfg, stage, checkpoints / f"stage-{j}" / "last.ckpt", init)
        stack.module.origin = f"path: {lams[: j + 1]}"  # a stage resumes only after the same earlier stages
        records += train_stack(cfg, stack)
        if any(r["status"] == rundir.FAILED for r in records[-len(stage) :]):
            break  # no weights to go on from
        init = [stack.module.member_weights(k) for k in range(len(stage))]
    return records


def _write_stack_files(root: Path, members: list[Member]) -> None:
    """Move the stack's Hydra files to .stack/hydra/ (a report then finds only the members' runs)
    and write each member's .hydra/ files, as Hydra writes a job's when it starts."""
    from hydra.core.hydra_config import HydraConfig

    stack_dir = root / STACK_DIR
    stack_dir.mkdir(parents=True, exist_ok=True)
    if (root / ".hydra").is_dir():
        shutil.rmtree(stack_dir / "hydra", ignore_errors=True)
        (root / ".hydra").rename(stack_dir / "hydra")
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for m in members:
        (m.run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        rundir.atomic_write_text(m.run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(m.cfg))
        mine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in m.values]
        mine += [f"{key}={_format(value)}" for key, value in m.values.items()]
        rundir.atomic_write_text(m.run_dir / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(mine)))
    listing = [{"name": m.name, **m.values} for m in members]
    rundir.atomic_write_text(stack_dir / "members.json", json.dumps(listing, indent=2) + "\n")


def train_stack(cfg: DictConfig, stack: Stack) -> list[dict[str, Any]]:
    """Fit `stack`, resuming from its checkpoint if it holds these very members, test, and write
    every member's metrics.json and (for K > 1) its own K = 1 checkpoint. A crash is retried
    `retries` times from the last checkpoint, then recorded as failed in every member."""
    import torch

    from reglab.lightning.callbacks import BestCheckpoint

    started, error, attempt = time.perf_counter(), None, 0
    hashes = [m.config_hash for m in stack.members] + [getattr(stack.module, "origin", "")]
    stack.module.member_hashes = hashes
    for m in stack.members:  # claimed before training: a re-launch with another config is refused
        if not (m.run_dir / "metrics.json").is_file() or cfg.force:
            rundir.write_metrics_json(m.run_dir, {"status": rundir.RUNNING, **_identity_fields(m), **identity(m.cfg), "metrics": {}})  # fmt: skip
    for attempt in range(1, cfg.retries + 2):
        try:
            if attempt > 1:  # a fresh stack: the failed one's state is unknown
                stack = build(cfg, stack.members, stack.checkpoint)
                stack.module.member_hashes = hashes
            ckpt = None if cfg.force and attempt == 1 else _resumable(stack.checkpoint, hashes)
            stack.trainer.fit(stack.module, datamodule=stack.datamodule, ckpt_path=ckpt, weights_only=True)
            stack.trainer.save_checkpoint(stack.checkpoint)
            test = {k: v.cpu().tolist() for k, v in stack.module.evaluate("test").items() if k.startswith("test/")}
            error = None
            break
        except Exception as e:  # recorded in every member's metrics.json below
            log.exception("attempt %d of %d failed", attempt, cfg.retries + 1)
            error = e
    wall = (time.perf_counter() - started) / len(stack.members)
    records = []
    best = next((c for c in stack.trainer.callbacks if isinstance(c, BestCheckpoint)), None)
    state = None  # the stack's checkpoint, read once: every member's own checkpoints are cut from it
    if error is None and (best is not None or any(m.values for m in stack.members)):
        state = torch.load(stack.checkpoint, map_location="cpu", weights_only=True)
    for k, m in enumerate(stack.members):
        if error is not None:
            record = {"status": rundir.FAILED, "error": f"{type(error).__name__}: {error}", **identity(m.cfg), "metrics": {}}  # fmt: skip
        else:
            record = _member_record(stack, k, test)
            if m.values:
                _save_member_checkpoint(state, stack, k, m.run_dir / "checkpoints" / "last.ckpt")  # type: ignore[arg-type]
            if best is not None and (weights := best.member_weights(k)) is not None:
                _save_member_checkpoint(state, stack, k, m.run_dir / "checkpoints" / "best.ckpt", weights, int(best.best_epoch[k]))  # type: ignore[arg-type,index]  # fmt: skip
        record.update(attempts=attempt, wall_time_s=round(wall, 3), environment=environment(), **_identity_fields(m))
        rundir.write_metrics_json(m.run_dir, record)
        records.append(record)
    for logger in stack.loggers:
        logger.finish(records)
    if error is not None and not in_multirun() and len(stack.members) == 1:
        raise error
    return records


def _identity_fields(m: Member) -> dict[str, Any]:
    """What metrics.json records of the config that trained the run, to refuse another one later."""
    return {"config_hash": m.config_hash, "config": trained_config(m.cfg), "config_yaml": OmegaConf.to_yaml(m.cfg)}


def _resumable(checkpoint: Path, hashes: list[str]) -> Path | None:
    """`checkpoint` if it was written by a stack of these very members, else None. A checkpoint that
    cannot be read (truncated by a full disk or a kill) is named in one warning and not used."""
    import torch

    if not checkpoint.is_file():
        return None
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a checkpoint: never executed (weights_only)
        log.warning("%s is unreadable (%s: %s); training from the start", checkpoint, type(e).__name__, " ".join(str(e).split())[:200])  # fmt: skip
        return None
    return checkpoint if saved.get("members") == hashes else None


def _member_record(stack: Stack, k: int, test: dict[str, list[float]]) -> dict[str, Any]:
    """Member k's metrics.json record (its caller adds attempts, wall time, hash, environment)."""
    from reglab.lightning.callbacks import BestCheckpoint
    from reglab.science.metrics import feature_l1, n_weights

    m, module = stack.members[k], stack.module
    rows = stack.history.rows(k)
    diverged = module.diverged_epoch[k]
    final = rows[-1] if rows else {}
    trained = int(final.get("step", 0)) > 0  # a run that took no step is never completed
    tested = (
        {key: values[k] for key, values in test.items()} if diverged is None else {}
    )  # a diverged run is not tested
    model = module.model.member(k)
    model.load_state_dict(module.member_weights(k))
    data = stack.datamodule.member(k)
    # What the monitoring callbacks (early stopping, best checkpoint) know of this member.
    monitored = [c.member_record(k, rows) if isinstance(c, BestCheckpoint) else c.member_record(k) for c in stack.trainer.callbacks if hasattr(c, "member_record")]  # fmt: skip
    return {
        "status": rundir.DIVERGED if diverged is not None else rundir.COMPLETED if trained else rundir.FAILED,
        "error": None if trained else "no training step was taken",
        "diverged_epoch": diverged,
        **identity(m.cfg),
        "epochs": int(final.get("epoch", -1)) + 1,
        "steps": int(final.get("step", 0)),
        "metrics": {key: v for key, v in final.items() if key not in ("epoch", "step")} | tested,
        "best_epoch": _best_epoch(rows, "val/acc" if "val/acc" in final else "val/loss"),
        "feature_l1": feature_l1(model)[0],
        "support": data.support,
        "true_coef": data.coef,
        "n_weights": n_weights(model),
        "flipped_labels": data.flipped,
        # The input transform fitted on the training split: x_std = (x − mean) / std (reglab.load_run).
        "input_transform": {"mean": data.mean.tolist(), "std": data.std.tolist()},
    } | {key: value for record in monitored for key, value in record.items()}


def _best_epoch(rows: list[dict[str, float]], key: str) -> int | None:
    scored = [r for r in rows if key in r and r[key] == r[key]]  # drop NaN
    if not scored:
        return None
    pick = max if key.endswith("acc") else min
    return int(pick(scored, key=lambda r: r[key])["epoch"])


def _save_member_checkpoint(
    state: dict[str, Any], stack: Stack, k: int, path: Path, weights: dict | None = None, epoch: int | None = None
) -> None:
    """Member k's last.ckpt: the stack's checkpoint with member k's weights, optimizer state and
    metrics rows, exactly what its K = 1 run would have saved. With `weights` (its best, from
    `BestCheckpoint`, at `epoch`): a weights-only checkpoint of those, without optimizer state."""
    import io

    import torch

    K = stack.module.model.members

    def part(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == K:
            return value[k : k + 1].clone()
        return value

    ckpt = {key: v for key, v in state.items() if key not in ("state_dict", "optimizer_states", "callbacks", "members", "divergence")}  # fmt: skip
    ckpt["state_dict"] = {f"model.{name}": t for name, t in (weights or stack.module.member_weights(k)).items()}
    hp = state["hyper_parameters"]
    strength = [float(stack.module.regularizer.strength[k])]
    ckpt["hyper_parameters"] = {**hp, "model": {**hp["model"], "members": 1}, "regularizer": {**hp["regularizer"], "strength": strength}}  # fmt: skip
    ckpt["optimizer_states"] = [
        {
            "state": {i: {n: part(v) for n, v in s.items()} for i, s in o["state"].items()},
            "param_groups": [{**g, "fused": None} for g in o["param_groups"]],
        }  # fmt: skip
        for o in state["optimizer_states"]
    ]
    rows = stack.history.rows(k)
    ckpt["members"] = [stack.members[k].config_hash, getattr(stack.module, "origin", "")]
    ckpt["divergence"] = {"epoch": [stack.module.diverged_epoch[k]], "weights": {}}
    history = {"names": stack.history.names, "epochs": [(r["epoch"], r["step"]) for r in rows], "diverged_epoch": [stack.module.diverged_epoch[k]]}  # fmt: skip
    history["values"] = (
        torch.stack([v[:, k : k + 1] for v in stack.history.values[: len(rows)]]) if rows else torch.zeros(0)
    )
    ckpt["callbacks"] = {"MetricsHistory": history}
    if rows:
        ckpt["epoch"], ckpt["global_step"] = int(rows[-1]["epoch"]) + 1, int(rows[-1]["step"])
    if weights is not None:  # weights only: resuming from here would pair them with the last optimizer state
        del ckpt["optimizer_states"], ckpt["callbacks"]
        ckpt["lr_schedulers"] = []
        ckpt["epoch"] = (epoch or 0) + 1
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    rundir.atomic_write_bytes(path, buffer.getvalue())


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
