"""The report of a run or a sweep: `reglab-report DIR` or `python -m reglab.report DIR`.

Reads only what runs wrote (metrics.json, metrics.csv, .hydra/config.yaml, checkpoints/last.ckpt;
see `reglab.rundir`), never W&B, and writes into DIR:

    summary.csv   one row per finished run (completed, failed or diverged), metric names as columns
    summary.md    the runs, the mean ± std over seeds per (regularizer, λ) of completed runs only,
                  the failed and diverged runs apart, the figures
    *.png         the figures of `reglab.figures`

A run is any directory under DIR (DIR included) holding `.hydra/config.yaml`. One without a
readable metrics.json is skipped with a warning and counted as incomplete. Runs of several data
sets are reported per data set; figure names then end in `_<data set>`.

Exit codes: 0 report written, 1 no finished run in DIR, 2 DIR does not exist.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.tables import format_value, markdown_table

EXIT_NO_RUNS, EXIT_BAD_PATH = 1, 2
FINISHED = (rundir.COMPLETED, rundir.FAILED, rundir.DIVERGED)
# Regularizers whose λ is unused: their runs are one baseline, drawn and averaged at λ = 0.
STRENGTH_UNUSED = ("none",)
REGULARIZER_ORDER = ("none", "l1", "prox_l1", "elastic_net", "group_lasso", "l2", "weight_decay")


class ReportError(Exception):
    """Nothing to report: said in one line, never as a traceback."""


@dataclass
class Run:
    """One finished run directory and its metrics.json record."""

    path: Path
    name: str  # relative to the reported directory
    record: dict[str, Any]

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def regularizer(self) -> str:
        return self.record["regularizer"]

    @property
    def strength(self) -> float:
        """λ as recorded."""
        return float(self.record["strength"])

    @property
    def lam(self) -> float:
        """λ for grouping and plotting: 0 where the regularizer does not use it."""
        return 0.0 if self.regularizer in STRENGTH_UNUSED else self.strength

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def dataset(self) -> str:
        return self.record["dataset"]

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def score(self) -> str:
        """The metric a model is judged by: accuracy, or R² for a regression."""
        return "r2" if self.task == "regression" else "acc"

    def metric(self, key: str) -> float:
        value = self.record.get("metrics", {}).get(key)
        return math.nan if value is None else float(value)

    @cached_property
    def config(self) -> DictConfig:
        return OmegaConf.load(self.path / ".hydra" / "config.yaml")  # type: ignore[return-value]

    @property
    def sparsity_threshold(self) -> float:
        return float(self.config.get("sparsity_threshold", math.nan))


@dataclass
class Found:
    runs: list[Run] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def lam_label(lam: float) -> str:
    return "0" if lam == 0 else f"{lam:g}"


def strength_cell(regularizer: str, lam: float) -> str:
    """λ as a table shows it: "—" for a regularizer that does not use it."""
    return "—" if regularizer in STRENGTH_UNUSED else lam_label(lam)


def _regularizer_rank(name: str) -> tuple[int, str]:
    return (REGULARIZER_ORDER.index(name) if name in REGULARIZER_ORDER else len(REGULARIZER_ORDER), name)


def run_order(run: Run) -> tuple:
    return (run.dataset, _regularizer_rank(run.regularizer), run.lam, run.seed, run.name)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def load_run(run_dir: Path, name: str) -> Run:
    """The run in `run_dir`; ValueError (with the reason) if it has no finished metrics.json."""
    try:
        record = rundir.read_metrics_json(run_dir)
    except FileNotFoundError:
        raise ValueError("no metrics.json (still running, or stopped before the end)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"metrics.json is unreadable ({_one_line(e)})") from None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError("metrics.json holds no metrics record")
    if record.get("status") not in FINISHED:
        raise ValueError(f"status {record.get('status')!r} is not one of {', '.join(FINISHED)}")
    missing = [k for k in ("regularizer", "strength", "seed", "dataset", "task") if record.get(k) is None]
    if missing:
        raise ValueError(f"metrics.json lacks {', '.join(missing)}")
    run = Run(run_dir, name, record)
    try:
        run.config  # noqa: B018 (read now, so that a broken config is reported here, in one line)
    except Exception as e:
        raise ValueError(f".hydra/config.yaml is unreadable ({_one_line(e)})") from None
    return run


def find_runs(directory: Path) -> Found:
    """Every run directory under `directory` (itself included), with a warning for each incomplete one."""
    found = Found()
    run_dirs = sorted({p.parent.parent for p in directory.rglob("config.yaml") if p.parent.name == ".hydra"})
    for run_dir in run_dirs:
        name = directory.name if run_dir == directory else str(run_dir.relative_to(directory))
        try:
            found.runs.append(load_run(run_dir, name))
        except ValueError as e:
            warn(f"skipped {name}: {e}")
            found.incomplete.append(name)
    found.runs.sort(key=run_order)
    return found


# Config keys that do not change what is trained: ignored when comparing two runs' configs.
NOT_TRAINING = ("name", "tags", "force", "paths", "logger", "callbacks")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def config_difference(a: Run, b: Run) -> list[str]:
    """The config keys whose values differ between two runs, leaving out NOT_TRAINING."""
    fa, fb = (_flatten(OmegaConf.to_container(r.config, resolve=False)) for r in (a, b))
    keys = {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
    return sorted(k for k in keys if k.split(".")[0] not in NOT_TRAINING)


def seed_groups(runs: Sequence[Run]) -> dict[tuple[str, float], list[Run]]:
    """Completed runs by (regularizer, λ), in report order: the runs a mean over seeds is taken of.

    Runs of a regularizer that ignores λ and differ only in that λ are one experiment: one run
    per seed is kept. Runs with the same (regularizer, λ, seed) that differ in anything else
    (an optimizer.lr sweep, say) are averaged together, with a warning naming the difference.
    """
    groups: dict[tuple[str, float], list[Run]] = {}
    mixed: dict[tuple[str, float, int], set[str]] = {}
    for run in sorted(runs, key=run_order):
        if run.status != rundir.COMPLETED:
            continue
        group = groups.setdefault((run.regularizer, run.lam), [])
        twins = [r for r in group if r.seed == run.seed]
        differences = {k for twin in twins for k in config_difference(twin, run)}
        if twins and run.regularizer in STRENGTH_UNUSED and differences <= {"regularizer.strength"}:
            continue
        if twins:
            mixed.setdefault((run.regularizer, run.lam, run.seed), set()).update(differences)
        group.append(run)
    for (reg, lam, seed), keys in mixed.items():
        n = sum(r.seed == seed for r in groups[(reg, lam)])
        how = f"differ in {', '.join(sorted(keys))}" if keys else "have the same config (one run copied twice?)"
        warn(f"{n} runs of {reg} at λ={lam_label(lam)}, seed {seed} {how}; they are averaged together like seeds")
    return groups


def values(runs: Sequence[Run], key: str) -> np.ndarray:
    return np.array([run.metric(key) for run in runs], dtype=float)


def best_strengths(groups: dict[tuple[str, float], list[Run]], key: str) -> dict[str, float]:
    """Per regularizer that uses λ, the λ of the highest mean `key` (the "sweet spot")."""
    best: dict[str, tuple[float, float]] = {}
    for (reg, lam), runs in groups.items():
        mean = float(np.nanmean(values(runs, key))) if np.isfinite(values(runs, key)).any() else -math.inf
        if reg not in STRENGTH_UNUSED and (reg not in best or mean > best[reg][1]):
            best[reg] = (lam, mean)
    return {reg: lam for reg, (lam, _) in best.items()}


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
    rows = []
    for run in runs:
        row = {
            "run": run.name,
            "dataset": run.dataset,
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


def _mean_std(x: np.ndarray) -> str:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return "nan"
    if len(x) == 1:
        return format_value(float(x[0]))
    return f"{float(x.mean()):.4g} ± {float(x.std(ddof=1)):.2g}"


def aggregate_table(groups: dict[tuple[str, float], list[Run]], console: bool = False) -> tuple[str, list[dict]]:
    """Mean ± std over seeds per (regularizer, λ); ★ marks each regularizer's best λ (by val score)."""
    runs = [r for group in groups.values() for r in group]
    columns = metric_columns(runs[0].task, _threshold(runs))
    if console:
        columns = [(h, k) for h, k in columns if k in CONSOLE_KEYS]
    best = best_strengths(groups, f"val/{runs[0].score}")
    rows, records = [], []
    for (reg, lam), group in groups.items():
        star = " ★" if best.get(reg) == lam and sum(r == reg for r, _ in groups) > 1 else ""
        rows.append(
            [reg, strength_cell(reg, lam) + star, len(group), *(_mean_std(values(group, k)) for _, k in columns)]
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


def by_dataset(runs: Sequence[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.dataset, []).append(run)
    return groups


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
        warn(f"{path.name} not drawn: {_one_line(e)}")
        return None


def write_run_figures(run_dir: Path) -> None:
    """decision_boundary.png (2-D classification only) and weight_histogram.png of one run, into its directory."""
    from reglab import figures

    run = load_run(Path(run_dir), Path(run_dir).name)
    groups = {(run.regularizer, run.lam): [run]}
    written = [draw_figure(draw, groups, run.path / f"{name}.png") for name, draw in figures.RUN.items()]
    log_images_to_wandb([p for p in written if p is not None])


def report(directory: Path, print_table: bool = True) -> dict[str, Any]:
    """Write summary.csv, summary.md and the figures into `directory`; print the summary if asked.

    Returns {"runs": summary.csv rows, "aggregate": {dataset: mean rows}, "incomplete": names,
    "figures": paths}. Raises ReportError if `directory` holds no finished run.
    """
    from reglab import figures

    directory = Path(directory)
    found = find_runs(directory)
    if not found.runs:
        what = f"no finished run ({len(found.incomplete)} incomplete)" if found.incomplete else "no run"
        raise ReportError(f"{what} in {directory} (a run is a directory with .hydra/config.yaml and metrics.json)")
    datasets = by_dataset(found.runs)
    tasks = sorted({r.task for r in found.runs})
    if len(datasets) > 1:
        print(
            f"note: the runs are on {len(datasets)} data sets ({', '.join(datasets)}, tasks: {', '.join(tasks)}); "
            "each is reported separately, its figures named *_<data set>.png",
            file=sys.stderr,
        )
    single = len(found.runs) == 1 and found.runs[0].path == directory

    md = [f"# Report: {directory}", "", counts_line(found) + ".", ""]
    console = [f"\n{directory}: {counts_line(found)}"]
    aggregates: dict[str, list[dict]] = {}
    written: list[Path] = []
    for dataset, runs in datasets.items():
        completed = [r for r in runs if r.status == rundir.COMPLETED]
        failed = [r for r in runs if r.status != rundir.COMPLETED]
        suffix = f"_{dataset}" if len(datasets) > 1 else ""
        heading = f"## {dataset} ({runs[0].task})"
        md += [heading, ""]
        console += [heading[3:]] if len(datasets) > 1 else []
        if completed:
            groups = seed_groups(completed)
            table, aggregates[dataset] = aggregate_table(groups)
            md += ["### Completed runs", "", runs_table(completed), ""]
            md += ["### Mean ± std over seeds (completed runs only; ★ best λ by validation score)", "", table, ""]
            console += [runs_table(completed, console=True)]
            if any(len(g) > 1 for g in groups.values()):
                console += ["mean ± std over seeds:", aggregate_table(groups, console=True)[0]]
            if single:  # a run directory: the figures write_run_figures makes, and its learning curves
                plan = figures.RUN | {"learning_curves": figures.learning_curves}
            else:
                plan = {f"{name}{suffix}": draw for name, draw in figures.SWEEP.items()}
            drawn = [draw_figure(draw, groups, directory / f"{name}.png") for name, draw in plan.items()]
            drawn_here = [p for p in drawn if p is not None]
            written += drawn_here
            md += ["### Figures", ""] + [f"![{p.stem}]({p.name})" for p in drawn_here] + [""]
        if failed:
            md += ["### Failed and diverged runs (not averaged in)", "", failures_table(failed), ""]
            console += ["failed or diverged (not averaged in):", failures_table(failed)]
    if found.incomplete:
        md += ["## Incomplete runs (skipped: no readable metrics.json)", ""] + [f"- {n}" for n in found.incomplete]
        md += [""]

    rows = csv_rows(found.runs)
    rundir.atomic_write_text(directory / "summary.csv", _csv_text(rows))
    rundir.atomic_write_text(directory / "summary.md", "\n".join(md))
    log_images_to_wandb(written)
    if print_table:
        console += [f"report: {directory / 'summary.md'}, {len(written)} figures\n"]
        print("\n\n".join(console))
    return {"runs": rows, "aggregate": aggregates, "incomplete": found.incomplete, "figures": written}


class ReportOnMultirunEnd(Callback):
    """Hydra callback: when a multirun ends, report its sweep directory and print the summary."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        directory = Path(config.hydra.sweep.dir)
        try:
            wandb_config = (config.get("logger") or {}).get("wandb")
            if wandb_config is None:
                report(directory)
                return
            # The sweep's figures go to W&B as one more run of its group, named "report".
            from hydra.utils import instantiate

            logger = instantiate(wandb_config, name="report", save_dir=str(directory))
            try:
                report(directory)
            finally:
                logger.experiment.finish()
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
        except Exception as e:  # the runs are safe on disk; the report can be made again
            print(f"error: the report failed ({_one_line(e)}); retry: reglab-report {directory}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="reglab-report",
        description="Summarise a run or sweep directory: summary.csv, summary.md and figures, written into it.",
    )
    parser.add_argument("directory", type=Path, help="a run directory, or a sweep directory holding runs")
    parser.add_argument("--quiet", action="store_true", help="do not print the summary table")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        what = "is not a directory" if args.directory.exists() else "does not exist"
        print(f"error: {args.directory} {what}", file=sys.stderr)
        sys.exit(EXIT_BAD_PATH)
    try:
        report(args.directory, print_table=not args.quiet)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_NO_RUNS)


if __name__ == "__main__":
    main()
