"""Train regularized MLPs: `reglab-train [overrides]` or `python -m reglab.train`.

One engine for every run (`reglab.fit`): lists in `regularizer.strength` and `seed` are stacked
members of one run; `-m` keeps Hydra's meaning of separate jobs, and the two combine. A job that
crashes or diverges is recorded and a multirun goes on.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.utils import setup_globals
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.config import ConfigError, check_jobs, hydra_error_line

log = logging.getLogger("reglab.train")
# The package's own configs: a link to the repository's configs/, shipped in the wheel as package data.
CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
EXIT_CONFIG_ERROR, EXIT_DIVERGED = 2, 3  # a crash exits 1, with its traceback
SUMMARY_KEYS = ("train/acc", "val/acc", "test/acc", "val/gap", "val/r2", "test/r2", "weights/zero_frac", "weights/small_frac", "weights/l1")  # fmt: skip

# A short random suffix: two runs started in the same second get different directories.
OmegaConf.register_new_resolver("run_suffix", lambda: secrets.token_hex(3), use_cache=True, replace=True)
# Hydra registers ${hydra:…} and ${now:…} when it composes a config; `--experimental-rerun` skips
# composing, and the config it unpickles still holds them (paths.output_dir).
setup_globals()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    from reglab.fit import fit, in_multirun

    # Through sys.modules: a launcher that pickles this function (submitit) must not pickle the held stderr.
    started = getattr(sys.modules.get(__name__), "_task", None)
    if started is not None:
        started.start()
    try:
        records = fit(cfg)  # builds every stack in memory, and takes a step, before it writes a file
    except ConfigError as e:
        return _refuse(cfg, str(e))
    if not in_multirun():
        print_summary(records)
        _write_figures(Path(cfg.paths.output_dir), records)
        if all(r["status"] == rundir.DIVERGED for r in records):
            epochs = ", ".join(str(r["diverged_epoch"]) for r in records)
            print(f"error: training diverged at epoch {epochs} (non-finite loss or weights)", file=sys.stderr)
            sys.exit(EXIT_DIVERGED)
    metric = cfg.optimized_metric or ("val/r2" if records[0]["task"] == "regression" else "val/acc")
    scores = [r["metrics"].get(metric) for r in records]
    # a sweeper (Optuna) records NaN as a failed trial
    return max((float(s) for s in scores if s is not None), default=float("nan"))


def _refuse(cfg: DictConfig, message: str) -> float:
    print(f"error: {message}", file=sys.stderr)
    _remove_unused_run_dir(Path(cfg.paths.output_dir), Path(cfg.paths.log_dir).resolve())
    sys.exit(EXIT_CONFIG_ERROR)


def _remove_unused_run_dir(run_dir: Path, log_root: Path) -> None:
    """A rejected config leaves nothing behind that looks like a run: not even the empty folders above it."""
    if run_dir.is_dir() and all(p.name in (".hydra", "train.log") for p in run_dir.iterdir()):
        shutil.rmtree(run_dir)
        parent = run_dir.parent.resolve()
        while parent != log_root.parent and log_root in (parent, *parent.parents) and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _write_figures(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """A stack's report (its members are runs), or one run's decision boundary and weight histogram."""
    from reglab.report import report, write_run_figures

    try:
        if len(records) > 1:
            report(run_dir, print_table=False)
        elif records[0]["status"] == rundir.COMPLETED:
            write_run_figures(run_dir)
    except Exception as e:  # a figure is not worth losing a finished run over
        log.warning("figures not written: %s: %s", type(e).__name__, e)


def print_summary(records: list[dict[str, Any]]) -> None:
    from reglab.tables import markdown_table

    keys = [k for k in SUMMARY_KEYS if any(k in r["metrics"] for r in records)]
    rows = [
        (r["regularizer"], r["strength"], r["seed"], r["status"], *(r["metrics"].get(k) for k in keys)) for r in records
    ]
    title = f"{records[0]['regularizer']} on {records[0]['dataset']}: {len(records)} run(s)"
    print(f"\n{title}\n{markdown_table(['regularizer', 'λ', 'seed', 'status', *keys], rows)}\n")


def run(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Train from Python, as `reglab-train <overrides>` would, and return each member's metrics.json
    record: `reglab.train.run(["regularizer=l1", "regularizer.strength=[0,1e-3]"])`. The run is
    written to `run_dir` (default: a new directory under `logs/runs/`). One job: use the command line
    for `-m`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from reglab.fit import fit

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    output = Path(run_dir) if run_dir is not None else Path(cfg.hydra.run.dir)
    cfg.hydra.runtime.output_dir = str(output.resolve())
    HydraConfig.instance().set_config(cfg)  # `${hydra:…}` values resolve as in a job
    with open_dict(cfg):
        del cfg["hydra"]
    (output / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output / ".hydra" / "config.yaml")
    try:
        return fit(cfg)
    except ConfigError:  # refused before any work: no directory that looks like a run is left
        _remove_unused_run_dir(output, Path(cfg.paths.log_dir).resolve())
        raise


def build_in_memory(cfg: DictConfig) -> None:
    """Build the first stack of a composed job in memory and take a step (`reglab.fit.preflight`);
    nothing is written. Raises ConfigError in one line."""
    from omegaconf import open_dict

    from reglab.fit import members_of, preflight

    with open_dict(cfg):
        cfg.paths.output_dir = "/nonexistent/reglab-preflight"  # outside Hydra's job: never written to
    members = members_of(cfg)
    chunk = cfg.sweep.get("chunk") or len(members)
    preflight(cfg, members[:chunk], Path(cfg.paths.output_dir) / "last.ckpt")


class PreflightOnMultirunStart(Callback):
    """Hydra callback: before a multirun's first job, compose and check every job of its grid (and
    both ends of an Optuna interval), so that a bad value costs no job and leaves no directory."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra.core.global_hydra import GlobalHydra

        name = config.hydra.job.config_name
        loader = GlobalHydra.instance().config_loader()  # its search path has --config-dir and hydra.searchpath
        options = lambda group: loader.get_group_options(group)  # noqa: E731
        try:
            check_jobs(
                list(config.hydra.overrides.task),
                lambda job: compose(config_name=name, overrides=job),
                CONFIG_DIR,
                build_in_memory,
                config_name=name,
                group_options=options,
            )
            claim_sweep_dir(Path(config.hydra.sweep.dir), sweep_grid(config))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)


