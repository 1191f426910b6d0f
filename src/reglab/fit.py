"""The driver: every run is a stack of K ≥ 1 members (`reglab.members`), trained as one Lightning fit.

    <output dir>/regularizer.strength=0.001,seed=0/   .hydra/config.yaml, metrics.json, metrics.csv,
                                                      checkpoints/last.ckpt (`reglab.checkpoint`)
    <output dir>/.stack/   the stack's Hydra files, members.json, and the stack's own (Lightning)
                           checkpoints a re-launch resumes from; a K = 1 run's in <run>/.stack/ too

Every stack is checked and built in memory (`reglab.preflight`) before a file is written.
`sweep.chunk` members train at a time, each chunk built again right before it trains: one chunk's
data and weights in memory at once. A crash is retried. `sweep.path=true` (warm-started λ paths):
the λ values train in increasing order, each from the previous one's final weights, the seeds as members.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from reglab import checkpoint as checkpoints
from reglab import rundir
from reglab.config import validate
from reglab.errors import ConfigError
from reglab.member_files import environment, member_record
from reglab.members import (
    Member,
    check_identity,
    identity,
    identity_fields,
    members_of,
    restore_recorded_config,
    trained_config,
)
from reglab.preflight import Stack, build, preflight
from reglab.tables import format_number

log = logging.getLogger("reglab.fit")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13 deprecation noise
PATH_KEY = "regularizer.strength"


def fit(
    cfg: DictConfig, overrides: Sequence[str] = (), multirun: bool = False, init: list[dict] | None = None
) -> list[dict[str, Any]]:
    """Train the members of `cfg` that are not finished yet; return every member's metrics.json
    record. Raises ConfigError, before a file is written, for a config that cannot train.
    `overrides`: the job's command-line overrides (recorded in each member's .hydra/overrides.yaml);
    `multirun`: a crash of a single run is recorded and returned, not raised (a sweep goes on);
    `init`: each member's initial weights (a K = 1 `MLP.state_dict()`), else drawn from its seed."""
    validate(cfg)
    members = members_of(cfg)
    try:
        check_identity(members, cfg.force)
    except ConfigError:  # Hydra has already written the refused config into a finished run's .hydra/
        restore_recorded_config(members)
        raise
    root = Path(cfg.paths.output_dir)
    stacked = bool(members[0].values)
    start = dict(zip([m.name for m in members], init, strict=True)) if init is not None else None

    def weights(unit: list[Member]) -> list[dict] | None:  # the unit's initial weights, or None: its seeds'
        return [start[m.name] for m in unit] if start else None

    if cfg.sweep.get("path"):
        if start:
            raise ConfigError("sweep.path=true starts each λ from the previous one's weights: it takes no init")
        return _fit_path(cfg, members, root, overrides, multirun)
    units = [[members[i] for i in unit] for unit in _chunks(cfg, len(members))]
    done = [not cfg.force and all(m.finished() for m in unit) for unit in units]
    todo = [(unit, _unit_checkpoint(root, unit, members, stacked)) for unit, d in zip(units, done) if not d]
    for unit, checkpoint in todo[1:]:  # every chunk checked before the first trains, then let go
        preflight(cfg, unit, checkpoint, weights(unit))
    first = preflight(cfg, *todo[0], weights(todo[0][0])) if todo else None
    if stacked:
        write_stack_files(root, members, overrides)
    records: dict[str, dict[str, Any]] = {}
    for unit in (unit for unit, d in zip(units, done) if d):
        if len(unit) == 1:
            log.info("%s already finished; skipped (force=true trains it again)", unit[0].run_dir)
        else:
            log.info("%s: %d members already finished; skipped (force=true trains them again)", root, len(unit))
        records |= {m.name: rundir.read_metrics_json(m.run_dir) for m in unit}
    for unit, checkpoint in todo:  # each chunk built right before it trains: one in memory at a time
        stack, first = first or build(cfg, unit, checkpoint, weights(unit)), None
        records |= {m.name: r for m, r in zip(unit, train_stack(cfg, stack, multirun))}
        del stack
        gc.collect()  # Lightning's trainer holds reference cycles: free this chunk before building the next
    return [records[m.name] for m in members]


