"""The report of a sweep (`reglab-report`): what it finds, what it writes, how it treats bad runs, and
the aggregation it is made of (`reglab.runs`) against hand-computed values."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from reglab import rundir
from reglab.report import ReportOnMultirunEnd, log_images_to_wandb, report, write_run_figures
from reglab.runs import Run, flatten, mean_ci, results_table, seed_groups, varying_keys
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


# The aggregation the report is made of (reglab.runs): hand-computed values, no training ----------


T_975_3 = 3.182446305284263  # Student t quantile, 0.975, 3 degrees of freedom (tables)


T_95_3 = 2.353363434801823  # 0.95, 3 degrees of freedom


def test_mean_ci_is_the_student_t_interval_computed_by_hand():
    x = np.array([1.0, 2.0, 3.0, 6.0])  # mean 3, s² = (4 + 1 + 0 + 9)/3 = 14/3
    mean, half = mean_ci(x)
    assert mean == 3.0
    assert half == pytest.approx(T_975_3 * math.sqrt(14 / 3) / 2, rel=1e-12)
    assert mean_ci(x, level=0.9)[1] == pytest.approx(T_95_3 * math.sqrt(14 / 3) / 2, rel=1e-12)
    # Non-finite values are left out before n is counted.
    mean, half = mean_ci(np.array([1.0, math.nan, 2.0, math.inf, 3.0, 6.0]))
    assert (mean, half) == pytest.approx((3.0, T_975_3 * math.sqrt(14 / 3) / 2), rel=1e-12)
    # Two values: t(0.975, 1) = 12.706204736174698, s = |a − b|/√2.
    assert mean_ci([1.0, 2.0])[1] == pytest.approx(12.706204736174698 * (1 / math.sqrt(2)) / math.sqrt(2), rel=1e-12)


def test_mean_ci_of_one_value_and_of_none():
    mean, half = mean_ci([2.5, math.nan])
    assert mean == 2.5 and math.isnan(half)
    mean, half = mean_ci([math.nan])
    assert math.isnan(mean) and math.isnan(half)
    mean, half = mean_ci([])
    assert math.isnan(mean) and math.isnan(half)
    # A metric missing from a record (JSON null) is a None: left out like NaN.
    assert mean_ci([1.0, None, 2.0, 3.0, 6.0]) == pytest.approx((3.0, T_975_3 * math.sqrt(14 / 3) / 2), rel=1e-12)


def test_flatten_gives_dotted_keys_for_every_leaf():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}
    assert flatten(3, "x.") == {"x": 3}
    assert flatten({}) == {}


CONFIG = {
    "seed": 0,
    "name": "a",
    "regularizer": {"name": "l1", "strength": 0.1},
    "optimizer": {"lr": 0.01},
    "logger": {"project": "p"},
}


def _run(regularizer: str, strength: float, seed: int, status: str = rundir.COMPLETED, name: str = "", **config) -> Run:
    """A Run with its config set in memory (no files)."""
    record = {"status": status, "regularizer": regularizer, "strength": strength, "seed": seed}
    record |= {"dataset": "moons", "task": "binary", "metrics": {"val/acc": 0.5 + seed / 10}}
    run = Run(Path("/nonexistent"), name or f"{regularizer}-{strength}-{seed}", record)
    cfg = OmegaConf.merge(CONFIG, {"seed": seed, "regularizer": {"name": regularizer, "strength": strength}}, config)
    run.__dict__["plain_config"] = OmegaConf.to_container(
        cfg
    )  # what the cached property would read from .hydra/config.yaml
    return run


def test_seed_groups_keeps_completed_runs_by_regularizer_and_lambda_in_report_order(capsys):
    runs = [
        _run("l2", 0.1, 1),
        _run("l1", 0.01, 1),
        _run("l1", 0.1, 0),
        _run("l1", 0.01, 0),
        _run("l1", 0.01, 2, status=rundir.FAILED),
        _run("l1", 0.01, 3, status=rundir.DIVERGED),
        _run("none", 0.0, 0),
    ]
    groups = seed_groups(runs)
    assert list(groups) == [("none", 0.0), ("l1", 0.01), ("l1", 0.1), ("l2", 0.1)]
    assert [r.seed for r in groups[("l1", 0.01)]] == [0, 1]
    assert [len(g) for g in groups.values()] == [1, 2, 1, 1]
    assert capsys.readouterr().err == ""


def test_seed_groups_keeps_one_baseline_per_seed_and_averages_other_twins_with_a_warning(capsys):
    # `none` at two λ (unused): one experiment, one run per seed, no warning.
    runs = [_run("none", 0.0, 0), _run("none", 0.5, 0, name="b"), _run("none", 0.0, 1)]
    groups = seed_groups(runs)
    assert list(groups) == [("none", 0.0)]
    assert [r.seed for r in groups[("none", 0.0)]] == [0, 1]
    assert capsys.readouterr().err == ""
    # `none` twins that differ in more than λ are averaged, with the difference named.
    groups = seed_groups([_run("none", 0.0, 0), _run("none", 0.0, 0, name="b", optimizer={"lr": 0.1})])
    assert len(groups[("none", 0.0)]) == 2
    assert "2 runs of none at λ=0, seed 0 differ in optimizer.lr;" in capsys.readouterr().err
    # Twins of a regularizer that uses λ: both kept, whatever they differ in; keys outside training ignored.
    runs = [_run("l1", 0.1, 0), _run("l1", 0.1, 0, name="b", optimizer={"lr": 0.1, "b": 1}, logger={"project": "q"})]
    groups = seed_groups(runs)
    assert len(groups[("l1", 0.1)]) == 2
    err = capsys.readouterr().err
    assert (
        "2 runs of l1 at λ=0.1, seed 0 differ in optimizer.b, optimizer.lr; they are averaged together like seeds"
        in err
    )
    # Identical twins: said so.
    seed_groups([_run("l1", 0.1, 0), _run("l1", 0.1, 0, name="b"), _run("l1", 0.1, 1)])
    err = capsys.readouterr().err
    assert "2 runs of l1 at λ=0.1, seed 0 have the same config (one run copied twice?)" in err
    assert err.count("warning:") == 1


def test_varying_keys_lists_only_training_keys_that_differ():
    runs = [
        _run("l1", 0.1, 0, name="x"),
        _run("l1", 0.2, 1, name="y", logger={"project": "q"}),
        _run("l1", 0.1, 0, name="z", optimizer={"lr": [0.1]}),
    ]
    assert varying_keys(runs) == ["optimizer.lr", "regularizer.strength", "seed"]
    assert varying_keys(runs[:1]) == []
    # Interpolations are compared as written, never resolved (Hydra's resolvers are not registered here).
    written = {"paths": {"output_dir": "${hydra:runtime.output_dir}", "log": "${optimizer.lr}"}}
    runs = [_run("l1", 0.1, 0, **written), _run("l1", 0.1, 0, optimizer={"lr": 0.5}, **written)]
    assert varying_keys(runs) == ["optimizer.lr"]
    # 1 and 1.0 are different values as written in a config: repr tells them apart
    assert varying_keys([_run("l1", 0.1, 0, optimizer={"lr": 1}), _run("l1", 0.1, 0, optimizer={"lr": 1.0})]) == [
        "optimizer.lr"
    ]


def _write_run(directory: Path, name: str, record: dict, config: dict) -> Path:
    run_dir = directory / name
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(config), run_dir / ".hydra" / "config.yaml")
    rundir.write_metrics_json(run_dir, record)
    return run_dir


def test_results_table_has_one_row_per_run_with_varying_keys_status_metrics_and_dir(tmp_path):
    common = {"dataset": "moons", "task": "binary"}
    for name, reg, lam, seed, status, lr in [
        ("b", "l1", 0.1, 1, rundir.COMPLETED, 0.01),
        ("a", "l1", 0.01, 0, rundir.DIVERGED, 0.01),
        ("c", "none", 0.0, 0, rundir.COMPLETED, 0.1),
    ]:
        record = {"status": status, "regularizer": reg, "strength": lam, "seed": seed, **common}
        record["metrics"] = {"val/acc": 0.9 - lam, "weights/l1": 10 * seed}
        config = {**CONFIG, "seed": seed, "regularizer": {"name": reg, "strength": lam}, "optimizer": {"lr": lr}}
        config["paths"] = {"output_dir": "${hydra:runtime.output_dir}"}
        config["data"] = {"lr": "${optimizer.lr}" if name == "c" else 0.01}
        _write_run(tmp_path, name, record, config)
    (tmp_path / "half" / ".hydra").mkdir(parents=True)  # no metrics.json: not a row
    (tmp_path / "half" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    table = results_table(tmp_path)
    assert list(table.columns) == [
        "data.lr",
        "optimizer.lr",
        "regularizer.name",
        "regularizer.strength",
        "seed",
        "regularizer",
        "strength",
        "status",
        "val/acc",
        "weights/l1",
        "run_dir",
    ]
    # run order: none first, then l1 by λ
    assert table["run_dir"].tolist() == [str(tmp_path / n) for n in ("c", "a", "b")]
    assert table["status"].tolist() == [rundir.COMPLETED, rundir.DIVERGED, rundir.COMPLETED]
    assert table["optimizer.lr"].tolist() == [0.1, 0.01, 0.01]
    assert table["data.lr"].tolist() == ["${optimizer.lr}", 0.01, 0.01]  # as written, not resolved
    assert table["strength"].tolist() == [0.0, 0.01, 0.1]
    assert table["seed"].tolist() == [0, 0, 1]
    assert table["val/acc"].tolist() == pytest.approx([0.9, 0.89, 0.8])
    assert table["weights/l1"].tolist() == [0, 0, 10]


def test_a_runs_config_reads_as_omegaconf_load_reads_it(tmp_path):
    """`runs.read_config` (libyaml) gives what OmegaConf.load gives: 1e-3 a float, a date a string, ${…} kept."""
    from reglab.rundir import read_config

    text = "a: 1e-3\nb: 2020-01-01\nc: 1.0e-06\nd: ${a}\ne: null\nf: [1, .5, x]\ng: {h: true, i: '007'}\n"
    (tmp_path / "config.yaml").write_text(text)
    plain = read_config(tmp_path / "config.yaml")
    assert plain == OmegaConf.to_container(OmegaConf.load(tmp_path / "config.yaml"), resolve=False)
    assert plain["a"] == 0.001 and plain["b"] == "2020-01-01" and plain["d"] == "${a}"
    (tmp_path / "list.yaml").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="not a mapping"):
        read_config(tmp_path / "list.yaml")
