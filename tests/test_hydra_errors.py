"""Errors Hydra raises before the task runs (composition, the run directory) reach the user as one
sentence naming the key and what is allowed: never a traceback squashed into a line."""

from __future__ import annotations

import pytest

from reglab.errors import one_line
from tests.conftest import run_cli

TRACEBACK_OF_A_FILE = """Traceback (most recent call last):
  File "/x/site-packages/hydra/_internal/utils.py", line 220, in run_and_report
    return func()
  File "/usr/lib/python3.11/pathlib.py", line 1116, in mkdir
    os.mkdir(self, mode)
FileExistsError: [Errno 17] File exists: '/tmp/a-file'

Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.
"""


def _is_one_clean_line(stderr: str) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and not any(s in stderr for s in ("Traceback", "site-packages", 'File "'))


def test_a_traceback_from_before_the_task_becomes_the_sentence_of_its_exception():
    line = one_line(TRACEBACK_OF_A_FILE)
    assert line.startswith(
        "/tmp/a-file is a file, not a directory: no run directory can be made there; set paths.log_dir"
    )
    assert _is_one_clean_line(line)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["regularizer=null"], "error: regularizer=null is not a regularizer config; choose one of: elastic_net"),
        (["hydra.run.dir={file}"], "error: {file} is a file, not a directory: no run directory can be made there"),
        (["-m", "hparams_search=lambda_optuna", "hydra.sweeper.n_trials=0"], "error: hydra.sweeper.n_trials=0 must be"),
    ],
)
def test_hydras_own_refusals_exit_2_in_one_sentence_and_leave_nothing(tmp_path, args, expected):
    file = tmp_path / "a-file"
    file.write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    done = run_cli([a.format(file=file) for a in args], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert _is_one_clean_line(done.stderr), done.stderr
    assert done.stderr.startswith(expected.format(file=file)), done.stderr
    assert sorted(tmp_path.rglob("*")) == before and file.read_text() == "mine"


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_reglab_eval_names_an_unreadable_checkpoint_in_one_line(tmp_path, damage, capsys):
    from reglab.evaluate import main as eval_main
    from tests.conftest import train_run

    train_run(tmp_path, ["data.n_samples=100", "model.hidden=[4]", "trainer.max_epochs=1"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000] if damage == "truncated" else b"not a checkpoint")
    with pytest.raises(SystemExit) as stopped:
        eval_main([str(tmp_path)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and _is_one_clean_line(err), err
    assert err.startswith(f"error: {ckpt} is unreadable (") and "nothing in it was run" in err


def test_an_empty_log_dir_is_refused_before_hydra_makes_a_directory_at_the_root(tmp_path):
    """`paths.log_dir=` puts the run directory at /runs/…: refused before Hydra creates it."""
    from pathlib import Path

    existed = Path("/runs").exists()
    done = run_cli(["paths.log_dir="], cwd=tmp_path)
    assert done.returncode == 2 and _is_one_clean_line(done.stderr), done.stderr
    assert done.stderr.startswith("error: paths.log_dir='' must name a directory"), done.stderr
    assert Path("/runs").exists() == existed and list(tmp_path.iterdir()) == []
