"""The LightningModule: one MLP, one regularizer, one optimizer.

The whole training step is in `training_step`, with manual optimization so that every place a
regularizer touches the weights is visible in one screen of code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from reglab.science.datasets import Task
from reglab.science.metrics import data_loss, prediction_metrics, weight_metrics
from reglab.science.model import MLP
from reglab.science.regularizers import Regularizer

SPLITS_OF_LOADER = {"validate": ("train", "val"), "test": ("train", "test")}


class RegLabModule(L.LightningModule):
    all_finite: Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        model: MLP,
        regularizer: Regularizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        task: Task,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        sparsity_threshold: float = 1e-3,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.regularizer = regularizer.bind(model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task, self.sparsity_threshold = task, sparsity_threshold
        # Set on the device by every step, read once per epoch: no host sync inside the loop.
        self.register_buffer("all_finite", torch.ones((), dtype=torch.bool), persistent=False)
        self.diverged_epoch: int | None = None
        self._evaluated: dict[str, dict[str, Tensor]] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        optimizer = cast(LightningOptimizer, self.optimizers())  # configure_optimizers returns one
        objective = data_loss(self.model(x), y, self.task)
        if self.regularizer.explicit:
            objective = objective + self.regularizer.penalty()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(objective)
        lr = optimizer.param_groups[0]["lr"]
        self.regularizer.before_step(lr)  # decoupled decay: on the weights the gradient saw
        optimizer.step()
        self.regularizer.after_step(lr)  # proximal maps: on the weights the optimizer produced
        self.all_finite &= torch.isfinite(objective)

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]
        finite = bool(self.all_finite) and all(bool(torch.isfinite(p).all()) for p in self.regularizer.params)
        if not finite and self.diverged_epoch is None:
            self.diverged_epoch = self.current_epoch
            self.trainer.should_stop = True

    # Evaluation: whole splits as single batches, at the weights the epoch ended with.
    def _evaluate(self, batch: tuple[Tensor, Tensor], dataloader_idx: int, stage: str) -> None:
        split = SPLITS_OF_LOADER[stage][dataloader_idx]
        x, y = batch
        metrics = prediction_metrics(self.model(x), y, self.task)
        if split == "train":
            metrics["penalty"] = self.regularizer.penalty()
            metrics["objective"] = metrics["loss"] + metrics["penalty"]
        self._evaluated[split] = metrics
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()}, add_dataloader_idx=False, batch_size=len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "validate")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, dataloader_idx, "test")

    def _log_gap_and_weights(self, held_out: str) -> None:
        train, other = self._evaluated["train"], self._evaluated[held_out]
        # Generalization gap, positive when the model does better on the data it trained on.
        gap = train["acc"] - other["acc"] if "acc" in train else other["loss"] - train["loss"]
        logged = {f"{held_out}/gap": gap}
        if held_out == "val":
            logged.update(weight_metrics(self.model, self.sparsity_threshold))
            logged["lr"] = torch.tensor(cast(LightningOptimizer, self.optimizers()).param_groups[0]["lr"])
        self.log_dict(logged)

    def on_validation_epoch_end(self) -> None:
        self._log_gap_and_weights("val")

    def on_test_epoch_end(self) -> None:
        self._log_gap_and_weights("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}
