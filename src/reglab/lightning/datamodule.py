"""The data of K members as tensors on the training device; one item per epoch: the sample orders.

Members that share a seed (and a fold, `data.fold`) share a data set (generated once), split and
batch order; member k's data are exactly those its K = 1 run with its seed and fold would see.
Folds of unequal size are padded to the longest with rows of weight 0 at the end (`weights`), which
only ever fill an epoch's last, partial batch: members whose epochs take the same number of steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from reglab.science import data, datasets
from reglab.science.conventions import require_int, steps_per_epoch


class EpochOrders:
    """The training "loader": one item per epoch, the sample order of each distinct seed, [S, n]: a
    function of (seed, epoch) only, so a resumed run sees the same batches as an uninterrupted one.

    Lightning calls `sampler.set_epoch(epoch)` before every epoch, as for a DistributedSampler.
    `sizes` (one per seed, each ≤ n): a seed's order of its own rows, then its padding rows after them."""

    def __init__(self, n: int, shuffle: bool, seeds: Sequence[int], sizes: Sequence[int] | None = None) -> None:
        self.n, self.shuffle, self.seeds, self.epoch = n, shuffle, list(seeds), 0
        self.sizes = list(sizes) if sizes is not None else [n] * len(self.seeds)
        self.sampler = self
        self.batch_sampler = None  # read by Lightning's checks for DataLoader-like objects

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield torch.stack([self._order(seed, size) for seed, size in zip(self.seeds, self.sizes)])

    def _order(self, seed: int, size: int) -> Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + self.epoch))
        return order if size == self.n else torch.cat([order, torch.arange(size, self.n)])


def check_split(split: object) -> None:
    """Refuse a `data.split` not three fractions [train, val, test] >= 0, summing to <= 1, train and val > 0."""
    if not isinstance(split, Sequence) or isinstance(split, str):
        raise ValueError(f"data.split={split!r} must be three fractions [train, val, test]")
    if not (len(split) == 3 and all(datasets.is_number(f) for f in split)):
        raise ValueError(f"data.split={list(split)} must be three fractions [train, val, test]")
    fractions = list(split)
    if not (all(f >= 0 for f in fractions) and sum(fractions) <= 1 + 1e-9):
        raise ValueError(f"data.split={fractions} must be fractions >= 0 that sum to at most 1")
    if not fractions[0] > 0:
        raise ValueError(f"data.split={fractions} leaves no training set: the train fraction must be > 0")
    if not fractions[1] > 0:
        raise ValueError(f"data.split={fractions} leaves no validation set: the val fraction must be > 0")


def check_label_noise(label_noise: object, name: str, task: str | None = None) -> None:
    """Refuse a `data.label_noise` outside [0, 1), or any on a regression data set (`task`, where known)."""
    if not datasets.is_number(label_noise):
        raise ValueError(f"data.label_noise={label_noise!r} is not a number")
    value = float(label_noise)  # type: ignore[arg-type]
    if not 0 <= value < 1:
        raise ValueError(f"data.label_noise={value} must be in [0, 1)")
    if value != 0 and (task or datasets.TASKS.get(name)) == "regression":  # an unknown name: datasets.load says
        raise ValueError(f"data.label_noise={value} needs class labels; data set {name!r} is a regression")


