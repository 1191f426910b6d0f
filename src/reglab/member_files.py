"""What each member's metrics.json records of a trained stack: exactly what its K = 1 run would have
recorded (`reglab.rundir` lists the files; its checkpoints are `reglab.checkpoint`'s)."""

from __future__ import annotations

import platform
from typing import Any

from reglab import rundir
from reglab.members import identity
from reglab.preflight import Stack
from reglab.tables import score_key


def environment() -> dict[str, str]:
    import lightning
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    versions = {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__}
    return versions | {"device": device}


def member_record(stack: Stack, k: int, test: dict[str, list[float]]) -> dict[str, Any]:
    """Member k's metrics.json record (its caller adds attempts, wall time, hash, environment)."""
    from reglab.lightning.callbacks import BestCheckpoint
    from reglab.science.metrics import feature_l1, n_weights

    m, module = stack.members[k], stack.module
    rows = stack.history.rows(k)
    diverged = module.diverged_epoch[k]
    final = rows[-1] if rows else {}
    trained = int(final.get("step", 0)) > 0  # a run that took no step is never completed
    tested = {key: values[k] for key, values in test.items()} if diverged is None else {}  # a diverged run is not
    model = module.model.member(k)
    model.load_state_dict(module.member_weights(k))
    data = stack.datamodule.member(k)
    monitor = score_key(stack.datamodule.task)
    scored = [r for r in rows if monitor in r and r[monitor] == r[monitor]]  # not NaN
    best = max(scored, key=lambda r: r[monitor], default=None)  # the first epoch that reached it
    monitors = [c for c in stack.trainer.callbacks if hasattr(c, "member_record")]  # early stopping, best checkpoint
    monitored = [c.member_record(k, rows) if isinstance(c, BestCheckpoint) else c.member_record(k) for c in monitors]
    return {
        "status": rundir.DIVERGED if diverged is not None else rundir.COMPLETED if trained else rundir.FAILED,
        "error": None if trained else "no training step was taken",
        "diverged_epoch": diverged,
        **identity(m.cfg),
        "epochs": int(final.get("epoch", -1)) + 1,
        "steps": int(final.get("step", 0)),
        "metrics": {key: v for key, v in final.items() if key not in ("epoch", "step")} | tested,
        "best_epoch": None if best is None else int(best["epoch"]),
        "feature_l1": feature_l1(model)[0],
        "support": data.support,
        "true_coef": data.coef,
        "n_weights": n_weights(model),
        "flipped_labels": data.flipped,
        "feature_names": data.feature_names,
        "data_file": data.source,  # path, size and sha256 of each file read (data=file)
        # fitted on the training split: x_std = (x − mean) / std; a file's encoding of rows and labels (reglab.load_run)
        "input_transform": data.input_transform(),
    } | {key: value for record in monitored for key, value in record.items()}
