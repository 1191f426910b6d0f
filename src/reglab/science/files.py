"""Tables of your own as a `Dataset`: CSV, TSV (read strictly by `reglab.science.reading`),
Parquet, `.npz` (arrays `x`, `y`), a `.npy` pair, or arrays and DataFrames handed over from
Python (`register`, path `memory:<sha256>`).

Categorical and string columns are one-hot encoded and class labels mapped to 0..C-1 (sorted). The
`encoding` (plain data, recorded with the run's input transform) turns raw rows into the model's
inputs again (`encode`), and class indices into the original labels. Each refusal is one line.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reglab.science import memory
from reglab.science.data import Dataset, Task
from reglab.science.reading import TEXT, decompressed, formats, reading, text_table

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "iris.csv"  # data.path=null: shipped with reglab
MEMORY = "memory:"
TASKS = ("auto", "binary", "multiclass", "regression")
UTF8 = ("utf-8", "utf8", "utf_8")  # data.encoding's default, spelt as Python accepts it
MAX_CLASSES = 20  # task=auto: a target of integers with at most this many values is a class label
# A string column with more distinct values than this (and than half its rows) is no category: an id or text.
MAX_CATEGORIES = 50
_REGISTERED: dict[str, tuple[pd.DataFrame, str, list | None]] = {}  # memory:<sha256> -> (frame, target, folds)
_LOADED: dict[tuple, Dataset] = {}  # what `load_table` read, by the files' identity and its arguments
_HASHES: dict[tuple, str] = {}  # a file's sha256, by (path, size, mtime)


def _frame_of(x: Any, y: Any = None, target: Any = None) -> tuple[pd.DataFrame, str]:
    """(one frame holding features and target, the target's column name) from `(X, y)` or a frame + column."""
    if isinstance(x, pd.DataFrame) and y is None:
        if target is None or target not in x.columns:
            raise ValueError(f"target={target!r} is not a column of the DataFrame; it has: {', '.join(map(str, x))}")
        return x.reset_index(drop=True), str(target)
    frame = x.reset_index(drop=True) if isinstance(x, pd.DataFrame) else pd.DataFrame(np.asarray(x))
    if not isinstance(x, pd.DataFrame):
        frame.columns = [f"x{j}" for j in range(frame.shape[1])]
    frame.columns = [str(c) for c in frame.columns]
    name = str(target or "y")
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != len(frame):
        raise ValueError(f"y has shape {labels.shape}; it must be one target per row of X ({len(frame)} rows)")
    return frame.assign(**{name: labels}), name


def register(x: Any, y: Any = None, target: Any = None, folds: Sequence | None = None) -> tuple[str, str]:
    """Hold `(X, y)`, or a DataFrame `x` with its `target` column, in memory for `data=file`;
    `folds`: (train rows, val rows) pairs for `data.fold`. Returns (data.path, data.target): the
    path names the content's sha256, so other data is another config."""
    frame, name = _frame_of(x, y, target)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    folds = [(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)) for a, b in folds] if folds else None
    for a, b in folds or []:
        digest.update(a.tobytes() + b"|" + b.tobytes())
    path = MEMORY + digest.hexdigest()
    _REGISTERED[path] = (frame, name, folds)
    return path, name


def unregister(path: str) -> None:
    _REGISTERED.pop(path, None)
    for key in [k for k in _LOADED if k[0] == path]:
        del _LOADED[key]


def _files(path: str, target: Any) -> list[Path]:
    """The files `path` (and a `.npy` pair's target) names; ValueError for a missing one."""
    found = [Path(path)] + ([Path(target)] if str(path).endswith(".npy") and target is not None else [])
    for p in found:
        with reading(path):  # a directory above it that cannot be searched
            kind = "file" if p.is_file() else "directory" if p.is_dir() else None
        if kind != "file":
            raise ValueError(f"data.path={path}: {p} is not a file" + (" (a directory)" if kind else ""))
    return found


