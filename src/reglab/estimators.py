"""scikit-learn estimators on reglab's one engine: `fit` composes the config `reglab-train` would
run (`reglab.api.run`), hands it the arrays as `data=file` data held in memory, and loads the
trained member back (`reglab.load_run`). `Pipeline`, `clone`, `GridSearchCV` and `cross_val_score`
hold them like any estimator.

Parameters are checked under their own names before anything is composed (`_parameter_constraints`,
as scikit-learn's `MLPClassifier` checks its own): `strength=-1` is refused as `strength`, in one
line. A plain fit evaluates every epoch (`loss_curve_`, `validation_scores_`: one value per epoch);
the CV stack evaluates once, at its end.

The CV variants train every λ × fold as members of one stack (folds of equal size; folds of other
sizes get a stack each), pick the λ of the best mean validation score (`best_strength_`) and
refit on all the data, like `LassoCV`. `log_dir=None`: trained in memory (`reglab.api.train_in_memory`),
nothing written to disk; else each fit writes a run directory under `log_dir` (`run_dir_`).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.model_selection import check_cv, train_test_split
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from reglab.api import run, train_in_memory
from reglab.errors import one_line
from reglab.runs import load_run
from reglab.science import files
from reglab.science.conventions import REGULARIZER_NAMES
from reglab.tables import score_key

__all__ = [
    "RegularizedMLPClassifier",
    "RegularizedMLPClassifierCV",
    "RegularizedMLPRegressor",
    "RegularizedMLPRegressorCV",
]
# No progress bar; no periodic checkpoint: nothing resumes an estimator's run (its last.ckpt is still written).
QUIET = [
    "logger=none",
    "callbacks.progress_bar=null",
    "trainer.enable_progress_bar=false",
    "callbacks.model_checkpoint=null",
]
TARGET = "__target__"  # the target's column in the table handed over: no feature is named so


def _run_dir(log_dir: str | os.PathLike, name: str) -> Path:
    """A fresh run directory under `log_dir`."""
    return Path(log_dir) / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{secrets.token_hex(3)}_{name}"


def _refuse(estimator: BaseEstimator, name: str, must: str, value: Any) -> None:
    """A parameter refused as scikit-learn's own checks word it, in one line."""
    raise InvalidParameterError(
        f"The {name!r} parameter of {type(estimator).__name__} must be {must}. Got {value!r} instead."
    )


