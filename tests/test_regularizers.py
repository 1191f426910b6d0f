"""The regularizers against theory and reference implementations (README, "Conventions")."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, Ridge

from reglab.lightning.datamodule import RegLabDataModule
from reglab.lightning.module import RegLabModule
from reglab.science import conventions
from reglab.science.model import MLP
from reglab.science.regularizers import L1, L2, REGULARIZERS, ElasticNet, GroupLasso, ProxL1, Regularizer, WeightDecay
from tests.conftest import train_run


def _model(seed: int = 0, hidden=(8, 8), d_in: int = 2) -> MLP:
    torch.manual_seed(seed)
    model = MLP(d_in, 1, hidden=list(hidden))
    with torch.no_grad():  # non-zero biases, so that "biases untouched" is a real check
        for layer in model.linear_layers().values():
            layer.bias.uniform_(-1, 1)
    return model


# 1. Penalty values ----------------------------------------------------------------------------


def test_penalties_equal_their_formulas_on_weight_matrices_only():
    model, lam = _model(), 0.37
    weights = [layer.weight for layer in model.linear_layers().values()]
    everything = [p for layer in model.linear_layers().values() for p in (layer.weight, layer.bias)]
    sum_abs = sum(w.abs().sum() for w in weights).item()
    sum_sq = sum(w.square().sum() for w in weights).item()
    assert L1(lam).bind(model).penalty().item() == pytest.approx(lam * sum_abs, rel=1e-6)
    assert L2(lam).bind(model).penalty().item() == pytest.approx(lam * sum_sq, rel=1e-6)
    en = ElasticNet(lam, l1_ratio=0.3).bind(model).penalty().item()
    assert en == pytest.approx(lam * (0.3 * sum_abs + 0.7 * sum_sq), rel=1e-6)
    with_bias = L1(lam, include_bias=True).bind(model).penalty().item()
    assert with_bias == pytest.approx(lam * sum(p.abs().sum() for p in everything).item(), rel=1e-6)
    no_output = L2(lam, exclude=["output"]).bind(model).penalty().item()
    assert no_output == pytest.approx(lam * (sum_sq - model.output.weight.square().sum().item()), rel=1e-6)


def test_decoupled_and_proximal_updates_leave_biases_alone_by_default():
    model = _model()
    biases = [layer.bias.detach().clone() for layer in model.linear_layers().values()]
    for reg in (WeightDecay(0.5), ProxL1(0.5), GroupLasso(0.5)):
        reg.bind(model)
        reg.before_step(0.1)
        reg.after_step(0.1)
    for before, layer in zip(biases, model.linear_layers().values()):
        assert torch.equal(before, layer.bias)


def test_negative_strength_and_unknown_layer_are_refused():
    with pytest.raises(ValueError, match="negative"):
        L1(-1e-3)
    with pytest.raises(ValueError, match="the layers are: hidden.0, hidden.1, output"):
        L2(1e-3, exclude=["head"]).bind(_model())


# 2-4. Decoupled weight decay, through the real LightningModule step ----------------------------


def _fit(model: MLP, reg: Regularizer, optimizer, epochs: int, data: RegLabDataModule | None = None) -> MLP:
    """Train `model` in place with RegLabModule's training step, full batch, `epochs` steps."""
    data = data or RegLabDataModule(name="moons", n_samples=200, batch_size=None, seed=0)
    module = RegLabModule(model, reg, optimizer, data.task)
    trainer = L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    return model


def test_decoupled_decay_alone_shrinks_geometrically_like_the_article_says():
    # No data loss: w_t = w_0·(1 − lr·λ)^t. With lr·λ = 0.02 a weight of 10 goes 10 → 9.8 → 9.604.
    w = torch.nn.Parameter(torch.full((3, 3), 10.0, dtype=torch.float64))  # float64: the claim is arithmetic
    reg = WeightDecay(strength=2.0)
    reg.params = [w]
    optimizer = torch.optim.SGD([w], lr=0.01)
    trajectory = [w[0, 0].item()]
    for _ in range(100):
        optimizer.zero_grad()
        (0.0 * w.sum()).backward()
        reg.before_step(0.01)
        optimizer.step()
        reg.after_step(0.01)
        trajectory.append(w[0, 0].item())
    assert trajectory[:3] == pytest.approx([10.0, 9.8, 9.604], abs=1e-6)
    expected = 10.0 * (1 - 0.01 * 2.0) ** np.arange(101)
    np.testing.assert_allclose(trajectory, expected, rtol=1e-6)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_decoupled_decay_with_zero_data_gradient_follows_the_closed_form(opt):
    # Through the LightningModule: all-zero inputs → the hidden layers get no data gradient.
    model = _model(hidden=(4,))
    data = RegLabDataModule(name="moons", n_samples=50, batch_size=None, seed=0)
    data.tensors = {s: (torch.zeros_like(x), y) for s, (x, y) in data.tensors.items()}
    w0 = model.hidden[0].weight.detach().clone()
    factory = partial(torch.optim.SGD, lr=0.05) if opt == "sgd" else partial(torch.optim.Adam, lr=0.05)
    _fit(model, WeightDecay(0.4, exclude=["output"]), factory, epochs=25, data=data)
    torch.testing.assert_close(model.hidden[0].weight, w0 * (1 - 0.05 * 0.4) ** 25, rtol=1e-6, atol=1e-6)


