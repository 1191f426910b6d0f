"""Data sets as NumPy arrays: generated from a seed, bundled with scikit-learn, or your own table
(`file`, read by `reglab.science.files`); nothing is downloaded.

Every generator returns a `Dataset`; `prepare` then splits, adds label noise and standardises, alike for all.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from reglab.science.conventions import require_int
from reglab.science.data import SPLIT_NAMES, Dataset, Splits, Task


def _sklearn():  # noqa: ANN202
    """scikit-learn's data sets, imported when one is made: a refused config never pays its second of import."""
    from sklearn import datasets

    return datasets


COUNTS = ("n_samples", "n_features", "n_informative")  # the generators' arguments that count something


def is_number(value: object) -> bool:
    """A real number, and not a bool (which Python counts as one)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_ranges(**arguments: Any) -> None:
    """The generators' shared check, each argument named by its config key `data.<name>`: a count
    (`COUNTS`) must be an integer >= 1, `noise` a number >= 0; scikit-learn, or their use, checks the rest."""
    for key, value in arguments.items():
        if key in COUNTS:
            require_int(value, f"data.{key}")
        if key == "noise" and not is_number(value):
            raise ValueError(f"data.noise={value!r} is not a number")
        if key == "noise" and not value >= 0:  # also refuses NaN
            raise ValueError(f"data.noise={value} must be >= 0")


def moons(n_samples: int = 1000, noise: float = 0.2, seed: int = 0) -> Dataset:
    _check_ranges(n_samples=n_samples, noise=noise)
    x, y = _sklearn().make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return Dataset(x, y, "binary", 2, support=[0, 1])


def circles(n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0) -> Dataset:
    _check_ranges(n_samples=n_samples, noise=noise)
    x, y = _sklearn().make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return Dataset(x, y, "binary", 2, support=[0, 1])


def xor(n_samples: int = 1000, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Uniform points in [-1, 1]²; the class is whether the two coordinates share a sign."""
    _check_ranges(n_samples=n_samples, noise=noise)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return Dataset(x + noise * rng.standard_normal(x.shape), y, "binary", 2, support=[0, 1])


def spirals(n_samples: int = 1000, noise: float = 0.2, turns: float = 1.5, seed: int = 0) -> Dataset:
    """Two interleaved Archimedean spirals, one per class."""
    _check_ranges(n_samples=n_samples, noise=noise)
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % 2
    t = np.sqrt(rng.uniform(0.0, 1.0, n_samples)) * turns * 2 * np.pi
    angle = t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (turns * 2 * np.pi)
    return Dataset(x + noise * 0.1 * rng.standard_normal(x.shape), y, "binary", 2, support=[0, 1])


def features(
    n_samples: int = 1000,
    n_features: int = 50,
    n_informative: int = 5,
    n_redundant: int = 0,
    n_clusters_per_class: int = 2,
    class_sep: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """`make_classification` without shuffling the columns: the first `n_informative + n_redundant`
    inputs carry the signal, the rest are pure noise (so the support is known)."""
    _check_ranges(n_samples=n_samples, n_features=n_features, n_informative=n_informative)
    x, y = _sklearn().make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=n_redundant,
        n_repeated=0,
        n_clusters_per_class=n_clusters_per_class,
        class_sep=class_sep,
        shuffle=False,
        random_state=seed,
    )
    # shuffle=False also sorts the rows by class; mix them so that any split sees both classes.
    order = np.random.default_rng(seed).permutation(n_samples)
    return Dataset(x[order], y[order], "binary", 2, support=list(range(n_informative + n_redundant)))


def breast_cancer(seed: int = 0) -> Dataset:
    x, y = _sklearn().load_breast_cancer(return_X_y=True)
    return Dataset(x, y, "binary", 2)


def wine(seed: int = 0) -> Dataset:
    x, y = _sklearn().load_wine(return_X_y=True)
    return Dataset(x, y, "multiclass", 3)


def digits(seed: int = 0) -> Dataset:
    x, y = _sklearn().load_digits(return_X_y=True)
    return Dataset(x, y, "multiclass", 10)


def diabetes(seed: int = 0) -> Dataset:
    x, y = _sklearn().load_diabetes(return_X_y=True)
    return Dataset(x, y, "regression")


