"""Whole processes timed from outside, shared by the benchmark scripts in this folder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def reglab_train() -> list[str]:
    """The command that starts `reglab-train` from this interpreter's environment."""
    script = Path(sys.executable).with_name("reglab-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "reglab.train"]


def timed(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> float:
    """Seconds from launching `command` to its exit; its output goes to `log`. A failure ends the benchmark."""
    with open(log, "w") as out:
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} exited {result.returncode}:\n{log.read_text()[-3000:]}")
    return elapsed
