"""Proximal maps in Adam's metric (`preconditioned`; README, "Conventions"): ProxL1's threshold
η·λ/(√v̂ + ε) and GroupLasso's exact scaled group prox, against hand-written references, and the
sparsity they give under Adam where the plain ISTA threshold η·λ gives next to none."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from reglab.science import datasets
from reglab.science.model import MLP
from reglab.science.regularizers import GroupLasso, ProxL1

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "regularizer"

OPTIMIZERS = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adam_fused": lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True),
    "adamw_amsgrad": lambda params, lr: torch.optim.AdamW(params, lr=lr, amsgrad=True, eps=1e-7),
}


def _toy(members: int = 2) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    model = MLP(3, 1, [4], members=members, seeds=list(range(members)))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, generator=g)
    return model, x, y


def _loss(model: MLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # The sum of the members' mean losses: member k's gradient is its own loss's.
    return (model(x).squeeze(-1) - y).square().mean(-1).sum()


def _train(model, reg, optimizer, x, y, steps: int, lr: float) -> None:
    """The training step of `RegLabModule._step`, in plain PyTorch."""
    reg.bind(model)
    reg.use_optimizer(optimizer)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        _loss(model, x, y).backward()
        reg.before_step(lr)
        optimizer.step()
        reg.after_step(lr)


# 1. The rules against hand-written references ------------------------------------------------


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_preconditioned_prox_equals_a_hand_written_reference_on_a_3_step_toy(opt):
    lr, lam = 0.1, [0.05, 0.5]  # one λ per member
    model, x, y = _toy()
    reference = copy.deepcopy(model)
    _train(model, ProxL1(lam), OPTIMIZERS[opt](model.parameters(), lr), x, y, steps=3, lr=lr)

    # Reference: Adam, then per weight matrix w ← sign(w)·max(|w| − t, 0), t = lr·λ_k / (√v̂ + ε).
    adam = OPTIMIZERS[opt](reference.parameters(), lr)
    weights = [layer.weight for layer in reference.linear_layers().values()]
    for _ in range(3):
        adam.zero_grad()
        _loss(reference, x, y).backward()
        adam.step()
        with torch.no_grad():
            for w in weights:
                state, group = adam.state[w], adam.param_groups[0]
                beta2, eps = group["betas"][1], group["eps"]
                v = state["max_exp_avg_sq"] if group["amsgrad"] else state["exp_avg_sq"]
                v_hat = v / (1 - beta2 ** float(state["step"]))
                for k in range(2):
                    t = lr * lam[k] / (v_hat[k].sqrt() + eps)
                    w[k] = w[k].sign() * (w[k].abs() - t).clamp_min(0)

    zeros = 0
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, atol=1e-7, rtol=0)
        zeros += int((ours == 0).sum()) if name.endswith("weight") else 0
    assert zeros >= 3  # the threshold did zero some weights, so the comparison covers that branch
    assert all(bool((layer.bias != 0).any()) for layer in model.linear_layers().values())  # biases: Adam only


def _adam_denominator(adam: torch.optim.Adam, p: torch.Tensor) -> torch.Tensor:
    """√v̂ + ε, v̂ = exp_avg_sq / (1 − β₂^t): what Adam divided p's latest step by."""
    beta2, eps = adam.param_groups[0]["betas"][1], adam.param_groups[0]["eps"]
    state = adam.state[p]
    return (state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))).sqrt() + eps


def _group_prox_reference(z: torch.Tensor, d: torch.Tensor, c: float, halvings: int = 200) -> torch.Tensor:
    """argmin_x c·‖x‖₂ + ½(x − z)ᵀ diag(d) (x − z) for one group, in float64, by bisection on
    r = ‖x‖: x = 0 if ‖d·z‖ ≤ c, else x_i = z_i·r/(r + c/d_i) with Σ z_i²/(r + c/d_i)² = 1."""
    z, d = z.double(), d.double()
    if (d * z).norm() <= c:
        return torch.zeros_like(z)
    mu = c / d
    lo, hi = 0.0, z.norm().item()  # φ(0) > 1 ≥ φ(‖z‖)
    for _ in range(halvings):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (z / (mid + mu)).square().sum() > 1 else (lo, mid)
    r = (lo + hi) / 2
    return z * r / (r + mu)


