"""The report's figures (docs/report.md): each takes `groups` (`runs.seed_groups`) and a path (each format
replaces its suffix), and returns the first file written, or None where it does not apply.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from reglab import rundir
from reglab.figures.style import (
    Groups,
    LambdaAxis,
    band_text,
    darker,
    decade,
    draw_points,
    draw_vs_lambda,
    lambda_axis,
    legend_name,
    look,
    new_figure,
    panel_title,
    panels,
    plt,
    regularizer_handles,
    regularizers_of,
    save,
    series,
)
from reglab.runs import STRENGTH_UNUSED, Run, best_strengths, load_model, load_splits, warn
from reglab.tables import format_number

CLASS_COLORS = ("#2166ac", "#b2182b", "#1b9e77", "#7570b3", "#e6ab02", "#66a61e", "#e7298a", "#a6761d")
CLASS_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
GRID = 128  # points per side of a decision boundary's grid (the model's forward on 200² was 1/3 of its figure)


def first_run(groups: Groups) -> Run:
    return next(iter(groups.values()))[0]


def smallest_seed(runs: list[Run]) -> Run:
    """The run a figure shows of one (regularizer, λ): its smallest seed, the same in every figure."""
    return min(runs, key=lambda r: r.seed)


def points_width(groups: Groups) -> float:
    return max(5.0, 1.5 * len(groups) + 2.5)


def accuracy_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Validation (solid) and training (dashed, open markers) score vs λ, a star at each best λ; or a point chart."""
    run, axis = first_run(groups), lambda_axis(groups)
    key, score = run.score, "R²" if run.score == "r2" else "accuracy"
    with new_figure(figsize=(points_width(groups), 4.8) if axis is None else (8.5, 5.2)) as (fig, ax):
        ax.set_ylabel(score)
        if axis is None:
            handles = draw_points(ax, groups, [(f"val/{key}", "validation", True), (f"train/{key}", "training", False)])
            ax.set_title(f"{run.dataset}: {score} (mean over seeds)")
            ax.legend(handles=handles, fontsize=8, loc="best")
            return save(fig, path)
        draw_vs_lambda(ax, axis, groups, f"val/{key}", ls="-")
        draw_vs_lambda(ax, axis, groups, f"train/{key}", ls="--", training=True)
        s_val, notes = series(groups, f"val/{key}"), {}
        for reg, lam in best_strengths(groups, f"val/{key}").items():
            if len(s_val.get(reg, [])) < 2:
                continue  # one λ is no sweet spot
            mean = float(s_val[reg][s_val[reg][:, 0] == lam][0, 1])
            ax.plot(axis.x(lam), mean, "*", ms=18, color=look(reg).color, mec="black", mew=0.8, zorder=5)
            notes[reg] = f" (best λ={format_number(lam)}: val {mean:.3f})"
        axis.apply(ax)
        ax.set_title(f"{run.dataset}: {score} vs λ (mean over seeds, band: {band_text()})", fontsize=10)
        ax.grid(alpha=0.3)
        handles = regularizer_handles(groups, notes, own_linestyle=False) + [
            Line2D([], [], color="black", ls="-", marker="o", ms=4, label="validation"),
            Line2D([], [], color="black", ls="--", marker="o", ms=4, mfc="white", label="training"),
            Line2D([], [], color="white", marker="*", ms=14, mfc="0.6", mec="black", label="best λ (max mean val)"),
        ]
        ax.legend(handles=handles, fontsize=8, loc="best")
        return save(fig, path)


def _draw(ax: Any, axis: LambdaAxis | None, groups: Groups, key: str) -> list[Line2D]:
    """`key` against λ with its band, or without `axis` as a point chart; returns the legend's handles."""
    if axis is None:
        return draw_points(ax, groups, [(key, "mean", True)])
    draw_vs_lambda(ax, axis, groups, key)
    axis.apply(ax)
    ax.grid(alpha=0.3)
    return regularizer_handles(groups)


