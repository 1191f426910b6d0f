"""The report of a run or a sweep: `reglab-report DIR` or `python -m reglab.report DIR`.

Reads only what runs wrote (`reglab.rundir`), never W&B, and writes summary.csv, summary.md and
the figures of `reglab.figures` into DIR: docs/report.md says what each holds. Which metric a table
shows is `reglab.tables.METRICS`. With W&B, the report is also a W&B run (`reglab.report_wandb`).
Exit codes: 0 report written, 2 no finished run in DIR, DIR does not exist, or a bad option.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
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
from reglab.errors import EXIT_BAD_INPUT, one_line
from reglab.report_wandb import copy_to_wandb, log_images_to_wandb, settings_of
from reglab.runs import (
    FINISHED,
    Found,
    ReportError,
    Run,
    best_strengths,
    find_runs,
    mean_ci,
    read_run,
    seed_groups,
    strength_cell,
    studies,
    study_keys,
    values,
    warn,
)
from reglab.tables import header, markdown_table, plain, shown_in

OPTION_KEYS = ("format", "dpi", "band")  # the keys of the config's `report` node (configs/train.yaml)
HELP = {
    "reglab-report": "Summarise a run or sweep directory: summary.csv, summary.md and figures, written into it.",
    "--format": "figure formats, one or more of png pdf svg (default: png); PDF and SVG keep text as text",
    "--band": "what error bars and bands over seeds show: "
              "ci = 95%% CI of the mean (Student t, default), minmax = range",
    "--wandb": 'also log the report as a W&B run of job type "report" (settings from the runs\' logger.wandb)',
}  # fmt: skip


def report_options(node: Any) -> dict[str, Any]:
    """A config's `report` node (None: the defaults) as the keyword arguments of `report`; a bad value
    is a ValueError naming its key. `figures.Output` checks the values (so this imports matplotlib)."""
    from reglab import figures

    given = cast(dict, OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {}))
    unknown = [str(k) for k in given if k not in OPTION_KEYS]
    if unknown:
        raise ValueError(f"report.{unknown[0]} is not a key of report; choose one of: {', '.join(OPTION_KEYS)}")
    fmt, dpi, band = given.get("format", "png"), given.get("dpi"), given.get("band", "ci")
    formats = list(dict.fromkeys(str(f) for f in (fmt if isinstance(fmt, (list, tuple)) else [fmt])))
    try:
        figures.Output(tuple(formats), figures.DPI if dpi is None else dpi, band)
    except ValueError as e:
        raise ValueError(f"report.{e}") from None
    return {"formats": formats, "dpi": dpi, "band": band}


def metric_columns(task: str, threshold: float, place: str = "report") -> list[tuple[str, str]]:
    """(header, metrics.json key) of the metrics a table in `place` ("report" or "sweep") shows."""
    return [(header(key, task, threshold), key) for key in shown_in(place, task)]


def csv_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """summary.csv: one row per finished run, the metric columns under their metrics.json names."""
    present = [k for k in shown_in("csv") if any(k in run.record["metrics"] for run in runs)]
    keys = study_keys(runs)  # the config keys that tell the studies apart (optimizer.lr, say)
    rows = []
    for run in runs:
        which = {"run": run.name, "dataset": run.dataset, **{key: plain(run.flat_config.get(key)) for key in keys}}
        what = {"task": run.task, "regularizer": run.regularizer, "lambda": run.strength, "seed": run.seed}
        how = {"status": run.status, **{k: run.record.get(k) for k in ("epochs", "best_epoch")}}
        metrics = {k: run.record["metrics"].get(k) for k in present}
        rows.append(which | what | how | metrics | {"wall_time_s": run.record.get("wall_time_s")})
    return rows


def _columns(runs: Sequence[Run], console: bool) -> list[tuple[str, str]]:
    thresholds = {run.sparsity_threshold for run in runs}
    threshold = thresholds.pop() if len(thresholds) == 1 else math.nan  # runs that differ: no number in the header
    return metric_columns(runs[0].task, threshold, "sweep" if console else "report")


def runs_table(runs: Sequence[Run], console: bool = False) -> str:
    """Completed runs, one row each; `console`: only the columns the end of a sweep prints."""
    columns = _columns(runs, console)
    header_row = ["regularizer", "λ", "seed", *(h for h, _ in columns)]
    rows = []
    for r in runs:
        row = [r.regularizer, strength_cell(r.regularizer, r.strength), r.seed, *(r.metric(k) for _, k in columns)]
        rows.append(row if console else [r.name, *row, r.record.get("wall_time_s")])
    return markdown_table(header_row if console else ["run", *header_row, "time (s)"], rows)


def _mean_ci(x: np.ndarray) -> str | float:
    """Mean ± the half-width of its 95% confidence interval over seeds (`runs.mean_ci`); one seed: the mean."""
    mean, half = mean_ci(x)
    return mean if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def aggregate_table(groups: dict[tuple[str, float], list[Run]], console: bool = False) -> tuple[str, list[dict]]:
    """Mean ± 95% CI over seeds per (regularizer, λ); ★ marks each regularizer's best λ (by val score)."""
    runs = [r for group in groups.values() for r in group]
    columns = _columns(runs, console)
    best = best_strengths(groups, f"val/{runs[0].score}")
    rows, records = [], []
    for (reg, lam), group in groups.items():
        star = " ★" if best.get(reg) == lam and sum(r == reg for r, _ in groups) > 1 else ""
        column_values = {k: values(group, k) for _, k in columns}
        rows.append([reg, strength_cell(reg, lam) + star, len(group), *map(_mean_ci, column_values.values())])
        means_of = {k: float(np.nanmean(v)) if np.isfinite(v).any() else None for k, v in column_values.items()}
        records.append({"regularizer": reg, "lambda": lam, "n": len(group)} | means_of)
    return markdown_table(["regularizer", "λ", "n", *(h for h, _ in columns)], rows), records


