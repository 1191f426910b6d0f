"""The benchmark scripts run at toy size (`--quick`) and print their tables (docs/benchmarks.md).
`make bench-smoke` runs them (marker `bench`); CI runs it after `make test`.

No timing is asserted: only that each table has its columns and that every time and ratio in it is
a finite positive number, so a script that measures nothing, or divides by zero, fails here. Each
test launches a few fresh processes (≈ 7 s of imports each on a 2-core machine).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_script(name: str, cwd, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "scripts" / name), *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def table(output: str, first_header: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the body rows (as {column: cell}) of the Markdown table whose first column is
    `first_header`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    header = [cell.strip() for cell in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip().strip("|").split("|")))))
    return header, rows


def positive(cell: str) -> bool:
    value = float(cell)
    return math.isfinite(value) and value > 0


@pytest.mark.bench  # fresh processes: seconds of imports each
def test_single_run_benchmark_prints_reglab_beside_the_raw_loop(tmp_path):
    out = run_script("bench_single_run.py", tmp_path, "--quick").stdout
    header, rows = table(out, "batch")
    assert header == [
        "batch",
        "steps",
        "raw process s",
        "reglab process s",
        "reglab / raw",
        "goal",
        "status",
        "raw loop s",
        "reglab fit+test s",
        "val acc raw / reglab",
    ]
    assert [r["batch"] for r in rows] == ["32"]  # --quick: batch 32 only (the default run adds "full")
    for row in rows:
        assert all(positive(row[c]) for c in ("raw process s", "reglab process s", "reglab / raw", "raw loop s"))
        assert row["status"] in ("met", "not met")
        assert all(0 <= float(a) <= 1 for a in row["val acc raw / reglab"].split(" / "))


@pytest.mark.bench
def test_peers_benchmark_prints_the_main_job_beside_sklearn(tmp_path):
    # logger=csv: W&B's start and per-member figures would double the test's time; --profile is not run here
    out = run_script("bench_peers.py", tmp_path, "--quick", "--override", "logger=csv").stdout
    header, sides = table(out, "side")
    assert header == ["side", "runs s", "median s", "mean test acc", "note"]
    assert len(sides) == 2 and all(positive(s["median s"]) for s in sides)
    assert "none" in sides[0]["mean test acc"] and "l1" in sides[0]["mean test acc"]
    header, goals = table(out, "goal")
    assert header == ["goal", "ratio", "target", "status"]
    (goal,) = goals
    assert goal["goal"].startswith("1.") and positive(goal["ratio"]) and goal["status"] in ("met", "not met")


@pytest.mark.bench
def test_sweep_benchmark_prints_the_stack_beside_the_sequential_multirun(tmp_path):
    out = run_script("bench_sweep.py", tmp_path, "--quick", "--parts", "sweep").stdout
    header, (row,) = table(out, "members")
    assert header[:8] == ["members", "grid", "epochs", "stack s", "sequential s", "speed-up", "goal", "status"]
    assert row["members"] == "2" and all(positive(row[c]) for c in ("stack s", "sequential s", "speed-up"))


def test_sweep_benchmark_on_cuda_without_a_gpu_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: scripts/gpu_checks.sh runs the benchmark there")
    result = run_script("bench_sweep.py", tmp_path, "--device", "cuda", check=False)
    assert result.returncode != 0
    assert "sees no CUDA GPU" in result.stderr


@pytest.mark.bench
def test_chunk_memory_benchmark_prints_both_peaks_and_their_ratio(tmp_path):
    out = run_script("bench_chunk_memory.py", tmp_path, "--quick").stdout
    header, rows = table(out, "stack")
    assert header == ["stack", "setting", "peak RSS (MiB)", "wall (s)"]
    assert [r["setting"] for r in rows] == ["sweep.chunk=null", "sweep.chunk=1", ""]
    assert all(positive(r["peak RSS (MiB)"]) and positive(r["wall (s)"]) for r in rows)


@pytest.mark.bench
def test_cv_benchmark_prints_grid_search_beside_the_one_stack_cv(tmp_path):
    out = run_script("bench_cv.py", tmp_path, "--quick").stdout
    header, rows = table(out, "task")
    times = ["GridSearchCV s", "CV estimator s", "GridSearchCV / CV"]
    assert header == ["task", "grid", "fits (GridSearchCV)", *times, "same λ", "max Δ score"]
    assert [r["task"] for r in rows] == ["classification", "regression"]
    assert all(r["same λ"] == "yes" and float(r["max Δ score"]) < 1e-4 for r in rows)
    assert all(positive(r[c]) for r in rows for c in times)


@pytest.mark.bench
def test_startup_benchmark_prints_each_process_beside_an_empty_interpreter(tmp_path):
    out = run_script("bench_startup.py", tmp_path, "--quick").stdout
    header, rows = table(out, "what")
    assert header == ["what", "wall s", "peak MB", "wall / empty interpreter", "goal", "status"]
    assert rows[0]["what"] == "empty interpreter (baseline)" and len(rows) == 8
    assert all(positive(r[c]) for r in rows for c in ("wall s", "peak MB", "wall / empty interpreter"))
    assert "nothing left on disk: True" in out


@pytest.mark.bench
def test_wandb_benchmark_prints_reglabs_wandb_cost_beside_wandbs_own(tmp_path):
    out = run_script("bench_wandb.py", tmp_path, "--quick").stdout
    _, sides = table(out, "side")
    assert [r["side"] for r in sides] == ["main", "main_csv", "bare", "empty"]
    assert all(positive(r["median s"]) for r in sides)
    header, costs = table(out, "W&B cost of")
    assert header == ["W&B cost of", "s", "ratio", "goal", "status"] and len(costs) == 2
    assert all(positive(r["ratio"]) for r in costs)


@pytest.mark.bench
def test_step_benchmark_prints_reglab_beside_the_hand_written_step(tmp_path):
    out = run_script("bench_step.py", tmp_path, "--quick").stdout
    header, rows = table(out, "K")
    assert header == ["K", "reglab ms/step", "hand ms/step", "reglab / hand", "goal", "status"]
    assert [r["K"] for r in rows] == ["2"]
    assert all(positive(r[c]) for r in rows for c in ("reglab ms/step", "hand ms/step", "reglab / hand"))
