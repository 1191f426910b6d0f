"""Property: every valid config composes, validates and trains a step without error."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reglab import rundir
from reglab.config import validate
from reglab.science import datasets
from tests.conftest import make_config, train_run

DATASETS = {
    "moons": ["data.n_samples=120"],
    "xor": ["data.n_samples=120"],
    "wine": [],
    "diabetes": [],
    "features": ["data.n_samples=150"],
    "sparse_regression": ["data.n_samples=150"],
}
REGULARIZERS = ["none", "l1", "l2", "elastic_net", "weight_decay", "prox_l1", "group_lasso"]


@st.composite
def valid_overrides(draw) -> list[str]:
    data = draw(st.sampled_from(sorted(DATASETS)))
    regularizer = draw(st.sampled_from(REGULARIZERS))
    strength = 0.0 if regularizer == "none" else draw(st.sampled_from([0.0, 1e-5, 1e-3, 1e-1, 3.0]))
    hidden = draw(st.lists(st.integers(1, 16), max_size=2))
    batch = draw(st.one_of(st.none(), st.integers(1, 64)))
    optimizer = draw(st.sampled_from(["adam", "sgd"]))
    overrides = [
        f"data={data}",
        *DATASETS[data],
        f"data.batch_size={'null' if batch is None else batch}",
        f"model.hidden=[{','.join(map(str, hidden))}]",
        f"model.activation={draw(st.sampled_from(['relu', 'tanh', 'gelu']))}",
        f"model.dropout={draw(st.sampled_from([0.0, 0.3]))}",
        f"regularizer={regularizer}",
        f"regularizer.strength={strength}",
        f"optimizer={optimizer}",
        f"optimizer.lr={draw(st.sampled_from([1e-4, 1e-2, 0.3]))}",
        f"seed={draw(st.integers(0, 2**31 - 1))}",
        "trainer.max_epochs=1",
    ]
    if regularizer != "none" and hidden and draw(st.booleans()):
        overrides.append("regularizer.exclude=[output]")
    if data not in ("diabetes", "sparse_regression"):
        overrides.append(f"data.label_noise={draw(st.sampled_from([0.0, 0.2]))}")
    return overrides


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=valid_overrides())
def test_every_valid_config_composes_validates_and_trains_a_step(overrides):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(Path(tmp), overrides)
        validate(cfg)
        record = train_run(Path(tmp), overrides)
    # A step with a huge λ·lr may overflow, which is a finding (diverged), not an error.
    assert record["status"] in (rundir.COMPLETED, rundir.DIVERGED), record.get("error")
    n_train = len(datasets.load_splits(cfg.data, cfg.seed).y["train"])
    assert record["steps"] == math.ceil(n_train / (cfg.data.batch_size or n_train))  # one epoch of mini-batches
