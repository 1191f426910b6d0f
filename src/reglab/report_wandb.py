"""The report as a W&B run: one run of job type "report" in the runs' group, holding the figures
as images, summary.csv (with the config columns that tell the runs apart) as a table, and every
file of the report as an artifact. The report on disk is the original; W&B is a copy of it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from reglab.errors import one_line
from reglab.runs import Run, trains, warn
from reglab.tables import plain

# The keys of `logger.wandb` a report run takes from the runs' config (never a `_target_`).
WANDB_KEYS = ("project", "group", "tags", "mode", "init_timeout_s")


def log_images_to_wandb(paths: Sequence[Path]) -> None:
    """Log the figures to the active W&B run, if there is one; never starts a run."""
    wandb = sys.modules.get("wandb")  # not imported: no run can be active
    if paths and wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.log({f"report/{p.stem}": wandb.Image(str(p)) for p in paths})


def settings_of(node: Any) -> dict[str, Any] | None:
    """The `WANDB_KEYS` of a `logger.wandb` config node, resolved where it can be; None without one."""
    if node is None:
        return None
    try:
        settings = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    except Exception:  # an interpolation that a run's config alone cannot resolve
        settings = OmegaConf.to_container(node, resolve=False)
    return {k: v for k, v in cast(dict, settings).items() if k in WANDB_KEYS}


def wandb_settings(option: bool | Mapping[str, Any] | None, runs: Sequence[Run]) -> dict[str, Any] | None:
    """The W&B settings (`WANDB_KEYS`) of a report run, or None for no report run: `option` True
    takes the runs' `logger.wandb` settings, a mapping gives them, False never logs, and None logs
    only a sweep or stack whose runs were logged to W&B."""
    if option is False:
        return None
    if isinstance(option, Mapping):
        return {k: v for k, v in option.items() if k in WANDB_KEYS}
    logged = next((s for r in runs if (s := settings_of(OmegaConf.select(r.config, "logger.wandb"))) is not None), None)
    if option is True:
        return logged or {}
    return logged if len(runs) > 1 else None


def config_columns(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per run, the config keys whose values differ between the runs (an optimizer.lr swept with
    -m, say), λ, seed and regularizer aside (summary.csv has them), and its optimizer, lr and
    batch size."""
    flat = [{k: plain(v) for k, v in r.flat_config.items()} for r in runs]
    skipped = ("seed", "regularizer.strength", "data.seed")
    keys = {k for f in flat for k in f if trains(k) and not k.endswith("_target_") and k not in skipped}
    varying = sorted(k for k in keys if len({repr(f.get(k)) for f in flat}) > 1)
    identity = ("optimizer", "lr", "batch_size")
    return [
        {k: plain(r.record.get(k)) for k in identity} | {k: f.get(k) for k in varying if k not in identity}
        for r, f in zip(runs, flat)
    ]


def copy_to_wandb(
    directory: Path, runs: Sequence[Run], rows: list[dict], files: list[Path], option: Any, options: dict
) -> None:
    """The report as a W&B run where `option` asks for one (`wandb_settings`), else its PNGs to the
    active W&B run, if there is one. A failure is a warning: the report is on disk, W&B is a copy."""
    settings = wandb_settings(option, runs)
    if settings is None:
        log_images_to_wandb([p for p in files if p.suffix == ".png"])
        return
    try:
        log_report_to_wandb(directory, runs, rows, files, settings, options)
    except Exception as e:
        warn(f"the report was not logged to W&B ({one_line(e, with_type=True)})")


def log_report_to_wandb(
    directory: Path,
    runs: Sequence[Run],
    rows: Sequence[dict[str, Any]],
    figure_files: Sequence[Path],
    settings: Mapping[str, Any],
    options: Mapping[str, Any],
) -> None:
    """One W&B run of job type "report" in the runs' group: the figures (PNG) as images,
    summary.csv's rows with config columns as a table, and summary.csv, summary.md and every
    figure file as an artifact of type "report"."""
    import wandb

    from reglab.lightning.loggers import start_run

    group = settings.get("group") or directory.name
    run = start_run(
        settings.get("mode"),
        float(settings.get("init_timeout_s") or 15),
        project=settings.get("project") or "reglab",
        group=group,
        tags=list(settings.get("tags") or []),
        name=f"report {group}",
        job_type="report",
        dir=str(directory),
        config={"directory": str(directory), "runs": len(rows), **options},
    )
    try:
        table_rows = [row | extra for row, extra in zip(rows, config_columns(runs))]
        columns: list[Any] = list(dict.fromkeys(k for row in table_rows for k in row))
        data = [[row.get(c) for c in columns] for row in table_rows]
        table = wandb.Table(columns=columns, data=data, allow_mixed_types=True)
        images = {f"figures/{p.stem}": wandb.Image(str(p)) for p in figure_files if p.suffix == ".png"}
        run.log({"summary": table, **images})
        artifact = wandb.Artifact(re.sub(r"[^\w.-]+", "-", f"report-{group}"), type="report")
        for path in [directory / "summary.csv", directory / "summary.md", *figure_files]:
            artifact.add_file(str(path))
        run.log_artifact(artifact)
        run.finish()
    except BaseException:
        run.finish(exit_code=1)
        raise
