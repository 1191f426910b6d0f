"""The report's figures, drawn from run directories only (metrics.json, metrics.csv, checkpoints).

Every function takes `groups` (completed runs by (regularizer, λ), from `results.seed_groups`)
and the path to write (its suffix is replaced by each output format); it returns the path of the
first format written, or None where the figure does not apply (a 10-D data set has no decision
boundary). Ready for a paper: `output(formats=("png", "pdf"), dpi=300)` writes every figure in
each format, PDF and SVG with their text as text (TrueType fonts, not paths).

A regularizer has the same colour, marker, line style and hatching in every figure, so that a
figure printed in grayscale still tells them apart, and its human name ("Elastic net") in every
legend. Over seeds, a point is the mean and its band or error bar the 95% confidence interval of
the mean (Student t, `results.mean_ci`; `band="minmax"`: the smallest and largest seed), with the
number of seeds n shown. λ is on a log axis with λ = 0 drawn at the left, a tenth of the smallest
λ > 0; where no regularizer has two λ (`l1_vs_none`: none and l1 at one λ each) a figure against
λ is a point chart instead, one column per (regularizer, λ), the seeds drawn as dots.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zlib import crc32

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgb, to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator  # noqa: E402

from reglab import rundir  # noqa: E402
from reglab.runs import (  # noqa: E402
    STRENGTH_UNUSED,
    Run,
    best_strengths,
    lam_label,
    load_model,
    load_splits,
    mean_ci,
    values,
    warn,
)

Groups = dict[tuple[str, float], list[Run]]
DPI = 100
FORMATS = ("png", "pdf", "svg")
BANDS = ("ci", "minmax")
COLORS = {
    "none": "#555555",
    "l1": "tab:red",
    "prox_l1": "tab:orange",
    "elastic_net": "tab:purple",
    "group_lasso": "tab:green",
    "l2": "tab:blue",
    "weight_decay": "tab:cyan",
}
# What a figure calls each regularizer (tables keep the config's names).
LABELS = {
    "none": "None",
    "l1": "L1",
    "l2": "L2",
    "elastic_net": "Elastic net",
    "weight_decay": "Weight decay (decoupled)",
    "prox_l1": "Proximal L1",
    "group_lasso": "Group lasso",
}
# Shapes, dashes and hatching that tell the regularizers apart without colour.
MARKERS = {"none": "o", "l1": "s", "prox_l1": "D", "elastic_net": "^", "group_lasso": "v", "l2": "P", "weight_decay": "X"}  # fmt: skip
LINESTYLES: dict[str, Any] = {
    "none": "-",
    "l1": (0, (6, 2)),
    "prox_l1": (0, (6, 2, 1, 2)),
    "elastic_net": (0, (1, 1.5)),
    "group_lasso": (0, (8, 2, 1, 2, 1, 2)),
    "l2": (0, (3, 1.5)),
    "weight_decay": (0, (4, 1, 1, 1, 1, 1)),
}
HATCHES = {"none": "", "l1": "///", "prox_l1": "\\\\\\", "elastic_net": "xxx", "group_lasso": "...", "l2": "---", "weight_decay": "+++"}  # fmt: skip
SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "gold", "navy", "teal", "maroon", "lime")
SPARE_MARKERS = ("<", ">", "h", "p", "*", "d", "8", "H")
SPARE_LINESTYLES: tuple[Any, ...] = ((0, (2, 2)), (0, (10, 3)), (0, (3, 3, 1, 3)), (0, (1, 3)))
SPARE_HATCHES = ("||", "oo", "**", "//..")
CLASS_COLORS = ("#2166ac", "#b2182b", "#1b9e77", "#7570b3", "#e6ab02", "#66a61e", "#e7298a", "#a6761d")
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# PDF and SVG keep their text as text: TrueType fonts (Type 42), not Type 3 glyph procedures or paths.
VECTOR_TEXT: Any = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
METADATA: dict[str, dict[str, Any]] = {
    "png": {},
    "pdf": {"CreationDate": None},
    "svg": {"Date": None},
}  # reproducible files


def _pick(table: dict[str, Any], spare: Sequence[Any], regularizer: str) -> Any:
    return table[regularizer] if regularizer in table else spare[crc32(regularizer.encode()) % len(spare)]


def color(regularizer: str) -> str:
    """The regularizer's colour, the same in every figure (a name not in COLORS gets a fixed spare)."""
    return _pick(COLORS, SPARE_COLORS, regularizer)


def marker(regularizer: str) -> str:
    return _pick(MARKERS, SPARE_MARKERS, regularizer)


