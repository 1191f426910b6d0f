"""W&B and TensorBoard callbacks: one run per member, live.

`WandbRuns` starts every member's run when training starts (`reglab.wandb_init.start_run`: offline unless the
user opted in, never blocking) and logs the member's row of each epoch's metrics (`MetricsHistory` has moved them
to the host). What a member's run holds: docs/wandb.md."""

from __future__ import annotations

import math
import os
import secrets
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

from reglab import rundir
from reglab.lightning.callbacks import MetricsHistory
from reglab.science.conventions import require_int
from reglab.tables import METRICS, format_number, plain, shown_in
from reglab.wandb_init import start_run


def histograms_due(epochs: Sequence[int], every: int) -> bool:
    """Whether the newest metrics row (at `epochs[-1]`, the one before it at `epochs[-2]`) gets weight
    histograms: the first row, then the first row of each later block of `every` epochs. Rows come
    every `trainer.check_val_every_n_epoch` epochs (4, 9, 14, … at 5), so `epoch % every == 0`
    would never hold there."""
    return len(epochs) == 1 or epochs[-1] // every != epochs[-2] // every


def _epoch_logs(history: MetricsHistory | None, every: int, trainer: L.Trainer, pl_module: Any) -> Iterator[tuple]:
    """(k, epoch, metrics, weights) of each member with a row in `history` this epoch (a diverged member's log ends
    at its divergence); weights every `every` epochs: each linear layer's, [out·in], from one copy to the host."""
    epoch = trainer.current_epoch
    if history is None or not history.epochs or history.epochs[-1][0] != epoch:
        return
    recent = [row[0] for row in history.epochs[-2:]]
    layers = pl_module.model.linear_layers().items() if histograms_due(recent, every) else []
    weights = {name: layer.weight.detach().flatten(1).cpu().numpy() for name, layer in layers}  # [K, out·in]
    last = history.values[-1].T.tolist()  # [K][metrics]
    for k, diverged in enumerate(history.diverged_epoch):
        if diverged is None or epoch <= diverged:
            finite = {name: w[k] for name, w in weights.items() if np.isfinite(w[k]).all()}  # no histogram of NaN
            yield k, epoch, dict(zip(history.names, last[k])), finite


def run_name(config: dict[str, Any], swept: dict[str, Any]) -> str:
    """`l1 λ=1e-3 s0`, `none s2`; another swept key appended as `lr=0.01`."""
    reg = str(config.get("regularizer"))
    parts = [reg] + ([] if reg == "none" else [f"λ={format_number(config.get('strength'), 'name')}"])
    parts += [f"s{config.get('seed')}"]
    shown = ("regularizer", "regularizer.strength", "seed")  # always in the name (λ not for `none`)
    parts += [f"{k.rsplit('.', 1)[-1]}={format_number(v, 'name')}" for k, v in swept.items() if k not in shown]
    return " ".join(parts)