def gap_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Generalization gap (train − val accuracy, or val − train loss) vs λ, or a point chart."""
    run, axis = first_run(groups), lambda_axis(groups)
    what = "val loss − train loss" if run.task == "regression" else "train accuracy − val accuracy"
    with new_figure(figsize=(points_width(groups), 4.6) if axis is None else (8.5, 5)) as (fig, ax):
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel(f"generalization gap ({what})")
        handles = _draw(ax, axis, groups, "val/gap")
        if axis is None:
            ax.set_title(f"{run.dataset}: generalization gap (mean over seeds)")
        else:
            ax.set_title(f"{run.dataset}: generalization gap vs λ (mean over seeds, band: {band_text()})", fontsize=10)
        ax.legend(handles=handles, fontsize=8, loc="best")
        return save(fig, path)


def sparsity_vs_lambda(groups: Groups, path: Path) -> Path | None:
    """Exact zeros, small weights, L1 and L2 norm of the weight matrices vs λ, or point charts."""
    run, axis = first_run(groups), lambda_axis(groups)
    small = f"|w| < {format_number(run.sparsity_threshold)}"
    shown = [
        ("weights/zero_frac", "exact zeros", "fraction of weights = 0", False),
        ("weights/small_frac", f"small weights ({small})", f"fraction with {small}", False),
        ("weights/l1", "L1 norm Σ|w|", "Σ|w| (log scale)", True),
        ("weights/l2", "L2 norm ‖w‖₂", "‖w‖₂ (log scale)", True),
    ]
    with new_figure(2, 2, figsize=(points_width(groups) * 1.6 if axis is None else 11, 8), sharex=True) as (fig, axes):
        for ax, (key, title, ylabel, log) in zip(axes.flat, shown):
            handles = _draw(ax, axis, groups, key)
            ax.set(title=title, ylabel=ylabel)
            if log:  # plain numbers at 1, 2, 5 × 10^k
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_number(v)))
                ax.yaxis.set_minor_formatter(NullFormatter())
            else:
                ax.set_ylim(-0.03, 1.03)
        for ax in axes[0]:
            ax.set_xlabel("")
        axes[0, 0].legend(handles=handles, fontsize=8, loc="best")
        what = f"error bars: {band_text()}" if axis is None else f"band: {band_text()}"
        against = "" if axis is None else " vs λ"
        fig.suptitle(f"{run.dataset}: sparsity and size of the weights{against} (weight matrices, no biases; {what})")
        return save(fig, path)


def regularization_path(groups: Groups, path: Path) -> Path | None:
    """First-layer L1 norm of each input's weights vs λ, a panel per regularizer (a lasso path), smallest
    seed: informative features coloured, noise grey; the unregularized baseline stands in for a missing λ = 0."""
    seed = min(r.seed for runs in groups.values() for r in runs)
    of_seed = {key: r for key, runs in groups.items() for r in runs if r.seed == seed and r.record.get("feature_l1")}
    baseline = [(0.0, r.record["feature_l1"]) for (reg, _), r in of_seed.items() if reg in STRENGTH_UNUSED][:1]
    paths: dict[str, list[tuple[float, list[float]]]] = {}
    for (reg, lam), r in of_seed.items():
        if reg not in STRENGTH_UNUSED:
            paths.setdefault(reg, []).append((lam, r.record["feature_l1"]))
    paths = {reg: (baseline if all(lam != 0 for lam, _ in p) else []) + p for reg, p in paths.items()}
    paths = {reg: points for reg, points in paths.items() if len(points) >= 2}
    if not paths:
        return None
    run = next(iter(of_seed.values()))
    support = set(run.record.get("support") or [])
    n_features = len(paths[next(iter(paths))][0][1])
    coloured = sorted(support) if support else list(range(n_features))
    palette = plt.get_cmap("tab10" if len(coloured) <= 10 else "viridis")
    axis = LambdaAxis([lam for points in paths.values() for lam, _ in points])
    with panels(len(paths), 3, (5.2, 4.2)) as (fig, axes):
        for ax, (reg, points) in zip(axes.flat, paths.items()):
            x = [axis.x(lam) for lam, _ in points]
            norms = np.array([n for _, n in points], dtype=float)
            for j in range(n_features):
                if j in coloured:
                    i = coloured.index(j)
                    c = palette(i % 10 if len(coloured) <= 10 else i / max(len(coloured) - 1, 1))
                    label = (run.record.get("feature_names") or [f"x{k}" for k in range(n_features)])[j]
                    name = label + (" (informative)" if support else "") if len(coloured) <= 10 else None
                    shape = CLASS_MARKERS[i % len(CLASS_MARKERS)]
                    ax.plot(x, norms[:, j], "-", marker=shape, ms=4, lw=2, color=c, label=name, zorder=3)
                else:
                    name = "noise features" if j == min(set(range(n_features)) - support) else None
                    ax.plot(x, norms[:, j], ":", lw=0.8, color="0.6", alpha=0.7, label=name)
            axis.apply(ax)
            panel_title(ax, reg)
            ax.set_ylabel("first-layer ‖W[:, j]‖₁ of input j")
            ax.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=8, loc="best")
        fig.suptitle(f"{run.dataset}: regularization path of the input features (seed {seed})")
        return save(fig, path)


def _boundary(ax: Any, run: Run) -> int:
    """Draw the run's decision regions and its training and validation points; return its number of classes."""
    import torch

    model, data = load_model(run), load_splits(run)
    (xt, yt), (xv, yv) = (data.x["train"], data.y["train"]), (data.x["val"], data.y["val"])
    points = np.concatenate([xt, xv])
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID))
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
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    return n_classes