GRID_FILE = "grid.json"  # in a sweep directory: the grid of the sweep it holds


def sweep_grid(config: DictConfig) -> dict[str, list[str]]:
    """A multirun's grid as {key: its values}: the sweeper's params (an experiment's grid) and the
    command line's overrides, parsed (1e-3 and 0.001 are one value), without the keys that change no
    result (`hydra.job.config.override_dirname.exclude_keys`: logger, force, …)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    excluded = set(config.hydra.job.config.override_dirname.exclude_keys)
    texts = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    grid: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element()
        if override.key_or_group in excluded:
            continue
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        grid[key] = sorted({repr(v) for v in values})
    return dict(sorted(grid.items()))


def claim_sweep_dir(sweep_dir: Path, grid: dict[str, list[str]]) -> None:
    """A sweep directory holds the runs of one grid: re-launching that grid resumes it (its finished
    jobs are skipped), another grid under the same `name` is refused in one line, so that two
    studies never share a directory and a report. The grid is recorded in `GRID_FILE`."""
    path = sweep_dir / GRID_FILE
    if path.is_file():
        held = json.loads(path.read_text())
        if held != grid:
            differ = sorted(k for k in held.keys() | grid.keys() if held.get(k) != grid.get(k))
            raise ConfigError(
                f"{sweep_dir} holds the runs of another sweep (its grid differs in {', '.join(differ)}); "
                "give this one its own name=… (or hydra.sweep.dir=…), or remove that directory"
            )
        return
    rundir.atomic_write_text(path, json.dumps(grid, indent=1) + "\n")


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
            print(f"error: {hydra_error_line(text)}", file=sys.stderr)
            sys.exit(EXIT_CONFIG_ERROR)
        self.real.write(text)


_task: _StartedTask | None = None


def main() -> None:
    """Console entry point (`reglab-train`): Hydra's command line, its errors in one line."""
    global _task
    with _StartedTask() as _task:
        hydra_main()


def command_line_error(args: list[str]) -> str | None:
    """The one-line error `reglab-train args` stops with before anything runs, or None: what Hydra
    composes from `args` (one job, or every job of a `-m` sweep), checked without training. For
    tests and tools; the command line itself is parsed by Hydra only."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    overrides = [a for a in args if a not in ("-m", "--multirun")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            check_jobs(overrides, lambda job: compose("train", overrides=job), CONFIG_DIR, build_in_memory)
    except ConfigError as e:
        return str(e)
    except HydraException as e:
        return hydra_error_line(str(e))
    finally:
        GlobalHydra.instance().clear()
    return None


if __name__ == "__main__":
    # The importable module's main, not this __main__ copy: launchers (submitit) then pickle the
    # task function by reference.
    from reglab.train import main as _main

    _main()
