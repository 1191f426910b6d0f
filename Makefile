# reglab: `make run` reproduces the article's experiment, `make test` runs the tests.
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch this project is tested with; skipped when a GPU is present, so a
# CUDA build installed beforehand is kept.
TORCH_CPU := torch==2.13.0
ARGS ?=
DIR ?= logs/multiruns/l1_vs_none
N ?= 2000

.DEFAULT_GOAL := help
.PHONY: help install run train report test fuzz bench-smoke lint mutate clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	command -v nvidia-smi >/dev/null 2>&1 || $(BIN)/pip install -q $(TORCH_CPU)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install reglab with its dev tools

run: install ## the main job: the article's experiment (no regularization vs L1 1e-3) and its report
	$(BIN)/reglab-train -m experiment=l1_vs_none $(ARGS)

train: install ## one training run on defaults; pass overrides as ARGS="regularizer=l1 data=circles"
	$(BIN)/reglab-train $(ARGS)

report: install ## report of a run or sweep directory: make report DIR=logs/multiruns/l1_vs_none
	$(BIN)/reglab-report $(DIR)

test: install ## the test suite (CPU, a few minutes; two workers, one torch thread each: these models are too small to share)
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 --dist loadfile --durations=15 -m "not bench" $(ARGS)

fuzz: install ## generated command lines by the thousand: each refused in one line or passing the preflight (not CI; N=2000)
	WANDB_MODE=offline OMP_NUM_THREADS=1 REGLAB_FUZZ_EXAMPLES=$(N) $(BIN)/pytest -q -n 2 tests/test_fuzz_command_lines.py

bench-smoke: install ## the benchmark scripts at toy size: they run and print finite tables (CI runs this after test)
	WANDB_MODE=offline OMP_NUM_THREADS=1 $(BIN)/pytest -q -n 2 -m bench tests/test_benchmarks_smoke.py

lint: install ## ruff and mypy
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/mypy

# What `make mutate` mutates: all of science/ but datasets.py (pyproject.toml, [tool.mutmut]), and
# of module.py, runs.py and rundir.py only these functions (mutmut's names; `?` stands for the ǁ in a method's).
MUTANTS := 'reglab.science.*' \
	'reglab.lightning.module.x?RegLabModule?_step__mutmut_*' \
	'reglab.lightning.module.x?RegLabModule?regularized_loss__mutmut_*' \
	'reglab.lightning.module.x?RegLabModule?clip_member_gradients__mutmut_*' \
	$(foreach f,mean_ci seed_groups varying_keys results_table,'reglab.runs.x_$(f)__mutmut_*') \
	'reglab.rundir.x_flatten__mutmut_*'

mutate: install ## mutation testing of the science, the training step and the report (slow, not CI; docs/testing.md)
	rm -rf mutants
	OMP_NUM_THREADS=1 WANDB_MODE=offline $(BIN)/mutmut run --max-children 1 $(MUTANTS)
	$(BIN)/mutmut results | grep -v 'not checked' || true  # the survivors; the rest of module.py, runs.py and rundir.py is not checked

clean: ## remove the venv, caches and outputs
	rm -rf $(VENV) logs outputs multirun wandb mutants .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