class RegLabDataModule(L.LightningDataModule):
    """One data set from `reglab.science.datasets`, split, standardised and moved to the device,
    for members with the seeds `seed` (an int for every member, or one per member) and the folds
    `fold` (likewise; None: `split`). `tensors[split]` holds the distinct (seed, fold) splits stacked,
    x [S, n, d] and y [S, n]; `inputs(split)` per member. Where the splits differ in size, `weights[split]`
    [S, n] is 1 on a split's rows and 0 on the padding after them (else there is no entry)."""

    def __init__(
        self,
        name: str,
        split: Sequence[float] = (0.6, 0.2, 0.2),
        batch_size: int | None = 32,
        label_noise: float = 0.0,
        seed: int | Sequence[int] = 0,
        fold: int | Sequence[int] | None = None,
        **dataset_kwargs,
    ) -> None:
        super().__init__()
        check_split(split)
        check_label_noise(label_noise, name, None if name == "file" else datasets.TASKS.get(name))
        if batch_size is not None:
            require_int(batch_size, "data.batch_size", allowed=", or null for full batch")
        self.name, self.split, self.label_noise, self.dataset_kwargs = name, tuple(split), label_noise, dataset_kwargs
        self.seeds = [seed] if isinstance(seed, int) else [int(s) for s in seed]
        folds = list(fold) if isinstance(fold, Sequence) else [fold] * len(self.seeds)
        self.keys = list(zip(self.seeds, folds, strict=True))  # (seed, fold) of each member
        self.distinct = list(dict.fromkeys(self.keys))
        self.data = {key: datasets.load(name, self.split, label_noise, *key, **dataset_kwargs) for key in self.distinct}
        for (s, f), splits in self.data.items():
            check_label_noise(label_noise, name, splits.task)
            if not all(np.isfinite(x).all() for x in splits.x.values()):
                what = f"seed {s}" + (f", fold {f}" if f is not None else "")
                raise ValueError(f"data set {name!r} with {what} and {dataset_kwargs} has non-finite inputs; check it")
        self.sizes = {s: [len(self.data[d].y[s]) for d in self.distinct] for s in data.SPLIT_NAMES}
        datasets.check_split_sizes({s: min(n) for s, n in self.sizes.items()}, self.split)
        steps = {steps_per_epoch(n, batch_size) for n in self.sizes["train"]}
        if len(steps) > 1:
            raise ValueError(
                f"data.fold: training splits of {sorted(set(self.sizes['train']))} rows take {sorted(steps)} steps "
                f"an epoch in batches of {batch_size}: members of one stack need the same number of steps"
            )
        self.n_train = max(self.sizes["train"])
        self.batch_size = min(batch_size or self.n_train, self.n_train)
        self.member_data = torch.tensor([self.distinct.index(key) for key in self.keys])
        self.distinct_rows = torch.arange(len(self.distinct))[:, None]  # indexes the epoch's orders, [S, 1]
        self.tensors: dict[str, tuple[Tensor, Tensor]] = {}
        self.weights: dict[str, Tensor] = {}
        for part, sizes in self.sizes.items():
            self.tensors[part] = self._stacked(part, max(sizes))
            if min(sizes) < max(sizes):
                self.weights[part] = (torch.arange(max(sizes)) < torch.tensor(sizes)[:, None]).float()
        # Splits that are the training rows themselves (the plain estimator's val and test): evaluated as train
        same = lambda d, s: np.array_equal(d.x[s], d.x["train"]) and np.array_equal(d.y[s], d.y["train"])  # noqa: E731
        self.same_as_train = {s for s in data.SPLIT_NAMES[1:] if all(same(d, s) for d in self.data.values())}

    def _stacked(self, split: str, n: int) -> tuple[Tensor, Tensor]:
        """The distinct splits' x [S, n, d] and y [S, n], each padded with zeros to n rows; targets in the
        dtype the loss reads (binary labels as floats for BCE), converted once, not every step."""
        target = torch.float32 if self.task == "binary" else None
        x = [torch.from_numpy(self.data[d].x[split]) for d in self.distinct]
        y = [torch.from_numpy(self.data[d].y[split]) for d in self.distinct]
        x = [torch.cat([a, a.new_zeros(n - len(a), *a.shape[1:])]) if len(a) < n else a for a in x]
        y = [torch.cat([a, a.new_zeros(n - len(a))]) if len(a) < n else a for a in y]
        return torch.stack(x), torch.stack(y).to(target)

    @property
    def task(self) -> data.Task:
        return self.data[self.distinct[0]].task

    @property
    def in_features(self) -> int:
        return self.tensors["train"][0].shape[-1]

    @property
    def out_features(self) -> int:
        n_classes = self.data[self.distinct[0]].n_classes
        return n_classes if self.task == "multiclass" else 1

    def member(self, k: int) -> data.Splits:
        """Member k's splits as NumPy arrays (standardised), with the data set's facts."""
        return self.data[self.keys[k]]

    def to(self, device: torch.device) -> None:
        self.tensors = {s: (x.to(device), y.to(device)) for s, (x, y) in self.tensors.items()}
        self.weights = {s: w.to(device) for s, w in self.weights.items()}
        self.member_data, self.distinct_rows = self.member_data.to(device), self.distinct_rows.to(device)

    def per_member(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """[S, n, …] tensors of the distinct seeds → shared [n, …] (one seed) or per member [K, n, …]
        (as they are, not gathered again, where each member has a seed of its own)."""
        if len(self.distinct) == 1:
            return tuple(t[0] for t in tensors)
        if self.keys == self.distinct:
            return tensors
        return tuple(t[self.member_data] for t in tensors)

    def inputs(self, split: str) -> tuple[Tensor, Tensor]:
        x, y = self.per_member(*self.tensors[split])
        return x, y

    def weight(self, split: str) -> Tensor | None:
        """Each member's row weights on `split`, [K, n] (0: padding), or None where no split is padded."""
        return self.per_member(self.weights[split])[0] if split in self.weights else None

    def train_dataloader(self) -> EpochOrders:
        if self.trainer is not None:
            self.to(self.trainer.strategy.root_device)
        # A full batch is never shuffled: the order would change nothing but float rounding.
        seeds = [s for s, _ in self.distinct]
        return EpochOrders(self.n_train, self.batch_size < self.n_train, seeds, self.sizes["train"])

    def split_arrays(self, split: str, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return self.member(k).x[split], self.member(k).y[split]
