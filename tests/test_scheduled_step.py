"""A scheduler scales the decoupled and proximal updates as it scales the gradient step (issue 21).

Through the real training step (`RegLabModule._step`, a Lightning Trainer on the CPU), with all-zero
inputs, so that the first layer's weights get no data gradient: every change to them is the
regularizer's, with the learning rate of that epoch, η_t. Each step's decay factor must be
(1 − η_t·λ) and each prox threshold η_t·λ for the SCHEDULED η_t; the initial learning rate (what
`param_groups[0]["initial_lr"]` holds) would give (1 − η_0·λ) and η_0·λ at every step.
"""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch

from reglab.lightning.datamodule import RegLabDataModule
from reglab.lightning.module import RegLabModule
from reglab.science.model import MLP
from reglab.science.regularizers import ProxL1, Regularizer, WeightDecay

LR, EPOCHS = 0.1, 4  # full batch: one step per epoch, so step t runs at η_t

# The schedulers, and η_t as their papers write it (not read back from the scheduler).
SCHEDULES = {
    "step": (
        partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        [LR * 0.5**t for t in range(EPOCHS)],
    ),
    "cosine": (
        partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=EPOCHS, eta_min=0.0),
        [LR * (1 + math.cos(math.pi * t / EPOCHS)) / 2 for t in range(EPOCHS)],
    ),
}


Snapshots = list[tuple[torch.Tensor, torch.Tensor]]


def _train(reg: Regularizer, scheduler, method: str) -> tuple[list[float], torch.Tensor, Snapshots, torch.Tensor]:
    """Train with SGD and `scheduler` on zero inputs; return the lr passed to each call of
    `reg.<method>`, the first layer's initial weights, those weights just before and after each
    call, and at the end."""
    torch.manual_seed(0)
    model = MLP(2, 1, [4], seeds=[0])
    data = RegLabDataModule(name="moons", n_samples=50, batch_size=None, seed=0)
    data.tensors = {s: (torch.zeros_like(x), y) for s, (x, y) in data.tensors.items()}
    module = RegLabModule(model, reg, partial(torch.optim.SGD, lr=LR), data.task, scheduler=scheduler)
    weight = model.hidden[0].weight
    assert reg.params == [weight]  # the regularizer acts on the first layer's weights only
    lrs: list[float] = []
    snapshots: Snapshots = []
    original = getattr(reg, method)

    def recorded(lr: float) -> None:
        before = weight.detach().clone()
        original(lr)
        lrs.append(lr)
        snapshots.append((before, weight.detach().clone()))

    setattr(reg, method, recorded)
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = L.Trainer(max_epochs=EPOCHS, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu", **quiet)
    w0 = weight.detach().clone()
    trainer.fit(module, datamodule=data)
    assert len(lrs) == EPOCHS
    return lrs, w0, snapshots, weight.detach()


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_decay_factor_of_each_step_is_one_minus_scheduled_lr_times_lambda(schedule):
    scheduler, eta = SCHEDULES[schedule]
    lam = 2.0  # 1 − η_0·λ = 0.8: the initial lr would give 0.8 at every step
    lrs, w0, snapshots, final = _train(WeightDecay(lam, exclude=["output"]), scheduler, "before_step")
    assert eta[-1] < 0.5 * LR  # the schedule really moves the lr
    assert lrs == pytest.approx(eta, rel=1e-9)
    for t, (before, after) in enumerate(snapshots):
        torch.testing.assert_close(after, before * (1 - eta[t] * lam), rtol=1e-6, atol=1e-7)
    # and nothing else touched those weights: the closed form over the whole run
    expected = w0 * math.prod(1 - e * lam for e in eta)
    torch.testing.assert_close(final, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_prox_threshold_of_each_step_is_scheduled_lr_times_lambda(schedule):
    scheduler, eta = SCHEDULES[schedule]
    lam = 0.5  # thresholds of 0.05 and less: weights of about 1 shrink, the small ones reach 0
    lrs, w0, snapshots, final = _train(ProxL1(lam, exclude=["output"]), scheduler, "after_step")
    assert lrs == pytest.approx(eta, rel=1e-9)
    for t, (before, after) in enumerate(snapshots):
        threshold = eta[t] * lam
        expected = before.sign() * (before.abs() - threshold).clamp_min(0)
        torch.testing.assert_close(after, expected, rtol=1e-6, atol=1e-7)
    # soft thresholds compose: sign(w_0)·max(|w_0| − λ·Σ_t η_t, 0) at the end
    expected = w0.sign() * (w0.abs() - lam * sum(eta)).clamp_min(0)
    torch.testing.assert_close(final, expected, rtol=1e-6, atol=1e-7)
    assert (expected != 0).any() and not torch.equal(expected, w0)  # it shrank weights and kept some
