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


def test_gpu_check_says_so_and_exits_0_without_cuda(tmp_path):
    """benchmarks/gpu_check.py is for GPU machines; elsewhere it measures nothing, harmlessly."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("a GPU is here: run the check itself")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    res = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "g.json")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    assert res.returncode == 0 and "no CUDA device" in res.stdout
    assert not (tmp_path / "g.json").exists()


def test_gpu_check_smoke_runs_every_section_on_the_cpu(tmp_path):
    """--smoke runs each section of the GPU check (tiny preset, toy sizes, CPU) end to end,
    so the script a lent GPU gets once is not run for the first time there."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    out = tmp_path / "g.json"
    res = subprocess.run(
        [sys.executable, str(script), "--smoke", "--skip-compile", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert not [k for k in report if k.endswith("_error")], report
    measured = (
        "infer_fp32_img_s", "infer_bf16_img_s", "infer_fp16_img_s", "max_prob_diff_fp16",
        "infer_amp_img_s_contiguous", "train_step_s_amp", "train_step_s_fp16",
        "train_step_s_fp32", "train_step_s_amp_contiguous", "train_tflop_per_step",
    )  # fmt: skip
    for key in measured:
        assert report[key] > 0, key
    run = report["torchrun_train_1proc"]
    assert run["ok"] and run["images_per_s_timed"] > 0 and run["median_data_s"] >= 0
    assert {"median_forward_s", "median_backward_s", "median_optimizer_s"} <= set(run)


def test_step_count_counts_flops_and_kept_memory():
    """benchmarks/step_count.py: the paper step's FLOPs are several VGG16 forwards', and
    autocast keeps fewer bytes for the backward than float32 (what a GPU run is sized by)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "step_count.py"
    res = subprocess.run(
        [sys.executable, str(script), "--preset", "paper", "--group", "2", "--size", "64"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    kept = dict(re.findall(r"kept for the backward, (\w+).*: ([\d.]+) GiB", res.stdout))
    assert set(kept) == {"float32", "float16", "bfloat16"}
    assert 0 < float(kept["float16"]) < float(kept["float32"])
    ratio = re.search(r"step FLOPs \(direct convolutions\): [\d.]+ T; .* \(([\d.]+)x\)", res.stdout)
    assert ratio and 5 < float(ratio.group(1)) < 20