def failures_table(runs: Sequence[Run]) -> str:
    rows = []
    for r in runs:
        diverged = f"diverged at epoch {r.record.get('diverged_epoch')}"
        detail = diverged if r.status == rundir.DIVERGED else r.record.get("error") or ""
        rows.append([r.name, r.regularizer, strength_cell(r.regularizer, r.strength), r.seed, r.status, detail])
    return markdown_table(["run", "regularizer", "λ", "seed", "status", "detail"], rows)


def counts_line(found: Found) -> str:
    statuses = [r.status for r in found.runs]
    parts = [f"{statuses.count(s)} {s}" for s in FINISHED] + [f"{len(found.incomplete)} incomplete"]
    total = len(statuses) + len(found.incomplete)
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(parts)


def draw_figure(draw: Callable[..., Path | None], groups: dict, path: Path) -> Path | None:
    """`draw(groups, path)`; a figure that fails is reported in one line and the report goes on."""
    try:
        return draw(groups, path)
    except Exception as e:
        warn(f"{path.name} not drawn: {one_line(e, with_type=True)}")
        return None


def write_run_figures(
    run_dir: Path, formats: Sequence[str] = ("png",), dpi: int | None = None, band: str = "ci", log: bool = True
) -> list[Path]:
    """One run's `figures.RUN` into its directory; returns the files written. `log`: the PNGs also go
    to the active W&B run, if any. `band` is accepted for `report_options`' sake: these have none."""
    files = _run_figures(read_run(Path(run_dir), Path(run_dir).name), formats, dpi, band)
    if log:
        log_images_to_wandb([p for p in files if p.suffix == ".png"])
    return files


def _run_figures(run: Run, formats: Sequence[str] = ("png",), dpi: int | None = None, band: str = "ci") -> list[Path]:
    from reglab import figures

    groups = {(run.regularizer, run.lam): [run]}
    with figures.output(formats, dpi, band) as out:
        pngs = [run.path / f"{name}.png" for name in figures.RUN]
        if list(out.formats) == ["png"] and dpi is None and _drawn_since_trained(run, pngs):
            return [f for f in pngs if f.is_file()]
        drawn = [draw_figure(draw, groups, run.path / f"{name}.png") for name, draw in figures.RUN.items()]
        return [f for p in drawn if p is not None for f in out.files(p)]