def linestyle(regularizer: str) -> Any:
    return _pick(LINESTYLES, SPARE_LINESTYLES, regularizer)


def hatch(regularizer: str) -> str:
    return _pick(HATCHES, SPARE_HATCHES, regularizer)


def label(regularizer: str) -> str:
    """The regularizer's name in a figure: "Elastic net" for `elastic_net`; an unknown name as it is."""
    return LABELS.get(regularizer, regularizer)


def _darker(c: Any, amount: float = 0.45) -> tuple[float, float, float]:
    r, g, b = to_rgb(c)
    return (r * (1 - amount), g * (1 - amount), b * (1 - amount))


# Output: formats, resolution, band -----------------------------------------------------------
@dataclass(frozen=True)
class Output:
    """How the figures are written: `formats` (png, pdf, svg; each figure in every one), `dpi` of
    the raster parts, and the `band` over seeds: "ci" (95% CI of the mean) or "minmax"."""

    formats: tuple[str, ...] = ("png",)
    dpi: int = DPI
    band: str = "ci"

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if not self.formats or unknown:
            raise ValueError(f"figure format {unknown or self.formats} is not one of {', '.join(FORMATS)}")
        if not (isinstance(self.dpi, int) and 10 <= self.dpi <= 2400):
            raise ValueError(f"dpi={self.dpi!r} must be an integer from 10 to 2400")
        if self.band not in BANDS:
            raise ValueError(f"band={self.band!r} must be one of {', '.join(BANDS)}")

    def files(self, path: Path) -> list[Path]:
        """The files a figure drawn to `path` is written to, one per format."""
        return [path.with_suffix(f".{f}") for f in self.formats]


_output = Output()


@contextmanager
def output(formats: Sequence[str] = ("png",), dpi: int | None = None, band: str = "ci") -> Iterator[Output]:
    """Draw the figures inside the block in these formats, at this dpi, with this band over seeds."""
    global _output
    previous, _output = _output, Output(tuple(dict.fromkeys(formats)), DPI if dpi is None else dpi, band)
    try:
        yield _output
    finally:
        _output = previous


def current_output() -> Output:
    return _output


