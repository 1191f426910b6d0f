"""Shared fixtures: compose the real Hydra config in-process, or run the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from reglab.train import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
# Small and quick, but the real code path: no progress bar, no W&B unless a test asks for it.
FAST = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "trainer.max_epochs=5"]


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")


def make_config(run_dir: Path, overrides: list[str] = (), fast: bool = True) -> DictConfig:
    """The config `reglab-train <overrides>` would run, writing into `run_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*(FAST if fast else []), *overrides], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    cfg.hydra.job.override_dirname = "test"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as Hydra does before the job starts
    return cfg


def train_run(run_dir: Path, overrides: list[str] = (), fast: bool = True) -> dict:
    """A K = 1 run's metrics.json record."""
    from reglab.fit import fit

    (record,) = fit(make_config(run_dir, overrides, fast))
    return record


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, "-m", "reglab.train", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
