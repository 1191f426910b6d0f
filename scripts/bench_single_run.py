"""Issue 10, goal 3: one reglab run against a hand-written PyTorch loop, both whole processes.

    python scripts/bench_single_run.py [--epochs 300] [--repeat 3] [--threads 1] [--quick]

reglab (a K = 1 run on the defaults: moons, 1000 points split 0.6/0.2/0.2 so 600 training points,
2 → 128 → 128 → 1 ReLU, Adam lr 1e-3 eps 1e-7, no regularizer), as a user runs it quietly:

    reglab-train logger=csv callbacks.progress_bar=null trainer.enable_progress_bar=false \
        trainer.max_epochs=300 [data.batch_size=null] hydra.run.dir=<tmp>

The raw loop is this script with `--side raw`: a plain `nn.Sequential` with the same (Glorot)
initialisation, `torch.optim.Adam`, the same split (`reglab.science.datasets.load`, which is
make_moons plus a seeded split), a shuffled mini-batch loop, and every epoch the metrics a run
records: train and validation loss and accuracy, the gap, and weight statistics (per layer L1,
L2, max |w|, zero fraction; in total L1, L2, zero and small fractions), moved to the host once per
epoch and written as metrics.csv at the end.

Both are timed from outside, launch to exit, imports included, at batch 32 and full batch; the
sides are interleaved `--repeat` times and the medians compared. Goals (issue 19): ≤ 1.2× at
batch 32 and at full batch. The table also gives each side's time inside training (the raw loop's own
clock; metrics.json's wall_time_s, which covers reglab's fit and test), so the rest is start-up.
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

from process_timing import reglab_train, timed  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"32": 1.2, "full": 1.2}  # issue 19 (issue 10: 1.3 and 1.5)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions; medians are compared")
    parser.add_argument("--threads", type=int, default=1, help="OMP/BLAS threads of both sides (0: leave the env)")
    parser.add_argument("--quick", action="store_true", help="toy size (3 epochs, batch 32 only), for the smoke test")
    parser.add_argument("--side", choices=["raw"], help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--batch", default="32", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def raw_side(epochs: int, batch_size: int | None, out: Path) -> None:
    """The hand-written run: same data, network, optimizer and per-epoch metrics as reglab's."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from reglab.science.datasets import load

    torch.manual_seed(0)
    splits = load("moons", (0.6, 0.2, 0.2), 0.0, 0, n_samples=1000, noise=0.2)
    x, y = torch.from_numpy(splits.x["train"]), torch.from_numpy(splits.y["train"]).float()
    xv, yv = torch.from_numpy(splits.x["val"]), torch.from_numpy(splits.y["val"]).float()
    model = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
    layers = [m for m in model if isinstance(m, nn.Linear)]
    for layer in layers:  # Keras' Dense default, as reglab's model.init=glorot_uniform
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    batch = batch_size or len(y)
    rows = []
    started = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch)) if batch < len(y) else None
        for start in range(0, len(y), batch):
            part = order[start : start + batch] if order is not None else slice(None)
            loss = F.binary_cross_entropy_with_logits(model(x[part]).squeeze(-1), y[part])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            values = []
            for xs, ys in ((x, y), (xv, yv)):
                logits = model(xs).squeeze(-1)
                values += [F.binary_cross_entropy_with_logits(logits, ys), ((logits > 0).float() == ys).float().mean()]
            values.append(values[1] - values[3])  # train acc − val acc
            weights = [layer.weight.double() for layer in layers]
            for w in weights:
                values += [w.abs().sum(), w.square().sum().sqrt(), w.abs().max(), (w == 0).double().mean()]
            flat = torch.cat([w.flatten() for w in weights])
            values += [flat.abs().sum(), flat.square().sum().sqrt(), (flat == 0).double().mean()]
            values.append((flat.abs() < 1e-3).double().mean())
            rows.append(torch.stack([v.double() for v in values]).tolist())  # one host transfer per epoch
    elapsed = time.perf_counter() - started
    names = ["train/loss", "train/acc", "val/loss", "val/acc", "val/gap"]
    names += [f"weights/{i}/{s}" for i in range(len(layers)) for s in ("l1", "l2", "max_abs", "zero_frac")]
    names += ["weights/l1", "weights/l2", "weights/zero_frac", "weights/small_frac"]
    lines = [",".join(["epoch", *names])] + [",".join([str(e), *map(repr, r)]) for e, r in enumerate(rows)]
    (out / "metrics.csv").write_text("\n".join(lines) + "\n")
    (out / "raw.json").write_text(json.dumps({"loop_s": elapsed, "val/acc": rows[-1][3]}))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    args = parse()
    if args.side == "raw":
        raw_side(args.epochs, None if args.batch == "full" else int(args.batch), args.out)
        return
    from reglab.tables import markdown_table

    epochs, repeat = (3, 1) if args.quick else (args.epochs, args.repeat)
    goals = {"32": GOALS["32"]} if args.quick else GOALS
    env = {**os.environ, "WANDB_MODE": "offline"}
    if args.threads:
        env |= dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), str(args.threads))
    work = Path(tempfile.mkdtemp(prefix="bench_single_"))
    quiet = ["logger=csv", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
    commands: dict[str, dict[str, list[str]]] = {}
    for label in goals:
        batch = ["data.batch_size=null"] if label == "full" else []
        commands[label] = {
            "reglab": [*reglab_train(), *quiet, f"trainer.max_epochs={epochs}", *batch],
            "raw": [
                sys.executable,
                str(Path(__file__).resolve()),
                "--side",
                "raw",
                f"--epochs={epochs}",
                f"--batch={label}",
            ],
        }
    before = load()
    times: dict[tuple[str, str], list[float]] = {}
    inside: dict[tuple[str, str], list[float]] = {}
    accuracy: dict[tuple[str, str], float] = {}
    for r in range(repeat):
        for label in goals:
            for side in ("reglab", "raw") if r % 2 == 0 else ("raw", "reglab"):
                out = work / f"{label}-{side}-{r}"
                out.mkdir()
                extra = [f"hydra.run.dir={out}"] if side == "reglab" else [f"--out={out}"]
                times.setdefault((label, side), []).append(
                    timed([*commands[label][side], *extra], env, out / "log", ROOT)
                )
                if side == "reglab":
                    record = json.loads((out / "metrics.json").read_text())
                    inside.setdefault((label, side), []).append(record["wall_time_s"])
                    accuracy[(label, side)] = record["metrics"]["val/acc"]
                else:
                    record = json.loads((out / "raw.json").read_text())
                    inside.setdefault((label, side), []).append(record["loop_s"])
                    accuracy[(label, side)] = record["val/acc"]
    print(f"epochs={epochs} repeat={repeat} threads={args.threads or 'env'} load before={before} after={load()}\n")
    rows = []
    for label, goal in goals.items():
        reglab, raw = (statistics.median(times[(label, s)]) for s in ("reglab", "raw"))
        steps = epochs * (-(-600 // 32) if label == "32" else 1)
        ratio = reglab / raw
        rows.append(
            (
                label,
                steps,
                raw,
                reglab,
                ratio,
                f"≤ {goal}",
                "met" if ratio <= goal else "not met",
                statistics.median(inside[(label, "raw")]),
                statistics.median(inside[(label, "reglab")]),
                f"{accuracy[(label, 'raw')]:.3f} / {accuracy[(label, 'reglab')]:.3f}",
            )
        )
    header = [
        "batch",
        "steps",
        "raw process s",
        "reglab process s",
        "reglab / raw",
        "goal",
        "status",
        "raw loop s",
        "reglab fit+test s",
        "val acc raw / reglab",
    ]
    print(markdown_table(header, rows) + "\n")
    print(
        "runs (s): "
        + "; ".join(f"{label} {side}: " + ", ".join(f"{t:.2f}" for t in v) for (label, side), v in times.items())
    )
    print("commands (from the repository root):")
    for label in goals:
        for side in ("reglab", "raw"):
            shown = " ".join(commands[label][side]).replace(f"{ROOT}/", "")
            print(f"  {label} {side}: {shown}" + (" hydra.run.dir=<tmp>" if side == "reglab" else " --out=<tmp>"))


if __name__ == "__main__":
    main()
