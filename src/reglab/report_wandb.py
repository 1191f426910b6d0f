"""The report as a W&B run of job type "report" in the runs' group (`copy_to_wandb`): a copy of the one on disk."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from reglab import rundir
from reglab.errors import one_line
from reglab.runs import Run, varying_keys, warn
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
    """The W&B settings (`WANDB_KEYS`) of a report run, or None for none: `option` True takes the runs'
    `logger.wandb`, a mapping gives them, False never logs, None logs a sweep or stack logged to W&B."""
    if option is False:
        return None
    if isinstance(option, Mapping):
        return {k: v for k, v in option.items() if k in WANDB_KEYS}
    logged = next((s for r in runs if (s := settings_of(OmegaConf.select(r.config, "logger.wandb"))) is not None), None)
    if option is True:
        return logged or {}
    return logged if len(runs) > 1 else None


def config_columns(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per run, its optimizer, lr and batch size and the `varying_keys` but λ and seeds (summary.csv has them)."""
    identity = ("optimizer", "lr", "batch_size")
    skipped = ("seed", "regularizer.strength", "data.seed", *identity)
    varying = [k for k in varying_keys(runs) if not k.endswith("_target_") and k not in skipped]
    return [
        {k: plain(r.record.get(k)) for k in identity} | {k: plain(r.flat_config.get(k)) for k in varying} for r in runs
    ]


def copy_to_wandb(
    directory: Path, runs: Sequence[Run], rows: list[dict], files: list[Path], option: Any, options: dict
) -> None:
    """Where `option` asks for one (`wandb_settings`), one W&B run of job type "report" in the runs' group: the
    PNGs as images, summary.csv's rows with `config_columns` as a table, and every file of the report as an
    artifact of type "report"; else the PNGs go to the active run. A failure is a warning."""
    settings = wandb_settings(option, runs)
    if settings is None:
        log_images_to_wandb([p for p in files if p.suffix == ".png"])
        return
    group = settings.get("group") or directory.name
    try:
        import wandb

        from reglab.wandb_init import start_run

        timeout, tags = float(settings.get("init_timeout_s") or 15), list(settings.get("tags") or [])
        config = {"directory": str(directory), "runs": len(rows), **options}
        about: dict[str, Any] = dict(project=settings.get("project") or "reglab", group=group, tags=tags)
        about |= dict(name=f"report {group}", job_type="report", dir=str(directory), config=config)
        run = start_run(settings.get("mode"), timeout, **about)
        try:
            table_rows = [row | extra for row, extra in zip(rows, config_columns(runs))]
            columns: list[Any] = list(dict.fromkeys(k for row in table_rows for k in row))
            data = [[row.get(c) for c in columns] for row in table_rows]
            table = wandb.Table(columns=columns, data=data, allow_mixed_types=True)
            images = {f"figures/{p.stem}": wandb.Image(str(p)) for p in files if p.suffix == ".png"}
            run.log({"summary": table, **images})
            artifact = wandb.Artifact(re.sub(r"[^\w.-]+", "-", f"report-{group}"), type="report")
            for path in [directory / rundir.SUMMARY_CSV, directory / rundir.SUMMARY_MD, *files]:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
            run.finish()
        except BaseException:
            run.finish(exit_code=1)
            raise
    except Exception as e:
        warn(f"the report was not logged to W&B ({one_line(e, with_type=True)})")
