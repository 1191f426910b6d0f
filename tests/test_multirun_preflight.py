"""A multirun is checked whole before its first job trains, and its preflight cannot be skipped."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import reglab.multirun
from reglab.multirun import Preflight
from reglab.train import command_line_error


def test_a_grid_whose_last_combination_is_bad_is_refused_before_any_job():
    """Each value is fine beside the first of the others; only diabetes with label noise 0.1 (the last
    combination) is not: the preflight composes and checks every combination, not each value once."""
    assert command_line_error(["-m", "data=moons,diabetes", "data.label_noise=0"]) is None
    assert command_line_error(["-m", "data=moons", "data.label_noise=0,0.1"]) is None
    error = command_line_error(["-m", "data=moons,diabetes", "data.label_noise=0,0.1"])
    assert error == "data.label_noise=0.1 needs class labels; data set 'diabetes' is a regression"


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (reglab.multirun.ConfigError("seed=1.5 must be an integer"), 2, "error: seed=1.5 must be an integer"),
        (RuntimeError("boom"), 1, "error: the multirun preflight failed (RuntimeError: boom)"),
    ],
)
def test_the_multirun_preflight_stops_the_launch_whatever_it_raises(monkeypatch, capsys, raised, code, line):
    """Hydra turns an exception in `on_multirun_start` into a warning and launches the jobs anyway:
    the callback itself stops the process, in one line."""

    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(reglab.multirun, "check_jobs", fail)
    monkeypatch.setattr("hydra.core.global_hydra.GlobalHydra.instance", lambda: _NoLoader())
    config = OmegaConf.create({"hydra": {"job": {"config_name": "train"}, "overrides": {"task": []}}})
    with pytest.raises(SystemExit) as stopped:
        Preflight().on_multirun_start(config)
    assert stopped.value.code == code
    assert capsys.readouterr().err.strip() == line


class _NoLoader:
    def config_loader(self):
        return None
