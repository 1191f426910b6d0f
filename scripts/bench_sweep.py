"""Benchmarks 2 and 3: a 64-member sweep vectorized vs sequential, and hardware efficiency.

    python scripts/bench_sweep.py [--threads 1] [--sequential-jobs 2,4 | --sequential-jobs all] [--quick]

Sweep (benchmark 2): 16 λ × 4 seeds of explicit L2 on the article's problem (moons, 100 training
points, 2 → 128 → 128 → 1, Adam, batch 32, 300 epochs), `logger=none`, each side a fresh process
timed from launch to exit (imports and start-up included):

    vectorized   python -m reglab.train sweep.vectorize=true regularizer.strength=[…16…] seed=[0,1,2,3] …
    sequential   python -m reglab.train -m regularizer.strength=a,b,… seed=0,1,… …   (Hydra's basic launcher)

Timing all 64 sequential jobs takes long; by default two multiruns of a few jobs each are timed and
a line t = start-up + n · per-job is fitted through them and extrapolated to 64 jobs (said so in
the table). `--sequential-jobs all` times the whole sequential sweep instead.

Efficiency (benchmark 3): model-steps per second of the stacked training step (K members, batch 32,
`VectorizedModule` in a Lightning Trainer, evaluation off) times the FLOPs of one model-step
(forward 2·B·Σ in·out, backward twice that), as a fraction of the float32 matmul throughput
measured here with the same threads (1024 × 1024 GEMMs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAMBDAS = ["0", "1e-6", "2e-6", "5e-6", "1e-5", "2e-5", "5e-5", "1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "5e-3", "1e-2", "2e-2", "5e-2"]  # fmt: skip
SEEDS = ["0", "1", "2", "3"]
# moons with 100 training points (200 points, half for training), the article's network and optimizer
PROBLEM = ["regularizer=l2", "data.n_samples=200", "data.split=[0.5,0.25,0.25]", "logger=none"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads, here and in the runs")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--sequential-jobs", default="2,4", help="job counts of the timed multiruns, or 'all'")
    parser.add_argument("--entry", default="reglab.train", help="the module `python -m` runs")
    parser.add_argument("--extra", action="append", default=[], help="an override added to every launch")
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    return parser.parse_args()


def launch(args: argparse.Namespace, overrides: list[str], log_dir: Path) -> float:
    """Seconds from launching `python -m <entry> <overrides>` to its exit."""
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    command = [
        sys.executable,
        "-m",
        args.entry,
        *overrides,
        *args.extra,
        f"paths.log_dir={log_dir}",
    ]  # the default callbacks, progress bar (one line per epoch) included, as a user runs it
    started = time.perf_counter()
    result = subprocess.run(command, cwd=log_dir, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def sweep_rows(args: argparse.Namespace, lambdas: list[str], seeds: list[str], epochs: int) -> list[tuple]:
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    common = [*PROBLEM, f"trainer.max_epochs={epochs}"]
    members = len(lambdas) * len(seeds)
    vectorized = launch(args, [*common, "sweep.vectorize=true", f"regularizer.strength=[{','.join(lambdas)}]", f"seed=[{','.join(seeds)}]"], work)  # fmt: skip

    def multirun(jobs: int, name: str) -> float:
        grid = [(lam, seed) for lam in lambdas for seed in seeds][:jobs]
        chosen_lams = sorted({g[0] for g in grid}, key=lambdas.index)
        chosen_seeds = sorted({g[1] for g in grid}, key=seeds.index)
        assert len(chosen_lams) * len(chosen_seeds) == jobs, f"{jobs} jobs is not a product of λ and seed counts"
        sweep = [f"regularizer.strength={','.join(chosen_lams)}", f"seed={','.join(chosen_seeds)}"]
        return launch(args, ["-m", *common, *sweep, f"name={name}"], work)

    if args.sequential_jobs == "all" or args.quick:
        sequential, how = multirun(members, "all"), f"measured, {members} jobs"
    else:
        n1, n2 = (int(n) for n in args.sequential_jobs.split(","))
        t1, t2 = multirun(n1, "a"), multirun(n2, "b")
        per_job = (t2 - t1) / (n2 - n1)
        startup = t1 - n1 * per_job
        sequential = startup + members * per_job
        how = f"extrapolated: {n1} jobs {t1:.1f} s, {n2} jobs {t2:.1f} s → {startup:.1f} s + n · {per_job:.2f} s"
    return [(members, epochs, vectorized, sequential, sequential / vectorized, how)]


def matmul_flops(n: int = 1024, repeat: int = 20) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            a @ b
        best = min(best, (time.perf_counter() - started) / repeat)
    return 2 * n**3 / best


def step_throughput(members: int, batch: int, epochs: int, n_train: int = 100) -> float:
    """Model-steps per second of `VectorizedModule`'s training step (evaluation off)."""
    import lightning as L
    import torch

    from reglab.lightning.datamodule import RegLabDataModule
    from reglab.lightning.vectorized import StackedDataModule, VectorizedModule
    from reglab.science.model import MLP
    from reglab.science.regularizers import L2
    from reglab.science.stacked import StackedMLP

    datamodules = [RegLabDataModule(name="moons", n_samples=2 * n_train, split=(0.5, 0.25, 0.25), batch_size=batch, seed=s % 4) for s in range(members)]  # fmt: skip
    model = StackedMLP.stack([MLP(2, 1, [128, 128]) for _ in range(members)])
    module = VectorizedModule(
        model,
        L2([1e-4] * members),
        lambda p: torch.optim.Adam(p, lr=1e-3, eps=1e-7, fused=True),
        "binary",
        check_val_every_n_epoch=10**9,
    )
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    started = time.perf_counter()
    trainer.fit(module, datamodule=StackedDataModule(datamodules))
    elapsed = time.perf_counter() - started
    return members * trainer.global_step / elapsed


def efficiency_rows(members_list: list[int], epochs: int) -> list[tuple]:
    peak = matmul_flops()
    flops_per_model_step = 3 * 2 * 32 * (2 * 128 + 128 * 128 + 128 * 1)  # forward 2·B·Σ in·out; backward 2×
    rows = []
    for members in members_list:
        rate = step_throughput(members, 32, epochs)
        achieved = rate * flops_per_model_step
        rows.append((members, 32, rate, achieved / 1e9, peak / 1e9, achieved / peak))
    return rows


def main() -> None:
    args = parse()
    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # NumPy's BLAS too (scikit-learn)
    import logging

    import lightning  # noqa: F401 (before quietening its logger: importing it sets the level)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    from reglab.tables import markdown_table

    lambdas, seeds, epochs = (LAMBDAS[:2], SEEDS[:2], 3) if args.quick else (LAMBDAS, SEEDS, args.epochs)
    print(f"threads={torch.get_num_threads()} load={os.getloadavg()[0]:.2f}")
    rows = sweep_rows(args, lambdas, seeds, epochs)
    header = ["members", "epochs", "vectorized s", "sequential s", "speed-up", "sequential timing"]
    print(markdown_table(header, rows) + "\n")
    eff = efficiency_rows([4] if args.quick else [1, 16, 64], 2 if args.quick else 30)
    header = ["K", "batch", "model-steps/s", "GFLOP/s", "matmul GFLOP/s", "efficiency"]
    print(markdown_table(header, eff) + "\n")
    print(f"load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
