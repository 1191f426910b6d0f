"""The bad-input corpus: every command line here stops before any work with one line that names the
config key, exit code 2, and nothing on disk (README, "When things go wrong").

Each case is (command line, a fragment of the one-line error it must get). The in-process test
checks the whole corpus through `reglab.train.command_line_error` (what Hydra composes, checked by
`reglab.multirun.check_jobs`: the cross-field rules, then every job built in memory by
`reglab.preflight`); the command-line test runs `reglab-train` on one case per category.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

# Values of the wrong type or out of range, unknown names and keys, keys removed or set to null.
TYPES_AND_RANGES = [
    (["seed=-1"], "seed=-1 must be an integer from 0 to 4294967295"),
    (["seed=1.5"], "seed=1.5 must be an integer"),
    (["seed=true"], "seed=True must be an integer"),
    (["seed=abc"], "seed='abc' must be an integer"),
    (["retries=-1"], "retries=-1 must be an integer >= 0"),
    (["retries=abc"], "retries='abc' must be an integer >= 0"),
    (["force=maybe"], "force='maybe' must be true or false"),
    (["regularizer=l1", "regularizer.strength=-0.1"], "regularizer.strength=-0.1 is negative"),
    (["regularizer.strength=abc"], "regularizer.strength='abc' is not a number"),
    (["regularizer=l1", "regularizer.strength=inf"], "regularizer.strength=inf is not finite"),
    (["regularizer=l1", "regularizer.strength=nan"], "regularizer.strength=nan is not finite"),
    (["regularizer=elastic_net", "regularizer.l1_ratio=1.5"], "regularizer.l1_ratio=1.5 must be in [0, 1]"),
    (["regularizer=elastic_net", "regularizer.l1_ratio=-0.1"], "regularizer.l1_ratio=-0.1 must be in [0, 1]"),
    (["optimizer.lr=-1e-3"], "optimizer.lr=-0.001 must be > 0"),
    (["optimizer.lr=0"], "optimizer.lr=0 must be > 0"),
    (["optimizer.lr=abc"], "optimizer.lr='abc' is not a number"),
    (["optimizer.lr=inf"], "optimizer.lr=inf must be > 0"),
    (["optimizer=sgd", "optimizer.momentum=-0.5"], "optimizer.momentum=-0.5 must be >= 0"),
    (["model.hidden=[128,0]"], "model.hidden=[128, 0] must be a list of widths > 0"),
    (["model.hidden=[-4]"], "model.hidden=[-4] must be a list of widths > 0"),
    (["model.hidden=[1.5]"], "model.hidden=[1.5] must be a list of widths > 0"),
    (["model.hidden=abc"], "model.hidden='abc' must be a list of widths > 0"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be in [0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1 must be in [0, 1)"),
    (["data.noise=-0.1"], "data.noise=-0.1 must be >= 0"),
    (["data.noise=abc"], "data.noise='abc' is not a number"),
    (["data.batch_size=0"], "data.batch_size=0 must be an integer >= 1, or null for full batch"),
    (["data.batch_size=1.5"], "data.batch_size=1.5 must be an integer >= 1"),
    (["data.label_noise=1.5"], "data.label_noise=1.5 must be in [0, 1)"),
    (["data.label_noise=-0.1"], "data.label_noise=-0.1 must be in [0, 1)"),
    (["data.n_samples=0"], "data.n_samples=0 must be an integer >= 1"),
    (["data.n_samples=1.5"], "data.n_samples=1.5 must be an integer >= 1"),
    (["data.split=abc"], "data.split='abc' must be three fractions [train, val, test]"),
    (["data.split=[0.6,0.4]"], "data.split=[0.6, 0.4] must be three fractions [train, val, test]"),
    (["data.split=[0.6,-0.2,0.6]"], "must be fractions >= 0 that sum to at most 1"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1 must be an integer >= 1"),
    (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5 must be an integer"),
    (["sparsity_threshold=-1"], "sparsity_threshold=-1 must be >= 0"),
    (["callbacks.model_checkpoint.every_n_epochs=0"], "every_n_epochs=0 must be an integer >= 1 (epochs)"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 must be an integer >= 1 (epochs)"),
    (["scheduler=step", "scheduler.step_size=-1"], "scheduler.step_size=-1 must be an integer >= 1 (epochs)"),
    (["logger=tensorboard", "logger.tensorboard.flush_secs=-1"], "flush_secs=-1 must be a number of seconds > 0"),
    (["logger.wandb.init_timeout_s=-1"], "logger.wandb.init_timeout_s=-1 must be a number of seconds > 0"),
    (["data.split=[nan]"], "data.split=[nan] must be three fractions [train, val, test]"),
    (["model._target_=nope.X"], "model._target_=nope.X cannot be imported: Error loading 'nope.X'"),
    (["cpu_threads=0"], "cpu_threads=0 must be an integer >= 1 or auto"),
    (["cpu_threads=abc"], "cpu_threads='abc' must be an integer >= 1 or auto"),
    (["cpu_threads=true"], "cpu_threads=True must be an integer >= 1 or auto"),
    (["tags=[-1]"], "tags=[-1] must be a list of strings (W&B's tags)"),
    (["report.band=[-1]"], "report.band=[-1] must be one of: ci, minmax"),
    (["sweep.chunk=0"], "sweep.chunk=0 must be an integer >= 1, or null"),
    (["sweep.chunk=abc"], "sweep.chunk='abc' must be an integer >= 1"),
    # unknown names and keys: the valid ones are listed
    (["data=mnist"], "data=mnist is not a data config; choose one of: breast_cancer, circles"),
    (["regularizer=l3"], "regularizer=l3 is not a regularizer config; choose one of: elastic_net"),
    (["optimizer=rmsprop"], "optimizer=rmsprop is not a optimizer config; choose one of: adam, sgd"),
    (["regularizer=null"], "regularizer=null is not a regularizer config; choose one of: elastic_net"),
    (["scheduler=null"], "scheduler=null is not a scheduler config; choose one of: cosine, none, step"),
    (["regularizer.strenght=1e-3"], "regularizer.strenght is not a key of the config: check its spelling"),
    (["+foo=1"], "foo is not a key of the config"),
    (["+regularizer.foo=1"], "regularizer.foo is not an argument of reglab.science.regularizers.Regularizer"),
    (["+data.noize=0.1"], "data.noize is not an argument of data set 'moons'"),
    (["data.name=foo"], "data.name='foo' is not a data set; choose one of: moons, circles"),
    (["loss=hinge"], "loss is not a key of the config"),  # the task picks the loss
    (["model.activation=swish"], "model.activation='swish' is unknown; choose one of: relu"),
    (["model.init=he"], "model.init='he' is unknown; choose one of: glorot_uniform, torch_default"),
    (["~trainer.max_epochs"], "trainer.max_epochs is missing"),
    (["~regularizer"], "regularizer is missing"),
    (["optimizer._target_=torch.optim.Nope"], "optimizer._target_=torch.optim.Nope cannot be imported"),
]

# Rules between keys that no single constructor sees.
CROSS_FIELD = [
    (["regularizer=none", "regularizer.strength=0.1"], "with regularizer=none would be ignored"),
    (
        ["regularizer=l1", "regularizer.exclude=[head]"],
        "regularizer.exclude names no layer 'head'; the layers are: hidden.0",
    ),
    (["regularizer=l2", "model.hidden=[]", "regularizer.exclude=[output]"], "leaves no layer to regularize"),
    (["data.split=[0.0,0.5,0.5]"], "leaves no training set"),
    (["data.split=[0.9,0.0,0.1]"], "leaves no validation set"),
    (["data.split=[0.8,0.3,0.1]"], "must be fractions >= 0 that sum to at most 1"),
    (["data.split=[0.6,0.4,0.0]"], "data.split=[0.6, 0.4, 0.0] of 1000 samples leaves splits of"),
    (["data.n_samples=2"], "data.split=[0.6, 0.2, 0.2] of 2 samples leaves splits of {'train': 1"),
    (["data.n_samples=3"], "data.split=[0.6, 0.2, 0.2] of 3 samples leaves splits of"),
    (["data=breast_cancer", "data.split=[0.001,0.5,0.499]"], "of 569 samples leaves splits of {'train': 1"),
    (["data=diabetes", "data.label_noise=0.1"], "needs class labels; data set 'diabetes' is a regression"),
    (["data=diabetes", "optimized_metric=val/acc"], "optimized_metric=val/acc needs a classification data set"),
    (["optimized_metric=val/foo"], "optimized_metric=val/foo names no logged value; use e.g. val/acc"),
    (["optimized_metric=foo"], "optimized_metric=foo names no logged value"),
    (["+optimizer.weight_decay=0.1"], "optimizer.weight_decay would hide an L2 penalty in the optimizer"),
    (["optimizer=sgd", "optimizer.nesterov=true"], "optimizer.nesterov=true needs optimizer.momentum > 0"),
    (
        ["regularizer=prox_l1", "optimizer=sgd", "regularizer.preconditioned=true"],
        "regularizer.preconditioned=true needs an optimizer with Adam's second moment",
    ),
    (["model.dropout=0.5", "seed=[0,1]"], "model.dropout=0.5 with 2 stacked members"),
    (["seed=[]"], "seed=[] is an empty list; give at least one value"),
    (["regularizer=l1", "regularizer.strength=[]"], "regularizer.strength=[] is an empty list"),
    (["seed=[0,0]"], "the lists give member seed=0 more than once"),
    (["sweep.path=true"], "sweep.path=true needs a list of λ: regularizer.strength=[...]"),
    (["data=wine", "+data.n_samples=100"], "data.n_samples is not an argument of data set 'wine'"),
    # an experiment's fixed grid overridden by one value: refused (sweep it, or choice() it on purpose)
    (
        ["experiment=l1_vs_none", "regularizer=l2"],
        "regularizer=l2 would replace the config's sweep regularizer=none,l1 (hydra.sweeper.params)",
    ),
]

# Each constructor's own rules, said with the key they came from.
CONSTRUCTORS = [
    # data sets: scikit-learn's and our generators' own checks (configs/data/*.yaml)
    (["data=circles", "data.factor=1.5"], "data.factor=1.5: The 'factor' parameter of make_circles must be"),
    (["data=circles", "data.factor=-0.5"], "data.factor=-0.5: The 'factor' parameter of make_circles"),
    (["data=circles", "data.noise=-1"], "data.noise=-1 must be >= 0"),
    (["data=moons", "data.n_samples=-5"], "data.n_samples=-5 must be an integer >= 1"),
    (["data=xor", "data.noise=-0.1"], "data.noise=-0.1 must be >= 0"),
    (["data=spirals", "data.turns=0"], "data.turns=0: data set 'spirals' has NaN or infinite values in input 0"),
    (["data=spirals", "data.turns=abc"], "data.turns='abc' must be a number (from data set 'spirals')"),
    (["data=features", "data.n_informative=40"], "data.n_informative=40: Number of informative, redundant"),
    (["data=features", "data.n_features=3"], "data.n_features=3: Number of informative, redundant"),
    (["data=features", "data.n_clusters_per_class=10"], "data.n_clusters_per_class=10: n_classes(2) *"),
    (["data=features", "data.n_clusters_per_class=0"], "data.n_clusters_per_class=0: The 'n_clusters_per_class'"),
    (["data=features", "data.class_sep=abc"], "data.class_sep='abc' must be a number (from data set 'features')"),
    (["data=features", "data.class_sep=0"], "data.class_sep=0: The 'class_sep' parameter of make_classification"),
    (["data=features", "data.n_redundant=-1"], "data.n_redundant=-1: The 'n_redundant' parameter"),
    (["data=features", "data.n_features=0"], "data.n_features=0 must be an integer >= 1"),
    (["data=sparse_regression", "data.n_informative=100"], "data.n_informative=100: Cannot take a larger sample"),
    (["data=sparse_regression", "data.n_features=3"], "data.n_features=3: Cannot take a larger sample"),
    (["data=sparse_regression", "data.noise=-1"], "data.noise=-1 must be >= 0"),
    # optimizer
    (["optimizer.betas=[0.9]"], "optimizer.betas=[0.9] must be a list of 2 values (from torch.optim.Adam)"),
    (["optimizer.betas=[1.5,0.999]"], "optimizer.betas=[1.5,0.999]: Invalid beta parameter at index 0"),
    (["optimizer.betas=[0.9,-0.1]"], "optimizer.betas=[0.9,-0.1]: Invalid beta parameter at index 1"),
    (["optimizer.eps=-1"], "optimizer.eps=-1: Invalid epsilon value: -1 (from torch.optim.Adam)"),
    (["+optimizer.amsgrad=maybe"], "optimizer.amsgrad='maybe' must be true or false (from torch.optim.Adam)"),
    (["+optimizer.foo=1"], "optimizer.foo is not an argument of torch.optim.Adam"),
    (["optimizer=sgd", "optimizer.nesterov=maybe"], "optimizer.nesterov='maybe' must be true or false"),
    (["optimizer=sgd", "+optimizer.dampening=abc"], "optimizer.dampening='abc' must be a number"),
    # scheduler
    (
        ["scheduler=step", "scheduler.step_size=0"],
        "scheduler.step_size=0 must be an integer >= 1 (epochs)",
    ),
    (["scheduler=step", "scheduler.step_size=1.5"], "scheduler.step_size=1.5 must be an integer"),
    (["scheduler=step", "scheduler.gamma=abc"], "scheduler.gamma='abc' must be a number"),
    (
        ["scheduler=step", "scheduler.gamma=-0.5"],
        "scheduler.gamma=-0.5: the learning rate becomes -0.0005 after epoch 100",
    ),
    (
        ["scheduler=cosine", "scheduler.T_max=0"],
        "scheduler.T_max=0 must be an integer >= 1 (epochs)",
    ),
    (["scheduler=cosine", "scheduler.eta_min=-1"], "scheduler.eta_min=-1: the learning rate becomes"),
    (["scheduler=step", "+scheduler.foo=1"], "scheduler.foo is not an argument of torch.optim.lr_scheduler.StepLR"),
    # trainer
    (["trainer.precision=bf17"], "trainer.precision='bf17' must be one of:"),
    (["trainer.accelerator=tpu"], "trainer.accelerator=tpu: Requirement 'torch_xla"),
    (["trainer.devices=0"], "trainer.devices=0: `Trainer(devices=0)` value is not a valid input"),
    (["trainer.deterministic=maybe"], "trainer.deterministic='maybe' must be true or false"),
    (["+trainer.foo=1"], "trainer.foo is not an argument of lightning.pytorch.Trainer"),
    (["+trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 trains no step"),  # 0 steps: never "completed"
    (["+trainer.limit_train_batches=0.5"], "trainer.limit_train_batches=0.5 trains no step"),
    (["+trainer.max_steps=0"], "trainer.max_steps=0 trains no step"),
    # callbacks and loggers
    (
        ["callbacks.metrics_history.write_every_n_epochs=0"],
        "callbacks.metrics_history.write_every_n_epochs=0 must be an integer >= 1",
    ),
    (
        ["callbacks=early_stopping", "callbacks.early_stopping.patience=0"],
        "callbacks.early_stopping.patience=0 must be an integer >= 1",
    ),
    (
        ["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/accuracy"],
        "callbacks.early_stopping.monitor=val/accuracy names no metric; choose one of: lr, train/acc",
    ),
    (
        ["callbacks=best_checkpoint", "callbacks.best_checkpoint.mode=maximum"],
        "callbacks.best_checkpoint.mode='maximum' must be min or max",
    ),
    (
        ["data=diabetes", "callbacks=best_checkpoint", "callbacks.best_checkpoint.monitor=val/acc"],
        "callbacks.best_checkpoint.monitor=val/acc names no metric",
    ),
    (["+trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 must be a number >= 0"),
    (
        ["logger=tensorboard", "logger.tensorboard.histograms_every_n_epochs=0"],
        "logger.tensorboard.histograms_every_n_epochs=0 must be an integer >= 1",
    ),
    (
        ["callbacks.metrics_history.write_every_n_epochs=abc"],
        "callbacks.metrics_history.write_every_n_epochs='abc'",
    ),
    (
        ["callbacks.model_checkpoint.every_n_epochs=-1"],
        "callbacks.model_checkpoint.every_n_epochs=-1 must be an integer >= 1 (epochs)",
    ),
    (["callbacks.model_checkpoint.save_top_k=-2"], "callbacks.model_checkpoint.save_top_k=-2: Invalid value"),
    (
        ["+callbacks.model_checkpoint.foo=1"],
        "callbacks.model_checkpoint.foo is not an argument of lightning.pytorch.callbacks.ModelCheckpoint",
    ),
    (["callbacks.progress_bar._target_=foo.Bar"], "callbacks.progress_bar._target_=foo.Bar cannot be imported"),
    (["logger.wandb.histograms_every_n_epochs=0"], "logger.wandb.histograms_every_n_epochs=0 must be an integer >= 1"),
    (["logger.wandb.mode=sometimes"], "logger.wandb.mode='sometimes' must be online, offline, disabled or null"),
    # regularizer
    (["regularizer=l1", "regularizer.include_bias=maybe"], "regularizer.include_bias='maybe' must be true or false"),
    (
        ["regularizer=prox_l1", "regularizer.preconditioned=maybe"],
        "regularizer.preconditioned='maybe' must be one of: auto, true, false",
    ),
    (
        ["regularizer=group_lasso", "regularizer.input_features=maybe"],
        "regularizer.input_features='maybe' must be true or false",
    ),
]
if not torch.cuda.is_available():  # on a GPU machine trainer=gpu is a good config
    CONSTRUCTORS.append((["trainer=gpu"], "trainer.accelerator=gpu: No supported gpu backend found!"))

# A bad value anywhere in a sweep list, or at an end of an Optuna interval, before the first job runs.
OPTUNA = ["-m", "hparams_search=lambda_optuna", "regularizer=l1"]
SWEEPS_AND_OPTUNA = [
    (["-m", "regularizer=l1,l5"], "regularizer=l5 is not a regularizer config"),
    (["-m", "regularizer=l1", "regularizer.strength=1e-3,-1"], "regularizer.strength=-1 is negative"),
    (["-m", "regularizer=l1", "regularizer.strength=range(-2,2)"], "regularizer.strength=-2 is negative"),
    (["-m", "model.hidden=[8],[0]"], "model.hidden=[0] must be a list of widths > 0"),
    (["-m", "optimizer.lr=0.01,0"], "optimizer.lr=0 must be > 0"),
    (["-m", "data.noise=0.1,-0.2"], "data.noise=-0.2 must be >= 0"),
    (["-m", "seed=0,-1"], "seed=-1 must be an integer from 0 to 4294967295"),
    (["-m", "trainer.precision=32-true,bf17"], "trainer.precision='bf17' must be one of:"),
    (["-m", "data.split=[0.6,0.2,0.2],[0.6,0.4,0.0]"], "data.split=[0.6, 0.4, 0.0] of 1000 samples leaves splits"),
    (
        ["-m", "callbacks.metrics_history.write_every_n_epochs=10,0"],
        "callbacks.metrics_history.write_every_n_epochs=0",
    ),
    (["-m", "data=moons,circles", "data.n_samples=10,3"], "of 3 samples leaves splits of"),
    (["-m", "scheduler=step", "scheduler.step_size=10,0"], "scheduler.step_size=0 must be an integer >= 1"),
    (["-m", "experiment=l1_vs_none", "data.noise=0.2,-1"], "data.noise=-1 must be >= 0"),
    (["-m", "experiment=l1_vs_none", "trainer.max_epochs=0"], "trainer.max_epochs=0 must be an integer >= 1"),
    (
        [*OPTUNA, "regularizer.strength=tag(log,interval(-1e-3,1e-1))"],
        "The `low` value must be larger than 0 for a log distribution",
    ),
    ([*OPTUNA, "regularizer.strength=interval(-1e-3,1e-1)"], "regularizer.strength=-0.001 is negative"),
    (
        [*OPTUNA, "regularizer.strength=tag(log,interval(1e-1,1e-6))"],
        "regularizer.strength=tag(log,interval(1e-1,1e-6)): "
        "The `low` value must be smaller than or equal to the `high` value",
    ),
    (
        [*OPTUNA, "regularizer.strength=interval(1e-1,1e-6)"],
        "The `low` value must be smaller than or equal to the `high`",
    ),
    (
        [*OPTUNA, "regularizer.strength=tag(log,interval(0,1e-1))"],
        "regularizer.strength=tag(log,interval(0,1e-1)): The `low` value must be larger than 0",
    ),
    ([*OPTUNA, "regularizer.strength=1e-3"], "regularizer.strength=1e-3 would replace the config's sweep"),
    ([*OPTUNA, "optimizer.lr=interval(0,1)"], "optimizer.lr=0 must be > 0"),
    ([*OPTUNA, "optimized_metric=val/foo"], "optimized_metric=val/foo names no logged value"),
    ([*OPTUNA, "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0 must be an integer >= 1"),
    ([*OPTUNA, "hydra.sweeper.direction=up"], "hydra.sweeper.direction=up must be minimize or maximize"),
    ([*OPTUNA, "data=diabetes"], "optimized_metric=val/acc needs a classification data set"),
]

# Nothing may climb out of the log root through '..'; an empty path is no directory.
PATHS = [
    (["name=../.."], "name='../..' must be a plain name"),
    (["name=a/../../b"], "name='a/../../b' must be a plain name"),
    (["name=a/b"], "name='a/b' must be a plain name"),
    (["name="], "name='' must be a plain name"),
    (["name=."], "name='.' must be a plain name"),
    (["paths.log_dir="], "paths.log_dir='' must name a directory"),
    (["paths.log_dir=null"], "paths.log_dir=None must name a directory"),
    (["paths.log_dir=../outside"], "paths.log_dir=../outside climbs out of the launch directory"),
    (["paths.log_dir=a/../../b"], "paths.log_dir=a/../../b climbs out of the launch directory"),
    (["paths.output_dir=../x"], "paths.output_dir=../x climbs out of the launch directory"),
    (["paths.output_dir="], "paths.output_dir='' must name a directory"),
]

# Refused with the estimate before anything is allocated.
RESOURCES = [
    (["data.n_samples=1e9"], "data.n_samples=1e+09, model.hidden=[128, 128] and 1 member(s) need about"),
    (["data.n_samples=1000000000"], "GiB of memory (data"),
    (["model.hidden=[100000,100000]"], "model.hidden=[100000, 100000] and 1 member(s) need about"),
    (["model.hidden=[20000,20000]", "seed=[0,1,2,3,4,5,6,7,8,9]"], "and 10 member(s) need about"),
    (["data=features", "data.n_features=1000000", "data.n_samples=100000"], "need about"),
    (
        [
            "regularizer=l1",
            "regularizer.strength=[0,1,2,3,4,5,6,7,8,9]",
            "seed=[0,1,2,3,4,5,6,7,8,9]",
            "model.hidden=[10000,10000]",
        ],
        "and 100 member(s) need about",
    ),
    (["-m", "model.hidden=[8],[100000,100000]"], "need about"),
]

CATEGORIES = {
    "types_and_ranges": TYPES_AND_RANGES,
    "cross_field": CROSS_FIELD,
    "constructors": CONSTRUCTORS,
    "sweeps_and_optuna": SWEEPS_AND_OPTUNA,
    "paths": PATHS,
    "resources": RESOURCES,
}
CORPUS = [(category, args, fragment) for category, cases in CATEGORIES.items() for args, fragment in cases]


def _id(args: list[str]) -> str:
    return " ".join(args) or "(none)"


def test_the_corpus_is_large_and_has_no_duplicates():
    assert len(CORPUS) >= 110
    lines = [tuple(args) for _, args, _ in CORPUS]
    assert len(set(lines)) == len(lines)


@pytest.fixture(scope="module")
def timing():
    """The corpus test's total time (`pytest -s` prints it). A case costs about 0.35 s of CPU, nearly
    all of it Hydra composing the config from its YAML files; the checks and the in-memory build
    take a few tens of milliseconds."""
    spent: list[float] = []
    yield spent
    print(f"\nbad-input corpus: {len(spent)} cases in {sum(spent):.1f} s")


@pytest.mark.parametrize("category,args,fragment", CORPUS, ids=[f"{c}: {_id(a)}" for c, a, _ in CORPUS])
def test_bad_command_line_gets_its_one_line_error_before_anything_runs(category, args, fragment, timing):
    from reglab.train import command_line_error

    started = time.perf_counter()
    error = command_line_error(args)
    timing.append(time.perf_counter() - started)
    assert error is not None, f"{_id(args)} was accepted"
    assert fragment in error, error
    assert "\n" not in error and "\r" not in error and len(error.splitlines()) == 1
    assert "Traceback" not in error


CLI_SAMPLE = [  # a fresh process costs seconds of imports: three kinds of refusal, the rest in-process above
    (["seed=-1"], False),  # types and ranges, refused by reglab.config
    (["-m", "regularizer=l1", "regularizer.strength=1e-3,-1"], False),  # a sweep, before its first job
    (["name=../.."], True),  # paths: nothing written anywhere, in the log root or above it
]


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*")) if root.is_dir() else set()


@pytest.mark.parametrize("args,paths", CLI_SAMPLE, ids=[_id(a) for a, _ in CLI_SAMPLE])
def test_bad_command_line_exits_2_with_one_line_and_nothing_on_disk(tmp_path, args, paths):
    cwd = tmp_path / "launch" / "here"  # '..' from here stays inside tmp_path
    cwd.mkdir(parents=True)
    log_dir = tmp_path / "logs"
    before = _tree(tmp_path)
    result = run_cli([*args, *([] if paths else [f"paths.log_dir={log_dir}"])], cwd=cwd)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert _tree(tmp_path) == before  # not even an empty run directory, in the log root or above it
