"""One place for what the report shows and how: the config's `report` node (format, dpi, band), the
`METRICS` table every output reads, the one number formatter, and a K = 1 model rebuilt from its
checkpoint's own hyperparameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from reglab import figures, tables
from reglab.report import ReportOnMultirunEnd, metric_columns, report_options
from reglab.tables import METRICS, format_number, shown_in
from reglab.train import CONFIG_DIR
from tests.conftest import FAST, make_config

TINY = ["data.n_samples=200", "model.hidden=[8]", "trainer.max_epochs=3", "regularizer=l1"]


def composed(overrides: list[str]) -> DictConfig:
    """The config `reglab-train -m <overrides>` hands its callbacks, Hydra's own node included."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*FAST, *overrides], return_hydra_config=True)


# The `report` node -------------------------------------------------------------------------------
def test_the_default_report_node_is_png_at_100_dpi_with_ci_bands():
    assert report_options(composed([]).report) == {"formats": ["png"], "dpi": None, "band": "ci"}
    assert report_options(None) == {"formats": ["png"], "dpi": None, "band": "ci"}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["report.format=pdf"], {"formats": ["pdf"], "dpi": None, "band": "ci"}),
        (["report.format=[png,pdf,png]", "report.dpi=300"], {"formats": ["png", "pdf"], "dpi": 300, "band": "ci"}),
        (["report.format=[svg]", "report.band=minmax"], {"formats": ["svg"], "dpi": None, "band": "minmax"}),
    ],
)
def test_report_options_of_a_good_node_are_what_report_takes(overrides, expected):
    assert report_options(composed(overrides).report) == expected


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"format": "gif"}, "report.format=gif is not one of the figure formats: png, pdf, svg"),
        ({"format": ["png", "jpg"]}, "report.format=jpg is not one of the figure formats: png, pdf, svg"),
        ({"format": []}, "report.format=[] is not one of the figure formats"),
        ({"dpi": 0}, "report.dpi=0 must be an integer from 10 to 2400"),
        ({"dpi": 300.5}, "report.dpi=300.5 must be an integer from 10 to 2400"),
        ({"band": "sd"}, "report.band=sd must be one of: ci, minmax"),
        ({"formats": ["pdf"]}, "report.formats is not a key of report; choose one of: format, dpi, band"),
    ],
)
def test_a_bad_report_value_is_one_line_that_names_its_key(node, message):
    with pytest.raises(ValueError) as error:
        report_options(OmegaConf.create(node))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_importing_the_report_imports_no_matplotlib_torch_or_wandb():
    code = "import sys, reglab.report; print(sorted(m for m in ('matplotlib', 'torch', 'wandb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A sweep directory of two members (l1 at two λ), as a multirun leaves it before its report."""
    from reglab.fit import fit

    directory = tmp_path_factory.mktemp("options") / "sweep"
    fit(make_config(directory, [*TINY, "regularizer.strength=[0.0001,0.01]"]))
    return directory


def test_multirun_end_with_report_format_png_pdf_and_dpi_300_writes_both_at_300_dpi(sweep_dir, monkeypatch):
    monkeypatch.setattr(figures, "SWEEP", {"gap_vs_lambda": figures.gap_vs_lambda})  # one figure says it
    config = composed([f"hydra.sweep.dir={sweep_dir}", "report.format=[png,pdf]", "report.dpi=300"])
    ReportOnMultirunEnd().on_multirun_end(config)
    assert (sweep_dir / "gap_vs_lambda.pdf").read_bytes()[:5] == b"%PDF-"
    with Image.open(sweep_dir / "gap_vs_lambda.png") as image:
        width = image.size[0]
    with figures.output(dpi=100):  # the same figure at the default resolution
        small = figures.gap_vs_lambda(_groups(sweep_dir), sweep_dir / "small.png")
    with Image.open(small) as image:
        assert width / image.size[0] == pytest.approx(3.0, rel=0.05)
    assert "[pdf](gap_vs_lambda.pdf)" in (sweep_dir / "summary.md").read_text()


def _groups(directory: Path) -> dict:
    from reglab.runs import find_runs, seed_groups

    return seed_groups(find_runs(directory).runs)


