"""Shared fixtures: compose the real Hydra config in-process, or run the real command line."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback
import weakref
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


# A stack stopped mid-training, and what a re-launch trains: `interrupted_stack` and `epochs_trained`.
RESUMABLE = ["trainer.max_epochs=5", "callbacks.model_checkpoint.every_n_epochs=2"]  # saves after epochs 1 and 3


def interrupted_stack(run_dir: Path, overrides: list[str], monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Train the stack of `overrides` + RESUMABLE, crashing at the end of epoch 4 (retries=0): every member
    is left failed, with the checkpoint its stack saved after epoch 3 (4 of 5 epochs trained)."""
    from reglab.fit import fit
    from reglab.lightning.callbacks import MetricsHistory

    original = MetricsHistory.on_train_epoch_end

    def crash_at_epoch_4(self, trainer, pl_module):
        if trainer.current_epoch == 4:
            raise RuntimeError("simulated crash")
        return original(self, trainer, pl_module)

    with monkeypatch.context() as patch:
        patch.setattr(MetricsHistory, "on_train_epoch_end", crash_at_epoch_4)
        records = fit(make_config(run_dir, [*overrides, *RESUMABLE, "retries=0"]))
    assert [r["status"] for r in records] == ["failed"] * len(records) and len(records) > 1
    return records


def epochs_trained(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The epochs every `RegLabModule.training_step` from now on trains, in order."""
    from reglab.lightning.module import RegLabModule

    epochs: list[int] = []
    original = RegLabModule.training_step

    def spy(self, orders, batch_idx):
        epochs.append(self.current_epoch)
        return original(self, orders, batch_idx)

    monkeypatch.setattr(RegLabModule, "training_step", spy)
    return epochs


# A `reglab-train` process costs seconds of imports (torch, Lightning, matplotlib) before its first
# line of work, and the suite starts dozens. So each pytest worker starts one fork server that has
# imported them once, and every command line below is a child forked from it: a real process, with
# its own argv, cwd, environment, stdout, stderr, exit code and signals, that skips only the imports.
# (A fresh interpreter is still what tests/test_packaging.py, the import-weight checks and the
# benchmarks run.)
_FORK_SERVER = multiprocessing.get_context("forkserver")
_FORK_SERVER.set_forkserver_preload(["tests.cli_preload"])


def _cli_child(args: list[str], cwd: Path, env: dict[str, str], out: Path, err: Path) -> None:
    """What `python -m reglab.train *args` does after its imports, in a forked child."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.argv = [str(ROOT / "src" / "reglab" / "train.py"), *args]
    code = 1
    try:
        from reglab.train import main

        main()
        code = 0
    except SystemExit as e:  # the interpreter's own reading of an exit code
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()  # as the interpreter does at exit: W&B, logging
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _remove(*paths: str) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


class CliProcess:
    """`reglab-train args` running in a child of the fork server; `subprocess.Popen`'s verbs."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self._out = tempfile.NamedTemporaryFile(prefix="reglab-cli-", suffix=".out", delete=False).name
        self._err = self._out[: -len(".out")] + ".err"
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
        self._process = _FORK_SERVER.Process(target=_cli_child, args=(self.args, Path(cwd), env, self._out, self._err))
        self._process.start()
        self.pid = self._process.pid
        weakref.finalize(self, _remove, self._out, self._err)  # waited for or not, its output files go

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join()
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def communicate(self, timeout: float | None = None) -> subprocess.CompletedProcess:
        code = self.wait(timeout)
        out, err = (Path(p).read_text(errors="replace") for p in (self._out, self._err))
        return subprocess.CompletedProcess(["reglab-train", *self.args], code, out, err)


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`reglab-train args` run to its end in `cwd`, as a child of the fork server."""
    return CliProcess(args, cwd).communicate(timeout)
