"""A run directory holds exactly what its config trained, and reading it never runs code."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from reglab import rundir
from reglab.errors import ConfigError
from reglab.fit import fit
from reglab.report import report
from reglab.runs import find_runs, load_model
from tests.conftest import FAST, make_config, run_cli, train_run

SMALL = ["data.n_samples=200", "model.hidden=[8]", "trainer.max_epochs=3"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    return run_dir, train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.001"])


def _copy(run: tuple[Path, dict], tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run[0], target)
    return target


def test_relaunch_with_another_lambda_is_refused_naming_the_key(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    before = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match=r"another config \(it differs in regularizer.strength\).*force=true"):
        train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.01"])
    assert (run_dir / "metrics.json").read_bytes() == before  # untouched
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").regularizer.strength == 0.001  # the old config restored


def test_a_refused_relaunch_from_the_command_line_rewrites_none_of_the_runs_hydra_files(finished, tmp_path):
    """Refused before Hydra writes its .hydra/ files (`reglab.multirun.Preflight.on_run_start`):
    the directory still says what it trained."""
    run_dir = _copy(finished, tmp_path)
    for name in ("hydra.yaml", "overrides.yaml"):  # as Hydra wrote them when the run trained
        (run_dir / ".hydra" / name).write_text(f"# {name} of the finished run\n")
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    args = [*FAST, *SMALL, "regularizer=l1", "regularizer.strength=0.01", f"hydra.run.dir={run_dir}"]
    done = run_cli(args, cwd=tmp_path)
    assert done.returncode == 2 and "holds a run of another config" in done.stderr, done.stderr
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_the_same_config_is_skipped_and_force_retrains_from_scratch(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    stamp = (run_dir / "metrics.json").stat().st_mtime_ns
    again = train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.001"])
    assert (run_dir / "metrics.json").stat().st_mtime_ns == stamp and again["metrics"] == finished[1]["metrics"]
    forced = train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.01", "force=true"])
    assert forced["strength"] == 0.01 and forced["epochs"] == 3  # all three epochs trained again, not resumed
    assert forced["metrics"]["weights/l1"] < finished[1]["metrics"]["weights/l1"]  # λ × 10: smaller weights
    assert len(rundir.read_metrics_csv(run_dir)) == 3


def test_a_truncated_checkpoint_is_named_and_the_run_restarts(finished, tmp_path, caplog):
    run_dir = _copy(finished, tmp_path)
    (run_dir / "metrics.json").unlink()  # an interrupted run: no metrics.json, (now broken) checkpoints
    ckpts = [rundir.stack_checkpoint(run_dir), run_dir / "checkpoints" / "last.ckpt"]  # Lightning's, the run's
    for ckpt in ckpts:
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    record = train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.001"])
    for ckpt in ckpts:
        assert f"{ckpt} is unreadable" in caplog.text
    assert caplog.text.count("training from the start") == 2
    assert record["status"] == rundir.COMPLETED and record["metrics"] == pytest.approx(finished[1]["metrics"])


def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_intact(finished, tmp_path, monkeypatch):
    from reglab.lightning.callbacks import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"the previous checkpoint")

    def full(fd):  # the data are written to the page cache, then the disk has no room for them
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match="No space left"):
            AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, target)
    assert target.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left


class _Payload:
    """Unpickling this creates the marker file: any `torch.load(weights_only=False)` would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": _Payload(marker)}, path)  # torch.save pickles it as it is


def test_the_planted_pickle_does_execute_when_loaded_unsafely(tmp_path):
    """The payload the tests below plant is real: loading it unsafely creates the marker."""
    marker = tmp_path / "executed"
    _plant_pickle(tmp_path / "last.ckpt", marker)
    torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert marker.exists()


def test_a_malicious_checkpoint_never_executes_on_resume_report_or_load(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    marker = tmp_path / "executed"
    _plant_pickle(run_dir / "checkpoints" / "last.ckpt", marker)
    # report and load read it with weights_only=True: refused, one warning, nothing executed
    report(run_dir, print_table=False)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported"):
        load_model(find_runs(run_dir).runs[0])
    # resume (metrics.json gone: an interrupted run) refuses both files and trains from the start
    _plant_pickle(rundir.stack_checkpoint(run_dir), marker)  # the run's Lightning checkpoint too
    (run_dir / "metrics.json").unlink()
    record = train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.001"])
    assert record["status"] == rundir.COMPLETED
    # a stack's checkpoint, read on a re-launch
    stack = tmp_path / "stack"
    _plant_pickle(rundir.stack_checkpoint(stack, "all"), marker)
    records = fit(make_config(stack, [*SMALL, "regularizer=l1", "regularizer.strength=[0,0.001]"]))
    assert [r["status"] for r in records] == [rundir.COMPLETED] * 2
    assert not marker.exists()


def test_a_malicious_target_in_a_run_config_is_never_instantiated(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    marker = tmp_path / "executed"
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    config.model._target_ = "pathlib.Path.touch"
    config.data._target_ = "os.system"
    config.evil = {"_target_": "pathlib.Path.touch", "self": str(marker)}
    OmegaConf.save(config, run_dir / ".hydra" / "config.yaml")
    report(run_dir, print_table=False)  # draws the decision boundary from the model and data
    assert (run_dir / "decision_boundary.png").is_file()
    assert not marker.exists()


@pytest.fixture(scope="module")
def relaunched(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("relaunch") / "run"
    train_run(run_dir, [*SMALL, "regularizer=l1", "regularizer.strength=0.001"])
    return run_dir


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("optimizer.lr=0.01", "optimizer.lr"),
        ("model.hidden=[8,8]", "model.hidden"),
        ("data.noise=0.3", "data.noise"),
        ("trainer.max_epochs=7", "trainer.max_epochs"),
        ("scheduler=cosine", "scheduler"),
        ("regularizer.include_bias=true", "regularizer.include_bias"),
        ("optimizer=sgd", "optimizer"),
    ],
)
def test_a_relaunch_that_changes_one_key_of_a_group_is_refused_naming_it(relaunched, change, key):
    before = rundir.read_metrics_json(relaunched)
    with pytest.raises(ConfigError, match=re.escape(key)):
        fit(make_config(relaunched, [*SMALL, "regularizer=l1", "regularizer.strength=0.001", change]))
    assert rundir.read_metrics_json(relaunched) == before  # the finished run is untouched
