"""Data sets: generated or bundled, split with a seed, standardised on the training split only."""

import warnings

import numpy as np
import pytest
import torch

from reglab.lightning.datamodule import EpochOrders, RegLabDataModule
from reglab.science import datasets
from reglab.science.data import SPLIT_NAMES, Dataset


@pytest.mark.parametrize("name", list(datasets.GENERATORS))
def test_every_dataset_has_the_task_it_is_registered_with(name):
    data = datasets.GENERATORS[name](seed=0)
    assert data.task == datasets.task_of(name, {})
    assert len(data.x) == len(data.y) > 100
    if data.task != "regression":
        assert set(np.unique(data.y)) == set(range(data.n_classes))


def test_split_fractions_and_training_only_standardisation():
    data = datasets.moons(n_samples=1000, noise=0.2, seed=0)
    splits = datasets.prepare(data, (0.6, 0.2, 0.2), label_noise=0.0, seed=0)
    assert [len(splits.y[s]) for s in SPLIT_NAMES] == [600, 200, 200]
    np.testing.assert_allclose(splits.x["train"].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(splits.x["train"].std(0), 1, atol=1e-5)
    # Held-out splits use the training statistics, so they are close to, not exactly, standard.
    assert np.abs(splits.x["val"].mean(0)).max() > 1e-4


def test_label_noise_flips_the_asked_fraction_of_training_labels_only():
    data = datasets.moons(n_samples=2000, noise=0.1, seed=3)
    clean = datasets.prepare(data, (0.5, 0.25, 0.25), label_noise=0.0, seed=3)
    noisy = datasets.prepare(data, (0.5, 0.25, 0.25), label_noise=0.2, seed=3)
    flipped = (clean.y["train"] != noisy.y["train"]).mean()
    assert flipped == 0.2 and noisy.flipped == (clean.y["train"] != noisy.y["train"]).sum()
    for split in ("val", "test"):
        np.testing.assert_array_equal(clean.y[split], noisy.y[split])


def test_multiclass_label_noise_always_changes_the_class():
    data = datasets.wine()
    clean = datasets.prepare(data, (0.6, 0.2, 0.2), label_noise=0.0, seed=0)
    noisy = datasets.prepare(data, (0.6, 0.2, 0.2), label_noise=0.5, seed=0)
    assert (clean.y["train"] != noisy.y["train"]).sum() == noisy.flipped > 0


def test_features_dataset_puts_the_signal_in_the_first_columns():
    data = datasets.features(n_samples=2000, n_features=20, n_informative=3, seed=0)
    assert data.support == [0, 1, 2]
    # Noise columns are independent of the class; informative ones are not.
    corr = [abs(np.corrcoef(data.x[:, j], data.y)[0, 1]) for j in range(20)]
    assert max(corr[3:]) < 0.1 < max(corr[:3])


def test_sparse_regression_has_the_stated_support():
    data = datasets.sparse_regression(n_samples=300, n_features=30, n_informative=4, noise=0.0, seed=1)
    coef = np.array(data.coef)
    assert sorted(np.flatnonzero(coef).tolist()) == data.support and len(data.support) == 4
    np.testing.assert_allclose(data.x @ coef, data.y, atol=1e-12)


def test_unknown_dataset_and_argument_are_named():
    with pytest.raises(ValueError, match="choose one of: moons, circles"):
        datasets.check_arguments("mnist", {})
    with pytest.raises(ValueError, match="data.noize is not an argument of data set 'moons'"):
        datasets.check_arguments("moons", {"noize": 0.1})


def test_spirals_with_zero_turns_are_refused_in_one_line_before_numpy_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in divide" would be raised
        with pytest.raises(ValueError) as refused:
            datasets.load("spirals", n_samples=100, turns=0)
    assert str(refused.value) == (
        "data set 'spirals' has NaN or infinite values in input 0 (100 of 100 rows); nothing can be learnt from it"
    )


def test_a_noise_so_large_that_the_variance_overflows_is_refused_naming_the_key_not_trained_at_chance():
    """`data.noise=1e300` once standardised every input to 0 and trained at chance, saying `completed`."""
    from reglab.train import command_line_error

    overflows = "their variance overflows); nothing can be learnt from it"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in square" would be raised
        with pytest.raises(ValueError) as inputs:
            datasets.load("moons", n_samples=100, noise=1e300)
        with pytest.raises(ValueError) as targets:
            datasets.load("sparse_regression", n_samples=100, noise=1e300)
    assert (
        str(inputs.value)
        == f"data set 'moons' has values too large to standardise in input 0 (up to 2.22e+300: {overflows}"
    )
    assert str(targets.value).endswith(f"in its target (up to 2.86e+300: {overflows}")
    error = command_line_error(["data=moons", "data.noise=1e300", "logger=none"])
    assert error is not None and error.startswith("data.noise=1e+300: data set 'moons' has values too large"), error


def test_inputs_the_same_in_every_row_are_refused_but_one_constant_input_among_others_is_not():
    same = Dataset(np.full((50, 2), 3.0), np.arange(50) % 2, "binary", 2)
    with pytest.raises(ValueError, match="data set 'x' has inputs that are the same in every row"):
        datasets.check_values(same, "x")
    one = Dataset(np.c_[np.full(50, 3.0), np.arange(50.0)], np.arange(50) % 2, "binary", 2)
    datasets.check_values(one, "x")


def test_epoch_orders_are_permutations_fixed_by_seed_and_epoch():
    loader = EpochOrders(10, shuffle=True, seeds=[7, 8])
    assert len(loader) == 1
    (first,) = list(loader)
    assert first.shape == (2, 10) and all(sorted(row) == list(range(10)) for row in first.tolist())
    assert not torch.equal(first[0], first[1])  # each seed its own order
    assert torch.equal(next(iter(loader)), first)  # same epoch, same order
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader)), first)
    single = next(iter(EpochOrders(10, shuffle=True, seeds=[7])))
    assert torch.equal(single[0], first[0])  # a seed's order does not depend on the other members
    (full,) = list(EpochOrders(10, shuffle=False, seeds=[7]))
    assert full.tolist() == [list(range(10))]  # full batch: the split as it is


def test_members_with_one_seed_share_their_data_and_others_get_their_own():
    dm = RegLabDataModule(name="moons", n_samples=100, seed=[0, 0, 1])
    x, y = dm.inputs("train")
    assert x.shape == (3, 60, 2) and torch.equal(x[0], x[1]) and not torch.equal(x[0], x[2])
    alone = RegLabDataModule(name="moons", n_samples=100, seed=1)
    assert torch.equal(alone.inputs("train")[0], x[2])  # member 2's data are its single run's
    shared, _ = RegLabDataModule(name="moons", n_samples=100, seed=[3, 3]).inputs("val")
    assert shared.shape == (20, 2)  # one seed: one copy, shared by every member


def test_datamodule_sizes_come_from_the_data():
    dm = RegLabDataModule(name="digits", split=(0.6, 0.2, 0.2), batch_size=None, seed=0)
    assert (dm.task, dm.in_features, dm.out_features) == ("multiclass", 64, 10)
    dm = RegLabDataModule(name="diabetes", seed=0)
    assert (dm.task, dm.in_features, dm.out_features) == ("regression", 10, 1)
