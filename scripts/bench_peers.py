"""Issue 10, goals 1, 2 and 5: the main job beside scikit-learn and Keras, and what W&B costs it.

    python scripts/bench_peers.py [--repeat 3] [--threads 1] [--quick]

Every side is a fresh process timed from outside, from launch to exit (imports, start-up, data,
training, files and report included); the sides are interleaved `--repeat` times and the table
gives each side's median.

    main       reglab-train -m experiment=l1_vs_none hydra.sweep.dir=<tmp>   (`make run`: 2 stacks of 5
               seeds, none and L1 off the output layer, and the report; default logger=wandb, offline
               without credentials; `seed=[0,1,2,3,4]` and `regularizer.exclude=[output]` are added
               only if the experiment config lacks them)
    main csv   the same with logger=csv
    sklearn    this script, `--side sklearn`: the same 10 models fitted one after another in one
               process by scikit-learn's MLPClassifier((128, 128), solver="adam", batch_size=32,
               learning_rate_init=lr, max_iter=epochs, tol=0) on each seed's reglab split
               (exported from `reglab.science.datasets.load` before the clock starts).
               MLPClassifier has no L1 penalty: both of its models use alpha=0 (no penalty at all),
               so its "l1" model is the unregularized one fitted again.
    keras      this script, `--side keras`: the article's Keras code for one seed, its two models
               one after the other (Dense(128, relu, kernel_regularizer=l1(λ)) × 2 + Dense(1,
               sigmoid); Adam(lr); binary cross-entropy; epochs, batch 32, shuffle=True), with
               KERAS_BACKEND=torch. Keras is a benchmark-only extra (`pip install -e '.[bench]'`);
               without it the script prints "keras: not installed" and skips it.

Goals: 1. main / sklearn ≤ 1.0; 2. keras (one seed) / main ≥ 5; 5. main / main csv ≤ 1.15.
The problem (data, network, lr, epochs, λ) is read from the composed experiment config, so the
peers follow it. `--threads N` (default 1) sets OMP/OpenBLAS/MKL threads for every side alike;
`--threads 0` leaves the environment as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from process_timing import reglab_train, timed  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "l1_vs_none"
# The main job is 5 seeds per model, L1 off the output layer; passed only if the experiment lacks them.
MAIN_OVERRIDES = {"seed": "seed=[0,1,2,3,4]", "regularizer.exclude": "regularizer.exclude=[output]"}
QUICK = ["trainer.max_epochs=3", "seed=[0,1]"]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="interleaved repetitions; the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="OMP/BLAS threads of every side (0: leave the env)")
    parser.add_argument(
        "--sides", default=None, help="which sides to time (default main,main_csv,sklearn,keras; --quick: main,sklearn)"
    )
    parser.add_argument("--override", action="append", default=[], help="one more override of the main job")
    parser.add_argument(
        "--quick", action="store_true", help="toy size (3 epochs, 2 seeds, main and sklearn only), for the smoke test"
    )
    parser.add_argument(
        "--profile", action="store_true", help="instead: time the parts of one main-job process (no cProfile)"
    )
    parser.add_argument("--side", choices=["sklearn", "keras", "profile"], help=argparse.SUPPRESS)  # a child
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


# The children: scikit-learn and Keras, each a whole process -----------------------------------------
def sklearn_side(spec: dict) -> dict:
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    data = np.load(spec["data"])
    accuracy: dict[str, list[float]] = {}
    for name, _strength in spec["models"]:
        for seed in spec["seeds"]:
            model = MLPClassifier(
                hidden_layer_sizes=tuple(spec["hidden"]), activation="relu", solver="adam", alpha=0.0,
                batch_size=spec["batch_size"], learning_rate_init=spec["lr"], beta_1=spec["betas"][0],
                beta_2=spec["betas"][1], epsilon=spec["eps"], max_iter=spec["epochs"], tol=0.0,
                n_iter_no_change=spec["epochs"] + 1, shuffle=True, random_state=seed,
            )  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(data[f"x_train_{seed}"], data[f"y_train_{seed}"])
            accuracy.setdefault(name, []).append(float(model.score(data[f"x_test_{seed}"], data[f"y_test_{seed}"])))
    return accuracy


def keras_side(spec: dict) -> dict:
    import numpy as np

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    data = np.load(spec["data"])
    seed = spec["seeds"][0]
    x, y = data[f"x_train_{seed}"], data[f"y_train_{seed}"].astype("float32")
    accuracy: dict[str, list[float]] = {}
    for name, strength in spec["models"]:
        keras.utils.set_random_seed(seed)
        reg = keras.regularizers.l1(strength) if strength else None
        model = keras.Sequential(
            [keras.Input((x.shape[1],))]
            + [keras.layers.Dense(w, activation="relu", kernel_regularizer=reg) for w in spec["hidden"]]
            + [keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=spec["lr"], epsilon=spec["eps"]),
            loss="binary_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(x, y, epochs=spec["epochs"], batch_size=spec["batch_size"], shuffle=True, verbose=0)
        _, acc = model.evaluate(data[f"x_test_{seed}"], data[f"y_test_{seed}"].astype("float32"), verbose=0)
        accuracy[name] = [float(acc)]
    return accuracy


# The profile: one main-job process with timers around its parts ------------------------------------
PARTS = [  # (module, attribute path, label, depth); a part missing from the code is skipped
    ("reglab.train", "check_command_line", "command-line check (composes every job's config)", 0),
    ("reglab.fit", "build", "build stacks (data, model, trainer, trial step)", 0),
    ("reglab.fit", "train_stack", "train stacks", 0),
    ("lightning.pytorch.trainer.trainer", "Trainer.fit", "Lightning fit (all epochs)", 1),
    ("reglab.lightning.loggers", "WandbRuns.on_train_start", "W&B: start the members' runs", 2),
    ("reglab.lightning.module", "RegLabModule._step", "training steps (forward, backward, Adam)", 2),
    ("reglab.lightning.module", "RegLabModule.evaluate", "per-epoch evaluation (2 splits, weights)", 2),
    ("reglab.lightning.loggers", "WandbRuns.on_train_epoch_end", "W&B: log every epoch", 2),
    ("reglab.lightning.callbacks", "MetricsHistory.on_train_epoch_end", "metrics rows to the host", 2),
    ("reglab.lightning.callbacks", "MetricsHistory.write", "metrics.csv writes", 2),
    ("reglab.lightning.callbacks", "AtomicCheckpointIO.save_checkpoint", "checkpoints", 2),
    ("reglab.lightning.loggers", "WandbRuns.finish", "W&B: finish the members' runs", 1),
    ("reglab.report", "ReportOnMultirunEnd.on_multirun_end", "report at the multirun's end", 0),
    ("reglab.train", "_write_figures", "report or figures of a run (not in a multirun)", 0),
]
IMPORTS = [
    ("import torch, lightning, hydra, scikit-learn, reglab", ["reglab.train", "reglab.fit", "lightning", "reglab.lightning.module", "reglab.lightning.callbacks"]),
    ("import wandb", ["wandb", "reglab.lightning.loggers"]),
    ("import matplotlib, reglab.report", ["reglab.report", "matplotlib.pyplot"]),
]  # fmt: skip


def profile_side(overrides: list[str]) -> None:
    """Run the main job in this process with wall-clock timers around `PARTS` (a few µs a call,
    unlike cProfile's inflation of every Python call); print the totals as JSON at exit."""
    import atexit
    import functools
    import importlib

    started = time.perf_counter()
    totals: dict[str, list[float]] = {}
    atexit.register(lambda: print("PROFILE " + json.dumps({"inside": time.perf_counter() - started, "parts": totals})))
    for label, modules in IMPORTS:
        t = time.perf_counter()
        for m in modules:
            importlib.import_module(m)
        totals[label] = [time.perf_counter() - t, 1]

    def timer(fn, label):
        @functools.wraps(fn)
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                entry = totals.setdefault(label, [0.0, 0])
                entry[0] += time.perf_counter() - t
                entry[1] += 1

        return timed

    for module, path, label, _ in PARTS:
        owner = importlib.import_module(module)
        *outer, name = path.split(".")
        for attr in outer:
            owner = getattr(owner, attr)
        if hasattr(owner, name):
            setattr(owner, name, timer(getattr(owner, name), label))
    import reglab.train

    sys.argv = ["reglab-train", *overrides]
    reglab.train.main()


def print_profile(log: Path, outside: float) -> None:
    from reglab.tables import markdown_table

    line = next(x for x in log.read_text().splitlines() if x.startswith("PROFILE "))
    data = json.loads(line.removeprefix("PROFILE "))
    parts = {label: tuple(v) for label, v in data["parts"].items()}
    seconds = {label: v[0] for label, v in parts.items()}

    def rest(whole: str, *inner: str) -> float:
        return seconds.get(whole, 0.0) - sum(seconds.get(i, 0.0) for i in inner)

    rows = [("whole process (timed from outside)", 0, outside, 1)]
    rows.append(("Python start-up and exit (finalization)", 0, outside - data["inside"], 1))
    rows += [(label, 0, *parts[label]) for label, _ in IMPORTS if label in parts]
    depth_of = {label: depth for *_, label, depth in PARTS}
    for _, _, label, depth in PARTS:
        if label in parts:
            rows.append((label, depth, *parts[label]))
        if label == "checkpoints":  # the end of fit's children
            children = [lbl for lbl, d in depth_of.items() if d == 2]
            rows.append(
                ("rest of fit: Lightning's loop and hooks", 2, rest("Lightning fit (all epochs)", *children), 1)
            )
        if label == "W&B: finish the members' runs":
            inner = ("Lightning fit (all epochs)", label)
            rows.append(("rest: test, metrics.json, member checkpoints", 1, rest("train stacks", *inner), 1))
    top = [lbl for lbl, d in depth_of.items() if d == 0] + [lbl for lbl, _ in IMPORTS]
    rows.append(
        ("rest: Hydra (compose, launch jobs), the rest", 0, data["inside"] - sum(seconds.get(t, 0.0) for t in top), 1)
    )
    table = [
        (
            " " * depth + label,
            f"{s:.2f}",
            f"{100 * s / outside:.1f} %",
            calls,
            f"{1000 * s / calls:.2f}" if calls > 1 else "",
        )
        for label, depth, s, calls in rows
    ]
    print(markdown_table(["part", "s", "share", "calls", "ms per call"], table) + "\n")


# The parent -----------------------------------------------------------------------------------------
def problem(overrides: list[str], work: Path) -> dict:
    """The main job's problem from its composed config, and each seed's split exported to an .npz."""
    import numpy as np
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from reglab.science import datasets

    plain = [o for o in overrides if not o.startswith("hydra.")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={EXPERIMENT}", *plain])
    data = OmegaConf.to_container(cfg.data, resolve=False)
    assert isinstance(data, dict)
    kwargs = {
        k: v for k, v in data.items() if k not in ("_target_", "name", "split", "batch_size", "label_noise", "seed")
    }
    seeds = list(cfg.seed) if OmegaConf.is_list(cfg.seed) else [int(cfg.seed)]
    arrays = {}
    for seed in seeds:
        splits = datasets.load(data["name"], tuple(data["split"]), data["label_noise"], seed, **kwargs)
        for part in ("train", "test"):
            arrays[f"x_{part}_{seed}"], arrays[f"y_{part}_{seed}"] = splits.x[part], splits.y[part]
    np.savez(work / "data.npz", **arrays)
    return {
        "data": str(work / "data.npz"),
        "seeds": seeds,
        "models": [["none", 0.0], ["l1", float(cfg.regularizer.strength)]],  # the experiment's λ (its l1)
        "hidden": list(cfg.model.hidden),
        "lr": float(cfg.optimizer.lr),
        "betas": list(cfg.optimizer.betas),
        "eps": float(cfg.optimizer.eps),
        "epochs": int(cfg.trainer.max_epochs),
        "batch_size": int(cfg.data.batch_size),
        "n_train": int(len(arrays[f"y_train_{seeds[0]}"])),
    }


def missing_main_overrides() -> list[str]:
    """The overrides of `MAIN_OVERRIDES` the experiment config does not already have."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={EXPERIMENT}"])
    has = {
        "seed": OmegaConf.is_list(cfg.seed) and list(cfg.seed) == [0, 1, 2, 3, 4],
        "regularizer.exclude": list(cfg.regularizer.get("exclude", [])) == ["output"],
    }
    return [override for key, override in MAIN_OVERRIDES.items() if not has[key]]


def main_job_accuracy(sweep_dir: Path) -> dict[str, list[float]]:
    accuracy: dict[str, list[float]] = {}
    for path in sorted(sweep_dir.glob("**/metrics.json")):
        if ".stack" in path.parts:
            continue
        record = json.loads(path.read_text())
        accuracy.setdefault(record["regularizer"], []).append(record["metrics"].get("test/acc", math.nan))
    return accuracy


def mean_accuracy(accuracy: dict[str, list[float]]) -> str:
    return " / ".join(f"{name} {statistics.fmean(v):.3f}" for name, v in sorted(accuracy.items(), reverse=True))


def main() -> None:
    args = parse()
    if args.side == "profile":
        profile_side(json.loads(args.spec.read_text())["overrides"])
        return
    if args.side:  # a child: one peer's fits, its accuracies on stdout
        spec = json.loads(args.spec.read_text())
        print("ACCURACY " + json.dumps(sklearn_side(spec) if args.side == "sklearn" else keras_side(spec)))
        return

    import importlib.util

    from reglab.tables import markdown_table

    overrides = [*missing_main_overrides(), *(QUICK if args.quick else []), *args.override]
    work = Path(tempfile.mkdtemp(prefix="bench_peers_"))
    spec = problem(overrides, work)
    main_job_args = ["-m", f"experiment={EXPERIMENT}", *overrides]
    (work / "spec.json").write_text(
        json.dumps(spec | {"overrides": [*main_job_args, f"hydra.sweep.dir={work}/profile"]})
    )
    env = {
        **os.environ,
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
        "WANDB_SILENT": "true",
        "KERAS_BACKEND": "torch",
    }
    if args.threads:
        env |= dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), str(args.threads))
    if args.profile:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--spec",
            str(work / "spec.json"),
            "--side",
            "profile",
        ]
        print(f"load before={' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        outside = timed(command, {**env, "WANDB_DIR": str(work)}, work / "profile.log", ROOT)
        print(f"load after={' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        print(f"reglab-train {' '.join(main_job_args)} hydra.sweep.dir=<tmp>, timers around its parts:\n")
        print_profile(work / "profile.log", outside)
        return
    sides = (args.sides or ("main,sklearn" if args.quick else "main,main_csv,sklearn,keras")).split(",")
    keras_missing = "keras" in sides and importlib.util.find_spec("keras") is None
    if keras_missing:
        sides.remove("keras")
    main_job = [*reglab_train(), *main_job_args]
    logger = next((o for o in reversed(overrides) if o.startswith("logger=")), "logger=wandb")
    peer = [sys.executable, str(Path(__file__).resolve()), "--spec", str(work / "spec.json"), "--side"]
    commands = {
        "main": (main_job, f"reglab main job ({logger}), {2 * len(spec['seeds'])} models"),
        "main_csv": ([*main_job, "logger=csv"], f"reglab main job, logger=csv, {2 * len(spec['seeds'])} models"),
        "sklearn": ([*peer, "sklearn"], f"scikit-learn MLPClassifier, {2 * len(spec['seeds'])} fits in turn"),
        "keras": ([*peer, "keras"], "Keras (torch backend), one seed: 2 models in turn"),
    }
    times: dict[str, list[float]] = {s: [] for s in sides}
    accuracy: dict[str, dict[str, list[float]]] = {}
    report_written: dict[str, bool] = {}
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    for r in range(args.repeat):
        turn = r % max(len(sides), 1)
        for side in sides[turn:] + sides[:turn]:  # a different side first each time
            command, _ = commands[side]
            sweep_dir = work / f"{side}-{r}"
            if side.startswith("main"):
                command = [*command, f"hydra.sweep.dir={sweep_dir}"]
            log = work / f"{side}-{r}.log"
            times[side].append(timed(command, {**env, "WANDB_DIR": str(work)}, log, ROOT))
            if side.startswith("main"):
                accuracy[side] = main_job_accuracy(sweep_dir)
                report_written[side] = (sweep_dir / "summary.md").is_file()
            else:
                line = next(x for x in log.read_text().splitlines() if x.startswith("ACCURACY "))
                accuracy[side] = json.loads(line.removeprefix("ACCURACY "))
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []

    median = {s: statistics.median(t) for s, t in times.items()}
    print(
        f"epochs={spec['epochs']} seeds={spec['seeds']} training points={spec['n_train']} threads={args.threads or 'env'} "
        f"repeat={args.repeat} load before={' '.join(load_before)} after={' '.join(load_after)}\n"
    )
    rows = []
    for side in sides:
        note = (
            "" if not side.startswith("main") else "report written" if report_written[side] else "NO report (it failed)"
        )
        runs = ", ".join(f"{t:.1f}" for t in times[side])
        rows.append((commands[side][1], runs, median[side], mean_accuracy(accuracy[side]), note))
    print(markdown_table(["side", "runs s", "median s", "mean test acc", "note"], rows) + "\n")

    goals = []
    if "main" in median and "sklearn" in median:
        ratio = median["main"] / median["sklearn"]
        goals.append(
            (
                f"1. main job / scikit-learn ({2 * len(spec['seeds'])} models each)",
                ratio,
                "≤ 1.0",
                "met" if ratio <= 1.0 else "not met",
            )
        )
    if "main" in median and "keras" in median:
        ratio = median["keras"] / median["main"]
        goals.append(("2. Keras one seed / main job", ratio, "≥ 5", "met" if ratio >= 5 else "not met"))
    if "main" in median and "main_csv" in median:
        ratio = median["main"] / median["main_csv"]
        goals.append((f"5. main job {logger} / logger=csv", ratio, "≤ 1.15", "met" if ratio <= 1.15 else "not met"))
    print(markdown_table(["goal", "ratio", "target", "status"], goals) + "\n")
    if keras_missing:
        print("keras: not installed (pip install -e '.[bench]'; goal 2 not measured)\n")
    print("commands (from the repository root):")
    for side in sides:
        shown = " ".join(commands[side][0]).replace(f"{ROOT}/", "").replace(str(work), "<tmp>")
        print(f"  {side}: {shown}" + (" hydra.sweep.dir=<tmp>" if side.startswith("main") else ""))
    print(f"work directory: {work}")


if __name__ == "__main__":
    main()
