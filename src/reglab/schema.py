"""The constructors' own signatures as the schema of their config nodes: a `_target_` node may hold
only the target's arguments (following `**kwargs` up the class hierarchy), each of the type its
annotation declares where that is plain. Nothing lists an argument by hand. Light: imports only
Hydra's object locator, when asked."""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable
from typing import cast

from omegaconf import DictConfig, OmegaConf

from reglab.errors import ConfigError, require


def check_arguments(node: DictConfig, group: str) -> None:
    """Refuse, in one line naming the key and the target, a key of a `_target_` node that is not an
    argument of the target or not of the type its signature declares: nothing is silently ignored."""
    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")  # logs its own error line before raising
    hydra_log.disabled = True
    try:
        target = get_object(str(node._target_))
    except Exception as e:  # ImportError, AttributeError: Hydra's _locate
        first = " ".join(str(e).split("\nAre you sure")[0].split())
        raise ConfigError(f"{group}._target_={node._target_} cannot be imported: {first}") from None
    finally:
        hydra_log.disabled = False
    allowed: set[str] = set()
    mro = inspect.getmro(target) if inspect.isclass(target) else ()
    for fn in [vars(c)["__init__"] for c in mro if "__init__" in vars(c)] or [target]:
        parameters = inspect.signature(fn).parameters.values()
        allowed |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        check_types(node, group, fn, node._target_)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break  # no **kwargs passed further up
    unknown = sorted(k for k in cast("Iterable[str]", node) if not k.startswith("_") and k not in allowed)
    require(not unknown, f"{group}.{unknown[0] if unknown else ''} is not an argument of {node._target_}")


def check_types(node: DictConfig, group: str, fn: Callable, source: str) -> None:
    """Each value of `node` that `fn` takes must have the type `fn`'s annotation declares (where it
    is plain: bool, int, float, str, None, a Literal, a fixed-length tuple, or a union of them)."""
    try:
        hints = typing.get_type_hints(fn)
        parameters = inspect.signature(fn).parameters
    except Exception:  # an annotation that does not resolve: the constructor checks for itself
        return
    for key in cast("Iterable[str]", node):
        if key.startswith("_") or key not in hints or key not in parameters or OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=False)
        if value is None and parameters[key].default is None:
            continue
        if _fits(value, hints[key]) is False:
            shown = value if isinstance(value, (list, tuple)) else repr(value)
            raise ConfigError(f"{group}.{key}={shown} must be {_describe(hints[key])} (from {source})")


def _fits(value: object, hint: object) -> bool | None:
    """Whether `value` has the type `hint`; None where the annotation is not plain enough to tell."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        results = [_fits(value, a) for a in args]
        return True if True in results else None if None in results else False
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint in (bool, int, float, str, type(None)):  # an int is a float; a bool is neither
        kinds = (int, float) if hint is float else cast(type, hint)
        return isinstance(value, kinds) and (hint is bool or not isinstance(value, bool))
    if origin is tuple and args and Ellipsis not in args:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return False
        results = [_fits(v, a) for v, a in zip(value, args)]
        return False if False in results else True if all(results) else None
    return None


def _describe(hint: object) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if _fits(None, a) is not None or typing.get_origin(a) is not None]
        return " or ".join(dict.fromkeys(p for p in parts if p)) or str(hint)
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} values"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, "")  # type: ignore[call-overload]
