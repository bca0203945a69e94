"""Run the notebook series top to bottom.

    python notebooks/run_series.py --out runs/tutorial          # the tutorial (make tutorial)
    python notebooks/run_series.py --in-place                   # refresh the stored outputs
    python notebooks/run_series.py --out runs/x --only 06 07 -p time_budget 60

Default mode: papermill executes each notebook into ``OUT/NN_topic.ipynb`` with its
working files under ``OUT/work/NN_topic/`` (the ``output_dir`` parameter), then writes
``OUT/summary.json`` and ``OUT/summary.md``: status and seconds per notebook, and the
training metrics that ``06_training`` records. ``-p NAME VALUE`` is passed to every
notebook that declares the parameter (values are parsed as YAML: 60, true, "x").

``--in-place`` (``make notebooks``) executes the notebooks with their own defaults and
stores them with their outputs and execution counts, the widget state stripped (it
stops GitHub from rendering a notebook). A failing notebook stops the run with its
error; the partly executed notebook is kept for inspection (papermill mode).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import sync_notebooks
import yaml

from dmt_core.nbrun import TIMEOUT, declared_parameters, ipc_kernel_manager, run_notebook

HERE = Path(__file__).resolve().parent


def series(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_topic.ipynb``, in order (optionally a subset by number)."""
    books = sorted(p for p in HERE.glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [p for p in books if p.name[:2] in only or p.stem in only]
        if not books:
            raise SystemExit(f"--only {only}: no such notebook in {HERE}")
    return books


PROGRESS_BAR = re.compile(r"\d+%\||\d+\w* \[\d\d:\d\d")  # tqdm's text: "42%|" or "0step [00:00"


def clean_outputs(nb: nbformat.NotebookNode) -> None:
    """What a stored notebook should not carry: widget state (GitHub cannot render a
    notebook with it) and live progress bars, whose stored text is their first frame
    ("0%|", "0step [00:00, ?step/s]") since the widget state that held the last is gone."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [
            o
            for o in cell.outputs
            if not (
                "application/vnd.jupyter.widget-view+json" in o.get("data", {})
                and PROGRESS_BAR.search(o["data"].get("text/plain", ""))
            )
        ]


def execute_in_place(path: Path) -> float:
    """Execute ``path`` with its defaults and store it with outputs and its measured
    time (``metadata.dmt.measured_s``, shown by its metadata block); returns seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    client = NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        kernel_manager_class=ipc_kernel_manager(),
        resources={"metadata": {"path": str(HERE)}},
        store_widget_state=True,  # False breaks Output widgets (nbclient KeyError); stripped below
    )
    client.execute()
    seconds = time.perf_counter() - t0
    clean_outputs(nb)
    nb.metadata.setdefault("dmt", {})["measured_s"] = round(seconds)
    nbformat.write(nb, path)
    sync_notebooks.sync(only=[path])  # the block and the README table show the new time
    return seconds


def execute_papermill(path: Path, out_dir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Execute one notebook with papermill into ``out_dir``; returns its summary row."""
    declared = declared_parameters(path)
    work = (out_dir / "work" / path.stem).resolve()
    given = {k: v for k, v in params.items() if k in declared}
    if "output_dir" in declared:
        given.setdefault("output_dir", str(work))
    row: dict[str, Any] = {"notebook": path.name, "parameters": given}
    status, error, seconds = run_notebook(path, out_dir / path.name, given, cwd=HERE)
    row["status"] = status
    if error:
        row["error"] = error
    row["seconds"] = round(seconds, 1)
    metrics = work / "metrics.json"
    if metrics.is_file():
        row["metrics"] = json.loads(metrics.read_text())
    return row


def write_summary(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    total = sum(r["seconds"] for r in rows)
    (out_dir / "summary.json").write_text(
        json.dumps({"notebooks": rows, "seconds": total}, indent=2)
    )
    lines = [
        "# Tutorial run",
        "",
        "| notebook | status | seconds |",
        "|---|---|---|",
        *(f"| {r['notebook']} | {r['status']} | {r['seconds']:.0f} |" for r in rows),
        "",
        f"Total: {total:.0f} s.",
    ]
    for r in rows:
        if "metrics" in r:
            lines += ["", f"## Metrics recorded by {r['notebook']}", "", "```json"]
            lines += [json.dumps(r["metrics"], indent=2), "```"]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="folder for the executed notebooks and summary")
    mode.add_argument("--in-place", action="store_true", help="store outputs in the notebooks")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (numbers)")
    ap.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), dest="params"
    )
    args = ap.parse_args(argv)
    books = series(args.only)
    if args.in_place:
        if args.params:
            ap.error("-p is for papermill runs (--out); --in-place stores the defaults")
        for path in books:
            print(f"executing {path.name} ...", flush=True)
            print(f"  stored with outputs ({execute_in_place(path):.0f} s)", flush=True)
        return 0

    params = {name: yaml.safe_load(value) for name, value in args.params}
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in books:
        print(f"running {path.name} ...", flush=True)
        row = execute_papermill(path, out_dir, params)
        rows.append(row)
        write_summary(out_dir, rows)
        print(f"  {row['status']} in {row['seconds']:.0f} s", flush=True)
        if row["status"] != "ok":
            print(f"  {row['error']}\n  see {out_dir / path.name}", file=sys.stderr)
            return 1
    print(f"all {len(rows)} notebooks ran; summary in {out_dir / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