def test_sgd_with_l2_lambda_equals_sgd_with_decoupled_decay_2lambda():
    lam, sgd = 0.05, partial(torch.optim.SGD, lr=0.1)
    explicit = _fit(_model(), L2(lam), sgd, epochs=100)
    decoupled = _fit(_model(), WeightDecay(2 * lam), sgd, epochs=100)
    torch_wd = conventions.from_reglab(lam, "l2", "torch_sgd")
    reference = _model()
    layers = reference.linear_layers().values()
    reference_opt = torch.optim.SGD(
        [
            {"params": [layer.weight for layer in layers], "weight_decay": torch_wd},
            {"params": [layer.bias for layer in layers], "weight_decay": 0.0},
        ],
        lr=0.1,
    )
    data = RegLabDataModule(name="moons", n_samples=200, batch_size=None, seed=0)
    x, y = data.inputs("train")
    for _ in range(100):
        reference_opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(reference(x)[0, :, 0], y.float()).backward()
        reference_opt.step()
    for a, b, c in zip(explicit.parameters(), decoupled.parameters(), reference.parameters()):
        assert (a - b).abs().max().item() <= 1e-6
        assert (a - c).abs().max().item() <= 1e-6
    assert (explicit.hidden[0].weight - _model().hidden[0].weight).abs().max() > 1e-2  # it did train


def test_with_adam_explicit_l2_and_decoupled_decay_differ():
    # Loshchilov & Hutter: under Adam the penalty's gradient is rescaled by the moments, decay is not.
    lam, adam = 0.05, partial(torch.optim.Adam, lr=0.01)
    explicit = _fit(_model(), L2(lam), adam, epochs=100)
    decoupled = _fit(_model(), WeightDecay(2 * lam), adam, epochs=100)
    diff = max((a - b).abs().max().item() for a, b in zip(explicit.parameters(), decoupled.parameters()))
    assert diff > 1e-2


def test_weight_decay_with_adam_is_torch_adamw_step_for_step():
    lam, lr = 0.1, 0.01
    ours = _fit(_model(), WeightDecay(lam, include_bias=True), partial(torch.optim.Adam, lr=lr), epochs=50)
    reference = _model()
    adamw = torch.optim.AdamW(
        reference.parameters(), lr=lr, weight_decay=conventions.from_reglab(lam, "weight_decay", "torch_adamw")
    )
    x, y = RegLabDataModule(name="moons", n_samples=200, batch_size=None, seed=0).inputs("train")
    for _ in range(50):
        adamw.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(reference(x)[0, :, 0], y.float()).backward()
        adamw.step()
    for a, b in zip(ours.parameters(), reference.parameters()):
        assert (a - b).abs().max().item() <= 1e-6


def test_decay_and_prox_use_the_scheduled_learning_rate():
    w = torch.nn.Parameter(torch.tensor([1.0, -0.05, 0.3]))
    decay, prox = WeightDecay(0.5), ProxL1(0.5)
    decay.params = prox.params = [w]
    decay.before_step(0.2)  # × (1 − 0.1)
    torch.testing.assert_close(w.data, torch.tensor([0.9, -0.045, 0.27]))
    prox.after_step(0.2)  # soft threshold at 0.1
    torch.testing.assert_close(w.data, torch.tensor([0.8, 0.0, 0.17]))
    assert w[1].item() == 0.0  # exactly


# 5-9. What each regularizer does to a trained network -----------------------------------------


# Full-batch gradient descent for all four (prox-L1 is then ISTA), so explicit L1 and prox-L1
# differ only in the proximal map, and mini-batch noise doesn't revive zeroed weights.
FEATURES = [
    "data=features",
    "model.hidden=[16]",
    "data.batch_size=null",
    "optimizer=sgd",
    "optimizer.lr=0.2",
    "trainer.max_epochs=300",
]


