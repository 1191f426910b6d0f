"""Peak memory of one stack of 16 members trained whole, against the same members in chunks of 4
(`sweep.chunk`): each chunk is built right before it trains, so only one chunk's data and weights
are held at once. Whole processes, side by side in one call; peak RSS as the kernel counts it.

    .venv/bin/python scripts/bench_chunk_memory.py [--quick]

Each member has its own seed, so its own data set (features: 5,000 × 400, generated in float64):
the data dominate, and chunks of 4 should need about a quarter of the data memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from process_timing import reglab_train  # noqa: E402
from reglab.tables import markdown_table  # noqa: E402

# Runs a command and prints the peak RSS (KiB) of its process tree's largest process.
PEAK = (
    "import resource, subprocess, sys; "
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def measure(overrides: list[str], run_dir: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one `reglab-train` process."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PEAK, *reglab_train(), *overrides, f"hydra.run.dir={run_dir}"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code, kib = out.stdout.split()
    if code != "0":
        sys.exit(f"error: reglab-train {' '.join(overrides)} exited {code}")
    return int(kib) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a toy size (the smoke test)")
    args = parser.parse_args()
    n, d, k, chunk = (300, 20, 4, 1) if args.quick else (5000, 400, 16, 4)
    common = [
        "logger=none",
        "callbacks.progress_bar=null",
        "trainer.enable_progress_bar=false",
        "data=features",
        f"data.n_samples={n}",
        f"data.n_features={d}",
        "model.hidden=[64]",
        "trainer.max_epochs=1",
        "data.batch_size=null",
        "seed=[" + ",".join(str(s) for s in range(k)) + "]",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, setting in ((f"{k} members at once", "null"), (f"chunks of {chunk}", str(chunk))):
            peak, seconds = measure([*common, f"sweep.chunk={setting}"], Path(tmp) / setting)
            rows.append([label, f"sweep.chunk={setting}", peak, seconds])
    rows.append(["ratio (chunked / whole)", "", rows[1][2] / rows[0][2], rows[1][3] / rows[0][3]])
    print(f"features {n} × {d}, one seed (one data set) per member, model.hidden=[64], 1 full-batch epoch")
    print(markdown_table(["stack", "setting", "peak RSS (MiB)", "wall (s)"], rows))


if __name__ == "__main__":
    main()
