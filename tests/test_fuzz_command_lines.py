"""Property: whatever a command line sets, reglab answers with exit 0, 2 or 3, never a traceback,
and a refusal (exit 2) leaves nothing on disk.

Generated command lines set one to three of the composed config's scalar leaves (and lists) to
values of every kind: zero, negative, huge, NaN, ±inf, empty strings, null, wrong types; or set a
config group to null or to an unknown name; sometimes as a `-m` sweep. `data=file` command lines
read bad tables (a short header, a trailing comma, not UTF-8, inf, an empty file, a broken .gz, ...)
and good ones, with their keys (sep, encoding, target, features, ...) set. `make test` checks a bounded,
derandomized sample in process (`command_line_error`: the checks and the in-memory build that the
command line runs before training); `make fuzz` runs thousands, and real `reglab-train` processes.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from reglab.config import CONFIG_DIR
from reglab.rundir import flatten
from reglab.train import command_line_error

EXAMPLES = int(os.environ.get("REGLAB_FUZZ_EXAMPLES", "20"))
FUZZING = "REGLAB_FUZZ_EXAMPLES" in os.environ  # `make fuzz`: random, not derandomized
GROUPS = sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name not in ("hydra", "local"))
VALUES = [
    "0", "-1", "1", "2", "0.5", "-0.5", "1e308", "-1e308", "1e-320", "nan", "inf", "-inf", "10000000000000",
    "null", "''", "abc", "true", "false", "[]", "[0]", "[-1]", "[1e308]", "[nan]", "{}", "' '", "'/'",
]  # fmt: skip


def _leaves() -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train")
    GlobalHydra.instance().clear()
    return sorted(flatten(OmegaConf.to_container(cfg, resolve=False)))


LEAVES = _leaves()


@st.composite
def command_lines(draw) -> list[str]:
    keys = draw(st.lists(st.sampled_from(LEAVES), min_size=1, max_size=3, unique=True))
    args = [f"{key}={draw(st.sampled_from(VALUES))}" for key in keys]
    if draw(st.booleans()):
        group = draw(st.sampled_from(GROUPS))
        args.append(f"{group}={draw(st.sampled_from(['null', 'nope', '']))}")
    if draw(st.integers(0, 4)) == 0:  # a sweep over two values of the first key
        args = ["-m", f"{keys[0]}={draw(st.sampled_from(VALUES[:13]))},{draw(st.sampled_from(VALUES[:13]))}", *args[1:]]
    return args


def _zipped(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


# Tables, bad and good, for `data=file` command lines: each is read and refused in one line, or trains.
GOOD = "a,b,y\n" + "".join(f"{i % 7 / 3:.3f},{'red' if i % 3 else 'blue'},{i % 2}\n" for i in range(40))
TABLES: dict[str, bytes] = {
    "good.csv": GOOD.encode(),
    "short_header.csv": b"3,2\n" + GOOD.split("\n", 1)[1].encode(),  # sklearn's wine_data.csv: a count line
    "trailing_comma.csv": GOOD.replace("\n", ",\n").replace("y,\n", "y\n", 1).encode(),
    "latin1.csv": GOOD.replace("red", "rouge é").encode("latin-1"),
    "utf16.csv": GOOD.encode("utf-16"),
    "inf.csv": GOOD.replace(",1\n", ",inf\n", 1).replace("0.333", "-inf").encode(),
    "nan.csv": GOOD.replace("0.333", "nan").encode(),
    "semicolon.csv": GOOD.replace(",", ";").encode(),
    "empty.csv": b"",
    "header_only.csv": b"a,b,y\n",
    "one_column.csv": b"y\n0\n1\n0\n",
    "quote.csv": b'a,b,y\n"1,2\n',
    "good.csv.gz": gzip.compress(GOOD.encode()),
    "not_gzip.csv.gz": b"a,b,y\n",
    "good.tsv.zip": _zipped("good.tsv", GOOD.replace(",", "\t")),
}
FILE_VALUES = {
    "data.sep": ["null", "','", "';'", "'\\t'", "'|'", "''", "abc", "1"],
    "data.encoding": ["utf-8", "latin-1", "utf-16", "rot13", "''", "klingon", "1"],
    "data.target": ["null", "y", "a", "0", "-1", "5", "nope"],
    "data.features": ["null", "[a]", "[b]", "[y]", "[]", "[nope]", "[0,1]"],
    "data.task": ["auto", "binary", "multiclass", "regression", "nope"],
    "data.drop_missing": ["true", "false"],
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tables")
    for name, content in TABLES.items():
        (root / name).write_bytes(content)
    return root


@st.composite
def file_command_lines(draw) -> list[str]:
    """`data=file` on one of `TABLES`, with zero to two of its keys set."""
    keys = draw(st.lists(st.sampled_from(sorted(FILE_VALUES)), max_size=2, unique=True))
    return [draw(st.sampled_from(sorted(TABLES))), *(f"{k}={draw(st.sampled_from(FILE_VALUES[k]))}" for k in keys)]


def _is_one_clean_line(text: str) -> bool:
    return "\n" not in text.strip() and not any(s in text for s in ("Traceback", "site-packages", 'File "'))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not FUZZING,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],  # no shrinking: an example takes a build and a step
)
@given(args=command_lines())
def test_every_command_line_is_refused_in_one_line_or_passes_the_preflight(args):
    _refused_in_one_line_or_passes(args)


def _refused_in_one_line_or_passes(args: list[str]) -> None:
    logged = _Records()  # a refusal prints its one line only: nothing logged at WARNING or above
    logging.getLogger().addHandler(logged)
    with tempfile.TemporaryDirectory() as cwd:
        before = Path.cwd()
        os.chdir(cwd)
        try:
            error = command_line_error(args)
        finally:
            os.chdir(before)
            logging.getLogger().removeHandler(logged)
        assert error is None or (error.strip() and _is_one_clean_line(error)), (args, error)
        assert error is None or not logged.records, (args, error, logged.records[:1])
        assert list(Path(cwd).iterdir()) == [], (args, error)


@settings(
    max_examples=max(EXAMPLES // 2, 1),
    deadline=None,
    derandomize=not FUZZING,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],
)
@given(table_and_args=file_command_lines())
def test_every_file_command_line_is_refused_in_one_line_or_passes_the_preflight(tables, table_and_args):
    """A bad table (a short header, a trailing comma, not UTF-8, inf, ...) or a key that does not fit
    it: one clean line, nothing written; else the run can start."""
    name, *args = table_and_args
    _refused_in_one_line_or_passes(["data=file", f"data.path={tables / name}", *args])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


# The real command line, training included, at small sizes: what `make fuzz` adds (a process each).
BASE = {"trainer.max_epochs": "2", "data.n_samples": "120", "model.hidden": "[8]"}  # the default logger: W&B offline


@pytest.mark.skipif(not FUZZING, reason="a process per example: `make fuzz`")
@settings(max_examples=max(EXAMPLES // 10, 1), deadline=None, database=None, phases=[Phase.generate])
@given(args=command_lines())
def test_every_real_command_line_exits_0_2_or_3_without_a_traceback(args):
    _real_command_line(args)


@pytest.mark.skipif(not FUZZING, reason="a process per example: `make fuzz`")
@settings(max_examples=max(EXAMPLES // 20, 1), deadline=None, database=None, phases=[Phase.generate])
@given(table_and_args=file_command_lines())
def test_every_real_file_command_line_exits_0_2_or_3_without_a_traceback(tables, table_and_args):
    name, *args = table_and_args
    _real_command_line(["data=file", f"data.path={tables / name}", *args], without=("data.n_samples",))


def _real_command_line(args: list[str], without: tuple[str, ...] = ()) -> None:
    keys = {a.split("=")[0] for a in args} | set(without)
    base = [f"{k}={v}" for k, v in BASE.items() if k not in keys and not any(x.startswith(k) for x in keys)]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory() as cwd:
        flags = [a for a in args if a == "-m"]  # flags before the overrides, as argparse wants them
        command = [sys.executable, "-m", "reglab.train", *flags, *base, *(a for a in args if a != "-m")]
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return  # a long training (a huge epoch count) is not a failure
        assert done.returncode in (0, 2, 3), (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, (args, done.stderr[-2000:])
        if done.returncode == 2:
            assert _is_one_clean_line(done.stderr), (args, done.stderr)
            assert list(Path(cwd).iterdir()) == [], (args, sorted(map(str, Path(cwd).rglob("*"))))
