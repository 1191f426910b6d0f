"""Lightning-template parity: the `callbacks=`, `debug=` and `logger=tensorboard` choices each run and
do what they say."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import reglab
from reglab import rundir
from reglab.fit import fit
from reglab.runs import load_splits, read_run
from reglab.train import CONFIG_DIR
from tests.conftest import make_config

SMALL = ["data.n_samples=300", "model.hidden=[16,16]", "logger=none"]


def _fit(run_dir, overrides):
    return fit(make_config(run_dir, [*SMALL, *overrides], fast=False))


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """Two members with early stopping (patience 2 evaluations, every 2 epochs) and best checkpoints."""
    run_dir = tmp_path_factory.mktemp("early")
    overrides = ["callbacks=early_stopping", "callbacks.early_stopping.patience=2", "trainer.check_val_every_n_epoch=2"]
    records = _fit(
        run_dir,
        [*overrides, "callbacks.progress_bar=null", "trainer.max_epochs=400", "seed=[0,1]", "optimizer.lr=0.05"],
    )
    return run_dir, records


def test_early_stopping_stops_each_member_after_patience_evaluations_without_improvement(stopped):
    _, records = stopped
    for record in records:
        stop = record["early_stopping"]
        assert stop["stopped_epoch"] is not None and stop["stopped_epoch"] == stop["best_epoch"] + 2 * 2
    # The stack stops at its last member's stopping point, well before max_epochs.
    assert max(r["early_stopping"]["stopped_epoch"] for r in records) + 1 == records[0]["epochs"] < 400


def test_best_checkpoint_holds_the_best_epochs_weights_and_metrics(stopped):
    run_dir, records = stopped
    for k, record in enumerate(records):
        member = run_dir / f"seed={k}"
        best = record["best"]
        rows = list(csv.DictReader((member / "metrics.csv").open()))
        losses = {int(r["epoch"]): float(r["val/loss"]) for r in rows}
        assert best["epoch"] == min(losses, key=losses.get) and best["metrics"]["val/loss"] == pytest.approx(
            min(losses.values()), rel=1e-12
        )
        # The loaded best weights reproduce the best epoch's validation accuracy, not the last one's.
        trained = reglab.load_run(member, checkpoint="best")
        splits = load_splits(read_run(member, member.name))
        x_raw = splits.x["val"] * splits.std + splits.mean
        accuracy = float((trained.predict(x_raw) == splits.y["val"]).mean())
        assert accuracy == pytest.approx(best["metrics"]["val/acc"], abs=1e-7)
        assert (member / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(FileNotFoundError, match="this run holds: best, last"):
        reglab.load_run(run_dir / "seed=0", checkpoint="epoch_3")


@pytest.mark.parametrize("choice", ["rich_progress_bar", "none", "best_checkpoint"])
def test_each_callbacks_choice_trains(tmp_path, choice):
    bar = ["trainer.enable_progress_bar=true"] if choice == "rich_progress_bar" else []
    (record,) = _fit(tmp_path, [f"callbacks={choice}", "trainer.max_epochs=3", *bar])
    assert record["status"] == rundir.COMPLETED and record["epochs"] == 3
    assert ("best" in record) == (choice == "best_checkpoint")
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file() == (choice == "best_checkpoint")


def test_a_monitor_that_names_no_metric_is_refused_before_training(tmp_path):
    from reglab.train import command_line_error

    error = command_line_error(["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/accuracy"])
    assert error is not None and error.startswith("callbacks.early_stopping") and "val/accuracy" in error


def _hydra(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("choice", ["fdr", "overfit", "limit", "profiler"])
def test_debug_runs_write_under_logs_debug_never_beside_real_runs(choice):
    cfg = _hydra([f"debug={choice}"])
    assert cfg.hydra.run.dir.startswith("logs/debug/runs/") and cfg.hydra.sweep.dir == "logs/debug/multiruns/debug"
    assert "logger" not in cfg or not cfg.logger  # nothing goes to W&B


def test_debug_fdr_trains_one_epoch(tmp_path):
    (record,) = _fit(tmp_path, ["debug=fdr"])
    assert record["status"] == rundir.COMPLETED and record["epochs"] == 1


def test_debug_overfit_memorises_its_small_training_set(tmp_path):
    (record,) = _fit(tmp_path, ["debug=overfit", "callbacks.progress_bar=null"])
    assert record["regularizer"] == "none" and record["metrics"]["train/acc"] == 1.0
    assert record["metrics"]["val/acc"] < 1.0  # a memorised sample of 15 points


def test_debug_profiler_writes_its_table_into_the_run_directory(tmp_path):
    (record,) = _fit(tmp_path, ["debug=profiler", "trainer.max_epochs=3", "callbacks.progress_bar=null"])
    profile = (tmp_path / "fit-profile.txt").read_text()
    assert record["epochs"] == 3 and "run_training_epoch" in profile


def _scalars(event_file) -> dict[str, list[tuple[int, float]]]:
    """The scalar summaries of a TensorBoard event file (TFRecord: length, crc, Event proto, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, out, i = event_file.read_bytes(), {}, 0
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i : i + 8])
        event = Event.FromString(data[i + 12 : i + 12 + length])
        i += 12 + length + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_tensorboard_logs_each_members_metrics_per_evaluated_epoch(tmp_path):
    records = _fit(
        tmp_path,
        [
            "logger=tensorboard",
            "seed=[0,1]",
            "trainer.max_epochs=6",
            "trainer.check_val_every_n_epoch=2",
            "callbacks.progress_bar=null",
        ],
    )
    for k, record in enumerate(records):
        member = tmp_path / f"seed={k}"
        scalars: dict = {}
        for f in sorted((member / "tensorboard").rglob("events.out.tfevents.*")):
            for tag, points in _scalars(f).items():
                scalars.setdefault(tag, []).extend(points)
        rows = list(csv.DictReader((member / "metrics.csv").open()))
        assert [e for e, _ in scalars["val/acc"]] == [int(r["epoch"]) for r in rows] == [1, 3, 5]
        np.testing.assert_allclose([v for _, v in scalars["val/loss"]], [float(r["val/loss"]) for r in rows], rtol=1e-6)
        assert scalars["hparam/val/acc"][0][1] == pytest.approx(record["metrics"]["val/acc"], rel=1e-6)
