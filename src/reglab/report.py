"""The report of a run or a sweep: `reglab-report DIR` or `python -m reglab.report DIR`.

Reads only what runs wrote (metrics.json, metrics.csv, .hydra/config.yaml, checkpoints/last.ckpt;
see `reglab.rundir`), never W&B, and writes into DIR:

    summary.csv   one row per finished run (completed, failed or diverged), metric names as columns
    summary.md    the runs, the mean ± 95% CI over seeds per (regularizer, λ) of completed runs only,
                  the failed and diverged runs apart, the figures
    *.png         the figures of `reglab.figures` (`--format png pdf svg`: each figure in every
                  format; `--dpi`; `--band minmax` for the seeds' range instead of the 95% CI)

A run is any directory under DIR (DIR included) holding `.hydra/config.yaml`. One without a
readable metrics.json is skipped with a warning and counted as incomplete. Runs of several data
sets are reported per data set; figure names then end in `_<data set>`.

With W&B (`wandb=True`, `--wandb`, or by default where the runs of a sweep or stack were logged
to W&B), the report is also a W&B run of job type "report" in the runs' group: its figures as
images, summary.csv as a table, and its files as an artifact.

Exit codes: 0 report written, 1 no finished run in DIR, 2 DIR does not exist or a bad option.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.runs import (
    FINISHED,
    Found,
    ReportError,
    Run,
    best_strengths,
    find_runs,
    mean_ci,
    one_line,
    read_run,
    seed_groups,
    strength_cell,
    studies,
    study_keys,
    trains,
    values,
    warn,
)
from reglab.tables import format_value, markdown_table

EXIT_NO_RUNS, EXIT_BAD_PATH = 1, 2
# The keys of `logger.wandb` a report run takes from the runs' config (never a `_target_`).
WANDB_KEYS = ("project", "group", "tags", "mode", "init_timeout_s")


# --- tables ---------------------------------------------------------------------------------


def metric_columns(task: str, threshold: float) -> list[tuple[str, str]]:
    """(header, metrics.json key) of the per-run and aggregate tables."""
    score = "R²" if task == "regression" else "acc"
    key = "r2" if task == "regression" else "acc"
    small = f"abs(w)<{threshold:g}" if math.isfinite(threshold) else "small frac"
    gap = "gap (val−train loss)" if task == "regression" else "gap"
    return [
        (f"train {score}", f"train/{key}"),
        (f"val {score}", f"val/{key}"),
        (f"test {score}", f"test/{key}"),
        (gap, "val/gap"),
        (small, "weights/small_frac"),
        ("w=0", "weights/zero_frac"),
        ("L1", "weights/l1"),
        ("L2", "weights/l2"),
        ("dead units", "weights/dead_units"),
    ]


# The columns the end of a sweep prints per model.
CONSOLE_KEYS = (
    "train/acc", "val/acc", "train/r2", "val/r2", "val/gap", "weights/small_frac", "weights/zero_frac", "weights/l1",
)  # fmt: skip
CSV_METRICS = (
    "train/acc", "val/acc", "test/acc", "train/r2", "val/r2", "test/r2", "val/gap", "test/gap",
    "train/loss", "val/loss", "test/loss", "train/penalty", "weights/zero_frac", "weights/small_frac",
    "weights/l1", "weights/l2", "weights/dead_units",
)  # fmt: skip


def csv_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """summary.csv: one row per finished run, the metric columns under their metrics.json names."""
    present = [k for k in CSV_METRICS if any(k in run.record["metrics"] for run in runs)]
    keys = study_keys(runs)  # the config keys that tell the studies apart (optimizer.lr, say)
    rows = []
    for run in runs:
        flat = run.flat_config
        row = {
            "run": run.name,
            "dataset": run.dataset,
            **{key: _plain(flat.get(key)) for key in keys},
            "task": run.task,
            "regularizer": run.regularizer,
            "lambda": run.strength,
            "seed": run.seed,
            "status": run.status,
            "epochs": run.record.get("epochs"),
            "best_epoch": run.record.get("best_epoch"),
        }
        row.update({k: run.record["metrics"].get(k) for k in present})
        row["wall_time_s"] = run.record.get("wall_time_s")
        rows.append(row)
    return rows


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _threshold(runs: Sequence[Run]) -> float:
    thresholds = {run.sparsity_threshold for run in runs}
    return thresholds.pop() if len(thresholds) == 1 else math.nan


def runs_table(runs: Sequence[Run], console: bool = False) -> str:
    """Completed runs, one row each; `console`: only the columns the end of a sweep prints."""
    columns = metric_columns(runs[0].task, _threshold(runs))
    if console:
        columns = [(h, k) for h, k in columns if k in CONSOLE_KEYS]
    header = ["regularizer", "λ", "seed", *(h for h, _ in columns)]
    rows = [
        [r.regularizer, strength_cell(r.regularizer, r.strength), r.seed, *(r.metric(k) for _, k in columns)]
        for r in runs
    ]
    if not console:
        header, rows = (
            ["run", *header, "time (s)"],
            [[r.name, *row, r.record.get("wall_time_s")] for r, row in zip(runs, rows)],
        )
    return markdown_table(header, rows)


def _mean_ci(x: np.ndarray) -> str:
    """Mean ± the half-width of its 95% confidence interval over seeds (`results.mean_ci`)."""
    mean, half = mean_ci(x)
    if not math.isfinite(mean):
        return "nan"
    return format_value(mean) if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def aggregate_table(groups: dict[tuple[str, float], list[Run]], console: bool = False) -> tuple[str, list[dict]]:
    """Mean ± 95% CI over seeds per (regularizer, λ); ★ marks each regularizer's best λ (by val score)."""
    runs = [r for group in groups.values() for r in group]
    columns = metric_columns(runs[0].task, _threshold(runs))
    if console:
        columns = [(h, k) for h, k in columns if k in CONSOLE_KEYS]
    best = best_strengths(groups, f"val/{runs[0].score}")
    rows, records = [], []
    for (reg, lam), group in groups.items():
        star = " ★" if best.get(reg) == lam and sum(r == reg for r, _ in groups) > 1 else ""
        rows.append(
            [reg, strength_cell(reg, lam) + star, len(group), *(_mean_ci(values(group, k)) for _, k in columns)]
        )
        records.append(
            {"regularizer": reg, "lambda": lam, "n": len(group)}
            | {
                k: float(np.nanmean(values(group, k))) if np.isfinite(values(group, k)).any() else None
                for _, k in columns
            }
        )
    return markdown_table(["regularizer", "λ", "n", *(h for h, _ in columns)], rows), records