@pytest.fixture(scope="module")
def feature_runs(tmp_path_factory):
    runs = {}
    for name, strength in [("none", 0.0), ("l1", 2e-2), ("prox_l1", 1e-2), ("l2", 2e-2)]:
        runs[name] = train_run(
            tmp_path_factory.mktemp(name), [*FEATURES, f"regularizer={name}", f"regularizer.strength={strength}"]
        )
    return runs


def test_prox_l1_zeroes_noise_features_and_keeps_informative_ones(feature_runs):
    run = feature_runs["prox_l1"]
    norms = np.array(run["feature_l1"])
    informative = run["support"]
    noise = np.setdiff1d(np.arange(len(norms)), informative)
    assert len(informative) == 4 and len(noise) == 26
    assert (norms[noise] == 0).mean() >= 0.9
    assert (norms[informative] > 0).all()
    assert run["metrics"]["val/acc"] > 0.95


def test_explicit_l1_gives_few_exact_zeros_but_many_near_zero(feature_runs):
    l1, prox, none = (feature_runs[k]["metrics"] for k in ("l1", "prox_l1", "none"))
    assert l1["weights/zero_frac"] < 0.01 and prox["weights/zero_frac"] > 0.9
    assert l1["weights/small_frac"] > 0.2 > 10 * none["weights/small_frac"]


def test_l2_leaves_no_exact_zeros_and_a_smaller_norm(feature_runs):
    l2, none = feature_runs["l2"]["metrics"], feature_runs["none"]["metrics"]
    assert l2["weights/zero_frac"] == 0.0
    assert l2["weights/l2"] < 0.8 * none["weights/l2"]


def test_group_lasso_switches_off_more_whole_units_as_lambda_grows(tmp_path):
    dead = [
        train_run(
            tmp_path / str(lam),
            [
                "model.hidden=[32,32]",
                "trainer.max_epochs=15",
                "optimizer=sgd",
                "optimizer.lr=0.1",
                "regularizer=group_lasso",
                f"regularizer.strength={lam}",
            ],
        )["metrics"]["weights/dead_units"]
        for lam in (0.0, 1e-2, 3e-2)
    ]
    assert dead[0] == 0 < dead[1] < dead[2] and dead[2] >= 48  # of 64 hidden units


@pytest.mark.parametrize("name", [n for n in REGULARIZERS if n != "none"])
def test_lambda_zero_reproduces_the_unregularized_run_exactly(tmp_path, name):
    base = train_run(tmp_path / "none", ["regularizer=none", "trainer.max_epochs=3"])
    zero = train_run(tmp_path / name, [f"regularizer={name}", "regularizer.strength=0", "trainer.max_epochs=3"])
    assert zero["metrics"] == base["metrics"]


# λ large enough to dominate the data gradient: explicit penalties under Adam (their gradient is
# normalised, so any large λ wins); decoupled and proximal updates under SGD with lr·λ < 1.
SGD = ["optimizer=sgd", "optimizer.lr=0.1"]
HUGE = {
    "l1": (1.0, []),
    "l2": (100.0, []),
    "elastic_net": (100.0, []),
    "weight_decay": (5.0, SGD),
    "prox_l1": (1.0, SGD),
    "group_lasso": (1.0, SGD),
}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_lambda_collapses_the_weights_to_chance_accuracy(tmp_path, name):
    strength, optimizer = HUGE[name]
    common = ["data.noise=0.1", "trainer.max_epochs=20", *optimizer]
    run = train_run(tmp_path, [*common, f"regularizer={name}", f"regularizer.strength={strength}"])
    base = train_run(tmp_path / "none", common)
    m = run["metrics"]
    assert m["train/acc"] < 0.6 and base["metrics"]["train/acc"] > 0.85  # the training split is ~50/50
    assert m["weights/hidden.0/l2"] < 0.1 * base["metrics"]["weights/hidden.0/l2"]


SPARSE = [
    "data=sparse_regression",
    "data.n_samples=400",
    "data.n_features=20",
    "data.n_informative=4",
    "data.batch_size=null",
    "model.hidden=[]",
    "optimizer=sgd",
    "optimizer.lr=0.1",
    "trainer.max_epochs=400",
]


def test_prox_l1_linear_model_recovers_the_true_support_and_matches_sklearn_lasso(tmp_path):
    lam = 0.05
    run = train_run(tmp_path, [*SPARSE, "regularizer=prox_l1", f"regularizer.strength={lam}"])
    recovered = np.flatnonzero(np.array(run["feature_l1"]) > 0).tolist()
    assert recovered == run["support"]
    # The same objective, solved by scikit-learn's coordinate descent: λ = 2α (README conventions).
    data = RegLabDataModule(name="sparse_regression", n_samples=400, n_features=20, n_informative=4, seed=0)
    x, y = data.split_arrays("train")
    alpha = conventions.from_reglab(lam, "l1", "sklearn_lasso")
    lasso = Lasso(alpha=alpha, tol=1e-10, max_iter=100_000).fit(x, y)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ours = ckpt["state_dict"]["model.output.weight"].numpy().ravel()
    np.testing.assert_allclose(ours, lasso.coef_, atol=2e-3)


