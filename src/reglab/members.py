"""The members of a run, and what identifies a run: every run is a stack of K ≥ 1 members.

The members are the product of the list-valued keys among `MEMBER_KEYS`:

    reglab-train regularizer=l1 regularizer.strength=[0,1e-4,1e-3] seed=[0,1,2]   # K = 9
    reglab-train regularizer=l1 regularizer.strength=1e-3 seed=0                  # K = 1

Member k trains exactly as the K = 1 run with its λ and seed would. With no list the run
directory is `paths.output_dir`; with lists each member gets a run directory of the same format
below it, named as Hydra names a job by its overrides (`regularizer.strength=0.001,seed=0`).
Light: reads configs only, imports neither torch nor Lightning.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from reglab import rundir
from reglab.errors import ConfigError
from reglab.rundir import flatten
from reglab.tables import format_number

# Keys that may hold a list: the stacked members of one run (`data.fold`: the CV estimators' folds).
MEMBER_KEYS = ("regularizer.strength", "seed", "data.fold")
# Config keys (and the keys under them) that change no trained weight: a finished run is found
# again whatever they are, the report never tells runs apart by them, W&B never names a run by
# them, and Hydra leaves them out of a job's directory name (a test checks its `exclude_keys`).
NOT_TRAINING = (
    "name", "tags", "force", "retries", "cpu_threads", "paths", "logger", "report",
    "callbacks.progress_bar", "callbacks.metrics_history", "callbacks.model_checkpoint", "callbacks.best_checkpoint",
    "trainer.enable_progress_bar",
)  # fmt: skip
# Defaults-list choices that only set other keys (those keys count): never a key of the job's config.
CHOICES_ONLY = ("experiment", "hparams_search", "debug")


def trains(key: str) -> bool:
    """Whether the dotted config `key` can change what a run learns (it is not under NOT_TRAINING)."""
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_TRAINING)


def trained_config(cfg: DictConfig) -> dict[str, Any]:
    """The part of a config that decides what is trained: unresolved (no run paths), without the
    keys that change no result (`NOT_TRAINING`); for a file, `data.sha256`, its content's hash."""
    container = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=False))
    if isinstance(container.get("data"), dict) and container["data"].get("name") == "file":
        container["data"]["sha256"] = _file_hash(cfg.data)
    for key in NOT_TRAINING:
        *parents, leaf = key.split(".")
        node: Any = container
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return container


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a config trains, so a re-launch can tell a finished run from a changed one."""
    text = json.dumps(trained_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def identity_fields(member: Member) -> dict[str, Any]:
    """What metrics.json records of the config that trained the run, to refuse another one later."""
    return {
        "config_hash": member.config_hash,
        "config": trained_config(member.cfg),
        "config_yaml": member.config_yaml,
    }


def check_identity(members: list[Member], force: bool) -> None:
    """Refuse, in one line naming the differing keys, to train into a run directory that holds a
    run of another config: a run directory holds exactly what its config trained. Writes nothing."""
    for m in members:
        try:
            record = rundir.read_metrics_json(m.run_dir)
        except (OSError, ValueError):
            continue
        if force or record.get("config_hash") in (None, m.config_hash):
            continue
        ours, theirs = flatten(trained_config(m.cfg)), flatten(record.get("config") or {})
        keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
        raise ConfigError(
            f"{m.run_dir} holds a run of another config (it differs in {', '.join(keys[:5]) or 'its hash'}); "
            "retrain it there with force=true, or write to another directory"
        )


def restore_recorded_config(members: list[Member]) -> None:
    """After a refused re-launch of a single run: Hydra has already written the refused config into
    the run's .hydra/; put back the one its metrics.json says it trained."""
    for m in members:
        try:
            record = rundir.read_metrics_json(m.run_dir)
        except (OSError, ValueError):
            continue
        if record.get("config_yaml") and not m.values and record.get("config_hash") != m.config_hash:
            rundir.atomic_write_text(m.run_dir / ".hydra" / "config.yaml", record["config_yaml"])


@dataclass
class Member:
    values: dict[str, Any]  # its values of the listed keys ({} for a single run)
    cfg: DictConfig  # the config of its K = 1 run
    run_dir: Path
    config_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.config_hash = config_hash(self.cfg)

    @cached_property
    def config_yaml(self) -> str:
        """Its config as YAML, as .hydra/config.yaml and metrics.json hold it: dumped once, not three times."""
        return OmegaConf.to_yaml(self.cfg)

    @property
    def name(self) -> str:
        return job_name(self.values) or self.run_dir.name

    def finished(self) -> bool:
        """Completed or diverged before, with this very config."""
        if not rundir.is_finished(self.run_dir):
            return False
        return rundir.read_metrics_json(self.run_dir).get("config_hash") == self.config_hash


