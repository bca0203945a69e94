"""One GPU check of the paper preset, sized for about 8 minutes on one GPU.

    python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--skip-torchrun]

Prints (and writes as JSON):
- inference images/s of the paper preset at 256 px in float32, bfloat16 and float16
  (a group of 8, ``model.predict``, after a warm-up);
- the largest |probability| difference of each autocast dtype against float32;
- the training step (forward + 12-term loss + backward + Adam, ``train_step``) for a
  group of 8 at 256 px with the AMP that ``--amp auto`` picks on this GPU: seconds and
  peak memory;
- ``torch.compile`` on and off for the same inference;
- one ``dmt train`` step under ``torchrun --nproc_per_node=1`` over nccl.

Without CUDA it says so and exits 0 (CI and laptops run it harmlessly).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dmt_core import DMTConfig, create_model
from dmt_core.data.synthetic import write_benchmark
from dmt_core.runtime import amp_dtype, native_bf16
from dmt_core.train import train_step

GROUP, SIZE = 8, 256


def _sync() -> None:
    torch.cuda.synchronize()


def images_per_s(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    ctx = torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)
    with torch.inference_mode(), ctx:
        for _ in range(3):
            model.predict(x)
        _sync()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 5.0:
            model.predict(x)
            n += 1
        _sync()
    return n * len(x) / (time.perf_counter() - t0)


def probabilities(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None):
    ctx = torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cuda", enabled=False)
    with torch.inference_mode(), ctx:
        return model.predict(x).float()


def train_seconds(dtype: torch.dtype | None) -> tuple[float, float]:
    model = create_model(DMTConfig.paper(), pretrained=False).cuda().train()
    optimizer = torch.optim.Adam(model.param_groups(1e-4), betas=(0.9, 0.99))
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    batch = {"images": torch.randn(GROUP, 3, SIZE, SIZE),
             "masks": (torch.rand(GROUP, 1, SIZE, SIZE) > 0.5).float()}  # fmt: skip
    for _ in range(2):
        train_step(model, batch, optimizer, scaler, amp_dtype=dtype)
    _sync()
    torch.cuda.reset_peak_memory_stats()
    t0, steps = time.perf_counter(), 10
    for _ in range(steps):
        train_step(model, batch, optimizer, scaler, amp_dtype=dtype)
    _sync()
    return (time.perf_counter() - t0) / steps, torch.cuda.max_memory_allocated() / 2**30


def torchrun_step() -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        data = write_benchmark(Path(tmp) / "train", "train", groups=8, seed=0)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", "-m", "dmt_core", "train", "--preset", "tiny",
               "--train-data", str(data), "--out", str(Path(tmp) / "run"), "--steps", "2",
               "--val-groups", "0", "--quiet"]  # fmt: skip
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        ok = res.returncode == 0 and (Path(tmp) / "run" / "final.pt").is_file()
        return {"ok": ok, "seconds": round(time.perf_counter() - t0, 1),
                "tail": (res.stdout + res.stderr)[-400:] if not ok else ""}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"))
    ap.add_argument("--skip-torchrun", action="store_true")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing measured (run it on a GPU machine)")
        return 0
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    report: dict[str, object] = {
        "gpu": torch.cuda.get_device_name(dev),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))),
        "torch": torch.__version__,
        "bf16_native": native_bf16(dev),
        "amp_auto": str(amp_dtype(dev)).replace("torch.", ""),
    }
    torch.manual_seed(0)
    model = create_model(DMTConfig.paper(), pretrained=False).cuda().eval()
    x = torch.randn(GROUP, 3, SIZE, SIZE, device=dev)
    ref = probabilities(model, x, None)
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        report[f"infer_{name}_img_s"] = round(images_per_s(model, x, dtype), 1)
        if dtype is not None:
            diff = (probabilities(model, x, dtype) - ref).abs().max().item()
            report[f"max_prob_diff_{name}"] = round(diff, 5)
    step_s, peak = train_seconds(amp_dtype(dev))
    report["train_step_s_amp"] = round(step_s, 3)
    report["train_peak_gib_amp"] = round(peak, 2)
    step32, peak32 = train_seconds(None)
    report["train_step_s_fp32"], report["train_peak_gib_fp32"] = round(step32, 3), round(peak32, 2)
    try:
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        probabilities(compiled, x, amp_dtype(dev))
        report["compile_s"] = round(time.perf_counter() - t0, 1)
        report["infer_amp_img_s_compiled"] = round(images_per_s(compiled, x, amp_dtype(dev)), 1)
        report["infer_amp_img_s_eager"] = round(images_per_s(model, x, amp_dtype(dev)), 1)
    except Exception as e:  # noqa: BLE001 - recorded, the other numbers still count
        report["compile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    if not args.skip_torchrun:
        report["torchrun_nccl_1proc"] = torchrun_step()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    width = max(map(len, report))
    for k, v in report.items():
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
