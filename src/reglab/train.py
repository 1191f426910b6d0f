"""Train regularized MLPs: `reglab-train [overrides]` or `python -m reglab.train`.

One engine for every run (`reglab.fit`): lists in `regularizer.strength` and `seed` are stacked
members of one run; `-m` keeps Hydra's meaning of separate jobs, and the two combine. A job that
crashes or diverges is recorded and a multirun goes on.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import hydra
from hydra.core.utils import setup_globals
from omegaconf import DictConfig

from reglab import rundir
from reglab.config import CONFIG_DIR
from reglab.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, ConfigError, one_line
from reglab.multirun import build_in_memory, check_jobs
from reglab.tables import score_key

__all__ = ["CONFIG_DIR", "command_line_error", "main"]
log = logging.getLogger("reglab.train")

# Hydra registers ${hydra:…} and ${now:…} when it composes a config; `--experimental-rerun` skips
# composing, and the config it unpickles still holds them (paths.output_dir).
setup_globals()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from reglab.fit import fit

    # Through sys.modules: a launcher that pickles this function (submitit) must not pickle the held stderr.
    started = getattr(sys.modules.get(__name__), "_task", None)
    if started is not None:
        started.start()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:  # builds every stack in memory, and takes a step, before it writes a file
        records = fit(cfg, list(HydraConfig.get().overrides.task), multirun)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        rundir.remove_unused(Path(cfg.paths.output_dir), Path(cfg.paths.log_dir).resolve())
        sys.exit(EXIT_BAD_INPUT)
    if not multirun:
        print_summary(records)
        _write_figures(Path(cfg.paths.output_dir), records, cfg.get("report"))
        if all(r["status"] == rundir.DIVERGED for r in records):
            epochs = ", ".join(str(r["diverged_epoch"]) for r in records)
            print(f"error: training diverged at epoch {epochs} (non-finite loss or weights)", file=sys.stderr)
            sys.exit(EXIT_DIVERGED)
    metric = cfg.optimized_metric or score_key(records[0]["task"])
    scores = [r["metrics"].get(metric) for r in records]
    # a sweeper (Optuna) records NaN as a failed trial
    return max((float(s) for s in scores if s is not None), default=float("nan"))


def _write_figures(run_dir: Path, records: list[dict[str, Any]], options: Any = None) -> None:
    """A stack's report (its members are runs), or one run's decision boundary and weight histogram,
    in the formats, resolution and bands of the config's `report` node."""
    from reglab.report import report, report_options, write_run_figures

    try:
        if len(records) > 1:
            report(run_dir, print_table=False, **report_options(options))
        elif records[0]["status"] == rundir.COMPLETED:
            write_run_figures(run_dir, **report_options(options))
    except Exception as e:  # a figure is not worth losing a finished run over
        log.warning("figures not written: %s: %s", type(e).__name__, e)


def print_summary(records: list[dict[str, Any]]) -> None:
    from reglab.tables import markdown_table, shown_in

    keys = [k for k in shown_in("console") if any(k in r["metrics"] for r in records)]
    rows = [
        (r["regularizer"], r["strength"], r["seed"], r["status"], *(r["metrics"].get(k) for k in keys)) for r in records
    ]
    title = f"{records[0]['regularizer']} on {records[0]['dataset']}: {len(records)} run(s)"
    print(f"\n{title}\n{markdown_table(['regularizer', 'λ', 'seed', 'status', *keys], rows)}\n")


class _StartedTask:
    """Hydra prints a command line it cannot compose in several lines and exits 1. Until the task
    function starts, its stderr is held back and such an exit said in one line, exit 2; every Hydra
    flag (`--cfg`, `--help`, `-sc`, …) works as Hydra defines it."""

    def __init__(self) -> None:
        self.started = False
        self.real = sys.stderr

    def __enter__(self) -> _StartedTask:
        sys.stderr = self.held = io.StringIO()
        return self

    def start(self) -> None:
        if not self.started:
            self.started = True
            sys.stderr = self.real
            self.real.write(self.held.getvalue())

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        text = self.held.getvalue()
        sys.stderr = self.real
        if self.started:
            return
        if isinstance(error, SystemExit) and error.code == 1 and text.strip():
            print(f"error: {_explained(text)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if isinstance(error, SystemExit) and error.code == 2 and text.startswith("usage:"):  # argparse's refusal
            said = text.strip().splitlines()[-1].split("error: ", 1)[-1]
            print(f"error: {said} (flags such as -m go before the overrides; see --help)", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        self.real.write(text)


_task: _StartedTask | None = None


def _explained(text: str) -> str:
    """Hydra's refusal of a command line, in one line. Where its words name no key (a group set to null),
    `command_line_error` composes the command line again, as Hydra parsed it, only to say which."""
    args = sys.argv[1:]
    if "Traceback (most recent call last)" in text and all(a in ("-m", "--multirun") or "=" in a for a in args):
        try:
            explanation = command_line_error(args, build=False)
        except Exception:  # the explanation is a courtesy: Hydra's own error stands
            explanation = None
        if explanation:
            return explanation
    return one_line(text)


def main() -> None:
    """Console entry point (`reglab-train`): Hydra's command line, its errors in one line."""
    global _task
    _task = task = _StartedTask()
    try:
        with task:
            hydra_main()
    except SystemExit as e:
        if _fast_exit(task):
            _exit_now(e.code)
        raise
    if _fast_exit(task):
        _exit_now(0)


def _fast_exit(task: _StartedTask) -> bool:
    """After a task that ran, unless a profiler, coverage or a debugger is watching: they write their
    results when the interpreter exits (`python -m cProfile` after the module returns)."""
    return task.started and sys.getprofile() is None and sys.gettrace() is None


def _exit_now(code: object) -> None:
    """Exit as the interpreter would, less its teardown of every module: after torch and Lightning
    that takes 1.5-2 s and does nothing a finished run needs. Non-daemon threads are joined, the
    atexit handlers (W&B, logging, temporary files) run and the output is flushed, as at any exit."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def command_line_error(args: list[str], build: bool = True) -> str | None:
    """The one-line error `reglab-train args` stops with before anything runs, or None: every job Hydra
    composes from `args`, checked and (with `build`) built without training. For tests and tools."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    overrides = [a for a in args if a not in ("-m", "--multirun")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose_job = lambda job: compose("train", overrides=job)  # noqa: E731
            check_jobs(overrides, compose_job, CONFIG_DIR, build_in_memory if build else None)
    except ConfigError as e:
        return str(e)
    except HydraException as e:
        return one_line(e)
    finally:
        GlobalHydra.instance().clear()
    return None


if __name__ == "__main__":
    # The importable module's main, not this __main__ copy: launchers (submitit) then pickle the
    # task function by reference.
    from reglab.train import main as _main

    _main()
