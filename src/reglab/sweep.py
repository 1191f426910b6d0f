"""Vectorized sweeps: many λ and seeds trained as stacked members of one Lightning run.

    reglab-train sweep.vectorize=true regularizer=l2 regularizer.strength=[0,1e-5,1e-4,1e-3] seed=[0,1,2]

The members are the cartesian product of the list-valued keys among `SWEPT` (here 4 × 3 = 12).
Member k trains exactly as the single run `reglab-train regularizer.strength=λ seed=s <the other
overrides>` would: its own data set, split and batch order, its own initial weights, the same
steps (`reglab.lightning.vectorized`); it ends with that run's weights to float tolerance. Each
member gets a run directory in the format of a single run (`reglab.rundir`), so reports cannot
tell them apart:

    <output dir>/regularizer.strength=0.001,seed=0/   .hydra/config.yaml, metrics.json, metrics.csv,
                                                      checkpoints/last.ckpt (an MLP's state_dict keys)
    <output dir>/.sweep/   the sweep's own Hydra files (moved out of .hydra/), members.json, and the
                           stacked checkpoints a re-launched sweep resumes from

A member's metrics.json `wall_time_s` is its share of the sweep: the sweep's time over K.
`sweep.chunk=n` trains the members n at a time (to bound memory). With `logger=wandb` each member
gets its own W&B run in the sweep's group, written after training from its metrics rows.

Warm-started λ paths (`experiment=lambda_path`, i.e. `sweep.path=true`): like scikit-learn's
`lasso_path`, but from small to large λ. The λ values are trained one after another in increasing
order, each for `trainer.max_epochs` epochs starting from the previous λ's final weights (stage 0
from the seeded initialisation, so it equals a single run); the other list-valued keys (seeds)
are the stacked members of each stage. The optimizer state, scheduler and batch order start
afresh at every stage. One run directory per (λ, seed), and a table of sparsity along the path.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from reglab import rundir
from reglab.config import ConfigError, validate

log = logging.getLogger("reglab.sweep")
SWEPT = ("regularizer.strength", "seed")  # keys that may hold a list: the members' grid
PATH_KEY = "regularizer.strength"
SUMMARY = ("train/acc", "val/acc", "test/acc", "val/r2", "test/r2", "weights/zero_frac", "weights/small_frac", "weights/dead_units")  # fmt: skip


# The grid and the members' configs ----------------------------------------------------------
def member_grid(cfg: DictConfig) -> list[dict[str, Any]]:
    """The members: one {key: value} per element of the product of the `SWEPT` keys' lists."""
    axes = []
    for key in SWEPT:
        value = OmegaConf.select(cfg, key)
        values = list(value) if isinstance(value, (ListConfig, list)) else [value]
        if not values:
            raise ConfigError(f"{key}=[] is an empty list; a vectorized sweep needs at least one value")
        axes.append(values)
    return [dict(zip(SWEPT, combination)) for combination in itertools.product(*axes)]


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def member_name(values: dict[str, Any]) -> str:
    """The member's directory: its values as Hydra writes a job's overrides, `regularizer.strength=0.001,seed=0`."""
    return ",".join(f"{key}={_format(values[key])}" for key in sorted(values))


def member_config(cfg: DictConfig, values: dict[str, Any], run_dir: Path, _base: dict | None = None) -> DictConfig:
    """The sweep's config with the member's scalar values, its run directory in `paths.output_dir`
    and its name in the loggers: the config a single run of this member would have had. Other
    `${hydra:…}` values are resolved now (the member is written after Hydra's job has ended)."""

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
                return member_name(values)
            return OmegaConf.select(cfg, path)
        return node

    return OmegaConf.create(fix(_base or OmegaConf.to_container(cfg, resolve=False), ""))


