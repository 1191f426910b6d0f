"""Issue 10, goals 4 and 6: a λ × seed stack vs a sequential multirun; the engine's throughput.

Goal 4: a 64-member stack against the same grid as a sequential multirun (CPU processes). Goal 6:
the stacked engine's throughput (members × steps per second) as K grows, on the CPU or a GPU.

    python scripts/bench_sweep.py [--epochs 50] [--grid 16x4] [--members 1,16,64] [--threads 1] [--quick]
    python scripts/bench_sweep.py --device cuda            # K = 1, 64, 1024, 4096 (scripts/gpu_checks.sh)

Goal 4 (CPU only). The article's problem (moons, 1000 points, noise 0.2, 10 % label noise, split
0.1/0.45/0.45 so 100 training points, 2 → 128 → 128 → 1, Adam lr 5e-3, batch 32) with L1 on the
hidden layers, 16 λ × 4 seeds, `--epochs` epochs, logger=csv, no progress bar. Each side is one
fresh process timed from outside, launch to exit (start-up, 64 run directories and the report
included):

    stack        reglab-train regularizer=l1 'regularizer.strength=[0,1e-06,…]' 'seed=[0,1,2,3]' …
    sequential   reglab-train -m regularizer=l1 regularizer.strength=0,1e-06,… seed=0,1,2,3 …
                 (64 jobs one after another in one process: Hydra's basic launcher)

Goal (issue 19) ≥ 10× on the 2-core CPU; issue 10 asked ≥ 30×.

Goal 6. In this process, the real engine (`reglab.preflight.build`: data, model, regularizer, module,
Lightning Trainer) of K members on `--device`, evaluated every epoch as a run is, metrics kept
in memory (no files); timed over `trainer.fit` after a warm-up fit. members × steps / s, and the
speed-up over K sequential runs = K · t(K = 1) / t(K), t(K = 1) measured in the same call.
`--device cuda` without a CUDA GPU exits with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from process_timing import reglab_train, timed  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = [
    "regularizer=l1",
    "regularizer.exclude=[output]",
    "data.n_samples=1000",
    "data.noise=0.2",
    "data.label_noise=0.1",
    "data.split=[0.1,0.45,0.45]",
    "data.batch_size=32",
    "optimizer.lr=5e-3",
]
QUIET = ["callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where goal 6 trains (cuda: a GPU)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs of both sides of goal 4")
    parser.add_argument("--grid", default="16x4", help="λ count × seed count of goal 4")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions of goal 4 (medians)")
    parser.add_argument("--members", default=None, help="K values of goal 6 (cpu: 1,16,64; cuda: 1,64,1024,4096)")
    parser.add_argument("--throughput-epochs", type=int, default=None, help="epochs per goal-6 fit (cpu 20, cuda 50)")
    parser.add_argument("--parts", default=None, help="sweep,throughput (default: both on cpu, throughput on cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OMP threads here and in launched runs (0: leave)")
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    return parser.parse_args()


def lambdas(n: int) -> list[str]:
    """0 and n − 1 log-spaced values from 1e-6 to 1e-2, distinct as a run directory writes them."""
    values = ["0"] + [f"{v:.4g}" for v in np.logspace(-6, -2, n - 1)] if n > 1 else ["1e-3"]
    assert len(set(values)) == n, "λ values must be distinct"
    return values


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


# Goal 4: whole processes ------------------------------------------------------------------------


def finished_runs(directory: Path) -> int:
    return sum(
        json.loads(p.read_text()).get("status") == "completed"
        for p in directory.glob("**/metrics.json")
        if ".stack" not in p.parts
    )


def sweep_part(args: argparse.Namespace, n_lambda: int, n_seed: int, epochs: int, repeat: int) -> tuple[list, list]:
    env = {**os.environ, "WANDB_MODE": "offline"}
    if args.threads:
        env |= dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), str(args.threads))
    lams, seeds = lambdas(n_lambda), [str(s) for s in range(n_seed)]
    common = [*PROBLEM, "logger=csv", *QUIET, f"trainer.max_epochs={epochs}"]
    commands = {
        "stack": [*reglab_train(), *common, f"regularizer.strength=[{','.join(lams)}]", f"seed=[{','.join(seeds)}]"],
        "sequential": [
            *reglab_train(),
            "-m",
            *common,
            f"regularizer.strength={','.join(lams)}",
            f"seed={','.join(seeds)}",
        ],
    }
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    times: dict[str, list[float]] = {"stack": [], "sequential": []}
    runs: dict[str, int] = {}
    for r in range(repeat):
        for side in ("stack", "sequential") if r % 2 == 0 else ("sequential", "stack"):
            out = work / f"{side}-{r}"
            where = f"hydra.run.dir={out}" if side == "stack" else f"hydra.sweep.dir={out}"
            times[side].append(timed([*commands[side], where], env, work / f"{side}-{r}.log", ROOT))
            runs[side] = finished_runs(out)
    stack, sequential = statistics.median(times["stack"]), statistics.median(times["sequential"])
    members = n_lambda * n_seed
    if runs["stack"] != members or runs["sequential"] != members:
        sys.exit(f"error: expected {members} completed runs on each side, got {runs}")
    speed_up = sequential / stack
    row = (
        members,
        f"{n_lambda} λ × {n_seed} seeds",
        epochs,
        stack,
        sequential,
        speed_up,
        "≥ 10",
        "met" if speed_up >= 10 else "not met",
        ", ".join(f"{t:.1f}" for t in times["stack"]),
        ", ".join(f"{t:.1f}" for t in times["sequential"]),
    )
    shown = [" ".join(c).replace(f"{ROOT}/", "") for c in commands.values()]
    return [row], [f"  stack: {shown[0]} hydra.run.dir=<tmp>", f"  sequential: {shown[1]} hydra.sweep.dir=<tmp>"]


# Goal 6: the engine's throughput in this process ------------------------------------------------------
def compose(overrides: list[str], run_dir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def fit_stack(members: int, epochs: int, device: str, work: Path) -> tuple[float, float, int]:
    """(build seconds, fit seconds, optimizer steps) of a K-member stack: members/4 λ × 4 seeds."""
    from reglab.members import members_of
    from reglab.preflight import build

    n_seed = 4 if members % 4 == 0 else 1
    grid = [
        f"regularizer.strength=[{','.join(lambdas(members // n_seed))}]",
        f"seed=[{','.join(map(str, range(n_seed)))}]",
    ]
    overrides = [
        *PROBLEM,
        *grid,
        "logger=none",
        *QUIET,
        "callbacks.model_checkpoint=null",
        f"trainer.max_epochs={epochs}",
    ]
    if device == "cuda":
        overrides.append("trainer=gpu")
    run_dir = work / f"K{members}-{time.monotonic_ns()}"
    cfg = compose(overrides, run_dir)
    started = time.perf_counter()
    stack = build(cfg, members_of(cfg), run_dir / "last.ckpt")
    built = time.perf_counter() - started
    stack.history.run_dirs = []  # keep the metrics in memory: no files in the timing
    synchronize(device)
    started = time.perf_counter()
    stack.trainer.fit(stack.module, datamodule=stack.datamodule)
    synchronize(device)
    return built, time.perf_counter() - started, stack.trainer.global_step


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def throughput_part(members_list: list[int], epochs: int, device: str) -> list[tuple]:
    import logging
    import warnings

    import lightning  # noqa: F401 (before quietening its logger: importing it sets the level)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.13, as reglab.fit does
    work = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    fit_stack(1, 2, device, work)  # warm-up: first-call costs (and the CUDA context) out of the timings
    measured = {}
    for k in sorted(set([1, *members_list])):
        measured[k] = fit_stack(k, epochs, device, work)
    single = measured[1][1]
    rows = []
    for k in members_list:
        built, fitted, steps = measured[k]
        rows.append((device, k, epochs, steps, built, fitted, k * steps / fitted, k * single / fitted))
    return rows


def main() -> None:
    args = parse()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"error: --device cuda: torch {torch.__version__} sees no CUDA GPU (CUDA build: {torch.version.cuda}); "
            "run it on a GPU machine (scripts/gpu_checks.sh), or use --device cpu"
        )
    from reglab.tables import markdown_table

    parts = (args.parts or ("throughput" if args.device == "cuda" else "sweep,throughput")).split(",")
    if args.quick:
        n_lambda, n_seed, epochs = 1, 2, 3
        members, throughput_epochs = [1, 4], 2
    else:
        n_lambda, n_seed = (int(v) for v in args.grid.split("x"))
        epochs = args.epochs
        members = [
            int(k) for k in (args.members or ("1,64,1024,4096" if args.device == "cuda" else "1,16,64")).split(",")
        ]
        throughput_epochs = args.throughput_epochs or (50 if args.device == "cuda" else 20)
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device={device} threads={torch.get_num_threads()} load={load()}\n")
    if "sweep" in parts:
        if args.device == "cuda":
            sys.exit("error: the sweep part (goal 4) times CPU processes; run it without --device cuda")
        rows, commands = sweep_part(args, n_lambda, n_seed, epochs, 1 if args.quick else args.repeat)
        header = [
            "members",
            "grid",
            "epochs",
            "stack s",
            "sequential s",
            "speed-up",
            "goal",
            "status",
            "stack runs s",
            "sequential runs s",
        ]
        print(markdown_table(header, rows) + "\n")
        print("commands (from the repository root):\n" + "\n".join(commands) + f"\nload={load()}\n")
    if "throughput" in parts:
        rows = throughput_part(members, throughput_epochs, args.device)
        header = ["device", "K", "epochs", "steps", "build s", "fit s", "member-steps/s", "speed-up vs K sequential"]
        print(markdown_table(header, rows) + "\n")
        print(f"load={load()}")


if __name__ == "__main__":
    main()