@contextmanager
def _figure(*args: Any, **kwargs: Any) -> Iterator[tuple[plt.Figure, Any]]:
    fig, axes = plt.subplots(*args, layout="constrained", **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write `fig` in every output format (`path` with each suffix); return the first file."""
    files = _output.files(path)
    with plt.rc_context(VECTOR_TEXT):
        for target in files:
            buffer = io.BytesIO()
            fmt = target.suffix[1:]
            fig.savefig(buffer, format=fmt, dpi=_output.dpi, bbox_inches="tight", metadata=METADATA[fmt])
            rundir.atomic_write_bytes(target, buffer.getvalue())
    return files[0]


def _regularizers(groups: Groups) -> list[str]:
    return list(dict.fromkeys(reg for reg, _ in groups))


def _first(groups: Groups) -> Run:
    return next(iter(groups.values()))[0]


def _score_label(run: Run) -> str:
    return "R²" if run.score == "r2" else "accuracy"


# Bands over seeds ------------------------------------------------------------------------------
def band_text(band: str | None = None) -> str:
    band = band or _output.band
    return "95% CI of the mean over seeds (Student t)" if band == "ci" else "min–max over seeds"


def seed_band(x: np.ndarray, band: str | None = None) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values of `x`: the band is the 95% confidence interval of
    the mean, mean ± t(0.975, n − 1)·s/√n (`results.mean_ci`), or with band="minmax" the smallest
    and largest value. One value has no spread: low = high = mean."""
    band = band or _output.band
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    if band == "minmax":
        return float(x.mean()), float(x.min()), float(x.max()), len(x)
    mean, half = mean_ci(x)
    half = 0.0 if math.isnan(half) else half
    return mean, mean - half, mean + half, len(x)


def series(groups: Groups, key: str, band: str | None = None) -> dict[str, np.ndarray]:
    """Per regularizer, rows (λ, mean, low, high, n) of `key` over seeds, by increasing λ (`seed_band`)."""
    rows: dict[str, list[tuple[float, float, float, float, int]]] = {}
    for (reg, lam), runs in groups.items():
        mean, low, high, n = seed_band(values(runs, key), band)
        if np.isfinite(mean):
            rows.setdefault(reg, []).append((lam, mean, low, high, n))
    return {reg: np.array(sorted(r)) for reg, r in rows.items()}


def _n_text(groups: Groups, reg: str) -> str:
    """n = seeds per point of a regularizer: "n=5", or "n=5 (fewer where marked)" when some of its
    points have fewer seeds (each of those is labelled with its own n)."""
    counts = sorted({len(runs) for (r, _), runs in groups.items() if r == reg})
    return f"n={counts[-1]}" if len(counts) == 1 else f"n={counts[-1]} (fewer where marked)"


def _categorical(groups: Groups) -> bool:
    """No regularizer that uses λ has two λ: nothing to draw a line through."""
    return not any(
        len({lam for r, lam in groups if r == reg}) >= 2 for reg in _regularizers(groups) if reg not in STRENGTH_UNUSED
    )


class LambdaAxis:
    """A log λ axis that also shows λ = 0: at a tenth of the smallest λ > 0, labelled "0",
    with a dotted line where the axis breaks."""

    def __init__(self, lams: Sequence[float]) -> None:
        positive = sorted({lam for lam in lams if lam > 0})
        self.positive = positive or [1.0]
        self.has_zero = any(lam == 0 for lam in lams)
        self.zero = self.positive[0] / 10

    def x(self, lam: float) -> float:
        return lam if lam > 0 else self.zero

    def apply(self, ax: Any) -> None:
        lo, hi = self.positive[0], self.positive[-1]
        ax.set_xscale("log")
        ax.set_xlim((self.zero if self.has_zero else lo) / 2, hi * 2)
        if len(self.positive) <= 6:  # few λ: a tick at each, as the user wrote it
            ticks, labels = list(self.positive), [lam_label(lam) for lam in self.positive]
        else:
            decades = 10.0 ** np.arange(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            decades = decades[(decades > self.zero * 3) & (decades <= hi * 2)]
            ticks, labels = list(decades), [f"$10^{{{round(math.log10(d))}}}$" for d in decades]
        if self.has_zero:
            ticks, labels = [self.zero, *ticks], ["0", *labels]
            ax.axvline(math.sqrt(self.zero * lo), color="0.75", lw=1, ls=(0, (1, 3)))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels(labels)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("λ (log scale; λ = 0 at the left)" if self.has_zero else "λ (log scale)")


def _lambda_axis(groups: Groups) -> LambdaAxis:
    return LambdaAxis(sorted({lam for _, lam in groups}))


def _band_style(reg: str) -> dict[str, Any]:
    """A band: the regularizer's colour, light, hatched in its pattern (readable in grayscale)."""
    c = color(reg)
    return {"facecolor": to_rgba(c, 0.12), "edgecolor": to_rgba(c, 0.45), "hatch": hatch(reg), "lw": 0}


def _draw_vs_lambda(
    ax: Any, axis: LambdaAxis, groups: Groups, key: str, ls: Any = None, hollow: bool = False, band: bool = True
) -> None:
    """Mean over seeds per regularizer against λ, its band over seeds around it; a regularizer
    without λ is a horizontal baseline. `ls`: one line style for every regularizer (e.g. dashed
    for training), else each regularizer's own; `hollow`: open markers."""
    for reg, s in series(groups, key).items():
        c, style = color(reg), linestyle(reg) if ls is None else ls
        if reg in STRENGTH_UNUSED:
            ax.axhline(s[0, 1], color=c, ls=style, lw=1.5)
            if band and s[0, 3] > s[0, 2]:
                ax.axhspan(s[0, 2], s[0, 3], **_band_style(reg))
            continue
        x = [axis.x(lam) for lam in s[:, 0]]
        ax.plot(x, s[:, 1], ls=style, marker=marker(reg), ms=5, color=c, mfc="white" if hollow else c, mec=c)
        if band and len(x) > 1:
            ax.fill_between(x, s[:, 2], s[:, 3], **_band_style(reg))
        elif band:
            ax.errorbar(x, s[:, 1], yerr=[s[:, 1] - s[:, 2], s[:, 3] - s[:, 1]], fmt="none", ecolor=c, capsize=3)
        if band:  # a point with fewer seeds than the regularizer's others says its n
            for xi, yi, n in zip(x, s[:, 1], s[:, 4]):
                if n < s[:, 4].max():
                    ax.annotate(f"n={int(n)}", (xi, yi), xytext=(4, -10), textcoords="offset points", fontsize=7, color=_darker(c))  # fmt: skip


def _regularizer_handles(
    groups: Groups, notes: dict[str, str] | None = None, own_linestyle: bool = True
) -> list[Line2D]:
    notes = notes or {}
    handles = []
    for reg in _regularizers(groups):
        name = f"{label(reg)} (no λ: baseline)" if reg in STRENGTH_UNUSED else label(reg) + notes.get(reg, "")
        ls = linestyle(reg) if own_linestyle else "-"
        shape = "" if reg in STRENGTH_UNUSED else marker(reg)
        handles.append(Line2D([], [], color=color(reg), ls=ls, marker=shape, lw=2, label=f"{name}, {_n_text(groups, reg)}"))  # fmt: skip
    return handles


def _draw_points(ax: Any, groups: Groups, specs: Sequence[tuple[str, bool]]) -> None:
    """A point chart: one column per (regularizer, λ), for each (key, filled) of `specs` the mean
    over seeds as the regularizer's marker (open if not `filled`) with its band as an error bar,
    and every seed as a small dot beside it."""
    cats = list(groups)
    width = 0.56 / max(len(specs), 1)
    rng = np.random.default_rng(0)  # the same jitter every time
    for i, (reg, lam) in enumerate(cats):
        c = color(reg)
        for j, (key, filled) in enumerate(specs):
            v = values(groups[(reg, lam)], key)
            mean, low, high, _ = seed_band(v)
            if not math.isfinite(mean):
                continue
            x = i + (j - (len(specs) - 1) / 2) * width * 1.6
            v = v[np.isfinite(v)]
            dots = x + width * 0.55 + rng.uniform(-0.06, 0.06, len(v))
            ax.plot(dots, v, ls="", marker=".", ms=4, color="0.45", zorder=2)
            ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], fmt="none", ecolor=_darker(c, 0.3), elinewidth=1.6, capsize=5, zorder=3)  # fmt: skip
            ax.plot(x, mean, ls="", marker=marker(reg), ms=9, color=c, mfc=c if filled else "white", mec=_darker(c, 0.3), mew=1.5, zorder=4)  # fmt: skip
    ticks = [
        f"{label(reg)}" + ("" if reg in STRENGTH_UNUSED else f"\nλ={lam_label(lam)}") + f"\nn={len(groups[(reg, lam)])}"
        for reg, lam in cats
    ]
    ax.set_xticks(range(len(cats)), ticks)
    ax.set_xlim(-0.7, len(cats) - 0.3)
    ax.grid(alpha=0.3, axis="y")


