"""Faults cost nothing but their own time: killed runs resume exactly, a diverging run stops and says so.
(W&B without a network: tests/test_wandb_and_figures.py.)"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from reglab import rundir
from tests.conftest import CliProcess, train_run

RUN = [
    "trainer.max_epochs=150",
    "callbacks.model_checkpoint.every_n_epochs=30",
    "logger=none",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "data.n_samples=400",
    "model.hidden=[32,32]",
]


def _launch(run_dir: Path) -> CliProcess:
    return CliProcess([*RUN, f"hydra.run.dir={run_dir}"], cwd=run_dir.parent)


def _without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("wall_time_s",)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run no signal interrupts, trained once for both signals (in this process: the same code
    path as the command line's task, without a second start-up)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert train_run(run_dir, RUN, fast=False)["status"] == rundir.COMPLETED
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_metrics(tmp_path, sig, reference):
    killed = tmp_path / "killed"
    process = _launch(killed)
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next stretch of epochs, past the checkpoint
    process.send_signal(sig)
    process.wait(timeout=60)
    assert ckpt.exists() and not rundir.is_finished(killed), "killed too late to test resuming"
    assert rundir.read_metrics_json(killed)["status"] == rundir.RUNNING  # claimed by its config, not finished
    assert _launch(killed).wait(timeout=300) == 0  # the same command, the same run directory
    resumed, uninterrupted = rundir.read_metrics_json(killed), rundir.read_metrics_json(reference)
    assert resumed["status"] == "completed" and resumed["epochs"] == 150
    assert _without_timing(resumed) == _without_timing(uninterrupted)  # bit for bit
    assert (killed / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()


def test_a_diverging_single_run_stops_records_its_epoch_and_exits_3(tmp_path):
    from tests.conftest import run_cli

    # SGD with 2·lr·λ = 100 multiplies the weights by −99 every step: non-finite within 2 epochs.
    args = [
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "regularizer=l2",
        "regularizer.strength=500",
        "trainer.max_epochs=50",
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
    ]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-1000:]
    assert "diverged at epoch" in result.stderr and "Traceback" not in result.stderr
    record = rundir.read_metrics_json(tmp_path)
    assert (
        record["status"] == "diverged"
        and record["diverged_epoch"] < 5
        and record["epochs"] == record["diverged_epoch"] + 1
    )
    assert "test/acc" not in record["metrics"]  # a diverged model is not tested


def test_a_stack_over_the_address_space_cap_is_refused_by_the_estimate_in_one_line(tmp_path):
    """Under `ulimit -v` (a cluster job's cap) the estimate counts the cap, not the machine's memory."""
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    args = ["model.hidden=[9000,9000]", "logger=none"]
    done = subprocess.run(
        [sys.executable, "-m", "reglab.train", *args],
        cwd=tmp_path,
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: data.n_samples=1000, model.hidden=[9000, 9000] and 1 member(s) need about")
    assert "its cap) allows 3.0 GiB" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_allocation_that_fails_in_the_build_is_one_line_naming_the_way_out(tmp_path, monkeypatch):
    """What the estimate misses, torch's allocator refuses: said in one line, not its traceback."""
    from reglab import preflight
    from reglab.errors import ConfigError

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: 9 bytes")

    monkeypatch.setattr(preflight, "build", out_of_memory)
    with pytest.raises(ConfigError, match=r"does not fit in memory \(.*can't allocate memory.*\); train fewer") as e:
        train_run(tmp_path / "run", ["data.n_samples=100"])
    assert "\n" not in str(e.value)
