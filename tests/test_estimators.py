"""The scikit-learn estimators are reglab's one engine: the same numbers as `reglab-train` on the
same rows, scikit-learn's own estimator checks, and a CV that equals `GridSearchCV` over the plain
estimator, fold by fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks

import reglab
from reglab.api import run
from reglab.estimators import (
    RegularizedMLPClassifier,
    RegularizedMLPClassifierCV,
    RegularizedMLPRegressor,
    RegularizedMLPRegressorCV,
)

TINY = {"hidden": (8,), "epochs": 15, "lr": 0.02, "batch_size": 32}
# Checks scikit-learn's estimators must pass that these fail by design, each with its reason.
EXPECTED_FAILURES: dict[str, str] = {}


def test_import_reglab_stays_light_and_exports_the_estimators_lazily():
    import subprocess
    import sys

    code = "import sys, reglab; assert not {'sklearn', 'torch'} & set(sys.modules); reglab.RegularizedMLPRegressorCV"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600).returncode == 0
    assert reglab.RegularizedMLPClassifier is RegularizedMLPClassifier
    with pytest.raises(AttributeError):
        reglab.NoSuchEstimator  # noqa: B018


@pytest.mark.slow
@parametrize_with_checks(
    [RegularizedMLPClassifier(**TINY), RegularizedMLPRegressor(**TINY)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILURES,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


ESTIMATORS = [RegularizedMLPClassifier, RegularizedMLPRegressor, RegularizedMLPClassifierCV, RegularizedMLPRegressorCV]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_has_a_constraint_and_a_wrong_type_is_refused_under_its_own_name(cls):
    """scikit-learn's own check: `_parameter_constraints` covers every parameter of `__init__`, and a
    value of no allowed type raises InvalidParameterError naming that parameter, before training."""
    check_param_validation(cls.__name__, cls(hidden=(4,), epochs=2))


@pytest.mark.parametrize(
    ("cls", "params", "named"),
    [
        (RegularizedMLPClassifier, {"strength": -1}, "strength"),
        (RegularizedMLPRegressor, {"strength": float("nan")}, "strength"),
        (RegularizedMLPClassifier, {"epochs": 0}, "epochs"),
        (RegularizedMLPClassifier, {"batch_size": 0}, "batch_size"),
        (RegularizedMLPClassifier, {"lr": float("inf")}, "lr"),
        (RegularizedMLPClassifier, {"hidden": (8, 0)}, "hidden"),
        (RegularizedMLPClassifier, {"validation_fraction": 1.0}, "validation_fraction"),
        (RegularizedMLPClassifierCV, {"strengths": [0.0, -1e-3]}, "strengths"),
        (RegularizedMLPRegressorCV, {"strengths": []}, "strengths"),
        (RegularizedMLPClassifierCV, {"epochs": 0}, "epochs"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_parameter_not_its_config_key(cls, params, named):
    X, y = make_classification(40, 3, n_informative=2, n_redundant=0, random_state=0)
    with pytest.raises(ValueError, match=f"^The '{named}' parameter of {cls.__name__} must be") as refused:
        cls(**TINY | params).fit(X, y)
    said = str(refused.value)
    assert "\n" not in said and not any(key in said for key in ("regularizer.", "trainer.", "model.", "data."))


def test_an_unknown_regularizer_is_one_value_error_line_listing_every_rule():
    from reglab.science.conventions import REGULARIZER_NAMES

    X, y = make_classification(40, 3, n_informative=2, n_redundant=0, random_state=0)
    with pytest.raises(ValueError, match="^The 'regularizer' parameter") as refused:
        RegularizedMLPClassifier(regularizer="nope", **TINY).fit(X, y)
    said = str(refused.value)
    assert "\n" not in said and all(f"'{name}'" in said for name in REGULARIZER_NAMES.values())


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("nope=1", "overrides: nope is not a key of the config"),
        ("regularizer=l3", "overrides: regularizer=l3 is not a regularizer config; choose one of: elastic_net"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be an integer >= 1"),
    ],
)
def test_a_bad_override_is_one_value_error_line_in_the_words_of_the_override(override, said):
    X, y = make_classification(40, 3, n_informative=2, n_redundant=0, random_state=0)
    with pytest.raises(ValueError) as refused:
        RegularizedMLPClassifier(overrides=[override], **TINY).fit(X, y)
    assert str(refused.value).startswith(said) and "\n" not in str(refused.value)


NOISY = {"hidden": (16,), "epochs": 60, "lr": 0.05, "batch_size": 32, "strength": 0.0}


def test_early_stopping_watches_held_out_rows_not_training_rows():
    """With `early_stopping`, a stratified `validation_fraction` of the rows (drawn from `random_state`)
    is held out: the scores watched are theirs, the standardisation is fitted on the rest, training
    stops 10 epochs after the best score, and the weights kept are that epoch's."""
    from sklearn.model_selection import train_test_split

    X, y = make_classification(120, 5, n_informative=3, n_redundant=0, flip_y=0.2, random_state=0)
    est = RegularizedMLPClassifier(early_stopping=True, validation_fraction=0.25, random_state=1, **NOISY).fit(X, y)
    train, val = train_test_split(np.arange(120), test_size=0.25, random_state=1, stratify=y)
    np.testing.assert_allclose(est.run_.mean, X[train].mean(0), rtol=1e-12)  # fitted on the 90 training rows
    best = int(np.argmax(est.validation_scores_))
    assert len(est.validation_scores_) == len(est.loss_curve_) == est.n_iter_ == best + 1 + 10 < NOISY["epochs"]
    assert est.best_validation_score_ == max(est.validation_scores_) == pytest.approx(est.score(X[val], y[val]))
    assert est.score(X[train], y[train]) > est.best_validation_score_ + 0.1  # the training rows score far higher
    assert est.best_loss_ is None