def test_preconditioned_group_prox_solves_its_proximal_problem():
    lr, lam = 0.05, [0.02, 0.3]
    model, x, y = _toy()
    reg = GroupLasso(lam, include_bias=True).bind(model)
    adam = torch.optim.Adam(model.parameters(), lr=lr)
    reg.use_optimizer(adam)
    for _ in range(3):
        adam.zero_grad()
        _loss(model, x, y).backward()
        adam.step()
        layer = model.hidden[0]
        z = torch.cat([layer.weight, layer.bias.unsqueeze(-1)], -1).detach().clone()  # [K, 4 units, 3 + 1]
        d = torch.cat([_adam_denominator(adam, layer.weight), _adam_denominator(adam, layer.bias).unsqueeze(-1)], -1)
        reg.after_step(lr)
        ours = torch.cat([layer.weight, layer.bias.unsqueeze(-1)], -1).detach()
        for k in range(2):
            c = lr * lam[k] * math.sqrt(4)  # the prox of λ√p‖·‖ in the metric diag(D)/lr, scaled by lr
            for g in range(4):
                torch.testing.assert_close(
                    ours[k, g].double(), _group_prox_reference(z[k, g], d[k, g], c), atol=1e-6, rtol=1e-5
                )
    assert int((ours == 0).all(-1).sum()) >= 1  # a whole unit (weights and bias) is off


def test_preconditioned_input_feature_groups_follow_the_units_and_solve_their_proximal_problem():
    # input_features: each column of the first layer is a group too, shrunk after the rows.
    lr, lam = 0.05, [0.02, 0.3]
    model, x, y = _toy()
    reg = GroupLasso(lam, input_features=True).bind(model)
    adam = torch.optim.Adam(model.parameters(), lr=lr)
    reg.use_optimizer(adam)
    columns_shrunk = 0
    for _ in range(2):
        adam.zero_grad()
        _loss(model, x, y).backward()
        adam.step()
        w = model.hidden[0].weight  # [K, 4 units, 3 inputs]
        z, d = w.detach().clone(), _adam_denominator(adam, w)
        reg.after_step(lr)
        for k in range(2):
            c_row, c_col = lr * lam[k] * math.sqrt(3), lr * lam[k] * math.sqrt(4)  # √p: 3 inputs, 4 units
            rows = torch.stack([_group_prox_reference(z[k, g], d[k, g], c_row, halvings=60) for g in range(4)])
            cols = [_group_prox_reference(rows[:, i], d[k, :, i], c_col, halvings=60) for i in range(3)]
            expected = torch.stack(cols, -1)
            torch.testing.assert_close(w[k].double(), expected, atol=1e-6, rtol=1e-5)
            columns_shrunk += int(((expected != 0) & (expected.abs() < rows.abs() - 1e-6)).any(0).sum())
    assert columns_shrunk >= 2  # the column step shrank live columns, not only zeroed or skipped them


# 2-4. What must not change, and what is refused ----------------------------------------------


@pytest.mark.parametrize("cls", [ProxL1, GroupLasso])
def test_lambda_zero_leaves_adam_unchanged_exactly(cls):
    lr = 0.1
    plain, x, y = _toy()
    zero, mixed, reference = copy.deepcopy(plain), copy.deepcopy(plain), copy.deepcopy(plain)
    _train(plain, cls(0.0), torch.optim.Adam(plain.parameters(), lr=lr), x, y, steps=5, lr=lr)
    _train(zero, cls(0.0, preconditioned=True), torch.optim.Adam(zero.parameters(), lr=lr), x, y, steps=5, lr=lr)
    # λ = [0, 0.5]: member 0 is plain Adam bit for bit, member 1 is not.
    _train(mixed, cls([0.0, 0.5]), torch.optim.Adam(mixed.parameters(), lr=lr), x, y, steps=5, lr=lr)
    adam = torch.optim.Adam(reference.parameters(), lr=lr)
    for _ in range(5):
        adam.zero_grad()
        _loss(reference, x, y).backward()
        adam.step()
    for a, b, c, m in zip(plain.parameters(), zero.parameters(), reference.parameters(), mixed.parameters()):
        assert torch.equal(a, c) and torch.equal(b, c) and torch.equal(m[0], c[0])
    assert not torch.equal(mixed.hidden[0].weight[1], reference.hidden[0].weight[1])


@pytest.mark.parametrize("cls", [ProxL1, GroupLasso])
def test_sgd_prox_step_is_unchanged_plain_ista(cls):
    lr, lam = 0.1, [0.3, 1.0]
    runs = {}
    for preconditioned in ("auto", False):
        model, x, y = _toy()
        _train(model, cls(lam, preconditioned=preconditioned), torch.optim.SGD(model.parameters(), lr=lr), x, y, 3, lr)
        runs[preconditioned] = model
    for a, b in zip(runs["auto"].parameters(), runs[False].parameters()):
        assert torch.equal(a, b)

    # One SGD step by hand: w ← sign(z)·max(|z| − lr·λ, 0), z = w − lr·∇ (ISTA).
    model, x, y = _toy()
    reference = copy.deepcopy(model)
    _train(model, ProxL1(lam), torch.optim.SGD(model.parameters(), lr=lr), x, y, 1, lr)
    _loss(reference, x, y).backward()
    with torch.no_grad():
        for p in reference.parameters():
            p -= lr * p.grad
        for layer in reference.linear_layers().values():
            t = lr * torch.tensor(lam).view(2, 1, 1)
            layer.weight.copy_(layer.weight.sign() * (layer.weight.abs() - t).clamp_min(0))
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)
    assert int((model.hidden[0].weight == 0).sum()) >= 1


