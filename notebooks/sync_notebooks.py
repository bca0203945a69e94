"""Write what every notebook repeats from one source each, or check that it agrees.

    python notebooks/sync_notebooks.py            # rewrite what differs
    python notebooks/sync_notebooks.py --check    # exit 1 and name what differs (a test runs it)

- the repository URL comes from ``pyproject.toml``'s ``[project.urls] Repository``: the
  Colab badge of each notebook and its Colab setup cell (clone, install, chdir) are
  written from it and from one template below;
- the References section that ends every notebook comes from :data:`REFERENCES`;
- each notebook's metadata block (``metadata["dmt"]``: what it needs, its CPU time, its
  data and downloads) is shown in a small table in its first cell and in the README's
  notebook table (between the ``notebooks:start`` / ``notebooks:end`` markers).
  ``measured_s`` is written by ``run_series.py --in-place`` (``make notebooks``) after
  each run; ``time`` (text) overrides it where one run is not the whole story.
"""

from __future__ import annotations

import argparse
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
README = ROOT / "README.md"
FIELDS = ("summary", "needs", "data", "downloads")  # required in metadata["dmt"]
BLOCK_START = "<!-- metadata: written by notebooks/sync_notebooks.py from metadata.dmt -->"
BLOCK_END = "<!-- /metadata -->"
TABLE_START = "<!-- notebooks:start (written by notebooks/sync_notebooks.py) -->"
TABLE_END = "<!-- notebooks:end -->"
BADGE = re.compile(r"^\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)$", re.M)

SETUP = """\
# Setup: on Colab, fetch the project and install it (Colab's torch is kept, not reinstalled).
import sys

if "google.colab" in sys.modules:
    import os

    if not os.path.isdir("{clone}"):
        !git clone -q --depth 1 {url} {clone}
    %pip install -q -e {clone}
    sys.path.insert(0, "{clone}")
    os.chdir("{clone}/notebooks")"""


REFERENCES = """\
## References

- **DMT.** L. Li, J. Han, N. Zhang, N. Liu, S. Khan, H. Cholakkal, R. M. Anwer, F. S. Khan,
  *Discriminative Co-Saliency and Background Mining Transformer for Co-Salient Object
  Detection*, CVPR 2023. [arXiv 2305.00514](https://arxiv.org/abs/2305.00514)
- **Official code** (the model, training and test scripts this package matches):
  [github.com/dragonlee258079/DMT](https://github.com/dragonlee258079/DMT)
- **Training sets.** DUTS_class: Z. Zhang, W. Jin, J. Xu, M.-M. Cheng, *Gradient-Induced
  Co-Saliency Detection* (GICD), ECCV 2020. COCO-9k: W.-D. Jin, J. Xu, M.-M. Cheng,
  Y. Zhang, W. Guo, *ICNet: Intra-saliency Correlation Network for Co-Saliency Detection*,
  NeurIPS 2020. The synthetic training images follow CADC (Zhang et al., ICCV 2021).
- **Test sets.** CoCA: GICD (above). CoSal2015: D. Zhang, J. Han, C. Li, J. Wang, X. Li,
  *Detection of Co-salient Objects by Looking Deep and Wide*, IJCV 2016. CoSOD3k:
  D.-P. Fan, Z. Lin, G.-P. Ji, D. Zhang, H. Fu, M.-M. Cheng, *Taking a Deeper Look at
  Co-Salient Object Detection*, CVPR 2020.
- **Metrics.** S-measure: D.-P. Fan, M.-M. Cheng, Y. Liu, T. Li, A. Borji,
  *Structure-measure*, ICCV 2017. E-measure: D.-P. Fan, C. Gong, Y. Cao, B. Ren,
  M.-M. Cheng, A. Borji, *Enhanced-alignment Measure for Binary Foreground Map
  Evaluation*, IJCAI 2018. F-measure with $\\beta^2 = 0.3$: R. Achanta, S. Hemami,
  F. Estrada, S. Süsstrunk, *Frequency-tuned Salient Region Detection*, CVPR 2009.
  Weighted F: R. Margolin, L. Zelnik-Manor, A. Tal, *How to Evaluate Foreground Maps?*,
  CVPR 2014. The implementation used here:
  [PySODMetrics](https://github.com/lartpang/PySODMetrics) (as the official evaluation).
"""