def _point_legend(specs: Sequence[tuple[str, str, bool]]) -> list[Line2D]:
    """Handles for a point chart: what a filled and an open marker mean, the seeds, the bars."""
    handles = [Line2D([], [], ls="", marker="o", ms=8, color="0.3", mfc="0.3" if filled else "white", label=text) for _, text, filled in specs]  # fmt: skip
    handles += [
        Line2D([], [], ls="", marker=".", ms=6, color="0.45", label="one seed"),
        Line2D([], [], ls="-", color="black", marker="_", ms=10, label=f"error bar: {band_text()}"),
    ]
    return handles


def _log_y(ax: Any) -> None:
    """Log y axis with plain numbers at 1, 2, 5 × 10^k."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _points_width(groups: Groups) -> float:
    return max(5.0, 1.5 * len(groups) + 2.5)


# The sweep's figures -------------------------------------------------------------------------
def accuracy_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Validation (solid) and training (dashed, open markers) score vs λ; a star at each
    regularizer's best λ. A point chart where no regularizer has two λ."""
    run = _first(groups)
    key = run.score
    if _categorical(groups):
        specs = [(f"val/{key}", "validation", True), (f"train/{key}", "training", False)]
        with _figure(figsize=(_points_width(groups), 4.8)) as (fig, ax):
            _draw_points(ax, groups, [(k, filled) for k, _, filled in specs])
            ax.set_ylabel(_score_label(run))
            ax.set_title(f"{run.dataset}: {_score_label(run)} (mean over seeds)")
            ax.legend(handles=_point_legend(specs), fontsize=8, loc="best")
            return _save(fig, path)
    axis = _lambda_axis(groups)
    with _figure(figsize=(8.5, 5.2)) as (fig, ax):
        _draw_vs_lambda(ax, axis, groups, f"val/{key}", ls="-")
        _draw_vs_lambda(ax, axis, groups, f"train/{key}", ls="--", hollow=True, band=False)
        s_val, notes = series(groups, f"val/{key}"), {}
        for reg, lam in best_strengths(groups, f"val/{key}").items():
            if len(s_val.get(reg, [])) < 2:
                continue  # one λ is no sweet spot
            mean = float(s_val[reg][s_val[reg][:, 0] == lam][0, 1])
            ax.plot(axis.x(lam), mean, "*", ms=18, color=color(reg), mec="black", mew=0.8, zorder=5)
            notes[reg] = f" (best λ={lam_label(lam)}: val {mean:.3f})"
        axis.apply(ax)
        ax.set_ylabel(_score_label(run))
        ax.set_title(f"{run.dataset}: {_score_label(run)} vs λ (mean over seeds, band: {band_text()})", fontsize=10)
        ax.grid(alpha=0.3)
        styles = [
            Line2D([], [], color="black", ls="-", marker="o", ms=4, label="validation"),
            Line2D([], [], color="black", ls="--", marker="o", ms=4, mfc="white", label="training"),
            Line2D([], [], color="white", marker="*", ms=14, mfc="0.6", mec="black", label="best λ (max mean val)"),
        ]
        handles = _regularizer_handles(groups, notes, own_linestyle=False) + styles
        ax.legend(handles=handles, fontsize=8, loc="best")
        return _save(fig, path)


