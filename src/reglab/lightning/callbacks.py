"""Callbacks on `RegLabModule`'s epoch metrics: metrics.csv per member, progress bars, early stopping, checkpoints.
A callback whose state is per member gives each member's K = 1 state (`member_states`) to its own checkpoint."""

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

from reglab import checkpoint, rundir
from reglab.science.conventions import require_int
from reglab.tables import shown_in

if TYPE_CHECKING:
    from reglab.lightning.module import RegLabModule


class MetricsHistory(Callback):
    """One row per evaluated epoch and member, kept on the host (one transfer per epoch) and written as each
    member's `metrics.csv` every `write_every_n_epochs` epochs, at the end and on an exception; a diverged
    member's rows end at its divergence. Saved in checkpoints: a resumed run's CSV continues the interrupted one's.
    `on_disk=False` (a run trained in memory, `reglab.api.train_in_memory`): the rows are kept, never written."""

    def __init__(
        self, run_dirs: Sequence[str | Path] = (), write_every_n_epochs: int = 50, on_disk: bool = True
    ) -> None:
        require_int(write_every_n_epochs, "write_every_n_epochs")
        self.run_dirs, self.write_every_n_epochs = [Path(d) for d in run_dirs], write_every_n_epochs
        self.on_disk = on_disk
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

    def rows(self, k: int, values: list[list[float]] | None = None) -> list[dict[str, float]]:
        """Member k's metrics.csv rows: {"epoch", "step", metric: value}; `values`: its [rows][metrics], if at hand."""
        if values is None:
            values = torch.stack([v[:, k] for v in self.values]).tolist() if self.values else []
        last = self.diverged_epoch[k]
        return [
            {"epoch": epoch, "step": step, **dict(zip(self.names, row))}
            for (epoch, step), row in zip(self.epochs, values)
            if last is None or epoch <= last
        ]

    def write(self) -> None:
        if not self.values or not self.on_disk:
            return
        per_member = torch.stack(self.values).permute(2, 0, 1).tolist()  # [K][rows][metrics], one copy for all
        for k, run_dir in enumerate(self.run_dirs):
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, ["epoch", "step", *self.names], lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows(k, per_member[k]))
            rundir.atomic_write_text(run_dir / rundir.METRICS_CSV, buffer.getvalue(), fsync=False)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.write()

    def state_dict(self) -> dict[str, Any]:
        values = torch.stack(self.values) if self.values else torch.zeros(0)
        return {"names": self.names, "epochs": self.epochs, "values": values, "diverged_epoch": self.diverged_epoch}

    def member_states(self, members: int) -> list[dict[str, Any]]:
        """Each member's state as its K = 1 run's: its rows (up to its divergence) and its column of values."""
        values = torch.stack(self.values) if self.values else torch.zeros(0)  # [rows, metrics, K]
        states = []
        for k in range(members):
            last = self.diverged_epoch[k]
            rows = sum(1 for epoch, _ in self.epochs if last is None or epoch <= last)
            mine = values[:rows, :, k : k + 1].clone() if rows else torch.zeros(0)
            states.append({"names": self.names, "epochs": self.epochs[:rows], "values": mine, "diverged_epoch": [last]})
        return states

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.names = list(state_dict["names"])
        self.epochs = [tuple(e) for e in state_dict["epochs"]]  # type: ignore[misc]
        self.values = list(state_dict["values"]) if len(state_dict["values"]) else []
        self.diverged_epoch = list(state_dict["diverged_epoch"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all, through a temporary file beside the target (fsync, rename), never
    the system temp dir, where a move across file systems is a copy that a full disk or a kill can leave truncated.
    Read through `reglab.checkpoint`: a run's own checkpoint resumes a fit as the stack's own does."""

    def save_checkpoint(self, state: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        checkpoint.save(Path(path), state)  # the one atomic writer of checkpoints

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return checkpoint.lightning(checkpoint.load(path))


class MemberCheckpoints(Callback):
    """Each member's own checkpoint (`paths`, its run directory's checkpoints/last.ckpt) in reglab's format
    (`reglab.checkpoint`), written whenever the stack saves its own (ModelCheckpoint's periodic saves and the
    final one): a stack stopped mid-training leaves every member a checkpoint it resumes from alone."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = [Path(p) for p in paths]

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, saved: dict[str, Any]) -> None:
        keeping = [c for c in trainer.callbacks if hasattr(c, "member_states")]  # type: ignore[attr-defined]
        per_member = {c.state_key: c.member_states(len(self.paths)) for c in keeping}
        for k, path in enumerate(self.paths):
            states = {key: values[k] for key, values in per_member.items()}
            checkpoint.save(path, checkpoint.member(pl_module, k, saved, states))