def _check_vectorizable(cfg: DictConfig) -> None:
    sweep = cfg.sweep
    chunk = sweep.get("chunk")
    if chunk is not None and not (isinstance(chunk, int) and chunk >= 1):
        raise ConfigError(f"sweep.chunk={chunk!r} must be an integer >= 1, or null for all members at once")
    lr = OmegaConf.select(cfg, "optimizer.lr")
    if isinstance(lr, ListConfig):
        raise ConfigError(
            f"optimizer.lr={list(lr)}: the members of a vectorized sweep share one learning rate; "
            "sweep it with -m (e.g. -m optimizer.lr=1e-3,1e-2) around the vectorized sweep"
        )
    dropout = OmegaConf.select(cfg, "model.dropout")
    if isinstance(dropout, (int, float)) and dropout > 0:
        raise ConfigError(
            f"model.dropout={dropout}: a vectorized sweep draws all members' dropout masks from one generator, "
            "so its members would not equal their single runs; use dropout 0 or sweep with -m"
        )


@dataclass
class Member:
    values: dict[str, Any]  # its values of the swept keys
    cfg: DictConfig  # the config its single run would have had
    run_dir: Path
    config_hash: str  # as `reglab.train.config_hash` computes it for that config

    @property
    def name(self) -> str:
        return self.run_dir.name

    def finished(self) -> bool:
        """Completed or diverged before, with this very config (a re-launched sweep skips it, as
        `reglab.train.train` skips such a run)."""
        return (
            rundir.is_finished(self.run_dir)
            and rundir.read_metrics_json(self.run_dir).get("config_hash") == self.config_hash
        )


def sweep_members(cfg: DictConfig, root: Path | None = None) -> list[Member]:
    """Every member of the sweep `cfg`, its config validated like a single run's: ConfigError naming
    the member otherwise. Trains nothing: `train_vectorized` calls it first, and a check of the
    command line can too, outside Hydra's job, with any `root` (default: `paths.output_dir`)."""
    from reglab.train import config_hash

    _check_vectorizable(cfg)
    root = Path(cfg.paths.output_dir) if root is None else root
    base = OmegaConf.to_container(cfg, resolve=False)
    members = []
    grid = member_grid(cfg)
    names = [member_name(values) for values in grid]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"the lists give member {twice[0]} more than once; list each value once")
    for values in grid:
        run_dir = root / member_name(values)
        member = member_config(cfg, values, run_dir, base)  # type: ignore[arg-type]
        try:
            validate(member)
        except ConfigError as e:
            raise ConfigError(f"member {member_name(values)}: {e}") from None
        members.append(Member(values, member, run_dir, config_hash(member)))
    return members


# The entry point ------------------------------------------------------------------------------
def train_vectorized(cfg: DictConfig) -> list[dict[str, Any]]:
    """Train the sweep `cfg` describes (`sweep.vectorize=true`); return each member's metrics.json
    record. Raises ConfigError, before anything is trained, for a config one of its members or
    the vectorized path cannot run."""
    members = sweep_members(cfg)
    root = Path(cfg.paths.output_dir)
    _write_sweep_files(root, members)
    checkpoints = root / ".sweep" / "checkpoints"
    if not cfg.force and all(m.finished() for m in members):
        log.info("%s: every member already finished; skipped (force=true trains them again)", root)
        return [rundir.read_metrics_json(m.run_dir) for m in members]
    if cfg.sweep.get("path"):
        lams = sorted({float(m.values[PATH_KEY]) for m in members})
        records, init = [], None
        for j, lam in enumerate(lams):
            stage = [m for m in members if float(m.values[PATH_KEY]) == lam]
            path_so_far = f"path: {lams[: j + 1]}"  # a stage resumes only after the same earlier stages
            stage_records, module = _train_unit(cfg, stage, checkpoints / f"stage-{j}", init, path_so_far)
            records += stage_records
            if module is None:  # failed (inside a multirun, else it raised): no weights to go on from
                break
            init = [module.member_weights(k) for k in range(len(stage))]
        return records
    chunk = cfg.sweep.get("chunk") or len(members)
    records = []
    for start in range(0, len(members), chunk):
        unit = members[start : start + chunk]
        name = "all" if chunk >= len(members) else f"members-{start}-{start + len(unit) - 1}"
        if not cfg.force and all(m.finished() for m in unit):
            log.info("%s: members %s already finished; skipped (force=true trains them again)", root, name)
            records += [rundir.read_metrics_json(m.run_dir) for m in unit]
        else:
            records += _train_unit(cfg, unit, checkpoints / name)[0]
    return records