def fit_in_memory(cfg: DictConfig, init: list[dict] | None = None) -> list[dict[str, Any]]:
    """Train every member of `cfg` and write nothing: no run directory, checkpoint or metrics file.
    Returns each member's metrics.json record (its config as `cfg`, a DictConfig, not as YAML) with three
    more keys: `history` (its metrics.csv rows),
    `model` (its K = 1 `MLP` at its final weights, eval mode) and `best_model` (at the best weights,
    where a BestCheckpoint kept them, else None). A crash is raised: there is no record on disk to
    keep it in. `init`: as `fit`'s."""
    validate(cfg)
    members = members_of(cfg)
    if cfg.sweep.get("path"):
        raise ConfigError("sweep.path=true trains its λ stages from checkpoints on disk; give the run a directory")
    starts = list(init) if init is not None else [None] * len(members)
    if len(starts) != len(members):
        raise ConfigError(f"init has {len(starts)} members' weights for {len(members)} members")
    units = _chunks(cfg, len(members))

    def starts_of(unit: list[int]) -> list[dict] | None:
        return None if init is None else [starts[i] for i in unit]  # type: ignore[misc]

    stacks = [preflight(cfg, [members[i] for i in units[0]], None, starts_of(units[0]))]  # the rest differ in λ, seed
    records = []
    for j, indices in enumerate(units):
        unit = [members[i] for i in indices]
        stack = stacks.pop() if stacks else build(cfg, unit, None, starts_of(indices))
        stack.trainer.fit(stack.module, datamodule=stack.datamodule)
        test, best, machine = _test_metrics(stack), _best_checkpoint(stack), environment()
        for k in range(len(unit)):
            m = unit[k]  # its config as the object it is (a run directory holds it as YAML: `identity_fields`)
            record = member_record(stack, k, test) | {"config_hash": m.config_hash, "config": trained_config(m.cfg)}
            record |= {"environment": machine, "cfg": m.cfg}
            record["history"] = stack.history.rows(k)
            models = [stack.module.member_weights(k), best.member_weights(k) if best else None]
            for key, weights in zip(("model", "best_model"), models):
                record[key] = None if weights is None else _member_model(stack, weights)
            records.append(record)
        del stack
        if j + 1 < len(units):
            gc.collect()  # as `fit`: the trainer's reference cycles hold the chunk's tensors
    return records


def _chunks(cfg: DictConfig, members: int) -> list[list[int]]:
    """The members' indices in chunks of `sweep.chunk` (all at once by default): one fit each."""
    chunk = cfg.sweep.get("chunk") or members
    return [list(range(i, min(i + chunk, members))) for i in range(0, members, chunk)]


def _test_metrics(stack: Stack) -> dict[str, list[float]]:
    """Every member's `test/…` metrics at its final weights, one host transfer each."""
    return {k: v.cpu().tolist() for k, v in stack.module.evaluate("test").items() if k.startswith("test/")}


def _best_checkpoint(stack: Stack) -> Any:
    """The stack's BestCheckpoint callback (it keeps each member's best weights), or None."""
    from reglab.lightning.callbacks import BestCheckpoint

    return next((c for c in stack.trainer.callbacks if isinstance(c, BestCheckpoint)), None)


def _member_model(stack: Stack, weights: dict[str, Any]) -> Any:
    """A K = 1 `MLP` of the stack's model with these weights, eval mode."""
    from reglab.science.model import MLP

    model = MLP.from_hyperparameters(stack.module.model.hyperparameters(), members=1)
    model.load_state_dict(weights, assign=True)
    return model.eval()


def _unit_checkpoint(root: Path, unit: list[Member], members: list[Member], stacked: bool) -> Path:
    if not stacked:
        return rundir.stack_checkpoint(root)
    name = "all" if len(unit) == len(members) else f"members-{members.index(unit[0])}-{members.index(unit[-1])}"
    return rundir.stack_checkpoint(root, name)


def _fit_path(
    cfg: DictConfig, members: list[Member], root: Path, overrides: Sequence[str], multirun: bool
) -> list[dict[str, Any]]:
    lams = sorted({float(m.values[PATH_KEY]) for m in members})
    stages = [[m for m in members if float(m.values[PATH_KEY]) == lam] for lam in lams]
    preflight(cfg, stages[0], rundir.stack_checkpoint(root, "stage-0"))  # the stages differ only in λ and init
    write_stack_files(root, members, overrides)
    records: list[dict[str, Any]] = []
    init = None
    for j, stage in enumerate(stages):
        stack = build(cfg, stage, rundir.stack_checkpoint(root, f"stage-{j}"), init)
        stack.origin = f"path: {lams[: j + 1]}"  # a stage resumes only after the same earlier stages
        records += train_stack(cfg, stack, multirun)
        if any(r["status"] == rundir.FAILED for r in records[-len(stage) :]):
            break  # no weights to go on from
        init = [stack.module.member_weights(k) for k in range(len(stage))]
    return records


def write_stack_files(root: Path, members: list[Member], overrides: Sequence[str]) -> None:
    """Move the stack's Hydra files to .stack/hydra/ (a report then finds only the members' runs)
    and write each member's .hydra/ files, as Hydra writes a job's when it starts."""
    stack_dir = root / rundir.STACK_DIR
    stack_dir.mkdir(parents=True, exist_ok=True)
    if (root / ".hydra").is_dir():
        shutil.rmtree(stack_dir / "hydra", ignore_errors=True)
        (root / ".hydra").rename(stack_dir / "hydra")
    for m in members:
        rundir.atomic_write_text(m.run_dir / ".hydra" / "config.yaml", m.config_yaml)
        mine = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in m.values]
        mine += [f"{key}={format_number(value)}" for key, value in m.values.items()]
        rundir.atomic_write_text(m.run_dir / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(mine)))
    listing = [{"name": m.name, **m.values} for m in members]
    rundir.atomic_write_text(stack_dir / rundir.MEMBERS_JSON, json.dumps(listing, indent=2) + "\n")


