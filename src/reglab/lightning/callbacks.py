"""Callbacks that read the epoch's metrics dict of `RegLabModule`: each member's metrics.csv, a
one-line progress bar, and checkpoints written whole into the run directory."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from tqdm.auto import tqdm

from reglab import rundir

if TYPE_CHECKING:
    from reglab.lightning.module import RegLabModule


class MetricsHistory(Callback):
    """One row per evaluated epoch and member, kept on the host (one transfer per epoch) and
    written as each member's `metrics.csv` every `write_every_n_epochs` epochs, at the end and on
    an exception. Saved in checkpoints, so a resumed run's CSV continues the interrupted one's.

    A member that diverged has its rows up to and including the epoch it diverged at.
    """

    def __init__(self, run_dirs: Sequence[str | Path] = (), write_every_n_epochs: int = 50) -> None:
        if not isinstance(write_every_n_epochs, int) or write_every_n_epochs < 1:
            raise ValueError(f"write_every_n_epochs={write_every_n_epochs!r} must be an integer >= 1")
        self.run_dirs = [Path(d) for d in run_dirs]
        self.write_every_n_epochs = write_every_n_epochs
        self.names: list[str] = []
        self.epochs: list[tuple[int, int]] = []  # (epoch, global step) of each row
        self.values: list[torch.Tensor] = []  # per row, [metrics, K] float64 on the CPU
        self.diverged_epoch: list[int | None] = [None] * len(self.run_dirs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        module = cast("RegLabModule", pl_module)
        if module.evaluated_epoch != trainer.current_epoch:
            return
        self.names = list(module.epoch_metrics)
        self.values.append(torch.stack([v.double() for v in module.epoch_metrics.values()]).cpu())
        self.epochs.append((trainer.current_epoch, trainer.global_step))
        self.diverged_epoch = list(module.diverged_epoch)
        if (trainer.current_epoch + 1) % self.write_every_n_epochs == 0:
            self.write()

    def latest(self, k: int) -> dict[str, float]:
        """Member k's last row as {metric: value}."""
        return dict(zip(self.names, self.values[-1][:, k].tolist())) if self.values else {}

    def rows(self, k: int) -> list[dict[str, float]]:
        """Member k's metrics.csv rows: {"epoch", "step", metric: value}."""
        return self._member_rows(k, torch.stack([v[:, k] for v in self.values]).tolist() if self.values else [])

    def _member_rows(self, k: int, values: list[list[float]]) -> list[dict[str, float]]:
        last = self.diverged_epoch[k]
        return [
            {"epoch": epoch, "step": step, **dict(zip(self.names, row))}
            for (epoch, step), row in zip(self.epochs, values)
            if last is None or epoch <= last
        ]

    def write(self) -> None:
        if not self.values:
            return
        per_member = torch.stack(self.values).permute(2, 0, 1).tolist()  # [K][rows][metrics], one copy for all
        for k, run_dir in enumerate(self.run_dirs):
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["epoch", "step", *self.names])
            rows = self._member_rows(k, per_member[k])
            writer.writerows([row["epoch"], row["step"], *(row[n] for n in self.names)] for row in rows)
            rundir.atomic_write_text(run_dir / "metrics.csv", buffer.getvalue(), fsync=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write()

    def state_dict(self) -> dict[str, Any]:
        values = torch.stack(self.values) if self.values else torch.zeros(0)
        return {"names": self.names, "epochs": self.epochs, "values": values, "diverged_epoch": self.diverged_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.names, self.epochs = list(state_dict["names"]), [tuple(e) for e in state_dict["epochs"]]  # type: ignore[misc]
        self.values = list(state_dict["values"]) if len(state_dict["values"]) else []
        self.diverged_epoch = list(state_dict["diverged_epoch"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all, in the target's own directory (a temporary file
    beside it, fsync, rename): never through the system temp dir, where a move across file
    systems is a copy that a full disk or a kill can leave truncated. The previous checkpoint
    stays in place until the new one is complete."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        rundir.atomic_write_bytes(Path(path), buffer.getvalue())


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest metrics (means over members): for runs of many tiny
    epochs a per-step bar costs more than the steps."""

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
        if self.bar.n == 0 or self.bar.n % 10 == 0:  # means over members cost a sync: not every epoch
            metrics = cast("RegLabModule", pl_module).epoch_metrics
            shown = {k.split("/")[0][:2] + "/" + k.split("/")[1]: float(metrics[k].nanmean()) for k in self.show if k in metrics}  # fmt: skip
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in shown.items() if math.isfinite(v)}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
