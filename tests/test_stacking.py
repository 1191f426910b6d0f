"""One engine: member k of a K-member stack ends where its K = 1 run ends, in the same files; the
training step (hooks, loss, clipping) acts on each member alone."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from reglab import checkpoint, rundir
from reglab.errors import ConfigError
from reglab.fit import fit
from reglab.members import members_of
from reglab.science.metrics import prediction_metrics, weight_metrics
from reglab.science.model import MLP
from reglab.science.regularizers import REGULARIZERS
from tests.conftest import RESUMABLE, epochs_trained, interrupted_stack, make_config, run_cli, train_run

# Small and quick: 120 training points in batches of 32 (the last one of 24), 3 epochs = 12 steps.
QUICK = ["model.hidden=[16,16]", "trainer.max_epochs=3"]
SMALL = ["data.n_samples=200", *QUICK]
STRENGTH = {
    "none": 0.0,
    "l1": 1e-2,
    "l2": 1e-2,
    "elastic_net": 1e-2,
    "weight_decay": 0.5,
    "prox_l1": 0.01,
    "group_lasso": 0.01,
}
# 120 training points in batches of 32: 4 steps an epoch, 13 epochs = 52 steps.
LONG = ["data.n_samples=200", "model.hidden=[16,16]", "trainer.max_epochs=13"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared CPU: one intra-op thread is several times faster than two competing ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sweep_config(run_dir: Path, overrides: list[str], small: list[str] = SMALL):
    return make_config(run_dir, [*small, *overrides])


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(member_dir: Path, member: dict, single_dir: Path, single: dict) -> None:
    """Same final weights to float tolerance, same metrics, same steps and status."""
    ours, theirs = weights(member_dir), weights(single_dir)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-5, msg=key)
    assert member["metrics"].keys() == single["metrics"].keys()
    for key, value in single["metrics"].items():
        assert member["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    for key in ("status", "epochs", "steps", "seed", "strength", "regularizer", "optimizer", "diverged_epoch"):
        assert member[key] == single[key], key
    assert member["feature_l1"] == pytest.approx(single["feature_l1"], rel=1e-5)


def member_dir(sweep_dir: Path, lam: float, seed: int) -> Path:
    return sweep_dir / f"regularizer.strength={lam:g},seed={seed}"


def record_of(records: list[dict], lam: float, seed: int) -> dict:
    return next(r for r in records if r["strength"] == lam and r["seed"] == seed)


# The science layer: stacked rules and metrics equal the single model's, member by member -------


def _members(n: int = 3) -> list[MLP]:
    """n K = 1 models with random biases (so that include_bias has something to act on)."""
    models = [MLP(5, 3, [16, 8], seeds=[k]) for k in range(n)]
    with torch.no_grad():
        for m in models:
            for layer in m.linear_layers().values():
                layer.bias.uniform_(-1, 1)
    return models


def _stack(models: list[MLP]) -> MLP:
    stacked = MLP(5, 3, [16, 8], members=len(models))
    with torch.no_grad():
        for name, tensor in stacked.state_dict().items():
            tensor.copy_(torch.cat([m.state_dict()[name] for m in models]))
    return stacked


@pytest.mark.parametrize("name", list(REGULARIZERS))
@pytest.mark.parametrize("options", [{}, {"include_bias": True}, {"exclude": ["output"]}])
def test_stacked_regularizer_with_per_member_lambda_equals_each_member_alone(name, options):
    if name == "group_lasso":
        options = {**options, "input_features": True}
    lams = [0.0, 0.013, 0.2]
    singles = _members()
    stacked = _stack(copy.deepcopy(singles))
    alone = [REGULARIZERS[name](lam, **options).bind(m) for lam, m in zip(lams, singles)]
    together = REGULARIZERS[name](lams, **options).bind(stacked)
    for _ in range(5):  # penalty, decoupled update and proximal map, five times
        penalties = together.penalty()
        assert penalties.shape == (3,)
        for k, reg in enumerate(alone):
            assert penalties[k].item() == pytest.approx(reg.penalty().item(), rel=1e-6, abs=1e-9)
        for reg in [*alone, together]:
            reg.before_step(0.3)
            reg.after_step(0.3)
    for k, model in enumerate(singles):
        for key, tensor in model.state_dict().items():
            torch.testing.assert_close(stacked.state_dict()[key][k : k + 1], tensor, rtol=1e-6, atol=1e-6)
    if name == "prox_l1":  # the member with λ = 0.2 really was thresholded, the one with λ = 0 not at all
        assert (stacked.hidden[1].weight[2] == 0).float().mean() > 0.5
        assert (stacked.hidden[1].weight[0] != 0).all()


def test_stacked_regularizer_refuses_a_wrong_number_of_strengths_and_negative_ones():
    stacked = _stack(_members())
    with pytest.raises(ValueError, match="2 values; the model has 3"):
        REGULARIZERS["l1"]([0.1, 0.2]).bind(stacked)
    with pytest.raises(ValueError, match="negative"):
        REGULARIZERS["l2"]([0.1, -1.0, 0.0])


@pytest.mark.parametrize("task,classes", [("binary", 1), ("multiclass", 3), ("regression", 1)])
def test_member_metrics_equal_torchmetrics_and_hand_computed_norms(task, classes):
    from torchmetrics.functional import r2_score
    from torchmetrics.functional.classification import binary_accuracy, multiclass_accuracy

    stacked = _stack(_members())
    with torch.no_grad():
        stacked.hidden[0].weight[1, :4] = 0  # member 1: four dead units and exact zeros
    x = torch.randn(3, 40, 5)
    logits = stacked(x)[..., :classes]
    y = torch.randint(0, 3, (3, 40)) if task == "multiclass" else torch.randint(0, 2, (3, 40))
    y = y.float() if task == "regression" else y
    ours = prediction_metrics(logits, y, task)
    wm = weight_metrics(stacked, threshold=0.05)
    for k in range(3):
        if task == "binary":
            assert ours["acc"][k].item() == pytest.approx(binary_accuracy(torch.sigmoid(logits[k, :, 0]), y[k]).item())
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[k, :, 0], y[k].float())
            assert ours["loss"][k].item() == pytest.approx(bce.item(), rel=1e-6)
        elif task == "multiclass":
            reference = multiclass_accuracy(logits[k], y[k], num_classes=3, average="micro")
            assert ours["acc"][k].item() == pytest.approx(reference.item())
            assert ours["loss"][k].item() == pytest.approx(
                torch.nn.functional.cross_entropy(logits[k], y[k]).item(), rel=1e-6
            )
        else:
            assert ours["r2"][k].item() == pytest.approx(r2_score(logits[k, :, 0], y[k]).item(), rel=1e-5)
            assert ours["mse"][k].item() == pytest.approx(((logits[k, :, 0] - y[k]) ** 2).mean().item(), rel=1e-6)
        w = torch.cat([layer.weight[k].flatten() for layer in stacked.linear_layers().values()]).double()
        assert wm["weights/l1"][k].item() == pytest.approx(w.abs().sum().item(), rel=1e-12)
        assert wm["weights/l2"][k].item() == pytest.approx(w.norm().item(), rel=1e-12)
        assert wm["weights/small_frac"][k].item() == pytest.approx((w.abs() < 0.05).double().mean().item())
        assert wm["weights/zero_frac"][k].item() == pytest.approx((w == 0).double().mean().item())
    assert wm["weights/dead_units"].tolist() == [0.0, 4.0, 0.0]


def test_stacked_forward_and_member_round_trip():
    models = _members()
    stacked = _stack(models)
    x = torch.randn(3, 7, 5)
    for k, model in enumerate(models):
        torch.testing.assert_close(stacked(x)[k], model(x[k])[0])
        torch.testing.assert_close(stacked(x[0])[k], model(x[0])[0])  # one input shared by all members
        back = stacked.member(k)
        assert all(torch.equal(a, b) for a, b in zip(back.parameters(), model.parameters()))


def test_a_member_starts_from_the_weights_of_its_k1_run():
    stacked = MLP(2, 1, [8, 8], members=3, seeds=[5, 0, 5])
    for k, seed in enumerate([5, 0, 5]):
        alone = MLP(2, 1, [8, 8], seeds=[seed])
        assert all(torch.equal(stacked.state_dict()[n][k : k + 1], t) for n, t in alone.state_dict().items())


# The sweep: members against the real single runs (`reglab.train.train`) ------------------------


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("name", list(STRENGTH))
def test_member_ends_with_the_weights_and_metrics_of_its_single_run(tmp_path, name, optimizer):
    lam = STRENGTH[name]
    common = [*LONG, f"regularizer={name}", f"optimizer={optimizer}"]
    common += ["optimizer.momentum=0.9"] if optimizer == "sgd" else []  # per-member momentum buffers
    lams = f"[{lam / 10},{lam}]" if lam else "[0]"  # regularizer=none takes λ = 0 only
    records = fit(sweep_config(tmp_path / "sweep", [*common, f"regularizer.strength={lams}", "seed=[0,1]"], small=LONG))
    assert len(records) == (4 if lam else 2) and records[0]["steps"] >= 50
    single = train_run(tmp_path / "single", [*common, f"regularizer.strength={lam}", "seed=1"])
    assert_same_run(member_dir(tmp_path / "sweep", lam, 1), record_of(records, lam, 1), tmp_path / "single", single)
    if name in ("prox_l1", "group_lasso") and optimizer == "adam":  # SGD's threshold lr·λ is too small here
        assert single["metrics"]["weights/zero_frac"] > 0  # the proximal map really acted


@pytest.mark.slow
def test_the_report_of_a_stack_equals_the_report_of_a_multirun_of_the_same_grid(tmp_path):
    from reglab.report import report

    common = [
        *SMALL,
        "regularizer=l2",
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
    ]
    multirun = run_cli(
        [
            "-m",
            *common,
            "regularizer.strength=0.001,0.1",
            "seed=0",
            f"hydra.sweep.dir={tmp_path / 'multirun'}",
            "hydra.sweep.subdir=${hydra:job.override_dirname}",
            "~hydra.callbacks.report",
        ],
        cwd=tmp_path,
    )
    assert multirun.returncode == 0, multirun.stderr[-2000:]
    fit(make_config(tmp_path / "stack", [*common, "regularizer.strength=[0.001,0.1]", "seed=[0]"], fast=False))
    tables = {}
    for name in ("multirun", "stack"):
        report(tmp_path / name, print_table=False)
        with open(tmp_path / name / "summary.csv") as f:
            tables[name] = {(r["lambda"], r["seed"]): r for r in csv.DictReader(f)}
    assert tables["multirun"].keys() == tables["stack"].keys() and len(tables["stack"]) == 2
    for key, row in tables["multirun"].items():
        other = tables["stack"][key]
        for column, value in row.items():
            if column in ("run", "wall_time_s"):
                continue
            try:
                assert float(other[column]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), (key, column)
            except ValueError:
                assert other[column] == value, (key, column)


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.n_samples=200", "regularizer=weight_decay", "data.batch_size=null", "scheduler=cosine"],
        ["data=wine", "regularizer=l1", "model.hidden=[8]"],
        ["data=sparse_regression", "data.n_samples=100", "data.n_features=6", "data.n_informative=2", "regularizer=l2"],
    ],
    ids=["full_batch_cosine", "multiclass", "regression"],
)
def test_every_member_equals_its_single_run(tmp_path, overrides):
    grid = ["regularizer.strength=[0.001,0.1]", "seed=[2,0]"]
    records = fit(sweep_config(tmp_path / "sweep", [*overrides, *grid], small=QUICK))
    for lam in (0.001, 0.1):
        for seed in (2, 0):
            single = train_run(
                tmp_path / f"{lam}-{seed}", [*QUICK, *overrides, f"regularizer.strength={lam}", f"seed={seed}"]
            )
            assert_same_run(
                member_dir(tmp_path / "sweep", lam, seed),
                record_of(records, lam, seed),
                tmp_path / f"{lam}-{seed}",
                single,
            )


def test_chunked_sweep_trains_the_same_members(tmp_path):
    grid = ["regularizer=l2", "regularizer.strength=[0.001,0.01,0.1]", "seed=[0,1]"]
    whole = fit(sweep_config(tmp_path / "whole", grid))
    chunked = fit(sweep_config(tmp_path / "chunked", [*grid, "sweep.chunk=4"]))
    for a, b in zip(whole, chunked):
        assert (a["strength"], a["seed"]) == (b["strength"], b["seed"])
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-6, abs=1e-7)
    assert (tmp_path / "chunked" / ".stack" / "checkpoints" / "members-4-5" / "last.ckpt").is_file()


def test_diverging_member_stops_like_its_single_run_and_spares_the_others(tmp_path):
    # SGD with lr·2λ = 20 > 2: the explicit L2 step overshoots and the weights blow up.
    common = ["regularizer=l2", "optimizer=sgd", "trainer.max_epochs=8"]
    records = fit(sweep_config(tmp_path / "sweep", [*common, "regularizer.strength=[0.001,1000]", "seed=[0]"]))
    single = train_run(tmp_path / "single", [*SMALL, *common, "regularizer.strength=1000", "seed=0"])
    diverged, fine = record_of(records, 1000.0, 0), record_of(records, 0.001, 0)
    assert single["status"] == diverged["status"] == rundir.DIVERGED
    assert diverged["diverged_epoch"] == single["diverged_epoch"] < 7
    assert diverged["epochs"] == single["epochs"] and diverged["steps"] == single["steps"]
    rows = rundir.read_metrics_csv(member_dir(tmp_path / "sweep", 1000.0, 0))
    assert len(rows) == len(rundir.read_metrics_csv(tmp_path / "single")) == single["diverged_epoch"] + 1
    assert fine["status"] == rundir.COMPLETED and fine["epochs"] == 8 and "test/acc" in fine["metrics"]


# The run directories: a report cannot tell a member from a single run ---------------------------


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> tuple[Path, list[dict], Path, dict]:
    base = tmp_path_factory.mktemp("format")
    records = fit(sweep_config(base / "sweep", ["regularizer=l1", "regularizer.strength=[0,0.001]", "seed=[0,1]"]))
    single = train_run(base / "single", [*SMALL, "regularizer=l1", "regularizer.strength=0.001", "seed=1"])
    return base / "sweep", records, base / "single", single


def test_members_write_the_files_of_a_single_run(small_sweep):  # noqa: C901
    sweep_dir, records, single_dir, single = small_sweep
    names = sorted(p.name for p in sweep_dir.iterdir() if not p.name.startswith("."))
    assert names == [f"regularizer.strength={lam},seed={s}" for lam in ("0", "0.001") for s in (0, 1)]
    member = member_dir(sweep_dir, 0.001, 1)
    record = rundir.read_metrics_json(member)
    assert record.keys() == single.keys() and record["metrics"].keys() == single["metrics"].keys()
    with open(member / "metrics.csv") as a, open(single_dir / "metrics.csv") as b:
        assert next(csv.reader(a)) == next(csv.reader(b))
    ours = torch.load(member / "checkpoints" / "last.ckpt", weights_only=True)
    theirs = torch.load(single_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ours.keys() == theirs.keys()
    assert {k: v.shape for k, v in ours["state_dict"].items()} == {k: v.shape for k, v in theirs["state_dict"].items()}
    config = OmegaConf.load(member / ".hydra" / "config.yaml")
    assert config.regularizer.strength == 0.001 and config.seed == 1 and config.data.seed == 1
    assert config.paths.output_dir == str(member)
    assert "regularizer.strength=0.001" in OmegaConf.load(member / ".hydra" / "overrides.yaml")
    listed = json.loads((sweep_dir / ".stack" / "members.json").read_text())
    assert [m["name"] for m in listed] == [
        r.name for r in map(Path, [member_dir(sweep_dir, r["strength"], r["seed"]) for r in records])
    ]


def test_report_finds_exactly_the_members(small_sweep):
    report = pytest.importorskip("reglab.report")
    found = report.find_runs(small_sweep[0])
    assert len(found.runs) == 4 and found.incomplete == []


def test_a_member_of_a_stopped_stack_resumes_alone_as_if_it_had_trained_alone(tmp_path, monkeypatch):
    # The highest train loss is the first epoch's, before the stop: best.ckpt is right only if it came back
    best = [
        "callbacks=best_checkpoint",
        "callbacks.best_checkpoint.monitor=train/loss",
        "callbacks.best_checkpoint.mode=max",
    ]
    common = [*SMALL, "regularizer=l1", *best]
    interrupted_stack(tmp_path / "sweep", [*common, "regularizer.strength=[0,0.001]", "seed=1"], monkeypatch)
    member = tmp_path / "member"
    __import__("shutil").copytree(tmp_path / "sweep" / "regularizer.strength=0.001", member)
    single = [*common, "regularizer.strength=0.001", "seed=1", *RESUMABLE]
    epochs = epochs_trained(monkeypatch)
    resumed = train_run(member, single)  # 4 epochs done, 1 to go: from the member's own last.ckpt
    assert epochs == [4]
    straight = train_run(tmp_path / "straight", single)
    assert resumed["steps"] == straight["steps"] == 20
    for key, tensor in weights(tmp_path / "straight").items():
        torch.testing.assert_close(weights(member)[key], tensor, rtol=1e-5, atol=1e-5)
    rows, theirs = rundir.read_metrics_csv(member), rundir.read_metrics_csv(tmp_path / "straight")
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]  # the interrupted run's rows, continued
    for ours, row in zip(rows, theirs):
        assert ours == pytest.approx(row, rel=1e-5, abs=1e-6)
    assert resumed["best"]["epoch"] == straight["best"]["epoch"] < 4
    for key, tensor in checkpoint.read(rundir.checkpoint(tmp_path / "straight", "best"))["state_dict"].items():
        torch.testing.assert_close(checkpoint.read(rundir.checkpoint(member, "best"))["state_dict"][key], tensor)


def test_relaunched_sweep_skips_its_completed_members(small_sweep):
    sweep_dir, records, _, _ = small_sweep
    cfg = sweep_config(sweep_dir, ["regularizer=l1", "regularizer.strength=[0,0.001]", "seed=[0,1]"])
    stamps = [p.stat().st_mtime_ns for p in sorted(sweep_dir.glob("*/metrics.json"))]
    assert fit(cfg) == json.loads(json.dumps(records))
    assert [p.stat().st_mtime_ns for p in sorted(sweep_dir.glob("*/metrics.json"))] == stamps


# Warm-started λ paths --------------------------------------------------------------------------


def test_lambda_path_warm_starts_each_lambda_and_grows_sparsity(tmp_path):
    # The plain ISTA threshold (not Adam's metric, which zeroes nearly everything at these λ): the
    # subject here is the warm start.
    plain = ["regularizer.preconditioned=false", "optimizer.lr=0.01"]
    path = ["regularizer=prox_l1", "regularizer.strength=[3,0,0.3]", "seed=[0,1]", "sweep.path=true"]
    records = fit(sweep_config(tmp_path / "path", [*path, *plain]))
    assert [r["strength"] for r in records] == [0.0, 0.0, 0.3, 0.3, 3.0, 3.0]  # in increasing order
    zeros = [record_of(records, lam, 0)["metrics"]["weights/zero_frac"] for lam in (0.0, 0.3, 3.0)]
    assert zeros[0] == 0 < zeros[1] < zeros[2]
    # Stage 0 starts from the seeded initialisation: it is the single run at the smallest λ.
    single = train_run(tmp_path / "single", [*SMALL, "regularizer=prox_l1", "regularizer.strength=0", "seed=0", *plain])
    assert_same_run(member_dir(tmp_path / "path", 0.0, 0), record_of(records, 0.0, 0), tmp_path / "single", single)
    # Later stages start where the previous one ended: their first epoch is already trained.
    cold = train_run(tmp_path / "cold", [*SMALL, "regularizer=prox_l1", "regularizer.strength=0.3", "seed=0", *plain])
    warm_first = rundir.read_metrics_csv(member_dir(tmp_path / "path", 0.3, 0))[0]["train/loss"]
    assert warm_first < 0.8 * rundir.read_metrics_csv(tmp_path / "cold")[0]["train/loss"]
    assert cold["metrics"]["weights/zero_frac"] != zeros[1]  # a different run from the same λ started cold


def test_lambda_path_experiment_composes_into_valid_members(tmp_path):
    cfg = make_config(tmp_path, ["experiment=lambda_path"])
    assert cfg.sweep.path
    members = members_of(cfg)
    assert len(members) == len(cfg.regularizer.strength) * len(cfg.seed)


# Refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=[0.001,0.01]"], "optimizer.lr"),
        (["model.dropout=0.2"], "dropout"),
        (["regularizer=l2", "regularizer.strength=[0.1,-1]"], r"regularizer.strength=-1.* negative"),
        (["sweep.chunk=0"], "sweep.chunk=0"),
        (["seed=[]"], "empty list"),
    ],
)
def test_a_sweep_it_cannot_run_is_refused_before_training(tmp_path, overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        fit(
            sweep_config(
                tmp_path / "sweep", ["regularizer=l2", "regularizer.strength=[0,0.1]", "seed=[0,1]", *overrides]
            )
        )
    assert [p.name for p in (tmp_path / "sweep").glob("*")] in ([], [".hydra"])  # only what Hydra wrote


@pytest.mark.slow
def test_command_line_lists_write_one_run_per_member(tmp_path):
    from reglab.api import run

    run(
        ["regularizer=l2", "regularizer.strength=[0,1e-3]", "seed=[0,1]", *SMALL, "logger=none"],
        run_dir=tmp_path / "run",
    )
    runs = sorted(p.parent.name for p in tmp_path.rglob("metrics.json"))
    assert runs == [f"regularizer.strength={lam},seed={s}" for lam in ("0", "0.001") for s in (0, 1)]


def test_gradient_clipping_bounds_each_members_gradient_norm_and_leaves_small_ones(tmp_path):
    from functools import partial

    from reglab.lightning.module import RegLabModule

    model = MLP(2, 1, [8], members=3, seeds=[0, 1, 2])
    module = RegLabModule(
        model, REGULARIZERS["none"](), partial(torch.optim.SGD, lr=0.1), "binary", gradient_clip_val=1.0
    )
    for k, scale in enumerate((100.0, 0.01, 5.0)):
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad[k] = scale
    small = [p.grad[1].clone() for p in model.parameters()]
    module.clip_member_gradients(1.0)
    norms = torch.stack([p.grad.flatten(1).square().sum(1) for p in model.parameters()]).sum(0).sqrt()
    assert norms[0].item() == pytest.approx(1.0, rel=1e-5) and norms[2].item() == pytest.approx(1.0, rel=1e-5)
    assert all(torch.equal(p.grad[1], g) for p, g in zip(model.parameters(), small))  # below the bound: untouched
    record = train_run(tmp_path, [*SMALL, "+trainer.gradient_clip_val=0.5"])
    assert record["status"] == rundir.COMPLETED  # through the config: the module clips, Lightning is not asked to


# The training step, member by member (RegLabModule._step, regularized_loss, clip_member_gradients) ---


def test_gradient_clipping_leaves_a_tiny_gradient_alone_and_scales_a_large_one_exactly():
    from functools import partial

    import torch

    from reglab.lightning.module import RegLabModule
    from reglab.science.model import MLP
    from reglab.science.regularizers import Regularizer

    model = MLP(2, 1, [3], members=3, seeds=[0, 1, 2])
    module = RegLabModule(model, Regularizer(), partial(torch.optim.SGD, lr=0.1), "binary")
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
        p.grad[0], p.grad[1], p.grad[2] = 1e-8, 3.0, 0.0  # member 0's norm is below 1e-6
    n = sum(p[0].numel() for p in model.parameters())  # 13 numbers per member
    module.clip_member_gradients(2.0)
    for p in model.parameters():
        assert torch.equal(p.grad[0], torch.full_like(p.grad[0], 1e-8))  # untouched, sign and all
        torch.testing.assert_close(p.grad[1], torch.full_like(p.grad[1], 3.0 * 2.0 / (3.0 * math.sqrt(n) + 1e-6)))
        assert torch.equal(p.grad[2], torch.zeros_like(p.grad[2]))


def test_training_step_calls_the_hooks_in_order_and_remembers_a_non_finite_batch(monkeypatch):
    # `_step` with a recording optimizer and regularizer: zero_grad, backward of the summed
    # objective, clipping, before_step(lr), step, after_step(lr); and all_finite stays False for a
    # member once one of its batches gave a non-finite objective.
    import torch

    from reglab.lightning.module import RegLabModule
    from reglab.science.model import MLP
    from reglab.science.regularizers import L2

    events = []

    class Recorder(L2):
        def before_step(self, lr):
            events.append(("before_step", lr))

        def after_step(self, lr):
            events.append(("after_step", lr))

    class Optimizer:
        param_groups = [{"lr": 0.3}]

        def zero_grad(self, set_to_none):
            events.append(("zero_grad", set_to_none))

        def step(self):
            events.append(("step",))

    model = MLP(2, 1, [3], members=2, seeds=[0, 1])
    module = RegLabModule(model, Recorder([0.0, 0.5]), torch.optim.SGD, "regression", gradient_clip_val=2.5)
    objectives = []
    monkeypatch.setattr(
        module, "manual_backward", lambda loss: (objectives.append(loss.item()), events.append(("backward",)))
    )
    monkeypatch.setattr(module, "clip_member_gradients", lambda v: events.append(("clip", v)))
    x, y = torch.randn(4, 2), torch.randn(4)
    expected = module.regularized_loss(x, y).sum().item()
    module._step(x, y, Optimizer())
    assert events == [
        ("zero_grad", True),
        ("backward",),
        ("clip", 2.5),
        ("before_step", 0.3),
        ("step",),
        ("after_step", 0.3),
    ]
    assert objectives == pytest.approx([expected], rel=1e-6)
    assert module.all_finite.tolist() == [True, True]
    bad = torch.stack([y, y.clone().fill_(math.nan)])  # member 1's targets: NaN
    module._step(x, bad, Optimizer())
    module._step(x, y, Optimizer())  # a finite batch afterwards does not clear the flag
    assert module.all_finite.tolist() == [True, False]
    events.clear()
    module.gradient_clip_val = None
    module._step(x, y, Optimizer())
    assert ("clip", 2.5) not in events and len(events) == 5


def test_regularized_loss_adds_the_penalty_only_if_explicit():
    import torch
    import torch.nn.functional as F

    from reglab.lightning.module import RegLabModule
    from reglab.science.model import MLP
    from reglab.science.regularizers import L1, ProxL1

    x, y = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 0])
    for reg, explicit in ((L1([0.1, 0.7]), True), (ProxL1([0.1, 0.7]), False)):
        model = MLP(2, 1, [3], members=2, seeds=[0, 1])
        module = RegLabModule(model, reg, torch.optim.SGD, "binary")
        ours = module.regularized_loss(x, y)
        for k, lam in enumerate([0.1, 0.7]):
            data = F.binary_cross_entropy_with_logits(model(x)[k, :, 0], y.float())
            penalty = lam * sum(layer.weight[k].abs().sum() for layer in model.linear_layers().values())
            assert ours[k].item() == pytest.approx((data + penalty if explicit else data).item(), rel=1e-6)


# Folds of unequal size in one stack: padded rows of weight 0 fill each member's last batch ---------------


def _train_folds(folds: list, x, y, task: str, fold: str, strength: str, batch: int = 16) -> list:
    from reglab.api import train_in_memory
    from reglab.science import files

    path, _ = files.register(x, y, folds=folds)
    try:
        return train_in_memory(
            [
                "data=file",
                f"data.path={path}",
                f"data.fold={fold}",
                f"data.task={task}",
                f"data.batch_size={batch}",
                "model.hidden=[8]",
                "regularizer=l2",
                f"regularizer.strength={strength}",
                "trainer.max_epochs=4",
                "logger=none",
                "callbacks.progress_bar=null",
                "trainer.enable_progress_bar=false",
                "callbacks.model_checkpoint=null",
            ]
        )
    finally:
        files.unregister(path)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_stack_of_folds_of_unequal_size_equals_each_fold_trained_alone(task):
    """Training splits of 40, 43 and 45 rows (3 steps of 16 an epoch each; the last batch 8, 11 and 13
    rows) and validation splits of 20, 17 and 15 in one stack of 2 λ × 3 folds: each member ends with
    the weights, the steps and the metrics of its own K = 1 run on its unpadded fold."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60) if task == "multiclass" else (x @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=60) * 0.1)
    rows = rng.permutation(60)
    folds = [(rows[:n], rows[n:]) for n in (40, 43, 45)]
    stacked = _train_folds(folds, x, y, task, "[0,1,2]", "[0.001,0.1]")
    assert len(stacked) == 6
    for run in stacked:
        lam, fold = run.record["strength"], int(run.record["config"]["data"]["fold"])
        (alone,) = _train_folds(folds, x, y, task, str(fold), str(lam))
        assert run.record["steps"] == alone.record["steps"] == 4 * 3
        for name, tensor in alone.model.state_dict().items():
            torch.testing.assert_close(run.model.state_dict()[name], tensor, rtol=1e-6, atol=1e-6, msg=name)
        for key, value in alone.record["metrics"].items():
            assert run.record["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_folds_whose_epochs_take_different_numbers_of_steps_are_refused_as_one_stack():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)).astype(np.float32), rng.integers(0, 2, 60)
    folds = [(np.arange(30), np.arange(30, 60)), (np.arange(34), np.arange(34, 60))]  # 2 and 3 steps of 16
    with pytest.raises(ValueError, match=r"training splits of \[30, 34\] rows take \[2, 3\] steps"):
        _train_folds(folds, x, y, "binary", "[0,1]", "0.001")


def test_direct_calls_give_the_same_output_and_leave_a_hooked_model_to_nn_modules_call():
    model, x = MLP(3, 2, [4, 4], members=2, seeds=[0, 1]), torch.randn(5, 3)
    expected = model(x)
    with model.direct_calls() as direct:
        assert direct and torch.equal(model(x), expected)
    assert not model.direct
    calls = []
    model.hidden[1].register_forward_hook(lambda module, inputs, output: calls.append(output.shape))
    with model.direct_calls() as direct:
        assert not direct and torch.equal(model(x), expected)
    assert calls == [(2, 5, 4)]


def test_a_split_that_is_the_training_rows_is_evaluated_once_with_the_same_metrics():
    from reglab.api import train_in_memory
    from reglab.lightning.datamodule import RegLabDataModule
    from reglab.science import files

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    rows = np.arange(40)
    path, _ = files.register(x, y, folds=[(rows, rows)])
    try:
        assert RegLabDataModule(name="file", path=path, fold=0).same_as_train == {"val", "test"}
        overrides = ["data=file", f"data.path={path}", "data.fold=0", "trainer.max_epochs=2", "logger=none"]
        (run,) = train_in_memory([*overrides, "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"])
    finally:
        files.unregister(path)
    assert RegLabDataModule(name="moons", n_samples=100).same_as_train == set()
    metrics = run.record["metrics"]
    for key in ("loss", "acc"):
        assert metrics[f"val/{key}"] == metrics[f"train/{key}"] == metrics[f"test/{key}"]
