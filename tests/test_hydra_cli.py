"""Hydra owns the command line: every flag of its --help works through `reglab-train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli

CONFIGS = ROOT / "configs"


@pytest.mark.parametrize(
    "args,check",
    [
        (["--cfg", "job", "regularizer=l1"], lambda out: yaml.safe_load(out)["regularizer"]["strength"] == 1e-3),
        (["-c", "job"], lambda out: yaml.safe_load(out)["seed"] == 0),
        (["--cfg", "hydra"], lambda out: "sweep" in yaml.safe_load(out)["hydra"]),
        (["--cfg", "all", "--resolve"], lambda out: "${" not in out and "hydra" in yaml.safe_load(out)),
        (
            ["--cfg", "job", "--package", "regularizer", "regularizer=l2"],
            lambda out: "reglab.science.regularizers.L2" in out and "data" not in out,
        ),
        (
            ["-p", "trainer", "--cfg", "job"],
            lambda out: "lightning.pytorch.Trainer" in out and "regularizer" not in out,
        ),
        (["--info", "config"], lambda out: "Config search path" in out),
        (["-cn", "train", "--cfg", "job"], lambda out: yaml.safe_load(out)["name"] == "default"),
        (["-cp", str(CONFIGS), "-cn", "train", "--cfg", "job"], lambda out: "data" in yaml.safe_load(out)),
        (["-sc", "install=bash"], lambda out: "hydra_bash_completion" in out and "complete " in out),
        (["--help"], lambda out: "regularizer: " in out and "Configuration groups" in out),
    ],
    ids=["cfg-job", "c-job", "cfg-hydra", "cfg-all-resolve", "package", "p", "info", "cn", "cp", "sc", "help"],
)
def test_hydra_flag_works(tmp_path, args, check):
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert check(result.stdout), result.stdout[:2000]
    assert not list(tmp_path.rglob("metrics.json"))  # printing a config trains nothing


@pytest.fixture
def own_experiment(tmp_path) -> Path:
    directory = tmp_path / "mine" / "experiment"
    directory.mkdir(parents=True)
    (directory / "my_exp.yaml").write_text("# @package _global_\nname: my_exp\ntrainer:\n  max_epochs: 7\n")
    return tmp_path / "mine"


def test_config_dir_adds_a_users_own_experiment(tmp_path, own_experiment):
    result = run_cli(["--config-dir", str(own_experiment), "experiment=my_exp", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["name"] == "my_exp" and config["trainer"]["max_epochs"] == 7


def test_hydra_searchpath_adds_a_users_own_experiment(tmp_path, own_experiment):
    result = run_cli([f"hydra.searchpath=[file://{own_experiment}]", "experiment=my_exp", "--cfg", "job"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["trainer"]["max_epochs"] == 7


def test_a_misspelt_key_is_one_line_and_exit_2_without_a_pre_parser(tmp_path):
    result = run_cli(["regularizer.strenght=1e-3", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: regularizer.strenght is not a key of the config: check its spelling"
    assert not (tmp_path / "run").exists()


def test_experimental_rerun_trains_the_pickled_job_again(tmp_path):
    run_dir = tmp_path / "run"
    fast = [
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.max_epochs=2",
        "data.n_samples=200",
        "model.hidden=[8]",
        f"hydra.run.dir={run_dir}",
    ]
    first = run_cli(["hydra/callbacks=save_job_info", *fast], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    trained = (run_dir / "metrics.json").read_text()
    for path in [run_dir / "metrics.json", *run_dir.rglob("*.ckpt")]:
        path.unlink()  # as if the job had crashed before it wrote anything
    again = run_cli(["--experimental-rerun", str(run_dir / ".hydra" / "config.pickle")], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    strip = lambda text: {k: v for k, v in json.loads(text).items() if k != "wall_time_s"}  # noqa: E731
    assert strip((run_dir / "metrics.json").read_text()) == strip(trained)


def test_a_multirun_of_a_users_own_experiment_with_config_dir(tmp_path, own_experiment):
    logs = tmp_path / "logs"
    args = ["-m", "--config-dir", str(own_experiment), "experiment=my_exp", "data.n_samples=200", "model.hidden=[8]"]
    result = run_cli([*args, "logger=none", "callbacks.progress_bar=null", f"paths.log_dir={logs}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (logs / "multiruns" / "my_exp").rglob("metrics.json")]
    assert record["status"] == "completed" and record["epochs"] == 7