class _RegularizedMLP(BaseEstimator):
    """What the estimators share: the parameters, their checks, the config they compose, predicting."""

    _parameter_constraints: dict[str, list[Any]] = {
        "regularizer": [StrOptions(set(REGULARIZER_NAMES.values()))],
        "hidden": ["array-like"],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "log_dir": [str, os.PathLike, None],
        "overrides": [list, tuple],
    }

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

    def _validate_params(self) -> None:
        """scikit-learn's checks of `_parameter_constraints`, then what they cannot say: each width and override."""
        super()._validate_params()
        if any(not isinstance(w, Integral) or isinstance(w, bool) or w < 1 for w in self.hidden):
            _refuse(self, "hidden", "a sequence of ints >= 1 (() for a linear model)", self.hidden)
        if any(not isinstance(o, str) for o in self.overrides):
            _refuse(self, "overrides", "a sequence of str (reglab-train overrides)", self.overrides)

    def _config(self, strength: Any, task: str, seed: int, every_epoch: bool, extra: Sequence[str] = ()) -> list[str]:
        """The overrides of `reglab-train` that train this estimator (`strength`: one λ or a list),
        evaluated after every epoch or only after the last; `extra` before the user's `overrides`."""
        lam = f"[{','.join(repr(float(s)) for s in strength)}]" if isinstance(strength, list) else repr(float(strength))
        batch = "null" if self.batch_size is None else self.batch_size
        return [
            f"regularizer={self.regularizer}",
            f"regularizer.strength={lam}",
            f"model.hidden=[{','.join(str(int(w)) for w in self.hidden)}]",
            f"trainer.max_epochs={self.epochs}",
            f"trainer.check_val_every_n_epoch={1 if every_epoch else self.epochs}",
            f"data.batch_size={batch}",
            f"optimizer.lr={self.lr!r}",
            f"seed={seed}",
            f"data.task={task}",
            *QUIET,
            *extra,
            *self.overrides,
        ]

    def _validated(self, X: Any, y: Any, reset: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
        """(X, y, task) checked as scikit-learn checks them; `classes_` for a classifier. Not `reset`
        (a warm start): the features and classes of the previous fit."""
        X, y = validate_data(self, X, y, y_numeric=not is_classifier(self), reset=reset)
        if not is_classifier(self):
            return X, y.astype(np.float64), "regression"
        check_classification_targets(y)
        classes, previous = np.unique(y), getattr(self, "classes_", ())
        if not reset and not np.array_equal(classes, previous):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                f"Previously got {previous}, `y` has {classes}"
            )
        self.classes_: np.ndarray = classes
        return X, y, "binary" if len(classes) <= 2 else "multiclass"

    def _seed(self) -> int:
        if isinstance(self.random_state, (int, np.integer)) and not isinstance(self.random_state, bool):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(2**31 - 1))

    def _train(
        self,
        X: np.ndarray,
        y: np.ndarray,
        folds: list,
        overrides: list[str],
        name: str,
        load: str | None = None,
        init: list[dict] | None = None,
    ) -> tuple[list[dict[str, Any]], Any, pd.DataFrame | None]:
        """Train `overrides` on (X, y) split into `folds` (`data.fold`), from `init` weights if given: one
        run of reglab's driver. Returns each member's metrics.json record and, with `load` ("last" or
        "best") and a completed run of one member, its trained run (`reglab.load_run`) and metrics.csv."""
        path, _ = files.register(pd.DataFrame(X, columns=self._columns()), y, TARGET, folds=folds)
        fold = "0" if name == "fit" else f"[{','.join(map(str, range(len(folds))))}]"  # a CV's: a member key
        trained, history = None, None
        overrides = ["data=file", f"data.path={path}", f"data.fold={fold}", *overrides]
        try:
            if self.log_dir is None:  # in memory: nothing written, nothing read back
                runs = _run(overrides, None, init)
                records = [r.record for r in runs]
                if load is not None and records[0]["status"] == "completed":
                    trained = runs[0].best if load == "best" else runs[0]
                    history = pd.DataFrame(records[0]["history"])
                return records, trained, history
            run_dir = _run_dir(self.log_dir, name)
            records = _run(overrides, run_dir, init)
            failed = [r for r in records if r["status"] == "failed"]  # a crash, retried: no model
            if failed:
                raise RuntimeError(f"reglab could not train {len(failed)} member(s): {failed[0].get('error')}")
            if load is not None and records[0]["status"] == "completed":
                trained, history = load_run(run_dir, load), pd.read_csv(run_dir / "metrics.csv")
            self.run_dir_ = str(run_dir)
        finally:
            files.unregister(path)
        return records, trained, history

    def _columns(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        return [str(c) for c in names] if names is not None else [f"x{j}" for j in range(self.n_features_in_)]

    def _trained(self) -> Any:
        check_is_fitted(self)
        return self.run_

    def _inputs(self, X: Any) -> np.ndarray:
        return validate_data(self, X, reset=False)


def _run(overrides: list[str], run_dir: Path | None, init: list[dict] | None) -> list[Any]:
    """`reglab.api.run` into `run_dir` (its records), or `train_in_memory` where it is None (its trained
    runs), with Hydra's refusal of an `overrides` entry (a key or choice that does not exist) said in
    one line, as a ValueError like the engine's own ConfigError."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return run(overrides, run_dir, init=init) if run_dir is not None else train_in_memory(overrides, init=init)
    except (HydraException, OmegaConfBaseException) as e:
        raise ValueError(f"overrides: {one_line(e)}") from None


class _Single(_RegularizedMLP):
    """One network on all of (X, y), or on all but `validation_fraction` of it with `early_stopping`;
    with `warm_start`, from the weights the previous fit ended with."""

    _parameter_constraints = {
        **_RegularizedMLP._parameter_constraints,
        "strength": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
    }

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
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        warm_start: bool = False,
    ) -> None:
        super().__init__(regularizer, strength, hidden, epochs, batch_size, lr, random_state, log_dir, overrides)
        self.early_stopping, self.validation_fraction, self.warm_start = early_stopping, validation_fraction, warm_start

    def _validate_params(self) -> None:
        super()._validate_params()
        if _stops_early(self.overrides) and not self.early_stopping:
            raise InvalidParameterError(
                f"overrides={list(self.overrides)!r}: early stopping would watch the training rows (early_stopping="
                "False trains on all of them); set early_stopping=True, which holds out validation_fraction of the rows"
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> _Single:
        """Train one network, a run of K = 1 member, evaluated every epoch: on all of (X, y), or with
        `early_stopping` on all but a `validation_fraction` of the rows (stratified for a classifier,
        drawn from `random_state`), stopped when its score there has not improved for 10 epochs
        (`callbacks=early_stopping`), and kept at its best epoch there. With `warm_start`, a second
        fit starts from the weights the first kept (its Adam state starts afresh, as MLPClassifier's)."""
        warm = self.warm_start and hasattr(self, "run_")
        X, y, task = self._validated(X, y, reset=not warm)
        seed, rows = self._seed(), np.arange(len(y))
        if self.early_stopping:
            fraction, stratify = self.validation_fraction, y if is_classifier(self) else None
            train, val = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
        else:
            train = val = rows  # evaluated on the training rows: only loss_curve_ reads them
        extra = _early_stopping(task) if self.early_stopping else []
        overrides = self._config(self.strength, task, seed, every_epoch=True, extra=extra)
        init = [self._previous_weights()] if warm else None
        load = "best" if self.early_stopping else "last"
        (record,), trained, history = self._train(X, y, [(train, val)], overrides, "fit", load, init)
        if trained is None:  # diverged: GridSearchCV scores it error_score
            raise RuntimeError(f"training diverged at epoch {record.get('diverged_epoch')}; lower lr or λ")
        self.run_, self.record_ = trained, trained.record
        self._set_curves(history, task)
        return self

    def _previous_weights(self) -> dict[str, Any]:
        """The weights the previous fit kept, refused in one line if this fit's network has other shapes."""
        previous = self.run_.model
        if list(previous.widths) != [int(w) for w in self.hidden]:
            raise ValueError(
                f"warm_start=True: hidden={tuple(self.hidden)} differs from the previous fit's "
                f"{tuple(previous.widths)}; fit with warm_start=False, or with the previous widths"
            )
        return previous.state_dict()

    def _set_curves(self, history: pd.DataFrame, task: str) -> None:
        """MLPClassifier's fitted attributes, one value per epoch: `loss_curve_` (the training objective,
        data loss + penalty, on all training rows after each epoch; scikit-learn's is the mean over the
        epoch's mini-batches), `best_loss_` or, with `early_stopping`, `validation_scores_` (accuracy,
        or R²) and `best_validation_score_` (that of the weights kept)."""
        self.n_iter_ = int(self.record_["epochs"])
        self.loss_curve_ = history["train/objective"].tolist()
        if not self.early_stopping:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = min(self.loss_curve_), None, None
            return
        self.validation_scores_ = history[score_key(task)].tolist()
        self.best_loss_, self.best_validation_score_ = None, max(self.validation_scores_)


def _stops_early(overrides: Sequence[str]) -> bool:
    """Whether `overrides` choose or set early stopping (`callbacks=early_stopping`, `callbacks.early_stopping.…`)."""
    return any(o.lstrip("+~").startswith("callbacks") and "early_stopping" in o for o in overrides)


def _early_stopping(task: str) -> list[str]:
    """reglab's early stopping (it keeps each member's best weights), on the score MLPClassifier watches."""
    score, keys = score_key(task), ("early_stopping", "best_checkpoint")
    return ["callbacks=early_stopping", *(f"callbacks.{k}.{v}" for k in keys for v in (f"monitor={score}", "mode=max"))]


class RegularizedMLPClassifier(ClassifierMixin, _Single):
    """An MLP classifier trained by reglab under `regularizer` with λ = `strength` (README,
    "Conventions"): `hidden` widths, `epochs`, `batch_size` (None: full batch), Adam's `lr`,
    `early_stopping` on a held-out `validation_fraction`, `warm_start`, `random_state` (reglab's seed),
    `overrides` (any other `reglab-train` override). Fitted: `n_iter_`, `loss_curve_`, `best_loss_`,
    `validation_scores_`, `best_validation_score_` as MLPClassifier's; `run_` (`reglab.load_run`)."""

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
        """Score every λ on every fold (one stack per size of fold, evaluated once, after its last
        epoch), then refit at the best λ on all of (X, y)."""
        X, y, task = self._validated(X, y)
        seed, lams = self._seed(), [float(s) for s in self.strengths]
        folds = list(check_cv(self.cv, y, classifier=is_classifier(self)).split(X, y))
        by_size: dict[tuple[int, int], list[int]] = {}  # one stack per size of fold: usually one for all
        for i, (train, val) in enumerate(folds):
            by_size.setdefault((len(train), len(val)), []).append(i)
        scores, paths = np.full((len(lams), len(folds)), np.nan), {}
        for j, group in enumerate(by_size.values()):
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