class EpochProgressBar(ProgressBar):
    """One bar over epochs with the latest metrics (means over members): for runs of many tiny epochs a per-step
    bar costs more than the steps. `show`: the keys beside the bar; None: those `reglab.tables.METRICS` shows there."""

    def __init__(self, show: Sequence[str] | None = None) -> None:
        super().__init__()
        self.show = tuple(shown_in("bar") if show is None else show)
        self.bar: Any = None  # while training
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            self._open(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is None:
            return
        if trainer.current_epoch % 10 == 0:  # means over members cost a sync: not every epoch
            metrics = cast("RegLabModule", pl_module).epoch_metrics
            means = {key: float(metrics[key].nanmean()) for key in self.show if key in metrics}
            self._show({key: v for key, v in means.items() if math.isfinite(v)})
        self._advance()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self._close()
            self.bar = None

    def _open(self, trainer: L.Trainer) -> None:
        # a resumed run's bar starts where it stopped
        self.bar = tqdm(
            total=trainer.max_epochs, initial=trainer.current_epoch, desc="epochs", dynamic_ncols=True, mininterval=0.5
        )

    def _show(self, means: dict[str, float]) -> None:
        short = {f"{key.split('/')[0][:2]}/{key.split('/')[1]}": v for key, v in means.items()}  # "tr/acc"
        self.bar.set_postfix({key: f"{v:.4f}" for key, v in short.items()}, refresh=False)

    def _advance(self) -> None:
        self.bar.update(1)

    def _close(self) -> None:
        self.bar.close()


class RichEpochProgressBar(EpochProgressBar):
    """`EpochProgressBar` drawn by rich (Lightning's `RichProgressBar` counts batches, and a reglab
    epoch is one Lightning batch): epochs, elapsed and remaining time, the latest metrics."""

    def _open(self, trainer: L.Trainer) -> None:
        from rich import progress as rp

        clock = (rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), rp.TimeRemainingColumn())
        self.bar = rp.Progress(rp.TextColumn("epochs"), rp.BarColumn(), *clock, rp.TextColumn("{task.fields[metrics]}"))
        self.bar.start()
        self.task = self.bar.add_task("epochs", total=trainer.max_epochs, completed=trainer.current_epoch, metrics="")

    def _show(self, means: dict[str, float]) -> None:
        self.bar.update(self.task, metrics="  ".join(f"{key} {v:.4f}" for key, v in means.items()))

    def _advance(self) -> None:
        self.bar.advance(self.task)

    def _close(self) -> None:
        self.bar.stop()


class _PerMemberMonitor(Callback):
    """Follows one metric of every member at each evaluated epoch, on the device: `improved` is
    [K], true where a member beat its best so far by more than `min_delta` (NaN never does)."""

    STATE: tuple[str, ...] = ("best_value", "best_epoch")  # the attributes a checkpoint holds

    def __init__(self, monitor: str = "val/loss", mode: str = "min", min_delta: float = 0.0) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} must be min or max")
        if not min_delta >= 0:
            raise ValueError(f"min_delta={min_delta!r} must be >= 0")
        self.monitor, self.mode, self.min_delta = monitor, mode, float(min_delta)
        self.best_value: torch.Tensor | None = None  # [K]
        self.best_epoch: torch.Tensor | None = None  # [K], -1 before a finite value

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> torch.Tensor | None:
        module = cast("RegLabModule", pl_module)
        if module.evaluated_epoch != trainer.current_epoch:
            return None
        if self.monitor not in module.epoch_metrics:
            names = ", ".join(module.epoch_metrics)
            raise ValueError(f"monitor={self.monitor!r} names no metric; choose one of: {names}")
        value = module.epoch_metrics[self.monitor].double()
        if self.best_value is None or self.best_epoch is None:
            self.best_value = torch.full_like(value, math.inf if self.mode == "min" else -math.inf)  # the worst
            self.best_epoch = torch.full(value.shape, -1, dtype=torch.long, device=value.device)
        self.best_value, self.best_epoch = self.best_value.to(value.device), self.best_epoch.to(value.device)
        minimize = self.mode == "min"
        improved = value < self.best_value - self.min_delta if minimize else value > self.best_value + self.min_delta
        improved &= torch.isfinite(value)
        self.best_value = torch.where(improved, value, self.best_value)
        self.best_epoch = torch.where(improved, trainer.current_epoch, self.best_epoch)
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.STATE}

    def member_states(self, members: int) -> list[dict[str, Any]]:
        return [checkpoint.member_slice(self.state_dict(), k, members) for k in range(members)]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in self.STATE:
            setattr(self, key, state_dict[key])


