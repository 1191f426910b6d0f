"""A plain (not editable) install of the wheel runs from the configs it ships."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys

from tests.conftest import ROOT


def test_a_wheel_installed_in_a_fresh_venv_composes_and_trains(tmp_path):
    source, wheels, venv = tmp_path / "source", tmp_path / "wheels", tmp_path / "venv"
    for part in ("src", "configs"):  # a copy, so that the build leaves nothing in the checkout
        shutil.copytree(
            ROOT / part, source / part, symlinks=True, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
        )
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)], check=True, timeout=600
    )
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600)
    (wheel,) = wheels.glob("reglab-*.whl")
    install = [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, timeout=600)
    # The dependencies come from this venv; a path in a .pth file does not run that directory's own
    # .pth files, so the editable reglab installed there stays invisible.
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONPATH": ""}
    cli = venv / "bin" / "reglab-train"

    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import reglab; print(reglab.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert where.stdout.startswith(str(purelib)), where.stdout + where.stderr
    shown = subprocess.run(
        [cli, "--cfg", "job", "regularizer=l1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert shown.returncode == 0 and "reglab.science.regularizers.L1" in shown.stdout, shown.stderr[-2000:]
    trained = subprocess.run(
        [
            cli,
            "logger=none",
            "callbacks.progress_bar=null",
            "trainer.max_epochs=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"
