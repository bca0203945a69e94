# Every target creates (or reuses) the local virtualenv $(VENV) and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dmt-installed
# Colab/GPU users keep their own torch; here pip's constraints pick the local build.
TORCH_SPEC ?= torch torchvision
PYTEST_ARGS ?=

.PHONY: venv tutorial demo test test-fast lint bench lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $(STAMP)

venv: $(STAMP)

## the main job: the tutorial on the built-in synthetic data (CPU)
tutorial: $(STAMP)
	$(PY) -m dmt_core demo

demo: tutorial

## lint + the whole test suite (what CI runs)
test: $(STAMP)
	$(VENV)/bin/ruff check dmt_core tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check dmt_core tests benchmarks
	$(VENV)/bin/ruff format --check dmt_core tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_inference.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
