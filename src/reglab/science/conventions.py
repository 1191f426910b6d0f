"""What a regularization strength is: reglab's rule for λ, and its conversion to other libraries' conventions.

The conversions are tabled in README, "Conventions", and derived in docs/conventions.md, "Converting λ".
reglab's λ multiplies the penalty added to the *mean* data loss over a batch, exactly as Keras'
regularizers do. Pure Python: the config layer checks λ with the rule the regularizers use, before
torch is imported.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

# Each regularizer class of `reglab.science.regularizers` and its config name (`regularizer=l1`):
# the classes' `name`, and what the config layer reads without importing torch.
REGULARIZER_NAMES = {
    "Regularizer": "none", "L1": "l1", "ProxL1": "prox_l1", "ElasticNet": "elastic_net",
    "GroupLasso": "group_lasso", "L2": "l2", "WeightDecay": "weight_decay",
}  # fmt: skip
# The order every table, legend and report lists the rules in: none, the L1 family, the L2 family.
REGULARIZER_ORDER = tuple(REGULARIZER_NAMES.values())


def require_int(value: object, key: str, minimum: int = 1, allowed: str = "") -> None:
    """Raise ValueError unless `value` is an integer (not a bool) >= `minimum`, in the one wording that
    constructors and the config layer share (like Keras' `validate_float_arg`): `{key}={value!r} must be
    an integer >= {minimum}{allowed}`, `allowed` naming what else the key takes (", or null for …")."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}={value!r} must be an integer >= {minimum}{allowed}")


def check_strength(values: Sequence[object]) -> None:
    """λ per member: at least one value, each a finite real number >= 0. Raises ValueError naming
    the first bad value as the config would show it."""
    if not values:
        raise ValueError("regularizer.strength=[] holds no λ")
    for v in values:
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise ValueError(f"regularizer.strength={v!r} is not a number")
        if not (float(v) >= 0 and math.isfinite(v)):  # also refuses NaN
            problem = "negative" if v < 0 else "not finite"
            raise ValueError(f"regularizer.strength={float(v):g} is {problem}; λ must be a number >= 0")


# Each entry: (regularizer, convention) -> (to reglab λ from their value, from reglab λ to theirs).
# `n` is the number of training samples, `batch` the mini-batch size, `lr` the learning rate.
_RULES = {
    ("l1", "keras"): (lambda v, **_: v, lambda lam, **_: lam),
    ("l2", "keras"): (lambda v, **_: v, lambda lam, **_: lam),
    # SGD(weight_decay=wd) adds wd·w to the gradient: the gradient of (wd/2)·Σw².
    ("l2", "torch_sgd"): (lambda v, **_: v / 2, lambda lam, **_: 2 * lam),
    # AdamW(weight_decay=wd) multiplies by (1 - lr·wd): reglab's weight_decay with λ = wd.
    ("weight_decay", "torch_adamw"): (lambda v, **_: v, lambda lam, **_: lam),
    # Loshchilov & Hutter's λ is applied without the learning rate: λ_paper = lr·λ.
    ("weight_decay", "adamw_paper"): (lambda v, lr, **_: v / lr, lambda lam, lr, **_: lr * lam),
    # Lasso: (1/2n)·‖y − Xw‖² + α‖w‖₁ is half of reglab's MSE + λ‖w‖₁ with λ = 2α.
    ("l1", "sklearn_lasso"): (lambda v, **_: 2 * v, lambda lam, **_: lam / 2),
    # Ridge: ‖y − Xw‖² + α‖w‖² is n times reglab's MSE + λ‖w‖² with λ = α/n.
    ("l2", "sklearn_ridge"): (lambda v, n, **_: v / n, lambda lam, n, **_: n * lam),
    # The article's L2: cost + (λ/2n)·Σw², i.e. the update factor (1 − ηλ/n), n = training samples.
    ("l2", "article"): (lambda v, n, **_: v / (2 * n), lambda lam, n, **_: 2 * n * lam),
    # MLPClassifier adds (α / 2·batch)·Σw² to the mean loss of each batch.
    ("l2", "sklearn_mlp"): (lambda v, batch, **_: v / (2 * batch), lambda lam, batch, **_: 2 * batch * lam),
}
CONVENTIONS = sorted({conv for _, conv in _RULES})


def to_reglab(value: float, regularizer: str, convention: str, **context: float) -> float:
    """reglab's λ for `value` given in `convention` (e.g. `to_reglab(1e-4, "l2", "torch_sgd") == 5e-5`)."""
    return _rule(regularizer, convention)[0](value, **context)


def from_reglab(strength: float, regularizer: str, convention: str, **context: float) -> float:
    """The value in `convention` equivalent to reglab's λ = `strength`."""
    return _rule(regularizer, convention)[1](strength, **context)


def _rule(regularizer: str, convention: str):
    try:
        return _RULES[(regularizer, convention)]
    except KeyError:
        known = ", ".join(f"{r}/{c}" for r, c in _RULES)
        raise ValueError(f"no conversion for {regularizer!r} in {convention!r}; known: {known}") from None


def steps_per_epoch(n_train: int, batch_size: int | None) -> int:
    """Optimizer steps an epoch of `n_train` rows takes: batches of `batch_size`, the last one partial (None: one)."""
    return 1 if batch_size is None or batch_size >= n_train else -(-n_train // batch_size)
