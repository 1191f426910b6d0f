"""What the test fork server (tests/conftest.py, `run_cli`) imports once, before it forks each
`reglab-train` child: everything a training run, its figures, its report and W&B (the default
logger) import."""

import lightning.pytorch  # noqa: F401
import matplotlib.pyplot  # noqa: F401
import sklearn.datasets  # noqa: F401
import wandb  # noqa: F401

import reglab.fit  # noqa: F401
import reglab.lightning.callbacks  # noqa: F401
import reglab.lightning.loggers  # noqa: F401
import reglab.report  # noqa: F401
import reglab.report_wandb  # noqa: F401
import reglab.train  # noqa: F401
