"""Build a stack in memory, and take one step on a copy of it, before any file is written.

`build` instantiates everything one Lightning fit of some members needs (data, model,
regularizer, optimizer, scheduler, module, callbacks, loggers, trainer); `preflight` is `build`
with every error a constructor or the trial step raises said in one line naming its config key
(`reglab.errors.blame`). A config that cannot train fails here, and no hand-kept list of rules
has to keep up with the constructors.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.config import check_targets
from reglab.errors import ConfigError, ScheduleError, blame, one_line
from reglab.members import CHOICES_ONLY, Member, identity, trains


@dataclass
class Stack:
    """Everything one Lightning fit of some members needs, built in memory, nothing written."""

    members: list[Member]
    module: Any  # RegLabModule
    datamodule: Any  # RegLabDataModule
    trainer: Any  # lightning.Trainer
    history: Any  # MetricsHistory
    loggers: list[Any]  # WandbRuns, TensorBoardRuns: `finish` with the members' records
    checkpoint: Path | None  # the stack's last.ckpt; None: trained in memory, nothing written
    init: list[dict] | None = None  # the members' initial weights, where not drawn from their seeds (λ paths)
    origin: str = ""  # what came before (a λ path's earlier stages): a checkpoint resumes only the same


def preflight(cfg: DictConfig, members: list[Member], checkpoint: Path | None, init: list[dict] | None = None) -> Stack:
    """`build`, with what a constructor or the first step refuses said as a ConfigError in one line."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    try:
        check_targets(members[0].cfg)  # a member's scalar λ and seed; the others differ only in those
        return build(cfg, members, checkpoint, init)
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, ArithmeticError, InstantiationException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e)) from e
    except (MemoryError, RuntimeError) as e:  # torch's allocator raises RuntimeError("... can't allocate memory ...")
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        raise ConfigError(
            f"the stack of {len(members)} member(s) does not fit in memory ({one_line(e)}); train fewer members "
            "at a time (sweep.chunk=…), or make model.hidden or data.n_samples smaller"
        ) from None


def build(cfg: DictConfig, members: list[Member], checkpoint: Path | None, init: list[dict] | None = None) -> Stack:
    """Instantiate the stack of `members` (from `init` weights if given) and take one training
    step on a copy of its module: any error a constructor or the first step raises, raises here.
    `checkpoint` None: a stack that writes nothing (no checkpoint, metrics.csv or logger)."""
    import lightning as L

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners
    seeds = [int(m.cfg.seed) for m in members]
    _cpu_threads(cfg.get("cpu_threads", "auto"), len(members), cfg)
    with blame("seed"):  # Lightning's own bounds, for every member's seed; then the first seeds dropout (K = 1)
        for seed in [*sorted(set(seeds[1:]) - {seeds[0]}), seeds[0]]:
            L.seed_everything(seed, workers=True, verbose=False)
    datamodule, module = _data_and_module(cfg, members, seeds, init)
    named = _callbacks(cfg, checkpoint)
    history = _history(cfg, members, on_disk=checkpoint is not None)
    loggers = _loggers(cfg, members)
    if checkpoint is None and loggers:
        raise ConfigError(f"logger={', '.join(cfg.logger)} writes files; a run in memory logs nothing: use logger=none")
    own = [_member_checkpoints(members)] if checkpoint is not None else []  # each member's checkpoints/last.ckpt
    trainer = _trainer(cfg, [history, *named.values(), *loggers, *own])
    metrics = _one_step(module, datamodule, cfg)
    for key, c in named.items():
        if getattr(c, "monitor", None) is not None and c.monitor not in metrics:  # early stopping, best checkpoint
            known = ", ".join(sorted(metrics))
            raise ConfigError(f"callbacks.{key}.monitor={c.monitor} names no metric; choose one of: {known}")
    return Stack(members, module, datamodule, trainer, history, loggers, checkpoint, init)


def _data_and_module(cfg: DictConfig, members: list[Member], seeds: list[int], init: list[dict] | None) -> tuple:
    """The data module of the members' seeds and the RegLabModule of their model, regularizer,
    optimizer and scheduler (the model's weights from `init` where given)."""
    import torch
    from hydra.utils import instantiate

    from reglab.lightning.module import RegLabModule

    folds = {"fold": [m.cfg.data.fold for m in members]} if OmegaConf.is_list(cfg.data.get("fold")) else {}
    with blame("data", cfg.data, _data_probe(cfg.data, seeds)):
        datamodule = instantiate(cfg.data, seed=seeds, **folds)
    sizes = {"in_features": datamodule.in_features, "out_features": datamodule.out_features}
    with blame("model", cfg.model):
        model = instantiate(cfg.model, **sizes, members=len(members), seeds=seeds)
    if init is not None:
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(torch.cat([weights[name] for weights in init]))
    strengths = [m.cfg.regularizer.strength for m in members]  # the regularizer checks each λ
    with blame("regularizer", cfg.regularizer):
        regularizer = instantiate(cfg.regularizer, strength=strengths, _convert_="all")
    with blame("scheduler", cfg.get("scheduler")):
        scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    with blame("optimizer", cfg.optimizer):
        optimizer = _fused(instantiate(cfg.optimizer))
    clip = members[0].cfg.trainer.get("gradient_clip_val")  # the module clips: reglab optimizes manually
    with blame("trainer", cfg.trainer):
        module = RegLabModule(model, regularizer, optimizer, datamodule.task, scheduler, cfg.sparsity_threshold, clip)
    return datamodule, module


