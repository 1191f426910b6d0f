"""Issue 27, goal 1: reglab's stacked training step against the same ops written by hand in plain PyTorch.

    python scripts/bench_step.py [--members 1 5 10 64] [--epochs 100 500] [--repeat 3] [--quick]

The main job's model and data (noisy moons, 100 training points in batches of 32: 4 steps an
epoch; 2 → 128 → 128 → 1 ReLU), Adam lr 5e-3, L1 λ = 1e-3 on the hidden kernels, K members.

- reglab: `reglab.api.run` of that config (`logger=none`, no progress bar, evaluation only at
  the last epoch), in this process, after a warm-up run.
- hand: the same step in plain PyTorch, stacked over K like reglab: weights [K, out, in],
  `baddbmm` forward, `binary_cross_entropy_with_logits`, λ·Σ|w| of the hidden kernels added to
  each member's loss, `backward` of the sum, fused Adam; each epoch's batch order drawn per member.

Each side is timed at two run lengths; the difference over the extra steps is the cost of one
step, so what is paid once (building, the trial step, the evaluation, files) cancels. Times are
this process's CPU time (`time.process_time`), which another process on a shared core does not
inflate as it does wall time. The sides alternate `--repeat` times and the median per-step costs
are compared. One torch thread on both sides (reglab's `cpu_threads=auto` for these sizes).
Goal (issue 27): reglab ≤ 1.2× hand at every K.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

GOAL = 1.2
STEPS_PER_EPOCH = 4  # 100 training points in batches of 32: 32, 32, 32, 4


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5, 10, 64])
    parser.add_argument("--epochs", type=int, nargs=2, default=[100, 500], help="the two run lengths")
    parser.add_argument("--repeat", type=int, default=3, help="alternations of the sides; medians are compared")
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    return parser.parse_args()


def overrides(members: int, epochs: int) -> list[str]:
    return [
        "data=moons",
        "data.n_samples=1000",
        "data.noise=0.2",
        "data.label_noise=0.1",
        "data.split=[0.1,0.45,0.45]",
        "data.batch_size=32",
        "model.hidden=[128,128]",
        "regularizer=l1",
        "regularizer.strength=0.001",
        "regularizer.exclude=[output]",
        "optimizer.lr=0.005",
        f"seed=[{','.join(str(s) for s in range(members))}]" if members > 1 else "seed=0",
        f"trainer.max_epochs={epochs}",
        f"trainer.check_val_every_n_epoch={epochs}",
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
    ]


def reglab_seconds(members: int, epochs: int) -> float:
    from reglab.api import run

    with tempfile.TemporaryDirectory() as tmp:
        started = time.process_time()
        run(overrides(members, epochs), Path(tmp) / "run")
        return time.process_time() - started


def hand_seconds(members: int, epochs: int) -> float:
    """The same training in plain PyTorch, from data to the last step (and one evaluation, as reglab)."""
    import torch
    import torch.nn.functional as F

    from reglab.science.datasets import load

    started = time.process_time()
    splits = [load("moons", (0.1, 0.45, 0.45), 0.1, k, n_samples=1000, noise=0.2) for k in range(members)]
    x = torch.stack([torch.from_numpy(s.x["train"]) for s in splits])  # [K, n, 2]
    y = torch.stack([torch.from_numpy(s.y["train"]).float() for s in splits])  # [K, n]
    sizes = [2, 128, 128, 1]
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = (6 / (fan_in + fan_out)) ** 0.5  # Glorot uniform, as reglab's default
        weights.append(torch.empty(members, fan_out, fan_in).uniform_(-bound, bound).requires_grad_())
        biases.append(torch.zeros(members, 1, fan_out, requires_grad=True))
    optimizer = torch.optim.Adam([*weights, *biases], lr=5e-3, fused=True)
    hidden, lam, n = weights[:-1], 1e-3, x.shape[1]
    rows = torch.arange(members)[:, None]
    for epoch in range(epochs):
        orders = torch.stack(
            [torch.randperm(n, generator=torch.Generator().manual_seed(k * 1_000_003 + epoch)) for k in range(members)]
        )
        xe, ye = x[rows, orders], y[rows, orders]
        for start in range(0, n, 32):
            h = xe[:, start : start + 32]
            for i, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b, h, w.transpose(1, 2))
                h = h.relu() if i < len(weights) - 1 else h
            loss = F.binary_cross_entropy_with_logits(h[..., 0], ye[:, start : start + 32], reduction="none").mean(1)
            penalty = torch.stack([w.abs().sum((1, 2)) for w in hidden]).sum(0)
            optimizer.zero_grad(set_to_none=True)
            (loss + lam * penalty).sum().backward()
            optimizer.step()
    with torch.no_grad():
        h = x
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w.transpose(1, 2))
            h = h.relu() if i < len(weights) - 1 else h
        float(h.sum())
    return time.process_time() - started


def main() -> None:
    args = parse()
    import torch

    torch.set_num_threads(1)
    members, (short, long) = args.members, args.epochs
    if args.quick:
        members, short, long, args.repeat = [2], 2, 4, 1
    reglab_seconds(members[0], 2)  # warm-up: the first compose and build pay for imports and caches
    steps = (long - short) * STEPS_PER_EPOCH
    print(f"Per-step CPU time from {short} and {long} epochs ({steps} steps apart), median of {args.repeat}.\n")
    print("| K | reglab ms/step | hand ms/step | reglab / hand | goal | status |")
    print("|---|---|---|---|---|---|")
    for k in members:
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append((reglab_seconds(k, long) - reglab_seconds(k, short)) / steps * 1e3)
            theirs.append((hand_seconds(k, long) - hand_seconds(k, short)) / steps * 1e3)
        a, b = statistics.median(ours), statistics.median(theirs)
        status = "met" if a / b <= GOAL else "not met"
        print(f"| {k} | {a:.3f} | {b:.3f} | {a / b:.2f} | {GOAL} | {status} |", flush=True)
    print(f"\nload average {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
