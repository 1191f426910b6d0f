"""The cross-validated estimators: every λ × fold in one stack, then a refit at the best λ
(`reglab.estimators`)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import InvalidParameterError

from reglab.estimators.single import (
    RegularizedMLPClassifier,
    RegularizedMLPRegressor,
    _refuse,
    _RegularizedMLP,
    _stops_early,
)
from reglab.science.conventions import steps_per_epoch
from reglab.tables import score_key

__all__ = ["RegularizedMLPClassifierCV", "RegularizedMLPRegressorCV"]


class _CrossValidated(_RegularizedMLP):
    """Every λ of `strengths` on every fold of `cv` in one stack, then a refit at the best λ."""

    _parameter_constraints = {
        **_RegularizedMLP._parameter_constraints,
        "strengths": ["array-like"],
        "cv": ["cv_object"],
    }

    def __init__(
        self,
        regularizer: str = "l1",
        strengths: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2),
        cv: Any = 5,
        hidden: Sequence[int] = (128, 128),
        epochs: int = 100,
        batch_size: int | None = 32,
        lr: float = 1e-3,
        random_state: int | None = 0,
        log_dir: str | None = None,
        overrides: Sequence[str] = (),
    ) -> None:
        self.regularizer, self.strengths, self.cv, self.hidden, self.epochs = regularizer, strengths, cv, hidden, epochs
        self.batch_size, self.lr, self.random_state, self.log_dir = batch_size, lr, random_state, log_dir
        self.overrides = overrides

    def _validate_params(self) -> None:
        super()._validate_params()
        lams = np.asarray(self.strengths, dtype=object).ravel()
        bad = [s for s in lams if not isinstance(s, Real) or isinstance(s, bool) or not 0 <= float(s) < np.inf]
        if not len(lams) or bad:
            _refuse(self, "strengths", "a non-empty sequence of floats in the range [0.0, inf)", self.strengths)
        if _stops_early(self.overrides):  # its val rows are the rows each fold is scored on
            raise InvalidParameterError(
                f"overrides={list(self.overrides)!r}: early stopping would watch the rows each fold is scored on; "
                "the CV variants take no early stopping"
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> _CrossValidated:
        """Score every λ on every fold (one stack, evaluated once, after its last epoch; folds of unequal
        size padded, `RegLabDataModule`; one stack per number of steps an epoch where folds differ in
        it), then refit at the best λ on all of (X, y)."""
        X, y, task = self._validated(X, y)
        seed, lams = self._seed(), [float(s) for s in self.strengths]
        folds = list(check_cv(self.cv, y, classifier=is_classifier(self)).split(X, y))
        by_steps: dict[int, list[int]] = {}  # one stack per number of steps an epoch: usually one for all
        for i, (train, _) in enumerate(folds):
            by_steps.setdefault(steps_per_epoch(len(train), self.batch_size), []).append(i)
        scores, paths = np.full((len(lams), len(folds)), np.nan), {}
        for j, group in enumerate(by_steps.values()):
            overrides = self._config(lams, task, seed, every_epoch=False)
            records, _, _ = self._train(X, y, [folds[i] for i in group], overrides, f"cv-{j}")
            for record in records:
                k, i = lams.index(float(record["strength"])), group[int(record["config"]["data"]["fold"])]
                if record["status"] == "completed":  # a diverged member scores NaN, as GridSearchCV's error_score
                    scores[k, i] = record["metrics"][score_key(task)]
                paths[k, i] = record
        self.cv_results_ = self._results(lams, scores)
        self.path_ = self._path(lams, len(folds), paths)
        self.best_index_ = int(np.argmax(np.nan_to_num(scores.mean(1), nan=-np.inf)))
        self.best_strength_, self.best_score_ = lams[self.best_index_], float(scores.mean(1)[self.best_index_])
        single = RegularizedMLPRegressor if task == "regression" else RegularizedMLPClassifier
        params = {k: v for k, v in self.get_params().items() if k not in ("strengths", "cv")} | {"random_state": seed}
        self.best_estimator_ = best = single(strength=self.best_strength_, **params).fit(X, y)
        self.run_, self.record_, self.n_iter_, self.loss_curve_ = (
            best.run_,
            best.record_,
            best.n_iter_,
            best.loss_curve_,
        )
        return self

    @staticmethod
    def _results(lams: list[float], scores: np.ndarray) -> pd.DataFrame:
        """Per λ, as `GridSearchCV.cv_results_` names them: each fold's validation score, mean, std, rank."""
        table = pd.DataFrame({"param_strength": lams, "params": [{"strength": lam} for lam in lams]})
        for i in range(scores.shape[1]):
            table[f"split{i}_test_score"] = scores[:, i]
        table["mean_test_score"], table["std_test_score"] = scores.mean(1), scores.std(1)
        table["rank_test_score"] = pd.Series(-scores.mean(1)).rank(method="min").astype(int).to_numpy()
        return table

    def _path(self, lams: list[float], n_folds: int, records: dict) -> pd.DataFrame:
        """Per λ, means over the folds: the weights' sparsity and size, each input's first-layer L1 norm."""
        rows = []
        for k, lam in enumerate(lams):
            fold = [records[k, i] for i in range(n_folds)]
            row = {"strength": lam} | {
                key: float(np.mean([r["metrics"].get(f"weights/{key}", np.nan) for r in fold]))
                for key in ("zero_frac", "small_frac", "l1")
            }
            norms = np.mean([r["feature_l1"] for r in fold], axis=0)
            rows.append(row | dict(zip(self._columns(), norms.tolist())))
        return pd.DataFrame(rows)


class RegularizedMLPClassifierCV(ClassifierMixin, _CrossValidated):
    """`RegularizedMLPClassifier` with λ chosen by cross-validated accuracy among `strengths` (folds: `cv`);
    `best_score_` is the mean validation accuracy of `best_strength_`."""

    predict_proba = RegularizedMLPClassifier.predict_proba
    predict = RegularizedMLPClassifier.predict


class RegularizedMLPRegressorCV(RegressorMixin, _CrossValidated):
    """`RegularizedMLPRegressor` with λ chosen by cross-validated R² among `strengths` (folds: `cv`);
    `best_score_` is the mean validation R² of `best_strength_`."""

    predict = RegularizedMLPRegressor.predict
