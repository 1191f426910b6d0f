"""W&B without an account or a network: offline unless the user opted in, never blocking."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def _has_credentials() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )


def wandb_mode(mode: str | None = None) -> str:
    """`mode` if given, else WANDB_MODE, else "online" with credentials and "offline" without."""
    return mode or os.environ.get("WANDB_MODE") or ("online" if _has_credentials() else "offline")


def wandb_logger(
    project: str = "reglab",
    name: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    save_dir: str = ".",
    mode: str | None = None,
    init_timeout_s: float = 15.0,
) -> WandbLogger:
    """A WandbLogger whose run has started: online if asked for and reachable within
    `init_timeout_s`, otherwise offline, with one warning.

    The W&B run id is derived from the run directory, so a resumed run continues the same W&B run.
    """
    import wandb

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    run_id = hashlib.sha256(str(Path(save_dir).resolve()).encode()).hexdigest()[:12]
    kwargs: dict[str, Any] = dict(
        project=project,
        name=name or None,
        group=group,
        tags=list(tags or []),
        dir=save_dir,
        id=run_id,
        resume="allow",
        reinit="finish_previous",
    )
    resolved = wandb_mode(mode)
    try:
        # wandb types `mode` as a Literal; `resolved` may come from WANDB_MODE, which wandb.init validates
        run = wandb.init(
            mode=resolved,  # type: ignore[arg-type]
            settings=wandb.Settings(init_timeout=init_timeout_s, silent=True),
            **kwargs,
        )
    except Exception as e:  # no network, a bad key, a server error: the run must go on
        if resolved == "offline":
            raise
        warnings.warn(f"W&B {resolved} start failed ({type(e).__name__}: {e}); logging offline instead", stacklevel=1)
        wandb.teardown()  # forget the failed run, whose id this offline one takes over
        run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
    return WandbLogger(experiment=run, project=project, save_dir=save_dir)
