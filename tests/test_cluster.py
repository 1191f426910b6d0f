"""The cluster paths at CPU scale: a sweep through submitit's local executor, the SLURM launcher's
sbatch options (no SLURM here), DDP inside a run with 2 CPU processes, and GPU checks that skip
without CUDA (`scripts/gpu_checks.sh` runs them on a GPU machine)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import submitit
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class, instantiate

from reglab import rundir
from reglab.runs import find_runs
from reglab.train import CONFIG_DIR
from tests.conftest import FAST, run_cli, train_run

GRID = ["regularizer=l1", "regularizer.strength=1e-3"]
SIZE = ["data.n_samples=200", "model.hidden=[16]"]  # 120 training points, one hidden layer of 16
SMALL = [*FAST, *SIZE]  # 5 epochs, no logger, no progress bar
RUN_FILES = (".hydra/config.yaml", "metrics.json", "metrics.csv", "checkpoints/last.ckpt")
NOT_COMPARED = ("wall_time_s",)  # the only column of summary.csv that may differ between launchers
# Skipped without CUDA, unless REGLAB_REQUIRE_GPU=1 (scripts/gpu_checks.sh): then they fail instead.
cuda = pytest.mark.skipif(
    not torch.cuda.is_available() and not os.environ.get("REGLAB_REQUIRE_GPU"),
    reason="needs a CUDA GPU (scripts/gpu_checks.sh)",
)


def run_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in sweep_dir.glob("*/metrics.json")}


def summary_rows(sweep_dir: Path) -> dict[str, dict[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return {row["run"]: row for row in csv.DictReader(f)}


def assert_same_metrics(a: dict[str, float], b: dict[str, float], abs_tol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=abs_tol, nan_ok=True), key


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """The same 1-job sweep (L1, λ = 1e-3, seed 0) through Hydra's basic launcher and
    through `hydra/launcher=local` (submitit's local executor: each job a pickled process)."""
    tmp = tmp_path_factory.mktemp("launchers")
    out = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")  # jobs at once on 2 cores: threads would only contend
        for name, launcher in {"basic": [], "local": ["hydra/launcher=local"]}.items():
            args = ["-m", *GRID, *SMALL, *launcher, f"hydra.sweep.dir={tmp / name}"]
            result = run_cli(args, cwd=tmp, timeout=240)
            assert result.returncode == 0, result.stderr[-3000:]
            out[name] = tmp / name
    return out


@pytest.mark.slow
def test_local_launcher_writes_the_basic_launchers_run_directories(sweeps):
    local, basic = run_dirs(sweeps["local"]), run_dirs(sweeps["basic"])
    assert len(local) == 1 and local.keys() == basic.keys()
    for run_dir in local.values():
        for name in RUN_FILES:
            assert (run_dir / name).is_file(), (run_dir.name, name)
        assert rundir.read_metrics_json(run_dir)["status"] == rundir.COMPLETED
    assert (sweeps["local"] / ".submitit").is_dir()  # submitit's pickles and logs, beside the runs
    found = find_runs(sweeps["local"])  # what reglab-report reads: the run, not .submitit/
    assert sorted(r.name for r in found.runs) == sorted(local) and found.incomplete == []


@pytest.mark.slow
def test_local_launcher_report_equals_basic_launcher_report(sweeps):
    local, basic = summary_rows(sweeps["local"]), summary_rows(sweeps["basic"])  # written at multirun end
    assert len(local) == 1 and local.keys() == basic.keys()
    for run, row in local.items():
        for column, value in row.items():
            if column in NOT_COMPARED:
                continue
            try:
                assert float(value) == pytest.approx(float(basic[run][column]), abs=1e-6, nan_ok=True), (run, column)
            except ValueError:  # a text column: run, data set, regularizer, status
                assert value == basic[run][column], (run, column)


@pytest.mark.slow
def test_every_run_records_seed_versions_and_device(sweeps):
    import lightning

    for run_dir in run_dirs(sweeps["local"]).values():
        record = rundir.read_metrics_json(run_dir)
        assert record["seed"] == 0
        env = record["environment"]
        assert env["torch"] == torch.__version__ and env["lightning"] == lightning.__version__
        assert env["python"] and env["device"]


@pytest.mark.parametrize("launcher", sorted(p.stem for p in Path(CONFIG_DIR, "hydra", "launcher").glob("*.yaml")))
def test_every_launcher_config_composes_and_names_an_installed_launcher(launcher):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher
    assert issubclass(get_class(cfg.hydra.launcher._target_), Launcher)  # its plugin is installed


def test_slurm_launcher_gives_the_expected_sbatch_options(tmp_path, monkeypatch):
    """Compose `hydra/launcher=slurm`, let hydra-submitit-launcher build its submitit executor for
    a 4-job sweep, and read the sbatch script that executor would submit."""
    fake_bin = tmp_path / "bin"  # submitit refuses to build a SLURM executor without `srun` on PATH
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    captured = {}

    class NotSubmitted:
        def results(self) -> list[None]:
            return [None]

    def map_array(executor, fn, *arguments):  # where submitit would call sbatch
        captured.update(executor=executor._executor, jobs=len(arguments[0]))
        return [NotSubmitted() for _ in arguments[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    sweep_dir = tmp_path / "sweep"
    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.array_parallelism=2",
        "hydra.launcher.setup=[module load cuda]",
        "trainer=gpu",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    launcher.launch([[f"seed={s}"] for s in range(4)], initial_job_idx=0)

    executor = captured["executor"]
    assert isinstance(executor, submitit.SlurmExecutor) and captured["jobs"] == 4
    assert executor.max_num_timeout == 3  # a run that hits --time is requeued and resumes
    executor.parameters["map_count"] = 4  # set by submitit when it submits the array
    script = executor._make_submission_file_text("python -u -m submitit.core._submit FOLDER", "uid")
    options = {line.split()[1] for line in script.splitlines() if line.startswith("#SBATCH")}
    for option in (
        "--partition=gpu",
        "--gpus-per-node=1",
        "--cpus-per-task=4",
        "--mem=16GB",
        "--time=60",
        "--nodes=1",
        "--ntasks-per-node=1",
        "--array=0-3%2",
        "--signal=USR2@120",
    ):
        assert option in options, (option, sorted(options))
    assert f"--output={sweep_dir}/.submitit/" in "\n".join(options)
    assert "\nmodule load cuda\n" in script


# GPU checks: skipped without CUDA; scripts/gpu_checks.sh runs them (`pytest -k gpu`).


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> dict:
    return train_run(tmp_path_factory.mktemp("cpu"), [*SIZE, "trainer=cpu"])


def assert_close_to_cpu(record: dict, cpu: dict, loss_tol: float, acc_tol: float) -> None:
    assert record["status"] == rundir.COMPLETED and record["epochs"] == cpu["epochs"]
    for key, value in cpu["metrics"].items():
        tol = acc_tol if key.endswith(("acc", "gap", "frac", "dead_units")) else loss_tol
        assert record["metrics"][key] == pytest.approx(value, abs=tol, rel=tol), key


@cuda
def test_gpu_run_matches_cpu_run(tmp_path, cpu_run):
    record = train_run(tmp_path, [*SIZE, "trainer=gpu"])
    assert record["environment"]["device"] == torch.cuda.get_device_name()
    # float32 on both: differences are summation order only. One sample of 40 is 0.025 accuracy.
    assert_close_to_cpu(record, cpu_run, loss_tol=1e-4, acc_tol=0.026)


@cuda
def test_gpu_bf16_mixed_run_completes_close_to_cpu(tmp_path, cpu_run):
    record = train_run(tmp_path, [*SIZE, "trainer=gpu", "trainer.precision=bf16-mixed"])
    # bfloat16 matmuls (8-bit significand): on CPU the same 5 epochs move losses by ~1e-3 and
    # accuracies by one sample; a wrong cast or a broken scaler moves them far more.
    assert_close_to_cpu(record, cpu_run, loss_tol=2e-2, acc_tol=0.05)


@cuda
@pytest.mark.slow
def test_gpu_jobs_of_a_local_launcher_sweep_see_the_gpu(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", "seed=0,1", *SMALL, "trainer=gpu", "hydra/launcher=local", "hydra.launcher.gpus_per_node=1"]
    result = run_cli([*args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [rundir.read_metrics_json(d) for d in run_dirs(sweep_dir).values()]
    assert len(records) == 2 and {r["status"] for r in records} == {rundir.COMPLETED}
    assert {r["environment"]["device"] for r in records} == {torch.cuda.get_device_name()}
