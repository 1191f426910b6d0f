"""Run directories as data: find, read and group finished runs; rebuild a run's model.

Reads only the files a run wrote (`reglab.rundir`), checkpoints with `weights_only=True`: nothing in a run
directory is executed. Used by the report and the figures; imports neither them nor Lightning.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from reglab import rundir
from reglab.errors import one_line
from reglab.members import trains
from reglab.rundir import flatten
from reglab.science.conventions import REGULARIZER_ORDER
from reglab.tables import format_number, score_key

FINISHED = (rundir.COMPLETED, rundir.FAILED, rundir.DIVERGED)
# Regularizers whose λ is unused: their runs are one baseline, drawn and averaged at λ = 0.
STRENGTH_UNUSED = ("none",)


class ReportError(Exception):
    """Nothing to report: said in one line, never as a traceback."""


@dataclass
class Run:
    """One finished run directory and its metrics.json record."""

    path: Path
    name: str  # relative to the reported directory
    record: dict[str, Any]

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def regularizer(self) -> str:
        return self.record["regularizer"]

    @property
    def strength(self) -> float:
        """λ as recorded."""
        return float(self.record["strength"])

    @property
    def lam(self) -> float:
        """λ for grouping and plotting: 0 where the regularizer does not use it."""
        return 0.0 if self.regularizer in STRENGTH_UNUSED else self.strength

    @property
    def seed(self) -> int:
        return int(self.record["seed"])

    @property
    def fold(self) -> Any:
        """The fold it trained on (`data.fold`, the CV estimators' runs), or None: folds are averaged like seeds."""
        return self.flat_config.get("data.fold")

    @property
    def dataset(self) -> str:
        return self.record["dataset"]

    @property
    def task(self) -> str:
        return self.record["task"]

    @property
    def score(self) -> str:
        """The metric a model is judged by: accuracy, or R² for a regression."""
        return score_key(self.task).removeprefix("val/")

    def metric(self, key: str) -> float:
        value = self.record.get("metrics", {}).get(key)
        return math.nan if value is None else float(value)

    @cached_property
    def plain_config(self) -> dict[str, Any]:
        """.hydra/config.yaml as plain data, unresolved (`rundir.read_config`)."""
        return rundir.read_config(self.path / ".hydra" / "config.yaml")

    @cached_property
    def config(self) -> DictConfig:
        return OmegaConf.create(self.plain_config)

    @cached_property
    def flat_config(self) -> dict[str, Any]:
        """The config as {"dotted.key": value}, unresolved: what tables and comparisons of runs read."""
        return flatten(self.plain_config)

    @property
    def sparsity_threshold(self) -> float:
        return float(self.config.get("sparsity_threshold", math.nan))


@dataclass
class Found:
    runs: list[Run] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def strength_cell(regularizer: str, lam: float) -> str:
    """λ as a table shows it: "—" for a regularizer that does not use it."""
    return "—" if regularizer in STRENGTH_UNUSED else format_number(lam)


def run_order(run: Run) -> tuple:
    reg = run.regularizer
    rank = REGULARIZER_ORDER.index(reg) if reg in REGULARIZER_ORDER else len(REGULARIZER_ORDER)
    return (run.dataset, rank, reg, run.lam, run.seed, run.name)


def read_run(run_dir: Path, name: str) -> Run:
    """The run in `run_dir`; ValueError (with the reason) if it has no finished metrics.json."""
    try:
        record = rundir.read_metrics_json(run_dir)
    except FileNotFoundError:
        raise ValueError("no metrics.json (still running, or stopped before the end)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"metrics.json is unreadable ({one_line(e, with_type=True)})") from None
    if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
        raise ValueError("metrics.json holds no metrics record")
    if record.get("status") not in FINISHED:
        raise ValueError(f"status {record.get('status')!r} is not one of {', '.join(FINISHED)}")
    missing = [k for k in ("regularizer", "strength", "seed", "dataset", "task") if record.get(k) is None]
    if missing:
        raise ValueError(f"metrics.json lacks {', '.join(missing)}")
    run = Run(run_dir, name, record)
    try:
        run.plain_config  # noqa: B018 (read now, so that a broken config is reported here, in one line)
    except Exception as e:
        raise ValueError(f".hydra/config.yaml is unreadable ({one_line(e, with_type=True)})") from None
    return run


def find_runs(directory: Path) -> Found:
    """Every run directory under `directory` (itself included), with a warning for each incomplete one."""
    found = Found()
    run_dirs = sorted({p.parent.parent for p in directory.rglob("config.yaml") if p.parent.name == ".hydra"})
    for run_dir in run_dirs:
        name = directory.name if run_dir == directory else str(run_dir.relative_to(directory))
        try:
            found.runs.append(read_run(run_dir, name))
        except ValueError as e:
            warn(f"skipped {name}: {e}")
            found.incomplete.append(name)
    found.runs.sort(key=run_order)
    return found


def config_difference(a: Run, b: Run) -> list[str]:
    """The config keys whose values differ between two runs, leaving out `reglab.members.NOT_TRAINING`."""
    fa, fb = a.flat_config, b.flat_config
    keys = {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
    return sorted(k for k in keys if trains(k))


def seed_groups(runs: Sequence[Run]) -> dict[tuple[str, float], list[Run]]:
    """Completed runs by (regularizer, λ), in report order: the runs a mean over seeds is taken of. Of runs
    that differ only in an unused λ, one per seed is kept; other runs with the same (regularizer, λ, seed)
    are averaged together, with a warning naming what differs."""
    groups: dict[tuple[str, float], list[Run]] = {}
    mixed: dict[tuple[str, float, int], set[str]] = {}
    for run in sorted(runs, key=run_order):
        if run.status != rundir.COMPLETED:
            continue
        group = groups.setdefault((run.regularizer, run.lam), [])
        twins = [r for r in group if (r.seed, r.fold) == (run.seed, run.fold)]
        differences = {k for twin in twins for k in config_difference(twin, run)}
        if twins and run.regularizer in STRENGTH_UNUSED and differences <= {"regularizer.strength"}:
            continue
        if twins:
            mixed.setdefault((run.regularizer, run.lam, run.seed), set()).update(differences)
        group.append(run)
    for (reg, lam, seed), keys in mixed.items():
        n = sum(r.seed == seed for r in groups[(reg, lam)])
        how = f"differ in {', '.join(sorted(keys))}" if keys else "have the same config (one run copied twice?)"
        warn(f"{n} runs of {reg} at λ={format_number(lam)}, seed {seed} {how}; they are averaged together like seeds")
    return groups


def values(runs: Sequence[Run], key: str) -> np.ndarray:
    return np.array([run.metric(key) for run in runs], dtype=float)


def mean_ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of its `level` confidence interval) over the finite values of `x`: Student t
    with n − 1 degrees of freedom, mean ± t·s/√n. The half-width is NaN for fewer than 2 values."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) == 1:
        return float(x[0]), math.nan
    t = float(stats.t.ppf(0.5 + level / 2, len(x) - 1))
    return float(x.mean()), t * float(x.std(ddof=1)) / math.sqrt(len(x))


def best_strengths(groups: dict[tuple[str, float], list[Run]], key: str) -> dict[str, float]:
    """Per regularizer that uses λ, the λ of the highest mean `key` (the "sweet spot")."""
    best: dict[str, tuple[float, float]] = {}
    for (reg, lam), runs in groups.items():
        mean = float(np.nanmean(values(runs, key))) if np.isfinite(values(runs, key)).any() else -math.inf
        if reg not in STRENGTH_UNUSED and (reg not in best or mean > best[reg][1]):
            best[reg] = (lam, mean)
    return {reg: lam for reg, (lam, _) in best.items()}


def load_model(run: Run, checkpoint: str = "last") -> Any:
    """The run's trained `MLP` (K = 1, eval mode) from checkpoints/<checkpoint>.ckpt ("last" or "best")."""
    from reglab import checkpoint as checkpoints

    path = run.path / "checkpoints" / f"{checkpoint}.ckpt"
    if checkpoint not in ("last", "best") or not path.is_file():
        held = sorted(p.stem for p in (run.path / "checkpoints").glob("*.ckpt"))
        raise FileNotFoundError(f"{path} does not exist; this run holds: {', '.join(held) or 'no checkpoint'}")
    return checkpoints.model(checkpoints.read(path))


def load_splits(run: Run) -> Any:
    """The run's data set, split and standardised as it trained on it (`reglab.science.datasets.Splits`)."""
    from reglab.science import datasets

    return datasets.load_splits(run.config.data, int(run.seed))


@dataclass
class TrainedRun:
    """A finished run's K = 1 model (eval mode), input transform, config and metrics.json record (`load_run`)."""

    model: Any
    mean: np.ndarray
    std: np.ndarray
    config: DictConfig
    record: dict[str, Any]
    encoding: dict[str, Any] | None = None  # a table's columns, categories and class labels (data=file)
    target_scale: tuple[float, float] = (0.0, 1.0)  # a regression's target mean and std on the training split
    best: TrainedRun | None = None  # trained in memory (`reglab.api.train_in_memory`): at its best weights, if kept

    @classmethod
    def of(cls, model: Any, config: DictConfig, record: dict[str, Any]) -> TrainedRun:
        """The trained run of a K = 1 `model` with its config and metrics.json record (its input transform)."""
        transform = record["input_transform"]
        scale = (float(transform.get("target_mean", 0.0)), float(transform.get("target_std", 1.0)))
        mean, std = np.array(transform["mean"]), np.array(transform["std"])
        return cls(model, mean, std, config, record, transform.get("encoding"), scale)

    @property
    def task(self) -> str:
        return self.record["task"]

    def transform(self, x: Any) -> np.ndarray:
        """Raw inputs (for a table: rows of its columns, or a DataFrame, categories as written) →
        the standardised inputs the model was trained on."""
        if self.encoding is not None:
            from reglab.science.files import encode

            x = encode(x, self.encoding)
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def _outputs(self, x: Any) -> np.ndarray:
        """The model's outputs on raw inputs: logits, or a regression's standardised value ([n, out])."""
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(self.transform(x)))[0].numpy()

    def predict_proba(self, x: Any) -> np.ndarray:
        """On raw inputs, a classifier's class probabilities, [n, C] (binary: P(class 0), P(class 1)),
        columns in the order of `classes` (scikit-learn's `predict_proba`)."""
        import torch

        if self.task == "regression":
            raise AttributeError("a regression has no predict_proba; predict gives its values")
        out = torch.from_numpy(self._outputs(x))
        if self.task == "binary":
            p = torch.sigmoid(out[:, 0].double())
            return torch.stack([1 - p, p], 1).numpy()
        return torch.softmax(out.double(), -1).numpy()

    def predict(self, x: Any) -> np.ndarray:
        """On raw inputs, as scikit-learn's `predict`: the predicted class as the data labelled it (a
        file's own labels, else 0..C-1), or a regression's value in the target's own units ([n])."""
        if self.task == "regression":
            return self._outputs(x)[:, 0].astype(np.float64) * self.target_scale[1] + self.target_scale[0]
        index = self.predict_proba(x).argmax(-1)
        return np.asarray(self.classes)[index]

    predict_labels = predict  # its name before `predict` followed scikit-learn's convention

    @property
    def classes(self) -> list:
        """A classifier's labels by class index: a file's own, else 0..C-1."""
        classes = (self.encoding or {}).get("classes")
        return list(classes) if classes is not None else list(range(max(2, int(self.model.out_features))))


def load_run(run_dir: str | Path, checkpoint: str = "last") -> TrainedRun:
    """The trained model of a finished run directory, its fitted input transform and its config.
    `checkpoint`: "last" (the final weights) or "best" (callbacks=best_checkpoint)."""
    run = read_run(Path(run_dir), Path(run_dir).name)
    record = run.record
    if record.get("input_transform") is None:  # written by a reglab before the transform was recorded: fit it again
        splits = load_splits(run)
        record = {**record, "input_transform": {"mean": splits.mean.tolist(), "std": splits.std.tolist()}}
    return TrainedRun.of(load_model(run, checkpoint), run.config, record)


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """The config keys whose values differ between the runs, leaving out `reglab.members.NOT_TRAINING`."""
    flats = [r.flat_config for r in runs]
    keys = {k for flat in flats for k in flat}
    varying = {k for k in keys if len({repr(flat.get(k)) for flat in flats}) > 1}
    return sorted(k for k in varying if trains(k))


def study_keys(runs: Sequence[Run]) -> list[str]:
    """The keys that split `runs` into studies: every key that varies (`varying_keys`) but the seed and λ.
    A key of the `regularizer` or `data` group counts only where it varies within one regularizer or
    data set: `regularizer.l1_ratio` differs between elastic net and L1 by design."""
    flats = [r.flat_config for r in runs]
    keys = []
    for key in varying_keys(runs):
        if key in ("seed", "regularizer.strength", "data.fold") or key.endswith("_target_"):
            continue
        group = key.split(".")[0]
        if group in ("regularizer", "data"):
            choices = [r.regularizer if group == "regularizer" else r.dataset for r in runs]
            pairs = {(choice, repr(flat.get(key))) for choice, flat in zip(choices, flats)}
            if len(pairs) == len(set(choices)):  # one value per regularizer (or data set)
                continue
        keys.append(key)
    return keys


def studies(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """`runs` split into studies (runs that differ only in regularizer, λ and seed), in order, by label:
    the data set, then every other `study_keys` value (`moons, optimizer.lr=0.01`)."""
    keys = study_keys(runs)
    out: dict[str, list[Run]] = {}
    for run in runs:
        flat = run.flat_config
        label = ", ".join([run.dataset, *(f"{k}={_value(flat.get(k))}" for k in keys if not k.startswith("data."))])
        data = [f"{k}={_value(flat.get(k))}" for k in keys if k.startswith("data.")]
        out.setdefault(label + (f" ({', '.join(data)})" if data else ""), []).append(run)
    return out


def _value(value: Any) -> str:
    """A config value in a study's label: `0.01`, a list without spaces (`model.hidden=[16,16]`)."""
    return format_number(value).replace(" ", "")


def results_table(directory: str | Path) -> Any:
    """A pandas DataFrame, one row per run under `directory`: the `varying_keys`, status, final metrics, run_dir."""
    import pandas as pd

    runs = find_runs(Path(directory)).runs
    keys = varying_keys(runs)
    rows = []
    for run in runs:
        flat = run.flat_config
        rows.append(
            {k: flat.get(k) for k in keys}
            | {"regularizer": run.regularizer, "strength": run.strength, "seed": run.seed, "status": run.status}
            | run.record.get("metrics", {})
            | {"run_dir": str(run.path)}
        )
    return pd.DataFrame(rows)
