"""`data=file`: your own table trains like a built-in data set (same split, same numbers), its
categories and string labels go with the run's input transform, and a bad file is one line, exit 2."""

from __future__ import annotations

import gzip
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reglab.errors import ConfigError
from reglab.science import datasets, files, memory
from tests.conftest import run_cli, train_run

# scikit-learn's own copy of the wine table: a count line (178 rows, 13 features, the class names) for a header.
WINE_DATA = Path(datasets._sklearn().__file__).parent / "data" / "wine_data.csv"
EPOCHS = ["trainer.max_epochs=30", "model.hidden=[8]", "data.batch_size=null", "optimizer.lr=0.05"]


def _table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """A numeric column, a category and a string label that depends on both."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    label = np.where(x + (color == "red") * 1.5 - 0.5 > 0, "yes", "no")
    return pd.DataFrame({"size": x, "color": color, "label": label})


def test_a_csv_with_a_category_and_string_labels_trains_and_predicts_its_labels(tmp_path):
    import reglab

    path = tmp_path / "table.csv"
    frame = _table()
    frame.to_csv(path, index=False)
    record = train_run(tmp_path / "run", ["data=file", f"data.path={path}", "data.target=label", *EPOCHS])
    assert record["status"] == "completed" and record["task"] == "binary" and record["dataset"] == "table.csv"
    assert record["feature_names"] == ["size", "color=blue", "color=green", "color=red"]
    (source,) = record["data_file"]
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and source["size"] == path.stat().st_size
    trained = reglab.load_run(tmp_path / "run")
    labels = trained.predict_labels(frame[["size", "color"]])  # raw rows: strings as written
    assert set(labels) <= {"yes", "no"} and (labels == frame["label"]).mean() > 0.85
    rows = [[2.0, "red"], [-2.0, "blue"]]  # rows in the columns' order, a list as well as a DataFrame
    assert list(trained.predict_labels(rows)) == ["yes", "no"]
    assert trained.predict_proba(rows).shape == (2, 2)


@pytest.fixture(scope="module")
def categorical_run(tmp_path_factory):
    """A run trained on `_table()`'s CSV: a numeric column, a category and string labels."""
    root = tmp_path_factory.mktemp("categorical")
    _table().to_csv(root / "table.csv", index=False)
    record = train_run(root / "run", ["data=file", f"data.path={root / 'table.csv'}", "data.target=label", *EPOCHS])
    return root, record


def test_reglab_eval_and_predict_labels_on_a_categorical_run_give_its_own_test_metrics(categorical_run):
    """The fitted encoding reads the raw rows once: reglab-eval re-encoded one-hot inputs ("Shape of
    passed values is (24, 4), indices imply (24, 2)")."""
    import reglab
    from reglab.evaluate import main as eval_main

    root, record = categorical_run
    eval_main([str(root / "run")])
    evaluated = json.loads((root / "run" / "eval.json").read_text())
    assert evaluated["n"] == 24
    for key in ("test/acc", "test/loss"):
        assert evaluated["metrics"][key] == pytest.approx(record["metrics"][key], abs=1e-6), key
    trained = reglab.load_run(root / "run")
    splits = datasets.load_splits(trained.config.data, record["seed"])
    test = splits.rows.iloc[splits.index["test"]]
    labels = trained.predict_labels(test[["color", "size"]])  # by name, in any order
    assert (labels == test["label"].to_numpy()).mean() == pytest.approx(record["metrics"]["test/acc"], abs=1e-7)