def _drawn_since_trained(run: Run, files: Sequence[Path]) -> bool:
    """Some of `files` exist, none older than the run's metrics.json and checkpoint (`member_figures`)."""
    sources = [run.path / rundir.METRICS_JSON, rundir.checkpoint(run.path)]
    present = [f for f in files if f.is_file()]
    if not present or not all(p.is_file() for p in sources):
        return False
    return min(f.stat().st_mtime_ns for f in present) >= max(p.stat().st_mtime_ns for p in sources)


_LAYOUTS: dict[Path, dict] = {}  # a stack's directory -> its members' figures' layout (`figures.shared_layout`)


def member_figures(run_dir: Path) -> list[Path]:
    """A member's PNGs for its W&B run (`logger.wandb.figures`): completed 2-D classification runs only. The members
    of a stack (run directories in one directory) share the layout of its first member's figures."""
    from reglab import figures

    run = read_run(Path(run_dir), Path(run_dir).name)
    if run.status != rundir.COMPLETED or run.task == "regression" or len(run.record.get("feature_l1") or []) != 2:
        return []
    with figures.shared_layout(_LAYOUTS.setdefault(Path(run_dir).resolve().parent, {})):
        return _run_figures(run)


def _figure_markdown(files: Sequence[Path]) -> str:
    """A figure in summary.md: the PNG shown, other formats linked."""
    png = next((f for f in files if f.suffix == ".png"), None)
    links = " ".join(f"[{f.suffix[1:]}]({f.name})" for f in files if f is not png)
    return (f"![{png.stem}]({png.name})" if png else f"{files[0].stem}:") + (f" {links}" if links else "")


def _study_section(directory: Path, study: str, runs: list[Run], suffix: str, single: bool, out: Any) -> tuple:
    """(summary.md lines, console lines, mean rows or None without a completed run, figure files) of a study:
    its figures are a run directory's `figures.RUN` and learning curves (`single`), else `figures.SWEEP`."""
    from reglab import figures

    completed = [r for r in runs if r.status == rundir.COMPLETED]
    failed = [r for r in runs if r.status != rundir.COMPLETED]
    heading = f"{study} ({runs[0].task})"
    md, console, means, files = [f"## {heading}", ""], [heading] if suffix else [], None, []
    if completed:
        groups = seed_groups(completed)
        table, means = aggregate_table(groups)
        ci = "Student t; completed runs only; ★ best λ by validation score"
        md += ["### Completed runs", "", runs_table(completed), ""]
        md += [f"### Mean ± 95% confidence interval over seeds ({ci})", "", table, ""]
        console += [runs_table(completed, console=True)]
        if any(len(g) > 1 for g in groups.values()):
            console += ["mean ± 95% CI over seeds (Student t):", aggregate_table(groups, console=True)[0]]
        sweep = {f"{name}{suffix}": draw for name, draw in figures.SWEEP.items()}
        plan = figures.RUN | {"learning_curves": figures.learning_curves} if single else sweep
        paths = [draw_figure(draw, groups, directory / f"{name}.png") for name, draw in plan.items()]
        drawn = [out.files(p) for p in paths if p is not None]
        files = [f for fs in drawn for f in fs]
        md += ["### Figures", f"(error bars and bands: {figures.band_text()})", ""]
        md += [_figure_markdown(fs) for fs in drawn] + [""]
    if failed:
        md += ["### Failed and diverged runs (not averaged in)", "", failures_table(failed), ""]
        console += ["failed or diverged (not averaged in):", failures_table(failed)]
    return md, console, means, files


