"""Issue 20: a λ grid cross-validated in one stack beside scikit-learn's GridSearchCV over the plain estimator.

    python scripts/bench_cv.py [--repeat 3] [--threads 1] [--quick]

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


def main() -> None:
    args = parse()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for task in ("classification", "regression"):
        X, y, settings, grid, folds = problem(task, args.quick)
        fits = sides(task, X, y, settings, grid, folds)
        import reglab

        warm = reglab.RegularizedMLPClassifier if task == "classification" else reglab.RegularizedMLPRegressor
        warm(**settings).fit(X[:40], y[:40])  # imports and first calls, outside the clock
        seconds: dict[str, list[float]] = {side: [] for side in fits}
        results = {}
        for _ in range(args.repeat):
            for side, fit in fits.items():
                started = time.perf_counter()
                results[side] = fit()
                seconds[side].append(time.perf_counter() - started)
        (lam_a, score_a), (lam_b, score_b) = results["GridSearchCV"], results["CV estimator"]
        gap = float(np.max(np.abs(score_a - score_b)))
        median = {side: statistics.median(s) for side, s in seconds.items()}
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
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