def failures_table(runs: Sequence[Run]) -> str:
    rows = []
    for r in runs:
        detail = r.record.get("error") or ""
        if r.status == rundir.DIVERGED:
            detail = f"diverged at epoch {r.record.get('diverged_epoch')}"
        rows.append([r.name, r.regularizer, strength_cell(r.regularizer, r.strength), r.seed, r.status, detail])
    return markdown_table(["run", "regularizer", "λ", "seed", "status", "detail"], rows)


def counts_line(found: Found) -> str:
    statuses = [r.status for r in found.runs]
    parts = [f"{statuses.count(s)} {s}" for s in FINISHED] + [f"{len(found.incomplete)} incomplete"]
    total = len(statuses) + len(found.incomplete)
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(parts)


# --- the report -----------------------------------------------------------------------------


def log_images_to_wandb(paths: Sequence[Path]) -> None:
    """Log the figures to the active W&B run, if there is one; never starts a run."""
    wandb = sys.modules.get("wandb")  # not imported: no run can be active
    if paths and wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.log({f"report/{p.stem}": wandb.Image(str(p)) for p in paths})


def draw_figure(draw: Callable[..., Path | None], groups: dict, path: Path) -> Path | None:
    """`draw(groups, path)`; a figure that fails is reported in one line and the report goes on."""
    try:
        return draw(groups, path)
    except Exception as e:
        warn(f"{path.name} not drawn: {one_line(e)}")
        return None


