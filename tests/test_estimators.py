"""The scikit-learn estimators are reglab's one engine: the same numbers as `reglab-train` on the
same rows, scikit-learn's own estimator checks, and a CV that equals `GridSearchCV` over the plain
estimator, fold by fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.utils.estimator_checks import parametrize_with_checks

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
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
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
    """Every λ × fold in one stack (one per size of fold) gives the scores, the chosen λ and the
    refit of GridSearchCV's 9 fits."""
    if cv_class is RegularizedMLPClassifierCV:
        X, y = make_classification(90, 5, n_informative=3, n_redundant=0, random_state=0)
        plain = RegularizedMLPClassifier
    else:
        X, y = make_regression(91, 5, n_informative=3, noise=5.0, random_state=0)  # folds of 60 and 61: 2 stacks
        plain = RegularizedMLPRegressor
    lams, folds = [0.0, 1e-3, 3e-2], KFold(3, shuffle=True, random_state=0)
    ours = cv_class(strengths=lams, cv=folds, **TINY).fit(X, y)
    grid = GridSearchCV(plain(**TINY), {"strength": lams}, cv=folds).fit(X, y)
    for column in ("mean_test_score", "std_test_score", *(f"split{i}_test_score" for i in range(3))):
        np.testing.assert_allclose(ours.cv_results_[column], grid.cv_results_[column], rtol=1e-5, atol=1e-5)
    assert ours.best_strength_ == grid.best_params_["strength"]
    np.testing.assert_allclose(ours.predict(X), grid.predict(X), rtol=1e-6, atol=1e-6)
    assert list(ours.path_["strength"]) == lams and ours.path_.shape[1] == 4 + X.shape[1]


@pytest.mark.slow
def test_the_python_blocks_of_docs_data_run(tmp_path, monkeypatch):
    from tests.test_readme import ROOT, python_blocks

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(ROOT / "docs" / "data.md"):
        exec(compile(block.text, f"docs/data.md:{block.line}", "exec"), namespace)
    assert [r["strength"] for r in namespace["records"]] == [0.0, 1e-3]
    assert namespace["search"].best_strength_ in (0, 1e-4, 1e-3, 1e-2) and len(namespace["search"].path_) == 4
