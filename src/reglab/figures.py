"""The report's figures, drawn from run directories only (metrics.json, metrics.csv, checkpoints).

Every function takes `groups` (completed runs by (regularizer, λ), from `report.seed_groups`)
and the PNG path to write; it returns the path, or None where the figure does not apply (one λ
has no λ axis, a 10-D data set has no decision boundary). A regularizer has the same colour in
every figure. λ is on a log axis with λ = 0 drawn at the left, a tenth of the smallest λ > 0.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from zlib import crc32

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator  # noqa: E402

from reglab import rundir  # noqa: E402
from reglab.report import STRENGTH_UNUSED, Run, best_strengths, lam_label, values, warn  # noqa: E402

Groups = dict[tuple[str, float], list[Run]]
DPI = 100
COLORS = {
    "none": "#555555",
    "l1": "tab:red",
    "prox_l1": "tab:orange",
    "elastic_net": "tab:purple",
    "group_lasso": "tab:green",
    "l2": "tab:blue",
    "weight_decay": "tab:cyan",
}
SPARE_COLORS = ("tab:brown", "tab:pink", "tab:olive", "gold", "navy", "teal", "maroon", "lime")
CLASS_COLORS = ("#2166ac", "#b2182b", "#1b9e77", "#7570b3", "#e6ab02", "#66a61e", "#e7298a", "#a6761d")
BAND = "band: min–max over seeds"


def color(regularizer: str) -> str:
    """The regularizer's colour, the same in every figure (a name not in COLORS gets a fixed spare)."""
    return COLORS.get(regularizer) or SPARE_COLORS[crc32(regularizer.encode()) % len(SPARE_COLORS)]


def _darker(c: str, amount: float = 0.45) -> tuple[float, float, float]:
    r, g, b = to_rgb(c)
    return (r * (1 - amount), g * (1 - amount), b * (1 - amount))


