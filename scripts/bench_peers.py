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
               (exported from `reglab.science.datasets.load_splits` before the clock starts).
               MLPClassifier has no L1 penalty: both of its models use alpha=0 (no penalty at all),
               so its "l1" model is the unregularized one fitted again.
    keras      this script, `--side keras`: the article's Keras code for one seed, its two models
               one after the other (Dense(128, relu, kernel_regularizer=l1(λ)) × 2 + Dense(1,
               sigmoid); Adam(lr); binary cross-entropy; epochs, batch 32, shuffle=True, no global
               seed), with KERAS_BACKEND=torch. Keras is a benchmark-only extra
               (`pip install -e '.[bench]'`); without it the script prints "keras: not installed"
               and skips it.

Goals: 1. main / sklearn ≤ 1.0 (issue 27's goal 2; issue 19 had 0.5); 2. keras (one seed) / main ≥ 5;
5. main / main csv ≤ 1.15.

    python scripts/bench_peers.py --sides none --keras-seeds 5      # the comparison only (21 min at load 5)

`--keras-seeds N` adds the comparison (issue 14): the main job's members on its first N seeds (from
the timed main side's run, or from one `logger=csv` run of the main job in this call) beside the
article's Keras code trained on the same exported splits, both models, for each variant of
`KERAS_VARIANTS` in a fresh process: as published (shuffle=True, no global seed), with
`keras.utils.set_random_seed(seed)` once before the model and fit, and in one fixed batch order.
Each Keras fit records the order in which it was fed the training points, every epoch. Printed:
train acc, val acc, gap, fraction of |w| < sparsity_threshold (all kernels, as reglab's
`weights/small_frac`) and the hidden kernels' L1 norm, as mean ± 95% t-interval (min–max); Welch
intervals of the differences; what the batch orders show. `--keras-backend tensorflow
--keras-python <a venv with tensorflow-cpu and keras>` runs the Keras fits on another backend
(eagerly there, so that the order recorder sees every step).

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
    parser.add_argument(
        "--keras-seeds",
        type=int,
        default=0,
        metavar="N",
        help="also compare the main job with the article's Keras code on its first N seeds (0: not run; 5: all)",
    )
    parser.add_argument(
        "--keras-variants",
        default=",".join(KERAS_VARIANTS),
        help=f"the Keras fits of the comparison (default: all of {', '.join(KERAS_VARIANTS)})",
    )
    parser.add_argument("--keras-backend", default="torch", help="KERAS_BACKEND of the comparison (default torch)")
    parser.add_argument(
        "--keras-python",
        default=sys.executable,
        help="the interpreter of the comparison's Keras fits (default: this one)",
    )
    parser.add_argument(
        "--side", choices=["sklearn", "keras", "keras_compare", "profile"], help=argparse.SUPPRESS
    )  # a child
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=list(KERAS_VARIANTS), help=argparse.SUPPRESS)
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
                hidden_layer_sizes=tuple(spec["hidden"]),
                activation="relu",
                solver="adam",
                alpha=0.0,
                batch_size=spec["batch_size"],
                learning_rate_init=spec["lr"],
                beta_1=spec["betas"][0],
                beta_2=spec["betas"][1],
                epsilon=spec["eps"],
                max_iter=spec["epochs"],
                tol=0.0,
                n_iter_no_change=spec["epochs"] + 1,
                shuffle=True,
                random_state=seed,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(data[f"x_train_{seed}"], data[f"y_train_{seed}"])
            accuracy.setdefault(name, []).append(float(model.score(data[f"x_test_{seed}"], data[f"y_test_{seed}"])))
    return accuracy


# The article's Keras code ---------------------------------------------------------------------------
# How a Keras fit of the comparison seeds its randomness and orders its batches.
KERAS_VARIANTS = {
    "published": "no global seed (the published code): shuffle=True",
    "global_seed": "keras.utils.set_random_seed(seed) once, before the model and fit; shuffle=True",
    "fixed_order": "no global seed; the split shuffled once, then shuffle=False: one batch order every epoch",
}


def article_model(keras, n_inputs: int, hidden: list[int], strength: float):
    """The article's code, `tf.keras.regularizers` spelt `keras.regularizers`: model1 (strength 0, no
    regularizer) or model2 (`kernel_regularizer=l1(strength)` on the hidden layers, none on the
    output). The main job's config gives 2 inputs, hidden [128, 128] and λ = 0.001, the article's."""
    model = keras.Sequential()
    for i, width in enumerate(hidden):
        first = {"input_dim": n_inputs} if i == 0 else {}
        penalty = {"kernel_regularizer": keras.regularizers.l1(strength)} if strength else {}
        model.add(keras.layers.Dense(width, **first, activation="relu", **penalty))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    return model


