"""Evaluate a trained run: `reglab-eval RUN_DIR [data=NAME] [data.KEY=VALUE ...] [seed=N]`.

On its own test split, or with overrides on the test split of another data set with the same inputs
(another seed, more noise, another generator), through the input transform the run fitted on its own
training split. Writes `eval.json` into RUN_DIR. Exit codes: 0 written, 2 bad arguments (one line).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import yaml
from omegaconf import OmegaConf

from reglab import rundir
from reglab.errors import EXIT_BAD_INPUT, one_line
from reglab.runs import load_run

if TYPE_CHECKING:
    from reglab.science.data import Task


def evaluate(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The metrics of the run in `run_dir` on the test split of its data with `overrides`."""
    import torch

    from reglab.science import datasets
    from reglab.science.metrics import prediction_metrics

    try:
        run = load_run(run_dir)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:  # torch.load of a truncated or foreign file
        raise ValueError(
            f"{Path(run_dir) / 'checkpoints' / 'last.ckpt'} is unreadable ({one_line(e).split('. ')[0]}); "
            "nothing in it was run: train the run again (force=true) or restore the file"
        ) from None
    data = OmegaConf.to_container(run.config.data, resolve=False)
    data = {k: v for k, v in data.items() if not str(k).startswith("_") and k not in ("batch_size", "seed")}  # type: ignore[union-attr]
    seed = int(run.record["seed"])
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep:
            raise ValueError(f"{override!r} is not KEY=VALUE")
        value = yaml.safe_load(text)
        if key == "data":  # another generator: keep only the arguments it takes
            data = {"name": value, "split": data["split"], "label_noise": data.get("label_noise", 0.0)}
        elif key == "seed":
            seed = int(value)
        elif key.startswith("data."):
            data[key.removeprefix("data.")] = value
        else:
            raise ValueError(f"{key} cannot be changed for an evaluation; use data=…, data.KEY=… or seed=…")
    splits = datasets.load(seed=seed, **data)  # type: ignore[arg-type]
    if run.encoding is not None and splits.rows is not None:  # a table: its rows as read, as `predict` takes them
        (x, y), task = _table_test_split(run, splits), cast("Task", run.task)
    else:
        raw = splits.x["test"].astype(np.float64) * splits.std + splits.mean  # undo this data set's transform
        if raw.shape[1] != len(run.mean):
            raise ValueError(
                f"data set {data['name']!r} has {raw.shape[1]} inputs; the run was trained on {len(run.mean)}"
            )
        x, y, task = run.transform(raw), splits.y["test"], splits.task
    with torch.no_grad():
        logits = run.model(torch.from_numpy(x))
    metrics = prediction_metrics(logits, torch.from_numpy(y), task)
    result: dict[str, Any] = {"run_dir": str(run_dir), "data": {**data, "seed": seed}, "split": "test"}
    result |= {"n": len(splits.y["test"]), "metrics": {f"test/{k}": float(v[0]) for k, v in metrics.items()}}
    rundir.atomic_write_text(Path(run_dir) / rundir.EVAL_JSON, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _table_test_split(run: Any, splits: Any) -> tuple[np.ndarray, np.ndarray]:
    """A table's test rows through the run's own fitted encoding, once (the table's own one-hot
    columns may differ: another file, other categories): the model's inputs, and the targets as
    it trained on them (class indices of its labels, or values in its standardised units)."""
    from reglab.science import files

    rows = splits.rows.iloc[splits.index["test"]]
    x = run.transform(rows[splits.encoding["columns"]])
    y = files.target_index(rows[splits.encoding["target"]], run.encoding)
    if run.task == "regression":
        y = (y - run.target_scale[0]) / run.target_scale[1]
    return x, y.astype(np.float32 if run.task == "regression" else np.int64)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="reglab-eval", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory")
    parser.add_argument("overrides", nargs="*", help="data=NAME, data.KEY=VALUE, seed=N")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.run_dir, args.overrides)
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result["metrics"].items())
    print(f"{args.run_dir} on {result['data']['name']} (seed {result['data']['seed']}, n={result['n']}): {shown}")


if __name__ == "__main__":
    main()
