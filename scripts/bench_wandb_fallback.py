"""Issue 12: W&B online with no network costs seconds, not minutes, for a 64-member stack.

    python scripts/bench_wandb_fallback.py [--members 64] [--epochs 20] [--repeat 1]

Each side is one fresh `reglab-train` process timed from outside, launch to exit: a stack of
`--members` seeds of the article's problem (moons, 128-128 MLP, L1 1e-3 on the hidden layers) for
`--epochs` epochs, with

    csv          logger=csv (no W&B)
    wandb-down   logger=wandb, WANDB_MODE=online, WANDB_BASE_URL=http://127.0.0.1:<a closed port>

The W&B side tries online once, falls back to offline once per process (reglab.wandb_init)
and logs every member offline. Goal: within 30 s of the csv side.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_timing import reglab_train, timed  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    seeds = ",".join(str(s) for s in range(args.members))
    common = [
        "data=moons",
        "data.split=[0.1,0.45,0.45]",
        "regularizer=l1",
        "regularizer.strength=1e-3",
        "regularizer.exclude=[output]",
        f"seed=[{seeds}]",
        f"trainer.max_epochs={args.epochs}",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
    ]
    base = {**os.environ, "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    sides = {
        "csv": (["logger=csv"], base),
        "wandb-down": (
            ["logger=wandb", "logger.wandb.figures=null"],
            base | {"WANDB_MODE": "online", "WANDB_BASE_URL": f"http://127.0.0.1:{closed}", "WANDB_API_KEY": "x" * 40},
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for name, (overrides, env) in sides.items():  # interleaved: the machine's load hits both
                out = Path(tmp) / f"{name}-{r}"
                command = [*reglab_train(), *common, *overrides, f"hydra.run.dir={out}"]
                times[name].append(timed(command, env, Path(tmp) / f"{name}-{r}.log", Path(tmp)))
    csv_s, wandb_s = statistics.median(times["csv"]), statistics.median(times["wandb-down"])
    print(f"{args.members} members, {args.epochs} epochs, median of {args.repeat}, whole processes")
    print("| side | seconds (each) | median s |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {', '.join(f'{t:.1f}' for t in ts)} | {statistics.median(ts):.1f} |")
    print(f"W&B down − csv: {wandb_s - csv_s:+.1f} s ({wandb_s / csv_s:.2f}×); goal: ≤ +30 s")


if __name__ == "__main__":
    main()
