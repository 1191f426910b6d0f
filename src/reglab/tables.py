"""What reglab shows of a run, and how: the `METRICS` table, the one number formatter, and plain-text
tables. Imports nothing heavy (no torch, numpy or matplotlib): the console and the report's light paths use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

# Where a metric can be shown, as `Metric.shown` names them.
PLACES = {
    "console": "the table `reglab-train` prints after a run",
    "csv": "summary.csv of the report: a column per metric",
    "report": "the report's tables of runs and of means over seeds (summary.md)",
    "sweep": "the tables the report prints at the end of a sweep",
    "bar": "the progress bar while training (means over the members)",
    "wandb": "a member's W&B summary: its best value (`Metric.best`) beside the last",
}


class Metric(NamedTuple):
    header: str  # its column in the report's tables (`header` words the task-aware ones)
    shown: str  # the PLACES it is shown in, separated by spaces
    best: str | None = None  # "max" or "min": the best value a W&B summary keeps ("wandb")


def score_key(task: str) -> str:
    """The metric a run is judged by (its best epoch, a sweep's optimized value, the CV's λ, a W&B
    summary's best): validation accuracy, or R² for a regression. Higher is better for both."""
    return "val/r2" if task == "regression" else "val/acc"


# Every metric that some output shows, in the order every table shows them. An accuracy is shown for
# a classification only, an R² for a regression only (`shown_in(place, task)`).
METRICS = {
    "train/acc":          Metric("train acc",  "console csv report sweep bar wandb", "max"),
    "val/acc":            Metric("val acc",    "console csv report sweep bar wandb", "max"),
    "test/acc":           Metric("test acc",   "console csv report"),
    "train/r2":           Metric("train R²",   "csv report sweep wandb", "max"),
    "val/r2":             Metric("val R²",     "console csv report sweep wandb", "max"),
    "test/r2":            Metric("test R²",    "console csv report"),
    "val/gap":            Metric("gap",        "console csv report sweep"),
    "test/gap":           Metric("test gap",   "csv"),
    "train/loss":         Metric("train loss", "csv wandb", "min"),
    "val/loss":           Metric("val loss",   "csv bar wandb", "min"),
    "test/loss":          Metric("test loss",  "csv"),
    "train/penalty":      Metric("penalty",    "csv"),
    "weights/zero_frac":  Metric("w=0",        "console csv report sweep"),
    "weights/small_frac": Metric("small frac", "console csv report sweep"),
    "weights/l1":         Metric("L1",         "console csv report sweep"),
    "weights/l2":         Metric("L2",         "csv report"),
    "weights/dead_units": Metric("dead units", "csv report"),
}  # fmt: skip


def shown_in(place: str, task: str | None = None) -> list[str]:
    """The metric keys shown in `place` (one of PLACES), in table order; with `task`, only those of that task."""
    if place not in PLACES:
        raise ValueError(f"{place!r} is not a place metrics are shown in; choose one of: {', '.join(PLACES)}")
    keys = [key for key, metric in METRICS.items() if place in metric.shown.split()]
    if task is None:
        return keys
    other = "/acc" if task == "regression" else "/r2"  # no accuracy for a regression, no R² for a classification
    return [key for key in keys if not key.endswith(other)]


def header(key: str, task: str, threshold: float = math.nan) -> str:
    """Metric `key`'s column header for runs of `task` whose `sparsity_threshold` is `threshold` (NaN: they differ)."""
    if key == "val/gap" and task == "regression":
        return "gap (val−train loss)"  # a regression's gap is a loss difference, not an accuracy one
    if key == "weights/small_frac" and math.isfinite(threshold):
        return f"abs(w)<{format_number(threshold)}"
    return METRICS[key].header


def format_number(value: Any, style: str = "plain") -> str:
    """A number as reglab writes it; anything else as `str(value)`.

    - "plain": `f"{v:g}"` (0.001, 1e-05): config values, λ in labels, job names;
    - "table": 4 significant digits, `1.000e-05` outside 1e-3 ≤ |v| < 1e5, "nan", and "" for None;
    - "name": as short as can be (1e-3, 2.5e-4, 0.1, 1e+04 as 1e4): W&B run names.
    """
    if style == "table":
        if value is None:
            return ""
        if isinstance(value, float) and not math.isnan(value):
            return f"{value:.4g}" if value == 0 or 1e-3 <= abs(value) < 1e5 else f"{value:.3e}"
    elif style == "name":
        if isinstance(value, float) and math.isfinite(value) and value != 0 and not 1e-2 <= abs(value) < 1e4:
            short = f"{value:.3g}" if "e" in f"{value:.3g}" else f"{value:.2e}"
            mantissa, exponent = short.split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    elif style != "plain":
        raise ValueError(f"style={style!r} must be plain, table or name")
    return f"{value:g}" if isinstance(value, float) else str(value)


def plain(value: Any) -> Any:
    """A value as a CSV or W&B table cell holds it: None, a bool, number or string as is, anything else as text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table, columns padded so it also reads well in a terminal."""
    cells = [list(header)] + [[format_number(v, "table") for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