def gap_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Generalization gap (train − val accuracy, or val − train loss) vs λ; a point chart where
    no regularizer has two λ."""
    run = _first(groups)
    what = "val loss − train loss" if run.task == "regression" else "train accuracy − val accuracy"
    if _categorical(groups):
        with _figure(figsize=(_points_width(groups), 4.6)) as (fig, ax):
            ax.axhline(0, color="black", lw=0.8)
            _draw_points(ax, groups, [("val/gap", True)])
            ax.set_ylabel(f"generalization gap ({what})")
            ax.set_title(f"{run.dataset}: generalization gap (mean over seeds)")
            ax.legend(handles=_point_legend([("val/gap", "mean", True)]), fontsize=8, loc="best")
            return _save(fig, path)
    axis = _lambda_axis(groups)
    with _figure(figsize=(8.5, 5)) as (fig, ax):
        ax.axhline(0, color="black", lw=0.8)
        _draw_vs_lambda(ax, axis, groups, "val/gap")
        axis.apply(ax)
        ax.set_ylabel(f"generalization gap ({what})")
        ax.set_title(f"{run.dataset}: generalization gap vs λ (mean over seeds, band: {band_text()})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(handles=_regularizer_handles(groups), fontsize=8, loc="best")
        return _save(fig, path)


def sparsity_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Exact zeros, small weights, L1 and L2 norm of the weight matrices vs λ (a point chart per
    panel where no regularizer has two λ)."""
    run = _first(groups)
    threshold = run.sparsity_threshold
    panels = [
        ("weights/zero_frac", "exact zeros", "fraction of weights = 0", False),
        ("weights/small_frac", f"small weights (|w| < {threshold:g})", f"fraction with |w| < {threshold:g}", False),
        ("weights/l1", "L1 norm Σ|w|", "Σ|w| (log scale)", True),
        ("weights/l2", "L2 norm ‖w‖₂", "‖w‖₂ (log scale)", True),
    ]
    categorical = _categorical(groups)
    width = _points_width(groups) * 1.6 if categorical else 11
    with _figure(2, 2, figsize=(width, 8), sharex=True) as (fig, axes):
        axis = None if categorical else _lambda_axis(groups)
        for ax, (key, title, ylabel, log) in zip(axes.flat, panels):
            if axis is None:
                _draw_points(ax, groups, [(key, True)])
            else:
                _draw_vs_lambda(ax, axis, groups, key)
                axis.apply(ax)
                ax.grid(alpha=0.3)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            if log:
                _log_y(ax)
            else:
                ax.set_ylim(-0.03, 1.03)
        for ax in axes[0]:
            ax.set_xlabel("")
        handles = _point_legend([("", "mean", True)]) if axis is None else _regularizer_handles(groups)
        axes[0, 0].legend(handles=handles, fontsize=8, loc="best")
        what = f"error bars: {band_text()}" if axis is None else f"band: {band_text()}"
        against = "" if axis is None else " vs λ"
        fig.suptitle(f"{run.dataset}: sparsity and size of the weights{against} (weight matrices, no biases; {what})")
        return _save(fig, path)


