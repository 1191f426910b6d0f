"""Sweeps: the main job, failed and diverged jobs, re-launching, Optuna."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from reglab import rundir
from tests.conftest import run_cli

QUIET = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def _runs(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: rundir.read_metrics_json(p.parent) for p in sweep_dir.glob("*/metrics.json")}


@pytest.mark.slow
def test_main_job_reproduces_the_article_and_its_report_matches_the_runs(tmp_path):
    result = run_cli(["experiment=l1_vs_none", *QUIET, f"paths.log_dir={tmp_path}"], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sweep = tmp_path / "multiruns" / "l1_vs_none"
    runs = {r["regularizer"]: r for r in _runs(sweep).values()}
    assert sorted(runs) == ["l1", "none"] and runs["l1"]["strength"] == 1e-3
    none, l1 = runs["none"]["metrics"], runs["l1"]["metrics"]
    # The article's claims, as numbers: the unregularized network fits its noisy training set
    # better, generalizes worse, and has almost no weights near zero; L1 puts most weights there.
    assert none["train/acc"] > l1["train/acc"]
    assert l1["val/acc"] > none["val/acc"] + 0.02 and l1["test/acc"] > none["test/acc"]
    assert none["val/gap"] > l1["val/gap"] + 0.05
    assert l1["weights/small_frac"] > 0.5 > 50 * none["weights/small_frac"]
    assert l1["weights/l1"] < 0.1 * none["weights/l1"]
    # The printed table and summary.csv carry the same numbers as metrics.json.
    assert "| none" in result.stdout and "| l1" in result.stdout
    with open(sweep / "summary.csv") as f:
        rows = {r["regularizer"]: r for r in csv.DictReader(f)}
    for name, metrics in (("none", none), ("l1", l1)):
        for key in ("train/acc", "val/acc", "val/gap", "weights/small_frac", "weights/zero_frac", "weights/l1"):
            assert float(rows[name][key]) == pytest.approx(metrics[key], rel=1e-6), (name, key)
    for figure in ("decision_boundaries", "weight_histograms", "learning_curves"):
        assert (sweep / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"


# scheduler.step_size=0 makes StepLR divide by zero at the first epoch's end: a crash.
# SGD with 2·lr·λ = 100 multiplies the weights by −99 every step: a divergence.
FAULTY = ["-m", "trainer.max_epochs=4", "data.n_samples=200", "model.hidden=[16]", "scheduler=step", "scheduler.step_size=100,0",
          "optimizer=sgd", "optimizer.lr=0.1", "regularizer=l2", "regularizer.strength=1e-3,500", "name=faulty"]  # fmt: skip


@pytest.mark.slow
def test_a_sweep_survives_failed_and_diverged_jobs_and_relaunching_skips_finished_ones(tmp_path):
    args = [*FAULTY, *QUIET, f"paths.log_dir={tmp_path}"]
    first = run_cli(args, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    runs = _runs(tmp_path / "multiruns" / "faulty")
    statuses = {k: v["status"] for k, v in runs.items()}
    assert sorted(statuses.values()) == ["completed", "diverged", "failed", "failed"], statuses
    diverged = next(v for v in runs.values() if v["status"] == "diverged")
    assert diverged["diverged_epoch"] is not None and diverged["strength"] == 500
    failed = [v for v in runs.values() if v["status"] == "failed"]
    assert all("ZeroDivisionError" in v["error"] and v["attempts"] == 2 for v in failed)
    summary = (tmp_path / "multiruns" / "faulty" / "summary.md").read_text()
    assert "failed" in summary and "diverged" in summary

    # Re-launch: the completed and the diverged job are skipped, the two failed ones run again.
    stamps = {k: (tmp_path / "multiruns" / "faulty" / k / "metrics.json").stat().st_mtime_ns for k in runs}
    second = run_cli(args, cwd=tmp_path, timeout=300)
    assert second.returncode == 0
    assert (second.stdout + second.stderr).count("skipped (force=true trains it again)") == 2
    after = {k: (tmp_path / "multiruns" / "faulty" / k / "metrics.json").stat().st_mtime_ns for k in runs}
    changed = sorted(runs[k]["status"] for k in runs if after[k] != stamps[k])
    assert changed == ["failed", "failed"]


@pytest.mark.slow
def test_optuna_search_writes_the_best_lambda(tmp_path):
    args = ["experiment=lambda_sweep", "hparams_search=lambda_optuna", "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=2", "trainer.max_epochs=3", *QUIET, f"paths.log_dir={tmp_path}"]  # fmt: skip
    result = run_cli(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = (tmp_path / "multiruns" / "lambda_sweep" / "optimization_results.yaml").read_text()
    assert "regularizer.strength" in results and "best_value" in results
    assert len(list((tmp_path / "multiruns" / "lambda_sweep").glob("*/metrics.json"))) == 3
