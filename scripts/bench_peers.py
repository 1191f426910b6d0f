"""Benchmark 4: reglab beside scikit-learn's MLPClassifier on the same data and epochs.

    python scripts/bench_peers.py [--threads 1] [--epochs 300] [--quick]

The article's problem: moons with 100 training points (the split of a reglab run with seed s),
2 → 128 → 128 → 1 ReLU, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7), batch 32, L2 at several λ.
scikit-learn: `MLPClassifier(hidden_layer_sizes=(128, 128), alpha=2·32·λ, solver="adam",
batch_size=32)` (alpha converted with `reglab.science.conventions`, "sklearn_mlp"; its penalty is
divided by the actual batch size, so its last batch of 4 is penalised more), early stopping off
(`tol=0`), all epochs run. reglab: one single run per (λ, seed) (`reglab.train.train`, fit+test
time from metrics.json) and all of them as one vectorized sweep. Accuracy: the test split. Keras
is measured only where TensorFlow is installed (it is not a dependency).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = ["regularizer=l2", "data.n_samples=200", "data.split=[0.5,0.25,0.25]", "logger=none"]
QUIET = ["~callbacks.progress_bar", "trainer.enable_progress_bar=false"]  # no progress bar in this process


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lambdas", default="0,1e-4,1e-3,1e-2")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    return parser.parse_args()


def compose(run_dir: Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from reglab.train import CONFIG_DIR

    sweep_group = [] if "- sweep: default" in (ROOT / "configs" / "train.yaml").read_text() else ["+sweep=default"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose("train", overrides=[*overrides, *sweep_group], return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return cfg


def sklearn_fit(lam: float, seed: int, epochs: int) -> tuple[float, float]:
    """(seconds, test accuracy) of MLPClassifier on the split of reglab's run with this seed."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from reglab.lightning.datamodule import RegLabDataModule
    from reglab.science import conventions

    data = RegLabDataModule(name="moons", n_samples=200, split=(0.5, 0.25, 0.25), seed=seed)
    (x, y), (xt, yt) = data.split_arrays("train"), data.split_arrays("test")
    model = MLPClassifier(
        hidden_layer_sizes=(128, 128), alpha=conventions.from_reglab(lam, "l2", "sklearn_mlp", batch=32),
        solver="adam", batch_size=32, learning_rate_init=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
        max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, shuffle=True, random_state=seed,
    )  # fmt: skip
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return time.perf_counter() - started, float(model.score(xt, yt))


def keras_fit(lam: float, seed: int, epochs: int) -> tuple[float, float]:
    """(seconds, test accuracy) of the article's Keras model. Only runs where TensorFlow is installed
    (it is not here, so this function has not been run in this project's CI)."""
    from tensorflow import keras

    from reglab.lightning.datamodule import RegLabDataModule

    data = RegLabDataModule(name="moons", n_samples=200, split=(0.5, 0.25, 0.25), seed=seed)
    (x, y), (xt, yt) = data.split_arrays("train"), data.split_arrays("test")
    keras.utils.set_random_seed(seed)
    l2 = keras.regularizers.l2(lam)  # the same λ as reglab's (README, conventions)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(128, activation="relu", kernel_regularizer=l2),
         keras.layers.Dense(128, activation="relu", kernel_regularizer=l2), keras.layers.Dense(1, kernel_regularizer=l2)]
    )  # fmt: skip
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],  # on logits
    )
    started = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    elapsed = time.perf_counter() - started
    return elapsed, float(model.evaluate(xt, yt, verbose=0)[1])


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
    from reglab.sweep import train_vectorized
    from reglab.tables import markdown_table
    from reglab.train import train

    lambdas = [float(v) for v in args.lambdas.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    epochs = args.epochs
    if args.quick:
        lambdas, seeds, epochs = lambdas[:2], seeds[:1], 3
    work = Path(tempfile.mkdtemp(prefix="bench_peers_"))
    common = [*PROBLEM, *QUIET, f"trainer.max_epochs={epochs}"]
    train(compose(work / "warmup", [*PROBLEM, *QUIET, "trainer.max_epochs=1"]))  # one-off costs out of the timings

    rows, totals = [], {"sklearn": 0.0, "reglab": 0.0}
    for lam in lambdas:
        for seed in seeds:
            sk_time, sk_acc = sklearn_fit(lam, seed, epochs)
            run = train(
                compose(work / f"single-{lam}-{seed}", [*common, f"regularizer.strength={lam}", f"seed={seed}"])
            )
            rows.append((lam, seed, sk_time, sk_acc, run["wall_time_s"], run["metrics"]["test/acc"]))
            totals["sklearn"] += sk_time
            totals["reglab"] += run["wall_time_s"]
    grid = [f"regularizer.strength=[{','.join(map(str, lambdas))}]", f"seed=[{','.join(map(str, seeds))}]"]
    started = time.perf_counter()
    members = train_vectorized(compose(work / "vectorized", [*common, *grid, "sweep.vectorize=true"]))
    vectorized = time.perf_counter() - started
    accuracy = {(r["strength"], r["seed"]): r["metrics"]["test/acc"] for r in members}
    rows = [(*row, accuracy[(row[0], row[1])]) for row in rows]

    print(f"threads={torch.get_num_threads()} epochs={epochs} load={os.getloadavg()[0]:.2f}")
    header = ["λ", "seed", "sklearn s", "sklearn acc", "reglab s", "reglab acc", "reglab vectorized acc"]
    print(markdown_table(header, rows) + "\n")
    n = len(rows)
    summary = [
        ("scikit-learn MLPClassifier, one fit per model", n, totals["sklearn"], 1.0),
        ("reglab single runs (fit+test)", n, totals["reglab"], totals["reglab"] / totals["sklearn"]),
        ("reglab vectorized sweep (all models, end to end)", n, vectorized, vectorized / totals["sklearn"]),
    ]
    print(markdown_table(["trainer", "models", "total s", "× sklearn time"], summary) + "\n")
    if importlib.util.find_spec("tensorflow") is None:
        print("keras: not installed")
        return
    keras_rows = [(lam, seed, *keras_fit(lam, seed, epochs)) for lam in lambdas for seed in seeds]
    print(markdown_table(["λ", "seed", "keras s", "keras acc"], keras_rows) + "\n")


if __name__ == "__main__":
    main()