def figure_suffix(study: str, longest: int = 120) -> str:
    """`_<study>` for a study's figure files; a label longer than `longest` characters (many differing
    config values) is cut and given its hash, so that the name stays under the file system's 255 bytes."""
    label = re.sub(r"[^\w.=-]+", "_", study).strip("_")
    if len(label.encode()) > longest:
        label = f"{label.encode()[:longest].decode(errors='ignore')}_{hashlib.sha1(study.encode()).hexdigest()[:8]}"
    return f"_{label}"


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
    `formats`, `dpi` and `band` are the figures' (`report_options`); `wandb`: `report_wandb.copy_to_wandb`.
    Returns {"runs": summary.csv rows, "aggregate": {study: mean rows}, "incomplete": names, "figures": files}.
    Raises ReportError if `directory` holds no finished run."""
    from reglab import figures

    directory = Path(directory)
    found = find_runs(directory)
    if not found.runs:
        what = f"no finished run ({len(found.incomplete)} incomplete)" if found.incomplete else "no run"
        raise ReportError(f"{what} in {directory} (a run is a directory with .hydra/config.yaml and metrics.json)")
    parts = studies(found.runs)  # never a mean over anything but seeds: one section per study
    if len(parts) > 1:
        tasks = ", ".join(sorted({r.task for r in found.runs}))
        note = f"the runs form {len(parts)} studies ({'; '.join(parts)}; tasks: {tasks})"
        print(f"note: {note}; each is reported separately, its figures named *_<study>.<format>", file=sys.stderr)
    single = len(found.runs) == 1 and found.runs[0].path == directory
    md = [f"# Report: {directory}", "", counts_line(found) + ".", ""]
    console = [f"\n{directory}: {counts_line(found)}"]
    aggregates: dict[str, list[dict]] = {}
    written: list[Path] = []
    with figures.output(formats, dpi, band) as out:
        for study, runs in parts.items():
            suffix = figure_suffix(study) if len(parts) > 1 else ""
            study_md, study_console, means, files = _study_section(directory, study, runs, suffix, single, out)
            md, console, written = md + study_md, console + study_console, written + files
            if means is not None:
                aggregates[study] = means
    if found.incomplete:
        md += ["## Incomplete runs (skipped: no readable metrics.json)", "", *(f"- {n}" for n in found.incomplete), ""]
    rows, buffer = csv_rows(found.runs), io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    rundir.atomic_write_text(directory / rundir.SUMMARY_CSV, buffer.getvalue())
    rundir.atomic_write_text(directory / rundir.SUMMARY_MD, "\n".join(md))
    copy_to_wandb(directory, found.runs, rows, written, wandb, {"formats": list(formats), "band": band})
    if print_table:
        console += [f"report: {directory / 'summary.md'}, {len(written)} figure files\n"]
        print("\n\n".join(console))
    return {"runs": rows, "aggregate": aggregates, "incomplete": found.incomplete, "figures": written}


class ReportOnMultirunEnd(Callback):
    """Hydra callback: when a multirun ends, report its sweep directory with the config's `report` options."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        directory = Path(config.hydra.sweep.dir)
        try:
            options = report_options(config.get("report"))
            settings = settings_of(OmegaConf.select(config, "logger.wandb", default=None))
            report(directory, **options, wandb=False if settings is None else settings)
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
        except Exception as e:  # the runs are safe on disk; the report can be made again
            retry = f"retry: reglab-report {directory}"
            print(f"error: the report failed ({one_line(e, with_type=True)}); {retry}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    from reglab import figures

    parser = argparse.ArgumentParser(prog="reglab-report", description=HELP["reglab-report"])
    add = parser.add_argument
    add("directory", type=Path, help="a run directory, or a sweep directory holding runs")
    add("--quiet", action="store_true", help="do not print the summary table")
    add("--format", nargs="+", choices=figures.FORMATS, default=["png"], metavar="FORMAT", help=HELP["--format"])
    add("--dpi", type=int, default=None, help=f"resolution of PNGs (default: {figures.DPI}; 300 for print)")
    add("--band", choices=figures.BANDS, default="ci", help=HELP["--band"])
    add("--wandb", action="store_true", help=HELP["--wandb"])
    args = parser.parse_args(argv)
    try:
        figures.Output(tuple(args.format), figures.DPI if args.dpi is None else args.dpi, args.band)
    except ValueError as e:
        parser.error(str(e))
    if not args.directory.is_dir():
        what = "is not a directory" if args.directory.exists() else "does not exist"
        print(f"error: {args.directory} {what}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    try:
        report(args.directory, not args.quiet, formats=args.format, dpi=args.dpi, band=args.band, wandb=args.wandb)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