def test_early_stopping_of_a_regressor_watches_r2_on_unstratified_held_out_rows():
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split

    X, y = make_regression(100, 4, noise=20.0, random_state=0)
    est = RegularizedMLPRegressor(early_stopping=True, random_state=2, **NOISY).fit(X, y)
    _, val = train_test_split(np.arange(100), test_size=0.1, random_state=2)
    assert est.best_validation_score_ == pytest.approx(r2_score(y[val], est.predict(X[val])), abs=1e-5)


def test_without_early_stopping_every_row_trains_and_no_validation_score_is_kept():
    X, y = make_classification(120, 5, n_informative=3, n_redundant=0, flip_y=0.2, random_state=0)
    est = RegularizedMLPClassifier(**NOISY).fit(X, y)
    np.testing.assert_allclose(est.run_.mean, X.mean(0), rtol=1e-12)
    assert est.n_iter_ == len(est.loss_curve_) == NOISY["epochs"]
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert est.best_loss_ == min(est.loss_curve_)


def test_early_stopping_by_override_is_refused_where_it_would_watch_training_or_scoring_rows():
    X, y = make_classification(40, 3, n_informative=2, n_redundant=0, random_state=0)
    with pytest.raises(ValueError, match="early stopping would watch the training rows.*early_stopping=True"):
        RegularizedMLPClassifier(overrides=["callbacks=early_stopping"], **TINY).fit(X, y)
    with pytest.raises(ValueError, match="early stopping would watch the rows each fold is scored on"):
        RegularizedMLPClassifierCV(overrides=["callbacks.early_stopping.patience=3"], **TINY).fit(X, y)
    patient = RegularizedMLPClassifier(early_stopping=True, overrides=["callbacks.early_stopping.patience=2"], **NOISY)
    X, y = make_classification(120, 5, n_informative=3, n_redundant=0, flip_y=0.2, random_state=0)
    assert patient.fit(X, y).n_iter_ == int(np.argmax(patient.validation_scores_)) + 1 + 2  # the override holds