@contextmanager
def _figure(*args: Any, **kwargs: Any) -> Iterator[tuple[plt.Figure, Any]]:
    fig, axes = plt.subplots(*args, layout="constrained", **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def _save(fig: plt.Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    rundir.atomic_write_bytes(path, buffer.getvalue())
    return path


def _regularizers(groups: Groups) -> list[str]:
    return list(dict.fromkeys(reg for reg, _ in groups))


def _first(groups: Groups) -> Run:
    return next(iter(groups.values()))[0]


def _score_label(run: Run) -> str:
    return "R²" if run.score == "r2" else "accuracy"


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


def _lambda_axis(groups: Groups) -> LambdaAxis | None:
    lams = sorted({lam for _, lam in groups})
    return LambdaAxis(lams) if len(lams) >= 2 else None


def _series(groups: Groups, key: str) -> dict[str, np.ndarray]:
    """Per regularizer, rows (λ, mean, min, max) of `key` over seeds, by increasing λ."""
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for (reg, lam), runs in groups.items():
        v = values(runs, key)
        v = v[np.isfinite(v)]
        if len(v):
            rows.setdefault(reg, []).append((lam, v.mean(), v.min(), v.max()))
    return {reg: np.array(sorted(r)) for reg, r in rows.items()}


def _draw_vs_lambda(ax: Any, axis: LambdaAxis, groups: Groups, key: str, ls: str = "-", band: bool = True) -> None:
    """Mean over seeds per regularizer; a regularizer without λ is a horizontal baseline."""
    for reg, s in _series(groups, key).items():
        c = color(reg)
        if reg in STRENGTH_UNUSED:
            ax.axhline(s[0, 1], color=c, ls=ls, lw=1.5)
            if band and s[0, 3] > s[0, 2]:
                ax.axhspan(s[0, 2], s[0, 3], color=c, alpha=0.1, lw=0)
            continue
        x = [axis.x(lam) for lam in s[:, 0]]
        ax.plot(x, s[:, 1], ls=ls, marker="o" if ls == "-" else "s", ms=4, color=c, mfc=c if ls == "-" else "white")
        if band and len(x) > 1:
            ax.fill_between(x, s[:, 2], s[:, 3], color=c, alpha=0.15, lw=0)
        elif band:
            ax.errorbar(x, s[:, 1], yerr=[s[:, 1] - s[:, 2], s[:, 3] - s[:, 1]], fmt="none", ecolor=c, capsize=3)


def _regularizer_handles(groups: Groups, notes: dict[str, str] | None = None) -> list[Line2D]:
    notes = notes or {}
    return [
        Line2D(
            [],
            [],
            color=color(reg),
            lw=2,
            label=f"{reg} (no λ: baseline)" if reg in STRENGTH_UNUSED else reg + notes.get(reg, ""),
        )
        for reg in _regularizers(groups)
    ]


def _log_y(ax: Any) -> None:
    """Log y axis with plain numbers at 1, 2, 5 × 10^k."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def accuracy_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Validation (solid) and training (dashed) score vs λ; a star at each regularizer's best λ."""
    axis = _lambda_axis(groups)
    if axis is None:
        return None
    run = _first(groups)
    key = run.score
    with _figure(figsize=(8.5, 5.2)) as (fig, ax):
        _draw_vs_lambda(ax, axis, groups, f"val/{key}")
        _draw_vs_lambda(ax, axis, groups, f"train/{key}", ls="--", band=False)
        series, notes = _series(groups, f"val/{key}"), {}
        for reg, lam in best_strengths(groups, f"val/{key}").items():
            if len(series.get(reg, [])) < 2:
                continue  # one λ is no sweet spot
            mean = float(series[reg][series[reg][:, 0] == lam][0, 1])
            ax.plot(axis.x(lam), mean, "*", ms=18, color=color(reg), mec="black", mew=0.8, zorder=5)
            notes[reg] = f" (best λ={lam_label(lam)}: val {mean:.3f})"
        axis.apply(ax)
        ax.set_ylabel(_score_label(run))
        ax.set_title(f"{run.dataset}: {_score_label(run)} vs λ (mean over seeds, {BAND})")
        ax.grid(alpha=0.3)
        styles = [
            Line2D([], [], color="black", ls="-", marker="o", ms=4, label="validation"),
            Line2D([], [], color="black", ls="--", marker="s", ms=4, mfc="white", label="training"),
            Line2D([], [], color="white", marker="*", ms=14, mfc="0.6", mec="black", label="best λ (max mean val)"),
        ]
        ax.legend(handles=_regularizer_handles(groups, notes) + styles, fontsize=8, loc="best")
        return _save(fig, path)


def gap_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Generalization gap (train − val accuracy, or val − train loss) vs λ."""
    axis = _lambda_axis(groups)
    if axis is None:
        return None
    run = _first(groups)
    with _figure(figsize=(8.5, 5)) as (fig, ax):
        ax.axhline(0, color="black", lw=0.8)
        _draw_vs_lambda(ax, axis, groups, "val/gap")
        axis.apply(ax)
        what = "val loss − train loss" if run.task == "regression" else "train accuracy − val accuracy"
        ax.set_ylabel(f"generalization gap ({what})")
        ax.set_title(f"{run.dataset}: generalization gap vs λ (mean over seeds, {BAND})")
        ax.grid(alpha=0.3)
        ax.legend(handles=_regularizer_handles(groups), fontsize=8, loc="best")
        return _save(fig, path)


def sparsity_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Exact zeros, small weights, L1 and L2 norm of the weight matrices vs λ."""
    axis = _lambda_axis(groups)
    if axis is None:
        return None
    run = _first(groups)
    threshold = run.sparsity_threshold
    panels = [
        ("weights/zero_frac", "exact zeros", "fraction of weights = 0", False),
        ("weights/small_frac", f"small weights (|w| < {threshold:g})", f"fraction with |w| < {threshold:g}", False),
        ("weights/l1", "L1 norm Σ|w|", "Σ|w| (log scale)", True),
        ("weights/l2", "L2 norm ‖w‖₂", "‖w‖₂ (log scale)", True),
    ]
    with _figure(2, 2, figsize=(11, 8), sharex=True) as (fig, axes):
        for ax, (key, title, ylabel, log) in zip(axes.flat, panels):
            _draw_vs_lambda(ax, axis, groups, key)
            axis.apply(ax)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if log:
                _log_y(ax)
            else:
                ax.set_ylim(-0.03, 1.03)
        for ax in axes[0]:
            ax.set_xlabel("")
        axes[0, 0].legend(handles=_regularizer_handles(groups), fontsize=8, loc="best")
        fig.suptitle(f"{run.dataset}: sparsity and size of the weights vs λ (weight matrices, no biases; {BAND})")
        return _save(fig, path)


def regularization_path(groups: Groups, path: Path) -> Path | None:
    """First-layer L1 norm of each input feature's weights vs λ, one panel per regularizer (a
    lasso path) for the smallest seed (the seed also draws the data, so the informative features
    can change with it); the informative features coloured, the noise features grey. The baseline
    without regularization stands in at λ = 0 for a regularizer swept without λ = 0."""
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
                    label = f"x{j}" + (" (informative)" if support else "") if len(coloured) <= 10 else None
                    ax.plot(x, norms[:, j], "-o", ms=3, lw=2, color=c, label=label, zorder=3)
                else:
                    label = "noise features" if j == min(set(range(n_features)) - support) else None
                    ax.plot(x, norms[:, j], "-", lw=0.8, color="0.6", alpha=0.7, label=label)
            axis.apply(ax)
            ax.set_title(reg, color=color(reg), fontweight="bold")
            ax.set_ylabel("first-layer ‖W[:, j]‖₁ of input j")
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8, loc="best")
        fig.suptitle(f"{run.dataset}: regularization path of the input features (seed {seed})")
        return _save(fig, path)


@lru_cache(maxsize=8)
def _datamodule(data_config: str) -> Any:
    from hydra.utils import instantiate

    return instantiate(json.loads(data_config))


def rebuild(run: Run) -> tuple[Any, Any]:
    """(model with the weights of checkpoints/last.ckpt, in eval mode; its data module), from the run's files."""
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    checkpoint = run.path / "checkpoints" / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    data = _datamodule(json.dumps(OmegaConf.to_container(run.config.data, resolve=True), sort_keys=True))
    model = instantiate(
        OmegaConf.to_container(run.config.model, resolve=True),
        in_features=data.in_features,
        out_features=data.out_features,
    )
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval(), data


def _boundary(ax: Any, run: Run) -> None:
    import torch

    model, data = rebuild(run)
    (xt, yt), (xv, yv) = data.split_arrays("train"), data.split_arrays("val")
    points = np.concatenate([xt, xv])
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    with torch.no_grad():
        logits = model(torch.from_numpy(np.c_[g0.ravel(), g1.ravel()].astype(np.float32))).numpy()
    n_classes = max(data.out_features, 2)
    classes = ListedColormap(CLASS_COLORS[:n_classes])
    if data.out_features == 1:
        p = (1 / (1 + np.exp(-logits[:, 0]))).reshape(g0.shape)
        ax.contourf(g0, g1, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.45)
        ax.contour(g0, g1, p, levels=[0.5], colors="black", linewidths=1.5)
    else:
        z = logits.argmax(1).reshape(g0.shape)
        ax.contourf(g0, g1, z, levels=np.arange(n_classes + 1) - 0.5, cmap=classes, alpha=0.3)
        ax.contour(g0, g1, z, levels=np.arange(n_classes) + 0.5, colors="black", linewidths=1)
    style = {"cmap": classes, "vmin": -0.5, "vmax": n_classes - 0.5}
    ax.scatter(xt[:, 0], xt[:, 1], c=yt, s=10, marker="o", edgecolors="white", linewidths=0.3, **style)
    ax.scatter(xv[:, 0], xv[:, 1], c=yv, s=26, marker="^", edgecolors="black", linewidths=0.7, **style)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])


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
            ax.set_title(
                f"{reg}, λ={lam_label(lam)}\nval {score} {shown.metric(f'val/{shown.score}'):.3f} (seed {shown.seed})",
                color=_darker(color(reg), 0.25),
                fontsize=10,
            )
            try:
                _boundary(ax, shown)
            except FileNotFoundError as e:
                warn(f"{shown.name}: no decision boundary ({e.filename} is missing)")
                ax.text(0.5, 0.5, "no checkpoint", ha="center", va="center", transform=ax.transAxes)
        handles = [
            Line2D([], [], ls="", marker="o", color="0.5", mec="white", label="training points"),
            Line2D([], [], ls="", marker="^", color="0.5", mec="black", ms=7, label="validation points"),
            Line2D([], [], color="black", lw=1.5, label="decision boundary (p = 0.5)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=9, frameon=False)
        title = f"{run.dataset}: decision boundaries (background: predicted probability of the red class)"
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
            az.bar(i, zeros, color=c, width=0.7)
            az.annotate(
                f"{zeros}", (i, max(zeros, 1)), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8
            )
            label = reg if reg in STRENGTH_UNUSED else f"{reg}, λ={lam_label(lam)}"
            ah.hist(
                w[w > 0],
                bins=bins,
                histtype="step",
                lw=2,
                color=c,
                label=f"{label} ({zeros} exact zeros, {zeros / len(w):.2%})",
            )
        az.set_yscale("log")
        az.set_ylim(bottom=0.8)
        az.set_xticks(range(len(magnitudes)), list(magnitudes), rotation=45, ha="right")
        az.set_title("w = 0 exactly")
        az.set_ylabel("number of weights (log scale)")
        ah.set_xscale("log")
        threshold = run.sparsity_threshold
        if math.isfinite(threshold) and threshold > 0:
            ah.axvline(threshold, color="0.3", ls="--", lw=1, label=f'|w| = {threshold:g} ("small" below)')
        ah.set_xlabel("|w| (log-spaced bins)")
        ah.set_title("|w| > 0")
        ah.legend(fontsize=8, loc="upper left")
        ah.grid(alpha=0.3)
        which = "largest λ of each regularizer" if len(groups) > 1 else f"seed {run.seed}"
        fig.suptitle(f"{run.dataset}: weight magnitudes ({which}; weight matrices, no biases)")
        return _save(fig, path)


def learning_curves(groups: Groups, path: Path) -> Path | None:
    """Training (dashed) and validation (solid) data loss per epoch, from metrics.csv: per
    regularizer its best λ (by mean validation score) and its largest λ, smallest seed."""
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
            label = "" if reg in STRENGTH_UNUSED else f"λ={lam_label(lam)}{note}"
            if (shown.path / "metrics.csv").is_file():
                picks.setdefault(reg, []).append((label, shown))
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
            for i, (label, shown) in enumerate(shown_runs):
                rows = rundir.read_metrics_csv(shown.path)
                epochs = [r["epoch"] + 1 for r in rows]
                c = color(reg) if i == 0 else _darker(color(reg))
                ax.plot(epochs, [r.get("val/loss", math.nan) for r in rows], "-", color=c, lw=1.8, label=f"val {label}")
                ax.plot(
                    epochs, [r.get("train/loss", math.nan) for r in rows], "--", color=c, lw=1.4, label=f"train {label}"
                )
            ax.set_title(reg, color=color(reg), fontweight="bold")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        for row in axes:
            row[0].set_ylabel("data loss (no penalty)")
        fig.suptitle(f"{run.dataset}: learning curves\n(solid: validation, dashed: training; smallest seed)")
        return _save(fig, path)


# The figures of a sweep, by file name (without .png), in the order summary.md shows them.
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
