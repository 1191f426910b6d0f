"""The one memory estimate (`reglab.science.memory`): each term against a hand count, the cap it is
held to (`ulimit -v` included), and the config's check counting every data set a stack holds."""

from __future__ import annotations

import resource

import pytest

from reglab.config import validate
from reglab.errors import ConfigError
from reglab.science import memory
from tests.conftest import make_config


def test_each_term_of_the_estimate_is_its_hand_count():
    widths = [2, 128, 128, 1]  # the main job's model
    weights = 2 * 128 + 128 + 128 * 128 + 128 + 128 * 1 + 1  # = 16,897 weights and biases
    assert memory.model_bytes(widths, members=5) == 40 * 5 * weights
    assert memory.data_bytes(1000, 2, data_sets=5) == 40 * 1000 * 2 * 5
    assert memory.activation_bytes(widths, rows=1000, members=5) == 8 * 5 * 1000 * (128 + 128 + 1)


def test_the_cap_is_the_smaller_of_the_machine_and_ulimit_v_less_the_runtime(monkeypatch):
    monkeypatch.setattr(memory.os, "sysconf", lambda name: {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**20}[name])
    monkeypatch.setattr(memory.resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert memory.allowed_bytes() == 4 * 2**30
    monkeypatch.setattr(memory.resource, "getrlimit", lambda _: (3 * 2**30, resource.RLIM_INFINITY))
    assert memory.allowed_bytes() == 2 * 2**30  # 3 GiB of address space less the 1 GiB torch maps
    assert memory.fits(int(0.8 * 2 * 2**30) - 1000) and not memory.fits(int(0.8 * 2 * 2**30) + 1000)


def test_the_config_check_counts_a_data_set_per_seed_and_fold(tmp_path, monkeypatch):
    overrides = ["data.n_samples=100000", "model.hidden=[4]", "seed=[0,1]"]
    per_set = memory.data_bytes(100_000, 2)
    model = memory.model_bytes([2, 4, 1], 4) + memory.activation_bytes([2, 4, 1], 100_000, 4)
    # Room for two data sets and the model, not for four: two seeds alone pass, two seeds × two folds do not.
    room = (2.5 * per_set + model) / memory.USABLE
    monkeypatch.setattr(memory, "allowed_bytes", lambda: int(room))
    validate(make_config(tmp_path / "a", [*overrides, "regularizer=l1", "regularizer.strength=[0,0.1]"]))
    with pytest.raises(ConfigError, match=r"4 member\(s\) need about"):
        validate(make_config(tmp_path / "b", [*overrides, "+data.fold=[0,1]"]))