def test_loss_curve_holds_the_training_objective_after_each_epoch():
    """One value per epoch: a fit of 4 epochs gives the first 4 values of a fit of 8 (same seed), and its
    last is the log loss of its own predictions on all of X (λ = 0: the objective is the data loss)."""
    from sklearn.metrics import log_loss

    X, y = make_classification(80, 4, n_informative=3, n_redundant=0, random_state=0)
    short = RegularizedMLPClassifier(**TINY | {"epochs": 4, "strength": 0.0}).fit(X, y)
    long = RegularizedMLPClassifier(**TINY | {"epochs": 8, "strength": 0.0}).fit(X, y)
    assert short.n_iter_ == len(short.loss_curve_) == 4 and long.n_iter_ == len(long.loss_curve_) == 8
    np.testing.assert_allclose(long.loss_curve_[:4], short.loss_curve_, rtol=1e-6)
    assert short.loss_curve_[-1] == pytest.approx(log_loss(y, short.predict_proba(X)), rel=1e-5)
    assert long.loss_curve_[-1] < long.loss_curve_[0]


@pytest.mark.parametrize("cls", [RegularizedMLPClassifier, RegularizedMLPRegressor])
def test_warm_start_continues_from_the_weights_the_previous_fit_kept(cls):
    """A second fit with lr ≈ 0 leaves the weights where they start: with `warm_start` those are the
    first fit's (the same predictions); without it, a fresh draw from the seed (an untrained network)."""
    X, y = make_classification(80, 4, n_informative=3, n_redundant=0, random_state=0)
    first = cls(warm_start=True, **TINY).fit(X, y)
    trained, trained_curve = _outputs(first, X), first.loss_curve_
    again = first.set_params(lr=1e-12).fit(X, y)
    np.testing.assert_allclose(_outputs(again, X), trained, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.loss_curve_, [trained_curve[-1]] * TINY["epochs"], rtol=1e-5)
    cold = cls(**TINY).fit(X, y).set_params(lr=1e-12).fit(X, y)
    assert cold.loss_curve_[-1] > trained_curve[-1] * 1.2  # from the seed's draw: untrained


def _outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def test_warm_start_refuses_other_classes_features_or_widths_in_one_line():
    X, y = make_classification(60, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0)
    est = RegularizedMLPClassifier(warm_start=True, **TINY).fit(X, y)
    refusals = [
        ((X, np.where(y == 2, 1, y)), "warm_start can only be used where `y` has the same classes"),
        ((X[:, :3], y), "X has 3 features, but RegularizedMLPClassifier is expecting 4 features"),
    ]
    for (x_new, y_new), said in refusals:
        with pytest.raises(ValueError, match=said) as refused:
            est.fit(x_new, y_new)
        assert "\n" not in str(refused.value)
    with pytest.raises(ValueError, match=r"^warm_start=True: hidden=\(4,\) differs from the previous fit's \(8,\)"):
        est.set_params(hidden=(4,)).fit(X, y)


def test_the_cv_stack_is_evaluated_once_and_the_refit_after_every_epoch(tmp_path):
    """The CV members need only their final validation score; the refit's loss_curve_ needs every epoch."""
    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    cv = RegularizedMLPClassifierCV(strengths=[0.0, 1e-3], cv=2, log_dir=str(tmp_path), **TINY).fit(X, y)
    members = sorted(p.parent for p in Path(cv.run_dir_).glob("*/metrics.csv"))
    assert len(members) == 4 and all(len(pd.read_csv(m / "metrics.csv")) == 1 for m in members)
    assert len(pd.read_csv(Path(cv.best_estimator_.run_dir_) / "metrics.csv")) == TINY["epochs"] == cv.n_iter_
    assert (
        cv.best_score_ == cv.cv_results_["mean_test_score"].max() == cv.cv_results_["mean_test_score"][cv.best_index_]
    )


