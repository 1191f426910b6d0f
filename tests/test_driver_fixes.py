"""The driver's promises that its structure once broke: `sweep.chunk` bounds what is held in memory,
a retried λ-path stage starts where the previous stage ended, and a check writes nothing."""

from __future__ import annotations

import gc
import weakref

import lightning as L
import pytest

import reglab.fit
from reglab.errors import ConfigError
from reglab.fit import fit
from reglab.members import check_identity, members_of
from tests.conftest import make_config, train_run

SMALL = ["data.n_samples=120", "model.hidden=[8]", "trainer.max_epochs=2"]


def test_sweep_chunk_holds_one_chunk_of_members_in_memory_at_a_time(tmp_path, monkeypatch):
    """With sweep.chunk=1, four members train one after another and each is built only when its turn
    comes: when any trains, at most one stack (its own) is alive, whatever the preflight built."""
    alive: list[weakref.ref] = []
    peak = []
    real_build, real_train = reglab.fit.build, reglab.fit.train_stack

    def build(*args, **kwargs):
        stack = real_build(*args, **kwargs)
        alive.append(weakref.ref(stack.module))  # the module holds the weights and their optimizer state
        return stack

    def train_stack(cfg, stack, multirun=False):
        gc.collect()
        peak.append(sum(ref() is not None for ref in alive))
        return real_train(cfg, stack, multirun)

    monkeypatch.setattr(reglab.fit, "build", build)
    monkeypatch.setattr("reglab.preflight.build", build)  # the preflight's builds count too
    monkeypatch.setattr(reglab.fit, "train_stack", train_stack)
    records = fit(make_config(tmp_path, [*SMALL, "seed=[0,1,2,3]", "sweep.chunk=1"]))
    assert [r["status"] for r in records] == ["completed"] * 4
    assert len(peak) == 4 and max(peak) == 1, peak


def test_a_crashed_later_stage_of_a_lambda_path_restarts_from_the_previous_stages_weights(tmp_path, monkeypatch):
    """Stage 1 of a λ path crashes at its first attempt, before any checkpoint: its retry must start
    from stage 0's final weights, as the uninterrupted path did, and end with the same metrics."""
    path = ["regularizer=l1", "regularizer.strength=[0,1e-3]", "seed=[0]", "sweep.path=true", "retries=1"]
    clean = fit(make_config(tmp_path / "clean", [*SMALL, *path]))
    calls = []
    real_fit = L.Trainer.fit

    def crash_stage_1_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # stage 0 trained; stage 1's first attempt
            raise RuntimeError("simulated crash")
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", crash_stage_1_once)
    crashed = fit(make_config(tmp_path / "crashed", [*SMALL, *path]))
    assert len(calls) == 3 and [r["attempts"] for r in crashed] == [1, 2]
    for ours, theirs in zip(crashed, clean):
        assert ours["status"] == theirs["status"] == "completed"
        for key, value in theirs["metrics"].items():
            assert ours["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


def test_the_identity_check_refuses_another_config_and_writes_nothing(tmp_path):
    """A finished run's directory asked to train another λ: refused in one line, its files untouched."""
    run = tmp_path / "run"
    train_run(run, [*SMALL, "regularizer=l1", "regularizer.strength=1e-3"])
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    other = make_config(tmp_path / "other", [*SMALL, "regularizer=l1", "regularizer.strength=1e-2"])
    other.paths.output_dir = str(run)
    with pytest.raises(ConfigError, match="holds a run of another config .*regularizer.strength"):
        check_identity(members_of(other), force=False)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_a_members_config_does_not_grow_with_the_member_count(tmp_path):
    """Each member's config holds its own λ, not the list of all K: building K configs is linear in
    K (a 5,000-member stack once spent minutes here). The members' configs are the K = 1 runs'."""
    import pickle

    def sizes(k: int) -> set[int]:
        strengths = ",".join(f"{(i + 1) * 1e-4:g}" for i in range(k))
        cfg = make_config(tmp_path / str(k), ["regularizer=l1", f"regularizer.strength=[{strengths}]", "seed=[0,1]"])
        members = members_of(cfg)
        assert [m.cfg.regularizer.strength for m in members[:2]] == [1e-4, 1e-4] and members[1].cfg.seed == 1
        assert members[0].cfg.paths.output_dir == str(tmp_path / str(k) / members[0].name)
        return {len(pickle.dumps(m.cfg)) for m in members}

    assert max(sizes(200)) <= max(sizes(2)) + 64  # a longer name, not a longer list


def test_adam_steps_fused_unless_the_config_chooses_fused_or_foreach_itself():
    """reglab asks for torch's fused kernel; `+optimizer.foreach=true` used to be refused by torch as
    "`fused` and `foreach` cannot be `True` together", a choice the user never made."""
    import functools

    import torch

    from reglab.preflight import _fused
    from reglab.train import command_line_error

    params = [torch.nn.Parameter(torch.zeros(2, 2))]
    assert _fused(functools.partial(torch.optim.Adam, lr=1e-3))(params).defaults["fused"] is True
    chosen = _fused(functools.partial(torch.optim.Adam, lr=1e-3, foreach=True))(params).defaults
    assert chosen["foreach"] is True and not chosen["fused"]
    assert command_line_error(["+optimizer.foreach=true", "data.n_samples=100", "logger=none"]) is None