def repository_url() -> str:
    """``[project.urls] Repository`` of pyproject.toml (a github.com URL).

    Read with a regular expression: ``tomllib`` needs Python 3.11, the project 3.10.
    """
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.urls\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    m = section and re.search(r'^Repository\s*=\s*"([^"]*)"', section.group(1), re.M)
    url = m.group(1) if m else ""
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(
            f"pyproject.toml: [project.urls] Repository must be a github URL, got {url!r}"
        )
    return url


def badge(url: str, name: str) -> str:
    slug = url.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{name}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})"


def setup_cell(url: str) -> str:
    return SETUP.format(url=url, clone=f"/content/{url.rsplit('/', 1)[1]}")


def format_seconds(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    return f"{m} min {s} s" if m < 10 else f"{m + (s >= 30)} min"


def cpu_time(meta: dict[str, Any]) -> str:
    if meta.get("time"):
        return meta["time"]
    if "measured_s" in meta:
        return format_seconds(meta["measured_s"])
    return "not measured yet"


def metadata(nb: nbformat.NotebookNode, name: str) -> dict[str, Any]:
    meta = nb.metadata.get("dmt")
    missing = [f for f in FIELDS if not (meta or {}).get(f)]
    if missing:
        raise SystemExit(f"{name}: metadata.dmt lacks {missing} (fields: {FIELDS})")
    return meta


def block(meta: dict[str, Any]) -> str:
    return "\n".join([
        BLOCK_START,
        "| needs | CPU time | data | downloads |",
        "|---|---|---|---|",
        f"| {meta['needs']} | {cpu_time(meta)} | {meta['data']} | {meta['downloads']} |",
        BLOCK_END,
    ])  # fmt: skip


def synced_notebook(path: Path, url: str) -> nbformat.NotebookNode:
    """The notebook with badge, metadata block and setup cell written from their sources."""
    nb = nbformat.read(path, as_version=4)
    meta = metadata(nb, path.name)
    for cell in nb.cells:  # nbformat 4.5 wants an id per cell (papermill warns otherwise)
        if not cell.get("id"):
            cell["id"] = uuid.uuid4().hex[:12]
    first = nb.cells[0]
    if first.cell_type != "markdown" or not BADGE.search(first.source):
        raise SystemExit(f"{path.name}: the first cell must be markdown with the Colab badge")
    text = BADGE.sub(lambda _: badge(url, path.name), first.source, count=1)
    pattern = re.compile(re.escape(BLOCK_START) + r".*?" + re.escape(BLOCK_END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block(meta), text)
    else:  # first run: right after the badge
        text = BADGE.sub(lambda m: m.group(0) + "\n\n" + block(meta), text, count=1)
    first.source = text
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or '"google.colab" in sys.modules' not in code[0].source:
        raise SystemExit(f"{path.name}: the first code cell must be the Colab setup cell")
    code[0].source = setup_cell(url)
    last = nb.cells[-1]
    if last.cell_type == "markdown" and last.source.startswith("## References"):
        last.source = REFERENCES.rstrip()
    else:
        nb.cells.append(nbformat.v4.new_markdown_cell(REFERENCES.rstrip()))
    return nb


def readme_table(books: list[Path]) -> str:
    rows = [
        TABLE_START,
        "| notebook | what you learn | needs | CPU time | downloads |",
        "|---|---|---|---|---|",
    ]
    for p in books:
        meta = metadata(nbformat.read(p, as_version=4), p.name)
        link = f"[{p.stem}](notebooks/{p.name})"
        cols = [link, meta["summary"], meta["needs"], cpu_time(meta), meta["downloads"]]
        rows.append("| " + " | ".join(cols) + " |")
    return "\n".join([*rows, TABLE_END])


def synced_readme(books: list[Path]) -> str:
    text = README.read_text()
    pattern = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{README}: no {TABLE_START!r} ... {TABLE_END!r} markers")
    return pattern.sub(lambda _: readme_table(books), text)


def books() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def sync(check: bool = False, only: list[Path] | None = None) -> list[str]:
    """Rewrite (or with ``check`` only list) the files that differ from their sources."""
    url = repository_url()
    stale = []
    for path in only or books():
        nb = synced_notebook(path, url)
        if nbformat.writes(nb) != nbformat.writes(nbformat.read(path, as_version=4)):
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                nbformat.write(nb, path)
    readme = synced_readme(books())
    if readme != README.read_text():
        stale.append("README.md")
        if not check:
            README.write_text(readme)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs")
    args = ap.parse_args(argv)
    stale = sync(check=args.check)
    if args.check and stale:
        print("out of date (run python notebooks/sync_notebooks.py):", *stale, sep="\n  ")
        return 1
    print("rewrote: " + ", ".join(stale) if stale else "everything agrees with its source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