def test_each_column_mistake_in_rows_to_predict_is_one_line_naming_the_column(categorical_run, capsys):
    import reglab
    from reglab.evaluate import main as eval_main

    root, _ = categorical_run
    trained = reglab.load_run(root / "run")
    takes = "the model takes 2 columns: size, color"
    mistakes = {
        "the rows lack column 'color'; " + takes: pd.DataFrame({"size": [1.0]}),
        "the rows have column 'weight', unknown to the model; " + takes: _table(2)[["size", "color"]].assign(weight=1),
        "the rows have column 'label', the target: leave it out; " + takes: _table(2),
        "the rows have column 'colour' and lack 'color'; " + takes: pd.DataFrame({"size": [1.0], "colour": ["red"]}),
        "row 2 has 3 values; " + takes: [[1.0, "red"], [2.0, "blue", "yes"]],
        "column 'size' holds 'strong', which is not a number": [["strong", "red"]],
        "column 'color' holds 'purple', a category the model was not trained on; it knows: blue, green, red": [
            [1.0, "purple"]
        ],
        "column 'size' has missing values in 1 of the rows": [[None, "red"]],
    }
    for message, rows in mistakes.items():
        with pytest.raises(ValueError) as refused:
            trained.predict_labels(rows)
        assert str(refused.value) == message
    other = _table(60, seed=1)
    other.assign(color=other["color"].where(other.index % 2 == 0, "purple")).to_csv(root / "other.csv", index=False)
    with pytest.raises(SystemExit) as exit_:
        eval_main([str(root / "run"), f"data.path={root / 'other.csv'}"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: {next(m for m in mistakes if 'purple' in m)}\n"


def test_the_file_data_set_equals_the_built_in_one_written_to_csv(tmp_path):
    """Same points in a CSV: the same split, standardisation, training and metrics as `data=moons`."""
    data = datasets.moons(n_samples=200, noise=0.2, seed=0)
    path = tmp_path / "moons.csv"
    pd.DataFrame({"a": data.x[:, 0], "b": data.x[:, 1], "y": data.y}).to_csv(path, index=False)
    built_in = train_run(tmp_path / "moons", ["data=moons", "data.n_samples=200", *EPOCHS])
    from_file = train_run(tmp_path / "file", ["data=file", f"data.path={path}", *EPOCHS])
    assert from_file["task"] == built_in["task"] == "binary"
    for key, value in built_in["metrics"].items():
        assert from_file["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-6), key
    assert from_file["feature_names"] == ["a", "b"] and built_in["feature_names"] is None


def test_a_regression_file_gives_values_in_its_own_units(tmp_path):
    import reglab

    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 3))
    frame = pd.DataFrame(x, columns=["u", "v", "w"]).assign(price=1000 + 300 * x[:, 0] + rng.normal(0, 5, 150))
    path = tmp_path / ("t.parquet" if _has_pyarrow() else "t.csv")  # Parquet where pyarrow is installed
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    record = train_run(
        tmp_path / "run",
        ["data=file", f"data.path={path}", "model.hidden=[]", "trainer.max_epochs=100", "optimizer.lr=0.1"],
    )
    assert record["task"] == "regression" and record["metrics"]["val/r2"] > 0.9
    values = reglab.load_run(tmp_path / "run").predict_labels(frame[["u", "v", "w"]])
    assert np.abs(values - frame["price"]).mean() < 60  # the target's std is 300


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def test_npz_npy_pairs_and_tsv_read_the_same_table(tmp_path):
    x, y = np.random.default_rng(0).normal(size=(50, 2)), np.arange(50) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "y": y}).to_csv(tmp_path / "d.tsv", sep="\t", index=False)
    a = files.load_table(str(tmp_path / "d.npz"), None, None, "auto", False)
    b = files.load_table(str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), None, "auto", False)
    c = files.load_table(str(tmp_path / "d.tsv"), "y", None, "auto", False)
    for other in (b, c):
        np.testing.assert_array_equal(a.x, other.x)
        np.testing.assert_array_equal(a.y, other.y)
    assert a.task == "binary" and a.feature_names == ["x0", "x1"]


def test_a_relaunch_with_a_changed_file_is_refused_naming_its_hash(tmp_path):
    path = tmp_path / "table.csv"
    _table().to_csv(path, index=False)
    args = ["data=file", f"data.path={path}", "data.target=label", "trainer.max_epochs=2", "model.hidden=[4]"]
    train_run(tmp_path / "run", args)
    assert train_run(tmp_path / "run", args)["status"] == "completed"  # the same file: found finished
    _table(seed=1).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"holds a run of another config \(it differs in data.sha256\)"):
        train_run(tmp_path / "run", args)


def test_sklearns_wine_data_csv_is_refused_naming_line_2_and_both_field_counts():
    """Its header has 5 fields over rows of 14: pandas made the first 9 fields the index and trained
    on 4 of the 13 measurements, named `178`, `13`, `class_0`, `class_1`."""
    with pytest.raises(ValueError) as refused:
        files.load_table(str(WINE_DATA), None, None, "auto", False)
    assert str(refused.value) == (
        f"data.path={WINE_DATA}: line 2 has 14 fields but the header (line 1) has 5 (split at ','; data.sep sets "
        "the delimiter); every line needs one field per column of the header"
    )