def job_name(values: dict[str, Any]) -> str:
    """`regularizer.strength=0.001,seed=0`: a member's values, as Hydra names a job by its overrides."""
    return ",".join(f"{key}={format_number(values[key])}" for key in sorted(values))


def member_axes(cfg: DictConfig) -> dict[str, list[Any]]:
    """The list-valued `MEMBER_KEYS` of `cfg` and their values."""
    axes: dict[str, list[Any]] = {}
    for key in MEMBER_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, (ListConfig, list)):
            if not value:
                raise ConfigError(f"{key}=[] is an empty list; give at least one value")
            axes[key] = list(value)
    return axes


def members_of(cfg: DictConfig) -> list[Member]:
    """The members of `cfg`: one per element of the product of the `MEMBER_KEYS` lists."""
    root = Path(cfg.paths.output_dir)
    axes = member_axes(cfg)
    if not axes:
        return [Member({}, cfg, root)]
    grid = [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]
    template, own = _member_template(cfg, list(axes))
    members = []
    for values in grid:
        name = job_name(values)
        member = pickle.loads(template)  # a tenth of the time OmegaConf takes to build a config: K can be 5,000
        for key, value in {**values, **dict.fromkeys(own, name), "paths.output_dir": str(root / name)}.items():
            OmegaConf.update(member, key, value, merge=False)
        members.append(Member(values, member, root / name))
    twice = sorted(n for n, times in Counter(m.name for m in members).items() if times > 1)  # 1e-3 is 0.001
    if twice:
        raise ConfigError(f"the lists give member {twice[0]} more than once; list each value once")
    return members


def _member_template(cfg: DictConfig, listed: list[str]) -> tuple[bytes, list[str]]:
    """What every member's config shares, pickled: `cfg` with its `${hydra:…}` values resolved now
    (members are written outside Hydra's job); and the keys that take the member's name (its W&B
    run's). Each member then sets its listed values, name and run directory (`paths.output_dir`)."""
    own: list[str] = []

    def fix(node: Any, path: str) -> Any:
        if path in listed:
            return None  # each member's own value (the list here would make every copy K long)
        if isinstance(node, dict):
            return {k: fix(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v, f"{path}.{i}") for i, v in enumerate(node)]
        if isinstance(node, str) and "${hydra:" in node:
            if path.startswith("logger.") and path.endswith(".name"):
                own.append(path)
            return "" if path == "paths.output_dir" else OmegaConf.select(cfg, path)
        return node

    template = OmegaConf.create(fix(OmegaConf.to_container(cfg, resolve=False), ""))
    return pickle.dumps(template), own


def regularizer_name(cfg: DictConfig) -> str:
    """ "l1" for `regularizer._target_: reglab.science.regularizers.L1`: its config name, read
    without importing torch (`reglab.science.conventions.REGULARIZER_NAMES`)."""
    from reglab.science.conventions import REGULARIZER_NAMES

    target = str(cfg.regularizer._target_)
    module, _, cls = target.rpartition(".")
    if module != "reglab.science.regularizers" or cls not in REGULARIZER_NAMES:
        known = ", ".join(REGULARIZER_NAMES.values())
        raise ConfigError(f"regularizer._target_={target!r} is not a regularizer; choose regularizer= one of: {known}")
    return REGULARIZER_NAMES[cls]


def _file_hash(data: DictConfig) -> str:
    """The sha256 of the file(s) `data=file` reads; the error a missing file gives is said when it is read."""
    from reglab.science import files

    try:
        return ",".join(f["sha256"] for f in files.facts(data.get("path"), data.get("target")))
    except ValueError:
        return "unreadable"


def task_of(cfg: DictConfig) -> str:
    from reglab.science import datasets

    return datasets.task_of(cfg.data.name, cfg.data)


def dataset_name(data: DictConfig) -> str:
    """The data set's name in records and reports: a file's own name (`iris.csv`), "memory" for data from Python."""
    from reglab.science import files

    if data.name != "file":
        return str(data.name)
    path = str(data.get("path") or files.EXAMPLE)
    return "memory" if path.startswith(files.MEMORY) else Path(path).name


def identity(cfg: DictConfig) -> dict[str, Any]:
    """What a run is, read from its (K = 1) config alone: enough for a report even if nothing was built."""
    return {
        "name": cfg.name,
        "dataset": dataset_name(cfg.data),
        "task": task_of(cfg),
        "regularizer": regularizer_name(cfg),
        "strength": float(cfg.regularizer.strength),
        "seed": int(cfg.seed),
        "optimizer": str(cfg.optimizer._target_).rsplit(".", 1)[-1],
        "lr": float(cfg.optimizer.lr),
        "batch_size": cfg.data.batch_size,
    }