def facts(path: str | None, target: Any = None) -> list[dict[str, Any]]:
    """Path, size and sha256 of each file the data comes from (metrics.json's `data_file`)."""
    if str(path).startswith(MEMORY):
        return [{"path": str(path), "size": None, "sha256": str(path).removeprefix(MEMORY)}]
    out = []
    for p in _files(str(path or EXAMPLE), target):
        with reading(str(path or EXAMPLE)):  # the first read of the file: permission denied is said here
            stat = p.stat()
            key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
            if key not in _HASHES:
                _HASHES[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        out.append({"path": key[0], "size": stat.st_size, "sha256": _HASHES[key]})
    return out


def read_frame(
    path: str, target: Any, sep: str | None = None, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, Any, list | None]:
    """(the table, its target column, its folds) as read from `path`; a one-line ValueError otherwise.
    `sep` and `encoding`: a text table's delimiter (None: sniffed) and character encoding."""
    suffix, compression = formats(path)
    if suffix not in TEXT:  # the keys of a text table, set for another file: an error, not ignored
        text_only = {"data.sep": sep, "data.encoding": encoding if str(encoding).lower() not in UTF8 else None}
        if said := [f"{key}={value!r}" for key, value in text_only.items() if value is not None]:
            raise ValueError(f"{' and '.join(said)}: only a text table (.csv, .tsv) has one; data.path={path} is none")
    if path.startswith(MEMORY):
        if path not in _REGISTERED:
            raise ValueError(f"data.path={path} names data held by another process; pass the data again")
        frame, name, folds = _REGISTERED[path]
        return frame, name, folds
    source, *pair = _files(path, target)
    if suffix in TEXT:
        with reading(path):
            raw = source.read_bytes()
        return text_table(decompressed(raw, path), path, sep, encoding), target, None
    if compression:
        raise ValueError(
            f"data.path={path}: only a text table is read compressed, named for its format before the "
            f"compression (.csv{compression}, .tsv{compression})"
        )
    if suffix in (".parquet", ".pq"):
        with reading(path):
            return pd.read_parquet(source), target, None
    if suffix in (".npz", ".npy"):
        with reading(path):
            arrays = np.load(source, allow_pickle=False)
            targets = np.load(pair[0], allow_pickle=False) if pair else None
        keys = None if pair else _npz_keys(path, arrays, target)
        with reading(path):  # an .npz's arrays are read when they are taken
            x, y = (arrays, targets) if keys is None else (arrays[keys[0]], arrays[keys[1]])
        return _frame_of(x, y)[0], "y", None
    raise ValueError(
        f"data.path={path}: {suffix or 'no suffix'} is not a format reglab reads; use .csv or .tsv (either also "
        "compressed: .csv.gz, .bz2, .xz, .zip, .zst), .parquet, .npz (arrays x and y) or .npy (with "
        "data.target=<targets>.npy)"
    )


def _npz_keys(path: str, arrays: Any, target: Any) -> tuple[str, str]:
    if isinstance(arrays, np.ndarray):
        raise ValueError(f"data.path={path} is one .npy array; give its targets as data.target=<targets>.npy")
    y_key = "y" if target is None else str(target)
    if "x" not in arrays.files or y_key not in arrays.files:
        raise ValueError(f"data.path={path} holds arrays {', '.join(arrays.files)}; it needs x and {y_key}")
    return "x", y_key


def _column(frame: pd.DataFrame, key: Any, what: str, path: str) -> str:
    """The name of column `key` (a name, or an index into the columns)."""
    names = [str(c) for c in frame.columns]
    if str(key) in names:
        return str(key)
    if isinstance(key, int) and not isinstance(key, bool) and -len(names) <= key < len(names):
        return names[key]
    raise ValueError(f"{what}={key!r} is not a column of {path}; it has: {', '.join(names)}")


def load_table(
    path: str | None,
    target: Any = None,
    features: Sequence | None = None,
    task: str = "auto",
    drop_missing: bool = False,
    sep: str | None = None,
    encoding: str = "utf-8",
    strict: bool = True,
) -> Dataset:
    """The table at `path` as a Dataset, encoded (cached: members and folds read it once)."""
    path = str(path or EXAMPLE)
    stamp = tuple((f["path"], f["sha256"]) for f in facts(path, target))
    key = (path, stamp, str(target), tuple(features or ()), task, drop_missing, sep, encoding, strict)
    if key not in _LOADED:
        if len(_LOADED) > 8:
            _LOADED.clear()
        _LOADED[key] = _encoded(
            path, target, features, task, drop_missing, strict, read_frame(path, target, sep, encoding)
        )
    return _LOADED[key]


def _encoded(
    path: str, target: Any, features: Sequence | None, task: str, drop_missing: bool, strict: bool, read: tuple
) -> Dataset:
    if task not in TASKS:
        raise ValueError(f"data.task={task!r} is not a task; choose one of: {', '.join(TASKS)}")
    frame, column, folds = read
    name = _column(frame, -1 if column is None else column, "data.target", path)
    columns = [_column(frame, c, "data.features", path) for c in features] if features else None
    columns = columns or [str(c) for c in frame.columns if str(c) != name]
    if name in columns:
        raise ValueError(f"data.features holds the target {name!r}; leave it out")
    frame = _without_missing(frame[[*columns, name]], path, drop_missing, folds is not None)
    _check_finite(frame, path)
    encoding = fit_encoding(frame, columns, path, strict)
    x, y = encode(frame[columns], encoding), frame[name].to_numpy()
    y, task, classes = _target(y, name, task, path)
    encoding |= {"target": name, "classes": classes}
    n_classes = len(classes) if classes is not None else 0
    names = feature_names(encoding)
    return Dataset(x, y, task, n_classes, None, None, names, encoding, folds, facts(path, target), rows=frame)


def _without_missing(frame: pd.DataFrame, path: str, drop: bool, has_folds: bool) -> pd.DataFrame:
    missing = frame.isna().sum()
    if not missing.any():
        return frame
    column = str(missing.idxmax())
    if not drop or has_folds:  # rows of folds are positions: dropping some would move them
        why = "drop those rows before making the folds" if has_folds else "or data.drop_missing=true drops those rows"
        raise ValueError(
            f"data.path={path}: column {column!r} has missing values (empty or NaN) in {_rows(int(missing.max()))}; "
            f"fill them in, {why}"
        )
    kept = frame.dropna().reset_index(drop=True)
    if len(kept) == 0:
        raise ValueError(f"data.path={path}: every row has a missing value; data.drop_missing=true leaves none")
    return kept


def _rows(n: int) -> str:
    return f"{n} row" + ("s" if n != 1 else "")


def _check_finite(frame: pd.DataFrame, path: str) -> None:
    """inf and -inf, numbers to pandas: refused by column here, before numpy warns about them."""
    numeric = frame.select_dtypes("number")
    infinite = np.isinf(numeric.to_numpy(dtype=np.float64)).sum(0)
    if infinite.any():
        column = str(numeric.columns[int(infinite.argmax())])
        raise ValueError(
            f"data.path={path}: column {column!r} has infinite values (inf or -inf) in {_rows(int(infinite.max()))}; "
            "replace them with numbers"
        )


def fit_encoding(frame: pd.DataFrame, columns: list[str], path: str, strict: bool) -> dict[str, Any]:
    """The raw feature `columns` and the categories of each non-numeric one (one-hot, sorted).
    `strict` (files): a constant column is refused too, as a likely mistake."""
    categories: dict[str, list[str]] = {}
    if len(frame) < 2:
        raise ValueError(f"data.path={path} has {len(frame)} sample(s); training needs at least 2")
    if not columns:
        raise ValueError(f"data.path={path} has no column besides the target to learn from")
    for c in columns:
        values = frame[c]
        kind = values.dtype.kind
        if kind in "mMc" or (kind == "O" and values.map(type).nunique() > 1):
            raise ValueError(
                f"data.path={path}: column {c!r} holds {values.dtype} values, which reglab cannot "
                "encode; convert it to numbers or leave it out with data.features"
            )
        if strict and values.nunique() == 1:
            raise ValueError(
                f"data.path={path}: column {c!r} is constant ({_plain(values.iloc[0])!r} in every row); "
                "leave it out with data.features"
            )
        if kind not in "biuf":
            levels = sorted({str(v) for v in values})
            if len(levels) > max(MAX_CATEGORIES, len(frame) // 2):
                raise ValueError(
                    f"data.path={path}: column {c!r} has {len(levels)} distinct strings in {len(frame)} "
                    "rows, too many for categories (an id or text?); leave it out with data.features"
                )
            categories[c] = levels
    width = sum(len(categories.get(c, [c])) for c in columns)
    need = memory.data_bytes(len(frame), width)
    if not memory.fits(need):
        raise ValueError(
            f"data.path={path} has {len(frame)} rows and {width} columns once encoded, about "
            f"{need / 2**30:.1f} GiB of memory; this machine (or its cap) allows "
            f"{memory.allowed_bytes() / 2**30:.1f} GiB"
        )
    return {"columns": columns, "categories": categories}


def encode(rows: Any, encoding: dict[str, Any]) -> np.ndarray:
    """Raw rows (a DataFrame with the columns, in any order, or rows of values in the columns' order)
    → float64 model inputs: numbers as they are, each category one-hot. A missing, extra or misnamed
    column, a value that is no number or a missing one, and a category the fit never saw are each
    refused in one line that names the column."""
    columns, categories = encoding["columns"], encoding.get("categories") or {}
    frame = _rows_frame(rows, columns, encoding.get("target"))
    parts = []
    for c in columns:
        values = frame[c]
        if values.isna().any():
            raise ValueError(f"column {c!r} has missing values in {int(values.isna().sum())} of the rows")
        if c in categories:
            text = values.astype(str).to_numpy()
            unseen = sorted(set(text) - set(categories[c]))
            if unseen:
                raise ValueError(
                    f"column {c!r} holds {unseen[0]!r}, a category the model was not trained on; "
                    f"it knows: {', '.join(categories[c])}"
                )
            parts.append(np.stack([text == level for level in categories[c]], axis=1).astype(np.float64))
            continue
        floats = pd.to_numeric(values, errors="coerce")
        if floats.isna().any():
            raise ValueError(f"column {c!r} holds {_plain(values[floats.isna()].iloc[0])!r}, which is not a number")
        floats = floats.to_numpy(dtype=np.float64)
        if not np.isfinite(floats).all():
            raise ValueError(f"column {c!r} has infinite values in {int((~np.isfinite(floats)).sum())} of the rows")
        parts.append(floats[:, None])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0))


