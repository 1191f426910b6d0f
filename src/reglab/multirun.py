"""Multiruns checked whole before their first job trains: every job of the grid (the sweeper's
params, the command line's sweep lists, both ends of an Optuna interval) is composed, checked
(`reglab.config`) and built in memory (`reglab.preflight`); then the sweep directory is claimed for
this one grid (`grid.json`), so that two studies never share a directory and a report.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from reglab import rundir
from reglab.config import CONFIG_DIR, validate
from reglab.errors import EXIT_BAD_INPUT, EXIT_CRASH, ConfigError, one_line, require
from reglab.members import check_identity, members_of
from reglab.science.conventions import require_int


def build_in_memory(cfg: DictConfig) -> None:
    """Build the first stack of a composed job in memory and take a step (`reglab.preflight`);
    nothing is written. Raises ConfigError in one line."""
    from reglab.preflight import preflight

    with open_dict(cfg):
        cfg.paths.output_dir = "/nonexistent/reglab-preflight"  # outside Hydra's job: never written to
    members = members_of(cfg)
    chunk = cfg.sweep.get("chunk") or len(members)
    preflight(cfg, members[:chunk], Path(cfg.paths.output_dir) / "last.ckpt")


class Preflight(Callback):
    """Hydra callback. Before a multirun's first job: every job of its grid (both ends of an Optuna
    interval) composed, checked and built, so a bad value costs no job. Before a single run, ahead of
    Hydra's run directory and .hydra/ files: its config checks (no torch) and its directory's identity."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        # As Hydra's run_job will: ${now:} and ${run_suffix:} resolve once per config (cached).
        output_dir = os.path.abspath(str(config.hydra.run.dir))
        with open_dict(config):
            config.hydra.runtime.output_dir = output_dir
        HydraConfig.instance().set_config(config)
        task = copy.deepcopy(config)
        with open_dict(task):
            del task["hydra"]
        try:
            validate(task)
            check_report_node(task)
            check_identity(members_of(task), bool(task.get("force", False)))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra import compose
        from hydra.core.global_hydra import GlobalHydra

        name = config.hydra.job.config_name
        loader = GlobalHydra.instance().config_loader()  # its search path has --config-dir and hydra.searchpath
        options = lambda group: loader.get_group_options(group)  # noqa: E731
        compose_job = lambda job: compose(config_name=name, overrides=job)  # noqa: E731
        try:
            sweeper = config.hydra.get("sweeper") or OmegaConf.create()  # as the command line set it
            if "optuna" in str(sweeper.get("_target_", "")).lower():
                _check_optuna(sweeper)
            overrides = list(config.hydra.overrides.task)
            check_jobs(overrides, compose_job, CONFIG_DIR, build_in_memory, name, options)
            claim_sweep_dir(Path(config.hydra.sweep.dir), sweep_grid(config))
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        except Exception as e:  # Hydra would turn it into a warning and launch the jobs unchecked
            print(f"error: the multirun preflight failed ({one_line(e, with_type=True)})", file=sys.stderr)
            sys.exit(EXIT_CRASH)


def check_report_node(cfg: DictConfig) -> None:
    """The `report` node a command-line job's figures are drawn with (`reglab.report.report_options`)."""
    from reglab.report import report_options

    try:
        report_options(cfg.get("report"))
    except ValueError as e:
        raise ConfigError(str(e)) from None


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
        if override.is_discrete_sweep():
            grid[key] = sorted({repr(v) for v in override.sweep_iterator()})
        else:  # one value, or a search space (an Optuna interval) recorded as written
            grid[key] = [repr(override.value())]
    return dict(sorted(grid.items()))


def claim_sweep_dir(sweep_dir: Path, grid: dict[str, list[str]]) -> None:
    """A sweep directory holds the runs of one grid: re-launching that grid resumes it (its finished
    jobs are skipped), another grid under the same `name` is refused in one line, so that two
    studies never share a directory and a report. The grid is recorded in `rundir.GRID_JSON`."""
    path = sweep_dir / rundir.GRID_JSON
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


