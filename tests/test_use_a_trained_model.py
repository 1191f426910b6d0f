"""A trained run is a model you can use: load it, predict on raw inputs, evaluate it elsewhere, tabulate runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import reglab
from reglab.evaluate import main as eval_main
from reglab.science import datasets
from tests.conftest import RESUMABLE, epochs_trained, interrupted_stack, make_config, train_run

SMALL = ["data.n_samples=300", "model.hidden=[16,16]", "trainer.max_epochs=5"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    return run_dir, train_run(run_dir, [*SMALL, "regularizer=l2", "regularizer.strength=1e-3", "seed=2"])


def _raw_test_split(seed: int = 2):
    splits = datasets.load("moons", (0.6, 0.2, 0.2), 0.0, seed, n_samples=300, noise=0.2)
    return splits.x["test"] * splits.std + splits.mean, splits.y["test"]  # the inputs before any transform


def test_a_loaded_run_predicts_on_raw_inputs_with_its_logged_test_accuracy(finished):
    run_dir, record = finished
    trained = reglab.load_run(run_dir)
    x_raw, y = _raw_test_split()
    p = trained.predict_proba(x_raw)
    assert p.shape == (len(y), 2) and ((p >= 0) & (p <= 1)).all() and np.allclose(p.sum(1), 1)
    labels = trained.predict(x_raw)  # scikit-learn's convention: the class, not its probability
    assert labels.shape == (len(y),) and set(labels) <= {0, 1} and (labels == p.argmax(1)).all()
    assert (labels == y).mean() == pytest.approx(record["metrics"]["test/acc"], abs=1e-7)
    assert trained.config.regularizer.strength == 1e-3 and trained.task == "binary"
    assert trained.mean.shape == (2,) and not np.allclose(trained.transform(x_raw), x_raw)


def test_a_runs_checkpoint_is_the_plain_dict_its_format_lists(finished):
    import re

    import torch

    from reglab import checkpoint, rundir

    run_dir, record = finished
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)  # plain data and tensors
    listed = re.findall(r"^    (\w+(?:, \w+)*)  ", checkpoint.__doc__ or "", re.MULTILINE)
    assert set(state) == {key for keys in listed for key in keys.split(", ")}
    assert (state["format"], state["version"]) == (checkpoint.FORMAT, checkpoint.VERSION)
    assert state["hyper_parameters"]["regularizer"]["strength"] == [1e-3]
    assert state["members"][0] == record["config_hash"]
    assert state["progress"]["global_step"] == record["steps"] and len(state["history"]["epochs"]) == record["epochs"]
    assert state["optimizer"]["state"] and rundir.stack_checkpoint(run_dir).is_file()  # Lightning's: in .stack/ only


def test_reglab_eval_on_its_own_data_and_on_another_seeds(finished, capsys):
    run_dir, record = finished
    eval_main([str(run_dir)])
    own = json.loads((run_dir / "eval.json").read_text())
    assert own["metrics"]["test/acc"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    eval_main([str(run_dir), "seed=7", "data.noise=0.3"])
    other = json.loads((run_dir / "eval.json").read_text())
    assert other["data"]["seed"] == 7 and other["data"]["noise"] == 0.3 and other["n"] == 60
    assert 0.5 < other["metrics"]["test/acc"] != own["metrics"]["test/acc"]
    assert "seed 7" in capsys.readouterr().out


def test_reglab_eval_refuses_a_data_set_with_other_inputs_in_one_line(finished, capsys):
    with pytest.raises(SystemExit) as exit_:
        eval_main([str(finished[0]), "data=features"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data set 'features' has 50 inputs; the run was trained on 2") and err.count("\n") == 1


def test_results_table_has_a_column_per_varying_key(tmp_path):
    from reglab.fit import fit

    for lr in (0.001, 0.01):
        fit(
            make_config(
                tmp_path / f"lr={lr}",
                [*SMALL, "regularizer=l1", f"optimizer.lr={lr}", "regularizer.strength=[0,0.001]", "seed=[0,1]"],
            )
        )
    table = reglab.results(tmp_path)
    assert len(table) == 8 and {"optimizer.lr", "regularizer.strength", "seed", "status", "val/acc", "run_dir"} <= set(
        table.columns
    )
    assert sorted(table["optimizer.lr"].unique()) == [0.001, 0.01]
    assert "data.n_samples" not in table.columns  # the same in every run: not a column
    assert (table.groupby(["optimizer.lr", "regularizer.strength"]).size() == 2).all()  # two seeds each
    # The report never averages over lr: one study per lr, each λ a mean over its two seeds only.
    from reglab.report import report

    result = report(tmp_path, print_table=False)
    assert set(result["aggregate"]) == {"moons, optimizer.lr=0.001", "moons, optimizer.lr=0.01"}
    for study, groups in result["aggregate"].items():
        lr = float(study.split("=")[-1])
        for group in groups:
            seeds = table[(table["optimizer.lr"] == lr) & (table["regularizer.strength"] == group["lambda"])]
            assert group["n"] == 2 and group["val/acc"] == pytest.approx(seeds["val/acc"].mean(), abs=1e-12)
    summary = (tmp_path / "summary.md").read_text()
    assert (
        "## moons, optimizer.lr=0.01 (binary)" in summary
        and (tmp_path / "accuracy_vs_lambda_moons_optimizer.lr=0.01.png").is_file()
    )
    assert "optimizer.lr" in (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")


def test_load_from_checkpoint_rebuilds_the_module_of_a_run_and_of_a_member(finished, tmp_path):
    import torch

    from reglab.fit import fit
    from reglab.lightning.module import RegLabModule

    run_dir, _ = finished
    module = RegLabModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    x_raw, _ = _raw_test_split()
    trained = reglab.load_run(run_dir)
    with torch.no_grad():
        p = torch.sigmoid(module(torch.from_numpy(trained.transform(x_raw)))[0, :, 0]).numpy()
    np.testing.assert_allclose(p, trained.predict_proba(x_raw)[:, 1], rtol=1e-6)
    assert module.regularizer.name == "l2" and module.regularizer.strength.tolist() == [1e-3]
    fit(make_config(tmp_path, [*SMALL, "regularizer=l1", "regularizer.strength=[0.0001,0.01]", "seed=1"]))
    member = RegLabModule.load_from_checkpoint(tmp_path / "regularizer.strength=0.01" / "checkpoints" / "last.ckpt")
    assert member.model.members == 1 and member.regularizer.strength.tolist() == [0.01]


def test_train_from_python_returns_the_records(tmp_path):
    from reglab.api import run

    records = run([*SMALL, "logger=none", "regularizer=l1", "regularizer.strength=[0,0.01]"], run_dir=tmp_path / "py")
    assert [r["strength"] for r in records] == [0.0, 0.01] and all(r["status"] == "completed" for r in records)
    assert reglab.load_run(tmp_path / "py" / "regularizer.strength=0.01").config.regularizer.strength == 0.01


# Each rule's every argument, not its default: what a reload must give back (issue 28).
NON_DEFAULT = {
    "none": ["regularizer.include_bias=true"],
    "l1": ["regularizer.include_bias=true", "regularizer.exclude=[output]"],
    "l2": ["regularizer.exclude=[hidden.0]"],
    "elastic_net": ["regularizer.l1_ratio=0.2", "regularizer.include_bias=true"],
    "weight_decay": ["regularizer.exclude=[output]"],
    "prox_l1": ["regularizer.preconditioned=false", "regularizer.exclude=[output]"],
    "group_lasso": [
        "regularizer.input_features=true",
        "regularizer.preconditioned=false",
        "regularizer.include_bias=true",
    ],
}


@pytest.mark.parametrize("rule", list(NON_DEFAULT))
def test_a_member_reloads_three_ways_with_every_argument_it_trained_with(rule, tmp_path, monkeypatch):
    import shutil

    import torch

    from reglab.lightning.module import RegLabModule

    tiny = ["data.n_samples=120", "model.hidden=[8]", "data.batch_size=32", f"regularizer={rule}", *NON_DEFAULT[rule]]
    lam = 0.0 if rule == "none" else 0.01
    tiny += [f"regularizer.strength={lam}"]
    interrupted_stack(tmp_path / "stack", [*tiny, "seed=[0,1]"], monkeypatch)  # stopped after 4 of 5 epochs
    member = tmp_path / "stack" / "seed=1"
    configured = make_config(tmp_path / "cfg", tiny).regularizer
    # 1. load_from_checkpoint: the rule with every configured argument, λ of this member only
    module = RegLabModule.load_from_checkpoint(member / "checkpoints" / "last.ckpt")
    hp = module.regularizer.hyperparameters()
    assert hp["name"] == rule and hp["strength"] == [lam]
    for key, value in configured.items():
        if key not in ("_target_", "strength"):
            assert hp[key] == (list(value) if key == "exclude" else value), key
    # 2. load_run: the same network, predicting what the module computes
    x = np.random.default_rng(0).normal(size=(7, 2))
    trained = reglab.load_run(member)
    with torch.no_grad():
        logits = module(torch.from_numpy(trained.transform(x)))[0, :, 0].double()
    np.testing.assert_allclose(trained.predict_proba(x)[:, 1], torch.sigmoid(logits).numpy(), rtol=1e-6)
    assert trained.model.hyperparameters() == module.model.hyperparameters()
    # 3. resume: the member alone, re-launched with its config, trains only its last epoch (3 steps) from
    # its checkpoint and ends where its uninterrupted K = 1 run ends
    shutil.copytree(member, tmp_path / "resumed")
    single = [*tiny, "seed=1", *RESUMABLE]
    epochs = epochs_trained(monkeypatch)
    resumed = train_run(tmp_path / "resumed", single)
    assert epochs == [4]
    straight = train_run(tmp_path / "straight", single)
    assert resumed["status"] == "completed" and resumed["steps"] == straight["steps"] == 5 * 3
    for key, tensor in _weights(tmp_path / "straight").items():
        torch.testing.assert_close(_weights(tmp_path / "resumed")[key], tensor, rtol=1e-5, atol=1e-6)
    assert resumed["metrics"] == pytest.approx(straight["metrics"], rel=1e-5, abs=1e-6)


def _weights(run_dir):
    from reglab import checkpoint

    return checkpoint.read(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def test_training_in_memory_writes_nothing_and_gives_what_the_run_directory_holds(tmp_path, monkeypatch):
    from reglab.api import run, train_in_memory

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    args = ["model.hidden=[8]", "trainer.max_epochs=4", "logger=none", "callbacks.progress_bar=null"]
    args += ["trainer.enable_progress_bar=false", "regularizer=l1", "regularizer.strength=[0,0.01]"]
    monkeypatch.chdir(tmp_path)
    trained = train_in_memory(args, data=(x, y))
    assert list(tmp_path.rglob("*")) == []  # no run directory, checkpoint, metrics file or log
    records = run(args, tmp_path / "run", data=(x, y))
    for member, record in zip(trained, records):
        assert member.record["metrics"] == pytest.approx(record["metrics"], rel=1e-6)
        on_disk = reglab.load_run(tmp_path / "run" / f"regularizer.strength={record['strength']:g}")
        np.testing.assert_allclose(member.predict_proba(x), on_disk.predict_proba(x), rtol=1e-6)
    with pytest.raises(Exception, match="a run in memory logs nothing: use logger=none"):
        train_in_memory([*args, "logger=tensorboard"], data=(x, y))
