"""scikit-learn estimators on reglab's one engine: `fit` composes the config `reglab-train` would
run (`reglab.api.run`), hands it the arrays as `data=file` data held in memory, and loads the
trained member back (`reglab.load_run`). `Pipeline`, `clone`, `GridSearchCV` and `cross_val_score`
hold them like any estimator.

The CV variants train every λ × fold as members of one stack (folds of equal size; folds of other
sizes get a stack each), pick the λ of the best mean validation score (`best_strength_`) and
refit on all the data, like `LassoCV`. `log_dir=None`: the runs are written to a temporary
directory, removed when `fit` returns, so nothing stays on disk; else each fit writes a run
directory under `log_dir` (`run_dir_`).
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from reglab.api import run
from reglab.runs import load_run
from reglab.science import files

__all__ = [
    "RegularizedMLPClassifier",
    "RegularizedMLPClassifierCV",
    "RegularizedMLPRegressor",
    "RegularizedMLPRegressorCV",
]
QUIET = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
TARGET = "__target__"  # the target's column in the table handed over: no feature is named so


@contextmanager
def _run_dir(log_dir: str | Path | None, name: str):  # noqa: ANN202
    """A fresh run directory under `log_dir`, or a temporary one removed afterwards."""
    if log_dir is not None:
        yield Path(log_dir) / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}_{name}"
        return
    with tempfile.TemporaryDirectory(prefix="reglab-") as tmp:
        yield Path(tmp) / name


class _RegularizedMLP(BaseEstimator):
    """What the estimators share: the parameters, the config they compose, predicting."""

    def __init__(
        self,
        regularizer: str = "l1",
        strength: float = 1e-4,
        hidden: Sequence[int] = (128, 128),
        epochs: int = 100,
        batch_size: int | None = 32,
        lr: float = 1e-3,
        random_state: int | None = 0,
        log_dir: str | None = None,
        overrides: Sequence[str] = (),
    ) -> None:
        self.regularizer, self.strength, self.hidden, self.epochs = regularizer, strength, hidden, epochs
        self.batch_size, self.lr, self.random_state, self.log_dir = batch_size, lr, random_state, log_dir
        self.overrides = overrides

    def _config(self, strength: Any, task: str, seed: int) -> list[str]:
        """The overrides of `reglab-train` that train this estimator (`strength`: one λ or a list)."""
        lam = f"[{','.join(repr(float(s)) for s in strength)}]" if isinstance(strength, list) else repr(float(strength))
        batch = "null" if self.batch_size is None else self.batch_size
        return [
            f"regularizer={self.regularizer}",
            f"regularizer.strength={lam}",
            f"model.hidden=[{','.join(str(int(w)) for w in self.hidden)}]",
            f"trainer.max_epochs={self.epochs}",
            f"data.batch_size={batch}",
            f"optimizer.lr={self.lr!r}",
            f"seed={seed}",
            f"data.task={task}",
            *QUIET,
            *self.overrides,
        ]

    def _validated(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, str]:
        """(X, y, task) checked as scikit-learn checks them; `classes_` for a classifier."""
        X, y = validate_data(self, X, y, y_numeric=not is_classifier(self))
        if not is_classifier(self):
            return X, y.astype(np.float64), "regression"
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        return X, y, "binary" if len(self.classes_) <= 2 else "multiclass"

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _fit_runs(self, X: np.ndarray, y: np.ndarray, folds: list, overrides: list[str], name: str) -> list[Any]:
        """Train `overrides` on (X, y) split into `folds` (`data.fold`): one run of reglab's driver.
        Returns each member's trained run (`reglab.load_run`; its metrics.json record: `.record`)."""
        path, _ = files.register(pd.DataFrame(X, columns=self._columns()), y, TARGET, folds=folds)
        fold = "0" if name == "fit" else f"[{','.join(map(str, range(len(folds))))}]"  # a CV's: a member key
        try:
            with _run_dir(self.log_dir, name) as run_dir:
                records = run(["data=file", f"data.path={path}", f"data.fold={fold}", *overrides], run_dir)
                failed = [r for r in records if r["status"] == "failed"]  # a crash, retried: no model
                if failed:
                    raise RuntimeError(f"reglab could not train {len(failed)} member(s): {failed[0].get('error')}")
                members = [d for d in sorted(run_dir.iterdir()) if (d / "metrics.json").is_file()]
                trained = [load_run(d) for d in members] if len(records) > 1 else [load_run(run_dir)]
                if self.log_dir is not None:
                    self.run_dir_ = str(run_dir)
        finally:
            files.unregister(path)
        return trained

    def _columns(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(c) for c in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)]

    def _trained(self) -> Any:
        check_is_fitted(self)
        return self.run_

    def _inputs(self, X: Any) -> np.ndarray:
        return validate_data(self, X, reset=False)


