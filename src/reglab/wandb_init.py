"""How reglab starts a W&B run (`wandb.init`): offline unless the user opted in, never blocking.

The mode is the caller's, else WANDB_MODE, else online with credentials and offline without. An online
start that fails (or takes longer than its timeout) falls back to offline with one warning, and so do
the process's later online starts, at once. Used by the members' runs (`reglab.lightning.loggers`) and
the report's run (`reglab.report_wandb`); what a run holds: docs/wandb.md."""

from __future__ import annotations

import functools
import os
import secrets
import socket
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

_online_failed = False  # an online start failed in this process: the process's other runs go offline at once
OFFLINE_INIT_TIMEOUT_S = 120.0  # an offline start waits only for the local W&B service, slow on a busy machine


def _has_credentials() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )


def wandb_mode(mode: str | None = None) -> str:
    """`mode` if given, else WANDB_MODE, else "online" with credentials and "offline" without."""
    resolved = mode or os.environ.get("WANDB_MODE") or ("online" if _has_credentials() else "offline")
    return "offline" if _online_failed and resolved == "online" else resolved


def start_run(mode: str | None = None, init_timeout_s: float = 15.0, **kwargs: Any) -> Any:
    """`wandb.init(**kwargs)` in `mode`; an online start that fails (or takes longer than `init_timeout_s`)
    continues offline, with one warning. An offline start waits up to `OFFLINE_INIT_TIMEOUT_S`."""
    run = _init(mode, init_timeout_s, **kwargs)
    (Path(run.dir) / "requirements.txt").write_text(_requirements())  # what W&B would write, found once
    return run


@functools.cache
def _requirements() -> str:
    """The installed packages, as W&B's requirements.txt lists them. W&B scans them again for every run
    (0.1-0.15 s each here); a process's runs share one environment, so it is scanned once."""
    from wandb.util import working_set

    return "".join(f"{d.key}=={d.version}\n" for d in working_set())


def _init(mode: str | None, init_timeout_s: float, **kwargs: Any) -> Any:
    global _online_failed
    import wandb

    settings = dict(
        silent=True, disable_git=True, console="off", x_disable_stats=True, save_code=False, x_save_requirements=False
    )
    resolved = wandb_mode(mode)
    timeout = init_timeout_s if resolved == "online" else max(init_timeout_s, OFFLINE_INIT_TIMEOUT_S)
    try:
        if resolved == "online":
            _check_server(init_timeout_s)
        chosen = wandb.Settings(init_timeout=timeout, **settings)  # type: ignore[arg-type]
        return wandb.init(mode=resolved, reinit="create_new", settings=chosen, **kwargs)  # type: ignore[arg-type]
    except Exception as e:  # no network, a bad key, a server error: the run must go on
        if resolved == "offline":
            raise
        _online_failed = True
        warnings.warn(f"W&B {resolved} start failed ({type(e).__name__}: {e}); logging offline instead", stacklevel=1)
        offline = wandb.Settings(init_timeout=OFFLINE_INIT_TIMEOUT_S, **settings)  # type: ignore[arg-type]
        if kwargs.get("id"):  # the failed start still holds its id in W&B's service: a new one (run.id says which)
            kwargs = {**kwargs, "id": secrets.token_hex(4)}
        return wandb.init(mode="offline", reinit="create_new", settings=offline, **kwargs)


def _check_server(timeout_s: float) -> None:
    """`ConnectionError` at once if W&B's server takes no TCP connection, where `wandb.init` would retry for its
    whole timeout (a refused or unroutable connection: no network)."""
    server = os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai"
    url = urlparse(server)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=max(min(timeout_s, 5.0), 0.1)).close()
    except OSError:
        raise ConnectionError(f"cannot connect to {server}") from None
