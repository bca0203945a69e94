"""The command line: ``dmt`` and ``python -m dmt_core``."""

from __future__ import annotations

import subprocess
import sys

from dmt_core.cli import main


def test_python_m_dmt_core_help():
    out = subprocess.run(
        [sys.executable, "-m", "dmt_core", "--help"], capture_output=True, text=True, check=True
    )
    assert "convert-official" in out.stdout and "demo" in out.stdout


def test_demo_prints_shapes_and_timing(capsys):
    assert main(["demo", "--preset", "tiny", "--group", "2", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "co    (2, 1, 64, 64)" in out
    assert "stage 2: 5 maps of (2, 1, 32, 32)" in out
    assert "images/s" in out