def decision_boundaries(groups: Groups, path: Path) -> Path | None:
    """2-D classification only: the decision boundary of each (regularizer, λ), smallest seed (last.ckpt)."""
    run = first_run(groups)
    if run.task == "regression" or len(run.record.get("feature_l1") or []) != 2:
        return None
    regs, lams = regularizers_of(groups), sorted({lam for _, lam in groups})
    # One λ per regularizer (e.g. none vs l1): side by side, not a mostly empty diagonal grid.
    side_by_side = len(groups) == len(regs)
    nrows, ncols = (1, len(regs)) if side_by_side else (len(regs), len(lams))
    size = 5.0 if nrows * ncols == 1 else 4.0 if side_by_side else 3.2
    n_classes = 2
    with new_figure(nrows, ncols, figsize=(size * ncols, size * nrows + 0.8), squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for (reg, lam), runs in groups.items():
            ax = axes[0, regs.index(reg)] if side_by_side else axes[regs.index(reg), lams.index(lam)]
            ax.axis("on")
            ax.set(xticks=[], yticks=[])
            shown = smallest_seed(runs)
            title = f"{legend_name(reg, lam)}\nval acc {shown.metric('val/acc'):.3f} (seed {shown.seed})"
            ax.set_title(title, color=darker(look(reg).color, 0.25), fontsize=10)
            try:
                n_classes = max(n_classes, _boundary(ax, shown))
            except FileNotFoundError as e:
                warn(f"{shown.name}: no decision boundary ({e.filename} is missing)")
                ax.text(0.5, 0.5, "no checkpoint", ha="center", va="center", transform=ax.transAxes)
        handles = [  # each class's colour and shape, the two splits, the boundary
            Line2D([], [], ls="", marker=CLASS_MARKERS[k], color=CLASS_COLORS[k], label=f"class {k}")
            for k in range(min(n_classes, len(CLASS_MARKERS)))
        ] + [
            Line2D([], [], ls="", marker="o", ms=5, color="0.5", mec="white", label="training (small)"),
            Line2D([], [], ls="", marker="o", ms=8, color="0.5", mec="black", label="validation (large, outlined)"),
            Line2D([], [], color="black", lw=1.5, label="decision boundary (p = 0.5)"),
        ]
        per_row = max(1, min(len(handles), int(size * ncols // 2.4)))  # as many entries as fit the width
        fig.legend(handles=handles, loc="outside lower center", ncol=per_row, fontsize=9, frameon=False)
        background = "predicted probability of class 1" if n_classes == 2 else "predicted class"
        title = f"{run.dataset}: decision boundaries (background: {background})"
        fig.suptitle(title if nrows * ncols > 1 else f"{run.dataset}: decision boundary", fontsize=12)
        return save(fig, path)


def weight_magnitudes(run: Run) -> np.ndarray:
    """|w| of every weight matrix (biases excluded, like the weights/ metrics), from last.ckpt."""
    import torch

    state = torch.load(rundir.checkpoint(run.path), map_location="cpu", weights_only=True)["state_dict"]
    weights = [v.flatten() for k, v in state.items() if k.startswith("model.") and k.endswith(".weight")]
    return torch.cat(weights).abs().double().numpy()


def weight_histograms(groups: Groups, path: Path) -> Path | None:
    """Histogram of |w| per regularizer at its largest λ (smallest seed), exact zeros counted apart on the left."""
    magnitudes: dict[str, tuple[float, np.ndarray]] = {}
    for reg in regularizers_of(groups):
        lam = max(strength for r, strength in groups if r == reg)
        run = smallest_seed(groups[(reg, lam)])
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
    run = first_run(groups)
    with new_figure(1, 2, figsize=(11, 5), sharey=True, gridspec_kw={"width_ratios": [1, 5]}) as (fig, (az, ah)):
        for i, (reg, (lam, w)) in enumerate(magnitudes.items()):
            c = look(reg).color
            zeros = int((w == 0).sum())
            az.bar(i, zeros, facecolor=to_rgba(c, 0.6), edgecolor=darker(c, 0.3), hatch=look(reg).hatch, width=0.7)
            offset = {"xytext": (0, 2), "textcoords": "offset points"}
            az.annotate(f"{zeros}", (i, max(zeros, 1)), **offset, ha="center", fontsize=8)
            text = f"{legend_name(reg, lam)} ({zeros} exact zeros, {zeros / len(w):.2%})"
            ah.hist(w[w > 0], bins=bins, histtype="step", lw=2, ls=look(reg).linestyle, color=c, label=text)
        az.set(yscale="log", ylim=(0.8, None), title="w = 0 exactly", ylabel="number of weights (log scale)")
        az.set_xticks(range(len(magnitudes)), [look(reg).label for reg in magnitudes], rotation=45, ha="right")
        ah.set(xscale="log", xlabel="|w| (log-spaced bins)", title="|w| > 0")
        threshold = run.sparsity_threshold
        if math.isfinite(threshold) and threshold > 0:
            text = f'|w| = {format_number(threshold)} ("small" below)'
            ah.axvline(threshold, color="0.3", ls=(0, (1, 2)), lw=1, label=text)
        ah.legend(fontsize=8, loc="upper left")
        ah.grid(alpha=0.3)
        for axis in (ah.xaxis, az.yaxis):  # decades only: log axes' minor ticks were 60% of drawing this figure
            axis.set_minor_locator(NullLocator())
            axis.set_major_formatter(FuncFormatter(decade))
        which = "largest λ of each regularizer" if len(groups) > 1 else f"seed {run.seed}"
        fig.suptitle(f"{run.dataset}: weight magnitudes ({which}; weight matrices, no biases)")
        return save(fig, path)


def learning_curves(groups: Groups, path: Path) -> Path | None:
    """Training (dashed) and validation (solid) data loss per epoch (metrics.csv), smallest seed: per
    regularizer its best λ by mean validation score (plain) and its largest λ (darker, with markers)."""
    run = first_run(groups)
    best = best_strengths(groups, f"val/{run.score}")
    picks: dict[str, list[tuple[str, Run]]] = {}
    for reg in regularizers_of(groups):
        lams = sorted(lam for r, lam in groups if r == reg)
        largest = " (best, largest)" if best.get(reg) == lams[-1] else " (largest)"
        notes = {best[reg]: " (best)", lams[-1]: largest} if len(lams) > 1 else {lams[-1]: ""}
        for lam, note in notes.items():
            shown = smallest_seed(groups[(reg, lam)])
            text = "" if reg in STRENGTH_UNUSED else f"λ={format_number(lam)}{note}"
            if (shown.path / rundir.METRICS_CSV).is_file():
                picks.setdefault(reg, []).append((text, shown))
            else:
                warn(f"{shown.name}: not in the learning curves (no metrics.csv)")
    if not picks:
        return None
    with panels(len(picks), 4, (4.8, 3.8)) as (fig, axes):
        for ax, (reg, shown_runs) in zip(axes.flat, picks.items()):
            for i, (text, shown) in enumerate(shown_runs):
                rows = rundir.read_metrics_csv(shown.path)
                epochs = [r["epoch"] + 1 for r in rows]
                c = look(reg).color if i == 0 else darker(look(reg).color)
                style = {"marker": look(reg).marker, "ms": 4, "markevery": max(1, len(rows) // 8)} if i else {}
                for split, ls, lw in (("val", "-", 1.8), ("train", "--", 1.4)):
                    losses = [r.get(f"{split}/loss", math.nan) for r in rows]
                    ax.plot(epochs, losses, ls, color=c, lw=lw, label=f"{split} {text}", **style)
            panel_title(ax, reg)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="best")
        for ax in axes[:, 0]:
            ax.set_ylabel("data loss (no penalty)")
        fig.suptitle(f"{run.dataset}: learning curves\n(solid: validation, dashed: training; smallest seed)")
        return save(fig, path)


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
