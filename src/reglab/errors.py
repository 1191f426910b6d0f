"""User mistakes said in one line: `ConfigError`, the one formatter, and `blame`, which names the
config key a constructor's error came from. Imports nothing from reglab and nothing heavy: a refusal
must not wait for torch."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import OmegaConf

# The exit codes of reglab-train, reglab-eval and reglab-report.
EXIT_CRASH = 1  # a bug or a crash, with its traceback
EXIT_BAD_INPUT = 2  # a user mistake, said in one line before any work
EXIT_DIVERGED = 3  # every member of a run diverged


class ConfigError(ValueError):
    """A user mistake in the config: reported in one line, never as a traceback."""


class ScheduleError(ValueError):
    """A learning-rate schedule that leaves lr negative or not finite (the preflight steps it through
    every epoch): `blame` names the scheduler's negative keys."""

    def __init__(self, lr: object, epoch: int) -> None:
        super().__init__(f"the learning rate becomes {lr} after epoch {epoch}; it must stay finite and >= 0")
        self.lr, self.epoch = lr, epoch


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless `ok`: a rule between config keys, in one line."""
    if not ok:
        raise ConfigError(message)


def one_line(error: BaseException | str, with_type: bool = False) -> str:
    """An exception (or an error text) said in one line: Hydra's instantiation errors as their cause,
    naming its key; Hydra's composition errors as a sentence ("regularizer=l3 is not a regularizer
    config; choose one of: …", "x is not a key of the config"). `with_type`: "ValueError: …"."""
    cause = error
    while isinstance(cause, BaseException) and type(cause).__name__ == "InstantiationException" and cause.__cause__:
        cause = cause.__cause__
    text = str(cause)
    if "Traceback (most recent call last)" in text:  # Hydra's report of an error before the task ran
        return _last_exception(text)
    if missing := re.search(r"Could not find '([\w/]+)/([^']+)'", text):
        group, name = missing.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        return f"{group}={name} is not a {group} config; choose one of: {', '.join(options)}"
    if text.startswith("Could not override") and "'" in text:
        return f"{text.split(chr(39))[1]} is not a key of the config: check its spelling"
    lines = [line.strip() for line in text.splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith(("full_key", "object_type")))
    if (key := getattr(error, "full_key", None)) and key not in text:
        text = f"{key}: {text}"
    return f"{type(cause).__name__}: {text}" if with_type and isinstance(cause, BaseException) else text


# What a directory that cannot be made is, by the OSError that said so.
DIRECTORY_PROBLEMS = {
    "FileExistsError": "is a file, not a directory",
    "NotADirectoryError": "lies under a file, not a directory",
    "FileNotFoundError": "cannot be created",
    "PermissionError": "is not writable",
    "OSError": "cannot be created",
}


def _last_exception(traceback: str) -> str:
    """The exception a traceback ends in, said as a sentence: a directory Hydra could not make names
    the keys that place it; any other error is its own message, without the traceback around it."""
    found = re.findall(r"^(\w+(?:Error|Exception)): (.*)$", traceback, flags=re.MULTILINE)
    if not found:
        return " ".join(traceback.split())
    kind, message = next((f for f in reversed(found) if f[0] != "HydraException"), found[-1])  # the cause
    path = re.findall(r"'([^']+)'", message)
    if kind in DIRECTORY_PROBLEMS and path:
        return (
            f"{path[-1]} {DIRECTORY_PROBLEMS[kind]}: no run directory can be made there; "
            "set paths.log_dir=… (or hydra.run.dir=…, hydra.sweep.dir=…) to a writable directory"
        )
    return message.strip()


def shown(value: Any) -> str:
    """A config value as an error line quotes it: `0.001`, `[0.9,0.999]`, `abc`."""
    if isinstance(value, float):
        return f"{value:g}"
    if OmegaConf.is_config(value):
        return str(OmegaConf.to_container(value, resolve=False)).replace(" ", "")
    return str(value)


