"""The layers show in the imports: science never imports Lightning or Hydra, and no module imports
one above it (`../shared/STYLE.md`: cli -> fit -> config, rundir, lightning/, science/;
report -> runs <- figures)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "reglab"
# Higher ranks may import lower ones, never the other way round.
RANK = {
    "science": 0, "rundir": 0, "tables": 0,
    "config": 1, "lightning": 1, "runs": 1,
    "figures": 2, "fit": 2,
    "report": 3, "evaluate": 3,
    "train": 4,
}  # fmt: skip


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
        if layer in ("figures", "runs"):
            assert not name.startswith(("lightning", "reglab.lightning", "reglab.report", "hydra")), name


def test_one_engine_no_second_module_or_driver():
    assert not (SRC / "sweep.py").exists() and not (SRC / "science" / "stacked.py").exists()
    assert not (SRC / "lightning" / "vectorized.py").exists()
    modules = [n.name for p in SRC.rglob("*.py") for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.ClassDef) and any(getattr(b, "attr", getattr(b, "id", "")) == "LightningModule" for b in n.bases)]  # fmt: skip
    assert modules == ["RegLabModule"]
