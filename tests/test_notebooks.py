"""The notebook series: its conventions (static checks) and a papermill run of 06_training.

The notebooks themselves run under nbval (``pytest --nbval-lax notebooks/``, part of
``make test``); these tests check what nbval does not: the structure every notebook
promises, and that papermill parameters reach the training notebook.
"""

from __future__ import annotations

import json
import re
import sys
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
    "09_ablation",
]
sys.path.insert(0, str(NOTEBOOKS))
import run_series  # noqa: E402
import sync_notebooks  # noqa: E402

COLAB = sync_notebooks.badge(sync_notebooks.repository_url(), "").split("](", 1)[1].rstrip(")")


def test_the_series_is_complete():
    assert [p.stem for p in BOOKS] == EXPECTED


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    first = cells[0].source
    assert cells[0].cell_type == "markdown" and first.startswith(f"# {path.stem[:2]} · ")
    assert f"({COLAB}{path.name})" in first, "Colab badge must link to this notebook"
    assert "What you will learn" in first and sync_notebooks.BLOCK_START in first
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
    assert all(c.get("id") for c in cells), "every cell needs an id (sync_notebooks.py adds them)"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any(k.startswith("image/") for c in code for o in c.outputs for k in o.get("data", {}))
    # deterministic cells are compared by nbval: the marker must be a line of its own
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in c.source.splitlines()]
    assert len(checked) >= 1
    # a summary, then exercises, then the references (written by sync_notebooks.py)
    md = [c.source for c in cells if c.cell_type == "markdown"]
    summary = next(i for i, t in enumerate(md) if re.search(r"^## Summary$", t, re.M))
    exercises = next(i for i, t in enumerate(md) if re.search(r"^## Exercises$", t, re.M))
    assert summary <= exercises < len(md) - 1 and md[-1].startswith("## References")


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


def test_make_installs_the_cpu_build_of_torch_without_an_nvidia_gpu(tmp_path):
    """No nvidia-smi on PATH: the CPU wheel index (with the default index as fallback);
    with one: the default index only (the CUDA build)."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = NOTEBOOKS.parent
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\n")
    (fake / "nvidia-smi").chmod(0o755)
    plain_path = ":".join(
        p for p in os.environ["PATH"].split(":") if not Path(p, "nvidia-smi").exists()
    )
    runs = {}
    for name, path in (("cpu", plain_path), ("gpu", f"{fake}:{plain_path}")):
        env = {**os.environ, "PATH": path, "VENV": str(tmp_path / "venv")}
        res = subprocess.run(
            ["make", "-n", "venv"], cwd=root, capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, res.stderr
        runs[name] = res.stdout
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs["cpu"]
    assert "no working CPU build of torch from" in runs["cpu"]
    assert "torchvision.ops.nms" in runs["cpu"]  # the pair is checked, not just imported
    assert "--index-url https://" not in runs["gpu"] and '[ -n "" ]' in runs["gpu"]


def test_make_tutorial_runs_a_short_ablation():
    """The tutorial stays minutes long: 09 runs two variants for a few hundred steps
    there, not its hour-long default sweep (make ablation)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    res = subprocess.run(  # under make test, make prints "make[1]: Entering directory" lines
        ["make", "-n", "--no-print-directory", "tutorial"],
        cwd=NOTEBOOKS.parent, capture_output=True, text=True,
    )  # fmt: skip
    cmd = next(line for line in res.stdout.splitlines() if "run_series.py" in line)
    assert "run_series.py --out runs/tutorial" in cmd
    assert "-p variants full,no_r2r" in cmd and '-p budget "200 steps"' in cmd


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


# ---------------------------------------------------------------- stored-output hygiene
STORED_LIMIT = 6_000_000  # bytes, the whole series as committed
FIGURE_CALL = re.compile(
    r"^(\w+(, \w+)* = )?(plt\.subplots|plt\.subplot_mosaic|plt\.figure|plot_group|sns\.\w*plot"
    r"|sns\.clustermap|sns\.heatmap)\(",
    re.M,
)


def _texts(output) -> str:
    if "text" in output:
        return "".join(output["text"])
    return "".join(output.get("data", {}).get("text/plain", ""))


def test_the_stored_series_is_small():
    sizes = {p.name: p.stat().st_size for p in BOOKS}
    assert sum(sizes.values()) <= STORED_LIMIT, sizes