def keras_fit(keras, spec: dict, data, seed: int, strength: float, variant: str, record: bool) -> dict:
    """One of the article's models trained on seed `seed`'s reglab split (Adam with the main job's lr,
    betas and eps; binary cross-entropy; the main job's epochs and batch size), then measured as
    reglab measures a run. `record`: also the order in which fit fed the training points, each epoch
    (read off every batch by wrapping the model's `train_step`; the training is unchanged)."""
    import hashlib

    import numpy as np

    x, y = data[f"x_train_{seed}"], data[f"y_train_{seed}"].astype("float32")
    shuffle = True
    if variant == "global_seed":
        keras.utils.set_random_seed(seed)
    elif variant == "fixed_order":
        order = np.random.default_rng(seed).permutation(len(y))
        x, y, shuffle = x[order], y[order], False
    started = time.perf_counter()
    model = article_model(keras, x.shape[1], spec["hidden"], strength)
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=spec["lr"], beta_1=spec["betas"][0], beta_2=spec["betas"][1], epsilon=spec["eps"]
        ),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        run_eagerly=record and keras.backend.backend() != "torch",  # the recorder must see every step
    )
    orders: list[list[int]] = []
    callbacks = []
    if record:
        position = {row.tobytes(): i for i, row in enumerate(x)}
        step = model.train_step

        def recording_step(batch):
            orders[-1].extend(position[row.tobytes()] for row in keras.ops.convert_to_numpy(batch[0]))
            return step(batch)

        model.train_step = recording_step

        class EpochStart(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                orders.append([])

        callbacks.append(EpochStart())
    model.fit(
        x, y, epochs=spec["epochs"], batch_size=spec["batch_size"], shuffle=shuffle, verbose=0, callbacks=callbacks
    )
    seconds = time.perf_counter() - started

    def accuracy(part: str) -> float:
        p = keras.ops.convert_to_numpy(model(data[f"x_{part}_{seed}"], training=False))[:, 0]
        return float(np.mean((p > 0.5) == (data[f"y_{part}_{seed}"] == 1)))

    kernels = [keras.ops.convert_to_numpy(layer.kernel).astype(np.float64) for layer in model.layers]
    out = {
        "variant": variant,
        "seed": seed,
        "strength": strength,
        "seconds": seconds,
        "train_acc": accuracy("train"),
        "val_acc": accuracy("val"),
        "test_acc": accuracy("test"),
        "small_frac": sum(int((np.abs(k) < spec["threshold"]).sum()) for k in kernels) / sum(k.size for k in kernels),
        "l1_hidden": sum(float(np.abs(k).sum()) for k in kernels[:-1]),
    }
    out["gap"] = out["train_acc"] - out["val_acc"]
    if record:
        epochs = [tuple(o) for o in orders]
        out |= {
            "epochs_recorded": len(epochs),
            "distinct_orders": len(set(epochs)),
            "epochs_like_first": sum(o == epochs[0] for o in epochs),
            "points_per_epoch": sorted({len(o) for o in epochs}),
            "digest": hashlib.sha1(repr(epochs).encode()).hexdigest()[:12],
        }
    return out


def keras_side(spec: dict) -> dict:
    """The timed peer: the article's two models on the first seed, as published (no global seed)."""
    import numpy as np

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    data = np.load(spec["data"])
    seed = spec["seeds"][0]
    return {
        name: [keras_fit(keras, spec, data, seed, strength, "published", record=False)["test_acc"]]
        for name, strength in spec["models"]
    }


def keras_compare_side(spec: dict, variant: str) -> None:
    """The comparison's child: both models on each of the first `keras_seeds` seeds, one variant (a
    process of its own, so that no other variant's global seed reaches it); a line per fit."""
    import warnings

    import numpy as np

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    warnings.filterwarnings("ignore", message=".*input_shape.*input_dim.*")  # the article's `input_dim=2`
    data = np.load(spec["data"])
    print(f"KERAS_VERSION {keras.__version__} backend {keras.backend.backend()}", flush=True)
    for seed in spec["seeds"][: spec["keras_seeds"]]:
        for name, strength in spec["models"]:
            fit = keras_fit(keras, spec, data, seed, strength, variant, record=True)
            print("KERAS_FIT " + json.dumps(fit | {"model": name}), flush=True)


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
    ("reglab.lightning.loggers", "WandbRuns.on_train_end", "W&B: wait for the writer thread's logs", 2),
    ("reglab.lightning.callbacks", "MetricsHistory.on_train_epoch_end", "metrics rows to the host", 2),
    ("reglab.lightning.callbacks", "MetricsHistory.write", "metrics.csv writes", 2),
    ("reglab.lightning.callbacks", "AtomicCheckpointIO.save_checkpoint", "checkpoints", 2),
    ("reglab.lightning.loggers", "WandbRuns.finish", "W&B: finish the members' runs", 1),
    ("reglab.report", "ReportOnMultirunEnd.on_multirun_end", "report at the multirun's end", 0),
    ("reglab.report", "copy_to_wandb", "the report's W&B run", 1),
    ("reglab.train", "_write_figures", "report or figures of a run (not in a multirun)", 0),
]
IMPORTS = [
    (
        "import torch, lightning, hydra, scikit-learn, reglab",
        ["reglab.train", "reglab.fit", "lightning", "reglab.lightning.module", "reglab.lightning.callbacks"],
    ),
    ("import wandb", ["wandb", "reglab.lightning.loggers"]),
    ("import matplotlib, reglab.report", ["reglab.report", "matplotlib.pyplot"]),
]


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
    seeds = list(cfg.seed) if OmegaConf.is_list(cfg.seed) else [int(cfg.seed)]
    arrays, transform = {}, {}
    for seed in seeds:  # each seed's data set, split, label noise and standardisation, as the main job's
        splits = datasets.load_splits(data, seed)
        for part in ("train", "val", "test"):
            arrays[f"x_{part}_{seed}"], arrays[f"y_{part}_{seed}"] = splits.x[part], splits.y[part]
        transform[str(seed)] = {"mean": splits.mean.tolist(), "std": splits.std.tolist()}
    np.savez(work / "data.npz", **arrays)
    return {
        "data": str(work / "data.npz"),
        "seeds": seeds,
        "transform": transform,  # to check that the main job trained on these very splits
        "threshold": float(cfg.sparsity_threshold),
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


# The comparison: the main job beside the article's Keras code, seed by seed ---------------------------
# (header, key, decimals) of the comparison's table; gap = train acc − val acc, as reglab's `val/gap`.
COMPARED = [
    ("train acc", "train_acc", 3),
    ("val acc", "val_acc", 3),
    ("gap", "gap", 3),
    ("abs(w)<{threshold:g}", "small_frac", 4),
    ("L1 of hidden kernels", "l1_hidden", 0),
]


def main_job_members(sweep_dir: Path) -> list[dict]:
    """Every member of the main job (its K = 1 run directories' metrics.json): model, seed, the final
    metrics the comparison shows, and the input transform it trained with."""
    members = []
    for path in sorted(sweep_dir.glob("**/metrics.json")):
        if ".stack" in path.parts:
            continue
        record = json.loads(path.read_text())
        m = record["metrics"]
        members.append(
            {
                "side": "reglab",
                "model": record["regularizer"],
                "seed": int(record["seed"]),
                "strength": float(record["strength"]),
                "exclude": record["config"]["regularizer"].get("exclude"),
                "train_acc": m["train/acc"],
                "val_acc": m["val/acc"],
                "test_acc": m.get("test/acc"),
                "gap": m["val/gap"],
                "small_frac": m["weights/small_frac"],
                "l1_hidden": sum(v for k, v in m.items() if k.startswith("weights/hidden.") and k.endswith("/l1")),
                "transform": record.get("input_transform"),
            }
        )
    return members


def spread(values: list[float], decimals: int) -> str:
    """mean ± the half-width of its 95% t-interval (`reglab.runs.mean_ci`, as the report) (min–max)."""
    import numpy as np

    from reglab.runs import mean_ci

    x = np.asarray(values, dtype=float)
    mean, half = mean_ci(x)
    f = f"{{:.{decimals}f}}".format
    if len(x) < 2:
        return f(mean)
    return f"{f(mean)} ± {f(half)} ({f(x.min())}–{f(x.max())})"


def welch(a: list[float], b: list[float]) -> str:
    """mean(a) − mean(b) ± the half-width of Welch's 95% t-interval."""
    import numpy as np
    from scipy import stats

    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a_), len(b_)) < 2:
        return f"{a_.mean() - b_.mean():+.3f}"
    va, vb = a_.var(ddof=1) / len(a_), b_.var(ddof=1) / len(b_)
    diff, se = a_.mean() - b_.mean(), math.sqrt(va + vb)
    if se == 0:
        return f"{diff:+.3f} ± 0"
    df = (va + vb) ** 2 / (va**2 / (len(a_) - 1) + vb**2 / (len(b_) - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    mark = " *" if abs(diff) > half else ""
    return f"{diff:+.3f} ± {half:.3f}{mark}"


def keras_available(python: str, backend: str) -> bool:
    import importlib.util
    import subprocess

    if python == sys.executable:
        return importlib.util.find_spec("keras") is not None
    check = subprocess.run(
        [python, "-c", "import keras"], env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True
    )
    return check.returncode == 0


def compare_with_keras(args, spec: dict, work: Path, env: dict, main_sweep: Path | None, main_job: list[str]) -> None:
    """The main job's members beside the article's Keras code on the same splits (the first
    `--keras-seeds` seeds), one fresh process per Keras variant; a table of means and spreads, one of
    differences, and what the recorded batch orders show."""
    import numpy as np

    from reglab.tables import markdown_table

    variants = [v for v in args.keras_variants.split(",") if v]
    unknown = sorted(set(variants) - set(KERAS_VARIANTS))
    if unknown:
        sys.exit(f"error: --keras-variants: {', '.join(unknown)} unknown; choose from {', '.join(KERAS_VARIANTS)}")
    if not keras_available(args.keras_python, args.keras_backend):
        print("keras: not installed (pip install -e '.[bench]'; the Keras comparison is skipped)\n")
        return
    seeds = spec["seeds"][: args.keras_seeds]
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.perf_counter()
    main_seconds, ran = None, []
    if main_sweep is None:  # no main side was timed: run the main job once (its numbers need no W&B)
        main_sweep = work / "compare-main"
        logger = [] if any(o.startswith("logger=") for o in main_job) else ["logger=csv"]
        command = [*main_job, *logger, f"hydra.sweep.dir={main_sweep}"]
        main_seconds = timed(command, {**env, "WANDB_DIR": str(work)}, work / "compare-main.log", ROOT)
        ran.append(command)
    fits = [m for m in main_job_members(main_sweep) if m["seed"] in seeds]
    for m in fits:  # the very splits the Keras fits get: same data, split, label noise, standardisation
        t = spec["transform"][str(m["seed"])]
        if not (
            np.allclose(m["transform"]["mean"], t["mean"], rtol=0, atol=1e-12)
            and np.allclose(m["transform"]["std"], t["std"], rtol=0, atol=1e-12)
        ):
            sys.exit(f"error: the main job's seed {m['seed']} trained on other inputs than the exported split")
    keras_spec = work / "keras_spec.json"
    keras_spec.write_text(json.dumps(spec | {"keras_seeds": len(seeds)}))
    keras_env = {**env, "KERAS_BACKEND": args.keras_backend}
    keras_seconds, version = {}, ""
    for variant in variants:
        log = work / f"keras-{variant}.log"
        command = [
            args.keras_python,
            str(Path(__file__).resolve()),
            "--spec",
            str(keras_spec),
            "--side",
            "keras_compare",
            "--variant",
            variant,
        ]
        keras_seconds[variant] = timed(command, keras_env, log, ROOT)
        ran.append([f"KERAS_BACKEND={args.keras_backend}", *command])
        for line in log.read_text().splitlines():
            if line.startswith("KERAS_FIT "):
                fits.append(json.loads(line.removeprefix("KERAS_FIT ")) | {"side": f"keras {variant}"})
            elif line.startswith("KERAS_VERSION "):
                version = line.removeprefix("KERAS_VERSION ")
    load_after = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    (work / "keras_compare.json").write_text(json.dumps(fits, indent=1))

    sides = ["reglab", *(f"keras {v}" for v in variants)]
    by = {(f["side"], f["model"]): [] for f in fits}
    for f in fits:
        by[(f["side"], f["model"])].append(f)
    models = [name for name, _ in spec["models"]]
    epochs = spec["epochs"]
    print(
        f"The main job beside the article's Keras code (Keras {version}), seeds {seeds}, {epochs} epochs, "
        f"batch {spec['batch_size']}, {spec['n_train']} training points; {time.perf_counter() - started:.0f} s "
        f"(Keras processes {', '.join(f'{v} {s:.0f} s' for v, s in keras_seconds.items())}"
        + (f"; main job {main_seconds:.0f} s" if main_seconds else "")
        + f"), load before={load_before} after={load_after}\n"
    )
    print("Keras fits: " + "; ".join(f"{v}: {d}" for v, d in KERAS_VARIANTS.items() if v in variants) + "\n")
    header = [
        "model",
        "side",
        "n",
        *(h.format(threshold=spec["threshold"]) for h, _, _ in COMPARED),
        "distinct epoch orders",
    ]
    rows = []
    for model in models:
        for side in sides:
            group = by.get((side, model), [])
            if not group:
                continue
            cells = [spread([f[key] for f in group], d) for _, key, d in COMPARED]
            if side == "reglab":
                orders = "—"
            else:
                distinct = sorted({f["distinct_orders"] for f in group})
                span = (distinct[0], distinct[-1]) if len(distinct) > 1 else distinct
                orders = f"{'–'.join(map(str, span))} of {group[0]['epochs_recorded']}"
            rows.append([model, side, len(group), *cells, orders])
    print("mean ± 95% t-interval (min–max) over the seeds:\n")
    print(markdown_table(header, rows) + "\n")

    rows = []
    base = "keras published"
    for model in models:
        for side in sides:
            if side == base or (side, model) not in by or (base, model) not in by:
                continue
            a, b = by[(side, model)], by[(base, model)]
            rows.append(
                [
                    model,
                    f"{side} − {base}",
                    *(welch([f[k] for f in a], [f[k] for f in b]) for k in ("train_acc", "val_acc", "gap")),
                ]
            )
    if rows:
        print("differences of means, ± Welch 95% interval (* where it excludes 0):\n")
        print(markdown_table(["model", "difference", "train acc", "val acc", "gap"], rows) + "\n")

    for side in sides[1:]:
        group = [f for f in fits if f["side"] == side]
        pairs = [
            len({f["digest"] for f in group if f["seed"] == s}) == 1
            for s in seeds
            if sum(f["seed"] == s for f in group) > 1
        ]
        like_first = sorted({f["epochs_like_first"] for f in group})
        print(
            f"batch order, {side}: epochs fed in epoch 1's order (epoch 1 included) per fit: "
            f"{'–'.join(map(str, like_first))} of {epochs}; the models of one seed fed the same "
            f"order sequence in {sum(pairs)} of {len(pairs)} seeds"
        )
    print(f"\nper-fit records: {work / 'keras_compare.json'}; the comparison's commands (from the repository root):")
    for command in ran:
        print("  " + " ".join(command).replace(f"{ROOT}/", "").replace(str(work), "<tmp>"))
    print()


def main() -> None:
    args = parse()
    if args.side == "profile":
        profile_side(json.loads(args.spec.read_text())["overrides"])
        return
    if args.side == "keras_compare":
        keras_compare_side(json.loads(args.spec.read_text()), args.variant)
        return
    if args.side:  # a child: one peer's fits, its accuracies on stdout
        spec = json.loads(args.spec.read_text())
        print("ACCURACY " + json.dumps(sklearn_side(spec) if args.side == "sklearn" else keras_side(spec)))
        return

    import importlib.util

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
    sides = [side for side in sides if side not in ("", "none")]  # --sides none: only the Keras comparison
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

    main_sweep = next((work / f"{side}-{args.repeat - 1}" for side in ("main_csv", "main") if side in sides), None)
    if sides:
        print_timings(args, spec, sides, commands, times, accuracy, report_written, load_before, load_after, logger)
        if keras_missing:
            print("keras: not installed (pip install -e '.[bench]'; goal 2 not measured)\n")
    if args.keras_seeds > 0:
        compare_with_keras(args, spec, work, env, main_sweep, main_job)
    if sides:
        print("commands (from the repository root):")
    for side in sides:
        shown = " ".join(commands[side][0]).replace(f"{ROOT}/", "").replace(str(work), "<tmp>")
        print(f"  {side}: {shown}" + (" hydra.sweep.dir=<tmp>" if side.startswith("main") else ""))
    print(f"work directory: {work}")


def print_timings(args, spec, sides, commands, times, accuracy, report_written, load_before, load_after, logger):
    from reglab.tables import markdown_table

    median = {s: statistics.median(t) for s, t in times.items()}
    print(
        f"epochs={spec['epochs']} seeds={spec['seeds']} training points={spec['n_train']} "
        f"threads={args.threads or 'env'} "
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
        status = "met" if ratio <= 1.0 else "not met"  # issue 27's goal 2 (issue 19 had 0.5)
        goals.append((f"1. main job / scikit-learn ({2 * len(spec['seeds'])} models each)", ratio, "≤ 1.0", status))
    if "main" in median and "keras" in median:
        ratio = median["keras"] / median["main"]
        goals.append(("2. Keras one seed / main job", ratio, "≥ 5", "met" if ratio >= 5 else "not met"))
    if "main" in median and "main_csv" in median:
        ratio = median["main"] / median["main_csv"]
        goals.append((f"5. main job {logger} / logger=csv", ratio, "≤ 1.15", "met" if ratio <= 1.15 else "not met"))
    if goals:
        print(markdown_table(["goal", "ratio", "target", "status"], goals) + "\n")


if __name__ == "__main__":
    main()