class WandbRuns(Callback):
    """One W&B run per member, logged every evaluated epoch with `epoch` as the x-axis; the driver calls `attach`
    with the members before fit and `finish` with their records after it. Run ids are kept in the checkpoint: a
    resumed run continues its W&B run, training again (`force=true`) starts a new one, and under `wandb agent` a
    single run takes WANDB_RUN_ID. `figures`: run directory -> image files for the member's run at the end (wired
    to `reglab.report.member_figures`); `log_checkpoints`: upload the final checkpoints/last.ckpt as model artifact."""

    def __init__(
        self,
        project: str = "reglab",
        group: str | None = None,
        tags: Sequence[str] = (),
        mode: str | None = None,
        init_timeout_s: float = 15.0,
        histograms_every_n_epochs: int = 10,
        log_checkpoints: bool = False,
        figures: Callable[[Path], Sequence[Path]] | None = None,
    ) -> None:
        require_int(histograms_every_n_epochs, "logger.wandb.histograms_every_n_epochs")
        if mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"logger.wandb.mode={mode!r} must be online, offline, disabled or null")
        if not isinstance(log_checkpoints, bool):
            raise ValueError(f"logger.wandb.log_checkpoints={log_checkpoints!r} must be true or false")
        if not (isinstance(init_timeout_s, (int, float)) and 0 < init_timeout_s < math.inf):  # also refuses NaN
            raise ValueError(f"logger.wandb.init_timeout_s={init_timeout_s!r} must be a number of seconds > 0")
        if figures is not None and not callable(figures):
            how = "must be null or a function (_target_ with _partial_: true)"
            raise ValueError(f"logger.wandb.figures={figures!r} {how}")
        self.run_args = dict(project=project, group=group, tags=list(tags or []), job_type="train", resume="allow")
        self.mode, self.init_timeout_s, self.histograms_every_n_epochs = mode, init_timeout_s, histograms_every_n_epochs
        self.log_checkpoints, self.figures = log_checkpoints, figures
        self.members: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.runs: list[Any] = []  # member k's run, None until the writer thread has started it
        self.history: MetricsHistory | None = None
        # One thread makes the W&B calls but the epochs' logs (each start; summary, images, close), off the loop.
        self.writer: ThreadPoolExecutor | None = None
        self.started: list[Future] = []

    def attach(
        self,
        names: Sequence[str],
        run_dirs: Sequence[Path],
        configs: Sequence[dict[str, Any]],
        identities: Sequence[dict[str, Any]] | None = None,
        swept: Sequence[dict[str, Any]] | None = None,
        overrides: Mapping[str, str] | None = None,
        multirun_keys: Collection[str] = (),
    ) -> None:
        """The members' names (a run name's fallback), run directories and resolved configs. Their W&B configs also
        hold at the top level `identities` (regularizer, strength, seed, ...: a group they replace moves to
        `regularizer_config`), `swept` (each member's own values) and the job's command-line `overrides`
        (`optimizer.lr`: {key: value}); of those, the `multirun_keys` a Hydra multirun sweeps go into the name."""
        overrides = overrides or {}
        self.members = []
        for k, (name, run_dir, config) in enumerate(zip(names, run_dirs, configs)):
            ident = dict(identities[k]) if identities else {}
            values = dict(swept[k]) if swept else {}
            full = {f"{key}_config" if key in ident and isinstance(v, dict) else key: v for key, v in config.items()}
            top = {key: v for key, v in overrides.items() if not isinstance(config.get(key), dict)}
            top = {key: _select(config, key, v) for key, v in top.items()} | values
            full |= ident | top
            named = {key: top[key] for key in sorted(multirun_keys) if key in top} | values
            display = run_name(full, named) if {"regularizer", "strength", "seed"} <= full.keys() else name
            self.members.append({"name": display, "dir": Path(run_dir), "config": full})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.history = next(c for c in trainer.callbacks if isinstance(c, MetricsHistory))  # type: ignore[attr-defined]
        if not self.ids:  # not resumed from a checkpoint: new runs
            agent = os.environ.get("WANDB_RUN_ID") if len(self.members) == 1 else None
            self.ids = [agent or secrets.token_hex(4) for _ in self.members]
        self.runs = [None] * len(self.members)
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="reglab-wandb")
        self.started = [self.writer.submit(self._start, k) for k in range(len(self.members))]
        self.rows: list[list[dict[str, Any]]] = [[] for _ in self.members]  # each member's rows until its run starts

    def _start(self, k: int) -> None:
        """Start member k's run (in the writer thread: while the first epochs train)."""
        member = self.members[k]
        member["dir"].mkdir(parents=True, exist_ok=True)
        own = dict(name=member["name"], dir=str(member["dir"]), id=self.ids[k], config=member["config"])
        run = start_run(self.mode, self.init_timeout_s, **self.run_args, **own)
        self.ids[k] = run.id  # a fallback from online to offline draws a new id
        run.define_metric("epoch")
        run.define_metric("*", step_metric="epoch")
        for key in shown_in("wandb"):  # the best value beside the last: "max,last" or "min,last"
            run.define_metric(key, step_metric="epoch", summary=f"{METRICS[key].best},last")
        self.runs[k] = run

    def _started(self) -> None:
        """Raise the error of a start that failed (training stops, as it would have before the first epoch)."""
        for future in self.started:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import wandb

        self._started()
        for k, epoch, metrics, weights in _epoch_logs(self.history, self.histograms_every_n_epochs, trainer, pl_module):
            histograms = {f"histograms/{name}": wandb.Histogram(w) for name, w in weights.items()}
            self.rows[k].append({"epoch": epoch, **metrics} | histograms)
        self._log(started_only=True)

    def _log(self, started_only: bool) -> None:
        """Log the rows kept of each member whose run has started (`started_only`), or of every member. From the
        training loop: W&B's service answers a call at once only while the caller waits for it."""
        for k, future in enumerate(self.started):
            if self.rows[k] and (future.done() or not started_only) and future.exception() is None:
                for row in self.rows[k]:
                    self.runs[k].log(row)
                self.rows[k] = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Every epoch logged before the fit returns (the runs are live: nothing is logged after training)."""
        wait(self.started)
        self._started()
        self._log(started_only=False)

    def best(self, k: int) -> dict[str, Any]:
        """Member k's best validation score (accuracy, or R² for a regression) and its epoch."""
        rows = self.history.rows(k) if self.history is not None else []
        for key in ("val/acc", "val/r2"):
            scored = [r for r in rows if math.isfinite(r.get(key, math.nan))]
            if scored:
                top = max(scored, key=lambda r: r[key])  # the first epoch that reached it
                return {f"best/{key}": top[key], "best/epoch": int(top["epoch"])}
        return {}

    def finish(self, records: Sequence[dict[str, Any]]) -> None:
        """Write each member's summary, log its figures and checkpoint, and close its run. The figures are drawn
        here while the writer thread closes the member before (W&B waits on its service there)."""
        if self.writer is None:  # no run: training failed before they started, or they were closed on its error
            return
        for k, (record, member) in enumerate(zip(records, self.members)):
            try:
                figures = self.figures is not None and record["status"] == "completed"
                images = list(self.figures(member["dir"])) if figures else []  # type: ignore[misc]
            except Exception as e:  # the run's files are written; W&B is a copy of them
                warnings.warn(f"W&B: {member['name']}: {type(e).__name__}: {e}", stacklevel=1)
                images = []
            self.writer.submit(self._close, k, record, images)
        self._stop()

    def _close(self, k: int, record: dict[str, Any], images: list[Path]) -> None:
        import wandb

        run, member = self.runs[k], self.members[k]
        if run is None:
            return
        try:
            summary = {"status": record["status"], "epochs": record.get("epochs")} | self.best(k)
            run.summary.update(summary | {f"final/{key}": v for key, v in record.get("metrics", {}).items()})
            if images:
                run.log(
                    {"epoch": record.get("epochs", 0) - 1, **{f"figures/{p.stem}": wandb.Image(str(p)) for p in images}}
                )
            checkpoint = rundir.checkpoint(member["dir"])
            if self.log_checkpoints and record["status"] != "failed" and checkpoint.is_file():
                about = {key: record.get(key) for key in ("regularizer", "strength", "seed", "dataset", "epochs")}
                artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=about)
                artifact.add_file(str(checkpoint), name="last.ckpt")
                run.log_artifact(artifact, aliases=["latest", "final"])
        except Exception as e:  # the run's files are written; W&B is a copy of them
            warnings.warn(f"W&B: {member['name']}: {type(e).__name__}: {e}", stacklevel=1)
        run.finish(exit_code=0 if record["status"] != "failed" else 1)

    def _stop(self) -> None:
        """Wait for the writer thread's work and end it."""
        if self.writer is not None:
            self.writer.shutdown(wait=True)
        self.writer, self.runs, self.started = None, [], []

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.writer is not None:
            wait(self.started)
            self._log(started_only=False)  # the epochs trained before the crash
            for run in self.runs:
                if run is not None:
                    self.writer.submit(run.finish, exit_code=1)
        self._stop()

    def state_dict(self) -> dict[str, Any]:
        wait(self.started)  # the ids the runs took (an online start that fell back to offline drew a new one)
        return {"ids": self.ids}

    def member_states(self, members: int) -> list[dict[str, Any]]:
        return [{"ids": self.ids[k : k + 1]} for k in range(members)]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.ids = list(state_dict.get("ids") or [])