def _callbacks(cfg: DictConfig, checkpoint: Path | None) -> dict[str, Any]:
    """The configured callbacks by key; a ModelCheckpoint writes the stack's own `checkpoint` (None: in
    memory, where there is no checkpoint to write and it is left out)."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    named = {}
    for key, c in (cfg.callbacks or {}).items():
        if c and key != "metrics_history":
            with blame(f"callbacks.{key}", c):
                named[key] = instantiate(c)
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning would refuse a bar it was told not to show
        named = {key: c for key, c in named.items() if not isinstance(c, ProgressBar)}
    writers = [key for key, c in named.items() if hasattr(c, "dirpath") and hasattr(c, "save_last")]  # ModelCheckpoint
    for key in writers:
        if checkpoint is None:
            del named[key]
        else:
            named[key].dirpath, named[key].filename = str(checkpoint.parent), checkpoint.stem
    return named


def _member_checkpoints(members: list[Member]) -> Any:
    from reglab.lightning.callbacks import MemberCheckpoints

    return MemberCheckpoints([rundir.checkpoint(m.run_dir) for m in members])


def _history(cfg: DictConfig, members: list[Member], on_disk: bool) -> Any:
    from reglab.lightning.callbacks import MetricsHistory

    history_cfg = (cfg.callbacks or {}).get("metrics_history") or {}
    with blame("callbacks.metrics_history", history_cfg):
        every = history_cfg.get("write_every_n_epochs", 50)
        return MetricsHistory([m.run_dir for m in members], every, on_disk)


def _loggers(cfg: DictConfig, members: list[Member]) -> list[Any]:
    """The configured loggers (W&B, TensorBoard), each told who the members are: one run per member."""
    from hydra.utils import instantiate

    loggers = []
    for key, c in (cfg.logger or {}).items():
        if c:
            with blame(f"logger.{key}", c):
                loggers.append(instantiate(c))
    if loggers:
        names, run_dirs = [m.name for m in members], [m.run_dir for m in members]
        configs = [cast(dict, OmegaConf.to_container(m.cfg, resolve=True)) for m in members]
        identities = [identity(m.cfg) for m in members]
        overrides, multirun_keys = job_overrides()
        for logger in loggers:
            logger.attach(names, run_dirs, configs, identities, [m.values for m in members], overrides, multirun_keys)
    return loggers


def job_overrides() -> tuple[dict[str, str], set[str]]:
    """(the Hydra job's command-line overrides that change a result, as {key: value}; the keys of those its
    multirun sweeps: the sweeper's `params` and the sweep overrides (`optimizer.lr=1e-3,1e-2`) in <sweep
    dir>/multirun.yaml). Read from Hydra's global state here, where Hydra is known, so that the loggers
    are handed them; ({}, set()) outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return {}, set()
    hydra: Any = HydraConfig.get()  # a DictConfig
    overrides = {}
    for item in hydra.overrides.task:
        key, _, value = str(item).lstrip("+~").partition("=")
        group = key.split(".")[0].split("/")[0]
        if value and trains(key) and group not in ("hydra", "callbacks", *CHOICES_ONLY):  # a run's name never says them
            overrides[key] = value
    if str(hydra.get("mode")) != "RunMode.MULTIRUN":
        return overrides, set()
    swept = {str(k) for k in (hydra.get("sweeper") or {}).get("params") or {}}
    try:
        master: Any = OmegaConf.load(Path(hydra.sweep.dir) / "multirun.yaml")
        parsed = OverridesParser.create().parse_overrides(list(master.hydra.overrides.task))
        swept |= {o.key_or_group for o in parsed if o.is_sweep_override()}
    except Exception:  # no multirun.yaml (another sweeper): its params alone
        pass
    return overrides, swept & overrides.keys()


def _trainer(cfg: DictConfig, callbacks: list[Any]) -> Any:
    """Lightning's Trainer of the configured `trainer` node (resolved whole: a nested node such as
    trainer.profiler may interpolate keys outside `trainer`), refused if it would take no step."""
    from hydra.utils import instantiate

    from reglab.lightning.callbacks import AtomicCheckpointIO

    with blame("trainer", cfg.trainer):
        settings = cast(dict, OmegaConf.to_container(cfg.trainer, resolve=True))
    settings.pop("gradient_clip_val", None)
    checkpointing = any(hasattr(c, "save_last") for c in callbacks)
    with blame("trainer", cfg.trainer, _trainer_probe(settings)):
        trainer = instantiate(
            settings,
            callbacks=callbacks,
            logger=False,
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=checkpointing,
        )
    _check_steps(trainer)
    return trainer


