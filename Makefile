# Every target creates (or reuses) the local virtualenv $(VENV) and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dmt-installed
# Colab/GPU users keep their own torch; here pip's constraints pick the local build.
TORCH_SPEC ?= torch torchvision
PYTEST_ARGS ?=

.PHONY: venv tutorial notebooks demo test lint bench lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $(STAMP)

venv: $(STAMP)

LINTED := dmt_core tests benchmarks notebooks

## the main job: the whole notebook series on the built-in synthetic data (papermill,
## CPU, ~8 min) -> runs/tutorial/ (executed notebooks, summary.md, summary.json)
tutorial: $(STAMP)
	$(PY) notebooks/run_series.py --out runs/tutorial

## re-execute the notebooks in place and store their outputs (what GitHub shows)
notebooks: $(STAMP)
	$(PY) notebooks/run_series.py --in-place

## a one-minute smoke test of both model presets on random input
demo: $(STAMP)
	$(PY) -m dmt_core demo

## lint + the whole test suite: package tests, notebooks under nbval (what CI runs)
test: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

bench: $(STAMP)
	$(PY) benchmarks/bench_inference.py

## JupyterLab on the notebooks (as root, e.g. in a container, with --allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
