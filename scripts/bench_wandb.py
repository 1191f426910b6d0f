"""Issue 19, goal 5's other half: what W&B costs the main job, beside what `wandb` itself needs to
make the same writes.

Four whole processes, timed from outside and interleaved `--repeat` times in a rotating order:

    main       reglab-train -m experiment=l1_vs_none                  (logger=wandb, offline)
    main_csv   reglab-train -m experiment=l1_vs_none logger=csv
    bare       this script --side bare: `import wandb`, then the main job's W&B writes replayed
               from a finished main job's files: per stack 5 runs open at once, each metrics row
               (metrics.csv) logged to each run, the weight histograms of the rows reglab gives
               them, each run's two figures (its PNGs), then finish; and the report's run.
    empty      python -c "import numpy"  (the interpreter and what the bare side imports first)

reglab's W&B cost is main − main_csv; wandb's own is bare − empty. The issue's goal: reglab's W&B
cost within 15 % of wandb's own (ratio ≤ 1.15). `--quick`: 3 epochs and 2 seeds (the smoke test).

    python scripts/bench_wandb.py --repeat 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from process_timing import reglab_train, timed  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.max_epochs=3", "seed=[0,1]", "trainer.check_val_every_n_epoch=1"]
# reglab's own W&B settings (reglab.wandb_init), spelled out here so that the bare side imports
# nothing of reglab; W&B writes each run's requirements.txt itself, as it does by default.
SETTINGS = dict(silent=True, disable_git=True, console="off", x_disable_stats=True, save_code=False)


def replay_plan(sweep: Path) -> dict:
    """What the main job in `sweep` wrote to W&B, read from its files: per stack, per member, the
    metrics rows, the weight shapes (from a checkpoint) and the PNGs."""
    import torch

    from reglab.lightning.loggers import histograms_due

    stacks, shapes = [], []
    for stack in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.startswith("regularizer=")):
        members = []
        for member in sorted(p for p in stack.iterdir() if (p / "metrics.csv").is_file()):
            with open(member / "metrics.csv", newline="") as f:
                rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
            epochs = [int(r["epoch"]) for r in rows]
            due = [histograms_due(epochs[max(0, i - 1) : i + 1], 10) for i in range(len(epochs))]
            pngs = [str(p) for p in sorted(member.glob("*.png"))]
            if not shapes:
                state = torch.load(member / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
                shapes = [list(v.shape) for k, v in state["state_dict"].items() if k.endswith(".weight")]
            members.append({"name": f"{stack.name} {member.name}", "rows": rows, "histograms": due, "pngs": pngs})
        stacks.append(members)
    report = [str(p) for p in sorted(sweep.glob("*.png"))]
    return {"stacks": stacks, "report": report, "shapes": shapes}


def bare(plan_file: Path, out: Path) -> None:
    """The W&B writes of `plan_file`, with nothing of reglab: the floor reglab's W&B cost is measured against."""
    import numpy as np
    import wandb

    plan = json.loads(plan_file.read_text())
    rng = np.random.default_rng(0)
    settings = wandb.Settings(init_timeout=120, **SETTINGS)  # type: ignore[arg-type]
    for s, members in enumerate(plan["stacks"]):
        runs = []
        for m in members:
            directory = out / f"{s}-{len(runs)}"
            directory.mkdir(parents=True)
            run = wandb.init(
                mode="offline",
                reinit="create_new",
                settings=settings,
                project="bench",
                name=m["name"],
                dir=str(directory),
            )
            run.define_metric("epoch")
            run.define_metric("*", step_metric="epoch")
            runs.append(run)
        for i in range(max(len(m["rows"]) for m in members)):
            for run, m in zip(runs, members):
                if i < len(m["rows"]):
                    weights = {}
                    if m["histograms"][i]:
                        weights = {f"histograms/{k}": wandb.Histogram(rng.normal(size=np.prod(shape)) * 0.1)
                                   for k, shape in enumerate(plan["shapes"])}  # fmt: skip
                    run.log(m["rows"][i] | weights)
        for run, m in zip(runs, members):
            run.log({"epoch": m["rows"][-1]["epoch"], **{f"figures/{Path(p).stem}": wandb.Image(p) for p in m["pngs"]}})
            run.finish()
    report = wandb.init(mode="offline", reinit="create_new", settings=settings, project="bench", dir=str(out))
    report.log({f"figures/{Path(p).stem}": wandb.Image(p) for p in plan["report"]})
    report.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions; medians are compared")
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    parser.add_argument("--side", choices=["bare"], help=argparse.SUPPRESS)
    parser.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "bare":
        return bare(args.plan, args.out)

    from reglab.tables import markdown_table

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    extra = QUICK if args.quick else []
    with tempfile.TemporaryDirectory(prefix="bench_wandb_") as tmp:
        work = Path(tmp)
        n = iter(range(10**6))

        def command(side: str) -> list[str]:
            where = work / f"{side}-{next(n)}"
            if side == "bare":
                return [sys.executable, __file__, "--side", "bare", f"--plan={work / 'plan.json'}", f"--out={where}"]
            if side == "empty":
                return [sys.executable, "-c", "import numpy"]
            logger = ["logger=csv"] if side == "main_csv" else []
            return [*reglab_train(), "-m", "experiment=l1_vs_none", *logger, *extra, f"hydra.sweep.dir={where}"]

        first = command("main")  # its files are what the bare side replays
        seconds = {side: [] for side in ("main", "main_csv", "bare", "empty")}
        seconds["main"].append(timed(first, {**env, "WANDB_DIR": str(work)}, work / "main.log", ROOT))
        (work / "plan.json").write_text(json.dumps(replay_plan(Path(first[-1].split("=", 1)[1]))))
        order = ["bare", "empty", "main_csv", "main"]
        for r in range(args.repeat):
            for side in order[r % 4 :] + order[: r % 4]:
                if side == "main" and r == 0:
                    continue  # measured above
                seconds[side].append(timed(command(side), {**env, "WANDB_DIR": str(work)}, work / f"{side}.log", ROOT))
    median = {side: statistics.median(times) for side, times in seconds.items() if times}
    rows = [(side, ", ".join(f"{t:.2f}" for t in times), median[side]) for side, times in seconds.items() if times]
    print(f"repeat={args.repeat} quick={args.quick} load={os.getloadavg()[0]:.2f}\n")
    print(markdown_table(["side", "runs s", "median s"], rows) + "\n")
    if {"main_csv", "bare", "empty"} <= median.keys():
        reglab_cost, wandb_cost = median["main"] - median["main_csv"], median["bare"] - median["empty"]
        ratio = reglab_cost / wandb_cost
        status = "met" if ratio <= 1.15 else "not met"
        header = ["W&B cost of", "s", "ratio", "goal", "status"]
        print(markdown_table(header, [("reglab (main − main_csv)", reglab_cost, ratio, "≤ 1.15", status),
                                      ("wandb alone (bare − empty)", wandb_cost, 1.0, "", "")]))  # fmt: skip


if __name__ == "__main__":
    main()