def _rows_frame(rows: Any, columns: list[str], target: str | None) -> pd.DataFrame:
    """The rows as a DataFrame of exactly `columns`; a missing, extra or misnamed column said in one line."""
    takes = f"the model takes {len(columns)} columns: {', '.join(columns)}"
    if isinstance(rows, pd.DataFrame):
        names = [str(c) for c in rows.columns]
        missing, extra = [c for c in columns if c not in names], [c for c in names if c not in columns]
        if not missing and not extra:
            return rows.set_axis(names, axis=1)[columns].reset_index(drop=True)
        if extra and missing:  # a misnamed column
            problem = f"have column {extra[0]!r} and lack {missing[0]!r}"
        elif extra:
            problem = f"have column {extra[0]!r}, " + (
                "the target: leave it out" if extra[0] == target else "unknown to the model"
            )
        else:
            problem = f"lack column {missing[0]!r}"
        raise ValueError(f"the rows {problem}; {takes}")
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        table: Any = rows
    else:
        try:
            table = [list(row) for row in rows]
        except TypeError:  # a flat list or a scalar: no rows
            raise ValueError(f"the rows must be a DataFrame or one row of values per sample; {takes}") from None
    for i, row in enumerate(table):
        if len(row) != len(columns):
            raise ValueError(f"row {i + 1} has {len(row)} values; {takes}")
    return pd.DataFrame(table, columns=columns)


