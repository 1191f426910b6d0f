"""How every figure looks and is written: each regularizer's look, the output, the bands over seeds, the λ axis
and the primitives `reglab.figures.plots` draws with; docs/report.md says what a reader sees.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from zlib import crc32

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgb, to_rgba
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from reglab import rundir
from reglab.runs import STRENGTH_UNUSED, Run, mean_ci, values
from reglab.tables import format_number

matplotlib.use("Agg")  # files only, never a window (pyplot switches while no figure is open)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # at INFO, a screen per PDF under Hydra's job logging

Groups = dict[tuple[str, float], list[Run]]
DPI = 100
FORMATS = ("png", "pdf", "svg")
BANDS = ("ci", "minmax")


class Style(NamedTuple):
    """A regularizer's name in figures, colour, and the marker, dashes and hatching that tell it apart in grayscale."""

    label: str
    color: str
    marker: str
    linestyle: Any
    hatch: str


STYLES = {
    "none":         Style("None",                     "#555555",    "o", "-",                     ""),
    "l1":           Style("L1",                       "tab:red",    "s", (0, (6, 2)),             "///"),
    "prox_l1":      Style("Proximal L1",              "tab:orange", "D", (0, (6, 2, 1, 2)),       "\\\\\\"),
    "elastic_net":  Style("Elastic net",              "tab:purple", "^", (0, (1, 1.5)),           "xxx"),
    "group_lasso":  Style("Group lasso",              "tab:green",  "v", (0, (8, 2, 1, 2, 1, 2)), "..."),
    "l2":           Style("L2",                       "tab:blue",   "P", (0, (3, 1.5)),           "---"),
    "weight_decay": Style("Weight decay (decoupled)", "tab:cyan",   "X", (0, (4, 1, 1, 1, 1, 1)), "+++"),
}  # fmt: skip
MARKERS = {reg: style.marker for reg, style in STYLES.items()}
LINESTYLES = {reg: style.linestyle for reg, style in STYLES.items()}
HATCHES = {reg: style.hatch for reg, style in STYLES.items()}
SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "gold", "navy", "teal", "maroon", "lime")
SPARE_MARKERS = ("<", ">", "h", "p", "*", "d", "8", "H")
SPARE_LINESTYLES: tuple[Any, ...] = ((0, (2, 2)), (0, (10, 3)), (0, (3, 3, 1, 3)), (0, (1, 3)))
SPARE_HATCHES = ("||", "oo", "**", "//..")
# PDF and SVG keep their text as text: TrueType fonts (Type 42), not Type 3 glyph procedures or paths.
VECTOR_TEXT: Any = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
# PNGs compressed fast (zlib level 1, not PIL's 6): a run's two PNGs encode in 29 ms, not 41; files ≈ 1.15× as large.
ENCODING: dict[str, dict[str, Any]] = {"png": {"pil_kwargs": {"compress_level": 1}}, "pdf": {}, "svg": {}}
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
METADATA: dict[str, dict[str, Any]] = {"png": {}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}  # reproducible


def look(regularizer: str) -> Style:
    """The regularizer's `Style`, the same in every figure; a name not in STYLES is its own label, with spares."""
    if regularizer in STYLES:
        return STYLES[regularizer]
    h = crc32(regularizer.encode())
    spares = (SPARE_COLORS, SPARE_MARKERS, SPARE_LINESTYLES, SPARE_HATCHES)
    return Style(regularizer, *(spare[h % len(spare)] for spare in spares))


def label(regularizer: str) -> str:
    """The regularizer's name in a figure: "Elastic net" for `elastic_net`; an unknown name as it is."""
    return look(regularizer).label


def legend_name(regularizer: str, lam: float) -> str:
    """A (regularizer, λ) in a title or legend: "L1, λ=0.001"; a regularizer without λ by its name alone."""
    return label(regularizer) if regularizer in STRENGTH_UNUSED else f"{label(regularizer)}, λ={format_number(lam)}"


