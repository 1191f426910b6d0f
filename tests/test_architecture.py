"""The layers show in the imports: science never imports Lightning or Hydra, lightning/ never Hydra,
and no module imports one above it (`../shared/STYLE.md`: train (the Hydra entry point) -> multirun,
fit (the driver) -> preflight -> config, members, rundir, lightning/, science/; report -> runs <-
figures), nor, inside science/, one of its own rank or above. No import cycle, inside a function or
not. errors and tables import nothing from reglab, and the light modules (what a refusal or `--cfg
job` needs) import neither torch nor Lightning at module level. No file is over 400 lines, no
function over 60, and the estimators reach the engine only through the Python API and the run reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "reglab"
# Higher ranks may import lower ones, never the other way round.
RANK = {
    "errors": 0, "tables": 0, "science": 0, "rundir": 0, "wandb_init": 0,
    "members": 1, "schema": 1, "checkpoint": 1,
    "config": 2, "runs": 2, "lightning": 2,
    "preflight": 3, "figures": 3,
    "report_wandb": 3,
    "member_files": 4, "report": 4, "evaluate": 4,
    "fit": 5, "multirun": 5,
    "train": 6, "api": 6,
    "estimators": 7,  # scikit-learn's API over train.run
}  # fmt: skip
# Modules whose own top-level imports stay light: a refusal, `--help` and `--cfg job` load only these.
LIGHT = (
    "errors",
    "tables",
    "members",
    "schema",
    "config",
    "multirun",
    "train",
    "rundir",
    "science.conventions",
    "science.memory",
)
HEAVY = ("torch", "lightning", "wandb", "matplotlib", "sklearn", "pandas", "scipy", "tensorboardX")


def _layer(module: str) -> str:
    return module.removeprefix("reglab.").split(".")[0]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "reglab":
                names |= {f"reglab.{a.name}" for a in node.names}
    return names


FILES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_no_module_imports_a_layer_above_its_own(path):
    layer = path.relative_to(SRC).parts[0].removesuffix(".py")
    assert layer in RANK, f"{layer} has no place in the layers; add it to RANK"
    for name in _imports(path):
        if name.startswith("reglab."):
            other = _layer(name)
            assert other == layer or RANK[other] < RANK[layer], f"{layer} imports {name}"
        if layer == "science":
            assert not name.startswith(("lightning", "hydra", "omegaconf", "wandb")), f"science imports {name}"
        if layer == "lightning":  # the driver hands the loggers what Hydra knows (preflight.job_overrides)
            assert not name.startswith(("hydra", "omegaconf")), f"lightning/{path.name} imports {name}"
        if layer in ("figures", "runs"):
            assert not name.startswith(("lightning", "reglab.lightning", "reglab.report", "hydra")), name


# Ranks inside science/, the same rule one level down: `data` holds the plain types (Task, Dataset,
# Splits) that the generators (`datasets`) and the file reader (`files`) both use, so that neither
# imports the other for them; `datasets.file` reads files.
SCIENCE_RANK = {
    "conventions": 0, "data": 0, "memory": 0, "model": 0, "proximal": 0, "reading": 0,
    "files": 1, "metrics": 1, "regularizers": 1,
    "datasets": 2,
}  # fmt: skip
SCIENCE = sorted((SRC / "science").glob("*.py"))


def _module(path: Path) -> str:
    """`reglab.science.files` for src/reglab/science/files.py; a package's `__init__.py` is the package."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