def test_rows_ending_in_a_comma_are_refused_as_such_not_as_missing_values(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("size,color,label\n1.5,red,yes,\n-0.5,blue,no,\n0.3,red,yes,\n")  # pandas: label NaN
    with pytest.raises(ValueError) as refused:
        files.load_table(str(path), "label", None, "auto", False)
    assert str(refused.value) == (
        f"data.path={path}: line 2 has 4 fields but the header (line 1) has 3: "
        "it ends in ',' with nothing after it; remove that trailing ','"
    )


def test_a_short_row_is_refused_by_the_line_it_starts_on_counting_a_quoted_line_break(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text('name,size,label\n"two\nlines",1.0,yes\n\nthree,2.0\nfour,3.0,no\n')
    with pytest.raises(ValueError, match=r"short.csv: line 5 has 2 fields but the header \(line 1\) has 3"):
        files.load_table(str(path), "label", None, "auto", False)


def test_the_delimiter_is_sniffed_from_the_first_lines_or_given_by_data_sep(tmp_path):
    frame = _table(30)
    frame.to_csv(tmp_path / "comma.csv", index=False)
    frame.to_csv(tmp_path / "semicolon.csv", index=False, sep=";")
    frame.to_csv(tmp_path / "pipe.txt", index=False, sep="|")
    frame.to_csv(tmp_path / "tab.csv", index=False, sep="\t")
    comma = files.load_table(str(tmp_path / "comma.csv"), "label")
    assert comma.feature_names == ["size", "color=blue", "color=green", "color=red"]
    for name, sep in [("semicolon.csv", None), ("pipe.txt", None), ("pipe.txt", "|"), ("tab.csv", "\\t")]:
        other = files.load_table(str(tmp_path / name), "label", sep=sep)  # '\\t': a tab, as a shell passes it
        np.testing.assert_array_equal(other.x, comma.x)
        np.testing.assert_array_equal(other.y, comma.y)
    with pytest.raises(ValueError) as refused:
        files.load_table(str(tmp_path / "comma.csv"), "label", sep="::")
    assert (
        str(refused.value)
        == "data.sep='::' must be one character, such as ',', ';', '|' or '\\t' (a tab); null sniffs it"
    )


def test_a_latin1_file_reads_with_data_encoding_and_is_refused_as_not_utf8_without(tmp_path):
    frame = _table(30).assign(color=lambda f: f["color"].map({"red": "rouge", "green": "vert", "blue": "bleu é"}))
    frame.to_csv(tmp_path / "latin1.csv", index=False, encoding="latin-1")
    frame.to_csv(tmp_path / "utf16.csv", index=False, encoding="utf-16")
    with pytest.raises(ValueError) as refused:
        files.load_table(str(tmp_path / "latin1.csv"), "label")
    line = 2 + int(np.flatnonzero(frame["color"] == "bleu é")[0])
    assert str(refused.value) == (
        f"data.path={tmp_path / 'latin1.csv'} is not UTF-8 text (line {line} holds byte 0xe9); the file must be "
        "UTF-8, or set data.encoding to its encoding (data.encoding=latin-1, cp1252, utf-16, ...)"
    )
    for name, encoding in [("latin1.csv", "latin-1"), ("utf16.csv", "utf-16")]:
        data = files.load_table(str(tmp_path / name), "label", encoding=encoding)
        assert data.feature_names == ["size", "color=bleu é", "color=rouge", "color=vert"]
    with pytest.raises(ValueError, match="^data.encoding='klingon' is not a text encoding Python knows"):
        files.load_table(str(tmp_path / "latin1.csv"), "label", encoding="klingon")
    from reglab.train import command_line_error

    latin1 = ["data=file", f"data.path={tmp_path / 'latin1.csv'}", "data.target=label", "data.encoding=latin-1"]
    assert command_line_error([*latin1, "logger=none", "model.hidden=[4]"]) is None  # it can train


def test_compressed_text_tables_read_as_their_plain_table_and_other_compressed_files_are_refused(tmp_path):
    frame = _table(30)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    plain = files.load_table(str(tmp_path / "plain.csv"), "label")
    for name in ("t.csv.gz", "t.tsv.gz", "t.csv.bz2", "t.csv.xz", "t.csv.zip"):
        frame.to_csv(tmp_path / name, index=False, sep="\t" if ".tsv" in name else ",")  # compressed by pandas
        data = files.load_table(str(tmp_path / name), "label")
        np.testing.assert_array_equal(data.x, plain.x)
        np.testing.assert_array_equal(data.y, plain.y)
    (tmp_path / "t.csv.zst").write_bytes(b"(\xb5/\xfd")  # a zstandard frame's magic number
    try:
        import zstandard  # noqa: F401
    except ImportError:  # Python reads .zst itself only from 3.14 on: the module is not a dependency
        with pytest.raises(ValueError, match=r"t.csv.zst: reading .zst needs the zstandard module: pip install"):
            files.load_table(str(tmp_path / "t.csv.zst"), "label")
    else:
        with pytest.raises(ValueError, match=r"t.csv.zst is not .zst data"):
            files.load_table(str(tmp_path / "t.csv.zst"), "label")
    (tmp_path / "t.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(ValueError, match=r"t.parquet.gz: only a text table is read compressed, named for its format"):
        files.load_table(str(tmp_path / "t.parquet.gz"), "label")
    (tmp_path / "truncated.csv.gz").write_bytes((tmp_path / "t.csv.gz").read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"truncated.csv.gz is not .gz data \(EOFError: Compressed file ended"):
        files.load_table(str(tmp_path / "truncated.csv.gz"), "label")


def test_inf_and_nan_are_named_by_column_and_row_count_before_numpy_warns(tmp_path):
    frame = _table(30).assign(price=np.linspace(1.0, 2.0, 30))
    frame.assign(size=frame["size"].where(frame.index % 10 != 3, np.inf)).to_csv(tmp_path / "inf.csv", index=False)
    frame.assign(price=frame["price"].where(frame.index != 5, -np.inf)).to_csv(tmp_path / "target.csv", index=False)
    x = np.random.default_rng(0).normal(size=(30, 2))
    x[[4, 7], 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(30) % 2)
    cases = {
        ("inf.csv", "label"): "column 'size' has infinite values (inf or -inf) in 3 rows; replace them with numbers",
        (
            "target.csv",
            "price",
        ): "column 'price' has infinite values (inf or -inf) in 1 row; replace them with numbers",
        (
            "nan.npz",
            None,
        ): "column 'x1' has missing values (empty or NaN) in 2 rows; fill them in, or data.drop_missing",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered" would be raised instead
        for (name, target), message in cases.items():
            with pytest.raises(ValueError) as refused:
                datasets.load("file", path=str(tmp_path / name), target=target)
            assert str(refused.value).startswith(f"data.path={tmp_path / name}: {message}"), refused.value


def _bad_files(root: Path) -> list[tuple[list[str], str]]:
    """(overrides, a fragment of the one line) for each kind of bad file."""
    frame = _table(60)
    frame.to_csv(root / "good.csv", index=False)
    frame.assign(same=1.0).to_csv(root / "constant.csv", index=False)
    frame.assign(label="yes").to_csv(root / "one_class.csv", index=False)
    frame.assign(name=[f"id{i}" for i in range(60)]).to_csv(root / "ids.csv", index=False)
    frame.assign(size=frame["size"].where(frame.index % 7 != 0)).to_csv(root / "missing.csv", index=False)
    (root / "table.xlsx").write_bytes(b"PK")
    np.savez(root / "arrays.npz", a=np.zeros(3))
    wide = frame.assign(code=[f"c{i % 30}" for i in range(60)])
    wide.to_csv(root / "wide.csv", index=False)
    (root / "empty_name.csv").write_text("size,,label\n1,red,yes\n2,blue,no\n")
    (root / "twice.csv").write_text("size,size,label\n1,2,yes\n2,3,no\n")
    frame.assign(color="é" + frame["color"]).to_csv(root / "latin1.csv", index=False, encoding="latin-1")
    good = f"data.path={root / 'good.csv'}"
    return [
        ([f"data.path={root / 'nope.csv'}"], "nope.csv is not a file"),
        ([good, "data.target=price"], "data.target='price' is not a column of"),
        ([good, "data.target=label", "data.features=[size,weight]"], "data.features='weight' is not a column"),
        ([good, "data.target=label", "data.task=regression"], "data.task=regression needs a numeric target"),
        ([good, "data.target=label", "data.task=multiclass"], "data.task=multiclass does not fit the target"),
        ([good, "data.target=label", "data.task=classes"], "data.task='classes' must be"),
        ([f"data.path={root / 'constant.csv'}", "data.target=label"], "column 'same' is constant (1.0 in every row)"),
        ([f"data.path={root / 'one_class.csv'}", "data.target=label"], "has one class ('yes')"),
        ([f"data.path={root / 'ids.csv'}", "data.target=label"], "column 'name' has 60 distinct strings in 60 rows"),
        (
            [f"data.path={root / 'missing.csv'}", "data.target=label"],
            "column 'size' has missing values (empty or NaN) in 9 rows",
        ),
        ([f"data.path={root / 'table.xlsx'}"], ".xlsx is not a format reglab reads"),
        ([f"data.path={root / 'arrays.npz'}"], "holds arrays a; it needs x and y"),
        ([good, "data.target=label", "data.fold=0"], "data.fold=0 needs data with folds"),
        ([good, "data.target=label", "data.label_noise=0.1", "data.target=size"], "needs class labels"),
        ([f"data.path={WINE_DATA}"], "wine_data.csv: line 2 has 14 fields but the header (line 1) has 5"),
        ([f"data.path={root / 'empty_name.csv'}"], "field 2 of the header (line 1) is empty"),
        ([f"data.path={root / 'twice.csv'}"], "the header (line 1) names column 'size' twice"),
        ([f"data.path={root / 'latin1.csv'}"], "latin1.csv is not UTF-8 text (line 2 holds byte 0xe9); the file must"),
        ([good, "data.target=label", "data.encoding=klingon"], "data.encoding='klingon' is not a text encoding"),
        ([good, "data.target=label", "data.sep=abc"], "data.sep='abc' must be one character"),
        ([f"data.path={root / 'arrays.npz'}", "data.sep=';'"], "data.sep=';': only a text table (.csv, .tsv) has one"),
    ]


def test_each_bad_file_is_refused_in_one_line(tmp_path):
    from reglab.train import command_line_error

    for overrides, fragment in _bad_files(tmp_path):
        error = command_line_error(["data=file", "logger=none", *overrides])
        assert error is not None and fragment in error, (overrides, error)
        assert "\n" not in error and "Traceback" not in error


def test_missing_values_drop_with_drop_missing_and_a_table_too_large_for_memory_is_refused(tmp_path, monkeypatch):
    from reglab.train import command_line_error

    _bad_files(tmp_path)
    missing = ["data=file", f"data.path={tmp_path / 'missing.csv'}", "data.target=label", "model.hidden=[4]"]
    assert command_line_error([*missing, "data.drop_missing=true"]) is None
    assert len(files.load_table(str(tmp_path / "missing.csv"), "label", None, "auto", True).y) == 60 - 9
    wide = ["data=file", f"data.path={tmp_path / 'wide.csv'}", "data.target=label", "model.hidden=[4]"]
    sizes = {"SC_PAGE_SIZE": 1, "SC_PHYS_PAGES": 40 * 60 * 34 // 0.8 - 1000}  # room for the model, not the data
    monkeypatch.setattr(memory.os, "sysconf", lambda name: sizes[name])
    error = command_line_error(wide)
    assert error is not None and "has 60 rows and 34 columns once encoded, about 0.0 GiB of memory" in error


def test_a_bad_file_exits_2_with_one_line_and_nothing_on_disk(tmp_path):
    result = run_cli(["data=file", "data.path=nope.csv", "logger=none"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: data.path=nope.csv: {Path('nope.csv')} is not a file"
    assert not (tmp_path / "logs").exists()


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_an_unreadable_file_exits_2_with_one_line_and_no_run_directory(tmp_path):
    """Root reads any file whatever its mode, but no one reads /proc/self/mem from offset 0: a real
    OSError at the first read, the hash, which came before the reading errors were said (a
    37-line traceback, exit 1, and a run directory left)."""
    result = run_cli(["data=file", "data.path=/proc/self/mem", "logger=none"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: data.path=/proc/self/mem cannot be read (OSError: Input/output error)\n"
    assert list(tmp_path.iterdir()) == []


def test_a_permission_denied_file_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    from reglab.train import command_line_error

    path = tmp_path / "table.csv"
    _table().to_csv(path, index=False)
    real = Path.read_bytes

    def denied(self: Path) -> bytes:  # as chmod 000 would for anyone but root, which the tests run as
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    error = command_line_error(["data=file", f"data.path={path}", "data.target=label", "logger=none"])
    assert error == f"data.path={path} cannot be read (PermissionError: Permission denied)"
    assert list(tmp_path.iterdir()) == [path]


def test_the_shipped_example_is_small_real_and_the_default_path():
    assert files.EXAMPLE.is_file() and files.EXAMPLE.stat().st_size < 100_000
    data = datasets.file()
    assert data.task == "multiclass" and data.encoding["classes"] == ["setosa", "versicolor", "virginica"]
    assert data.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
