"""Issues 20 and 27: a λ grid cross-validated in one stack beside scikit-learn's GridSearchCV.

    python scripts/bench_cv.py [--parts grid,peer] [--repeat 3] [--threads 1] [--quick]

Both sides run in this process, after one warm-up fit of each estimator (imports and first-call costs
paid before the clock starts); the sides are interleaved `--repeat` times and the table gives each
side's median wall time.

    GridSearchCV   GridSearchCV(RegularizedMLPClassifier(...), {"strength": grid}, cv=KFold(5)): one
                   reglab fit per λ and fold, one after another, then a refit at the best λ
    CV estimator   RegularizedMLPClassifierCV(strengths=grid, cv=KFold(5)): every λ × fold as the
                   members of one stack, then the same refit

Same data (make_classification: 500 samples, 20 features, 5 informative), network (one hidden layer
of 32), L1, Adam lr 0.01, 40 epochs of batches of 32, seed 0; the regression rows use
make_regression and the Regressor pair. "same λ": whether both chose the same λ; "max Δ score": the
largest difference between their mean validation scores (accuracy, R²) over the grid: float32
rounding of a stacked matmul against a single one, grown over the epochs. `--threads N` (default 1)
sets torch's threads.

`--parts peer` (issue 27, goal 3) puts reglab beside scikit-learn's own MLP on `load_digits`
(standardised), one hidden layer of 64, 30 epochs of batches of 64, Adam lr 1e-3, L2 (reglab's λ =
α / (2·64), scikit-learn's `alpha` in reglab's convention, README "Conventions"):

    CV             GridSearchCV(MLPClassifier, {"alpha": 4 values}, cv=StratifiedKFold(5)), refit
                   included, beside RegularizedMLPClassifierCV(strengths=the same 4, cv=the same folds)
    one plain fit  MLPClassifier.fit beside RegularizedMLPClassifier.fit on all 1,797 rows

Both warm (one fit of each before the clock), interleaved, medians. Goals: CV ≤ 0.5×, one fit ≤ 2×.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="toy size: 3 λ × 2 folds, 3 epochs (a smoke test)")
    parser.add_argument("--parts", default="grid,peer", help="grid (reglab's two ways), peer (scikit-learn's MLP)")
    return parser.parse_args()


def problem(task: str, quick: bool) -> tuple[np.ndarray, np.ndarray, dict, list[float], int]:
    from sklearn.datasets import make_classification, make_regression

    n = 120 if quick else 500
    if task == "classification":
        X, y = make_classification(n, 20, n_informative=5, n_redundant=0, random_state=0)
    else:
        X, y = make_regression(n, 20, n_informative=5, noise=10.0, random_state=0)
    settings = {"regularizer": "l1", "hidden": (32,), "epochs": 3 if quick else 40, "lr": 0.01, "batch_size": 32}
    grid = [0.0, 1e-3, 1e-2] if quick else [0.0, *np.logspace(-5, -1, 8).tolist()]
    return X, y, settings, grid, 2 if quick else 5


def sides(task: str, X: np.ndarray, y: np.ndarray, settings: dict, grid: list[float], folds: int) -> dict:
    """{side: a function that fits it and returns (chosen λ, mean validation scores)}."""
    from sklearn.model_selection import GridSearchCV, KFold

    import reglab

    plain = reglab.RegularizedMLPClassifier if task == "classification" else reglab.RegularizedMLPRegressor
    cv_class = reglab.RegularizedMLPClassifierCV if task == "classification" else reglab.RegularizedMLPRegressorCV
    splitter = KFold(folds, shuffle=True, random_state=0)

    def grid_search() -> tuple[float, np.ndarray]:
        search = GridSearchCV(plain(**settings), {"strength": grid}, cv=splitter).fit(X, y)
        return search.best_params_["strength"], np.asarray(search.cv_results_["mean_test_score"])

    def one_stack() -> tuple[float, np.ndarray]:
        est = cv_class(strengths=grid, cv=splitter, **settings).fit(X, y)
        return est.best_strength_, est.cv_results_["mean_test_score"].to_numpy()

    return {"GridSearchCV": grid_search, "CV estimator": one_stack}


def timed(fits: dict, repeat: int) -> tuple[dict[str, float], dict]:
    """{side: median seconds} over `repeat` interleaved calls of each side, and each side's last result."""
    seconds: dict[str, list[float]] = {side: [] for side in fits}
    results = {}
    for _ in range(repeat):
        for side, fit in fits.items():
            started = time.perf_counter()
            results[side] = fit()
            seconds[side].append(time.perf_counter() - started)
    return {side: statistics.median(s) for side, s in seconds.items()}, results


