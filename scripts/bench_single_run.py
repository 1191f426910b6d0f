"""Benchmark 1: one reglab run against a hand-written PyTorch loop doing the same steps.

    python scripts/bench_single_run.py [--epochs 50] [--threads 1] [--repeat 3] [--quick]

Same data (the run's own `RegLabDataModule` tensors), model (seeded `MLP`, 2 → 128 → 128 → 1),
optimizer (Adam, Keras' eps) and mini-batch order (`EpochPermutation`), at batch 32 and full batch.
The raw loop is timed twice: training steps only, and steps plus what reglab does every epoch
(forward passes over the train and validation splits for their metrics). reglab is timed as
`reglab.train.train` (in this process, imports done): `fit+test` is metrics.json's wall_time_s,
`total` adds building the Trainer and writing the run directory. Every timing is the best of
`--repeat`, sides interleaved. The final weights of both sides are compared to show the steps match.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="toy size, for the smoke test")
    return parser.parse_args()


def compose(run_dir: Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from reglab.train import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return cfg


def reglab_run(run_dir: Path, overrides: list[str]) -> tuple[float, float, dict]:
    """(total seconds, fit+test seconds, final state_dict) of `reglab.train.train`."""
    import torch

    from reglab.train import train

    cfg = compose(run_dir, overrides)
    started = time.perf_counter()
    record = train(cfg)
    total = time.perf_counter() - started
    weights = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return total, record["wall_time_s"], {k.removeprefix("model."): v for k, v in weights.items()}


def vectorized_run(run_dir: Path, overrides: list[str]) -> tuple[float, dict]:
    """(fit+test seconds, final state_dict) of the same run as a vectorized sweep of one member."""
    import torch

    from reglab.sweep import train_vectorized

    sweep_group = [] if "- sweep: default" in (ROOT / "configs" / "train.yaml").read_text() else ["+sweep=default"]
    (record,) = train_vectorized(compose(run_dir, [*overrides, *sweep_group, "sweep.vectorize=true"]))
    member = next(p for p in run_dir.iterdir() if p.name.startswith("regularizer.strength="))
    weights = torch.load(member / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return record["wall_time_s"], {k.removeprefix("model."): v for k, v in weights.items()}


def raw_loop(epochs: int, batch_size: int | None, evaluate: bool, n_samples: int) -> tuple[float, dict]:
    """The same run by hand: (seconds, final state_dict)."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    from reglab.lightning.datamodule import EpochPermutation, RegLabDataModule
    from reglab.science.model import MLP

    L.seed_everything(0, verbose=False)
    data = RegLabDataModule(name="moons", n_samples=n_samples, batch_size=batch_size, seed=0)
    model = MLP(2, 1, [128, 128])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    (x, y), (xv, yv) = data.tensors["train"], data.tensors["val"]
    batch = batch_size or len(y)
    order = EpochPermutation(len(y), batch < len(y), seed=0)
    started = time.perf_counter()
    for epoch in range(epochs):
        order.set_epoch(epoch)
        idx = order.indices()
        for part in idx.split(batch) if idx is not None else torch.arange(len(y)).split(batch):
            loss = F.binary_cross_entropy_with_logits(model(x[part]).squeeze(-1), y[part].float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if evaluate:
            with torch.no_grad():
                for xs, ys in ((x, y), (xv, yv)):
                    logits = model(xs).squeeze(-1)
                    F.binary_cross_entropy_with_logits(logits, ys.float()).item()
                    ((logits > 0).long() == ys).float().mean().item()
    return time.perf_counter() - started, {k: v.detach().clone() for k, v in model.state_dict().items()}


def main() -> None:
    args = parse()
    import torch

    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # NumPy's BLAS too (scikit-learn)
    sys.path.insert(0, str(ROOT))
    import logging

    import lightning  # noqa: F401 (before quietening its logger: importing it sets the level)

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    from reglab.tables import markdown_table

    epochs, repeat, n_samples = (2, 1, 200) if args.quick else (args.epochs, args.repeat, 1000)
    base = [
        "logger=none",
        "~callbacks.progress_bar",
        "trainer.enable_progress_bar=false",
        f"trainer.max_epochs={epochs}",
    ]
    base += [f"data.n_samples={n_samples}"]
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench_single_"))
    raw_loop(1, 32, False, n_samples)  # warm-up: first calls pay one-off costs
    reglab_run(work / "warmup", [*base, "trainer.max_epochs=1"])
    for label, batch in (("32", 32), ("full", None)):
        batch_override = f"data.batch_size={batch if batch else 'null'}"
        best: dict[str, float] = {}
        for r in range(repeat):
            total, fit, ours = reglab_run(work / f"{label}-{r}", [*base, batch_override])
            vectorized, stacked = vectorized_run(work / f"{label}-{r}-k1", [*base, batch_override])
            steps, theirs = raw_loop(epochs, batch, False, n_samples)
            with_eval, _ = raw_loop(epochs, batch, True, n_samples)
            timings = (("total", total), ("fit", fit), ("k1", vectorized), ("raw", steps), ("raw_eval", with_eval))
            for key, value in timings:
                best[key] = min(best.get(key, float("inf")), value)
        gap = max(
            max((ours[k] - theirs[k]).abs().max().item(), (stacked[k] - theirs[k]).abs().max().item()) for k in theirs
        )
        steps_per_epoch = -(-int(n_samples * 0.6) // (batch or 10**9))
        rows.append(
            (label, epochs * steps_per_epoch, best["raw"], best["raw_eval"], best["fit"], best["total"], best["k1"],
             best["fit"] / best["raw_eval"], best["total"] / best["raw_eval"], best["k1"] / best["raw_eval"], gap)
        )  # fmt: skip
    header = ["batch", "steps", "raw steps s", "raw+eval s", "reglab fit+test s", "reglab total s",
              "K=1 fit+test s", "fit/raw+eval", "total/raw+eval", "K=1/raw+eval", "max |Δw|"]  # fmt: skip
    print(f"threads={torch.get_num_threads()} epochs={epochs} load={os.getloadavg()[0]:.2f}")
    print(markdown_table(header, rows) + "\n")


if __name__ == "__main__":
    main()
