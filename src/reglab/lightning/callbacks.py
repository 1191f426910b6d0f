"""Callbacks: the per-epoch record of a run, weight histograms for W&B, a one-line progress bar."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.loggers import WandbLogger
from tqdm.auto import tqdm

from reglab import rundir

if TYPE_CHECKING:
    from reglab.lightning.module import RegLabModule
    from reglab.science.model import MLP
    from reglab.science.stacked import StackedMLP


class MetricsHistory(Callback):
    """Keeps one row of metrics per evaluated epoch and writes `metrics.csv` atomically.

    The rows are saved in checkpoints, so a resumed run's CSV continues the interrupted one's.
    """

    def __init__(self, run_dir: str | Path, write_every_n_epochs: int = 50) -> None:
        self.run_dir = Path(run_dir)
        self.write_every_n_epochs = write_every_n_epochs
        self.rows: list[dict[str, float]] = []
        self._evaluated = False
        self._writes = True  # false on the ranks other than 0 of a distributed run

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._writes = trainer.is_global_zero

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._evaluated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Validation has already run for this epoch, so callback_metrics hold its values.
        if not self._evaluated:
            return
        self._evaluated = False
        metrics = {k: v for k, v in trainer.callback_metrics.items() if not k.startswith("test/")}
        values = torch.stack([v.detach().float().cpu() for v in metrics.values()]).tolist()
        self.rows.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **dict(zip(metrics, values))})
        if (trainer.current_epoch + 1) % self.write_every_n_epochs == 0:
            self.write()

    def write(self) -> None:
        if self.rows and self._writes:
            rundir.write_metrics_csv(self.run_dir, self.rows)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class CheckpointAtFitEnd(Callback):
    """Saves the run's `last.ckpt` when fit ends, in the process that trained, with the module's
    `diverged_epoch` in this callback's state. `train` reads the run's history and divergence back
    from it: under `trainer=ddp_spawn` training ran in spawned workers, whose callbacks and module
    the launching process never sees (Lightning sends back only the weights)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.diverged_epoch: int | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.diverged_epoch = cast("RegLabModule", pl_module).diverged_epoch
        trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes

    def state_dict(self) -> dict[str, Any]:
        return {"diverged_epoch": self.diverged_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.diverged_epoch = state_dict["diverged_epoch"]


class WeightHistograms(Callback):
    """Logs a histogram of every layer's weights to W&B every `every_n_epochs` epochs."""

    def __init__(self, every_n_epochs: int = 50) -> None:
        self.every_n_epochs = every_n_epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        # max_epochs is an int: config.validate requires trainer.max_epochs >= 1
        if epoch % self.every_n_epochs and epoch != cast(int, trainer.max_epochs) - 1:
            return
        import wandb

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                model = cast("MLP | StackedMLP", pl_module.model)  # RegLabModule's or VectorizedModule's
                # wandb types `sequence` as a Sequence; it passes it to np.histogram, which takes an array
                histograms = {
                    f"histograms/{name}": wandb.Histogram(layer.weight.detach().flatten().cpu().numpy())  # type: ignore[arg-type]
                    for name, layer in model.linear_layers().items()
                }
                logger.experiment.log({**histograms, "trainer/global_step": trainer.global_step})


class EpochProgressBar(ProgressBar):
    """One bar over epochs, with the latest validation metric: for runs of many tiny epochs a
    per-step bar costs more than the steps."""

    def __init__(self, show: tuple[str, ...] = ("train/acc", "val/acc", "val/loss")) -> None:
        super().__init__()
        self.show = show
        self.bar: tqdm | None = None
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            self.bar = tqdm(
                total=trainer.max_epochs,
                initial=trainer.current_epoch,
                desc="epochs",
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is None:
            return
        shown = {k.split("/")[0][:2] + "/" + k.split("/")[1]: trainer.callback_metrics.get(k) for k in self.show}
        self.bar.set_postfix(
            {k: f"{float(v):.4f}" for k, v in shown.items() if v is not None and math.isfinite(float(v))}, refresh=False
        )
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
