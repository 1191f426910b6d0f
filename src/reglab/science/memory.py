"""How much memory a run needs and how much it may take: one estimate for the config's check
(`reglab.config`, before anything is allocated) and a table's (`science.files`, once it is read).

    data        40 bytes a value, per data set (a distinct seed and fold): float64 generation and
                split, float32 tensors on the device
    model       40 bytes a weight, per member: weights, gradients, Adam's two moments, the
                preflight's copy and a checkpoint's serialised copy
    activations  8 bytes a unit and sample, per member: a whole split evaluated at once

A run may take 80 % of the machine's memory, or of its address-space cap (`ulimit -v`, a cluster
job's) less what Python, torch and Lightning map before the first tensor."""

from __future__ import annotations

import os
import resource
from collections.abc import Sequence

BYTES_PER_VALUE = 40
BYTES_PER_ACTIVATION = 8
USABLE = 0.8  # of what `allowed_bytes` finds: the rest is the interpreter's, the OS's and other processes'
RUNTIME_ADDRESS_SPACE = 2**30  # mapped by Python, torch and Lightning before the first tensor (0.95 GiB measured)


def data_bytes(rows: int, columns: int, data_sets: int = 1) -> int:
    return BYTES_PER_VALUE * rows * columns * data_sets


def model_bytes(widths: Sequence[int], members: int) -> int:
    """`widths`: input, hidden..., output."""
    return BYTES_PER_VALUE * members * sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


def activation_bytes(widths: Sequence[int], rows: int, members: int) -> int:
    return BYTES_PER_ACTIVATION * members * rows * sum(widths[1:])


def allowed_bytes() -> int:
    """The memory this machine (or its `ulimit -v`) leaves a run, before the `USABLE` share."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    capped = resource.getrlimit(resource.RLIMIT_AS)[0]
    if capped != resource.RLIM_INFINITY:
        total = min(total, max(capped - RUNTIME_ADDRESS_SPACE, 0))
    return total


def fits(need: int) -> bool:
    return need < USABLE * allowed_bytes()
