"""reglab from Python: train as `reglab-train <overrides>` would, into a run directory (`run`) or in
memory (`train_in_memory`, what the scikit-learn estimators fit with). One job: use the command line
for `-m`. The config is Hydra's composition of the overrides, composed once for every set of overrides
that differs only in the data handed over (`reglab.science.files.MEMORY` paths)."""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from reglab import rundir
from reglab.config import CONFIG_DIR
from reglab.errors import ConfigError

__all__ = ["run", "train_in_memory"]


def run(
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    data: Any = None,
    target: Any = None,
    init: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Train and return each member's metrics.json record: `reglab.run(["regularizer=l1",
    "regularizer.strength=[0,1e-3]"])`. The run is written to `run_dir` (default: a new directory
    under `logs/runs/`). `data`: `(X, y)` arrays, or a DataFrame with its `target` column, trained on
    as `data=file` reads a table (held in memory, `data.path=memory:<its sha256>`). `init`: each
    member's initial weights, in member order (a K = 1 `MLP.state_dict()`, as `load_run(...).model` has)."""
    from reglab.fit import fit

    with _data(overrides, data, target) as overrides:
        cfg = _job_config(overrides, run_dir)
        output = Path(cfg.paths.output_dir)
        (output / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output / ".hydra" / "config.yaml")  # as Hydra does before a job starts
        with _frozen_gc():
            try:
                return fit(cfg, list(overrides), init=init)
            except ConfigError:  # refused before any work: no directory that looks like a run is left
                rundir.remove_unused(output, Path(cfg.paths.log_dir).resolve())
                raise


def train_in_memory(
    overrides: Sequence[str] = (), data: Any = None, target: Any = None, init: list[dict[str, Any]] | None = None
) -> list[Any]:
    """Train and return each member as a `reglab.runs.TrainedRun`, writing nothing to disk: no run
    directory, checkpoint or metrics file (`reglab.fit.fit_in_memory`; its record holds its metrics.csv
    rows as `history`). A member's `best` is the
    TrainedRun of its best weights where `callbacks=best_checkpoint` (or `early_stopping`) kept them.
    The arguments are `run`'s."""
    from reglab.fit import fit_in_memory
    from reglab.runs import TrainedRun

    with _data(overrides, data, target) as overrides:
        cfg = _job_config(overrides, None, in_memory=True)
        with _frozen_gc():
            records = fit_in_memory(cfg, init)
    trained = []
    for record in records:
        model, best = record.pop("model"), record.pop("best_model")
        config = record.pop("cfg")
        run = TrainedRun.of(model, config, record)
        run.best = None if best is None else TrainedRun.of(best, config, record)
        trained.append(run)
    return trained


@contextmanager
def _data(overrides: Sequence[str], data: Any, target: Any) -> Iterator[list[str]]:
    """`overrides` with the data handed over as `data=file` held in memory, for as long as it trains."""
    if data is None:
        yield list(overrides)
        return
    from reglab.science import files

    x, y = data if isinstance(data, tuple) else (data, None)
    path, _ = files.register(x, y, target)
    try:
        yield ["data=file", f"data.path={path}", *overrides]
    finally:
        files.unregister(path)


def _job_config(overrides: list[str], run_dir: str | Path | None, in_memory: bool = False) -> DictConfig:
    """The composed config, set up as Hydra sets up a job's (`${hydra:…}` values resolve), writing into
    `run_dir` (default: Hydra's run directory; in memory: that path, never made)."""
    from hydra.core.hydra_config import HydraConfig

    cfg = _compose(overrides, cached=run_dir is not None or in_memory)
    output = Path(run_dir) if run_dir is not None else Path(cfg.hydra.run.dir)
    cfg.hydra.runtime.output_dir = str(output.resolve())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@contextmanager
def _frozen_gc() -> Iterator[None]:
    """fit's gc.collect() after each chunk scans every object of the process, half a second in a
    notebook with torch and scikit-learn loaded; frozen, the objects that were there are skipped."""
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()


_COMPOSED: dict[tuple[str, ...], DictConfig] = {}


def _compose(overrides: list[str], cached: bool) -> DictConfig:
    """Hydra's composition of `overrides`; with data from Python and `cached`, composed once for
    every path of the data (the only override that differs between such fits), set afterwards.
    (Not cached otherwise: a default run directory is named by the time it is composed.)"""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from reglab.science.files import MEMORY

    memory = [o for o in overrides if o.startswith(f"data.path={MEMORY}")] if cached else []
    key = tuple(o for o in overrides if o not in memory)
    if memory and key in _COMPOSED:
        cfg = copy.deepcopy(_COMPOSED[key])
        cfg.data.path = memory[-1].split("=", 1)[1]
        return cfg
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    if memory:
        if len(_COMPOSED) > 32:
            _COMPOSED.clear()
        _COMPOSED[key] = copy.deepcopy(cfg)
    return cfg
