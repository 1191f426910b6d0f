"""Every command in the README (and in docs/wandb.md, cluster.md, report.md) runs as written.

Each `reglab-train` line is parsed by Hydra's own argument parser, every job it describes is composed
with Hydra's config (`--cfg hydra`: a misspelt key, `hydra.*` ones included, fails), and
`reglab.train.command_line_error` builds every job in memory and takes a step, as the command line
does before it trains (a line that needs a GPU is only composed on a machine without one). An
error a console block quotes is the error that command gives. `reglab-report` and `reglab-eval`
lines are parsed by their own argparse parsers, `make` lines name Makefile targets, repository
paths exist, and the README's Python blocks run (slow: they train four tiny networks), followed by
its `reglab-eval` lines on the run they trained. The Set-up's activation line, run in a plain shell
(`env -i`), puts `reglab-train` on the PATH. Relative links resolve, and the code map names the
files `src/reglab` holds.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [
    README,
    *(ROOT / "docs" / name for name in ("wandb.md", "cluster.md", "report.md", "conventions.md", "data.md")),
]
SHELL = {"bash", "sh", "console", "shell"}
# Commands of other tools the docs show; anything else in a shell block is a command this test must learn.
OTHER_TOOLS = {"wandb", "find", "rsync", "source", "squeue", "tensorboard"}
REPO_PATH = re.compile(r"^(?:configs|docs|scripts|src|tests)/[\w./-]+$")
GIT_IGNORED = {"configs/local/default.yaml"}  # yours to create: the README says it is git-ignored


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    text: str


@dataclass
class Command:
    where: str
    argv: list[str]
    expected: str | None = None  # the output a console block shows after the command


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, indented ones (in a list item) included."""
    found, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^( *)```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        indent, lang, start, body = opening[1], opening[2], i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        found.append(Block(path, start, lang, "\n".join(body) + "\n"))
        i += 1
    return found


def commands(block: Block) -> list[Command]:
    """The command lines of a shell block: continuation lines joined, comments dropped; in a
    console block, the `$ ` lines, each with the output lines after it."""
    where = f"{block.path.relative_to(ROOT)}:{block.line}"
    if block.lang == "console":
        found: list[Command] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                found.append(Command(where, shlex.split(line[2:], comments=True)))
            elif found and line.strip():
                found[-1].expected = ((found[-1].expected or "") + "\n" + line).strip()
        return found
    joined = block.text.replace("\\\n", " ")
    return [Command(where, argv) for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def all_commands(paths: list[Path]) -> list[Command]:
    return [c for path in paths for b in blocks(path) if b.lang in SHELL for c in commands(b)]


def program(argv: list[str]) -> tuple[str, list[str]]:
    """The program and its arguments, environment assignments (`OMP_NUM_THREADS=1 …`) dropped."""
    while argv and re.match(r"^[A-Z_][A-Z0-9_]*=", argv[0]):
        argv = argv[1:]
    if argv[:3] == ["python", "-m", "reglab.train"]:
        return "reglab-train", argv[3:]
    return argv[0], argv[1:]


def _id(command: Command) -> str:
    return f"{command.where} {' '.join(command.argv)}"[:100]


COMMANDS = all_commands(DOCS)
TRAIN = [c for c in COMMANDS if program(c.argv)[0] == "reglab-train"]


# --- reglab-train -----------------------------------------------------------------------------


def hydra_jobs(args: argparse.Namespace) -> list[list[str]]:
    """The overrides of each job the command line describes (one, or a multirun's grid)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not args.multirun:
        return [args.overrides]
    parsed = OverridesParser.create().parse_overrides(args.overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_job(overrides: list[str]) -> DictConfig:
    """The job's config with Hydra's own (`--cfg all`): Hydra refuses a key the config lacks."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from reglab.train import CONFIG_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def check_train_command(args: list[str]) -> str | None:
    """None if `reglab-train args` would start training, else why not, in one line."""
    import torch
    from hydra._internal.utils import get_args_parser

    from reglab.train import command_line_error

    try:
        parsed = get_args_parser().parse_args(args)
    except SystemExit:
        return f"Hydra's parser refuses {args}"
    if parsed.config_dir or parsed.config_path or parsed.config_name or parsed.experimental_rerun:
        return "this test cannot check a command with another config (-cp, -cn, --config-dir, --experimental-rerun)"
    needs_gpu = False
    for job in hydra_jobs(parsed):
        try:
            cfg = compose_job(job)
        except Exception as e:  # Hydra's composition errors have several types
            return f"{job}: {type(e).__name__}: {' '.join(str(e).split())}"
        needs_gpu |= cfg.trainer.get("accelerator") in ("gpu", "cuda")
    if needs_gpu and not torch.cuda.is_available():
        return None  # composed (the `--cfg job` form); building a GPU trainer needs a GPU
    return command_line_error((["-m"] if parsed.multirun else []) + parsed.overrides)


@pytest.mark.parametrize("command", TRAIN, ids=_id)
def test_every_reglab_train_line_of_the_docs_starts(command):
    _, args = program(command.argv)
    if command.expected is not None:  # a console block: the command and the one line it stops with
        from reglab.train import command_line_error

        assert command.expected.startswith("error: "), command.expected
        said, quoted = command_line_error(args), command.expected.removeprefix("error: ")
        assert said is not None, f"{command.where}: this command gives no error now"
        assert said.startswith(quoted[:-1]) if quoted.endswith("…") else said == quoted, (command.where, said)
        return
    assert check_train_command(args) is None, command.where


@pytest.mark.parametrize(
    "args",
    [
        ["regularizer=l1", "regularizer.strenght=1e-4"],  # a misspelt key
        ["-m", "regularizer=l1,l3"],  # a misspelt choice in a sweep
        ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_nod=1"],  # a misspelt Hydra key
        ["regularizer=l1", "regularizer.strength=-0.1"],  # a bad value
        ["--cfgg", "job"],  # a misspelt flag
        ["trainer=gpu", "trainer.precison=bf16-mixed"],  # misspelt in a line that needs a GPU
    ],
    ids=" ".join,
)
def test_a_misspelt_command_fails_this_check(args):
    assert check_train_command(args) is not None


def test_the_docs_show_the_commands_this_test_checks():
    """The parser finds them: in continuation lines, in a list item's console block, after `VAR=`."""
    lines = [" ".join(c.argv) for c in TRAIN]
    assert len(TRAIN) >= 15 and all(c.argv for c in COMMANDS)
    assert any("hydra.launcher.cpus_per_task=1" in line and "experiment=lambda_sweep" in line for line in lines)
    assert any(c.expected and "regularizer.strength=-0.1" in c.argv for c in TRAIN)
    assert any(c.argv[0] == "OMP_NUM_THREADS=1" for c in TRAIN)


# --- the other commands -----------------------------------------------------------------------


def test_the_readmes_activation_line_puts_its_commands_on_the_path_of_a_plain_shell(tmp_path):
    """The line of "Set-up" that activates `.venv`, run as written in a shell with nothing of this
    session's environment (`env -i`): before it `reglab-train` is not found, after it `--help` runs.
    `.venv` is the interpreter's own venv (make's `.venv`, or a checkout that shares another)."""
    import os
    import subprocess
    import sys

    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run from a venv")
    text = README.read_text()
    setup = text[text.index("## Set-up") : text.index("\n## ", text.index("## Set-up"))]
    (line,) = [shlex.join(c.argv) for c in all_commands([README]) if c.argv[0] == "source"]
    assert line in setup, f"{line!r} is not in the README's Set-up"
    (tmp_path / ".venv").symlink_to(sys.prefix)  # where the line expects it, as after `make install`

    def plain_shell(script: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path))}
        return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", script],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip

    before = plain_shell("reglab-train --help")
    assert before.returncode == 127 and "command not found" in before.stderr, before
    after = plain_shell(f"{line} && command -v reglab-report reglab-eval python >/dev/null && reglab-train --help")
    assert after.returncode == 0, after.stderr[-2000:]
    assert after.stdout.startswith("train is powered by Hydra") and "regularizer: " in after.stdout, after.stdout[:2000]


class _Parsed(Exception):
    pass


def parse_with_main(main: Callable[[list[str]], None], args: list[str], monkeypatch) -> argparse.Namespace:
    """What the entry point's own argparse parser makes of `args`, without running it."""

    def parse_args(self, argv=None, namespace=None):
        raise _Parsed(original(self, argv, namespace))

    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    with pytest.raises(_Parsed) as parsed:
        main(args)
    return parsed.value.args[0]


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("command", [c for c in COMMANDS if program(c.argv)[0] != "reglab-train"], ids=_id)
def test_every_other_command_of_the_docs_parses(command, monkeypatch):
    name, args = program(command.argv)
    for word in command.argv:
        path = word.split("=", 1)[-1]
        if REPO_PATH.match(path) and path not in GIT_IGNORED:
            assert (ROOT / path).exists(), f"{command.where}: {path} does not exist"
    if name == "reglab-report":
        from reglab.report import main

        assert parse_with_main(main, args, monkeypatch).directory
    elif name == "reglab-eval":
        from reglab.evaluate import main

        assert parse_with_main(main, args, monkeypatch).run_dir
    elif name == "make":
        targets = [a for a in args if "=" not in a]
        assert targets and set(targets) <= make_targets(), f"{command.where}: no such Makefile target"
    else:
        assert name in OTHER_TOOLS, f"{command.where}: {name} is neither reglab's nor a tool this test knows"


def test_a_misspelt_flag_fails_the_report_and_eval_checks(monkeypatch):
    from reglab.evaluate import main as eval_main
    from reglab.report import main as report_main

    with pytest.raises(SystemExit):
        parse_with_main(report_main, ["logs/x", "--formats", "pdf"], monkeypatch)
    with pytest.raises(SystemExit):
        parse_with_main(eval_main, ["logs/x", "--seed", "7"], monkeypatch)
    assert parse_with_main(report_main, ["logs/x", "--format", "pdf", "--dpi", "300"], monkeypatch).dpi == 300


def test_make_help_lists_every_target_of_the_makefile():
    (listed,) = re.findall(r"make help +# every target: ([\w, -]+)", README.read_text())
    assert set(listed.replace(",", " ").split()) == make_targets() - {"help"}


# --- Python blocks ----------------------------------------------------------------------------


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang == "python"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_python_block_compiles(path):
    for block in python_blocks(path):
        compile(block.text, f"{path.name}:{block.line}", "exec")


@pytest.mark.slow
def test_the_readmes_python_blocks_run_and_its_reglab_eval_lines_evaluate_what_they_trained(tmp_path, monkeypatch):
    from reglab.evaluate import main as eval_main

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(README):
        if "# not run by tests" not in block.text:
            exec(compile(block.text, f"README.md:{block.line}", "exec"), namespace)
    assert namespace["trained"].predict([[0.0, 0.5]]).shape == (1,)
    assert namespace["trained"].predict_proba([[0.0, 0.5]]).shape == (1, 2)
    member = Path(namespace["table"]["run_dir"].iloc[0])
    evals = [program(c.argv)[1] for c in all_commands([README]) if program(c.argv)[0] == "reglab-eval"]
    assert evals
    for args in evals:
        eval_main([str(member) if a == "logs/runs/<run>" else a for a in args])
        assert (member / "eval.json").is_file()


# --- links and names --------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    return {m[1] for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


@pytest.mark.parametrize("path", [README, *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"^[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.exists(), f"{path.name}: {target}"
        if anchor:
            assert anchor in {slug(h) for h in headings(resolved)}, f"{path.name}: {target}"


def test_the_sections_the_code_points_to_exist():
    """Docstrings and config comments say `README, "Conventions"` or `docs/wandb.md, "W&B sweeps"`:
    that file must have that heading."""
    pointers = set()
    for source in [*ROOT.glob("src/reglab/**/*.py"), *ROOT.glob("configs/**/*.yaml"), *ROOT.glob("tests/*.py")]:
        found = re.findall(r'(README|docs/[\w-]+\.md),\s+(?:section\s+)?"([^"]+)"', source.read_text())
        pointers |= {(f"{doc}.md" if doc == "README" else doc, section, source.name) for doc, section in found}
    assert ("README.md", "Conventions") in {(doc, section) for doc, section, _ in pointers}
    missing = [p for p in pointers if p[1] not in headings(ROOT / p[0])]
    assert not missing, sorted(missing)


def test_the_readmes_repository_paths_exist():
    for path in re.findall(r"`([^`\s]+)`", README.read_text()):
        if REPO_PATH.match(path) and path not in GIT_IGNORED:
            assert (ROOT / path).exists(), path


def test_the_code_map_names_every_module_and_only_modules_that_exist():
    text = README.read_text()
    code_map = text[text.index("## Code map") :].split("\n\n")[1]
    named = {m.rstrip(".,;:") for m in re.findall(r"(src/reglab/[\w/.]+)", code_map)}
    for package in ("lightning", "science"):
        (line,) = [ln for ln in code_map.split("\n    src/") if ln.startswith(f"reglab/{package}/")]
        named |= {f"src/reglab/{package}/{name}" for name in re.findall(r"(\w+\.py)", line)}
    assert all((ROOT / name).exists() for name in named), sorted(n for n in named if not (ROOT / n).exists())
    modules = {f"src/{p.relative_to(ROOT / 'src').as_posix()}" for p in (ROOT / "src/reglab").glob("*.py")}
    modules |= {f"src/{p.relative_to(ROOT / 'src').as_posix()}" for p in (ROOT / "src/reglab").glob("*/*.py")}
    modules = {m for m in modules if not m.endswith("/__init__.py") or m == "src/reglab/__init__.py"}
    unnamed = {m for m in modules if m not in named and not any(m.startswith(n) for n in named if n.endswith("/"))}
    assert not unnamed, sorted(unnamed)
    # lightning/ and science/ list their files: each one, not the folder alone
    listed = {m for m in modules if m.startswith(("src/reglab/lightning/", "src/reglab/science/"))}
    assert listed <= named, sorted(listed - named)


def test_the_readme_is_at_most_300_lines():
    assert len(README.read_text().splitlines()) <= 300