def regularization_path(groups: Groups, path: Path) -> Path | None:
    """First-layer L1 norm of each input feature's weights vs λ, one panel per regularizer (a
    lasso path) for the smallest seed (the seed also draws the data, so the informative features
    can change with it); the informative features coloured, each with its own marker, the noise
    features grey. The baseline without regularization stands in at λ = 0 for a regularizer swept
    without λ = 0."""
    seed = min(r.seed for runs in groups.values() for r in runs)
    of_seed = {key: r for key, runs in groups.items() for r in runs if r.seed == seed and r.record.get("feature_l1")}
    baseline = next((r for (reg, _), r in of_seed.items() if reg in STRENGTH_UNUSED), None)
    paths: dict[str, list[tuple[float, np.ndarray]]] = {}
    for (reg, lam), r in of_seed.items():
        if reg not in STRENGTH_UNUSED:
            paths.setdefault(reg, []).append((lam, np.array(r.record["feature_l1"], dtype=float)))
    for points in paths.values():
        if baseline is not None and not any(lam == 0 for lam, _ in points):
            points.insert(0, (0.0, np.array(baseline.record["feature_l1"], dtype=float)))
    paths = {reg: points for reg, points in paths.items() if len(points) >= 2}
    if not paths:
        return None
    run = next(iter(of_seed.values()))
    support = set(run.record.get("support") or [])
    n_features = len(paths[next(iter(paths))][0][1])
    axis = LambdaAxis([lam for points in paths.values() for lam, _ in points])
    ncols = min(3, len(paths))
    nrows = math.ceil(len(paths) / ncols)
    with _figure(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False, sharey=True) as (fig, axes):
        for ax in axes.flat[len(paths) :]:
            ax.axis("off")
        palette = plt.get_cmap("tab10" if len(support or range(n_features)) <= 10 else "viridis")
        for ax, (reg, points) in zip(axes.flat, paths.items()):
            x = [axis.x(lam) for lam, _ in points]
            norms = np.array([n for _, n in points])
            coloured = sorted(support) if support else list(range(n_features))
            for j in range(n_features):
                if j in coloured:
                    i = coloured.index(j)
                    c = palette(i % 10 if len(coloured) <= 10 else i / max(len(coloured) - 1, 1))
                    name = f"x{j}" + (" (informative)" if support else "") if len(coloured) <= 10 else None
                    shape = CLASS_MARKERS[i % len(CLASS_MARKERS)]
                    ax.plot(x, norms[:, j], "-", marker=shape, ms=4, lw=2, color=c, label=name, zorder=3)
                else:
                    name = "noise features" if j == min(set(range(n_features)) - support) else None
                    ax.plot(x, norms[:, j], ":", lw=0.8, color="0.6", alpha=0.7, label=name)
            axis.apply(ax)
            ax.set_title(label(reg), color=_darker(color(reg), 0.2), fontweight="bold")
            ax.set_ylabel("first-layer ‖W[:, j]‖₁ of input j")
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8, loc="best")
        fig.suptitle(f"{run.dataset}: regularization path of the input features (seed {seed})")
        return _save(fig, path)


def _boundary(ax: Any, run: Run) -> int:
    """Draw the run's decision regions and its training and validation points; return its number of classes."""
    import torch

    model, data = load_model(run), load_splits(run)
    (xt, yt), (xv, yv) = (data.x["train"], data.y["train"]), (data.x["val"], data.y["val"])
    points = np.concatenate([xt, xv])
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    with torch.no_grad():
        logits = model(torch.from_numpy(np.c_[g0.ravel(), g1.ravel()].astype(np.float32)))[0].numpy()
    n_classes = max(data.n_classes, 2)
    classes = ListedColormap(CLASS_COLORS[:n_classes])
    if logits.shape[1] == 1:
        p = (1 / (1 + np.exp(-logits[:, 0]))).reshape(g0.shape)
        ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.45)
        ax.contour(g0, g1, p, levels=[0.5], colors="black", linewidths=1.5)
    else:
        z = logits.argmax(1).reshape(g0.shape)
        ax.contourf(g0, g1, z, levels=np.arange(n_classes + 1) - 0.5, cmap=classes, alpha=0.3)
        ax.contour(g0, g1, z, levels=np.arange(n_classes) + 0.5, colors="black", linewidths=1)
    for k in range(n_classes):  # a class is a colour and a shape; training small, validation large
        c, shape = CLASS_COLORS[k % len(CLASS_COLORS)], CLASS_MARKERS[k % len(CLASS_MARKERS)]
        train, val = yt == k, yv == k
        ax.scatter(xt[train, 0], xt[train, 1], color=c, s=12, marker=shape, edgecolors="white", linewidths=0.4)
        ax.scatter(xv[val, 0], xv[val, 1], color=c, s=28, marker=shape, edgecolors="black", linewidths=0.8)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    return n_classes


