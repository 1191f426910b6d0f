"""The plain estimators and what every estimator shares (parameters, the config, training, predicting):
`reglab.estimators`."""

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
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from reglab import rundir
from reglab.api import run, train_in_memory
from reglab.errors import one_line
from reglab.runs import load_run
from reglab.science import files
from reglab.science.conventions import REGULARIZER_NAMES
from reglab.tables import score_key

__all__ = ["RegularizedMLPClassifier", "RegularizedMLPRegressor"]
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
                trained, history = load_run(run_dir, load), pd.read_csv(run_dir / rundir.METRICS_CSV)
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
