"""W&B runs read back from their offline files (one per member, live, with a summary, histograms,
images; a report run per sweep; ids across re-training and resuming), the W&B sweep config, and
the figures for papers (formats, CI bands, labels, point charts)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from threading import current_thread
from threading import enumerate as enumerate_threads
from typing import Any

import numpy as np
import pytest
import yaml

from reglab import figures, rundir
from reglab.runs import Run
from tests.conftest import ROOT, make_config, train_run

SMALL = ["logger=wandb", "data.n_samples=200", "model.hidden=[8]", "logger.wandb.histograms_every_n_epochs=1"]
T_975_4 = 2.7764451051977987  # Student t quantile 0.975 with 4 degrees of freedom


# Reading offline W&B runs ----------------------------------------------------------------------
# A run's .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic, version), then
# 32 KiB blocks of chunks, each with a 7-byte header (CRC-32, length, type: 1 full, 2 first,
# 3 middle, 4 last) and a piece of one serialized `wandb_internal_pb2.Record`.
@dataclass
class OfflineRun:
    path: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (type, name, files)
    kinds: list[str] = field(default_factory=list)  # the record types, in the order written
    exit_code: int | None = None


def wandb_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<HB", data[4:7]) == (0xBEE1, 0), path
    block, pos, chunk, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left for a header: the block is padded
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += block - pos % block
            continue
        payload = data[pos + 7 : pos + 7 + length]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{path}: bad checksum at byte {pos} (a record still being written?)")
        chunk, pos = chunk + payload, pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def _put(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def read_run(path: Path) -> OfflineRun:
    """What one offline run holds: run record, config, history rows, summary, artifacts, exit."""
    run = OfflineRun(path)
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        run.kinds.append(kind)
        if kind == "run":
            r = record.run
            run.id, run.name, run.group, run.job_type = r.run_id, r.display_name, r.run_group, r.job_type
            run.config = {item.key: json.loads(item.value_json) for item in r.config.update}
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, list(item.nested_key) or [item.key], json.loads(item.value_json))
            run.history.append(row)
        elif kind == "summary":
            for item in record.summary.update:
                _put(run.summary, list(item.nested_key) or [item.key], json.loads(item.value_json))
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append((a.type, a.name, sorted(c.path for c in a.manifest.contents)))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(run_dir: Path, timeout: float = 30) -> list[OfflineRun]:
    """The offline W&B runs in `run_dir`/wandb, oldest first, each read once its exit record is on
    disk: W&B's service writes a run's file behind the process that logs to it."""
    from google.protobuf.message import DecodeError

    files = [next(d.glob("run-*.wandb")) for d in sorted((run_dir / "wandb").glob("offline-run-*"))]
    deadline = time.monotonic() + timeout
    while True:
        try:
            runs = [read_run(f) for f in files]
            if all(run.exit_code is not None for run in runs) or time.monotonic() > deadline:
                return runs
        except (ValueError, DecodeError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def metric_rows(run: OfflineRun) -> list[dict[str, Any]]:
    return [row for row in run.history if "val/acc" in row]


def test_the_reader_reads_back_what_wandb_wrote(tmp_path):
    import wandb

    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
    run = wandb.init(
        mode="offline",
        dir=tmp_path,
        id="reader1",
        name="n",
        group="g",
        job_type="t",
        config={"a": 1},
        settings=settings,
    )
    for epoch in range(3):
        run.log({"epoch": epoch, "x": epoch / 2, "h": wandb.Histogram(np.arange(10.0))})
    run.summary["best"] = 7
    run.finish(exit_code=0)

    (read,) = offline_runs(tmp_path)
    assert (read.id, read.name, read.group, read.job_type, read.config["a"]) == ("reader1", "n", "g", "t", 1)
    assert [row["x"] for row in read.history] == [0, 0.5, 1] and read.history[0]["h"]["_type"] == "histogram"
    assert read.summary["best"] == 7 and read.summary["x"] == 1 and read.exit_code == 0


# Runs trained once for the tests below ----------------------------------------------------------
@pytest.fixture(scope="module")
def wandb_env(tmp_path_factory):
    """Offline W&B whose caches and artifact staging stay in a temporary directory."""
    tmp = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(name, str(tmp / name.lower()))
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.delenv("WANDB_RUN_ID", raising=False)
        yield tmp


@pytest.fixture(scope="module")
def single(wandb_env, tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("single")
    args = [
        *SMALL,
        "regularizer=l1",
        "regularizer.strength=1e-3",
        "trainer.max_epochs=4",
        "logger.wandb.log_checkpoints=true",
    ]
    return run_dir, train_run(run_dir, args)


@pytest.fixture(scope="module")
def stack(wandb_env, tmp_path_factory) -> tuple[Path, list[dict]]:
    """3 stacked members, then what train.py does after a K > 1 run outside a multirun: its report."""
    from reglab.fit import fit
    from reglab.train import _write_figures

    run_dir = tmp_path_factory.mktemp("stack")
    args = [*SMALL, "regularizer=l1", "regularizer.strength=1e-3", "seed=[0,1,2]", "trainer.max_epochs=4"]
    records = fit(make_config(run_dir, args))
    _write_figures(run_dir, records)
    return run_dir, records


# A member's W&B run ----------------------------------------------------------------------------
def test_run_names_say_what_differs():
    from reglab.lightning.loggers import run_name

    assert run_name({"regularizer": "l1", "strength": 1e-3, "seed": 0}, {}) == "l1 λ=1e-3 s0"
    assert run_name({"regularizer": "l2", "strength": 2.5e-5, "seed": 3}, {"seed": 3}) == "l2 λ=2.5e-5 s3"
    assert run_name({"regularizer": "none", "strength": 0.0, "seed": 2}, {"optimizer.lr": 0.01}) == "none s2 lr=0.01"


def test_a_members_name_and_config_hold_the_overrides_the_driver_hands_in(monkeypatch):
    """`WandbRuns.attach` is handed the job's overrides and the keys its multirun sweeps; outside a
    Hydra job it still names a member by them (it no longer reads Hydra's global state)."""
    from hydra.core.hydra_config import HydraConfig

    from reglab.lightning.loggers import WandbRuns

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # no Hydra job in this process
    config = {"regularizer": {"name": "l1", "strength": 1e-3}, "optimizer": {"lr": 0.01}, "seed": 0}
    ident = {"regularizer": "l1", "strength": 1e-3, "seed": 0}
    runs = WandbRuns()
    runs.attach(["m"], [Path("m")], [config], [ident], [{}], {"optimizer.lr": "1e-2"}, {"optimizer.lr"})
    (member,) = runs.members
    assert member["name"] == "l1 λ=1e-3 s0 lr=0.01"
    assert member["config"]["optimizer.lr"] == 0.01 and member["config"]["regularizer_config"]["name"] == "l1"
    runs.attach(["m"], [Path("m")], [config], [ident], [{}], {"optimizer.lr": "1e-2"})  # set, not swept
    assert runs.members[0]["name"] == "l1 λ=1e-3 s0" and runs.members[0]["config"]["optimizer.lr"] == 0.01
    runs.attach(["m"], [Path("m")], [config], [ident], [{}])
    assert "optimizer.lr" not in runs.members[0]["config"]


def test_the_job_overrides_are_the_training_keys_of_the_command_line_and_those_a_multirun_sweeps(tmp_path, monkeypatch):
    """`preflight.job_overrides`, what the loggers are handed: from Hydra's job config, the overrides that
    change a result (not `logger=`, `callbacks.*`, `trainer.enable_progress_bar`), and in a multirun
    those of them that its master command line (multirun.yaml) sweeps."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from reglab.preflight import job_overrides
    from reglab.train import CONFIG_DIR

    def job(*hydra: str) -> None:  # Hydra's job config of these overrides, as a job finds it
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            HydraConfig.instance().set_config(compose("train", [*args, *hydra], return_hydra_config=True))

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
    assert job_overrides() == ({}, set())
    quiet = ["logger=none", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false"]
    args = [*quiet, "optimizer.lr=0.01", "seed=3"]
    job()
    assert job_overrides() == ({"optimizer.lr": "0.01", "seed": "3"}, set())
    master = [*quiet, "optimizer.lr=0.01,0.1", "seed=3"]  # the multirun's command line: lr swept, seed not
    OmegaConf.save({"hydra": {"overrides": {"task": master}}}, tmp_path / "multirun.yaml")
    job(f"hydra.mode={RunMode.MULTIRUN.name}", f"hydra.sweep.dir={tmp_path}")
    assert job_overrides() == ({"optimizer.lr": "0.01", "seed": "3"}, {"optimizer.lr"})


@pytest.mark.parametrize(
    ("rows_every", "expected"),
    [(1, [0, 10, 20, 30, 40, 50]), (5, [4, 14, 24, 34, 44, 54]), (10, [9, 19, 29, 39, 49, 59]), (25, [24, 49])],
)
def test_weight_histograms_come_every_n_epochs_whatever_the_evaluation_interval(rows_every, expected):
    """histograms_every_n_epochs=10 over 60 epochs: one histogram per block of 10 epochs, on its first
    metrics row (the main job evaluates every 5 epochs: rows at 4, 9, 14, …; `epoch % 10` is never 0)."""
    from reglab.lightning.loggers import histograms_due

    rows = [e for e in range(60) if (e + 1) % rows_every == 0]
    assert [e for i, e in enumerate(rows) if histograms_due(rows[max(0, i - 1) : i + 1], 10)] == expected


def test_single_run_has_history_by_epoch_summary_with_best_epoch_histograms_and_two_images(single):
    run_dir, record = single
    (run,) = offline_runs(run_dir)
    assert (run.name, run.group, run.job_type, run.exit_code) == ("l1 λ=1e-3 s0", "default", "train", 0)
    config = run.config
    assert (config["regularizer"], config["strength"], config["seed"], config["dataset"]) == ("l1", 0.001, 0, "moons")
    assert config["regularizer.strength"] == 0.001 and config["data.n_samples"] == 200  # keys set on the command line
    assert "exclude" in config["regularizer_config"]  # the regularizer's own settings, beside its name

    csv = rundir.read_metrics_csv(run_dir)
    rows = metric_rows(run)
    assert [row["epoch"] for row in rows] == [r["epoch"] for r in csv] == [0, 1, 2, 3]
    for row, expected in zip(rows, csv):
        assert row["val/acc"] == pytest.approx(expected["val/acc"], abs=1e-6)
        assert row["histograms/hidden.0"]["_type"] == row["histograms/output"]["_type"] == "histogram"

    best = max(csv, key=lambda r: r["val/acc"])  # the first epoch with the highest validation accuracy
    summary = run.summary
    assert summary["best/val/acc"] == pytest.approx(best["val/acc"]) and summary["best/epoch"] == best["epoch"]
    assert summary["val/acc"]["max"] == pytest.approx(best["val/acc"])  # define_metric(summary="max,last")
    assert summary["val/acc"]["last"] == pytest.approx(csv[-1]["val/acc"])
    assert summary["val/loss"]["min"] == pytest.approx(min(r["val/loss"] for r in csv))
    assert summary["final/test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert summary["status"] == "completed" and summary["epoch"] == 3

    images = {k: v for row in run.history for k, v in row.items() if k.startswith("figures/")}
    assert sorted(images) == ["figures/decision_boundary", "figures/weight_histogram"]
    for image in images.values():
        assert image["_type"] == "image-file" and (run.path.parent / "files" / image["path"]).is_file()
    assert ("model", f"model-{run.id}", ["last.ckpt"]) in run.artifacts  # logger.wandb.log_checkpoints=true
    import torch

    requirements = (run.path.parent / "files" / "requirements.txt").read_text().splitlines()  # scanned once a process
    assert f"torch=={torch.__version__}" in requirements and len(requirements) > 20


def test_stacked_run_has_a_live_run_per_member_with_histograms_and_images(stack):
    run_dir, records = stack
    members = [offline_runs(run_dir / f"seed={seed}") for seed in range(3)]
    assert [len(runs) for runs in members] == [1, 1, 1]
    runs = [runs[0] for runs in members]
    assert [r.name for r in runs] == ["l1 λ=1e-3 s0", "l1 λ=1e-3 s1", "l1 λ=1e-3 s2"]
    assert len({r.id for r in runs}) == 3 and [r.config["seed"] for r in runs] == [0, 1, 2]
    trained = (run_dir / ".stack" / "checkpoints" / "all" / "last.ckpt").stat().st_mtime  # saved when fit ends
    for run, record in zip(runs, records):
        rows = metric_rows(run)
        assert [row["epoch"] for row in rows] == list(range(4))
        stamps = [row["_timestamp"] for row in rows]
        assert stamps == sorted(stamps) and stamps[-1] < trained  # logged while training, epoch by epoch
        assert all("histograms/hidden.0" in row for row in rows)
        assert run.kinds.index("history") < run.kinds.index("exit")
        assert run.summary["best/epoch"] == max(rows, key=lambda r: r["val/acc"])["epoch"]
        assert run.summary["final/val/acc"] == pytest.approx(record["metrics"]["val/acc"])
        assert {"figures/decision_boundary", "figures/weight_histogram"} <= {k for row in run.history for k in row}


def test_stacked_run_report_is_a_wandb_run_with_a_table_of_its_runs_figures_and_files(stack):
    run_dir, records = stack
    (report,) = offline_runs(run_dir)
    assert (report.job_type, report.group, report.exit_code) == ("report", "default", 0)
    logged = {k: v for row in report.history for k, v in row.items()}
    table = logged["summary"]
    assert table["_type"] == "table-file" and table["nrows"] == 3
    content = json.loads((report.path.parent / "files" / table["path"]).read_text())
    columns = content["columns"]
    assert {"regularizer", "lambda", "seed", "val/acc", "optimizer", "lr"} <= set(columns)
    assert sorted(row[columns.index("seed")] for row in content["data"]) == [0, 1, 2]
    pngs = sorted(p.stem for p in run_dir.glob("*.png"))
    assert pngs and sorted(k.removeprefix("figures/") for k in logged if k.startswith("figures/")) == pngs
    ((kind, _, files),) = [a for a in report.artifacts if a[0] == "report"]
    assert {"summary.csv", "summary.md", *(f"{name}.png" for name in pngs)} == set(files)


def test_multirun_end_logs_the_sweep_report_as_a_run_of_the_sweeps_group_only_with_wandb(
    stack, tmp_path, monkeypatch, capsys
):
    from omegaconf import OmegaConf

    from reglab.report import ReportOnMultirunEnd

    monkeypatch.setattr(figures, "SWEEP", {"gap_vs_lambda": figures.gap_vs_lambda})  # one figure is enough here

    for logger, expected in (("none", 0), ("wandb", 1)):
        sweep = tmp_path / logger
        shutil.copytree(stack[0], sweep, ignore=shutil.ignore_patterns("wandb", "*.png", "summary.*"))
        wandb_config = {"project": "reglab", "group": "${name}", "tags": "${tags}", "mode": None, "figures": None}
        config = OmegaConf.create(
            {"name": "my_study", "tags": ["t1"], "hydra": {"sweep": {"dir": str(sweep)}}}
            | {"logger": {"wandb": wandb_config} if logger == "wandb" else None}
        )
        ReportOnMultirunEnd().on_multirun_end(config)
        assert (sweep / "summary.md").is_file()
        runs = offline_runs(sweep) if (sweep / "wandb").is_dir() else []
        assert len(runs) == expected, capsys.readouterr().err[-2000:]
    (report,) = runs
    assert (report.job_type, report.group, report.name) == ("report", "my_study", "report my_study")
    assert "figures/gap_vs_lambda" in report.history[0] and report.history[0]["summary"]["nrows"] == 3


@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # it retrains or resumes there
def test_retraining_starts_a_new_wandb_run_and_resuming_continues_the_same(wandb_env, tmp_path, monkeypatch):
    from reglab.lightning.callbacks import MetricsHistory

    args = [*SMALL, "trainer.max_epochs=4", "callbacks.model_checkpoint.every_n_epochs=2"]
    train_run(tmp_path / "again", [*args])
    train_run(tmp_path / "again", [*args, "force=true"])
    first, second = offline_runs(tmp_path / "again")
    assert first.id != second.id and second.exit_code == 0

    original = MetricsHistory.on_train_epoch_end
    crashed: list[int] = []

    def crash_once_at_epoch_2(self, trainer, pl_module):
        if trainer.current_epoch == 2 and not crashed:
            crashed.append(2)
            raise RuntimeError("simulated crash")  # after the checkpoint of epoch 1
        return original(self, trainer, pl_module)

    monkeypatch.setattr(MetricsHistory, "on_train_epoch_end", crash_once_at_epoch_2)
    record = train_run(tmp_path / "resumed", args)  # retries=1: resumes from checkpoints/last.ckpt
    assert record["status"] == rundir.COMPLETED and record["attempts"] == 2
    crashed_run, resumed = offline_runs(tmp_path / "resumed")
    assert crashed_run.id == resumed.id and (crashed_run.exit_code, resumed.exit_code) == (1, 0)
    assert [r["epoch"] for r in metric_rows(crashed_run)] == [0, 1]
    assert [r["epoch"] for r in metric_rows(resumed)] == [2, 3]


# The W&B sweep ---------------------------------------------------------------------------------
SWEEP = ROOT / "configs" / "wandb" / "sweep_lambda.yaml"


def test_sweep_config_is_a_valid_wandb_sweep_over_log_uniform_lambda_and_seed():
    config = yaml.safe_load(SWEEP.read_text())
    try:  # W&B's own validation (the `sweeps` package of wandb[sweeps]) where it is installed
        from sweeps import schema_violations_from_proposed_config

        assert schema_violations_from_proposed_config(config) == []
    except ImportError:
        pass
    assert config["method"] in ("grid", "random", "bayes")
    assert config["metric"]["goal"] in ("maximize", "minimize") and config["metric"]["name"] == "final/val/acc"
    lam = config["parameters"]["regularizer.strength"]
    assert lam["distribution"] == "log_uniform_values" and 0 < lam["min"] < lam["max"]
    assert all(isinstance(s, int) for s in config["parameters"]["seed"]["values"])
    assert config["command"][0] == "reglab-train" and "${args_no_hyphens}" in config["command"]


@pytest.mark.slow
def test_sweep_command_runs_offline_as_one_job_as_the_agent_builds_it(tmp_path):
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    config = yaml.safe_load(SWEEP.read_text())
    lam = config["parameters"]["regularizer.strength"]
    sampled = float(np.exp(np.random.default_rng(0).uniform(np.log(lam["min"]), np.log(lam["max"]))))
    seed = config["parameters"]["seed"]["values"][1]
    # What `wandb agent` does with a sampled run (wandb_agent.Agent._command_run):
    command = {"args": {"regularizer.strength": {"value": sampled}, "seed": {"value": seed}}, "program": None}
    variables = sweep_utils.create_sweep_command_args(command)
    variables |= {"interpreter": ["python"], "program": [], "env": ["/usr/bin/env"]}
    argv: list[str] = []
    for part in sweep_utils.create_sweep_command(list(config["command"])):
        argv += variables.get(str(part)[2:-1]) or [] if str(part).startswith("${") else [str(part)]
    small = ["trainer.max_epochs=2", "data.n_samples=200", "model.hidden=[8]", "callbacks.progress_bar=null"]
    argv += [*small, "trainer.enable_progress_bar=false", f"paths.log_dir={tmp_path}"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_RUN_ID": "agentrun1",  # the agent names the run it starts
        "WANDB_DIR": str(tmp_path),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
    }
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = tmp_path.glob("multiruns/wandb_sweep_lambda/*/metrics.json")
    record = json.loads(metrics.read_text())
    assert record["status"] == rundir.COMPLETED and record["epochs"] == 2
    assert record["strength"] == pytest.approx(sampled) and record["seed"] == seed
    (run,) = offline_runs(metrics.parent)
    assert run.id == "agentrun1" and run.config["regularizer.strength"] == pytest.approx(sampled)


# Figures for papers ----------------------------------------------------------------------------
def _pdf_text_operators(pdf: bytes) -> tuple[int, bool]:
    """(number of content streams that draw text, whether every font is embedded TrueType: no Type 3)."""
    streams = re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S)
    texts = 0
    for stream in streams:
        try:
            stream = zlib.decompress(stream)
        except zlib.error:
            pass
        texts += bool(re.search(rb"\bBT\b.*?\bT[jJ]\b.*?\bET\b", stream, re.S))
    return texts, b"/FontFile2" in pdf and b"/Type3" not in pdf


def test_report_format_pdf_writes_pdfs_whose_text_is_text(stack, tmp_path):
    from reglab.report import main

    directory = tmp_path / "report"
    shutil.copytree(stack[0], directory, ignore=shutil.ignore_patterns("wandb", "*.png", "summary.*"))
    main([str(directory), "--format", "pdf", "--quiet"])

    pdfs = sorted(directory.glob("*.pdf"))
    assert [p.stem for p in pdfs] == sorted(p.stem for p in stack[0].glob("*.png")) and len(pdfs) >= 5
    assert not list(directory.glob("*.png"))
    for pdf in pdfs:
        try:
            from pypdf import PdfReader

            assert "seed" in " ".join(page.extract_text() for page in PdfReader(pdf).pages)
        except ImportError:
            if shutil.which("pdftotext"):
                out = subprocess.run(
                    ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True, timeout=600
                )
                assert "seed" in out.stdout
            else:
                texts, truetype = _pdf_text_operators(pdf.read_bytes())
                assert texts >= 1 and truetype, pdf.name
    assert "[pdf](accuracy_vs_lambda.pdf)" in (directory / "summary.md").read_text()


def _runs(regularizer: str, lam: float, accuracies: list[float]) -> list[Run]:
    return [
        Run(
            Path("."),
            f"{regularizer}-{lam}-{seed}",
            {
                "status": "completed",
                "regularizer": regularizer,
                "strength": lam,
                "seed": seed,
                "dataset": "moons",
                "task": "binary",
                "metrics": {"val/acc": acc, "train/acc": acc + 0.05},
            },
        )
        for seed, acc in enumerate(accuracies)
    ]


def test_dpi_scales_the_pngs_and_formats_write_one_file_each(tmp_path):
    from PIL import Image

    groups = {("l1", lam): _runs("l1", lam, [0.8, 0.85, 0.9]) for lam in (1e-4, 1e-3)}
    sizes = {}
    for dpi in (100, 200):
        with figures.output(formats=("png", "svg"), dpi=dpi):
            path = figures.gap_vs_lambda(groups, tmp_path / f"gap_{dpi}.png")
        assert path == tmp_path / f"gap_{dpi}.png" and (tmp_path / f"gap_{dpi}.svg").is_file()
        with Image.open(path) as image:
            sizes[dpi] = image.size
    assert sizes[200][0] / sizes[100][0] == pytest.approx(2.0, rel=0.03)
    assert "<text" in (tmp_path / "gap_100.svg").read_text()  # svg.fonttype none: text stays text
    with pytest.raises(ValueError, match="not one of"):
        figures.Output(("jpg",))


def test_ci_band_of_five_seeds_is_the_student_t_interval_and_minmax_the_range():
    accuracies = [0.81, 0.86, 0.84, 0.90, 0.79]
    groups = {("l1", 1e-3): _runs("l1", 1e-3, accuracies), ("l1", 1e-2): _runs("l1", 1e-2, accuracies[:3])}
    (lam, mean, low, high, n), _ = figures.series(groups, "val/acc")["l1"]
    x = np.array(accuracies)
    half = T_975_4 * math.sqrt(((x - x.mean()) ** 2).sum() / 4) / math.sqrt(5)
    assert (lam, n) == (1e-3, 5)
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert (low, high) == (pytest.approx(x.mean() - half, rel=1e-12), pytest.approx(x.mean() + half, rel=1e-12))
    with figures.output(band="minmax"):
        (_, _, low, high, _), _ = figures.series(groups, "val/acc")["l1"]
    assert (low, high) == (0.79, 0.90)


def _drawn(draw, groups: dict, tmp_path: Path, monkeypatch) -> Any:
    """The figure `draw` makes, kept open for inspection."""
    kept = []
    monkeypatch.setattr(figures.plots, "save", lambda fig, path: kept.append(fig) or path)
    monkeypatch.setattr(figures.plt, "close", lambda fig=None: None)
    assert draw(groups, tmp_path / "figure.png") is not None
    return kept[0]


def test_one_lambda_per_regularizer_draws_a_point_chart_with_labels_and_n(tmp_path, monkeypatch):
    groups = {
        ("none", 0.0): _runs("none", 1e-3, [0.85, 0.88, 0.83, 0.9, 0.86]),
        ("l1", 1e-3): _runs("l1", 1e-3, [0.9, 0.93, 0.92]),
    }
    ax = _drawn(figures.accuracy_vs_lambda, groups, tmp_path, monkeypatch).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["None\nn=5", "L1\nλ=0.001\nn=3"]
    assert ax.get_xscale() == "linear" and not [
        line for line in ax.lines if len(line.get_xdata()) > 1 and line.get_linestyle() != "None"
    ]
    assert any("95% CI" in t.get_text() for t in ax.get_legend().get_texts())


def test_lambda_sweep_line_chart_tells_regularizers_apart_without_colour(tmp_path, monkeypatch):
    groups = {(reg, lam): _runs(reg, lam, [0.8, 0.85, 0.9]) for reg in ("l1", "l2") for lam in (1e-4, 1e-3, 1e-2)}
    ax = _drawn(figures.accuracy_vs_lambda, groups, tmp_path, monkeypatch).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("L1") and "n=3" in t for t in legend) and any(t.startswith("L2") for t in legend)
    validation = [line for line in ax.lines if len(line.get_xdata()) == 3 and line.get_linestyle() == "-"]
    assert len(validation) == 2 and validation[0].get_marker() != validation[1].get_marker()
    for table in (figures.MARKERS, figures.LINESTYLES, figures.HATCHES):
        assert len({repr(v) for v in table.values()}) == len(table)  # each regularizer its own
    assert figures.label("weight_decay") == "Weight decay (decoupled)" and figures.label("prox_l1") == "Proximal L1"


def test_every_rule_has_a_style_in_the_one_regularizer_order():
    from reglab.figures.style import STYLES
    from reglab.science.conventions import REGULARIZER_ORDER

    assert tuple(STYLES) == REGULARIZER_ORDER  # legends list the rules as the report's tables do


def test_an_online_start_that_fails_goes_offline_once_for_every_member_of_the_process(tmp_path, monkeypatch):
    """W&B online with no server (a closed port): one failed online start in the whole process, said
    once, and every member starts offline at once. The time this saves, 64 members against `logger=csv`, is measured
    by scripts/bench_wandb_fallback.py (docs/benchmarks.md), not here."""
    import socket

    import wandb

    from reglab import wandb_init
    from reglab.fit import fit

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(wandb_init, "_online_failed", False)
    modes: list[str] = []
    threads: list[str] = []
    real_init = wandb.init
    monkeypatch.setattr(
        wandb, "init", lambda **kw: modes.append(kw["mode"]) or threads.append(current_thread().name) or real_init(**kw)
    )
    overrides = ["logger=wandb", "logger.wandb.init_timeout_s=1", "logger.wandb.figures=null", "seed=[0,1]"]
    with pytest.warns(UserWarning, match="W&B online start failed") as warned:
        records = fit(make_config(tmp_path, [*overrides, "trainer.max_epochs=2", "data.n_samples=200"]))
    assert [r["status"] for r in records] == ["completed"] * 2 and all(r["attempts"] == 1 for r in records)
    assert len([w for w in warned if "W&B online start failed" in str(w.message)]) == 1
    # The refused connection is seen before wandb.init spends its timeout: both members start offline.
    assert modes == ["offline", "offline"]
    assert all(len(list((tmp_path / f"seed={k}" / "wandb").glob("offline-run-*"))) == 1 for k in range(2))
    # Started by the writer thread, off the training loop, and that thread is gone once fit returns.
    assert all(name.startswith("reglab-wandb") for name in threads)
    assert not [t for t in enumerate_threads() if t.name.startswith("reglab-wandb")]


def test_a_member_run_that_cannot_start_fails_the_fit_as_any_crash_does(wandb_env, tmp_path, monkeypatch):
    """The runs start in the writer thread while training goes on; a start that raises stops the fit at the
    end of the epoch it is seen in, and the attempt is retried and recorded failed like any other crash."""
    from reglab.fit import fit
    from reglab.lightning import loggers

    def refused(*args, **kwargs):
        raise RuntimeError("the W&B service did not start")

    monkeypatch.setattr(loggers, "start_run", refused)
    overrides = ["logger=wandb", "logger.wandb.figures=null", "seed=[0,1]", "retries=0", "trainer.max_epochs=2"]
    records = fit(make_config(tmp_path, [*overrides, "data.n_samples=200"]), multirun=True)
    assert [r["status"] for r in records] == ["failed"] * 2
    assert all("the W&B service did not start" in r["error"] for r in records)
    assert not [t for t in enumerate_threads() if t.name.startswith("reglab-wandb")]


def test_a_run_that_diverges_in_its_first_epoch_is_recorded_diverged_with_wandb(tmp_path):
    """`optimizer.lr=1e308` makes every weight NaN at once: W&B logs the epoch without a histogram
    of NaN (numpy refuses its range), and the run ends `diverged`, not in a crash."""
    from tests.conftest import train_run

    overrides = ["logger=wandb", "optimizer.lr=1e308", "data.n_samples=100", "trainer.max_epochs=2"]
    record = train_run(tmp_path / "run", overrides)
    assert record["status"] == "diverged" and record["diverged_epoch"] == 0


def test_a_stacks_members_figures_share_the_first_members_layout_and_log_axes_are_plain_text(
    stack, tmp_path, monkeypatch
):
    from reglab import report
    from reglab.figures import style

    run_dir, _ = stack
    members = [tmp_path / "stack" / f"seed={seed}" for seed in range(3)]
    for seed, member in enumerate(members):  # fresh copies: no PNG drawn yet
        shutil.copytree(run_dir / f"seed={seed}", member, ignore=shutil.ignore_patterns("*.png", "wandb"))
    drawn: list[tuple[str, str, list, list[str]]] = []
    save = style.save

    def spy(fig, path):
        written = save(fig, path)
        engine = type(fig.get_layout_engine()).__name__
        labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
        drawn.append((path.name, engine, [ax.get_position().bounds for ax in fig.axes], labels))
        return written

    monkeypatch.setattr(figures.plots, "save", spy)
    for member in members:
        assert [p.name for p in report.member_figures(member)] == ["decision_boundary.png", "weight_histogram.png"]
    for name in ("decision_boundary.png", "weight_histogram.png"):
        first, *others = [d for d in drawn if d[0] == name]
        assert first[1] == "ConstrainedLayoutEngine" and len(others) == 2
        for other in others:  # laid out once: the first member's positions, no layout engine
            assert other[1] == "NoneType" and other[2] == first[2]  # no layout engine: savefig draws once
    histogram_labels = [label for d in drawn if d[0] == "weight_histogram.png" for label in d[3]]
    assert "10⁰" in histogram_labels and not any("$" in label for label in histogram_labels)
    assert [style.decade(v) for v in (1e-3, 1.0, 100.0, 0.002)] == ["10⁻³", "10⁰", "10²", "0.002"]
