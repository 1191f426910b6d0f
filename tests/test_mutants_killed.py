"""Fast unit tests written against the mutants `make mutate` left alive (docs/testing.md): each
asserts a number against a hand-computed or float64 reference, on tensors and run directories small
enough that the whole file takes a few seconds."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from reglab import rundir
from reglab.runs import Run, flatten, mean_ci, results_table, seed_groups, varying_keys

# 1. The report's aggregation (reglab.runs) ------------------------------------------------------

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
    run.__dict__["config"] = cfg  # what the cached property would read from .hydra/config.yaml
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


# 2. The model (reglab.science.model) ------------------------------------------------------------


def test_mlp_refuses_bad_settings_with_the_exact_message():
    import re

    from reglab.science.model import MLP

    cases = [
        (
            dict(activation="swish"),
            "model.activation='swish' is unknown; choose one of: relu, tanh, gelu, sigmoid, leaky_relu",
        ),
        (dict(init="he"), "model.init='he' is unknown; choose one of: glorot_uniform, torch_default"),
        (dict(dropout=1.0), "model.dropout=1.0 must be in [0, 1)"),
        (dict(dropout=-0.1), "model.dropout=-0.1 must be in [0, 1)"),
        (dict(hidden=[8, 0]), "model.hidden=[8, 0] must be a list of widths > 0 ([] for a linear model)"),
        (dict(hidden=[8, 2.0]), "model.hidden=[8, 2.0] must be a list of widths > 0 ([] for a linear model)"),
        (
            dict(dropout=0.5, members=2),
            "model.dropout=0.5 with 2 stacked members: they would draw their masks from one generator and differ "
            "from their single runs; use dropout 0, or one λ and seed per run (-m)",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            MLP(2, 1, **{"hidden": [4], **kwargs})
    with pytest.raises(ValueError, match=r"^3 seeds for 2 members$"):
        MLP(2, 1, [4], members=2, seeds=[0, 1, 2])
    # The edges that are allowed.
    MLP(2, 1, [1], dropout=0.0, members=2)
    MLP(2, 1, [4], dropout=0.5, members=1)


def test_mlp_keeps_its_settings_and_member_rebuilds_them():
    import torch

    from reglab.science.model import MLP

    model = MLP(3, 2, [4, 5], activation="tanh", dropout=0.0, init="torch_default", members=2, seeds=[3, 4])
    assert (model.members, model.in_features, model.out_features) == (2, 3, 2)
    assert (model.widths, model.activation_name, model.dropout_p, model.init) == ([4, 5], "tanh", 0.0, "torch_default")
    assert isinstance(model.activation, torch.nn.Tanh) and isinstance(model.dropout, torch.nn.Identity)
    assert list(model.linear_layers()) == ["hidden.0", "hidden.1", "output"]
    shapes = [tuple(layer.weight.shape) for layer in model.linear_layers().values()]
    assert shapes == [(2, 4, 3), (2, 5, 4), (2, 2, 5)]
    assert [tuple(layer.bias.shape) for layer in model.linear_layers().values()] == [(2, 4), (2, 5), (2, 2)]
    one = model.member(1)
    assert (one.members, one.widths, one.activation_name, one.init) == (1, [4, 5], "tanh", "torch_default")
    x = torch.randn(7, 3)
    # By hand: tanh after each hidden layer, none after the output.
    h = x
    for layer in model.hidden:
        h = torch.tanh(h @ layer.weight[1].T + layer.bias[1])
    expected = h @ model.output.weight[1].T + model.output.bias[1]
    torch.testing.assert_close(model(x)[1], expected)
    torch.testing.assert_close(one(x)[0], expected)
    torch.testing.assert_close(model(torch.stack([x, x]))[1], expected)  # [K, n, in] inputs too
    assert MLP(2, 1, [4], dropout=0.3).dropout.p == 0.3 and MLP(2, 1, [4], dropout=0.3).member(0).dropout_p == 0.3


def test_initial_weights_follow_glorot_uniform_or_torch_default_bounds():
    from reglab.science.model import MLP

    glorot = MLP(300, 1, [200], seeds=[0])
    w = glorot.hidden[0].weight[0]
    bound = math.sqrt(6.0 / (300 + 200))
    assert w.abs().max().item() <= bound and w.abs().max().item() == pytest.approx(bound, rel=1e-3)
    assert w.mean().item() == pytest.approx(0.0, abs=3e-3)
    assert all(bool((layer.bias == 0).all()) for layer in glorot.linear_layers().values())
    default = MLP(300, 1, [200], init="torch_default", seeds=[0])
    w, b = default.hidden[0].weight[0], default.hidden[0].bias[0]
    assert w.abs().max().item() <= 1 / math.sqrt(300) and w.abs().max().item() == pytest.approx(
        1 / math.sqrt(300), rel=1e-3
    )
    assert b.abs().max().item() <= 1 / math.sqrt(300) and b.abs().max().item() > 0.9 / math.sqrt(300)
    out = default.output.bias[0].abs().item()
    assert 0 < out <= 1 / math.sqrt(200)
    one_input = MLP(1, 1, [50], init="torch_default", seeds=[0]).hidden[0]  # fan_in 1: U(±1)
    assert 0.9 < one_input.weight.abs().max().item() <= 1.0 and 0.9 < one_input.bias.abs().max().item() <= 1.0
    empty = MLP(0, 1, [], init="torch_default")  # no inputs: bound 0, no division by zero
    assert empty.output.weight.shape == (1, 1, 0) and empty.output.bias.item() == 0.0


# 3. Weight metrics (reglab.science.metrics) ----------------------------------------------------

A, B = 2.0**-11, 2.0**-9  # small weights that float32 holds exactly (A < 1e-3 < B)


def _hand_model():
    import torch

    from reglab.science.model import MLP

    model = MLP(2, 1, [3], members=2)
    with torch.no_grad():
        model.hidden[0].weight.copy_(
            torch.tensor([[[0.0, 0.0], [2.0, -3.0], [0.0, A]], [[1.0, 1.0], [0.0, -4.0], [0.5, 0.0]]])
        )
        model.output.weight.copy_(torch.tensor([[[0.0, -1.0, B]], [[0.0, 0.0, 0.0]]]))
        model.hidden[0].bias.fill_(7.0)  # biases are never counted
    return model


def test_weight_metrics_per_layer_and_total_equal_hand_computed_values():
    from reglab.science.metrics import feature_l1, n_weights, weight_metrics

    model = _hand_model()
    m = {k: v.tolist() for k, v in weight_metrics(model).items()}  # threshold 1e-3 by default
    # member 0: hidden 0, 0, 2, -3, 0, A; output 0, -1, B.  member 1: 1, 1, 0, -4, 0.5, 0; output 0, 0, 0.
    assert m["weights/hidden.0/l1"] == pytest.approx([5 + A, 6.5], rel=1e-12)
    assert m["weights/hidden.0/l2"] == pytest.approx([math.sqrt(13 + A**2), math.sqrt(18.25)], rel=1e-12)
    assert m["weights/hidden.0/max_abs"] == [3.0, 4.0]
    assert m["weights/hidden.0/zero_frac"] == pytest.approx([3 / 6, 2 / 6])
    assert m["weights/output/l1"] == pytest.approx([1 + B, 0.0], rel=1e-12)
    assert m["weights/output/l2"] == pytest.approx([math.sqrt(1 + B**2), 0.0], rel=1e-12)
    assert m["weights/output/max_abs"] == pytest.approx([1.0, 0.0])
    assert m["weights/output/zero_frac"] == pytest.approx([1 / 3, 1.0])
    assert m["weights/l1"] == pytest.approx([6 + A + B, 6.5], rel=1e-12)
    assert m["weights/l2"] == pytest.approx([math.sqrt(14 + A**2 + B**2), math.sqrt(18.25)], rel=1e-12)
    assert m["weights/max_abs"] == [3.0, 4.0]
    assert m["weights/zero_frac"] == pytest.approx([4 / 9, 5 / 9])
    assert m["weights/small_frac"] == pytest.approx([5 / 9, 5 / 9])  # |w| < 1e-3: the zeros and A
    assert m["weights/dead_units"] == [1.0, 0.0]  # member 0's first unit; member 1's output has no units
    assert weight_metrics(model, threshold=0.6)["weights/small_frac"].tolist() == pytest.approx([6 / 9, 6 / 9])
    assert weight_metrics(model, threshold=A)["weights/small_frac"].tolist() == pytest.approx([4 / 9, 5 / 9])  # |w| < A
    assert n_weights(model) == 9
    assert feature_l1(model) == [[2.0, 3 + A], [1.5, 5.0]]  # exact: these sums are exact in float64


def test_a_model_without_hidden_layers_has_no_dead_units():  # (`make mutate` deselects -k linear_model)
    from reglab.science.metrics import weight_metrics
    from reglab.science.model import MLP

    m = weight_metrics(MLP(3, 1, [], members=2))
    assert m["weights/dead_units"].tolist() == [0.0, 0.0]


# 4. Regularizers: what they refuse, and how they show (reglab.science.regularizers) ------------


def test_regularizers_refuse_bad_settings_with_the_exact_message():
    import re

    import torch

    from reglab.science import conventions
    from reglab.science.model import MLP
    from reglab.science.regularizers import L1, ElasticNet, ProxL1

    def refused(message: str):
        return pytest.raises(ValueError, match=f"^{re.escape(message)}$")

    model = MLP(2, 1, [4, 4], members=2)
    with refused("regularizer.exclude names no layer 'head'; the layers are: hidden.0, hidden.1, output"):
        L1(0.1, exclude=["hidden.0", "head"]).bind(model)
    with refused("regularizer.strength has 3 values; the model has 2 members"):
        L1([0.1, 0.2, 0.3]).bind(model)
    for ratio in (-0.01, 1.01):
        with refused(f"regularizer.l1_ratio={ratio} must be in [0, 1]"):
            ElasticNet(0.1, l1_ratio=ratio)
    assert ElasticNet(0.1, l1_ratio=0).l1_ratio == 0.0 and ElasticNet(0.1, l1_ratio=1).l1_ratio == 1.0
    with refused(
        "regularizer.preconditioned=true needs an optimizer with Adam's second moment (Adam, NAdam, AdamW); "
        "SGD is not one of them: use regularizer.preconditioned=auto or false"
    ):
        ProxL1(0.1, preconditioned=True).bind(model).use_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    with refused("regularizer.preconditioned=true needs the optimizer: call use_optimizer(optimizer) first"):
        ProxL1(0.1, preconditioned=True).bind(model).after_step(0.1)
    with refused("regularizer.preconditioned='yes' must be one of: auto, true, false"):
        ProxL1(0.1, preconditioned="yes")
    known = (
        "l1/keras, l2/keras, l2/torch_sgd, weight_decay/torch_adamw, weight_decay/adamw_paper, l1/sklearn_lasso, "
        "l2/sklearn_ridge, l2/article, l2/sklearn_mlp"
    )
    with refused(f"no conversion for 'prox_l1' in 'keras'; known: {known}"):
        conventions.to_reglab(1.0, "prox_l1", "keras")


def test_regularizer_repr_and_bound_members():
    from reglab.science.model import MLP
    from reglab.science.regularizers import L1, GroupLasso

    assert repr(L1([0.5, 1e-3])) == "L1(strength=[0.5, 0.001])"
    reg = GroupLasso(0.25).bind(MLP(2, 1, [4], members=3))
    assert repr(reg) == "GroupLasso(strength=[0.25, 0.25, 0.25])"
    assert reg.members == 3 and reg.strength.tolist() == [0.25] * 3


def test_regularizer_defaults():
    from reglab.science.regularizers import REGULARIZERS

    for cls in REGULARIZERS.values():
        reg = cls()
        assert reg.strength.tolist() == [0.0] and reg.include_bias is False and reg.exclude == (), cls
    assert REGULARIZERS["elastic_net"]().l1_ratio == 0.5
    assert REGULARIZERS["prox_l1"]().preconditioned == "auto"
    assert (
        REGULARIZERS["group_lasso"]().preconditioned == "auto" and REGULARIZERS["group_lasso"]().input_features is False
    )


# 5. The training step (reglab.lightning.module) -------------------------------------------------


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


# 6. Penalties and the plain group-lasso step against float64 references ------------------------


def _wide_model(members: int = 2):
    """Weights and biases over eight orders of magnitude, many exactly 0: float32 sums of these are
    off by far more than 1e-12."""
    import torch

    from reglab.science.model import MLP

    model = MLP(5, 2, [6, 4], members=members, seeds=list(range(members)))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.linear_layers().values():
            for p in (layer.weight, layer.bias):
                scale = 10.0 ** (8 * torch.rand(p.shape, generator=g) - 5)
                p.copy_(torch.randn(p.shape, generator=g) * scale * (torch.rand(p.shape, generator=g) > 0.3))
    return model


@pytest.mark.parametrize("include_bias", [False, True])
def test_reported_penalties_are_float64_and_exact_to_1e12(include_bias):
    import torch

    from reglab.science.regularizers import REGULARIZERS

    model = _wide_model()
    lam = [0.3, 1.7]
    layers = list(model.linear_layers().values())
    for k in range(2):
        ws = [layer.weight[k].double() for layer in layers]
        ps = [t for layer in layers for t in (layer.weight[k].double(), layer.bias[k].double())] if include_bias else ws
        values = [v for t in ps for v in t.flatten().tolist()]
        abs_, sq = math.fsum(abs(v) for v in values), math.fsum(v * v for v in values)
        rows = 0.0
        for layer in layers[:-1]:  # a unit's row, with its bias if include_bias; √p with p its size
            w, b = layer.weight[k].double(), layer.bias[k].double()
            for i in range(w.shape[0]):
                entries = [*w[i].tolist(), *([b[i].item()] if include_bias else [])]
                rows += math.sqrt(len(entries)) * math.sqrt(math.fsum(v * v for v in entries))
        first = layers[0].weight[k].double()
        columns = sum(
            math.sqrt(first.shape[0]) * math.sqrt(math.fsum(v * v for v in first[:, j].tolist()))
            for j in range(first.shape[1])
        )
        expected = {
            "l1": abs_,
            "prox_l1": abs_,
            "l2": sq,
            "weight_decay": 0.5 * sq,
            "elastic_net": 0.2 * abs_ + 0.8 * sq,
            "group_lasso": rows,
            "group_lasso_features": rows + columns,
        }
        for name, total in expected.items():
            options = {"include_bias": include_bias}
            options |= {"l1_ratio": 0.2} if name == "elastic_net" else {}
            options |= {"input_features": True} if name == "group_lasso_features" else {}
            reg = REGULARIZERS[name.removesuffix("_features")](lam, **options).bind(model)
            reported = reg.penalty(torch.float64)
            assert reported.dtype == torch.float64, name
            assert reported[k].item() == pytest.approx(lam[k] * total, rel=1e-12, abs=0), name
            assert reg.penalty().dtype == torch.float32  # the training objective stays in the weights' dtype
            assert reg.penalty()[k].item() == pytest.approx(lam[k] * total, rel=1e-5), name


@pytest.mark.parametrize("include_bias", [False, True])
def test_plain_group_lasso_step_is_the_block_soft_threshold(include_bias):
    # After an SGD step (preconditioned=false: plain even under Adam), every unit's row (and bias) is
    # scaled by max(0, 1 − lr·λ·√p/‖w_g‖), then every input column by max(0, 1 − lr·λ·√units/‖w_col‖).
    import torch

    from reglab.science.regularizers import GroupLasso

    lr, lam = 0.5, [0.02, 0.6]
    model = _wide_model()
    with torch.no_grad():
        model.hidden[0].weight[0, 1] = 1e-4  # a unit below the threshold: switched off
        model.hidden[0].bias[0, 1] = 1e-4
    layers = list(model.linear_layers().items())
    before = {
        name: (layer.weight.detach().double().clone(), layer.bias.detach().double().clone()) for name, layer in layers
    }
    reg = GroupLasso(lam, include_bias=include_bias, input_features=True).bind(model)
    reg.use_optimizer(torch.optim.Adam(model.parameters()))
    reg.preconditioned, reg._metric = False, False
    reg.after_step(lr)
    for name, layer in layers:
        w, b = before[name]
        if name != "output":
            for k in range(2):
                for i in range(w.shape[1]):
                    group = torch.cat([w[k, i], b[k, i : i + 1]]) if include_bias else w[k, i]
                    c = lr * lam[k] * math.sqrt(len(group))
                    scale = max(0.0, 1 - c / group.norm().item())
                    w[k, i] *= scale
                    b[k, i] *= scale if include_bias else 1.0
        if name == "hidden.0":
            for k in range(2):
                for j in range(w.shape[2]):
                    c = lr * lam[k] * math.sqrt(w.shape[1])
                    w[k, :, j] *= max(0.0, 1 - c / w[k, :, j].norm().item()) if w[k, :, j].norm() > 0 else 0.0
        torch.testing.assert_close(layer.weight.double(), w, rtol=1e-6, atol=1e-12, msg=name)
        torch.testing.assert_close(layer.bias.double(), b, rtol=1e-6, atol=1e-12, msg=name)
    assert bool((model.hidden[0].weight[0, 1] == 0).all())
    assert 0 < int((model.hidden[0].weight[1] == 0).all(0).sum()) < 5  # some columns off, not all


def test_regularizers_pass_their_options_on():
    from reglab.science.model import MLP
    from reglab.science.regularizers import ElasticNet, GroupLasso, ProxL1

    for reg in (
        ElasticNet(0.1, l1_ratio=0.3, include_bias=True, exclude=["output"]),
        ProxL1(0.1, include_bias=True, exclude=["output"]),
        GroupLasso(0.1, include_bias=True, exclude=["output"]),
    ):
        reg.bind(MLP(2, 1, [3]))
        assert reg.include_bias is True and reg.exclude == ("output",)
        assert len(reg.params) == 2  # hidden.0's weight and bias


def test_preconditioned_prox_skips_the_tensors_adam_has_not_stepped():
    # A tensor without a gradient gets no Adam step and no state: the proximal map leaves it alone
    # and still acts on the tensors after it.
    import torch

    from reglab.science.model import MLP
    from reglab.science.regularizers import ProxL1

    lr, lam = 0.1, 0.5
    model = MLP(2, 1, [3], members=1, seeds=[0])
    reg = ProxL1(lam).bind(model)
    adam = torch.optim.Adam(model.parameters(), lr=lr)
    reg.use_optimizer(adam)
    reg.after_step(lr)  # before any step: no state at all, nothing changes
    hidden = model.hidden[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = None if p is model.hidden[0].weight else torch.full_like(p, 0.01)
    adam.step()
    z = model.output.weight.detach().clone()
    d = (adam.state[model.output.weight]["exp_avg_sq"] / (1 - 0.999)).sqrt() + 1e-8  # = 0.01 + ε: one step
    reg.after_step(lr)
    assert torch.equal(model.hidden[0].weight, hidden)
    t = lr * lam / d
    torch.testing.assert_close(model.output.weight, z.sign() * (z.abs() - t).clamp_min(0), atol=1e-7, rtol=0)
    assert bool((model.output.weight == 0).all())  # t = 0.05/0.01 = 5 exceeds every output weight


def test_an_unregularized_penalty_is_zero_on_the_weights_device():
    import torch

    from reglab.science.model import MLP
    from reglab.science.regularizers import L1, Regularizer

    with torch.device("meta"):  # a device other than the CPU, on any machine
        model = MLP(2, 1, [3], members=2)
    penalty = Regularizer().bind(model).penalty(torch.float64)
    assert penalty.device.type == "meta" and penalty.dtype == torch.float64 and penalty.shape == (2,)
    assert L1([0.1, 0.2]).bind(model).penalty().device.type == "meta"  # λ follows the weights to their device
    cpu = Regularizer().bind(MLP(2, 1, [3], members=2)).penalty()
    assert cpu.tolist() == [0.0, 0.0] and cpu.dtype == torch.float32
    # One tensor to act on (a linear model), or none (every layer excluded): still zeros.
    assert Regularizer().bind(MLP(2, 1, [], members=2)).penalty().tolist() == [0.0, 0.0]
    assert Regularizer(exclude=["hidden.0", "output"]).bind(MLP(2, 1, [3])).penalty().tolist() == [0.0]


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


def test_binary_accuracy_at_logit_zero_predicts_class_0_like_torchmetrics():
    import torch
    from torchmetrics.functional.classification import binary_accuracy

    from reglab.science.metrics import prediction_metrics

    logits = torch.tensor([[[0.0], [3.0], [-3.0]]])  # [K = 1, n = 3, 1]; sigmoid(0) = 0.5 is not > 0.5
    y = torch.tensor([0, 1, 0])
    acc = prediction_metrics(logits, y, "binary")["acc"]
    assert acc.tolist() == [1.0]
    assert acc.item() == binary_accuracy(torch.sigmoid(logits[0, :, 0]), y).item()


def test_prediction_metrics_have_the_keys_and_values_of_their_task():
    import torch

    from reglab.science.metrics import prediction_metrics

    # Regression, K = 2: member 0 predicts [1, 2, 3] for y = [1, 2, 5]; member 1 predicts y's mean.
    logits = torch.tensor([[[1.0], [2.0], [3.0]], [[8 / 3], [8 / 3], [8 / 3]]])
    y = torch.tensor([1.0, 2.0, 5.0])
    m = prediction_metrics(logits, y, "regression")
    assert sorted(m) == ["loss", "mse", "r2"]
    assert m["loss"].tolist() == pytest.approx([4 / 3, 26 / 9], rel=1e-6)  # RSS/n: 4/3; TSS/n: (25 + 4 + 49)/27
    assert m["mse"].tolist() == m["loss"].tolist()
    assert m["r2"].tolist() == pytest.approx([1 - 4 / (78 / 9), 0.0], abs=1e-6)  # TSS = 78/9
    m = prediction_metrics(torch.tensor([[[2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]), torch.tensor([0, 1]), "multiclass")
    assert sorted(m) == ["acc", "loss"] and m["acc"].tolist() == [0.5]
    expected = (-math.log(math.exp(2) / (math.exp(2) + math.e + 1)) - math.log(1 / (2 + math.e))) / 2
    assert m["loss"].item() == pytest.approx(expected, rel=1e-6)
    m = prediction_metrics(torch.tensor([[[2.0], [-1.0]]]), torch.tensor([1, 1]), "binary")
    assert sorted(m) == ["acc", "loss"] and m["acc"].tolist() == [0.5]
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(1))) / 2  # −log σ(2), −log σ(−1)
    assert m["loss"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("init", ["glorot_uniform", "torch_default"])
def test_seeded_initial_weights_ignore_the_global_rng_and_follow_one_draw_order(init):
    # Member k draws, from its own generator seeded seeds[k], layer by layer: the weight, then the bias.
    import torch

    from reglab.science.model import MLP

    torch.manual_seed(0)
    a = MLP(3, 2, [4], init=init, members=2, seeds=[7, 8])
    torch.manual_seed(1)
    b = MLP(3, 2, [4], init=init, members=2, seeds=[7, 8])
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    for k, seed in enumerate([7, 8]):
        g = torch.Generator().manual_seed(seed)
        for layer, (fan_in, fan_out) in zip(a.linear_layers().values(), [(3, 4), (4, 2)]):
            if init == "glorot_uniform":
                bound, bias_bound = math.sqrt(6 / (fan_in + fan_out)), 0.0
            else:
                bound = bias_bound = 1 / math.sqrt(fan_in)
            assert torch.equal(layer.weight[k], torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g))
            assert torch.equal(layer.bias[k], torch.empty(fan_out).uniform_(-bias_bound, bias_bound, generator=g))


def test_an_unbound_regularizer_has_no_tensors_and_one_lambda_per_member():
    # Before `bind` (or until `params` is set by hand, as some tests do).
    from reglab.science.regularizers import ProxL1, Regularizer, WeightDecay

    assert Regularizer().penalty().tolist() == [0.0]
    assert Regularizer([0.1, 0.2]).penalty().tolist() == [0.0, 0.0]
    for reg in (WeightDecay([0.5, 0.1]), ProxL1([0.5, 0.1])):
        assert reg.params == [] and reg.optimizer is None and reg.members == 2
