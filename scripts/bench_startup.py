"""What a user waits for before any arithmetic: `import reglab`, `--help`, and a refused typo.

Each row is a fresh process timed from outside, launch to exit, with its own peak resident memory
(`os.wait4`); the baseline is an empty interpreter (`python -c pass`) measured in the same call,
interleaved. Rows run `--repeat` times in a rotating order; the table gives medians.

    python scripts/bench_startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from process_timing import reglab_train

TRAIN = reglab_train()
PY = [sys.executable, "-c"]
# (what, command, the exit it must give, goal: (seconds, MB) or None)
ROWS = [
    ("empty interpreter (baseline)", [*PY, "pass"], 0, None),
    ("import torch (what a refusal no longer pays)", [*PY, "import torch"], 0, None),
    ("import reglab", [*PY, "import reglab"], 0, (0.3, None)),
    ("reglab-train --help", [*TRAIN, "--help"], 0, (1.5, None)),
    ("refused: regularizer.strength=-1", [*TRAIN, "regularizer=l1", "regularizer.strength=-1"], 2, (1.5, 150)),
    ("refused: regularizer=l3 (unknown choice)", [*TRAIN, "regularizer=l3"], 2, (1.5, 150)),
    ("refused: optimizer.lr=abc (wrong type)", [*TRAIN, "optimizer.lr=abc"], 2, (1.5, 150)),
    ("refused: -m, a sweep's last value", [*TRAIN, "-m", "regularizer=l1", "regularizer.strength=0,-1"], 2, (1.5, 150)),
]  # fmt: skip


def measure(command: list[str], expected: int, cwd: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != expected:
        sys.exit(f"error: {' '.join(command)} exited {code}, expected {expected}")
    return wall, usage.ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition (the smoke test)")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    results: dict[str, list[tuple[float, float]]] = {what: [] for what, *_ in ROWS}
    with tempfile.TemporaryDirectory() as cwd:
        for r in range(repeat):
            for what, command, expected, _ in ROWS[r % len(ROWS) :] + ROWS[: r % len(ROWS)]:
                results[what].append(measure(command, expected, cwd))
        left = os.listdir(cwd)
    base = statistics.median(wall for wall, _ in results[ROWS[0][0]])
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{repeat} repetition(s), medians; 1-minute load {load}; nothing left on disk: {not left}\n")
    print("| what | wall s | peak MB | wall / empty interpreter | goal | status |")
    print("|---|---|---|---|---|---|")
    for what, _, _, goal in ROWS:
        wall = statistics.median(w for w, _ in results[what])
        peak = statistics.median(m for _, m in results[what])
        if goal is None:
            target, status = "—", "—"
        else:
            seconds, mb = goal
            target = f"≤ {seconds} s" + (f", ≤ {mb} MB" if mb else "")
            status = "met" if wall <= seconds and (mb is None or peak <= mb) else "not met"
        print(f"| {what} | {wall:.3f} | {peak:.1f} | {wall / base:.2f} | {target} | {status} |")


if __name__ == "__main__":
    main()