def grid_part(args: argparse.Namespace) -> None:
    rows = []
    for task in ("classification", "regression"):
        X, y, settings, grid, folds = problem(task, args.quick)
        fits = sides(task, X, y, settings, grid, folds)
        import reglab

        warm = reglab.RegularizedMLPClassifier if task == "classification" else reglab.RegularizedMLPRegressor
        warm(**settings).fit(X[:40], y[:40])  # imports and first calls, outside the clock
        median, results = timed(fits, args.repeat)
        (lam_a, score_a), (lam_b, score_b) = results["GridSearchCV"], results["CV estimator"]
        gap = float(np.max(np.abs(score_a - score_b)))
        rows.append(
            (
                task,
                f"{len(grid)} λ × {folds} folds",
                len(grid) * folds + 1,
                f"{median['GridSearchCV']:.2f}",
                f"{median['CV estimator']:.2f}",
                f"{median['GridSearchCV'] / median['CV estimator']:.1f}",
                "yes" if lam_a == lam_b else f"no ({format(lam_a, 'g')} vs {format(lam_b, 'g')})",
                f"{gap:.1e}",
            )
        )
    header = [
        "task",
        "grid",
        "fits (GridSearchCV)",
        "GridSearchCV s",
        "CV estimator s",
        "GridSearchCV / CV",
        "same λ",
        "max Δ score",
    ]
    print_table(header, rows)


def peer_part(args: argparse.Namespace) -> None:
    """reglab beside scikit-learn's MLPClassifier on digits: the CV of 4 λ × 5 folds, and one plain fit."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    import reglab

    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    epochs, batch, hidden, folds = (3, 64, (16,), 2) if args.quick else (30, 64, (64,), 5)
    alphas = [0.0, 1e-3, 1e-2, 1e-1]
    lams = [a / (2 * batch) for a in alphas]  # scikit-learn's alpha in reglab's λ (conventions: l2, sklearn_mlp)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=0)
    peer = MLPClassifier(hidden, batch_size=batch, max_iter=epochs, learning_rate_init=1e-3, random_state=0)
    ours = {"regularizer": "l2", "hidden": hidden, "epochs": epochs, "batch_size": batch, "lr": 1e-3}

    fits = {
        "scikit-learn CV": lambda: GridSearchCV(peer, {"alpha": alphas}, cv=splitter).fit(X, y),
        "reglab CV": lambda: reglab.RegularizedMLPClassifierCV(strengths=lams, cv=splitter, **ours).fit(X, y),
        "scikit-learn fit": lambda: MLPClassifier(**peer.get_params()).fit(X, y),
        "reglab fit": lambda: reglab.RegularizedMLPClassifier(strength=lams[1], **ours).fit(X, y),
    }
    fits["scikit-learn fit"](), fits["reglab fit"]()  # warm: imports and first calls, outside the clock
    median, _ = timed(fits, args.repeat)
    rows = []
    for what, side, goal in (("CV", "CV", 0.5), ("one plain fit", "fit", 2.0)):
        ratio = median[f"reglab {side}"] / median[f"scikit-learn {side}"]
        status = "met" if ratio <= goal else "not met"
        grid = f"{len(alphas)} λ × {folds} folds" if side == "CV" else "all rows"
        theirs, mine = median[f"scikit-learn {side}"], median[f"reglab {side}"]
        rows.append((what, grid, f"{theirs:.2f}", f"{mine:.2f}", f"{ratio:.2f}", f"≤ {goal}", status))
    print_table(["comparison", "grid", "scikit-learn s", "reglab s", "reglab / scikit-learn", "goal", "status"], rows)


def print_table(header: list[str], rows: list[tuple]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print()


def main() -> None:
    args = parse()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    if unknown := set(parts) - {"grid", "peer"}:
        raise SystemExit(f"--parts: {', '.join(sorted(unknown))} is not a part; choose grid, peer")
    if "grid" in parts:
        grid_part(args)
    if "peer" in parts:
        peer_part(args)


if __name__ == "__main__":
    main()
