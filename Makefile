# Every target creates (or reuses) the local virtualenv $(VENV) and installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dmt-installed
# Colab/GPU users keep their own torch. Without an NVIDIA GPU the CPU build is taken
# from PyTorch's wheel index where that is reachable (about 0.2 GB instead of the
# default build's 3 GB of CUDA libraries), else from the default index, with a note.
TORCH_SPEC ?= torch torchvision
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
# torch and torchvision built for each other (a CPU torch with a CUDA torchvision fails here)
TORCH_WORKS := import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
PYTEST_ARGS ?=

.PHONY: venv tutorial ablation notebooks demo test lint bench lab clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if ! $(PY) -c "$(TORCH_WORKS)" 2>/dev/null; then \
	  if [ -n "$(TORCH_INDEX)" ] && $(PY) -m pip install --quiet --retries 0 --timeout 15 \
	      --index-url $(TORCH_INDEX) $(TORCH_SPEC) 2>/dev/null && $(PY) -c "$(TORCH_WORKS)" 2>/dev/null; then \
	    echo "installed the CPU build of torch from $(TORCH_INDEX)"; \
	  else \
	    [ -z "$(TORCH_INDEX)" ] || { echo "note: no working CPU build of torch from $(TORCH_INDEX); installing torch from the default index (its CUDA build is about 3 GB larger)"; \
	      $(PY) -m pip uninstall --quiet -y torch torchvision 2>/dev/null; }; \
	    $(PY) -m pip install --quiet $(TORCH_SPEC); \
	  fi; \
	fi
	$(PY) -m pip install --quiet -e ".[test,notebooks]"
	touch $(STAMP)

venv: $(STAMP)

LINTED := dmt_core tests benchmarks notebooks

## the main job: the whole notebook series on the built-in synthetic data (papermill,
## CPU) -> runs/tutorial/ (executed notebooks, summary.md, summary.json); 09's
## ablation runs two variants for 200 steps each here (the full sweep: make ablation)
TUTORIAL_ABLATION ?= -p variants full,no_r2r -p budget "200 steps"
tutorial: $(STAMP)
	$(PY) notebooks/run_series.py --out runs/tutorial $(TUTORIAL_ABLATION)

## 09's default sweep (seven variants, 1,200 steps each, ~53 min on 2 cores) -> runs/ablation/
ablation: $(STAMP)
	$(PY) notebooks/run_series.py --out runs/ablation --only 09

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