def _write_sweep_files(root: Path, members: list[Member]) -> None:
    """Move the sweep's Hydra files to .sweep/hydra/ (a report then finds only the members' runs) and
    write each member's .hydra/ files, as Hydra writes a job's when it starts."""
    sweep_dir = root / ".sweep"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if (root / ".hydra").is_dir():
        shutil.rmtree(sweep_dir / "hydra", ignore_errors=True)
        (root / ".hydra").rename(sweep_dir / "hydra")
    overrides = _task_overrides()
    for m in members:
        (m.run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        (m.run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(m.cfg))
        mine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in m.values]
        mine += [f"{key}={_format(value)}" for key, value in m.values.items()]
        (m.run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(mine)))
    listing = [{"name": m.name, **m.values} for m in members]
    rundir.atomic_write_text(sweep_dir / "members.json", json.dumps(listing, indent=2) + "\n")


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


# One stacked run: a chunk of members, or one stage of a λ path --------------------------------
def _train_unit(
    cfg: DictConfig,
    members: list[Member],
    checkpoint_dir: Path,
    init: list[dict[str, Any]] | None = None,
    origin: str = "seeded initialisation",
) -> tuple[list[dict[str, Any]], Any]:
    """Fit `members` as one stacked run and write their run directories; return their records and
    the module (None if every attempt failed). Like `reglab.train.train`: a crash is retried
    `retries` times, resuming from the last checkpoint, then recorded as failed in every member's
    metrics.json (and re-raised, unless this is a job of a multirun)."""
    import lightning  # noqa: F401 (imported before its logger is quietened, as reglab.train does)

    from reglab.train import _identity, _in_multirun, environment

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available" banners
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    started, module = time.perf_counter(), None
    for attempt in range(1, cfg.get("retries", 0) + 2):
        try:
            module, datamodules, unit_ckpt, test = _fit_unit(cfg, members, checkpoint_dir, init, origin)
            break
        except Exception as e:  # recorded in every member's metrics.json below
            log.exception("attempt %d of %d failed", attempt, cfg.get("retries", 0) + 1)
            error = e
    wall = time.perf_counter() - started
    records, env, writes = [], environment(), []
    with ThreadPoolExecutor(max_workers=8) as files:  # the members' files: their fsyncs overlap
        for k, m in enumerate(members):
            if module is None:
                record = {"status": rundir.FAILED, "error": f"{type(error).__name__}: {error}", **_identity(m.cfg), "metrics": {}}  # fmt: skip
            else:
                rows = module.rows(k)
                record = _record(m, datamodules[k], module, k, rows, test)
                checkpoint = _member_checkpoint(unit_ckpt, module, k, rows)
                writes.append(files.submit(_save, checkpoint, m.run_dir / "checkpoints" / "last.ckpt"))
                writes.append(files.submit(rundir.write_metrics_csv, m.run_dir, rows))
            record.update(attempts=attempt, wall_time_s=round(wall / len(members), 3), config_hash=m.config_hash)
            record["environment"] = env
            writes.append(files.submit(rundir.write_metrics_json, m.run_dir, record))
            records.append(record)
    for write in writes:
        write.result()  # re-raises a failed write
    for k, (m, record) in enumerate(zip(members, records)):
        _log_member(m.cfg, module.rows(k) if module is not None else [], record)
    if module is None and not _in_multirun():
        raise error
    return records, module