def test_explicit_l2_linear_model_matches_sklearn_ridge(tmp_path):
    lam = 0.05
    train_run(tmp_path, [*SPARSE, "regularizer=l2", f"regularizer.strength={lam}"])
    data = RegLabDataModule(name="sparse_regression", n_samples=400, n_features=20, n_informative=4, seed=0)
    x, y = data.split_arrays("train")
    ridge = Ridge(alpha=conventions.from_reglab(lam, "l2", "sklearn_ridge", n=len(y))).fit(x, y)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    np.testing.assert_allclose(ckpt["state_dict"]["model.output.weight"].numpy().ravel(), ridge.coef_, atol=1e-4)


def test_conversions_round_trip_and_state_the_known_factors():
    assert conventions.from_reglab(1e-3, "l2", "torch_sgd") == 2e-3
    assert conventions.from_reglab(1e-3, "l1", "sklearn_lasso") == 5e-4
    assert conventions.from_reglab(1e-3, "l2", "sklearn_ridge", n=100) == pytest.approx(0.1)
    assert conventions.from_reglab(1e-3, "l2", "sklearn_mlp", batch=32) == pytest.approx(0.064)
    assert conventions.from_reglab(1e-2, "weight_decay", "adamw_paper", lr=1e-3) == pytest.approx(1e-5)
    for reg, conv in [("l1", "keras"), ("l2", "sklearn_ridge"), ("weight_decay", "adamw_paper")]:
        ctx = {"n": 50, "lr": 0.01, "batch": 8}
        assert conventions.to_reglab(conventions.from_reglab(0.3, reg, conv, **ctx), reg, conv, **ctx) == pytest.approx(
            0.3
        )
    with pytest.raises(ValueError, match="no conversion"):
        conventions.from_reglab(1.0, "prox_l1", "keras")


@pytest.mark.parametrize("name", ["l1", "l2", "elastic_net", "group_lasso"])
def test_reported_penalty_is_exact_to_1e6_on_trained_sparse_weights(tmp_path, name):
    from reglab.science.model import MLP

    model = MLP(30, 1, [64, 64], members=2, seeds=[0, 1])
    with torch.no_grad():  # trained-looking weights: most exactly 0 or tiny, a few large
        for layer in model.linear_layers().values():
            w = layer.weight
            w.mul_(torch.rand_like(w) < 0.1).mul_(torch.logspace(-8, 1, w.shape[-1]))
    reg = REGULARIZERS[name]([1e-3, 0.5], **({"input_features": True} if name == "group_lasso" else {})).bind(model)
    reported = reg.penalty(torch.float64)
    reference = []
    for k in range(2):  # float64 from scratch, member by member
        ws = [layer.weight[k].double() for layer in model.linear_layers().values()]
        abs_, sq = sum(w.abs().sum() for w in ws), sum(w.square().sum() for w in ws)
        if name == "l1":
            total = abs_
        elif name == "l2":
            total = sq
        elif name == "elastic_net":
            total = 0.5 * abs_ + 0.5 * sq
        else:
            rows = sum(w.norm(dim=1).sum() * w.shape[1] ** 0.5 for w in ws[:-1])
            total = rows + ws[0].norm(dim=0).sum() * ws[0].shape[0] ** 0.5
        reference.append(float(reg.strength[k]) * float(total))
    for ours, theirs in zip(reported.tolist(), reference):
        assert ours == pytest.approx(theirs, rel=1e-6)


# 10. What the regularizers refuse, their defaults, repr and options, before and after `bind` -----


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


def test_an_unbound_regularizer_has_no_tensors_and_one_lambda_per_member():
    # Before `bind` (or until `params` is set by hand, as some tests do).
    from reglab.science.regularizers import ProxL1, Regularizer, WeightDecay

    assert Regularizer().penalty().tolist() == [0.0]
    assert Regularizer([0.1, 0.2]).penalty().tolist() == [0.0, 0.0]
    for reg in (WeightDecay([0.5, 0.1]), ProxL1([0.5, 0.1])):
        assert reg.params == [] and reg.optimizer is None and reg.members == 2


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


# 11. Penalties and the plain group-lasso step against float64 references -------------------------


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
