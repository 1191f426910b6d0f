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

from reglab.estimators.cv import RegularizedMLPClassifierCV, RegularizedMLPRegressorCV
from reglab.estimators.single import RegularizedMLPClassifier, RegularizedMLPRegressor

__all__ = [
    "RegularizedMLPClassifier",
    "RegularizedMLPClassifierCV",
    "RegularizedMLPRegressor",
    "RegularizedMLPRegressorCV",
]
