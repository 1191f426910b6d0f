"""The training pipeline end to end: configs, run directory files, determinism, bad input, W&B."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from reglab import rundir
from reglab.config import validate
from reglab.lightning.module import RegLabModule
from tests.conftest import ROOT, make_config, run_cli, train_run

CONFIGS = ROOT / "configs"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("data", _options("data"))
def test_every_data_config_builds_a_trainable_module(tmp_path, data):
    label_free = ["data.label_noise=0.0"]
    cfg = make_config(tmp_path, [f"data={data}", *label_free])
    validate(cfg)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, in_features=dm.in_features, out_features=dm.out_features)
    module = RegLabModule(model, instantiate(cfg.regularizer), instantiate(cfg.optimizer), dm.task)
    x, y = dm.inputs("train")
    assert module.regularized_loss(x, y).shape == (1,) and torch.isfinite(module.model(x)).all() and len(y) > 0


@pytest.mark.parametrize(
    "group,option",
    [
        (g, o)
        for g in (
            "regularizer",
            "optimizer",
            "scheduler",
            "trainer",
            "logger",
            "callbacks",
            "model",
            "experiment",
            "hparams_search",
        )
        if (CONFIGS / g).is_dir()
        for o in _options(g)
    ],
)
def test_every_config_composes_validates_and_instantiates(tmp_path, group, option):
    cfg = make_config(tmp_path, [f"{group}={option}"])
    validate(cfg)
    if group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        return  # composes and validates; building it needs a GPU
    if group in ("regularizer", "trainer", "callbacks"):
        node = cfg[group]
        built = (
            instantiate(node, logger=False)
            if group == "trainer"
            else instantiate(node)
            if "_target_" in node
            else {k: instantiate(v) for k, v in node.items() if v and "_target_" in v}
        )
        assert built is not None
    if group == "optimizer":
        assert isinstance(instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)
    if group == "scheduler" and cfg.scheduler:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        assert instantiate(cfg.scheduler)(opt) is not None


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("moons")
    record = train_run(run_dir, ["data.noise=0.1", "trainer.max_epochs=30", "data.n_samples=400"])
    return run_dir, record


def test_short_training_writes_every_output(moons_run):
    run_dir, record = moons_run
    for name in ("metrics.json", "metrics.csv", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert record["status"] == rundir.COMPLETED and record["epochs"] == 30
    rows = rundir.read_metrics_csv(run_dir)
    assert [r["epoch"] for r in rows] == list(range(30))
    for key in ("train/loss", "train/penalty", "train/objective", "train/acc", "val/loss", "val/acc", "val/gap",
                "weights/l1", "weights/l2", "weights/max_abs", "weights/hidden.0/l1", "weights/zero_frac",
                "weights/small_frac", "weights/dead_units"):  # fmt: skip
        assert key in rows[-1], key
    for key in ("test/acc", "test/loss", "test/gap"):
        assert key in record["metrics"], key
    assert len(record["feature_l1"]) == 2 and record["best_epoch"] is not None


def test_low_noise_moons_reaches_high_validation_accuracy(moons_run):
    assert moons_run[1]["metrics"]["val/acc"] > 0.85


def test_metrics_json_agrees_with_the_last_csv_row(moons_run):
    run_dir, record = moons_run
    last = rundir.read_metrics_csv(run_dir)[-1]
    on_disk = rundir.read_metrics_json(run_dir)
    assert on_disk["metrics"] == record["metrics"]
    for key, value in last.items():
        if key not in ("epoch", "step"):
            assert math.isclose(on_disk["metrics"][key], value, rel_tol=1e-6, abs_tol=1e-9), key


def test_gap_is_train_minus_validation_accuracy(moons_run):
    m = moons_run[1]["metrics"]
    assert m["val/gap"] == pytest.approx(m["train/acc"] - m["val/acc"], abs=1e-6)
    assert m["test/gap"] == pytest.approx(m["train/acc"] - m["test/acc"], abs=1e-6)


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("wall_time_s",)}


def test_same_seed_gives_identical_metrics_and_another_seed_differs(tmp_path):
    a = train_run(tmp_path / "a", ["seed=1"])
    b = train_run(tmp_path / "b", ["seed=1"])
    c = train_run(tmp_path / "c", ["seed=2"])
    assert _comparable(a) == _comparable(b)
    assert a["metrics"] != c["metrics"]


def test_a_completed_run_is_skipped_and_force_retrains(tmp_path):
    first = train_run(tmp_path, ["trainer.max_epochs=2"])
    mtime = (tmp_path / "metrics.json").stat().st_mtime_ns
    again = train_run(tmp_path, ["trainer.max_epochs=2"])
    assert again == json.loads((tmp_path / "metrics.json").read_text()) and first["config_hash"] == again["config_hash"]
    assert (tmp_path / "metrics.json").stat().st_mtime_ns == mtime
    train_run(tmp_path, ["trainer.max_epochs=2", "force=true"])
    assert (tmp_path / "metrics.json").stat().st_mtime_ns != mtime


@pytest.mark.parametrize("data,key", [("diabetes", "val/r2"), ("wine", "val/acc")])
def test_regression_and_multiclass_report_their_metrics(tmp_path, data, key):
    record = train_run(tmp_path, [f"data={data}", "trainer.max_epochs=3"])
    assert key in record["metrics"] and record["status"] == rundir.COMPLETED
    if data == "diabetes":
        m = record["metrics"]
        assert m["val/gap"] == pytest.approx(m["val/loss"] - m["train/loss"], abs=1e-6)


# (command line, fragment of the one-line error it must get before anything runs)
BAD_INPUTS = [
    (["data=mnist"], "data=mnist is not a data config; choose one of: breast_cancer, circles"),
    (["regularizer=l3"], "regularizer=l3 is not a regularizer config; choose one of: elastic_net"),
    (["optimizer=rmsprop"], "optimizer=rmsprop is not a optimizer config; choose one of: adam, sgd"),
    (["-m", "regularizer=l1,l5"], "regularizer=l5 is not a regularizer config"),
    (["regularizer.strenght=1e-3"], "regularizer.strenght is not a key of the config: check its spelling"),
    (["+foo=1"], "foo is not a key of the config"),
    (["+regularizer.foo=1"], "regularizer.foo is not an argument of reglab.science.regularizers.Regularizer"),
    (["+data.noize=0.1"], "data.noize is not an argument of data set 'moons'"),
    (["+optimizer.weight_decay=0.1"], "optimizer.weight_decay would hide an L2 penalty in the optimizer"),
    (["regularizer=l1", "regularizer.strength=-0.1"], "regularizer.strength=-0.1 is negative"),
    (["-m", "regularizer=l1", "regularizer.strength=1e-3,-1"], "regularizer.strength=-1 is negative"),
    (["regularizer.strength=abc"], "regularizer.strength='abc' is not a number"),
    (["regularizer=none", "regularizer.strength=0.1"], "with regularizer=none would be ignored"),
    (["regularizer=elastic_net", "regularizer.l1_ratio=1.5"], "regularizer.l1_ratio=1.5 must be in [0, 1]"),
    (
        ["regularizer=l1", "regularizer.exclude=[head]"],
        "regularizer.exclude names no layer 'head'; the layers are: hidden.0",
    ),
    (["regularizer=l2", "model.hidden=[]", "regularizer.exclude=[output]"], "leaves no layer to regularize"),
    (["optimizer.lr=-1e-3"], "optimizer.lr=-0.001 must be > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0 must be > 0"),
    (["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum=-0.5 must be >= 0"),
    (["model.hidden=[128,0]"], "model.hidden=[128, 0] must be a list of widths > 0"),
    (["model.hidden=[-4]"], "model.hidden=[-4] must be a list of widths > 0"),
    (["-m", "model.hidden=[8],[0]"], "model.hidden=[0] must be a list of widths > 0"),
    (["model.activation=swish"], "model.activation='swish' is unknown; choose one of: relu"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be in [0, 1)"),
    (["data.split=[0.0,0.5,0.5]"], "leaves no training set"),
    (["data.split=[0.9,0.0,0.1]"], "leaves no validation set"),
    (["data.split=[0.8,0.3,0.1]"], "must be fractions >= 0 that sum to at most 1"),
    (["data.n_samples=2"], "leaves fewer than 2 training samples"),
    (["data.noise=-0.1"], "data.noise=-0.1 must be >= 0"),
    (["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1, or null for full batch"),
    (["data.label_noise=1.5"], "data.label_noise=1.5 must be in [0, 1)"),
    (["data=diabetes", "data.label_noise=0.1"], "needs class labels; data set 'diabetes' is a regression"),
    (["data=diabetes", "loss=bce"], "loss=bce is for binary tasks, but data set 'diabetes' is regression"),
    (["loss=hinge"], "loss='hinge' is not a loss; choose one of: auto, bce"),
    (["data=diabetes", "optimized_metric=val/acc"], "optimized_metric=val/acc needs a classification data set"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
    (["+trainer.foo=1"], "trainer.foo is not an argument of lightning.pytorch.Trainer"),
    (["seed=abc"], "seed='abc' must be an integer"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_command_line_gets_its_one_line_error_before_anything_runs(args, message):
    from reglab.train import command_line_error

    error = command_line_error(args)
    assert error is not None and message in error
    assert "\n" not in error


@pytest.mark.parametrize("args", [a for a, _ in BAD_INPUTS[::6]], ids=[" ".join(a) for a, _ in BAD_INPUTS[::6]])
def test_bad_command_line_exits_2_with_no_traceback_and_no_run_left(tmp_path, args):
    result = run_cli([*args, f"paths.log_dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*"))  # not even an empty run directory


def test_wandb_offline_run_holds_the_run(tmp_path):
    record = train_run(tmp_path, ["logger=wandb", "trainer.max_epochs=2", "name=wandb_test"])
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(tmp_path.rglob("*"))
    files = list(runs[0].glob("run-*.wandb"))
    assert files and files[0].stat().st_size > 1000
    assert record["status"] == rundir.COMPLETED