def _select(config: dict[str, Any], key: str, default: Any) -> Any:
    """The value of the dotted `key` in the nested `config`, or `default` where it has none (or None)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return default if node is None else node


class TensorBoardRuns(Callback):
    """TensorBoard event files (tensorboardX), one log directory per member, `<member run dir>/tensorboard`: metrics
    per evaluated epoch (step = epoch), weight histograms every N epochs and, at the end, the hyperparameters beside
    the final metrics (HPARAMS tab). `tensorboard --logdir logs/multiruns/<name>` compares a sweep's members."""

    def __init__(self, histograms_every_n_epochs: int = 10, flush_secs: int = 30) -> None:
        require_int(histograms_every_n_epochs, "logger.tensorboard.histograms_every_n_epochs")
        if not (isinstance(flush_secs, (int, float)) and 0 < flush_secs < math.inf):
            raise ValueError(f"logger.tensorboard.flush_secs={flush_secs!r} must be a number of seconds > 0")
        self.histograms_every_n_epochs, self.flush_secs = histograms_every_n_epochs, flush_secs
        self.members: list[dict[str, Any]] = []
        self.writers: list[Any] = []
        self.history: MetricsHistory | None = None

    def attach(self, names: Sequence[str], dirs: Sequence[Path], configs: Sequence[dict[str, Any]], *_: Any) -> None:
        """The members' names, run directories and resolved configs (their hyperparameters)."""
        self.members = [{"name": n, "dir": Path(d), "config": c} for n, d, c in zip(names, dirs, configs)]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from tensorboardX import SummaryWriter

        self.history = next(c for c in trainer.callbacks if isinstance(c, MetricsHistory))  # type: ignore[attr-defined]
        self.writers = [SummaryWriter(str(m["dir"] / "tensorboard"), flush_secs=self.flush_secs) for m in self.members]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for k, epoch, metrics, weights in _epoch_logs(self.history, self.histograms_every_n_epochs, trainer, pl_module):
            for key, value in metrics.items():
                self.writers[k].add_scalar(key, value, epoch)
            for name, w in weights.items():
                self.writers[k].add_histogram(f"weights/{name}", w, epoch)

    def finish(self, records: Sequence[dict[str, Any]]) -> None:
        """Each member's hyperparameters (flattened config values) beside its final metrics; then close."""
        from tensorboardX.summary import hparams as hparams_summaries

        for member, record, writer in zip(self.members, records, self.writers):
            hparams = {k: plain(v) for k, v in rundir.flatten(member["config"]).items() if v is not None}
            metrics = record.get("metrics", {}).items()
            finals = {f"hparam/{k}": v for k, v in metrics if isinstance(v, float) and math.isfinite(v)}
            # Into the run's own event file: add_hparams's own writer (same second, same host) would replace that file.
            for summary in hparams_summaries(hparams, finals):
                writer._get_file_writer().add_summary(summary)
            for key, value in finals.items():
                writer.add_scalar(key, value, record.get("epochs"))
            writer.close()
        self.writers = []

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        for writer in self.writers:
            writer.close()