def test_the_repository_url_badges_metadata_and_readme_table_agree_with_their_sources():
    """One URL (pyproject's [project.urls]) for every badge and clone cell; each notebook's
    metadata block and the README table written from metadata.dmt."""
    assert sync_notebooks.sync(check=True) == []


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_stored_outputs_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        images = [o for o in cell.outputs if any(k.startswith("image/") for k in o.get("data", {}))]
        for o in cell.outputs:
            text = _texts(o)
            data = o.get("data", {})
            # a stray return value: Text(...) of a suptitle, the int of write_text, ...
            assert not (o.output_type == "execute_result" and set(data) == {"text/plain"}), (
                f"cell {i} stores the return value {text[:60]!r}: assign it or end with ;"
            )
            has_image = any(k.startswith("image/") for k in data)
            assert has_image or "<Figure size" not in text, f"cell {i}: a figure stored as its repr"
            # a progress bar frozen at its first frame (the live widget is gone)
            frozen = "application/vnd.jupyter.widget-view+json" in data or o.output_type == "stream"
            assert not (frozen and run_series.PROGRESS_BAR.search(text)), (
                f"cell {i} stores a progress bar: {text[:60]!r}"
            )
        if FIGURE_CALL.search(cell.source) and "NBVAL_IGNORE_OUTPUT" not in cell.source:
            assert images, f"cell {i} draws a figure but stores no image"


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_ratio_colour_scales_do_not_go_below_zero(path):
    """A ratio to uniform is >= 0: a diverging scale centred at 1 must be logarithmic
    (viz.ratio_norm or log2), not 1 - spread .. 1 + spread."""
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        src = cell.source
        if cell.cell_type == "code" and "uniform" in src and "RdBu_r" in src:
            assert "ratio_norm(" in src or "log2(" in src or "vmin=0," in src, f"cell {i}"
            assert "1 - spread" not in src and "2 - vmax" not in src, f"cell {i}"


def test_the_runner_drops_live_progress_bars_and_widget_state():
    bar = nbformat.v4.new_output(
        "display_data",
        data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
              "text/plain": "predict:   0%|          | 0/181 [00:00<?, ?img/s]"},
    )  # fmt: skip
    widget = nbformat.v4.new_output(
        "display_data",
        data={"application/vnd.jupyter.widget-view+json": {"model_id": "y"},
              "text/plain": "interactive(children=(Dropdown(...),))"},
    )  # fmt: skip
    cell = nbformat.v4.new_code_cell("x", outputs=[bar, widget])
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"widgets": {"state": {}}})
    run_series.clean_outputs(nb)
    assert nb.cells[0].outputs == [widget] and "widgets" not in nb.metadata


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_exercises_have_collapsed_checked_solutions_that_ran(path):
    """Every notebook ends with exercises: "**k.**" questions (k = 1, 2, ...; at least two),
    each followed by an answer cell (``answer_k = None``) and a collapsed solution cell that
    calls ``check("exercise k", answer_k, ...)`` and was run (its output says so)."""
    cells = nbformat.read(path, as_version=4).cells
    heads = [i for i, c in enumerate(cells) if c.source.startswith("## Exercises")]
    assert len(heads) == 1, "one '## Exercises' cell"
    ends = [i for i, c in enumerate(cells) if c.source.startswith("## References")]
    section = cells[heads[0] + 1 : ends[0] if ends else len(cells)]
    questions = [i for i, c in enumerate(section) if c.cell_type == "markdown"]
    assert len(questions) >= 2 and len(section) == 3 * len(questions), "question, answer, solution"
    for k, i in enumerate(questions, start=1):
        question, answer, solution = section[i : i + 3]
        assert question.source.startswith(f"**{k}.**") and "(Answer:" in question.source, k
        assert re.match(rf"answer_{k} = None", answer.source), f"exercise {k}: answer cell"
        assert "solution" in solution.metadata.get("tags", []), f"exercise {k}: tag"
        hidden = solution.metadata.get("jupyter", {})
        assert hidden.get("source_hidden") and hidden.get("outputs_hidden"), f"exercise {k}"
        assert re.search(rf'check\("exercise {k}", [^\n]*answer_{k}', solution.source), k
        text = "".join(_texts(o) for o in solution.outputs)
        assert re.search(rf"exercise {k}: (no answer yet|correct|not quite)", text), k
        assert "solution:" in text, f"exercise {k}: the solution states its result"
    tagged = [c for c in cells if "solution" in c.metadata.get("tags", [])]
    assert len(tagged) == len(questions), "solution cells only in the exercises section"
