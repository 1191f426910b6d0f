"""Train one regularized MLP: `python -m reglab.train [overrides]` or `reglab-train`.

Validate the config; build data, model, regularizer, optimizer, callbacks, loggers and trainer;
fit; test; write the run directory (see `reglab.rundir`). A multirun (`-m`) runs this once per
job; a job that crashes or diverges is recorded and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import secrets
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.config import ConfigError, check_command_line, regularizer_name, task_of, validate

log = logging.getLogger("reglab.train")
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")
EXIT_CONFIG_ERROR, EXIT_DIVERGED = 2, 3  # a crash exits 1, with its traceback
SUMMARY_KEYS = (
    "train/acc", "val/acc", "test/acc", "val/gap", "test/gap", "train/loss", "val/loss", "test/loss",
    "val/r2", "test/r2", "train/penalty", "weights/l1", "weights/l2", "weights/zero_frac",
    "weights/small_frac", "weights/dead_units",
)  # fmt: skip

# A short random suffix: two runs started in the same second get different directories.
OmegaConf.register_new_resolver("run_suffix", lambda: secrets.token_hex(3), use_cache=True, replace=True)


def config_hash(cfg: DictConfig) -> str:
    """Identifies a job's config, so a re-launched sweep can tell a finished job from a changed one."""
    # Unresolved, so that paths derived from the run directory don't enter it.
    container = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))  # a DictConfig gives a dict
    for key in ("force", "paths"):  # neither changes what is trained
        container.pop(key, None)
    return hashlib.sha256(OmegaConf.to_yaml(container).encode()).hexdigest()[:16]


def environment() -> dict[str, str]:
    import lightning
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "device": device,
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the model `cfg` describes and write its run directory; return its metrics.json record.

    A completed or diverged run with the same config is not trained again (unless `force`); an interrupted
    one resumes from its last checkpoint; a crash is retried `retries` times from there, then
    recorded as `failed` (and re-raised, unless this is a job of a multirun).
    """
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13 deprecation noise
    run_dir = Path(cfg.paths.output_dir)
    fingerprint = config_hash(cfg)
    if not cfg.force and rundir.is_finished(run_dir):
        done = rundir.read_metrics_json(run_dir)
        if done.get("config_hash") == fingerprint:
            log.info("%s already %s; skipped (force=true trains it again)", run_dir, done["status"])
            return done

    started = time.perf_counter()
    for attempt in range(1, cfg.retries + 2):
        try:
            record = _fit_and_test(cfg, run_dir)
            break
        except Exception as e:  # recorded in metrics.json below
            log.exception("attempt %d of %d failed", attempt, cfg.retries + 1)
            error = e
    else:
        record = {"status": rundir.FAILED, "error": f"{type(error).__name__}: {error}", **_identity(cfg), "metrics": {}}
    record.update(attempts=attempt, wall_time_s=round(time.perf_counter() - started, 3), config_hash=fingerprint)
    record["environment"] = environment()
    rundir.write_metrics_json(run_dir, record)
    if record["status"] == rundir.COMPLETED and not _in_multirun():
        _write_run_figures(run_dir)
    if record["status"] == rundir.FAILED and not _in_multirun():
        raise error
    return record


def _identity(cfg: DictConfig) -> dict[str, Any]:
    """What a run is, read from its config alone: enough for the report even if nothing was built."""
    return {
        "name": cfg.name,
        "dataset": cfg.data.name,
        "task": task_of(cfg),
        "regularizer": regularizer_name(cfg),
        "strength": float(cfg.regularizer.strength),
        "seed": cfg.seed,
        "optimizer": str(cfg.optimizer._target_).rsplit(".", 1)[-1],
        "lr": float(cfg.optimizer.lr),
        "batch_size": cfg.data.batch_size,
    }


def _fit_and_test(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """One attempt: build everything, fit (resuming from checkpoints/last.ckpt if there is one),
    test unless the run diverged, and return the record for metrics.json."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from reglab.lightning.callbacks import CheckpointAtFitEnd, MetricsHistory
    from reglab.lightning.module import RegLabModule

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # after its import: no "GPU available" banners
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, in_features=datamodule.in_features, out_features=datamodule.out_features)
    regularizer = instantiate(cfg.regularizer)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = RegLabModule(
        model, regularizer, instantiate(cfg.optimizer), datamodule.task, scheduler, cfg.sparsity_threshold
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    at_fit_end = CheckpointAtFitEnd(last)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c] + [at_fit_end]
    history = next(c for c in callbacks if isinstance(c, MetricsHistory))
    loggers = [instantiate(c) for c in (cfg.logger or {}).values() if c]
    try:
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        hparams = {"regularizer_name": regularizer.name, "strength": regularizer.strength, "seed": cfg.seed}
        for logger in loggers:
            logger.log_hyperparams({**hparams, **cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))})

        trainer.fit(module, datamodule=datamodule, ckpt_path=last if last.is_file() else None, weights_only=True)
        # The record is built from the state the training process saved: under trainer=ddp_spawn
        # that process was a spawned worker, and this one got only its weights back.
        state = torch.load(last, map_location="cpu", weights_only=True)
        history.load_state_dict(state["callbacks"][history.state_key])
        module.diverged_epoch = state["callbacks"][at_fit_end.state_key]["diverged_epoch"]
        test_metrics = {}
        if module.diverged_epoch is None:
            trainer.test(module, datamodule=datamodule, verbose=False)
            test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}

        record = run_record(cfg, history.rows, module.diverged_epoch, test_metrics, model, datamodule.data)
        for logger in loggers:
            summary = getattr(getattr(logger, "experiment", None), "summary", None)
            if summary is not None:
                summary.update({"status": record["status"], **{f"final/{k}": v for k, v in record["metrics"].items()}})
        return record
    finally:
        for logger in loggers:
            finish = getattr(getattr(logger, "experiment", None), "finish", None)
            if finish is not None:
                finish()  # one W&B run per job, also inside a multirun


