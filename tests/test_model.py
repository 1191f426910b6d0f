"""The stacked MLP and what is measured of it (science/model.py, science/metrics.py): its settings
and refusals in their exact words, its initial weights drawn from each member's seed within their
bounds, and its weight and prediction metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

# The model (reglab.science.model) ----------------------------------------------------------------


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


# The metrics (reglab.science.metrics) ------------------------------------------------------------

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
