"""The notebook series: its conventions (static checks) and a papermill run of 06_training.

The notebooks themselves run under nbval (``pytest --nbval-lax notebooks/``, part of
``make test``); these tests check what nbval does not: the structure every notebook
promises, and that papermill parameters reach the training notebook.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
BOOKS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = [
    "00_quickstart",
    "01_data_grouping",
    "02_region_to_region",
    "03_contrast_pixel_to_token",
    "04_token_to_token",
    "05_feature_refinement",
    "06_training",
    "07_evaluation",
    "08_attention_analysis",
]
COLAB = "https://colab.research.google.com/github/dmt-tutorial/dmt-tutorial/blob/main/notebooks/"


def test_the_series_is_complete():
    assert [p.stem for p in BOOKS] == EXPECTED


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    first = cells[0].source
    assert cells[0].cell_type == "markdown" and first.startswith(f"# {path.stem[:2]} · ")
    assert f"({COLAB}{path.name})" in first, "Colab badge must link to this notebook"
    assert "What you will learn" in first and "Runs in" in first
    # the Colab-only setup cell, before any other code
    code = [c for c in cells if c.cell_type == "code"]
    assert '"google.colab" in sys.modules' in code[0].source
    assert "%pip install" in code[0].source and "torch" not in code[0].source.split("%pip")[1]
    # exactly one parameters cell; its defaults read DMT_NB_* variables
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for line in params[0].source.splitlines():
        m = re.match(r"^(\w+) = (.*)$", line)
        if m:
            assert "DMT_NB_" in m.group(2), line
    # stored executed, with outputs and counts, without widget state
    assert all(c.execution_count is not None for c in code), "store notebooks executed"
    assert "widgets" not in nb.metadata
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    # deterministic cells are compared by nbval: the marker must be a line of its own
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in c.source.splitlines()]
    assert len(checked) >= 1
    # ends with a summary and exercises
    tail = "\n".join(c.source for c in cells[-3:] if c.cell_type == "markdown")
    assert "## Summary" in tail and "## Exercises" in tail


def test_training_notebook_runs_with_papermill_parameters(tmp_path):
    import papermill as pm

    out = tmp_path / "run"
    pm.execute_notebook(
        str(NOTEBOOKS / "06_training.ipynb"),
        str(tmp_path / "06_training.ipynb"),
        parameters={
            "output_dir": str(out),
            "max_steps": 3,
            "preset": "tiny",
            "train_data": str(tmp_path / "nowhere"),  # missing: falls back to synthetic
            "time_budget": 120,
            "train_groups": 8,
            "val_every": 0,
        },
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["preset"] == "tiny" and metrics["device"] == "cpu"
    assert metrics["train_data"] == [str(out / "synthetic_train_8")]
    assert 0 <= metrics["val_Sm"] <= 1 and metrics["seconds"] > 0
    executed = nbformat.read(tmp_path / "06_training.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "not found: training on the synthetic benchmark instead" in text


def test_the_series_runner_starts_kernels_without_the_tcp_warning(tmp_path):
    """The runner's kernels use IPC sockets: make tutorial prints no "running over TCP
    without encryption" warning for each notebook (the default TCP kernel does), and the
    kernel is found when it runs in another folder than the client (make notebooks runs
    from the repository root, the kernels in notebooks/)."""
    import subprocess
    import sys

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nbformat.write(nb, tmp_path / "in.ipynb")
    (tmp_path / "kernel_cwd").mkdir()
    code = (  # as run_series --in-place: nbclient, the kernel started in another folder
        "import sys, nbformat; from nbclient import NotebookClient; "
        "from dmt_core.nbrun import ipc_kernel_manager; nb = nbformat.read(sys.argv[1], 4); "
        "NotebookClient(nb, kernel_name='python3', kernel_manager_class=ipc_kernel_manager(),"
        " startup_timeout=30, resources={'metadata': {'path': sys.argv[3]}}).execute(); "
        "nbformat.write(nb, sys.argv[2])"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"),
         str(tmp_path / "kernel_cwd")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-500:]
    assert "without encryption" not in res.stderr + res.stdout
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"].strip() == "42"
    assert not list((tmp_path / "kernel_cwd").iterdir())  # no socket files left in the folder


def test_make_lab_allows_root_only_for_root():
    """Jupyter refuses to start as root without --allow-root (most containers run as root)."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    res = subprocess.run(["make", "-n", "lab"], cwd=NOTEBOOKS.parent, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    lab = [line for line in res.stdout.splitlines() if "jupyter lab" in line]
    assert lab, res.stdout
    assert ("--allow-root" in lab[-1]) == (os.geteuid() == 0)