def run_record(
    cfg: DictConfig,
    rows: list[dict[str, float]],
    diverged_epoch: int | None,
    test_metrics: dict[str, float],
    model: Any,
    data: Any,
) -> dict[str, Any]:
    """metrics.json of a trained run (less what `train` adds: attempts, wall time, hash,
    environment), from its per-epoch rows, final model and data: the one format every run has."""
    from reglab.science.metrics import feature_l1, n_weights

    final = rows[-1] if rows else {}
    return {
        "status": rundir.DIVERGED if diverged_epoch is not None else rundir.COMPLETED,
        "error": None,
        "diverged_epoch": diverged_epoch,
        **_identity(cfg),
        "epochs": int(final.get("epoch", -1)) + 1,
        "steps": int(final.get("step", 0)),
        "metrics": {k: v for k, v in final.items() if k not in ("epoch", "step")} | test_metrics,
        "best_epoch": _best_epoch(rows, "val/acc" if "val/acc" in final else "val/loss"),
        "feature_l1": feature_l1(model),
        "support": data.support,
        "true_coef": data.coef,
        "n_weights": n_weights(model),
        "flipped_labels": data.flipped,
    }


def _write_run_figures(run_dir: Path) -> None:
    """The run's decision boundary and weight histogram (a sweep gets them in its report)."""
    from reglab.report import write_run_figures

    try:
        write_run_figures(run_dir)
    except Exception as e:  # a figure is not worth losing a finished run over
        log.warning("run figures not written: %s: %s", type(e).__name__, e)


def _best_epoch(rows: list[dict[str, float]], key: str) -> int | None:
    scored = [r for r in rows if key in r and r[key] == r[key]]  # drop NaN
    if not scored:
        return None
    pick = max if key.endswith("acc") else min
    return int(pick(scored, key=lambda r: r[key])["epoch"])


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def print_summary(record: dict[str, Any]) -> None:
    from reglab.tables import markdown_table

    metrics = record["metrics"]
    rows = [(k, metrics[k]) for k in SUMMARY_KEYS if k in metrics]
    title = f"{record['regularizer']} λ={record['strength']:g} on {record['dataset']}: {record['status']}"
    print(f"\n{title}\n{markdown_table(['metric', 'final'], rows)}\n")


def _discard_unfinished(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files, so a rejected config
    leaves nothing behind that looks like a run."""
    if run_dir.is_dir() and all(p.name in (".hydra", "train.log") for p in run_dir.iterdir()):
        shutil.rmtree(run_dir)


def command_line_error(args: list[str]) -> str | None:
    """The one-line error a bad command line gets before anything runs, or None if it is fine."""
    try:
        check_command_line(args, CONFIG_DIR)
    except ConfigError as e:
        return str(e)
    return None


def main() -> None:
    """Console entry point (`reglab-train`): check the command line, then hand it to Hydra."""
    error = command_line_error(sys.argv[1:])
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    if cfg.sweep.vectorize:  # the list-valued λ and seeds as stacked members of one run (reglab.sweep)
        return _vectorized_main(cfg)
    try:
        validate(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        _discard_unfinished(Path(cfg.paths.output_dir))
        sys.exit(EXIT_CONFIG_ERROR)
    record = train(cfg)
    if not _in_multirun():
        print_summary(record)
        if record["status"] == rundir.DIVERGED:
            print(
                f"error: training diverged at epoch {record['diverged_epoch']} (non-finite loss or weights)",
                file=sys.stderr,
            )
            sys.exit(EXIT_DIVERGED)
    metric = cfg.optimized_metric or ("val/r2" if record["task"] == "regression" else "val/acc")
    value = record["metrics"].get(metric)
    return float(value) if value is not None else float("nan")  # a sweeper (Optuna) records NaN as a failed trial


def _vectorized_main(cfg: DictConfig) -> float:
    from reglab.report import report
    from reglab.sweep import print_sweep_summary, train_vectorized

    try:
        records = train_vectorized(cfg)  # checks every member's config before it trains any
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        _discard_unfinished(Path(cfg.paths.output_dir))
        sys.exit(EXIT_CONFIG_ERROR)
    if not _in_multirun():
        report(Path(cfg.paths.output_dir), print_table=False)  # the members are runs: a multirun's report
        print_sweep_summary(records)  # with inputs still connected: sparsity along a λ path
        if records and all(r["status"] == rundir.DIVERGED for r in records):
            print("error: every member diverged (non-finite loss or weights)", file=sys.stderr)
            sys.exit(EXIT_DIVERGED)
    metric = cfg.optimized_metric or ("val/r2" if records[0]["task"] == "regression" else "val/acc")
    return max((r["metrics"].get(metric, float("nan")) for r in records), default=float("nan"))


if __name__ == "__main__":
    main()