def check_jobs(
    overrides: list[str],
    compose: Callable[[list[str]], DictConfig],
    config_dir: str,
    build: Callable[[DictConfig], object] | None = None,
    config_name: str = "train",
    group_options: Callable[[str], list[str]] | None = None,
) -> None:
    """Compose and check (`reglab.config`) every job of a sweep's `overrides` (Hydra's own) before any
    runs, so that a bad value (or either end of an Optuna interval) is one line and costs no job; the
    composed config's sweeper params count too. `build(cfg)`, if given, then builds each in memory."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _check_null_groups(overrides, config_dir, group_options)
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(one_line(e)) from None
    grid, jobs = _jobs(parsed)
    # The first job with Hydra's own config: the sweeper's params (an experiment's grid, an Optuna
    # search space) may add jobs; without params it is the first job's config, composed once.
    first, params = _compose_with_sweeper(jobs[0], parsed, config_name)
    if params:
        try:
            parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parsed
        except HydraException as e:
            raise ConfigError(f"hydra.sweeper.params: {one_line(e)}") from None
        _check_fixed_grid(parsed, params)
        (grid, jobs), first = _jobs(parsed), None
    # Each value first (a bad one is found at once), then the rest of the grid: a rule between two
    # swept keys (a data set and its label noise) must hold in every combination.
    # Every job's config is checked before any is built: a refusal the config layer can judge costs no torch import.
    cfgs = []
    for i, job in enumerate([*jobs, *(job for job in grid if job not in jobs)]):
        try:
            cfg = first if i == 0 and first is not None else compose(job)
        except (HydraException, OmegaConfBaseException, ValueError) as e:  # ValueError: a group set to null
            raise ConfigError(one_line(e)) from None
        validate(cfg)
        cfgs.append(cfg)
    for cfg in cfgs:  # the figures' settings: their checks import matplotlib, after every light check
        check_report_node(cfg)
    if build is not None:  # everything a job needs, built in memory: the constructors' checks
        for cfg in cfgs:
            build(cfg)


def _jobs(parsed: list) -> tuple[list[list[str]], list[list[str]]]:
    """(every job of the grid: the product of each key's values, an interval taken at both ends;
    the jobs that hold each value once: the first value of every key, then each other value with the
    first of the others: checked first, so that a bad value is found before the whole grid is)."""
    from hydra.core.override_parser.types import IntervalSweep

    values: dict[str, list[str]] = {}  # every key's values as override lines (later overrides of a key win)
    for override in parsed:
        key = override.get_key_element()
        if key.lstrip("+~").startswith("hydra"):
            continue
        if not override.is_sweep_override():
            values[key] = [override.input_line or f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in override.sweep_string_iterator()] or values.get(key, [])
        else:
            _check_interval(override)
            value = override.value()
            ends = (value.start, value.end) if isinstance(value, IntervalSweep) else ()
            values[key] = [f"{key}={v}" for v in ends] or values.get(key, [])
    values = {key: lines for key, lines in values.items() if lines}
    grid = [list(job) for job in itertools.product(*values.values())]
    base = [lines[0] for lines in values.values()]
    each = [base] + [
        [line if k != key else other for k, line in zip(values, base)]
        for key, lines in values.items()
        for other in lines[1:]
    ]
    return grid, each


def _compose_with_sweeper(job: list[str], parsed: list, config_name: str) -> tuple[DictConfig | None, dict[str, str]]:
    """The config of `job` (without its `hydra` node) and the sweeper's params, with the sweeper's
    own settings checked; (None, {}) where Hydra is not initialized or the job does not compose."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return None, {}
    settings = [o.input_line for o in parsed if o.get_key_element().startswith("hydra") and o.input_line]
    try:
        cfg = compose(config_name=config_name, overrides=[*job, *settings], return_hydra_config=True)
    except Exception:  # composing the job again says what is wrong, in one line
        return None, {}
    sweeper = cfg.hydra.sweeper
    if "optuna" in str(sweeper.get("_target_", "")).lower():
        _check_optuna(sweeper)
    params = {str(k): str(v) for k, v in (sweeper.get("params") or {}).items()}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, params


def _check_optuna(sweeper: DictConfig) -> None:
    for key in ("n_trials", "n_jobs"):
        try:
            require_int(sweeper.get(key), f"hydra.sweeper.{key}")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    direction = sweeper.get("direction")
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    require(
        all(str(d).lower() in ("minimize", "maximize") for d in directions),
        f"hydra.sweeper.direction={direction} must be minimize or maximize (or a list of them)",
    )


def _check_fixed_grid(parsed: list, params: dict[str, str]) -> None:
    """A command-line value for a key the config sweeps (an experiment's grid) would replace the
    whole sweep with that one value, silently: refuse it, and say how to sweep it or run it alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parse = OverridesParser.create().parse_overrides
    swept = {key: value for key, value in params.items() if parse([f"{key}={value}"])[0].is_sweep_override()}
    for override in parsed:
        key = override.get_key_element()
        if key in swept and not override.is_sweep_override():
            line = override.input_line or f"{key}={override.get_value_element_as_str()}"
            value = line.split("=", 1)[1]
            grid = swept[key].replace(" ", "")
            if "(" in grid:
                other = f"search another range ({key}=interval(low,high))"
            else:
                other = f"sweep it with the grid ({key}={grid},{value})"
            raise ConfigError(
                f"{key}={value} would replace the config's sweep {key}={grid} (hydra.sweeper.params) with one "
                f"value; {other}, or run it alone on purpose ({key}=choice({value}))"
            )


def _check_interval(override: object) -> None:
    """An interval of a search space (Optuna) as its sampler will take it: low <= high, low > 0 on a
    log scale. Built by the Optuna sweeper's own function (a dependency of reglab)."""
    from hydra.core.override_parser.types import IntervalSweep, Override

    assert isinstance(override, Override)
    if not isinstance(override.value(), IntervalSweep):
        return
    shown = override.input_line or override.get_key_element()
    from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override

    try:
        create_optuna_distribution_from_override(override)
    except (ValueError, AssertionError, NotImplementedError) as e:
        raise ConfigError(f"{shown}: {' '.join(str(e).split())} (from optuna)") from None


def _check_null_groups(
    overrides: list[str], config_dir: str, group_options: Callable[[str], list[str]] | None = None
) -> None:
    """`group=null` (in a sweep list too) is refused like a misspelt choice: Hydra accepts it and drops
    the group. Any other unknown choice is Hydra's own refusal (`errors.one_line` words it)."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+").partition("=")
        if not sep or "." in key or "/" in key or "(" in value or "null" not in value.split(","):
            continue
        if group_options is not None:
            options = sorted(group_options(key))
        else:
            group = Path(config_dir, key)
            options = sorted(p.stem for p in group.glob("*.yaml")) if group.is_dir() else []
        if not options:  # not a config group
            continue
        require(False, f"{key}=null is not a {key} config; choose one of: {', '.join(options)}")
