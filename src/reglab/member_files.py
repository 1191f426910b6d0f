"""What each member's run directory gets from a trained stack: its metrics.json record and its own
K = 1 checkpoints (last.ckpt, best.ckpt), cut from the stack's, exactly what its K = 1 run would
have saved (`reglab.rundir` lists the files)."""

from __future__ import annotations

import io
import platform
from pathlib import Path
from typing import Any

from reglab import rundir
from reglab.members import identity
from reglab.preflight import Stack
from reglab.tables import score_key

# The stack-wide entries of a Lightning checkpoint that a member's checkpoint rewrites.
PER_MEMBER_ENTRIES = ("state_dict", "optimizer_states", "callbacks", "members", "divergence")


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


def save_member_checkpoint(
    state: dict[str, Any], stack: Stack, k: int, path: Path, weights: dict | None = None, epoch: int | None = None
) -> None:
    """Member k's last.ckpt: the stack's checkpoint with member k's weights, optimizer state and
    metrics rows, exactly what its K = 1 run would have saved. With `weights` (its best, from
    `BestCheckpoint`, at `epoch`): a weights-only checkpoint of those, without optimizer state."""
    import torch

    ckpt = {key: v for key, v in state.items() if key not in PER_MEMBER_ENTRIES}
    ckpt["state_dict"] = {f"model.{name}": t for name, t in (weights or stack.module.member_weights(k)).items()}
    hp = state["hyper_parameters"]
    regularizer = {**hp["regularizer"], "strength": [float(stack.module.regularizer.strength[k])]}
    ckpt["hyper_parameters"] = {**hp, "model": {**hp["model"], "members": 1}, "regularizer": regularizer}
    ckpt["optimizer_states"] = [_member_optimizer_state(o, k, len(stack.members)) for o in state["optimizer_states"]]
    rows = stack.history.rows(k)
    ckpt["members"] = [stack.members[k].config_hash, stack.origin]
    ckpt["divergence"] = {"epoch": [stack.module.diverged_epoch[k]], "weights": {}}
    values = torch.stack([v[:, k : k + 1] for v in stack.history.values[: len(rows)]]) if rows else torch.zeros(0)
    history = {"names": stack.history.names, "epochs": [(r["epoch"], r["step"]) for r in rows]}
    history |= {"diverged_epoch": [stack.module.diverged_epoch[k]], "values": values}
    ckpt["callbacks"] = {"MetricsHistory": history}
    if rows:
        ckpt["epoch"], ckpt["global_step"] = int(rows[-1]["epoch"]) + 1, int(rows[-1]["step"])
    if weights is not None:  # weights only: resuming from here would pair them with the last optimizer state
        del ckpt["optimizer_states"], ckpt["callbacks"]
        ckpt["lr_schedulers"] = []
        ckpt["epoch"] = (epoch or 0) + 1
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    rundir.atomic_write_bytes(path, buffer.getvalue())


def _member_optimizer_state(optimizer_state: dict[str, Any], k: int, members: int) -> dict[str, Any]:
    """Member k's slice of every per-parameter state tensor ([K, …] → [1, …]); the unfused groups."""
    import torch

    def part(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == members:
            return value[k : k + 1].clone()
        return value

    return {
        "state": {i: {n: part(v) for n, v in s.items()} for i, s in optimizer_state["state"].items()},
        "param_groups": [{**g, "fused": None} for g in optimizer_state["param_groups"]],
    }