@pytest.mark.slow
def test_the_estimator_equals_the_command_line_run_on_the_same_rows(tmp_path):
    """`reglab-train data=file` on a CSV trains on its 60% split; the estimator given exactly those
    rows trains the same network: same training metrics, weights and held-out predictions."""
    X, y = make_classification(150, 4, n_informative=3, n_redundant=0, random_state=1)
    path = tmp_path / "table.csv"
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=y).to_csv(path, index=False)
    settings = ["regularizer=l1", "regularizer.strength=0.001", "model.hidden=[8]", "trainer.max_epochs=15"]
    settings += [
        "data.batch_size=32",
        "optimizer.lr=0.02",
        "seed=3",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    (cli,) = run(["data=file", f"data.path={path}", *settings], tmp_path / "cli")
    order = np.random.default_rng(3).permutation(150)  # reglab.science.datasets.prepare's split of seed 3
    train, val = order[:90], order[90:120]
    est = RegularizedMLPClassifier("l1", 1e-3, random_state=3, **TINY).fit(X[train], y[train])
    for key in ("train/loss", "train/acc", "train/penalty", "weights/l1", "weights/small_frac"):
        assert est.record_["metrics"][key] == pytest.approx(cli["metrics"][key], rel=1e-6, abs=1e-6), key
    assert est.score(X[val], y[val]) == pytest.approx(cli["metrics"]["val/acc"], abs=1e-6)
    probabilities = reglab.load_run(tmp_path / "cli").predict_proba(X[val])[:, 1]
    np.testing.assert_allclose(est.predict_proba(X[val])[:, 1], probabilities, rtol=1e-6, atol=1e-6)


def test_run_takes_arrays_or_a_dataframe_with_its_target(tmp_path):
    X, y = make_regression(80, 3, noise=1.0, random_state=0)
    fast = ["trainer.max_epochs=3", "model.hidden=[4]", "logger=none", "trainer.enable_progress_bar=false"]
    (arrays,) = run(fast, tmp_path / "arrays", data=(X, y))
    frame = pd.DataFrame(X, columns=["age", "income", "height"]).assign(price=y)
    (table,) = run(fast, tmp_path / "frame", data=frame, target="price")
    assert arrays["task"] == table["task"] == "regression" and arrays["dataset"] == "memory"
    assert table["feature_names"] == ["age", "income", "height"] and arrays["feature_names"] == ["x0", "x1", "x2"]
    assert arrays["metrics"]["train/loss"] == pytest.approx(table["metrics"]["train/loss"], rel=1e-6)


def test_log_dir_none_leaves_nothing_on_disk_and_log_dir_keeps_the_run(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    X, y = make_classification(60, 3, n_informative=2, n_redundant=0, random_state=0)
    RegularizedMLPClassifier(**TINY).fit(X, y)
    assert not list((tmp_path / "tmp").iterdir())
    kept = RegularizedMLPClassifier(log_dir=str(tmp_path / "logs"), **TINY).fit(X, y)
    assert (tmp_path / "logs").is_dir() and reglab.load_run(kept.run_dir_).record["task"] == "binary"


@pytest.mark.slow
@pytest.mark.parametrize("cv_class", [RegularizedMLPClassifierCV, RegularizedMLPRegressorCV])
def test_the_cv_estimator_equals_grid_search_over_the_plain_one(cv_class):
    """Every λ × fold in one stack (folds of unequal size padded) gives the scores, the chosen λ and the
    refit of GridSearchCV's 9 fits."""
    if cv_class is RegularizedMLPClassifierCV:
        X, y = make_classification(90, 5, n_informative=3, n_redundant=0, random_state=0)
        plain = RegularizedMLPClassifier
    else:
        X, y = make_regression(91, 5, n_informative=3, noise=5.0, random_state=0)  # folds of 60 and 61: one stack
        plain = RegularizedMLPRegressor
    lams, folds = [0.0, 1e-3, 3e-2], KFold(3, shuffle=True, random_state=0)
    ours = cv_class(strengths=lams, cv=folds, **TINY).fit(X, y)
    grid = GridSearchCV(plain(**TINY), {"strength": lams}, cv=folds).fit(X, y)
    for column in ("mean_test_score", "std_test_score", *(f"split{i}_test_score" for i in range(3))):
        np.testing.assert_allclose(ours.cv_results_[column], grid.cv_results_[column], rtol=1e-5, atol=1e-5)
    assert ours.best_strength_ == grid.best_params_["strength"]
    assert ours.best_score_ == pytest.approx(grid.best_score_, abs=1e-5)
    np.testing.assert_allclose(ours.predict(X), grid.predict(X), rtol=1e-6, atol=1e-6)
    assert list(ours.path_["strength"]) == lams and ours.path_.shape[1] == 4 + X.shape[1]


def test_the_cv_estimator_trains_folds_of_unequal_size_as_one_stack(monkeypatch):
    """91 rows in 3 folds train on 60, 61 and 61 rows (2 steps of 32 an epoch each): the 3 λ × 3 folds
    are one fit of 9 members, then the refit. Folds of 61, 60 and 64 rows (2 steps) and one of 65
    (3 steps) are two stacks, then the refit."""
    import reglab.fit

    fits, real = [], reglab.fit.fit_in_memory
    monkeypatch.setattr(reglab.fit, "fit_in_memory", lambda cfg, init=None: fits.append(cfg) or real(cfg, init))
    X, y = make_regression(91, 5, n_informative=3, noise=5.0, random_state=0)
    RegularizedMLPRegressorCV(strengths=[0.0, 1e-3, 3e-2], cv=KFold(3), **(TINY | {"epochs": 2})).fit(X, y)
    assert [len(cfg.regularizer.strength) for cfg in fits[:1]] == [3] and len(fits) == 2
    assert list(fits[0].data.fold) == [0, 1, 2] and fits[1].data.fold == 0
    fits.clear()
    uneven = [(np.arange(30, 91), np.arange(30)), (np.arange(60), np.arange(60, 91))]  # 61 and 60 rows: 2 steps
    uneven += [(np.arange(27, 91), np.arange(27))]  # 64 rows: 2 steps of 32
    uneven += [(np.arange(26, 91), np.arange(26))]  # 65 rows: 3 steps
    RegularizedMLPRegressorCV(strengths=[0.0, 1e-3], cv=uneven, **(TINY | {"epochs": 2})).fit(X, y)
    assert [list(cfg.data.fold) for cfg in fits[:2]] == [[0, 1, 2], [0]] and len(fits) == 3


@pytest.mark.slow
def test_the_python_blocks_of_docs_data_run(tmp_path, monkeypatch):
    from tests.test_readme import ROOT, python_blocks

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(ROOT / "docs" / "data.md"):
        exec(compile(block.text, f"docs/data.md:{block.line}", "exec"), namespace)
    assert [r["strength"] for r in namespace["records"]] == [0.0, 1e-3]
    assert namespace["search"].best_strength_ in (0, 1e-4, 1e-3, 1e-2) and len(namespace["search"].path_) == 4


def test_an_estimator_without_log_dir_writes_nothing_anywhere(tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where a temporary run directory would go
    monkeypatch.chdir(tmp_path / "tmp")
    X, y = make_classification(120, 4, random_state=0)
    cv = RegularizedMLPClassifierCV("l1", strengths=[0.0, 1e-3], cv=3, **TINY).fit(X, y)
    assert cv.score(X, y) > 0.8 and not hasattr(cv, "run_dir_")
    # No run directory, checkpoint or metrics file, not even a temporary one (torch's own compile cache
    # folder, made empty the first time torch looks for it, is not reglab's).
    assert [p for p in scratch.rglob("*") if not p.name.startswith("torchinductor")] == []