def test_hydra_callbacks_take_no_report_options_of_their_own():
    callback = composed([]).hydra.callbacks.report
    assert set(callback) == {"_target_"}  # format, dpi and band are the top-level `report` node's


# One table of metrics ----------------------------------------------------------------------------
def test_every_place_shows_its_metrics_in_the_order_of_summary_csv():
    csv = shown_in("csv")
    assert csv == list(METRICS)  # summary.csv: every metric, in the table's order
    for place in tables.PLACES:
        keys = shown_in(place)
        assert keys == [k for k in csv if k in keys], place
    for task in ("binary", "regression"):
        for place in ("report", "sweep"):
            keys = [key for _, key in metric_columns(task, 1e-3, place)]
            assert keys == [k for k in csv if k in keys]
            assert all(k.endswith("/r2") == (task == "regression") for k in keys if k.endswith(("/acc", "/r2")))


def test_headers_say_the_task_and_the_threshold():
    def headers(task: str, threshold: float) -> dict[str, str]:
        return {key: title for title, key in metric_columns(task, threshold)}

    assert headers("binary", 1e-3)["weights/small_frac"] == "abs(w)<0.001"
    assert headers("binary", float("nan"))["weights/small_frac"] == "small frac"
    assert headers("regression", 1e-3)["val/gap"] == "gap (val−train loss)"
    assert [h for h, _ in metric_columns("regression", 1e-3)][:3] == ["train R²", "val R²", "test R²"]


def test_the_progress_bar_and_wandb_summary_read_the_table():
    from reglab.lightning.callbacks import EpochProgressBar, RichEpochProgressBar

    assert EpochProgressBar().show == RichEpochProgressBar().show == ("train/acc", "val/acc", "val/loss")
    assert EpochProgressBar(show=["val/loss"]).show == ("val/loss",)
    best = {key: METRICS[key].best for key in shown_in("wandb")}
    scores, losses = ("train/acc", "val/acc", "train/r2", "val/r2"), ("train/loss", "val/loss")
    assert best == {key: "max" for key in scores} | {key: "min" for key in losses}
    with pytest.raises(ValueError, match="is not a place"):
        shown_in("email")


# One number formatter ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "plain", "table", "name"),
    [
        (0.001, "0.001", "0.001", "1e-3"),
        (0.00025, "0.00025", "2.500e-04", "2.5e-4"),
        (1e-05, "1e-05", "1.000e-05", "1e-5"),
        (0.1, "0.1", "0.1", "0.1"),
        (123456.0, "123456", "1.235e+05", "1.23e5"),
        (0.0, "0", "0", "0"),
        (float("nan"), "nan", "nan", "nan"),
        (3, "3", "3", "3"),
        (None, "None", "", "None"),
        ("relu", "relu", "relu", "relu"),
    ],
)
def test_format_number_styles(value, plain, table, name):
    assert (format_number(value), format_number(value, "table"), format_number(value, "name")) == (plain, table, name)


# One reader of checkpoints ---------------------------------------------------------------
def test_a_checkpoint_without_hyperparameters_is_refused_in_one_sentence(tmp_path):
    import torch

    import reglab
    from reglab.fit import fit

    run_dir = tmp_path / "run"
    fit(make_config(run_dir, [*TINY, "regularizer.strength=0.001"]))
    path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["hyper_parameters"]  # as an older reglab wrote it: nothing says which model, which rule
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"last.ckpt holds no reglab model hyperparameters .*force=true\)$"):
        reglab.load_run(run_dir)


def test_a_single_runs_figures_follow_its_report_node(tmp_path):
    """`report.format=pdf` on one run (not only at the end of a multirun): its figures are PDFs."""
    from tests.conftest import FAST, run_cli

    run_dir = tmp_path / "run"
    args = [*FAST, "trainer.max_epochs=2", "data.n_samples=100", "report.format=pdf", f"hydra.run.dir={run_dir}"]
    done = run_cli(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in run_dir.glob("*_*.*") if p.suffix in (".png", ".pdf")) == [
        "decision_boundary.pdf",
        "weight_histogram.pdf",
    ]
