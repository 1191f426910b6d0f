"""The proximal maps of `reglab.science.regularizers`, as plain functions of tensors, each with its
formula; `ProxL1` and `GroupLasso` say when, with which threshold and in which metric. Every map acts
in place on the stacked weights of K members ([K, …]); a threshold shaped [K, 1, …] is each member's own.
D = √v̂ + ε is Adam's denominator (D = 1: the plain map); README, "Conventions", and
docs/conventions.md derive the maps in its metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# Optimizers whose step is lr·m̂/(√v̂ + ε), v̂ = exp_avg_sq/(1 − β₂^t), so a preconditioned proximal map can
# use their metric (AdamW subclasses Adam); not RAdam (rectified step) nor Adamax (an infinity norm).
ADAM_FAMILY: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.Adam, torch.optim.NAdam)


def adam_denominators(optimizer: torch.optim.Optimizer, tensors: Sequence[Tensor]) -> list[Tensor | None]:
    """D = √v̂ + ε of each tensor (None if not stepped yet), exactly as Adam (one of ADAM_FAMILY) divides
    by it after its latest step:

        D = √v / √(1 − β₂^t) + ε,   v = exp_avg_sq (AMSGrad: max_exp_avg_sq)   Adam's expression and rounding"""
    groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    out: list[Tensor | None] = []
    for p in tensors:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            out.append(None)
            continue
        group = groups[id(p)]
        beta2, eps, step = group["betas"][1], group["eps"], state["step"]
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        root: Tensor | float
        if isinstance(step, Tensor) and step.device.type != "cpu":  # capturable or fused on a GPU: no sync
            root = (1 - torch.as_tensor(beta2, device=step.device) ** step).sqrt()
        else:
            root = math.sqrt(1 - float(beta2) ** float(step))
        out.append((v.sqrt() / root).add_(eps))
    return out


def soft_threshold_(weights: list[Tensor], thresholds: list[Tensor]) -> None:
    """In place, for each w with its threshold t ≥ 0, the proximal map of t·Σ|w| (ISTA, t = η·λ):

    w ← sign(w)·max(|w| − t, 0) = w − clip(w, −t, t)      (exactly 0 wherever |w| ≤ t)"""
    inside = torch._foreach_clamp_min(torch._foreach_clamp_max(weights, thresholds), torch._foreach_neg(thresholds))
    torch._foreach_sub_(weights, inside)


def preconditioned_soft_threshold_(weight: Tensor, threshold: Tensor, denominator: Tensor) -> None:
    """In place, the proximal map of λ·Σ|w| in the metric diag(D) (D of `weight`, `adam_denominators`):

    w ← w − clip(w, −t, t),   t = threshold / D,   threshold = η·λ   ([K, 1, …])"""
    t = threshold / denominator
    weight.sub_(torch.maximum(torch.minimum(weight, t), -t))


def group_norms(weight: Tensor, bias: Tensor | None, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    """‖w_g‖₂ of every group: [K, groups]. A group's entries lie along `dim` of `weight` (−1 a row,
    −2 a column of stacked [K, out, in] weights), plus its entry of `bias` if given."""
    sq = weight.to(dtype or weight.dtype).square().sum(dim)
    return (sq + bias.to(sq.dtype).square() if bias is not None else sq).sqrt()


def group_shrink_(weight: Tensor, bias: Tensor | None, dim: int, c: Tensor) -> None:
    """In place, the proximal map of c·Σ_g ‖w_g‖₂ (groups as in `group_norms`, c = η·λ·√p_g, [K, 1, 1]):

    w_g ← w_g · max(0, 1 − c / ‖w_g‖₂)      (a whole group exactly 0 where ‖w_g‖₂ ≤ c)"""
    norms = group_norms(weight, bias, dim)
    scale = (1 - c.flatten(1) / norms.clamp_min(1e-30)).clamp_min(0)
    weight.mul_(scale.unsqueeze(dim))
    if bias is not None:
        bias.mul_(scale)


def preconditioned_group_shrink_(
    weight: Tensor, bias: Tensor | None, dim: int, denominators: list[Tensor], c: Tensor, newton_steps: int
) -> None:
    """In place, the proximal map of c·Σ_g ‖w_g‖₂ in the metric diag(D) (`denominators`: D of
    `weight` and of `bias`), with z = the weights given, c = η·λ·√p_g ([K, 1, 1]) and μ_i = c / D_i:

        w_g ← 0                       if ‖D·z_g‖₂ ≤ c     (the whole group, exactly)
        w_i ← z_i · r / (r + μ_i)     otherwise, r = ‖new w_g‖₂ > 0 the root of Σ_i z_i² / (r + μ_i)² = 1

    (docs/conventions.md). r is found by `newton_steps` Newton steps on g(r) = 1/‖z/(r + μ)‖ = 1
    from r = 0: g is concave and nearly linear (the trust-region secular equation of Moré & Sorensen,
    1983), so the steps rise monotonically to the root; one step is exact when D is constant over
    the group (D = 1: the plain `group_shrink_`). A member with c = 0 keeps its weights bit for bit."""
    # [K, groups, p]: a group's entries along the last dim, its bias (if any) as one more entry
    z, d = (weight, denominators[0]) if dim == -1 else (weight.transpose(-1, -2), denominators[0].transpose(-1, -2))
    if bias is not None:
        z, d = torch.cat([z, bias.unsqueeze(-1)], -1), torch.cat([d, denominators[1].unsqueeze(-1)], -1)
    off = (z * d).norm(dim=-1, keepdim=True) <= c  # [K, groups, 1]
    mu = c / d
    r = torch.zeros_like(off, dtype=z.dtype)
    for _ in range(newton_steps):  # Newton on g(r) = 1/‖v‖ = 1, v = z/(r + μ): g' = Σ v²/(r + μ) / ‖v‖³
        q = r + mu
        v = z / q
        n2 = v.square().sum(-1, keepdim=True)
        r = r + (1 - n2.rsqrt()) * n2 * n2.sqrt() / (v.square() / q).sum(-1, keepdim=True)
    # Switched-off groups' lanes may hold inf or NaN from the iteration, never selected.
    scale = torch.where(c > 0, torch.where(off, 0.0, r / (r + mu)), 1.0)
    if bias is not None:
        bias.mul_(scale[..., -1])
        scale = scale[..., :-1]
    weight.mul_(scale if dim == -1 else scale.transpose(-1, -2))