def _data_probe(data: DictConfig, seeds: list[int]) -> Callable[[str], bool]:
    """For `blame`: whether the data module builds with `key` at its default (the data set's or
    the module's), the other keys as configured."""

    def probe(key: str) -> bool:
        from reglab.lightning.datamodule import RegLabDataModule
        from reglab.science import datasets

        generator = datasets.GENERATORS.get(str(data.get("name")))
        defaults = {**_defaults(RegLabDataModule.__init__), **(_defaults(generator) if generator else {})}
        if key not in defaults:
            return False
        plain = cast(dict, OmegaConf.to_container(data, resolve=True))
        kwargs = {str(k): v for k, v in plain.items() if not str(k).startswith("_")}
        if kwargs.get(key) == defaults[key]:
            return False
        kwargs.update({key: defaults[key], "seed": seeds[:1]})
        return _builds(lambda: RegLabDataModule(**kwargs))

    return probe


def _trainer_probe(settings: dict[str, Any]) -> Callable[[str], bool]:
    """For `blame`: whether a bare Trainer builds with `key` at its default, the other keys as configured."""

    def probe(key: str) -> bool:
        import lightning as L
        from hydra.utils import instantiate

        defaults = _defaults(L.Trainer.__init__)
        if key not in defaults or settings.get(key) == defaults[key]:
            return False
        kwargs = {k: v for k, v in settings.items() if k != "default_root_dir"} | {key: defaults[key]}
        return _builds(lambda: instantiate(kwargs, logger=False, enable_checkpointing=False, callbacks=[]))

    return probe


def _builds(make: Callable[[], Any]) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make()
    except Exception:
        return False
    return True


def _defaults(fn: Any) -> dict[str, Any]:
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
        hidden = cfg.model.get("hidden")
        widths = [w for w in hidden if isinstance(w, int)] if OmegaConf.is_list(hidden) else []  # MLP checks them
        widths = widths or [1]
        work = members * sum(a * b for a, b in zip(widths[:-1], widths[1:])) * (cfg.data.get("batch_size") or 1000)
        setting = 1 if work < 50_000_000 else None
    if setting is not None:  # an integer >= 1 (reglab.config)
        torch.set_num_threads(setting)


def _fused(factory: Any) -> Any:
    """The configured optimizer with PyTorch's fused kernel where it has one (Adam, AdamW, SGD on
    the CPU or a GPU): the same update rule in one pass over the stacked tensors. A config that
    chooses `fused` or `foreach` itself keeps its choice (torch refuses both at once)."""
    import torch

    cls, keywords = getattr(factory, "func", None), getattr(factory, "keywords", {})
    if cls not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD) or {"fused", "foreach"} & keywords.keys():
        return factory
    if "fused" not in inspect.signature(cls).parameters:
        return factory
    return lambda params: factory(params, fused=True)


def _one_step(module: Any, datamodule: Any, cfg: DictConfig) -> list[str]:
    """A training step of a copy of `module` on a few samples (optimizer, penalty, proximal maps, each
    error blamed on its key), then the scheduler through every epoch on that copy: a schedule that fails
    or leaves lr negative or not finite is refused. Returns the metrics an evaluated epoch gives."""
    trial = copy.deepcopy(module)
    scheduler_cfg = cfg.get("scheduler")
    with blame("optimizer", cfg.optimizer):
        optimizer = trial.optimizer_factory(trial.model.parameters())
    with blame("regularizer", cfg.regularizer):
        trial.regularizer.use_optimizer(optimizer)
    with blame("scheduler", scheduler_cfg):
        scheduler = trial.scheduler_factory(optimizer) if trial.scheduler_factory is not None else None
    x, y = datamodule.inputs("train")
    trial._plain_steps = True  # no trainer: `Tensor.backward` itself
    trial._step(x[..., :4, :], y[..., :4], optimizer, part=lambda key: blame(key, cfg[key]))
    lr = optimizer.param_groups[0]["lr"]
    if scheduler is not None:
        with blame("scheduler", scheduler_cfg):
            _check_schedule(scheduler, optimizer, cfg.trainer.get("max_epochs"))
    return list(trial.evaluate("val", datamodule, lr))


def _check_schedule(scheduler: Any, optimizer: Any, epochs: Any) -> None:
    """Step `scheduler` once per epoch of training (at most 100 000) and check each learning rate."""
    epochs = epochs if isinstance(epochs, int) and epochs > 0 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for epoch in range(1, min(epochs, 100_000) + 1):
            scheduler.step()
            for group in optimizer.param_groups:
                lr = group["lr"]
                if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
                    raise ScheduleError(lr, epoch)
