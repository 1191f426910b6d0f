"""The one reader of reglab's checkpoints (a run's or a member's `checkpoints/*.ckpt`): the model and
the regularizer they were trained with, rebuilt from the plain hyperparameters the file holds
(`MLP.hyperparameters`, `Regularizer.hyperparameters`). `torch.load(weights_only=True)`: nothing in
the file is executed. `reglab.load_run` and `RegLabModule.load_from_checkpoint` read through it;
resuming is Lightning's own reading of the same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reglab.science.model import MLP
from reglab.science.regularizers import Regularizer


def read(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint at `path` as the dict it was saved as, tensors on `map_location`; ValueError if it
    does not hold the hyperparameters that build its model and rule again."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    hp = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not (isinstance(hp, dict) and {"model", "regularizer"} <= hp.keys() and "state_dict" in state):
        raise ValueError(
            f"{path} holds no reglab model hyperparameters (written by an older reglab, or not by reglab); "
            "train the run again (force=true)"
        )
    return state


def model(state: dict[str, Any]) -> MLP:
    """The trained `MLP` of a checkpoint (its K members; eval mode)."""
    hp = state["hyper_parameters"]["model"]
    weights = {name.removeprefix("model."): t for name, t in state["state_dict"].items() if name.startswith("model.")}
    mlp = MLP.from_hyperparameters(hp, members=hp.get("members", 1))
    mlp.load_state_dict(weights, assign=True)
    return mlp.eval()


def regularizer(state: dict[str, Any]) -> Regularizer:
    """The regularizer of a checkpoint with every argument it trained with, unbound."""
    return Regularizer.from_hyperparameters(state["hyper_parameters"]["regularizer"])