def _reglab_imports(path: Path) -> set[str]:
    """The reglab modules `path` imports anywhere, inside functions too: `from reglab.science import
    files` is `reglab.science.files`, `from reglab.science.datasets import Task` `reglab.science.datasets`."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "reglab"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # `from . import x`, `from ..science import y`
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] == "reglab":
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return found - {me}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of `graph` (module -> the modules it imports) as [a, b, ..., a], or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        path.append(module)
        for other in sorted(graph.get(module, ())):
            if other in path:
                return path[path.index(other) :] + [other]
            if other not in done and (found := visit(other)):
                return found
        done.add(path.pop())
        return None

    return next((c for m in sorted(graph) if m not in done and (c := visit(m))), None)


@pytest.mark.parametrize("path", SCIENCE, ids=[p.name for p in SCIENCE])
def test_science_modules_import_only_lower_ranks_of_science(path):
    if path.name == "__init__.py":
        return
    assert path.stem in SCIENCE_RANK, f"science/{path.name} has no rank; add it to SCIENCE_RANK"
    for name in _reglab_imports(path):
        assert name.startswith("reglab.science."), f"science/{path.name} imports {name}"
        other = name.split(".")[2]
        assert SCIENCE_RANK[other] < SCIENCE_RANK[path.stem], f"science/{path.name} imports {name}, not below it"


def test_no_import_cycle_anywhere_in_src_function_level_imports_included():
    graph = {module: _reglab_imports(path) for module, path in MODULES.items()}
    assert graph["reglab.science.datasets"] >= {"reglab.science.data", "reglab.science.files"}  # the reader sees both
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle_of_two_and_a_longer_one_and_none_in_a_tree():
    """datasets <-> files was such a circle: files took Dataset and Task from datasets, whose
    `file()` imported files inside the function."""
    circle = {"datasets": {"files", "data"}, "files": {"datasets", "data"}, "data": set()}
    assert _cycle(circle) == ["datasets", "files", "datasets"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_import_nothing_heavy_at_module_level(module):
    for name in _top_level_imports(SRC / f"{module.replace('.', '/')}.py"):
        assert name.split(".")[0] not in HEAVY, f"{module} imports {name} at module level"
        if name.startswith("reglab."):
            assert name.removeprefix("reglab.") in LIGHT, f"{module} imports {name}, which is not light"


REFUSED = {
    "a negative λ": ["regularizer=l1", "regularizer.strength=-1"],
    "λ not a number": ["regularizer.strength=abc"],
    "an unknown group choice": ["regularizer=l3"],
    "a learning rate of 0": ["optimizer.lr=0"],
    "no epochs": ["trainer.max_epochs=0"],
    "a sweep's last value": ["-m", "regularizer=l1", "regularizer.strength=0,1e-3,-1"],
}


@pytest.mark.parametrize("args", REFUSED.values(), ids=REFUSED.keys())
def test_a_refusal_the_config_can_judge_imports_nothing_heavy(args, tmp_path):
    """The command line's own path, in process: refused with exit 2 before torch, Lightning,
    scikit-learn, W&B or matplotlib is imported, and before any directory is made."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom reglab.train import main\nsys.argv = ['reglab-train', *sys.argv[1:]]\n"
        f"try:\n    main()\nexcept SystemExit as e:\n    print(e.code, [m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.stdout.split("\n")[-2] == "2 []", done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_errors_and_tables_import_nothing_from_reglab():
    for module in ("errors", "tables"):
        assert not [n for n in _imports(SRC / f"{module}.py") if n.startswith("reglab")], module


def test_one_engine_no_second_module_or_driver():
    assert not (SRC / "sweep.py").exists() and not (SRC / "science" / "stacked.py").exists()
    assert not (SRC / "lightning" / "vectorized.py").exists()
    modules = [
        n.name
        for p in SRC.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ClassDef)
        and any(getattr(b, "attr", getattr(b, "id", "")) == "LightningModule" for b in n.bases)
    ]
    assert modules == ["RegLabModule"]


def test_hydra_leaves_exactly_the_keys_that_change_no_result_out_of_a_jobs_directory_name():
    """One list of the keys that change no result (`reglab.members.NOT_TRAINING`): Hydra's
    `exclude_keys` holds each of them (and the defaults-list choices that only set other keys)."""
    from omegaconf import OmegaConf

    from reglab.members import CHOICES_ONLY, NOT_TRAINING, trains

    hydra = OmegaConf.load(SRC.parents[1] / "configs" / "hydra" / "default.yaml")
    excluded = list(hydra.job.config.override_dirname.exclude_keys)
    assert set(NOT_TRAINING) | set(CHOICES_ONLY) <= set(excluded)
    assert all(key in CHOICES_ONLY or not trains(key) for key in excluded), excluded


# The shape of a file that does one job (`../shared/STYLE.md`): about 400 lines a file, 60 a function.
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
SOURCES = sorted(SRC.rglob("*.py"))


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function of `tree`, methods and nested ones too, by qualified name (`WandbRuns.attach`)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        name = f"{prefix}{getattr(node, 'name', '')}"
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((name, node))
        found += _functions(
            node, f"{name}." if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) else prefix
        )
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(SRC)) for p in SOURCES])
def test_no_file_in_src_is_over_400_lines_nor_a_function_over_60(path):
    """A function counts from its `def` to its last line, decorators left out."""
    where = path.relative_to(SRC.parent)
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{where} is {lines} lines, over {MAX_FILE_LINES}"
    for name, node in _functions(ast.parse(path.read_text())):
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        assert length <= MAX_FUNCTION_LINES, f"{where}: {name} is {length} lines, over {MAX_FUNCTION_LINES}"


# What the scikit-learn estimators may import of reglab: the Python API (`run`, `train_in_memory`), the run
# reader, the in-memory tables of `data=file`, the rules' names, the one error formatter and `score_key`.
ESTIMATORS_IMPORT = {
    "reglab.api", "reglab.runs", "reglab.rundir", "reglab.science.conventions", "reglab.science.files",
    "reglab.errors", "reglab.tables",
}  # fmt: skip
API = {"run", "train_in_memory"}


@pytest.mark.parametrize("path", sorted((SRC / "estimators").glob("*.py")), ids=lambda p: p.name)
def test_the_estimators_reach_the_engine_only_through_the_python_api_and_the_run_reader(path):
    imported = {name for name in _reglab_imports(path) if not name.startswith("reglab.estimators")}
    assert imported <= ESTIMATORS_IMPORT, f"{path.name} imports {sorted(imported - ESTIMATORS_IMPORT)}"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "reglab.api":
            names = {a.name for a in node.names}
            assert names <= API, f"{path.name} takes {sorted(names - API)} from reglab.api, not only {sorted(API)}"