@pytest.mark.parametrize("cls", [ProxL1, GroupLasso])
def test_preconditioned_true_without_second_moment_is_refused(cls):
    model = MLP(3, 1, [4])
    reg = cls(0.1, preconditioned=True).bind(model)
    with pytest.raises(
        ValueError, match=r"regularizer\.preconditioned=true needs an optimizer with Adam's second moment"
    ):
        reg.use_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    reg.use_optimizer(torch.optim.AdamW(model.parameters(), lr=0.1))  # has one: accepted
    # auto and false accept any optimizer
    for preconditioned in ("auto", False):
        cls(0.1, preconditioned=preconditioned).bind(model).use_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("cls", [ProxL1, GroupLasso])
@pytest.mark.parametrize("value", ["yes", "true", 1, None, "Auto"])
def test_bad_preconditioned_value_is_refused(cls, value):
    with pytest.raises(ValueError, match=r"regularizer\.preconditioned=.* must be one of: auto, true, false"):
        cls(0.1, preconditioned=value)


@pytest.mark.parametrize("name", ["prox_l1", "group_lasso"])
def test_configs_default_to_auto(name):
    reg = instantiate(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert reg.preconditioned == "auto"


# 5-6. Sparsity under Adam on `features` ---------------------------------------------------------


# configs/data/features.yaml: 30 inputs, the first 4 informative (splits.support), the rest noise.
FEATURES = dict(n_samples=1000, n_features=30, n_informative=4, n_clusters_per_class=1, class_sep=2.0)
SEEDS = [0, 1, 2, 3]  # four members, one model: four independent runs at once


@pytest.fixture(scope="module")
def features():
    return datasets.load("features", split=(0.6, 0.2, 0.2), seed=0, **FEATURES)


@pytest.fixture
def one_thread():
    """Tensors this small run several times faster on one thread (and on a busy machine, far more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit_features(splits, reg, hidden: list[int], steps: int = 200, lr: float = 1e-2) -> tuple[MLP, torch.Tensor]:
    """Full-batch Adam, `steps` steps; returns the model and each member's validation accuracy."""
    model = MLP(30, 1, hidden, members=len(SEEDS), seeds=SEEDS)
    x, y = torch.from_numpy(splits.x["train"]), torch.from_numpy(splits.y["train"]).float()
    reg.bind(model)
    adam = torch.optim.Adam(model.parameters(), lr=lr)
    reg.use_optimizer(adam)
    for _ in range(steps):
        adam.zero_grad(set_to_none=True)
        logits = model(x).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none")
        loss.mean(-1).sum().backward()
        adam.step()
        reg.after_step(lr)
    with torch.no_grad():
        val = model(torch.from_numpy(splits.x["val"])).squeeze(-1) > 0
    return model, (val == torch.from_numpy(splits.y["val"]).bool()).float().mean(-1)


def test_preconditioned_prox_l1_under_adam_zeroes_noise_inputs_and_keeps_informative_ones(features, one_thread):
    informative = features.support
    noise = [i for i in range(30) if i not in informative]
    assert informative == [0, 1, 2, 3] and len(noise) == 26
    zero = {}
    for preconditioned in ("auto", False):
        model, acc = _fit_features(features, ProxL1(8e-3, preconditioned=preconditioned), [16])
        w = model.hidden[0].weight.detach()  # [K, 16, 30]
        zero[preconditioned] = (w[:, :, noise] == 0).float().mean((1, 2))  # per member
        columns_off = (w == 0).all(1)  # [K, 30]: input i's first-layer column is exactly 0
        if preconditioned == "auto":
            assert (columns_off[:, noise].float().mean(-1) >= 0.9).all()  # measured: 25 or 26 of 26
            assert not columns_off[:, informative].any()
            assert (acc > 0.95).all()
    # The problem being fixed: the plain threshold lr·λ under Adam leaves the noise weights almost all non-zero.
    assert (zero["auto"] >= 0.95).all() and (zero[False] < 0.1).all()  # measured: ≥ 0.997 and ≤ 0.012


def test_preconditioned_group_lasso_under_adam_switches_off_whole_units(features, one_thread):
    dead, accuracy = {}, {}
    for preconditioned in ("auto", False):
        model, accuracy[preconditioned] = _fit_features(features, GroupLasso(1e-3, preconditioned=preconditioned), [32])
        dead[preconditioned] = (model.hidden[0].weight == 0).all(-1).sum(-1)  # of 32 units, per member
    assert (dead["auto"] >= 8).all()  # measured: 16 to 18 of 32
    assert (dead[False] == 0).all()  # the plain threshold lr·λ·√p under Adam switches off none
    assert (accuracy["auto"] > 0.95).all()


# 7. Tensors Adam has not stepped -----------------------------------------------------------------


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