# What a constructor raises for a bad argument (Hydra's and OmegaConf's errors are matched by name:
# importing them here would import Hydra before a refusal needs it).
_BAD_VALUE_ERRORS = (ValueError, TypeError, KeyError, IndexError, ArithmeticError)
CONSTRUCTOR_ERRORS = (*_BAD_VALUE_ERRORS, RuntimeError, AttributeError, ImportError, AssertionError)
FRAMEWORK_ERRORS = ("InstantiationException", "OmegaConfBaseException")


@contextlib.contextmanager
def blame(key: str, node: Any = None, probe: Callable[[str], bool] | None = None) -> Iterator[None]:
    """Say which config key a constructor's error came from, in one line (ConfigError). With the
    config `node` the constructor was given, the line names the key of `node` it came from where
    that can be told (`scheduler.step_size=0: …`): the key the message names, or whose value it
    quotes; for a division by zero the key that is 0; for a negative learning rate the negative
    key; else the keys that `probe(key)` (the constructor again, that key at its default) clears."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as e:
        if not isinstance(e, CONSTRUCTOR_ERRORS) and not any(c.__name__ in FRAMEWORK_ERRORS for c in type(e).__mro__):
            raise
        raise ConfigError(blame_line(key, node, probe, e)) from e


def blame_line(key: str, node: Any, probe: Callable[[str], bool] | None, error: BaseException) -> str:
    message = one_line(error)
    group = key.split(" ")[0]
    top = group.split(".")[0]
    if message.startswith(tuple(f"{g}{c}" for g in (group, top) for c in ".=:")):  # it names its key
        return message
    if node is None or not OmegaConf.is_dict(node):
        return f"{key}: {message}"
    source = f" (from {node.get('_target_')})" if node.get("_target_") else ""
    culprits = _culprits(node, message, error, probe)
    if not culprits:
        return f"{key}: {message}{source}"
    if len(culprits) == 1 and message.startswith(f"{culprits[0]}="):  # "write_every_n_epochs=0 must be …"
        return f"{group}.{message}{source}"
    named = ", ".join(f"{group}.{k}={_value_text(node, k)}" for k in culprits)
    if isinstance(error, ZeroDivisionError):  # "(from StepLR: integer modulo by zero)"
        return f"{named} must not be 0" + (f"{source.rstrip(')')}: {message})" if source else f": {message}")
    return f"{named}: {message}{source}"


def _value_text(node: Any, key: str) -> str:
    if OmegaConf.is_interpolation(node, key):
        return str(node._get_node(key)._value())
    return shown(node[key])


def _culprits(node: Any, message: str, error: BaseException, probe: Callable[[str], bool] | None) -> list[str]:
    """The keys of `node` an error message points at (see `blame`); [] if none can be told."""
    keys = [str(k) for k in node if not str(k).startswith("_") and str(k) not in ("name", "seed")]
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", message) if len(w) >= 3}
    text = message.lower()

    def named(k: str) -> bool:  # the key, or each word of it (3+ letters) a prefix of a word said, or said in part
        if re.search(rf"(?<![\w.]){re.escape(k.lower())}(?![\w])", text):
            return True
        tokens = [t for t in k.lower().split("_") if len(t) >= 3]
        return bool(tokens) and all(any(w.startswith(t) or t.startswith(w) for w in words) for t in tokens)

    def value(k: str) -> Any:
        return None if OmegaConf.is_interpolation(node, k) else node[k]

    def quoted(k: str) -> bool:
        v = value(k)
        if isinstance(v, bool) or v is None or OmegaConf.is_config(v) or v in (0, 1):
            return False
        return re.search(rf"(?<![\w.]){re.escape(str(v).lower())}(?![\w])", text) is not None

    def number(k: str) -> float | None:
        v = value(k)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    if isinstance(error, ScheduleError) and (found := [k for k in keys if (number(k) or 0) < 0]):
        return found
    if isinstance(error, ZeroDivisionError) and (zeros := [k for k in keys if number(k) == 0]):
        integers = [k for k in zeros if isinstance(value(k), int)]
        return integers if integers and "integer" in message else zeros
    if probe is not None and (found := [k for k in keys if probe(k)]):
        return found
    return [k for k in keys if named(k)] or [k for k in keys if quoted(k)]
