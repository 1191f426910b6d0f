"""reglab's checkpoint format, written and read here only: every run directory's `checkpoints/last.ckpt`
and `best.ckpt` (a K = 1 run's and each member's of a stack alike). A plain dict, read with
`torch.load(weights_only=True)` (plain data and tensors: nothing in the file is executed):

    format, version     "reglab-checkpoint", 1
    hyper_parameters    {model: MLP.hyperparameters (members 1), regularizer: Regularizer.hyperparameters
                        (strength [λ]), task, sparsity_threshold}: what builds the model and the rule again
    state_dict          the K = 1 weights, {"model.<name>": tensor}
    optimizer           the member's slice of the optimizer's state_dict; None in a weights-only best.ckpt
    lr_scheduler        the scheduler's state_dict; None without a scheduler (or in best.ckpt)
    history             the member's metrics.csv rows (`MetricsHistory.state_dict` of a K = 1 run);
                        None in best.ckpt
    callbacks           {state key: the member's state} of the other callbacks that keep one (early
                        stopping, best weights, W&B run id); {} in best.ckpt
    divergence          {epoch: where it diverged or None, weights: where it stopped or None}
    members             [config hash, origin]: the member it is; a re-launch resumes only the same
    progress            {epoch, global_step, loops}: where training stood; `loops` is Lightning's loop
                        state that continues the fit exactly (None in best.ckpt)

The stack's own resume checkpoint (`<dir>/.stack/checkpoints/…`) is Lightning's, written and read by
Lightning. `save` writes a file whole or not at all; `member` makes one from a stack while it saves
its own; `read`, `model` and `regularizer` serve `reglab.load_run` and `RegLabModule.load_from_checkpoint`;
`lightning` turns a file into what `trainer.fit(ckpt_path=…)` restores (resume, `AtomicCheckpointIO`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from reglab import rundir
from reglab.science.model import MLP
from reglab.science.regularizers import Regularizer

FORMAT, VERSION = "reglab-checkpoint", 1


def save(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    rundir.atomic_write_bytes(Path(path), buffer.getvalue())


def load(path: str | Path, map_location: Any = "cpu") -> Any:
    """Whatever reglab checkpoint `path` holds (a run's or a stack's), unchecked; nothing in it is executed."""
    return torch.load(path, map_location=map_location, weights_only=True)


def read(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at `path`, tensors on `map_location`; ValueError if it is not in reglab's format."""
    state = load(path, map_location)
    hp = state.get("hyper_parameters") if isinstance(state, dict) else None
    ours = isinstance(state, dict) and state.get("format") == FORMAT and state.get("version") == VERSION
    if not (ours and isinstance(hp, dict) and {"model", "regularizer"} <= hp.keys() and "state_dict" in state):
        raise ValueError(
            f"{path} holds no reglab model hyperparameters (written by an older reglab, or not by reglab); "
            "train the run again (force=true)"
        )
    return state


def model(state: dict[str, Any]) -> MLP:
    """The trained K = 1 `MLP` of a checkpoint (eval mode)."""
    hp = state["hyper_parameters"]["model"]
    weights = {name.removeprefix("model."): t for name, t in state["state_dict"].items() if name.startswith("model.")}
    mlp = MLP.from_hyperparameters(hp, members=hp.get("members", 1))
    mlp.load_state_dict(weights, assign=True)
    return mlp.eval()


def regularizer(state: dict[str, Any]) -> Regularizer:
    """The regularizer of a checkpoint with every argument it trained with, unbound."""
    return Regularizer.from_hyperparameters(state["hyper_parameters"]["regularizer"])


def member(
    module: Any,
    k: int,
    saved: dict[str, Any] | None,
    callbacks: dict[str, Any],
    weights: dict[str, torch.Tensor] | None = None,
    at: tuple[int, int] = (0, 0),
) -> dict[str, Any]:
    """Member k of the stack `module` (a RegLabModule) as a K = 1 checkpoint. `saved`: the Lightning
    checkpoint the stack is saving (its optimizer, scheduler and loop state); `callbacks`: member k's
    callback states (`history` under "MetricsHistory"). `saved` None: weights only, `weights` at
    `at` = (epoch, global step)."""
    hp = module.hparams
    strength = [float(module.regularizer.strength[k])]
    hyper = {**hp, "model": {**hp["model"], "members": 1}, "regularizer": {**hp["regularizer"], "strength": strength}}
    members = len(module.diverged_epoch)
    diverged = module.diverged_epoch[k]
    states = dict(callbacks)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "hyper_parameters": hyper,
        "state_dict": {f"model.{name}": t for name, t in (weights or module.member_weights(k)).items()},
        "optimizer": None,
        "lr_scheduler": None,
        "history": states.pop("MetricsHistory", None),
        "callbacks": states,
        "divergence": {"epoch": diverged, "weights": module.diverged_weights.get(k)},
        "members": [module.member_hashes[k], module.member_hashes[-1]] if module.member_hashes else [],
        "progress": {"epoch": at[0], "global_step": at[1], "loops": None},
    }
    if saved is not None:
        state["optimizer"] = member_slice(saved["optimizer_states"][0], k, members)
        state["lr_scheduler"] = saved["lr_schedulers"][0] if saved["lr_schedulers"] else None
        state["progress"] = {"epoch": saved["epoch"], "global_step": saved["global_step"], "loops": saved["loops"]}
    return state


def member_slice(value: Any, k: int, members: int) -> Any:
    """Member k's part of a stack's state (nested dicts): every tensor whose first axis is the K members,
    [K, …] → [1, …] (copied: a view would save the whole stack's storage); other values as they are."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and len(value) == members:
        return value[k : k + 1].clone()
    if isinstance(value, dict):
        return {key: member_slice(v, k, members) for key, v in value.items()}
    return value


def lightning(state: dict[str, Any]) -> dict[str, Any]:
    """What `trainer.fit(ckpt_path=…)` restores from a checkpoint: a reglab file converted, a stack's own
    (Lightning's) as it is. ValueError for a weights-only file: it holds no state to go on from."""
    import lightning as L

    if state.get("format") != FORMAT:
        return state
    if state["optimizer"] is None or state["progress"]["loops"] is None:
        raise ValueError("a weights-only checkpoint holds no optimizer or loop state to resume from")
    progress, divergence = state["progress"], state["divergence"]
    return {
        "epoch": progress["epoch"],
        "global_step": progress["global_step"],
        "pytorch-lightning_version": L.__version__,
        "state_dict": state["state_dict"],
        "loops": progress["loops"],
        "callbacks": {**state["callbacks"], "MetricsHistory": state["history"]},
        "optimizer_states": [state["optimizer"]],
        "lr_schedulers": [] if state["lr_scheduler"] is None else [state["lr_scheduler"]],
        "hyper_parameters": state["hyper_parameters"],
        "members": state["members"],
        "divergence": {
            "epoch": [divergence["epoch"]],
            "weights": {} if divergence["weights"] is None else {0: divergence["weights"]},
        },
    }