class EarlyStopping(_PerMemberMonitor):
    """Lightning's `EarlyStopping`, per member: a member stops improving once `monitor` has not beaten its best by
    more than `min_delta` for `patience` evaluations (not epochs) in a row. Training stops when every member has
    stopped improving or diverged; until then a member trains on, its metrics.json records where (`early_stopping`)."""

    STATE = (*_PerMemberMonitor.STATE, "wait", "stopped_epoch")

    def __init__(
        self, monitor: str = "val/loss", mode: str = "min", patience: int = 10, min_delta: float = 0.0
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        require_int(patience, "patience")
        self.patience = patience
        self.wait: torch.Tensor | None = None  # [K] evaluations since the member's best
        self.stopped_epoch: torch.Tensor | None = None  # [K], -1 while the member still improves

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (improved := self._update(trainer, pl_module)) is None:
            return
        if self.wait is None or self.stopped_epoch is None:
            self.wait = torch.zeros_like(improved, dtype=torch.long)
            self.stopped_epoch = torch.full_like(self.wait, -1)
        self.wait = torch.where(improved, 0, self.wait.to(improved.device) + 1)
        out_of_patience = (self.wait >= self.patience) & (self.stopped_epoch.to(improved.device) < 0)
        self.stopped_epoch = torch.where(out_of_patience, trainer.current_epoch, self.stopped_epoch.to(improved.device))
        stopped = (self.stopped_epoch >= 0).tolist()  # one host sync per evaluation
        if all(s or e is not None for s, e in zip(stopped, cast("RegLabModule", pl_module).diverged_epoch)):
            trainer.should_stop = True

    def member_record(self, k: int) -> dict[str, Any]:
        """What member k's metrics.json records of its early stopping."""
        stopped = None if self.stopped_epoch is None or int(self.stopped_epoch[k]) < 0 else int(self.stopped_epoch[k])
        best = None if self.best_epoch is None or int(self.best_epoch[k]) < 0 else int(self.best_epoch[k])
        record = {"monitor": self.monitor, "patience": self.patience, "stopped_epoch": stopped, "best_epoch": best}
        return {"early_stopping": record}


class BestCheckpoint(_PerMemberMonitor):
    """Each member's weights at its best evaluation by `monitor`, kept on the device and written by `reglab.fit` at
    the end as its weights-only `checkpoints/best.ckpt` (as `ModelCheckpoint(save_weights_only=True)`), which
    `reglab.load_run(run_dir, checkpoint="best")` reads. metrics.json records its epoch and metrics under `best`."""

    STATE = (*_PerMemberMonitor.STATE, "weights")

    def __init__(self, monitor: str = "val/loss", mode: str = "min") -> None:
        super().__init__(monitor, mode)
        self.weights: dict[str, torch.Tensor] = {}  # the stack's state_dict at each member's best

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (improved := self._update(trainer, pl_module)) is None:
            return
        with torch.no_grad():
            for name, tensor in cast("RegLabModule", pl_module).model.state_dict().items():  # detached
                mask = improved.view(-1, *[1] * (tensor.dim() - 1))
                self.weights[name] = torch.where(mask, tensor, self.weights.get(name, tensor).to(tensor.device))

    def member_weights(self, k: int) -> dict[str, torch.Tensor] | None:
        """Member k's best weights (a K = 1 `MLP.state_dict()`), or None if it never had a finite value."""
        if self.best_epoch is None or int(self.best_epoch[k]) < 0:
            return None
        return {name: t[k : k + 1].clone() for name, t in self.weights.items()}

    def member_record(self, k: int, rows: Sequence[dict[str, float]]) -> dict[str, Any]:
        """`best`: the monitored metric, the best epoch and that epoch's metrics (from metrics.csv's rows)."""
        epoch = None if self.best_epoch is None or int(self.best_epoch[k]) < 0 else int(self.best_epoch[k])
        row = next((r for r in rows if r["epoch"] == epoch), {})
        metrics = {n: v for n, v in row.items() if n not in ("epoch", "step")}
        return {"best": {"monitor": self.monitor, "mode": self.mode, "epoch": epoch, "metrics": metrics}}