def decade(value: float, _: Any = None) -> str:
    """A log axis' tick label, 10⁻³ for 0.001 (another value as `format_number` writes it), in plain text: as
    mathtext ($10^{-3}$, matplotlib's default) its parsing was a fifth of the cost of a weight histogram."""
    exponent = math.log10(value) if value > 0 else math.nan
    if math.isfinite(exponent) and abs(exponent - round(exponent)) < 1e-9:
        return "10" + str(round(exponent)).translate(SUPERSCRIPTS)
    return format_number(value)


def darker(c: Any, amount: float = 0.45) -> tuple[float, ...]:
    return tuple(channel * (1 - amount) for channel in to_rgb(c))


@dataclass(frozen=True)
class Output:
    """How the figures are written: each in every one of `formats`, at `dpi`, with `band` ("ci" or "minmax")."""

    formats: tuple[str, ...] = ("png",)
    dpi: int = DPI
    band: str = "ci"

    def __post_init__(self) -> None:
        unknown = [str(f) for f in self.formats if f not in FORMATS]
        if not self.formats or unknown:
            given = ",".join(unknown) if unknown else "[]"
            raise ValueError(f"format={given} is not one of the figure formats: {', '.join(FORMATS)}")
        if not (isinstance(self.dpi, int) and 10 <= self.dpi <= 2400):
            raise ValueError(f"dpi={self.dpi!r} must be an integer from 10 to 2400")
        if self.band not in BANDS:
            raise ValueError(f"band={self.band} must be one of: {', '.join(BANDS)}")

    def files(self, path: Path) -> list[Path]:
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


_layouts: dict[tuple, Any] | None = None  # inside `shared_layout`: a figure's key -> where its first drawing put things


@contextmanager
def shared_layout(layouts: dict[tuple, Any]) -> Iterator[None]:
    """Figures saved inside, of a file name, size and number of axes seen before in `layouts`, take that drawing's
    positions of axes and suptitle: constrained layout (half the cost of drawing a run's figure) runs
    once per kind, not once per member. The members of one stack share one `layouts`."""
    global _layouts
    previous, _layouts = _layouts, layouts
    try:
        yield
    finally:
        _layouts = previous


