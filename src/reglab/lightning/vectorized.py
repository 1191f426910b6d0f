"""The LightningModule of a vectorized sweep: K members, one stacked MLP, one optimizer.

Member k trains exactly as the single run `RegLabModule` would with its own seed and λ: the same
data set, split and batch order (its own `RegLabDataModule`), the same initial weights, the
same step (objective = data loss + penalty if explicit; backward; decoupled update; optimizer
step; proximal map), per-member penalties, no shared clipping or normalisation. The sum of the
members' objectives is differentiated, which gives each member its own gradient; the optimizer
is elementwise, so one optimizer over the stacked tensors is K independent ones.

Lightning sees one training batch per epoch (the K members' sample orders for that epoch), and
`training_step` runs the epoch's mini-batches itself: per-step Lightning hooks would otherwise
cost more than a step of K small models. The train and held-out splits are evaluated at the end
of every evaluated epoch, on the device, into one [metrics, K] tensor per epoch: no `self.log`
per member, no host sync per step.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import Tensor

from reglab.lightning.datamodule import EpochPermutation, RegLabDataModule
from reglab.science import datasets
from reglab.science.regularizers import Regularizer
from reglab.science.stacked import StackedMLP, member_losses, member_prediction_metrics, member_weight_metrics


class EpochOrders:
    """One item per epoch: each member's sample order, [K, n] (identity when not shuffled), from
    that member's `EpochPermutation`, so member k sees the batches of a single run with its seed."""

    def __init__(self, n: int, shuffle: bool, seeds: Sequence[int]) -> None:
        self.n, self.seeds = n, list(seeds)
        self.sampler = _Samplers([EpochPermutation(n, shuffle, s) for s in dict.fromkeys(self.seeds)])
        self.batch_sampler = None  # read by Lightning's checks for DataLoader-like objects

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        orders = {p.seed: p.indices() for p in self.sampler.permutations}
        identity = torch.arange(self.n)
        yield torch.stack([identity if orders[s] is None else orders[s] for s in self.seeds])


class _Samplers:
    """Lightning calls `set_epoch` on a loader's sampler; this forwards it to every seed's permutation."""

    def __init__(self, permutations: list[EpochPermutation]) -> None:
        self.permutations = permutations

    def set_epoch(self, epoch: int) -> None:
        for p in self.permutations:
            p.set_epoch(epoch)


class StackedDataModule(L.LightningDataModule):
    """The splits of K members stacked: x [K, n, d], y [K, n]; member k's are those of `datamodules[k]`.

    Members that share a seed share a data module (the list may repeat one), so each data set
    is generated once; all members' splits must have the same sizes.
    """

    def __init__(self, datamodules: Sequence[RegLabDataModule]) -> None:
        super().__init__()
        first = datamodules[0]
        sizes = {tuple(len(dm.tensors[s][1]) for s in datasets.SPLIT_NAMES) for dm in datamodules}
        if len(sizes) > 1:
            raise ValueError(f"the members' data sets have different split sizes {sorted(sizes)}")
        self.task, self.seeds = first.task, [dm.seed for dm in datamodules]
        self.in_features, self.out_features = first.in_features, first.out_features
        self.n_train = len(first.tensors["train"][1])
        self.batch_size = first.batch_size or self.n_train
        self.shuffle = self.batch_size < self.n_train  # as `IndexBatches`: a full batch is never shuffled
        self.tensors = {
            s: (
                torch.stack([dm.tensors[s][0] for dm in datamodules]),
                torch.stack([dm.tensors[s][1] for dm in datamodules]),
            )
            for s in datasets.SPLIT_NAMES
        }

    def _on_device(self) -> None:
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            self.tensors = {s: (x.to(device), y.to(device)) for s, (x, y) in self.tensors.items()}

    def train_dataloader(self) -> EpochOrders:
        self._on_device()
        return EpochOrders(self.n_train, self.shuffle, self.seeds)


