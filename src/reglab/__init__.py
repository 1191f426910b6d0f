"""reglab: see what regularization does to a neural network. Conventions: README.md."""

__version__ = "0.1.0"
# scikit-learn estimators (`reglab.estimators`), imported on first use: `import reglab` stays light.
ESTIMATORS = (
    "RegularizedMLPClassifier",
    "RegularizedMLPRegressor",
    "RegularizedMLPClassifierCV",
    "RegularizedMLPRegressorCV",
)


def load_run(run_dir, checkpoint="last"):  # noqa: ANN001, ANN201 (re-exported; see reglab.runs.load_run)
    """The trained model of a run directory ("last" or "best" checkpoint), its fitted input
    transform and its config: `reglab.runs.load_run`."""
    from reglab.runs import load_run as _load_run

    return _load_run(run_dir, checkpoint)


def run(overrides=(), run_dir=None, data=None, target=None):  # noqa: ANN001, ANN201
    """Train as `reglab-train <overrides>` would and return each member's metrics.json record: `reglab.api.run`."""
    from reglab.api import run as _run

    return _run(overrides, run_dir, data, target)


def results(directory):  # noqa: ANN001, ANN201
    """A pandas DataFrame of the runs under `directory`: `reglab.runs.results_table`."""
    from reglab.runs import results_table

    return results_table(directory)


def __getattr__(name):  # noqa: ANN001, ANN202
    if name in ESTIMATORS:
        from reglab import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'reglab' has no attribute {name!r}")