def target_index(values: Any, encoding: dict[str, Any]) -> np.ndarray:
    """A table's raw targets as the model was trained on them: class labels → the fit's class
    indices (a label it never saw refused, naming the target column); a regression's values as floats."""
    name, classes = encoding.get("target", "the target"), encoding.get("classes")
    series = pd.Series(values).reset_index(drop=True)
    if classes is None:
        floats = pd.to_numeric(series, errors="coerce")
        if floats.isna().any():
            raise ValueError(f"column {name!r} holds {_plain(series[floats.isna()].iloc[0])!r}, which is not a number")
        return floats.to_numpy(dtype=np.float64)
    numeric = all(isinstance(c, numbers.Number) for c in classes)
    index = (series if numeric else series.astype(str)).map({c: i for i, c in enumerate(classes)})
    if index.isna().any():
        raise ValueError(
            f"column {name!r} holds {_plain(series[index.isna()].iloc[0])!r}, a class the model was not "
            f"trained on; it knows: {', '.join(map(str, classes))}"
        )
    return index.to_numpy(dtype=np.int64)


def feature_names(encoding: dict[str, Any]) -> list[str]:
    """A model input's name: its column, or `column=category` for a one-hot input."""
    cats = encoding.get("categories") or {}
    return [name for c in encoding["columns"] for name in ([f"{c}={v}" for v in cats[c]] if c in cats else [c])]


def _target(y: np.ndarray, name: str, task: str, path: str) -> tuple[np.ndarray, Task, list | None]:
    """(targets as trained: class indices or floats, the task, the original class labels or None)."""
    numeric = y.dtype.kind in "biuf"
    if task == "auto":
        integral = numeric and y.dtype.kind != "f" or (numeric and bool(np.all(np.mod(y, 1) == 0)))
        task = "regression" if numeric and not (integral and len(np.unique(y)) <= MAX_CLASSES) else "classes"
    if task == "regression":
        if not numeric:
            raise ValueError(f"data.task=regression needs a numeric target; column {name!r} of {path} is not")
        return y.astype(np.float64), "regression", None
    labels, index = np.unique(y if numeric else y.astype(str), return_inverse=True)
    if len(labels) < 2:
        raise ValueError(
            f"data.target={name} of {path} has one class ({_plain(labels[0])!r}); a classifier needs two or more"
        )
    kind: Task = "binary" if len(labels) == 2 else "multiclass"
    if task not in ("classes", kind):
        raise ValueError(f"data.task={task} does not fit the target {name!r} of {path}: it has {len(labels)} classes")
    return index.astype(np.int64), kind, [_plain(v) for v in labels]


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (for JSON, and for messages)."""
    return value.item() if hasattr(value, "item") else value