def _fit_unit(cfg: DictConfig, members: list[Member], checkpoint_dir: Path, init, origin: str):
    """One attempt: build the stacked run (from `init` weights if given; `origin` says which, and a
    checkpoint is resumed only for the same members and origin), fit, save, and evaluate the test
    split; return (module, the members' data modules, the saved checkpoint, test metrics [K])."""
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from reglab.lightning.callbacks import MetricsHistory, WeightHistograms
    from reglab.lightning.vectorized import MemberMetricsWriter, StackedDataModule, VectorizedModule
    from reglab.science.stacked import StackedMLP

    first = members[0].cfg
    datamodules, models, by_seed = [], [], {}
    for m in members:  # each member's data and initial weights, drawn as its single run draws them
        L.seed_everything(m.cfg.seed, workers=True, verbose=False)
        if m.cfg.seed not in by_seed:
            by_seed[m.cfg.seed] = instantiate(m.cfg.data)
        dm = by_seed[m.cfg.seed]
        datamodules.append(dm)
        models.append(instantiate(m.cfg.model, in_features=dm.in_features, out_features=dm.out_features))
    model = StackedMLP.stack(models)
    if init is not None:
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                tensor.copy_(torch.stack([weights[name] for weights in init]))
    lams = [float(m.cfg.regularizer.strength) for m in members]
    regularizer = instantiate(first.regularizer, strength=lams, _convert_="all")
    scheduler = instantiate(first.scheduler) if first.get("scheduler") else None
    module = VectorizedModule(
        model,
        regularizer,
        _fused(instantiate(first.optimizer)),
        datamodules[0].task,
        scheduler,
        first.sparsity_threshold,
        first.trainer.get("check_val_every_n_epoch") or 1,
    )
    module.member_hashes = [m.config_hash for m in members] + [origin]

    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c]
    callbacks = [c for c in callbacks if not isinstance(c, (MetricsHistory, WeightHistograms))]
    checkpointing = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    for c in checkpointing:
        c.dirpath = str(checkpoint_dir)
    history = (cfg.callbacks or {}).get("metrics_history") or {}
    callbacks.append(MemberMetricsWriter([m.run_dir for m in members], history.get("write_every_n_epochs", 50)))
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=False,
        default_root_dir=str(checkpoint_dir),
        enable_checkpointing=bool(checkpointing),
    )
    last = checkpoint_dir / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False) if last.is_file() else {}
    resume = saved.get("vectorized", {}).get("member_hashes") == module.member_hashes
    trainer.fit(module, datamodule=StackedDataModule(datamodules), ckpt_path=last if resume else None)
    trainer.save_checkpoint(last)
    test = {key: v.cpu().tolist() for key, v in module.evaluate("test").items() if key.startswith("test/")}
    return module, datamodules, torch.load(last, map_location="cpu", weights_only=False), test


def _fused(factory):
    """The configured optimizer, with PyTorch's fused kernel where it has one (Adam, AdamW, SGD):
    the same update rule in one pass over the stacked tensors, about twice as fast on a CPU for
    Adam. A config that sets `fused` itself is left as it is."""
    import inspect

    import torch

    cls = getattr(factory, "func", None)
    keywords = getattr(factory, "keywords", {})
    if cls not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD) or "fused" in keywords:
        return factory
    if "fused" not in inspect.signature(cls).parameters:
        return factory

    def build(params):
        return factory(params, fused=True)

    return build


def _member_optimizer_state(state: dict[str, Any], k: int, members: int) -> dict[str, Any]:
    """Member k's slice of a stacked optimizer's state_dict: what its single run's optimizer holds."""
    import torch

    def part(value: Any) -> Any:
        return (
            value[k].clone() if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == members else value
        )

    groups = [{**g, "fused": None} if "fused" in g else dict(g) for g in state["param_groups"]]
    return {"state": {i: {n: part(v) for n, v in s.items()} for i, s in state["state"].items()}, "param_groups": groups}