class VectorizedModule(L.LightningModule):
    """K members of one sweep; `regularizer.strength` holds their λ, one per member."""

    all_finite: Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        model: StackedMLP,
        regularizer: Regularizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        task: datasets.Task,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        sparsity_threshold: float = 1e-3,
        check_val_every_n_epoch: int = 1,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.regularizer = regularizer.bind(model)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task, self.sparsity_threshold = task, sparsity_threshold
        self.check_val_every_n_epoch = check_val_every_n_epoch
        K = model.members
        # Per member, set on the device by every step and read once per epoch.
        self.register_buffer("all_finite", torch.ones(K, dtype=torch.bool), persistent=False)
        self.diverged_epoch: list[int | None] = [None] * K
        self.diverged_weights: dict[int, dict[str, Tensor]] = {}  # the weights a diverged single run stops at
        # The per-epoch record: metric names, and per evaluated epoch (epoch, step, [metrics, K] values).
        self.metric_names: list[str] = []
        self.history: list[tuple[int, int, Tensor]] = []
        self.member_hashes: list[str] = []  # saved with checkpoints: a resumed sweep must have the same members

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # Training ---------------------------------------------------------------------------------
    def training_step(self, orders: Tensor, batch_idx: int) -> None:
        """One epoch: `RegLabModule`'s step on each mini-batch of every member's order, then the
        epoch's record (before any callback's `on_train_epoch_end`, as validation is for a single run)."""
        x, y = self.trainer.datamodule.tensors["train"]  # type: ignore[attr-defined]
        members = torch.arange(len(orders), device=orders.device)[:, None]
        x, y = x[members, orders], y[members, orders]
        batch = self.trainer.datamodule.batch_size  # type: ignore[attr-defined]
        optimizer = cast(LightningOptimizer, self.optimizers())  # configure_optimizers returns one
        for start in range(0, x.shape[1], batch):
            self._step(x[:, start : start + batch], y[:, start : start + batch], optimizer)
        if (self.current_epoch + 1) % self.check_val_every_n_epoch == 0:  # Lightning's validation schedule
            self._record(self.current_epoch)
        self._check_divergence(self.current_epoch)

    def _step(self, x: Tensor, y: Tensor, optimizer: LightningOptimizer) -> None:
        objective = member_losses(self.model(x), y, self.task)  # [K]
        if self.regularizer.explicit:
            objective = objective + self.regularizer.penalty()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(objective.sum())  # member k's objective only reaches member k's weights
        lr = optimizer.param_groups[0]["lr"]
        self.regularizer.before_step(lr)  # decoupled decay: on the weights the gradient saw
        optimizer.step()
        self.regularizer.after_step(lr)  # proximal maps: on the weights the optimizer produced
        self.all_finite &= torch.isfinite(objective)

    def _check_divergence(self, epoch: int) -> None:
        """A member whose objective or weights became non-finite stops where its single run would."""
        finite = self.all_finite.clone()
        for p in self.regularizer.params:
            finite &= torch.isfinite(p).flatten(1).all(1)
        for k in torch.nonzero(~finite).flatten().tolist():
            if self.diverged_epoch[k] is None:
                self.diverged_epoch[k] = epoch
                self.diverged_weights[k] = self.model.member_state_dict(k)
        if all(e is not None for e in self.diverged_epoch):
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()  # type: ignore[union-attr]

    # Evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, held_out: str) -> dict[str, Tensor]:
        """Metrics of every member on the train split and `held_out`, at the current weights, as
        the single run logs them (`train/…`, `<held_out>/…`, `<held_out>/gap`): values of shape [K]."""
        tensors = self.trainer.datamodule.tensors  # type: ignore[attr-defined]
        split_metrics = {
            s: member_prediction_metrics(self.model(tensors[s][0]), tensors[s][1], self.task)
            for s in ("train", held_out)
        }
        split_metrics["train"]["penalty"] = self.regularizer.penalty()
        split_metrics["train"]["objective"] = split_metrics["train"]["loss"] + split_metrics["train"]["penalty"]
        out = {f"{s}/{k}": v for s, m in split_metrics.items() for k, v in m.items()}
        train, other = split_metrics["train"], split_metrics[held_out]
        out[f"{held_out}/gap"] = train["acc"] - other["acc"] if "acc" in train else other["loss"] - train["loss"]
        return out

    def _record(self, epoch: int) -> None:
        metrics = self.evaluate("val")
        metrics.update(member_weight_metrics(self.model, self.sparsity_threshold))
        metrics["lr"] = torch.full_like(
            metrics["val/loss"], cast(LightningOptimizer, self.optimizers()).param_groups[0]["lr"]
        )
        self.metric_names = list(metrics)
        self.history.append((epoch, self.global_step, torch.stack([v.float() for v in metrics.values()])))
        if self.trainer.progress_bar_callback is not None:  # the bar shows means over members
            for key in ("train/acc", "val/acc", "val/loss"):
                if key in metrics:
                    self.log(key, metrics[key].nanmean(), batch_size=1)

    def rows(self, k: int) -> list[dict[str, float]]:
        """Member k's metrics.csv rows, as `MetricsHistory` writes them for a single run: up to and
        including the epoch it diverged at, if it did."""
        if not self.history:
            return []
        values = torch.stack([v[:, k] for _, _, v in self.history]).cpu().tolist()
        last = self.diverged_epoch[k]
        return [
            {"epoch": epoch, "step": step, **dict(zip(self.metric_names, row))}
            for (epoch, step, _), row in zip(self.history, values)
            if last is None or epoch <= last
        ]

    def member_weights(self, k: int) -> dict[str, Tensor]:
        """Member k's final weights (`MLP.state_dict()` keys): where a single run would have stopped."""
        return self.diverged_weights.get(k) or self.model.member_state_dict(k)

    # Checkpoints: the history and divergence record travel with the weights ---------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["vectorized"] = {
            "member_hashes": self.member_hashes,
            "metric_names": self.metric_names,
            "history": [(e, s, v.cpu()) for e, s, v in self.history],
            "diverged_epoch": self.diverged_epoch,
            "diverged_weights": self.diverged_weights,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["vectorized"]
        self.metric_names, self.diverged_epoch = state["metric_names"], state["diverged_epoch"]
        self.diverged_weights = state["diverged_weights"]
        self.history = [(e, s, v.to(self.device)) for e, s, v in state["history"]]

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


