"""The data as tensors on the training device, served as index-sliced mini-batches."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from reglab.science import datasets


class EpochPermutation:
    """Sample order for one epoch, a function of (seed, epoch) only, so a resumed run sees
    the same batches as an uninterrupted one. Lightning calls `set_epoch` like it does for
    a `DistributedSampler`."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor | None:
        if not self.shuffle:
            return None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=generator)


class IndexBatches:
    """Mini-batches `(x[idx], y[idx])` of tensors that already live on the device: no
    per-sample collation, no host-to-device copy per step."""

    def __init__(self, x: Tensor, y: Tensor, batch_size: int | None, shuffle: bool, seed: int) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size or len(y)
        self.sampler = EpochPermutation(len(y), shuffle and self.batch_size < len(y), seed)
        self.batch_sampler = None  # read by Lightning's checks for DataLoader-like objects

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.sampler.indices()
        if order is None:
            for start in range(0, len(self.y), self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            return
        order = order.to(self.x.device)
        for idx in order.split(self.batch_size):
            yield self.x[idx], self.y[idx]


class RegLabDataModule(L.LightningDataModule):
    """One data set from `reglab.science.datasets`, split, standardised and moved to the device.

    Validation (and test) evaluate two whole splits per epoch as single batches: the training
    split (for `train/` metrics at the epoch's final weights) and the held-out split.
    """

    def __init__(
        self,
        name: str,
        split: Sequence[float] = (0.6, 0.2, 0.2),
        batch_size: int | None = 32,
        label_noise: float = 0.0,
        seed: int = 0,
        **dataset_kwargs,
    ) -> None:
        super().__init__()
        datasets.check_arguments(name, dataset_kwargs)
        self.name, self.split, self.batch_size = name, tuple(split), batch_size
        self.label_noise, self.seed, self.dataset_kwargs = label_noise, seed, dataset_kwargs
        raw = datasets.GENERATORS[name](seed=seed, **dataset_kwargs)
        self.data = datasets.prepare(raw, self.split, label_noise, seed)  # type: ignore[arg-type]
        self.tensors = {
            s: (torch.from_numpy(self.data.x[s]), torch.from_numpy(self.data.y[s])) for s in datasets.SPLIT_NAMES
        }

    @property
    def task(self) -> datasets.Task:
        return self.data.task

    @property
    def in_features(self) -> int:
        return self.data.x["train"].shape[1]

    @property
    def out_features(self) -> int:
        return self.data.n_classes if self.task == "multiclass" else 1

    def to(self, device: torch.device) -> None:
        self.tensors = {s: (x.to(device), y.to(device)) for s, (x, y) in self.tensors.items()}

    def _on_device(self) -> None:
        if self.trainer is not None:
            self.to(self.trainer.strategy.root_device)

    def train_dataloader(self) -> IndexBatches:
        self._on_device()
        x, y = self.tensors["train"]
        return IndexBatches(x, y, self.batch_size, shuffle=True, seed=self.seed)

    def _whole(self, split: str) -> IndexBatches:
        x, y = self.tensors[split]
        return IndexBatches(x, y, None, shuffle=False, seed=self.seed)

    def val_dataloader(self) -> list[IndexBatches]:
        self._on_device()
        return [self._whole("train"), self._whole("val")]

    def test_dataloader(self) -> list[IndexBatches]:
        self._on_device()
        return [self._whole("train"), self._whole("test")]

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.data.x[split], self.data.y[split]