class _Single(_RegularizedMLP):
    def fit(self, X: Any, y: Any) -> _Single:
        """Train one network on all of (X, y): a run of K = 1 member (its val and test splits are X too)."""
        X, y, task = self._validated(X, y)
        everything = np.arange(len(y))
        overrides = self._config(self.strength, task, self._seed())
        (self.run_,) = self._fit_runs(X, y, [(everything, everything)], overrides, "fit")
        self.record_ = self.run_.record
        if self.record_["status"] != "completed":  # diverged: GridSearchCV scores it error_score
            raise RuntimeError(f"training diverged at epoch {self.record_.get('diverged_epoch')}; lower lr or λ")
        return self


class RegularizedMLPClassifier(ClassifierMixin, _Single):
    """An MLP classifier trained by reglab under `regularizer` with λ = `strength` (README,
    "Conventions"): `hidden` widths, `epochs`, `batch_size` (None: full batch), Adam's `lr`,
    `random_state` (reglab's seed), `overrides` (any other `reglab-train` override)."""

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._trained().predict_proba(self._inputs(X))

    def predict(self, X: Any) -> np.ndarray:
        index = self.predict_proba(X).argmax(1)  # first: it says NotFittedError before fit
        return self.classes_[index]


class RegularizedMLPRegressor(RegressorMixin, _Single):
    """An MLP regressor trained by reglab (the parameters of `RegularizedMLPClassifier`)."""

    def predict(self, X: Any) -> np.ndarray:
        return self._trained().predict(self._inputs(X))


class _CrossValidated(_RegularizedMLP):
    """Every λ of `strengths` on every fold of `cv` in one stack, then a refit at the best λ."""

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

    def fit(self, X: Any, y: Any) -> _CrossValidated:
        """Score every λ on every fold (one stack per size of fold), then refit at the best λ on all of (X, y)."""
        X, y, task = self._validated(X, y)
        seed, lams = self._seed(), [float(s) for s in self.strengths]
        folds = list(check_cv(self.cv, y, classifier=is_classifier(self)).split(X, y))
        by_size: dict[tuple[int, int], list[int]] = {}  # one stack per size of fold: usually one for all
        for i, (train, val) in enumerate(folds):
            by_size.setdefault((len(train), len(val)), []).append(i)
        scores, paths = np.full((len(lams), len(folds)), np.nan), {}
        for j, group in enumerate(by_size.values()):
            overrides = self._config(lams, task, seed)
            for trained in self._fit_runs(X, y, [folds[i] for i in group], overrides, f"cv-{j}"):
                record = trained.record
                k, i = lams.index(float(record["strength"])), group[int(record["config"]["data"]["fold"])]
                if record["status"] == "completed":  # a diverged member scores NaN, as GridSearchCV's error_score
                    scores[k, i] = record["metrics"]["val/r2" if task == "regression" else "val/acc"]
                paths[k, i] = record
        self.cv_results_ = self._results(lams, scores)
        self.path_ = self._path(lams, len(folds), paths)
        self.best_index_ = int(np.argmax(np.nan_to_num(scores.mean(1), nan=-np.inf)))
        self.best_strength_ = lams[self.best_index_]
        single = RegularizedMLPRegressor if task == "regression" else RegularizedMLPClassifier
        params = {k: v for k, v in self.get_params().items() if k not in ("strengths", "cv")} | {"random_state": seed}
        self.best_estimator_ = single(strength=self.best_strength_, **params).fit(X, y)
        self.run_, self.record_ = self.best_estimator_.run_, self.best_estimator_.record_
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
    """`RegularizedMLPClassifier` with λ chosen by cross-validated accuracy among `strengths` (folds: `cv`)."""

    predict_proba = RegularizedMLPClassifier.predict_proba
    predict = RegularizedMLPClassifier.predict


class RegularizedMLPRegressorCV(RegressorMixin, _CrossValidated):
    """`RegularizedMLPRegressor` with λ chosen by cross-validated R² among `strengths` (folds: `cv`)."""

    predict = RegularizedMLPRegressor.predict
