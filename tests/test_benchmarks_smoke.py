"""The benchmark scripts run at toy size (`--quick`) and print their tables. No timing is asserted."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys

import pytest

import reglab.train
from tests.conftest import ROOT

DISPATCHES = "train_vectorized" in inspect.getsource(reglab.train)


def run_script(name: str, cwd, *args: str) -> str:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "scripts" / name), "--quick", "--threads", "1", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(output: str, first_header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with `first_header`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    body = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        body.append([cell.strip() for cell in line.strip("|").split("|")])
    return body


@pytest.mark.slow  # a fresh Python process: ≈ 5 s of imports before the toy runs
def test_single_run_benchmark_prints_reglab_beside_the_raw_loop(tmp_path):
    out = run_script("bench_single_run.py", tmp_path)
    rows = table_rows(out, "batch")
    assert [r[0] for r in rows] == ["32", "full"]
    assert all(float(r[-1]) < 1e-5 for r in rows)  # the same steps: the same final weights


@pytest.mark.slow
def test_peers_benchmark_prints_sklearn_beside_reglab(tmp_path):
    out = run_script("bench_peers.py", tmp_path)
    rows = table_rows(out, "λ")
    assert len(rows) == 2 and all(0 <= float(r[3]) <= 1 and 0 <= float(r[5]) <= 1 for r in rows)
    assert len(table_rows(out, "trainer")) == 3
    if importlib.util.find_spec("tensorflow") is None:
        assert "keras: not installed" in out


@pytest.mark.slow
@pytest.mark.skipif(not DISPATCHES, reason="reglab.train.main does not dispatch sweep.vectorize=true yet")
def test_sweep_benchmark_prints_speed_up_and_efficiency(tmp_path):
    out = run_script("bench_sweep.py", tmp_path)
    (row,) = table_rows(out, "members")
    assert row[0] == "4" and float(row[4]) > 0
    (efficiency,) = table_rows(out, "K")
    assert 0 < float(efficiency[-1]) < 1.5