def sparse_regression(
    n_samples: int = 500, n_features: int = 50, n_informative: int = 5, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """y = x·β + noise·ε with x, ε ~ N(0, 1) and β zero except on `n_informative` random
    coordinates, where |β_j| ~ U(1, 2) with a random sign."""
    _check_ranges(n_samples=n_samples, n_features=n_features, n_informative=n_informative, noise=noise)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_samples, n_features))
    support = np.sort(rng.choice(n_features, size=n_informative, replace=False))
    coef = np.zeros(n_features)
    coef[support] = rng.uniform(1.0, 2.0, n_informative) * rng.choice([-1.0, 1.0], n_informative)
    y = x @ coef + noise * rng.standard_normal(n_samples)
    return Dataset(x, y, "regression", support=support.tolist(), coef=coef.tolist())


def file(
    path: str | None = None,
    target: str | int | None = None,
    features: list[Any] | None = None,
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto",
    drop_missing: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
    seed: int = 0,
) -> Dataset:
    """Your own table (CSV, TSV, Parquet, .npz, a .npy pair, or data from Python): `reglab.science.files`.
    `path` null: the iris table shipped with reglab; `target` null: the last column; `sep` null: a
    text table's delimiter sniffed from its first lines; `encoding`: its characters'."""
    from reglab.science import files

    strict = not str(path).startswith(files.MEMORY)
    return files.load_table(path, target, features, task, drop_missing, sep, encoding, strict)


GENERATORS: dict[str, Callable[..., Dataset]] = {
    f.__name__: f
    for f in (moons, circles, xor, spirals, features, breast_cancer, wine, digits, diabetes, sparse_regression, file)
}

# The task of each data set, known before generating it (a test checks it against the generators).
TASKS: dict[str, Task] = {
    **dict.fromkeys(("moons", "circles", "xor", "spirals", "features", "breast_cancer"), "binary"),
    "wine": "multiclass",
    "digits": "multiclass",
    "diabetes": "regression",
    "sparse_regression": "regression",
}  # and `file`: its `task` argument, or what its target holds (`task_of`)


def task_of(name: str, arguments: Mapping[str, Any]) -> Task:
    """The task of data set `name` with these arguments, before it is split: a file's is read from it."""
    if name != "file":
        return TASKS[name]
    keys = inspect.signature(file).parameters.keys() - {"seed"}
    return file(**{k: arguments[k] for k in keys if k in arguments}).task


