"""The report of a sweep (`reglab-report`): what it finds, what it writes, how it treats bad runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from reglab import rundir
from reglab.report import ReportOnMultirunEnd, log_images_to_wandb, report, write_run_figures
from tests.conftest import FAST, run_cli

SWEEP_FIGURES = (
    "accuracy_vs_lambda",
    "gap_vs_lambda",
    "sparsity_vs_lambda",
    "regularization_path",
    "decision_boundaries",
    "weight_histograms",
    "learning_curves",
)
COMPARED = ("train/acc", "val/acc", "test/acc", "val/gap", "weights/zero_frac", "weights/small_frac", "weights/l1")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """2 regularizers × 2 λ × 1 seed on 200 moons points, trained by the real command line, with
    the report callback registered as the lead registers it in configs/hydra."""
    tmp = tmp_path_factory.mktemp("sweep")
    args = [
        "-m",
        "regularizer=l1,l2",
        "regularizer.strength=1e-4,1e-2",
        "data.n_samples=200",
        "model.hidden=[16,16]",
        *FAST,
        f"hydra.sweep.dir={tmp / 'sweep'}",
        "++hydra.callbacks.report._target_=reglab.report.ReportOnMultirunEnd",
    ]
    result = run_cli(args, cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "sweep", result


def copy_of(sweep_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "sweep"
    shutil.copytree(sweep_dir, target, ignore=shutil.ignore_patterns("summary.*", "*.png"))
    return target


def run_dirs(directory: Path) -> list[Path]:
    return sorted(p.parent for p in directory.glob("*/metrics.json"))


def edit_record(run_dir: Path, **changes) -> dict:
    record = rundir.read_metrics_json(run_dir) | changes
    rundir.write_metrics_json(run_dir, record)
    return record


def read_summary_csv(directory: Path) -> list[dict[str, str]]:
    import csv

    with open(directory / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > 10_000, f"{path.name} is {path.stat().st_size} bytes"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert 300 <= width <= 4000 and 200 <= height <= 4000, (path.name, image.size)


@pytest.mark.slow
def test_report_finds_every_run_of_a_sweep(sweep, tmp_path):
    result = report(copy_of(sweep[0], tmp_path), print_table=False)
    assert len(result["runs"]) == 4
    assert sorted((r["regularizer"], r["lambda"], r["seed"]) for r in result["runs"]) == [
        ("l1", 1e-4, 0),
        ("l1", 1e-2, 0),
        ("l2", 1e-4, 0),
        ("l2", 1e-2, 0),
    ]
    assert {r["status"] for r in result["runs"]} == {rundir.COMPLETED}
    assert result["incomplete"] == []


@pytest.mark.slow
def test_summary_csv_numbers_equal_each_runs_metrics_json(sweep):
    sweep_dir = sweep[0]
    rows = {row["run"]: row for row in read_summary_csv(sweep_dir)}
    assert len(rows) == 4
    for run_dir in run_dirs(sweep_dir):
        record = rundir.read_metrics_json(run_dir)
        row = rows[run_dir.name]
        assert (row["regularizer"], float(row["lambda"]), int(row["seed"])) == (
            record["regularizer"],
            record["strength"],
            record["seed"],
        )
        for key in COMPARED:
            assert float(row[key]) == pytest.approx(record["metrics"][key], abs=1e-6), (run_dir.name, key)


@pytest.mark.slow
def test_every_figure_is_a_readable_png(sweep):
    for name in SWEEP_FIGURES:
        assert_png(sweep[0] / f"{name}.png")
    summary = (sweep[0] / "summary.md").read_text()
    assert all(f"({name}.png)" in summary for name in SWEEP_FIGURES)


@pytest.mark.slow
def test_multirun_end_prints_train_val_gap_small_zero_and_l1_per_model(sweep):
    stdout = sweep[1].stdout
    header = next(line for line in stdout.splitlines() if line.startswith("| regularizer"))
    for column in ("train acc", "val acc", "gap", "abs(w)<0.001", "w=0", "L1"):
        assert f" {column} " in header, (column, header)
    assert sum(line.startswith(("| l1 ", "| l2 ")) for line in stdout.splitlines()) == 4


@pytest.mark.slow
def test_mean_over_seeds_averages_completed_runs_and_never_failed_or_diverged(sweep, tmp_path):
    directory = copy_of(sweep[0], tmp_path)
    source = next(d for d in run_dirs(directory) if "regularizer=l1," in d.name and "strength=0.0001" in d.name)
    original = rundir.read_metrics_json(source)["metrics"]["val/acc"]
    for name, changes in {
        "seed1": {"seed": 1, "metrics": {**rundir.read_metrics_json(source)["metrics"], "val/acc": 0.5}},
        "diverged": {"seed": 2, "status": rundir.DIVERGED, "diverged_epoch": 3, "metrics": {"val/acc": 0.0}},
        "failed": {"seed": 3, "status": rundir.FAILED, "error": "RuntimeError: boom", "metrics": {"val/acc": 0.0}},
    }.items():
        shutil.copytree(source, directory / name)
        edit_record(directory / name, **changes)

    result = report(directory, print_table=False)

    assert sorted(r["status"] for r in result["runs"]) == sorted(
        [rundir.COMPLETED] * 5 + [rundir.DIVERGED, rundir.FAILED]
    )
    (group,) = [g for g in result["aggregate"]["moons"] if g["regularizer"] == "l1" and g["lambda"] == 1e-4]
    assert group["n"] == 2
    assert group["val/acc"] == pytest.approx((original + 0.5) / 2, abs=1e-9)
    summary = (directory / "summary.md").read_text()
    failures = summary.split("Failed and diverged runs")[1]
    assert "| diverged " in failures and "diverged at epoch 3" in failures and "RuntimeError: boom" in failures


@pytest.mark.slow
def test_half_written_run_is_skipped_with_a_warning_and_counted_incomplete(sweep, tmp_path, capsys):
    directory = copy_of(sweep[0], tmp_path)
    for name in ("no_metrics", "bad_json"):
        shutil.copytree(run_dirs(directory)[0], directory / name)
    (directory / "no_metrics" / "metrics.json").unlink()
    (directory / "bad_json" / "metrics.json").write_text('{"status": "compl')

    result = report(directory, print_table=False)

    assert len(result["runs"]) == 4 and sorted(result["incomplete"]) == ["bad_json", "no_metrics"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2 and any("no_metrics: no metrics.json" in w for w in warnings)
    assert "2 incomplete" in (directory / "summary.md").read_text()
    assert len(read_summary_csv(directory)) == 4


def _report_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reglab.report", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_empty_directory_exits_2_with_one_line_and_no_traceback(tmp_path):
    (tmp_path / "not_a_run").mkdir()
    result = _report_cli([str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: no run in")
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("summary.*"))


def test_nonexistent_path_exits_2_with_one_line(tmp_path):
    result = _report_cli([str(tmp_path / "missing")])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_single_run_directory_gets_boundary_histogram_and_learning_curves(sweep, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs(sweep[0])[0], run_dir)

    result = report(run_dir, print_table=False)

    assert sorted(p.name for p in result["figures"]) == [
        "decision_boundary.png",
        "learning_curves.png",
        "weight_histogram.png",
    ]
    for path in result["figures"]:
        assert_png(path)
    assert len(read_summary_csv(run_dir)) == 1


@pytest.mark.slow
def test_write_run_figures_writes_boundary_and_histogram_into_the_run(sweep, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs(sweep[0])[0], run_dir, ignore=shutil.ignore_patterns("*.png"))
    write_run_figures(run_dir)
    assert sorted(p.name for p in run_dir.glob("*.png")) == ["decision_boundary.png", "weight_histogram.png"]
    for path in run_dir.glob("*.png"):
        assert_png(path)


@pytest.mark.slow
def test_runs_of_two_tasks_are_reported_separately_and_said_so_in_one_line(sweep, tmp_path, capsys):
    directory = copy_of(sweep[0], tmp_path)
    shutil.copytree(run_dirs(directory)[0], directory / "regression")
    metrics = {"train/r2": 0.9, "val/r2": 0.8, "val/gap": 0.1, "train/loss": 0.1, "val/loss": 0.2}
    edit_record(directory / "regression", dataset="sparse_regression", task="regression", metrics=metrics)

    result = report(directory, print_table=False)

    notes = [line for line in capsys.readouterr().err.splitlines() if "studies" in line]
    assert len(notes) == 1 and "sparse_regression" in notes[0] and "regression" in notes[0]
    assert set(result["aggregate"]) == {"moons", "sparse_regression"}
    assert result["aggregate"]["sparse_regression"][0]["val/r2"] == pytest.approx(0.8)
    assert (directory / "accuracy_vs_lambda_moons.png").is_file()
    assert (directory / "weight_histograms_sparse_regression.png").is_file()
    assert not (directory / "accuracy_vs_lambda.png").exists()
    summary = (directory / "summary.md").read_text()
    assert "## moons (binary)" in summary and "## sparse_regression (regression)" in summary


def test_figures_go_to_an_active_wandb_run_only(tmp_path, monkeypatch):
    class FakeWandb:
        def __init__(self, run):
            self.run, self.logged = run, []

        def log(self, data):
            self.logged.append(data)

        @staticmethod
        def Image(path):  # noqa: N802 (wandb's name)
            return ("image", path)

    figure = tmp_path / "accuracy_vs_lambda.png"
    figure.write_bytes(b"\x89PNG")
    inactive, active = FakeWandb(run=None), FakeWandb(run=object())
    monkeypatch.setitem(sys.modules, "wandb", inactive)
    log_images_to_wandb([figure])
    monkeypatch.setitem(sys.modules, "wandb", active)
    log_images_to_wandb([figure])
    assert inactive.logged == []
    assert active.logged == [{"report/accuracy_vs_lambda": ("image", str(figure))}]


def test_multirun_end_callback_reports_a_one_line_error_for_an_empty_sweep(tmp_path, capsys):
    from omegaconf import OmegaConf

    ReportOnMultirunEnd().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no run in")


def test_a_long_study_label_gives_figure_names_the_file_system_takes(tmp_path):
    """Many differing config values make a long study label: its figure names are cut and hashed
    (two such studies still get different names), never dropped for exceeding 255 bytes."""
    from reglab.report import figure_suffix

    long = ", ".join(f"data.key_{i}=value_{i}" for i in range(40))
    a, b = figure_suffix(long), figure_suffix(long + "x")
    assert a != b and len(a.encode()) <= 130 and figure_suffix("moons, optimizer.lr=0.01") == "_moons_optimizer.lr=0.01"
    (tmp_path / f"sparsity_vs_lambda{a}.png").write_bytes(b"")  # would raise OSError: File name too long
