"""Sweeps: the main job, failed and diverged jobs, re-launching, Optuna."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from reglab import rundir
from reglab.errors import ConfigError
from reglab.multirun import claim_sweep_dir, sweep_grid
from reglab.rundir import GRID_JSON
from reglab.train import CONFIG_DIR
from tests.conftest import run_cli

QUIET = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def _runs(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: rundir.read_metrics_json(p.parent) for p in sweep_dir.glob("*/metrics.json")}


# Jobs 2 and 3 (seed 1) crash: a file stands where their checkpoints directory should be.
# SGD with 2·lr·λ = 100 multiplies the weights by −99 every step: job 1 diverges.
FAULTY = [
    "-m",
    "trainer.max_epochs=4",
    "data.n_samples=200",
    "model.hidden=[16]",
    "seed=0,1",
    "optimizer=sgd",
    "optimizer.lr=0.1",
    "regularizer=l2",
    "regularizer.strength=1e-3,500",
    "name=faulty",
    "hydra.sweep.subdir=job${hydra.job.num}",
]


@pytest.mark.slow
def test_a_sweep_survives_failed_and_diverged_jobs_and_relaunching_skips_finished_ones(tmp_path):
    args = [*FAULTY, *QUIET, f"paths.log_dir={tmp_path}"]
    blocked = [tmp_path / "multiruns" / "faulty" / f"job{n}" / "checkpoints" for n in (2, 3)]
    for path in blocked:
        path.parent.mkdir(parents=True)
        path.write_text("not a directory")
    first = run_cli(args, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = _runs(tmp_path / "multiruns" / "faulty")
    statuses = {k: v["status"] for k, v in runs.items()}
    assert sorted(statuses.values()) == ["completed", "diverged", "failed", "failed"], statuses
    diverged = next(v for v in runs.values() if v["status"] == "diverged")
    assert diverged["diverged_epoch"] is not None and diverged["strength"] == 500
    failed = [v for v in runs.values() if v["status"] == "failed"]
    assert all("checkpoints" in v["error"] and v["attempts"] == 2 for v in failed)
    summary = (tmp_path / "multiruns" / "faulty" / "summary.md").read_text()
    assert "failed" in summary and "diverged" in summary

    # Re-launch: the completed and the diverged job are skipped, the two failed ones run again.
    stamps = {k: (tmp_path / "multiruns" / "faulty" / k / "metrics.json").stat().st_mtime_ns for k in runs}
    for path in blocked:
        path.unlink()
    second = run_cli(args, cwd=tmp_path, timeout=300)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("skipped (force=true trains it again)") == 2
    after = {k: (tmp_path / "multiruns" / "faulty" / k / "metrics.json").stat().st_mtime_ns for k in runs}
    changed = sorted(runs[k]["status"] for k in runs if after[k] != stamps[k])
    assert changed == ["failed", "failed"]
    assert json.loads((tmp_path / "multiruns" / "faulty" / GRID_JSON).read_text())["regularizer.strength"] == [
        "0.001",
        "500",
    ]
    assert not list(tmp_path.rglob("*.pickle"))  # Hydra's job pickles only with hydra/callbacks=save_job_info


def _grid(overrides: list[str]) -> dict[str, list[str]]:
    """`sweep_grid` of the multirun `reglab-train -m <overrides>` (its config composed from each key's first value)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[o.split(",")[0] for o in overrides], return_hydra_config=True)
    OmegaConf.set_readonly(cfg, False)
    cfg.hydra.overrides.task = overrides
    return sweep_grid(cfg)


def test_a_sweep_directory_holds_one_grid_and_refuses_another_in_one_line(tmp_path):
    grid = _grid(["regularizer=l1", "regularizer.strength=1e-3,500", "seed=0,1", "logger=none"])
    assert grid == {"regularizer": ["'l1'"], "regularizer.strength": ["0.001", "500"], "seed": ["0", "1"]}
    # The same grid however it is written (1e-3 or 0.001, value order, keys that change no result): resumed.
    assert _grid(["seed=1,0", "regularizer.strength=500,0.001", "regularizer=l1", "logger=wandb", "force=true"]) == grid
    claim_sweep_dir(tmp_path, grid)
    claim_sweep_dir(tmp_path, grid)
    other = _grid(["regularizer=l1", "regularizer.strength=1e-3,0.01", "seed=0,1"])
    with pytest.raises(ConfigError) as refused:
        claim_sweep_dir(tmp_path, other)
    message = str(refused.value)
    assert (
        "holds the runs of another sweep (its grid differs in regularizer.strength)" in message and "name=" in message
    )
    assert "\n" not in message and json.loads((tmp_path / GRID_JSON).read_text()) == grid
    # An experiment's grid (the sweeper's params) is part of it.
    assert _grid(["experiment=l1_vs_none"])["regularizer"] == ["'l1'", "'none'"]


@pytest.mark.slow
def test_optuna_search_writes_the_best_lambda(tmp_path):
    args = [
        "experiment=lambda_sweep",
        "hparams_search=lambda_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "trainer.max_epochs=3",
        *QUIET,
        f"paths.log_dir={tmp_path}",
    ]
    result = run_cli(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = (tmp_path / "multiruns" / "lambda_sweep" / "optimization_results.yaml").read_text()
    assert "regularizer.strength" in results and "best_value" in results
    assert len(list((tmp_path / "multiruns" / "lambda_sweep").glob("*/metrics.json"))) == 3