def train_stack(cfg: DictConfig, stack: Stack, multirun: bool = False) -> list[dict[str, Any]]:
    """Fit `stack`, resuming from its checkpoint if it holds these very members (a K = 1 run: else from its
    own checkpoints/last.ckpt if that holds this very member), test, and write every member's metrics.json
    and best.ckpt (each member's last.ckpt is written whenever the stack saves its own). A crash is retried
    `retries` times from the last checkpoint (or the weights the stack started from), then recorded
    as failed in every member; a single run's crash outside a multirun is raised after that."""
    started = time.perf_counter()
    hashes = [m.config_hash for m in stack.members] + [stack.origin]
    for m in stack.members:  # claimed before training: a re-launch with another config is refused
        if not (m.run_dir / rundir.METRICS_JSON).is_file() or cfg.force:
            running = {"status": rundir.RUNNING, **identity_fields(m), **identity(m.cfg), "metrics": {}}
            rundir.write_metrics_json(m.run_dir, running)
    stack, test, error, attempts = _fit_with_retries(cfg, stack, hashes)
    wall = (time.perf_counter() - started) / len(stack.members)
    records, machine = _write_members(stack, test, error), environment()
    for record, m in zip(records, stack.members):
        record.update(attempts=attempts, wall_time_s=round(wall, 3), environment=machine, **identity_fields(m))
        rundir.write_metrics_json(m.run_dir, record)
    for logger in stack.loggers:
        logger.finish(records)
    if error is not None and not multirun and len(stack.members) == 1:
        raise error
    return records


def _fit_with_retries(cfg: DictConfig, stack: Stack, hashes: list[str]) -> tuple[Stack, dict, Exception | None, int]:
    """(the stack that ran last, its test metrics, the last error or None, the attempts made)."""
    error: Exception | None = None
    checkpoint = stack.checkpoint
    assert checkpoint is not None  # a stack built in memory trains in `fit_in_memory`
    for attempt in range(1, cfg.retries + 2):
        try:
            if attempt > 1:  # a fresh stack, from the weights the failed one started from: its state is unknown
                origin, stack = stack.origin, build(cfg, stack.members, stack.checkpoint, stack.init)
                stack.origin = origin
            stack.module.member_hashes = hashes
            own = [rundir.checkpoint(stack.members[0].run_dir)] if len(stack.members) == 1 else []
            ckpt = None if cfg.force and attempt == 1 else _resumable([checkpoint, *own], hashes)
            stack.trainer.fit(stack.module, datamodule=stack.datamodule, ckpt_path=ckpt, weights_only=True)
            stack.trainer.save_checkpoint(checkpoint)
            return stack, _test_metrics(stack), None, attempt
        except Exception as e:  # recorded in every member's metrics.json
            log.exception("attempt %d of %d failed", attempt, cfg.retries + 1)
            error = e
    return stack, {}, error, cfg.retries + 1


def _write_members(stack: Stack, test: dict[str, list[float]], error: Exception | None) -> list[dict[str, Any]]:
    """Every member's record, and its best.ckpt where a BestCheckpoint kept its best weights."""
    if error is not None:
        failed = {"status": rundir.FAILED, "error": f"{type(error).__name__}: {error}", "metrics": {}}
        return [failed | identity(m.cfg) for m in stack.members]
    best = _best_checkpoint(stack)
    records = []
    for k, m in enumerate(stack.members):
        records.append(member_record(stack, k, test))
        if best is not None and (weights := best.member_weights(k)) is not None:
            epoch = int(best.best_epoch[k])  # type: ignore[index]
            step = next((int(r["step"]) for r in stack.history.rows(k) if r["epoch"] == epoch), 0)
            best_state = checkpoints.member(stack.module, k, None, {}, weights, (epoch, step))
            checkpoints.save(rundir.checkpoint(m.run_dir, "best"), best_state)
    return records


def _resumable(candidates: list[Path], hashes: list[str]) -> Path | None:
    """The first of `candidates` written for these very members (and not weights only), else None. A file
    that cannot be read (truncated by a full disk or a kill) is named in one warning and not used."""
    unreadable = []
    for path in (p for p in candidates if p.is_file()):
        try:
            saved = checkpoints.load(path)
        except Exception as e:  # truncated, corrupt, or not a checkpoint: never executed (weights_only)
            unreadable.append(f"{path} is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})")
            continue
        if isinstance(saved, dict) and saved.get("members") == hashes and saved.get("optimizer", True) is not None:
            for reason in unreadable:
                log.warning("%s; resuming from %s", reason, path)
            return path
    for reason in unreadable:
        log.warning("%s; training from the start", reason)
    return None