def write_run_figures(
    run_dir: Path, formats: Sequence[str] = ("png",), dpi: int | None = None, log: bool = True
) -> list[Path]:
    """decision_boundary (2-D classification only) and weight_histogram of one run, into its
    directory, in each format; returns the files written. `log`: the PNGs also go to the active
    W&B run, if there is one."""
    from reglab import figures

    run = read_run(Path(run_dir), Path(run_dir).name)
    groups = {(run.regularizer, run.lam): [run]}
    with figures.output(formats, dpi) as out:
        pngs = [run.path / f"{name}.png" for name in figures.RUN]
        if list(out.formats) == ["png"] and dpi is None and _drawn_since_trained(run, pngs):
            files = [f for f in pngs if f.is_file()]
        else:
            drawn = [draw_figure(draw, groups, run.path / f"{name}.png") for name, draw in figures.RUN.items()]
            files = [f for p in drawn if p is not None for f in out.files(p)]
    if log:
        log_images_to_wandb([p for p in files if p.suffix == ".png"])
    return files


def _drawn_since_trained(run: Run, files: Sequence[Path]) -> bool:
    """Some of a run's figures exist, none older than its metrics.json and checkpoint: drawn from
    these very files already (by its W&B run's end, `member_figures`), at the default resolution."""
    sources = [run.path / "metrics.json", run.path / "checkpoints" / "last.ckpt"]
    present = [f for f in files if f.is_file()]
    if not present or not all(p.is_file() for p in sources):
        return False
    return min(f.stat().st_mtime_ns for f in present) >= max(p.stat().st_mtime_ns for p in sources)


def member_figures(run_dir: Path) -> list[Path]:
    """The images a member's W&B run gets at its end (`logger.wandb.figures`): its decision
    boundary and weight histogram as PNGs in its run directory, for a completed run on a 2-D
    classification data set; none otherwise (the W&B run already has per-layer histograms)."""
    run = read_run(Path(run_dir), Path(run_dir).name)
    if run.status != rundir.COMPLETED or run.task == "regression" or len(run.record.get("feature_l1") or []) != 2:
        return []
    return write_run_figures(run_dir, log=False)


