"""The LightningModule: an MLP of K ≥ 1 members, one regularizer, one optimizer.

Lightning sees one batch per epoch (the sample orders); `training_step` runs the epoch's mini-batches
itself, with manual optimization, so every place a regularizer touches the weights is in `_step`:

    objective = data_loss + reg.penalty()   # penalty only if reg.explicit; per member, [K]
    backward(objective.sum())               # member k's objective reaches only member k's weights
    reg.before_step(lr)                     # decoupled decay
    optimizer.step()
    reg.after_step(lr)                      # proximal maps

Every evaluated epoch (`trainer.check_val_every_n_epoch`, and the last) computes every metric of every
member on the device into `epoch_metrics`, [K] tensors the callbacks read with one host transfer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from reglab import checkpoint
from reglab.science.data import Task
from reglab.science.metrics import data_loss, prediction_metrics, weight_metrics
from reglab.science.model import MLP
from reglab.science.regularizers import Regularizer

_NOWHERE = contextlib.nullcontext()
_ANYWHERE: Callable[[str], Any] = lambda _: _NOWHERE  # noqa: E731 (a training step blames no config key)
# The callback hooks Lightning's optimizer and `manual_backward` call on every step.
PER_STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")


class RegLabModule(L.LightningModule):
    objective_total: Tensor  # a buffer: Σ of each member's objectives (float64), added to on the device by every step

    def __init__(
        self,
        model: MLP,
        regularizer: Regularizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        task: Task,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        sparsity_threshold: float = 1e-3,
        gradient_clip_val: float | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.regularizer = regularizer.bind(model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task, self.sparsity_threshold = task, sparsity_threshold
        if (clip := gradient_clip_val) is not None and not (isinstance(clip, (int, float)) and clip >= 0):
            raise ValueError(f"gradient_clip_val={clip!r} must be a number >= 0 (0 or null: no clipping)")
        self.gradient_clip_val = gradient_clip_val
        self.register_buffer("objective_total", torch.zeros(model.members, dtype=torch.float64), persistent=False)
        self.diverged_epoch: list[int | None] = [None] * model.members
        self.diverged_weights: dict[int, dict[str, Tensor]] = {}  # where a diverged member stopped
        self.epoch_metrics: dict[str, Tensor] = {}  # the last evaluated epoch's metrics, [K] each
        self.evaluated_epoch = -1
        self._plain_steps = False  # set by on_train_start
        self._params: list[Tensor] = []  # set by on_train_start
        # Saved with checkpoints: a re-launch resumes only a checkpoint of the same members.
        self.member_hashes: list[str] = []
        # What `load_from_checkpoint` needs, as plain data: the constructor's arguments are objects.
        hp: dict[str, Any] = dict(model=model.hyperparameters(), regularizer=regularizer.hyperparameters())
        hp |= dict(task=task, sparsity_threshold=sparsity_threshold)
        self.hparams.update(hp)

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning names the hook it runs in `_current_fx_name` around every hook call, 30 times an epoch;
        # nn.Module's __setattr__ checks each value against parameters, buffers and submodules, ~4 µs a time.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, orders: Tensor, batch_idx: int) -> None:
        """One epoch: `_step` on each mini-batch of the epoch's order, then the epoch's metrics."""
        datamodule = self.trainer.datamodule  # type: ignore[attr-defined]
        distinct = datamodule.distinct_rows  # [S, 1]: row s of the orders indexes data set s
        # Folds of unequal size: row weights (0 on the padding that fills the last batch), else none at all
        padded = [datamodule.weights["train"]] if "train" in datamodule.weights else []
        x, y, *w = datamodule.per_member(*(t[distinct, orders] for t in (*datamodule.tensors["train"], *padded)))
        optimizer = cast(LightningOptimizer, self.optimizers())
        batch = datamodule.batch_size
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        # x: [n, d] shared by every member, or [K, n, d]; the epoch's batches as views, cut in one op
        xs, ys = x.split(batch, -2), y.split(batch, -1)
        with self.model.direct_calls() if self._plain_steps else _NOWHERE:
            for xb, yb, wb in zip(xs, ys, w[0].split(batch, -1) if w else [None] * len(xs)):
                if self._plain_steps:  # the torch optimizer itself; Lightning counts the step as its own would
                    progress.increment_ready()
                    self._step(xb, yb, optimizer.optimizer, weight=wb)
                    progress.increment_completed()
                else:
                    self._step(xb, yb, cast(torch.optim.Optimizer, optimizer), weight=wb)
        self._check_divergence()
        epoch, every = self.current_epoch, self.trainer.check_val_every_n_epoch or 1
        if (epoch + 1) % every == 0 or epoch + 1 == self.trainer.max_epochs or self.trainer.should_stop:
            self.epoch_metrics, self.evaluated_epoch = self.evaluate("val"), epoch

    def on_train_start(self) -> None:
        """Whether each step goes through the torch optimizer and `Tensor.backward` themselves: the same
        arithmetic as Lightning's `optimizer.step()` and `manual_backward`, without the ten or so hook
        dispatches they add to every step (docs/benchmarks.md, "The step"). Lightning's own path where
        it does more than dispatch: a precision plugin that scales the loss (16-mixed), a profiler
        that times each step, or a callback that overrides a per-step hook."""
        from lightning.pytorch.callbacks import Callback
        from lightning.pytorch.profilers import PassThroughProfiler
        from lightning.pytorch.utilities.model_helpers import is_overridden

        trainer: Any = self.trainer
        hooked = any(is_overridden(hook, c, Callback) for c in trainer.callbacks for hook in PER_STEP_HOOKS)
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
        self._plain_steps = not (hooked or scaled or not isinstance(trainer.profiler, PassThroughProfiler))
        self._params = list(self.model.parameters())  # what the divergence check sums, once an epoch

    def _step(
        self,
        x: Tensor,
        y: Tensor,
        optimizer: torch.optim.Optimizer,
        part: Callable[[str], Any] | None = None,
        weight: Tensor | None = None,
    ) -> None:
        """One optimizer step: the one place of the update order. `part` (the preflight's trial step):
        the config group each phase's error is blamed on, as a context manager ("model", …); `weight`:
        the rows' weights, as `data_loss`'s."""
        within = part or _ANYWHERE
        with within("model"):
            objective = self.regularized_loss(x, y, weight)  # [K]
            if self._plain_steps:  # zero_grad(set_to_none=True) without its profiler record and dynamo guard
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        p.grad = None
                objective.sum().backward()  # member k's objective only reaches member k's weights
            else:
                optimizer.zero_grad(set_to_none=True)
                self.manual_backward(objective.sum())
        if self.gradient_clip_val:
            self.clip_member_gradients(self.gradient_clip_val)
        lr = optimizer.param_groups[0]["lr"]
        with within("regularizer"):
            self.regularizer.before_step(lr)  # decoupled decay: on the weights the gradient saw
        with within("optimizer"):
            optimizer.step()
        with within("regularizer"):
            self.regularizer.after_step(lr)  # proximal maps: on the weights the optimizer produced
        self.objective_total.add_(objective.detach())  # one op a step; NaN and inf stay in the sum

    @property
    def all_finite(self) -> Tensor:
        """Whether every objective of each member was finite so far, [K] (read once per epoch: a host sync)."""
        return torch.isfinite(self.objective_total)

    def regularized_loss(self, x: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
        """Each member's training objective on a batch: data loss, plus the penalty if explicit."""
        model = self.model
        objective = data_loss(model.forward(x) if model.direct else model(x), y, self.task, weight)
        return objective + self.regularizer.penalty() if self.regularizer.explicit else objective

    def clip_member_gradients(self, max_norm: float) -> None:
        """Scale each member's gradient to a total 2-norm of at most `max_norm` (Lightning's
        `gradient_clip_val` with the norm algorithm, taken per member: members stay independent)."""
        with torch.no_grad():
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            norms = torch.stack([g.flatten(1).square().sum(1) for g in grads]).sum(0).sqrt()  # [K]
            scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))

    @torch.no_grad()
    def _check_divergence(self) -> None:
        """A member whose objective or weights became non-finite is recorded where it stopped."""
        params = self._params
        # First one number for all (NaN and inf stay in a sum; a finite sum that overflows float32 only
        # sends it on to the exact check): one host sync, no float64 copy of the weights.
        if bool(torch.stack([p.sum() for p in params]).sum().add(self.objective_total.sum()).isfinite()):
            return
        # A weight's NaN or inf stays in its member's sum; float64 sums of float32 weights cannot overflow.
        sums = [p.flatten(1).sum(1, dtype=torch.float64) for p in params]
        finite = torch.isfinite(torch.stack(sums).sum(0).add_(self.objective_total))
        for k in torch.nonzero(~finite).flatten().tolist():  # a second host sync, only where one is needed
            if self.diverged_epoch[k] is None:
                self.diverged_epoch[k] = self.current_epoch
                self.diverged_weights[k] = self.model.member_state_dict(k)
        if all(e is not None for e in self.diverged_epoch):
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    @torch.no_grad()
    def evaluate(self, held_out: str, datamodule: Any = None, lr: float | None = None) -> dict[str, Tensor]:
        """Every metric of every member at the current weights, on the device, [K] each: `train/…`,
        `<held_out>/…` and, for `val`, `weights/…` and `lr`; `datamodule` and `lr` default to the trainer's."""
        datamodule = datamodule or self.trainer.datamodule  # type: ignore[attr-defined]
        was_training = self.model.training
        self.model.eval()
        split_metrics: dict[str, dict[str, Tensor]] = {}
        for split in ("train", held_out):
            if split in datamodule.same_as_train:  # the same rows and targets: the same metrics
                split_metrics[split] = dict(split_metrics["train"])
                continue
            x, y = datamodule.inputs(split)
            split_metrics[split] = prediction_metrics(self.model(x), y, self.task, datamodule.weight(split))
        self.model.train(was_training)
        train = split_metrics["train"]
        train["penalty"] = self.regularizer.penalty(torch.float64)  # reported exactly (README, Conventions)
        train["objective"] = train["loss"] + train["penalty"]
        out = {f"{s}/{k}": v for s, m in split_metrics.items() for k, v in m.items()}
        other = split_metrics[held_out]
        # Generalization gap, positive when a model does better on the data it trained on.
        out[f"{held_out}/gap"] = train["acc"] - other["acc"] if "acc" in train else other["loss"] - train["loss"]
        if held_out == "val":
            out.update(weight_metrics(self.model, self.sparsity_threshold))
            lr = lr if lr is not None else cast(LightningOptimizer, self.optimizers()).param_groups[0]["lr"]
            # float64, as Python holds it: a float32 tensor cannot hold lr = 1e308 (issue 21)
            out["lr"] = torch.full_like(out["val/loss"], lr, dtype=torch.float64)
        return out

    def member_weights(self, k: int) -> dict[str, Tensor]:
        """Member k's final weights (a K = 1 `MLP.state_dict()`): where it stopped if it diverged."""
        return self.diverged_weights.get(k) or self.model.member_state_dict(k)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["divergence"] = {"epoch": self.diverged_epoch, "weights": self.diverged_weights}
        checkpoint["members"] = self.member_hashes

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("divergence") or {}
        self.diverged_epoch = state.get("epoch", self.diverged_epoch)
        self.diverged_weights = state.get("weights", {})

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: Any, map_location: Any = None, **kwargs: Any
    ) -> RegLabModule:
        """The trained module of a reglab checkpoint (a run's or a member's `last.ckpt`) in eval mode, read
        with `weights_only=True` (nothing in the file is executed). Its optimizer is Adam with defaults."""
        state = checkpoint.read(checkpoint_path, map_location or "cpu")
        hp = state["hyper_parameters"]
        regularizer = checkpoint.regularizer(state)  # bound to the model's loaded tensors below
        module = cls(checkpoint.model(state), regularizer, torch.optim.Adam, hp["task"], None, hp["sparsity_threshold"])
        module.load_state_dict(state["state_dict"])  # strict: the file holds nothing but the model
        return module.eval()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        self.regularizer.use_optimizer(optimizer)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