@contextmanager
def new_figure(*args: Any, **kwargs: Any) -> Iterator[tuple[plt.Figure, Any]]:
    fig, axes = plt.subplots(*args, layout="constrained", **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def _positions(fig: plt.Figure) -> tuple[list, Any]:
    """Where the layout put the axes and the suptitle (a figure legend "outside" stays where it was anchored)."""
    suptitle = getattr(fig, "_suptitle", None)
    return [ax.get_position() for ax in fig.axes], suptitle.get_position() if suptitle is not None else None


def _apply(fig: plt.Figure, positions: tuple[list, Any]) -> None:
    axes, where = positions
    fig.set_layout_engine(None)  # none at all: a layout engine, even a placeholder, makes savefig draw twice
    for ax, position in zip(fig.axes, axes):
        ax.set_position(position)
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and where is not None:
        suptitle.set_position(where)


@contextmanager
def panels(n: int, max_columns: int, size: tuple[float, float]) -> Iterator[tuple[plt.Figure, Any]]:
    """`n` panels of `size` inches sharing their y axis, in rows of `max_columns`; `axes` 2-D, spares off."""
    ncols = min(max_columns, n)
    nrows = math.ceil(n / ncols)
    with new_figure(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, sharey=True) as fig_axes:
        for ax in fig_axes[1].flat[n:]:
            ax.axis("off")
        yield fig_axes


def panel_title(ax: Any, regularizer: str) -> None:
    ax.set_title(label(regularizer), color=darker(look(regularizer).color, 0.2), fontweight="bold")


def save(fig: plt.Figure, path: Path) -> Path:
    """Write `fig` in every output format (`path` with each suffix); return the first file."""
    files = _output.files(path)
    key = (path.name, tuple(fig.get_size_inches()), len(fig.axes), len(fig.legends))
    if _layouts is not None and key in _layouts:
        _apply(fig, _layouts[key])
    with plt.rc_context(VECTOR_TEXT):
        for target in files:
            buffer = io.BytesIO()
            fmt = target.suffix[1:]
            fig.savefig(buffer, format=fmt, dpi=_output.dpi, metadata=METADATA[fmt], **ENCODING[fmt])
            rundir.atomic_write_bytes(target, buffer.getvalue())
    if _layouts is not None and key not in _layouts:
        _layouts[key] = _positions(fig)
    return files[0]


def regularizers_of(groups: Groups) -> list[str]:
    return list(dict.fromkeys(reg for reg, _ in groups))


def band_text() -> str:
    return "95% CI of the mean over seeds (Student t)" if _output.band == "ci" else "min–max over seeds"


def seed_band(x: np.ndarray) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values of `x`: low, high the 95% CI of the mean (`runs.mean_ci`),
    or with band="minmax" the smallest and largest value. One value has no spread: low = high = mean."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan, 0
    if _output.band == "minmax":
        return float(x.mean()), float(x.min()), float(x.max()), len(x)
    mean, half = mean_ci(x)
    half = 0.0 if math.isnan(half) else half
    return mean, mean - half, mean + half, len(x)


def series(groups: Groups, key: str) -> dict[str, np.ndarray]:
    """Per regularizer, rows (λ, mean, low, high, n) of `key` over seeds, by increasing λ (`seed_band`)."""
    rows: dict[str, list[tuple[float, float, float, float, int]]] = {}
    for (reg, lam), runs in groups.items():
        mean, low, high, n = seed_band(values(runs, key))
        if np.isfinite(mean):
            rows.setdefault(reg, []).append((lam, mean, low, high, n))
    return {reg: np.array(sorted(r)) for reg, r in rows.items()}


class LambdaAxis:
    """A log λ axis that shows λ = 0 at a tenth of the smallest λ > 0, a dotted line where the axis breaks."""

    def __init__(self, lams: Sequence[float]) -> None:
        self.positive = sorted({lam for lam in lams if lam > 0}) or [1.0]
        self.has_zero = any(lam == 0 for lam in lams)
        self.zero = self.positive[0] / 10

    def x(self, lam: float) -> float:
        return lam if lam > 0 else self.zero

    def apply(self, ax: Any) -> None:
        lo, hi = self.positive[0], self.positive[-1]
        ax.set(xscale="log", xlim=((self.zero if self.has_zero else lo) / 2, hi * 2))
        if len(self.positive) <= 6:  # few λ: a tick at each, as the user wrote it
            ticks, labels = list(self.positive), [format_number(lam) for lam in self.positive]
        else:
            decades = 10.0 ** np.arange(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            decades = decades[(decades > self.zero * 3) & (decades <= hi * 2)]
            ticks, labels = list(decades), [decade(d) for d in decades]
        if self.has_zero:
            ticks, labels = [self.zero, *ticks], ["0", *labels]
            ax.axvline(math.sqrt(self.zero * lo), color="0.75", lw=1, ls=(0, (1, 3)))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels(labels)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("λ (log scale; λ = 0 at the left)" if self.has_zero else "λ (log scale)")


def lambda_axis(groups: Groups) -> LambdaAxis | None:
    """The λ axis of a figure against λ, or None for a point chart: no regularizer that uses λ has two λ."""
    swept = {reg for reg, _ in groups if reg not in STRENGTH_UNUSED}
    if not any(len({lam for r, lam in groups if r == reg}) >= 2 for reg in swept):
        return None
    return LambdaAxis(sorted({lam for _, lam in groups}))


def draw_vs_lambda(ax: Any, axis: LambdaAxis, groups: Groups, key: str, ls: Any = None, training: bool = False) -> None:
    """Mean over seeds per regularizer against λ with its band (a regularizer without λ: a horizontal baseline).
    `ls`: one line style for all, else each one's own; `training`: open markers and no band."""
    for reg, s in series(groups, key).items():
        c, style = look(reg).color, look(reg).linestyle if ls is None else ls
        fill = {"facecolor": to_rgba(c, 0.12), "edgecolor": to_rgba(c, 0.45), "hatch": look(reg).hatch, "lw": 0}
        if reg in STRENGTH_UNUSED:
            ax.axhline(s[0, 1], color=c, ls=style, lw=1.5)
            if not training and s[0, 3] > s[0, 2]:
                ax.axhspan(s[0, 2], s[0, 3], **fill)
            continue
        x = [axis.x(lam) for lam in s[:, 0]]
        ax.plot(x, s[:, 1], ls=style, marker=look(reg).marker, ms=5, color=c, mfc="white" if training else c, mec=c)
        if training:
            continue
        if len(x) > 1:
            ax.fill_between(x, s[:, 2], s[:, 3], **fill)
        else:
            ax.errorbar(x, s[:, 1], yerr=[s[:, 1] - s[:, 2], s[:, 3] - s[:, 1]], fmt="none", ecolor=c, capsize=3)
        for xi, yi, n in zip(x, s[:, 1], s[:, 4]):  # a point with fewer seeds than the others says its n
            if n < s[:, 4].max():
                offset = {"xytext": (4, -10), "textcoords": "offset points"}
                ax.annotate(f"n={int(n)}", (xi, yi), **offset, fontsize=7, color=darker(c))


def regularizer_handles(groups: Groups, notes: dict[str, str] | None = None, own_linestyle: bool = True) -> list:
    """A legend entry per regularizer and its seeds per point: "n=5", or "n=5 (fewer where marked)"."""
    handles = []
    for reg in regularizers_of(groups):
        name = f"{label(reg)} (no λ: baseline)" if reg in STRENGTH_UNUSED else label(reg) + (notes or {}).get(reg, "")
        counts = sorted({len(runs) for (r, _), runs in groups.items() if r == reg})
        n = f"n={counts[-1]}" + ("" if len(counts) == 1 else " (fewer where marked)")
        ls = look(reg).linestyle if own_linestyle else "-"
        shape = "" if reg in STRENGTH_UNUSED else look(reg).marker
        handles.append(Line2D([], [], color=look(reg).color, ls=ls, marker=shape, lw=2, label=f"{name}, {n}"))
    return handles


def draw_points(ax: Any, groups: Groups, specs: Sequence[tuple[str, str, bool]]) -> list[Line2D]:
    """A point chart: a column per (regularizer, λ), for each (key, text, filled) of `specs` the mean over seeds
    as the regularizer's marker (open if not `filled`) with its band as an error bar, each seed a dot beside it.
    Returns the legend's handles: what a filled and an open marker mean (`text`), the seeds, the bars."""
    cats = list(groups)
    width = 0.56 / max(len(specs), 1)
    rng = np.random.default_rng(0)  # the same jitter every time
    for i, (reg, lam) in enumerate(cats):
        c = look(reg).color
        for j, (key, _, filled) in enumerate(specs):
            v = values(groups[(reg, lam)], key)
            mean, low, high, _ = seed_band(v)
            if not math.isfinite(mean):
                continue
            x = i + (j - (len(specs) - 1) / 2) * width * 1.6
            v = v[np.isfinite(v)]
            dots = x + width * 0.55 + rng.uniform(-0.06, 0.06, len(v))
            ax.plot(dots, v, ls="", marker=".", ms=4, color="0.45", zorder=2)
            edge = darker(c, 0.3)
            bar = [[mean - low], [high - mean]]
            ax.errorbar(x, mean, yerr=bar, fmt="none", ecolor=edge, elinewidth=1.6, capsize=5, zorder=3)
            face = c if filled else "white"
            ax.plot(x, mean, ls="", marker=look(reg).marker, ms=9, color=c, mfc=face, mec=edge, mew=1.5, zorder=4)
    lam_lines = ["" if reg in STRENGTH_UNUSED else f"\nλ={format_number(lam)}" for reg, lam in cats]
    ticks = [f"{label(reg)}{lam_line}\nn={len(groups[(reg, lam)])}" for (reg, lam), lam_line in zip(cats, lam_lines)]
    ax.set_xticks(range(len(cats)), ticks)
    ax.set_xlim(-0.7, len(cats) - 0.3)
    ax.grid(alpha=0.3, axis="y")
    means = [
        Line2D([], [], ls="", marker="o", ms=8, color="0.3", mfc="0.3" if filled else "white", label=text)
        for _, text, filled in specs
    ]
    seed = Line2D([], [], ls="", marker=".", ms=6, color="0.45", label="one seed")
    return [*means, seed, Line2D([], [], ls="-", color="black", marker="_", ms=10, label=f"error bar: {band_text()}")]