def report(
    directory: Path,
    print_table: bool = True,
    *,
    formats: Sequence[str] = ("png",),
    dpi: int | None = None,
    band: str = "ci",
    wandb: bool | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write summary.csv, summary.md and the figures into `directory`; print the summary if asked.

    `formats` (png, pdf, svg), `dpi` and `band` ("ci": 95% CI of the mean over seeds, "minmax")
    are the figures' (`figures.output`). `wandb`: also log the report as a W&B run of job type
    "report": True (settings from the runs' `logger.wandb`), a mapping of `WANDB_KEYS`, False
    (never), or None: only for a sweep or stack whose runs were logged to W&B.

    Returns {"runs": summary.csv rows, "aggregate": {dataset: mean rows}, "incomplete": names,
    "figures": the figure files}. Raises ReportError if `directory` holds no finished run.
    """
    from reglab import figures

    directory = Path(directory)
    found = find_runs(directory)
    if not found.runs:
        what = f"no finished run ({len(found.incomplete)} incomplete)" if found.incomplete else "no run"
        raise ReportError(f"{what} in {directory} (a run is a directory with .hydra/config.yaml and metrics.json)")
    parts = studies(found.runs)  # never a mean over anything but seeds: one section per study
    tasks = sorted({r.task for r in found.runs})
    if len(parts) > 1:
        print(
            f"note: the runs form {len(parts)} studies ({'; '.join(parts)}; tasks: {', '.join(tasks)}); "
            "each is reported separately, its figures named *_<study>.<format>",
            file=sys.stderr,
        )
    single = len(found.runs) == 1 and found.runs[0].path == directory

    md = [f"# Report: {directory}", "", counts_line(found) + ".", ""]
    console = [f"\n{directory}: {counts_line(found)}"]
    aggregates: dict[str, list[dict]] = {}
    written: list[Path] = []
    with figures.output(formats, dpi, band) as out:
        for study, runs in parts.items():
            completed = [r for r in runs if r.status == rundir.COMPLETED]
            failed = [r for r in runs if r.status != rundir.COMPLETED]
            suffix = "_" + re.sub(r"[^\w.=-]+", "_", study).strip("_") if len(parts) > 1 else ""
            heading = f"## {study} ({runs[0].task})"
            md += [heading, ""]
            console += [heading[3:]] if len(parts) > 1 else []
            if completed:
                groups = seed_groups(completed)
                table, aggregates[study] = aggregate_table(groups)
                md += ["### Completed runs", "", runs_table(completed), ""]
                md += [
                    "### Mean ± 95% confidence interval over seeds (Student t; completed runs only; ★ best λ by validation score)",
                    "",
                    table,
                    "",
                ]
                console += [runs_table(completed, console=True)]
                if any(len(g) > 1 for g in groups.values()):
                    console += ["mean ± 95% CI over seeds (Student t):", aggregate_table(groups, console=True)[0]]
                if single:  # a run directory: the figures write_run_figures makes, and its learning curves
                    plan = figures.RUN | {"learning_curves": figures.learning_curves}
                else:
                    plan = {f"{name}{suffix}": draw for name, draw in figures.SWEEP.items()}
                drawn = [draw_figure(draw, groups, directory / f"{name}.png") for name, draw in plan.items()]
                files = [out.files(p) for p in drawn if p is not None]
                written += [f for fs in files for f in fs]
                md += ["### Figures", f"(error bars and bands: {figures.band_text(band)})", ""]
                md += [_figure_markdown(fs) for fs in files] + [""]
            if failed:
                md += ["### Failed and diverged runs (not averaged in)", "", failures_table(failed), ""]
                console += ["failed or diverged (not averaged in):", failures_table(failed)]
    if found.incomplete:
        md += ["## Incomplete runs (skipped: no readable metrics.json)", ""] + [f"- {n}" for n in found.incomplete]
        md += [""]

    rows = csv_rows(found.runs)
    rundir.atomic_write_text(directory / "summary.csv", _csv_text(rows))
    rundir.atomic_write_text(directory / "summary.md", "\n".join(md))
    settings = wandb_settings(wandb, found.runs)
    if settings is not None:
        try:
            log_report_to_wandb(
                directory, found.runs, rows, written, settings, {"formats": list(formats), "band": band}
            )
        except Exception as e:  # the report is on disk; W&B is a copy of it
            warn(f"the report was not logged to W&B ({one_line(e)})")
    else:
        log_images_to_wandb([p for p in written if p.suffix == ".png"])
    if print_table:
        console += [f"report: {directory / 'summary.md'}, {len(written)} figure files\n"]
        print("\n\n".join(console))
    return {"runs": rows, "aggregate": aggregates, "incomplete": found.incomplete, "figures": written}


def _figure_markdown(files: Sequence[Path]) -> str:
    """A figure in summary.md: the PNG shown, other formats linked."""
    png = next((f for f in files if f.suffix == ".png"), None)
    links = " ".join(f"[{f.suffix[1:]}]({f.name})" for f in files if f is not png)
    return (f"![{png.stem}]({png.name})" if png else f"{files[0].stem}:") + (f" {links}" if links else "")


# --- the report as a W&B run ----------------------------------------------------------------


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _runs_wandb_config(runs: Sequence[Run]) -> dict[str, Any] | None:
    """`logger.wandb` of the first run that was logged to W&B: its plain settings, else None."""
    for run in runs:
        node = OmegaConf.select(run.config, "logger.wandb", default=None)
        if node is None:
            continue
        try:
            plain = OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation the run's config alone cannot resolve
            plain = OmegaConf.to_container(node, resolve=False)
        return {k: v for k, v in cast(dict, plain).items() if k in WANDB_KEYS}
    return None


def wandb_settings(option: bool | Mapping[str, Any] | None, runs: Sequence[Run]) -> dict[str, Any] | None:
    """The W&B settings (`WANDB_KEYS`) of a report run, or None for no report run (see `report`)."""
    if option is False:
        return None
    if isinstance(option, Mapping):
        return {k: v for k, v in option.items() if k in WANDB_KEYS}
    logged = _runs_wandb_config(runs)
    if option is True:
        return logged or {}
    return logged if len(runs) > 1 else None


def config_columns(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per run, the config keys whose values differ between the runs (an optimizer.lr swept with
    -m, say), λ, seed and regularizer aside (summary.csv has them), and its optimizer, lr and
    batch size."""
    flat = [{k: _plain(v) for k, v in r.flat_config.items()} for r in runs]
    keys = sorted(
        {
            k
            for f in flat
            for k in f
            if trains(k)
            and not k.endswith("_target_")
            and k not in ("seed", "regularizer.strength", "data.seed")
            and len({repr(g.get(k)) for g in flat}) > 1
        }
    )
    identity = ("optimizer", "lr", "batch_size")
    return [
        {k: _plain(r.record.get(k)) for k in identity} | {k: f.get(k) for k in keys if k not in identity}
        for r, f in zip(runs, flat)
    ]


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
    import re

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
        table = wandb.Table(
            columns=columns, data=[[row.get(c) for c in columns] for row in table_rows], allow_mixed_types=True
        )
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


class ReportOnMultirunEnd(Callback):
    """Hydra callback: when a multirun ends, report its sweep directory and print the summary;
    with a W&B logger, the report is also a W&B run of the sweep's group (`log_report_to_wandb`).
    `formats`, `dpi` and `band` are the figures' (set them as hydra.callbacks.report.formats=...)."""

    def __init__(self, formats: Sequence[str] = ("png",), dpi: int | None = None, band: str = "ci") -> None:
        self.formats, self.dpi, self.band = list(formats), dpi, band

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        directory = Path(config.hydra.sweep.dir)
        try:
            node = OmegaConf.select(config, "logger.wandb", default=None)
            settings = None if node is None else cast(dict, OmegaConf.to_container(node, resolve=True))
            report(
                directory,
                formats=self.formats,
                dpi=self.dpi,
                band=self.band,
                wandb=False if settings is None else {k: v for k, v in settings.items() if k in WANDB_KEYS},
            )
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
        except Exception as e:  # the runs are safe on disk; the report can be made again
            print(f"error: the report failed ({one_line(e)}); retry: reglab-report {directory}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    from reglab import figures

    parser = argparse.ArgumentParser(
        prog="reglab-report",
        description="Summarise a run or sweep directory: summary.csv, summary.md and figures, written into it.",
    )
    parser.add_argument("directory", type=Path, help="a run directory, or a sweep directory holding runs")
    parser.add_argument("--quiet", action="store_true", help="do not print the summary table")
    parser.add_argument(
        "--format",
        nargs="+",
        choices=figures.FORMATS,
        default=["png"],
        metavar="FORMAT",
        help="figure formats, one or more of png pdf svg (default: png); PDF and SVG keep text as text",
    )
    parser.add_argument("--dpi", type=int, default=None, help=f"resolution of PNGs (default: {figures.DPI}; 300 for print)")  # fmt: skip
    parser.add_argument(
        "--band",
        choices=figures.BANDS,
        default="ci",
        help="what error bars and bands over seeds show: ci = 95%% CI of the mean (Student t, default), minmax = range",
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help='also log the report as a W&B run of job type "report" (settings from the runs\' logger.wandb)',
    )
    args = parser.parse_args(argv)
    try:
        figures.Output(tuple(args.format), figures.DPI if args.dpi is None else args.dpi, args.band)
    except ValueError as e:
        parser.error(str(e))
    if not args.directory.is_dir():
        what = "is not a directory" if args.directory.exists() else "does not exist"
        print(f"error: {args.directory} {what}", file=sys.stderr)
        sys.exit(EXIT_BAD_PATH)
    try:
        report(
            args.directory,
            print_table=not args.quiet,
            formats=args.format,
            dpi=args.dpi,
            band=args.band,
            wandb=args.wandb,
        )
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_NO_RUNS)


if __name__ == "__main__":
    main()