def _member_checkpoint(unit: dict[str, Any], module: Any, k: int, rows: list[dict]) -> dict[str, Any]:
    """Member k's last.ckpt: a single run's Lightning checkpoint, with the member's weights under the
    `RegLabModule` keys (`model.hidden.0.weight`, …), its optimizer state and its metrics rows."""
    ckpt = {
        key: value
        for key, value in unit.items()
        if key not in ("state_dict", "optimizer_states", "callbacks", "vectorized")
    }
    ckpt["state_dict"] = {f"model.{name}": tensor for name, tensor in module.member_weights(k).items()}
    ckpt["optimizer_states"] = [_member_optimizer_state(s, k, module.model.members) for s in unit["optimizer_states"]]
    ckpt["callbacks"] = {"MetricsHistory": {"rows": rows}}
    if rows:
        ckpt["epoch"], ckpt["global_step"] = int(rows[-1]["epoch"]) + 1, int(rows[-1]["step"])
    return ckpt


def _save(checkpoint: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file, then a rename: whole or not at all."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def _record(m: Member, datamodule, module, k: int, rows: list[dict], test: dict[str, list[float]]) -> dict[str, Any]:
    """Member k's metrics.json record, as `reglab.train` writes a single run's (its caller adds
    attempts, wall_time_s, config_hash and environment)."""
    from reglab.train import run_record

    diverged = module.diverged_epoch[k]
    tested = (
        {key: values[k] for key, values in test.items()} if diverged is None else {}
    )  # a diverged run is not tested
    model = module.model.member(k)
    model.load_state_dict(module.member_weights(k))  # a diverged member: where its single run stopped
    return run_record(m.cfg, rows, diverged, tested, model, datamodule.data)


def _log_member(member: DictConfig, rows: list[dict[str, float]], record: dict[str, Any]) -> None:
    """Replay member k's rows into the loggers its single run would have had (one W&B run per member)."""
    from hydra.utils import instantiate

    loggers = [instantiate(c) for c in (member.logger or {}).values() if c is not None]
    hparams = {"regularizer_name": record["regularizer"], "strength": record["strength"], "seed": record["seed"]}
    for logger in loggers:
        logger.log_hyperparams({**hparams, **cast(dict[str, Any], OmegaConf.to_container(member, resolve=True))})
        for row in rows:
            logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        if hasattr(logger, "experiment") and hasattr(logger.experiment, "summary"):
            metrics = record["metrics"]
            logger.experiment.summary.update(
                {"status": record["status"], **{f"final/{k}": v for k, v in metrics.items()}}
            )
            logger.experiment.finish()
        else:
            logger.finalize("success" if record["status"] == rundir.COMPLETED else "failed")


# Console summary ------------------------------------------------------------------------------
def print_sweep_summary(records: list[dict[str, Any]]) -> None:
    """One line per member (λ, seed, status, final metrics, inputs still connected), then per λ the
    means over its completed members: along a warm-started path, how sparsity grows with λ."""
    import math

    from reglab.tables import markdown_table

    if not records:
        return
    keys = [k for k in SUMMARY if any(k in r["metrics"] for r in records)]

    def inputs(r: dict[str, Any]) -> int:  # inputs whose first-layer weights are not all exactly 0
        return sum(v > 0 for v in r["feature_l1"])

    rows = [(r["strength"], r["seed"], r["status"], *(r["metrics"].get(k) for k in keys), inputs(r)) for r in records]
    title = f"{records[0]['regularizer']} on {records[0]['dataset']}: {len(records)} members"
    print(f"\n{title}\n{markdown_table(['λ', 'seed', 'status', *keys, 'inputs'], rows)}\n")
    by_lam: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        if r["status"] == rundir.COMPLETED:
            by_lam.setdefault(r["strength"], []).append(r)
    means = [
        (lam, len(group), *(sum(r["metrics"].get(k, math.nan) for r in group) / len(group) for k in keys),
         sum(inputs(r) for r in group) / len(group))
        for lam, group in sorted(by_lam.items())
    ]  # fmt: skip
    header = ["λ", "members", *keys, "inputs"]
    print(f"per λ, means over its completed members\n{markdown_table(header, means)}\n")