def check_arguments(name: str, kwargs: dict) -> None:
    """Raise ValueError naming the problem if `name` or any key of `kwargs` is unknown."""
    if name not in GENERATORS:
        raise ValueError(f"data.name={name!r} is not a data set; choose one of: {', '.join(GENERATORS)}")
    allowed = set(inspect.signature(GENERATORS[name]).parameters) - {"seed"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "nothing"
        raise ValueError(f"data.{unknown[0]} is not an argument of data set {name!r}; it takes: {takes}")


def prepare(
    data: Dataset, fractions: tuple[float, float, float], label_noise: float, seed: int, fold: int | None = None
) -> Splits:
    """Shuffle and split by `fractions` (or take the data's `fold`: its train and val rows, val again
    as test), flip a `label_noise` fraction of training labels, and standardise inputs (and
    regression targets) with training statistics."""
    rng = np.random.default_rng(seed)
    index = _fold(data, fold) if fold is not None else _split(len(data.y), fractions, rng)

    x = {k: data.x[v].astype(np.float64) for k, v in index.items()}
    y = {k: data.y[v].copy() for k, v in index.items()}
    mean, std = x["train"].mean(0), x["train"].std(0)
    std[std == 0] = 1.0
    x = {k: ((v - mean) / std).astype(np.float32) for k, v in x.items()}

    flipped = 0
    if data.task == "regression":
        y_mean, y_std = y["train"].mean(), y["train"].std() or 1.0
        y = {k: ((v - y_mean) / y_std).astype(np.float32) for k, v in y.items()}
    else:
        y_mean, y_std = 0.0, 1.0
        y = {k: v.astype(np.int64) for k, v in y.items()}
        flipped = int(round(label_noise * len(y["train"])))
        flip = rng.choice(len(y["train"]), size=flipped, replace=False)
        # Shift each flipped label by 1..C-1 classes, so it always lands on a different class.
        shift = rng.integers(1, data.n_classes, size=flipped)
        y["train"][flip] = (y["train"][flip] + shift) % data.n_classes
    facts = (data.feature_names, data.encoding, data.source, data.rows, index)
    return Splits(x, y, data.task, data.n_classes, data.support, data.coef, flipped, mean, std, y_mean, y_std, *facts)


def split_sizes(n: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    """The sizes `data.split` cuts `n` samples into: train and val rounded, test the rest when the
    fractions sum to 1."""
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_test = n - n_train - n_val if abs(sum(fractions) - 1.0) < 1e-9 else int(round(fractions[2] * n))
    return dict(zip(SPLIT_NAMES, (n_train, n_val, n_test)))


def check_split_sizes(sizes: dict[str, int], split: Sequence[float]) -> None:
    """Refuse splits a run cannot train and evaluate on: every split needs a sample, train two."""
    if min(sizes.values()) < 1 or sizes["train"] < 2:
        raise ValueError(
            f"data.split={list(split)} of {sum(sizes.values())} samples leaves splits of {sizes}; "
            "every split needs samples (train at least 2)"
        )


def _split(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    order = rng.permutation(n)
    bounds = np.cumsum([0, *split_sizes(n, fractions).values()])
    return {name: order[bounds[i] : bounds[i + 1]] for i, name in enumerate(SPLIT_NAMES)}


def _fold(data: Dataset, fold: int) -> dict[str, np.ndarray]:
    if not data.folds:
        raise ValueError(f"data.fold={fold} needs data with folds (the CV estimators'); use data.fold=null")
    if not (isinstance(fold, int) and 0 <= fold < len(data.folds)):
        raise ValueError(f"data.fold={fold!r} must be an integer in [0, {len(data.folds)})")
    train, val = data.folds[fold]
    return {"train": train, "val": val, "test": val}


def load(
    name: str,
    split: Sequence[float] = (0.6, 0.2, 0.2),
    label_noise: float = 0.0,
    seed: int = 0,
    fold: int | None = None,
    **kwargs,
) -> Splits:
    """Data set `name` generated (or loaded) with `seed`, then split and standardised by `prepare`."""
    check_arguments(name, kwargs)
    with np.errstate(all="ignore"):  # values nothing can be learnt from are said by `check_values`, in one line
        data = GENERATORS[name](seed=seed, **kwargs)
    check_values(data, name)
    return prepare(data, tuple(split), label_noise, seed, fold)  # type: ignore[arg-type]


def check_values(data: Dataset, name: str) -> None:
    """Refuse data that nothing can be learnt from, whichever argument made it so (a noise level, a
    scale, `turns=0`): inputs or regression targets that are NaN or infinite or too large to
    standardise (their variance overflows), or inputs that are the same in every row."""
    parts = {"input": (np.asarray(data.x, dtype=np.float64), data.feature_names)}
    if data.task == "regression":
        parts["target"] = (np.asarray(data.y, dtype=np.float64)[:, None], None)
    for what, (values, names) in parts.items():
        columns = [f"{what} {c!r}" for c in names] if names else [f"{what} {j}" for j in range(values.shape[1])]
        columns = columns if len(columns) > 1 else [f"its {what}"]
        bad = ~np.isfinite(values)
        if bad.any():
            j = int(bad.any(0).argmax())
            raise ValueError(
                f"data set {name!r} has NaN or infinite values in {columns[j]} ({int(bad[:, j].sum())} of "
                f"{len(values)} rows); nothing can be learnt from it"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            std = values.std(0)
        if not np.isfinite(std).all():
            j = int((~np.isfinite(std)).argmax())
            raise ValueError(
                f"data set {name!r} has values too large to standardise in {columns[j]} (up to "
                f"{np.abs(values[:, j]).max():.3g}: their variance overflows); nothing can be learnt from it"
            )
        if what == "input" and len(values) > 1 and (std == 0).all():
            raise ValueError(f"data set {name!r} has inputs that are the same in every row; nothing can be learnt")


def load_splits(data_config: Mapping[str, Any], seed: int) -> Splits:
    """`load` from a run's `data` config read as plain data (its `_target_` and batch size ignored)."""
    kwargs = {k: v for k, v in data_config.items() if not str(k).startswith("_") and k not in ("batch_size", "seed")}
    return load(seed=seed, **kwargs)