def decision_boundaries(groups: Groups, path: Path) -> Path | None:
    """2-D classification only: the decision boundary of each (regularizer, λ), smallest seed,
    rebuilt from checkpoints/last.ckpt; rows are regularizers, columns λ."""
    run = _first(groups)
    if run.task == "regression" or len(run.record.get("feature_l1") or []) != 2:
        return None
    regs, lams = _regularizers(groups), sorted({lam for _, lam in groups})
    # One λ per regularizer (e.g. none vs l1): side by side, not a mostly empty diagonal grid.
    side_by_side = len(groups) == len(regs)
    nrows, ncols = (1, len(regs)) if side_by_side else (len(regs), len(lams))
    size = 5.0 if nrows * ncols == 1 else 4.0 if side_by_side else 3.2
    n_classes = 2
    with _figure(nrows, ncols, figsize=(size * ncols, size * nrows + 0.8), squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for (reg, lam), runs in groups.items():
            ax = axes[0, regs.index(reg)] if side_by_side else axes[regs.index(reg), lams.index(lam)]
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            shown = min(runs, key=lambda r: r.seed)
            score = "R²" if shown.score == "r2" else "acc"
            name = label(reg) if reg in STRENGTH_UNUSED else f"{label(reg)}, λ={lam_label(lam)}"
            ax.set_title(
                f"{name}\nval {score} {shown.metric(f'val/{shown.score}'):.3f} (seed {shown.seed})",
                color=_darker(color(reg), 0.25),
                fontsize=10,
            )
            try:
                n_classes = max(n_classes, _boundary(ax, shown))
            except FileNotFoundError as e:
                warn(f"{shown.name}: no decision boundary ({e.filename} is missing)")
                ax.text(0.5, 0.5, "no checkpoint", ha="center", va="center", transform=ax.transAxes)
        handles = [
            Line2D([], [], ls="", marker=CLASS_MARKERS[k], color=CLASS_COLORS[k], label=f"class {k}")
            for k in range(min(n_classes, len(CLASS_MARKERS)))
        ]
        handles += [
            Line2D([], [], ls="", marker="o", ms=5, color="0.5", mec="white", label="training (small)"),
            Line2D([], [], ls="", marker="o", ms=8, color="0.5", mec="black", label="validation (large, outlined)"),
            Line2D([], [], color="black", lw=1.5, label="decision boundary (p = 0.5)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, frameon=False)
        background = "predicted probability of class 1" if n_classes == 2 else "predicted class"
        title = f"{run.dataset}: decision boundaries (background: {background})"
        fig.suptitle(title if nrows * ncols > 1 else f"{run.dataset}: decision boundary", fontsize=12)
        return _save(fig, path)


def weight_magnitudes(run: Run) -> np.ndarray:
    """|w| of every weight matrix (biases excluded, like the weights/ metrics), from last.ckpt."""
    import torch

    state = torch.load(run.path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    weights = [v.flatten() for k, v in state.items() if k.startswith("model.") and k.endswith(".weight")]
    return torch.cat(weights).abs().double().numpy()


def weight_histograms(groups: Groups, path: Path) -> Path | None:
    """Histogram of |w| per regularizer at its largest λ (smallest seed): log-spaced bins for
    |w| > 0, exact zeros counted apart on the left. L2 shrinks weights; L1 (proximal) zeroes them."""
    chosen: dict[str, tuple[float, Run]] = {}
    for (reg, lam), runs in groups.items():
        if reg not in chosen or lam > chosen[reg][0]:
            chosen[reg] = (lam, min(runs, key=lambda r: r.seed))
    magnitudes: dict[str, tuple[float, np.ndarray]] = {}
    for reg, (lam, run) in chosen.items():
        try:
            magnitudes[reg] = (lam, weight_magnitudes(run))
        except FileNotFoundError as e:
            warn(f"{run.name}: not in the weight histogram ({e.filename} is missing)")
    if not magnitudes:
        return None
    nonzero = np.concatenate([w[w > 0] for _, w in magnitudes.values()])
    lo = math.floor(math.log10(max(nonzero.min(), 1e-12))) if len(nonzero) else -6
    hi = math.ceil(math.log10(nonzero.max())) if len(nonzero) else 0
    bins = np.logspace(lo, max(hi, lo + 1), 12 * (max(hi, lo + 1) - lo) + 1)
    run = _first(groups)
    with _figure(1, 2, figsize=(11, 5), sharey=True, gridspec_kw={"width_ratios": [1, 5]}) as (fig, (az, ah)):
        for i, (reg, (lam, w)) in enumerate(magnitudes.items()):
            c = color(reg)
            zeros = int((w == 0).sum())
            az.bar(i, zeros, facecolor=to_rgba(c, 0.6), edgecolor=_darker(c, 0.3), hatch=hatch(reg), width=0.7)
            az.annotate(
                f"{zeros}", (i, max(zeros, 1)), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8
            )
            name = label(reg) if reg in STRENGTH_UNUSED else f"{label(reg)}, λ={lam_label(lam)}"
            ah.hist(
                w[w > 0],
                bins=bins,
                histtype="step",
                lw=2,
                ls=linestyle(reg),
                color=c,
                label=f"{name} ({zeros} exact zeros, {zeros / len(w):.2%})",
            )
        az.set_yscale("log")
        az.set_ylim(bottom=0.8)
        az.set_xticks(range(len(magnitudes)), [label(reg) for reg in magnitudes], rotation=45, ha="right")
        az.set_title("w = 0 exactly")
        az.set_ylabel("number of weights (log scale)")
        ah.set_xscale("log")
        threshold = run.sparsity_threshold
        if math.isfinite(threshold) and threshold > 0:
            ah.axvline(threshold, color="0.3", ls=(0, (1, 2)), lw=1, label=f'|w| = {threshold:g} ("small" below)')
        ah.set_xlabel("|w| (log-spaced bins)")
        ah.set_title("|w| > 0")
        ah.legend(fontsize=8, loc="upper left")
        ah.grid(alpha=0.3)
        which = "largest λ of each regularizer" if len(groups) > 1 else f"seed {run.seed}"
        fig.suptitle(f"{run.dataset}: weight magnitudes ({which}; weight matrices, no biases)")
        return _save(fig, path)


def learning_curves(groups: Groups, path: Path) -> Path | None:
    """Training (dashed) and validation (solid) data loss per epoch, from metrics.csv: per
    regularizer its best λ (by mean validation score, plain line) and its largest λ (darker, with
    markers), smallest seed."""
    run = _first(groups)
    best = best_strengths(groups, f"val/{run.score}")
    picks: dict[str, list[tuple[str, Run]]] = {}
    for reg in _regularizers(groups):
        lams = sorted(lam for r, lam in groups if r == reg)
        notes = {lam: "" for lam in lams[-1:]}
        if len(lams) > 1:
            notes = {best[reg]: " (best)"} | {lams[-1]: " (best, largest)" if best[reg] == lams[-1] else " (largest)"}
        for lam, note in notes.items():
            shown = min(groups[(reg, lam)], key=lambda r: r.seed)
            text = "" if reg in STRENGTH_UNUSED else f"λ={lam_label(lam)}{note}"
            if (shown.path / "metrics.csv").is_file():
                picks.setdefault(reg, []).append((text, shown))
            else:
                warn(f"{shown.name}: not in the learning curves (no metrics.csv)")
    if not picks:
        return None
    ncols = min(4, len(picks))
    nrows = math.ceil(len(picks) / ncols)
    with _figure(nrows, ncols, figsize=(4.8 * ncols, 3.8 * nrows), squeeze=False, sharey=True) as (fig, axes):
        for ax in axes.flat[len(picks) :]:
            ax.axis("off")
        for ax, (reg, shown_runs) in zip(axes.flat, picks.items()):
            for i, (text, shown) in enumerate(shown_runs):
                rows = rundir.read_metrics_csv(shown.path)
                epochs = [r["epoch"] + 1 for r in rows]
                c = color(reg) if i == 0 else _darker(color(reg))
                style = {"marker": marker(reg), "ms": 4, "markevery": max(1, len(rows) // 8)} if i else {}
                ax.plot(epochs, [r.get("val/loss", math.nan) for r in rows], "-", color=c, lw=1.8, label=f"val {text}", **style)  # fmt: skip
                ax.plot(epochs, [r.get("train/loss", math.nan) for r in rows], "--", color=c, lw=1.4, label=f"train {text}", **style)  # fmt: skip
            ax.set_title(label(reg), color=_darker(color(reg), 0.2), fontweight="bold")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        for row in axes:
            row[0].set_ylabel("data loss (no penalty)")
        fig.suptitle(f"{run.dataset}: learning curves\n(solid: validation, dashed: training; smallest seed)")
        return _save(fig, path)


# The figures of a sweep, by file name (without suffix), in the order summary.md shows them.
SWEEP = {
    "accuracy_vs_lambda": accuracy_vs_lambda,
    "gap_vs_lambda": gap_vs_lambda,
    "sparsity_vs_lambda": sparsity_vs_lambda,
    "regularization_path": regularization_path,
    "decision_boundaries": decision_boundaries,
    "weight_histograms": weight_histograms,
    "learning_curves": learning_curves,
}

# The figures of one run directory (`report.write_run_figures`).
RUN = {"decision_boundary": decision_boundaries, "weight_histogram": weight_histograms}