class MemberMetricsWriter(Callback):
    """Rewrites every member's metrics.csv every `every_n_epochs` epochs and on an exception, as
    `MetricsHistory` does for a single run (`reglab.sweep` writes the final files through `rundir`).

    Each row is formatted once and the text kept, and the snapshots are replaced whole (a temporary
    file, then a rename) without an fsync: K fsyncs per snapshot would cost more than the epochs.
    """

    def __init__(self, run_dirs: Sequence[Path], every_n_epochs: int = 50) -> None:
        self.run_dirs, self.every_n_epochs = [Path(d) for d in run_dirs], every_n_epochs
        self.texts = [""] * len(self.run_dirs)
        self.done = 0  # history entries already formatted

    def write(self, module: VectorizedModule) -> None:
        new = module.history[self.done :]
        if not new:
            return
        values = torch.stack([v for _, _, v in new]).permute(2, 0, 1).cpu().tolist()  # [K][epochs][metrics]
        for k, run_dir in enumerate(self.run_dirs):
            last = module.diverged_epoch[k]
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            if not self.texts[k]:
                writer.writerow(["epoch", "step", *module.metric_names])
            writer.writerows(
                [epoch, step, *row] for (epoch, step, _), row in zip(new, values[k]) if last is None or epoch <= last
            )
            self.texts[k] += buffer.getvalue()
            tmp = run_dir / ".metrics.csv.snapshot"
            tmp.write_text(self.texts[k])
            os.replace(tmp, run_dir / "metrics.csv")
        self.done += len(new)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.write(pl_module)  # type: ignore[arg-type]

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write(pl_module)  # type: ignore[arg-type]
