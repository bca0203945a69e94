"""One GPU check of the paper preset, sized for a few minutes on one GPU.

    python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--skip-torchrun]
                                   [--skip-compile] [--smoke]

Prints (and writes as JSON, rewritten after every section, so a run stopped half-way
keeps what it measured):
- the GPU, PyTorch, the AMP that ``--amp auto`` picks and the TF32 switches;
- inference images/s of the paper preset at 256 px in float32, bfloat16 and float16 (a
  group of 8, ``model.predict``, after a warm-up), channels-last (the default) and
  contiguous, and the largest |probability| difference of each autocast dtype against
  float32;
- the training step (forward + 12-term loss + backward + fused Adam, ``train_step``) for
  a group of 8 at 256 px: seconds and peak memory with the AMP of ``--amp auto``, with
  float16 and a gradient scaler (what a T4 trains in: its peak memory says whether the
  step fits 16 GB), in float32, and channels-last against contiguous; the step's FLOPs;
- ``torch.compile`` on and off, for the inference and for the training step;
- ``dmt train`` of the paper preset under ``torchrun --nproc_per_node=1`` (nccl) on a
  stand-in for DUTS_class (JPEGs of 300-500 px, synthesis on, the 4 loader workers of a
  GPU run): per-step data wait, forward, backward and optimizer time from its
  ``log.jsonl`` and its ``images_per_s``, so the loader's share is measured, not guessed.

Without CUDA it says so and exits 0 (CI and laptops run it harmlessly). ``--smoke`` runs
every section on the CPU with the tiny preset at toy sizes: a test of this script, not a
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from dmt_core import DMTConfig, create_model
from dmt_core.runtime import adam, amp_dtype, native_bf16
from dmt_core.train import train_step

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    """What the sections run: the paper preset on CUDA, or ``--smoke``'s toy CPU run."""

    device: torch.device
    preset: str = "paper"
    group: int = 8
    size: int = 256
    window_s: float = 3.0  # seconds each throughput is timed over
    steps: int = 10  # timed training steps (after 2 warm-up steps)
    train_steps: int = 60  # dmt train steps under torchrun

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def model(self, *, train: bool, channels_last: bool = True) -> torch.nn.Module:
        torch.manual_seed(0)
        cfg = DMTConfig.preset(self.preset)
        model = create_model(cfg, pretrained=False, channels_last=channels_last)
        return model.to(self.device).train(train)

    def autocast(self, dtype: torch.dtype | None):
        if dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=dtype)


Predict = Callable[[torch.Tensor], torch.Tensor]


def images_per_s(s: Setup, predict: Predict, x: torch.Tensor, dtype) -> float:
    """``predict`` is ``model.predict`` or its ``torch.compile``d form."""
    with torch.inference_mode(), s.autocast(dtype):
        for _ in range(3):
            predict(x)
        s.sync()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < s.window_s:
            predict(x)
            n += 1
        s.sync()
    return n * len(x) / (time.perf_counter() - t0)


def probabilities(s: Setup, predict: Predict, x: torch.Tensor, dtype) -> torch.Tensor:
    with torch.inference_mode(), s.autocast(dtype):
        return predict(x).float()


def _batch(s: Setup) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "images": torch.randn(s.group, 3, s.size, s.size, generator=g),
        "masks": (torch.rand(s.group, 1, s.size, s.size, generator=g) > 0.5).float(),
    }


def train_seconds(
    s: Setup, dtype: torch.dtype | None, *, channels_last: bool = True, compiled: bool = False
) -> dict[str, float]:
    """Seconds per ``train_step`` (mean of ``s.steps`` after 2 warm-ups) and peak GiB."""
    model = s.model(train=True, channels_last=channels_last)
    net = torch.compile(model) if compiled else model
    optimizer = adam(model.param_groups(1e-4), betas=(0.9, 0.99))
    scaler = torch.amp.GradScaler(s.device.type, enabled=dtype is torch.float16)
    batch = _batch(s)
    t0 = time.perf_counter()
    for _ in range(2):
        train_step(net, batch, optimizer, scaler, amp_dtype=dtype)
    s.sync()
    warm = time.perf_counter() - t0
    if s.cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(s.steps):
        loss, _ = train_step(net, batch, optimizer, scaler, amp_dtype=dtype)
    s.sync()
    out = {"s": (time.perf_counter() - t0) / s.steps, "warmup_s": warm}
    if not torch.isfinite(loss):
        raise RuntimeError(f"the training loss is {loss.item()} after {s.steps + 2} steps")
    if s.cuda:
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    del net, model, optimizer
    if s.cuda:
        torch.cuda.empty_cache()
    return out


def step_flops(s: Setup, dtype: torch.dtype | None) -> float:
    """FLOPs of one training step (forward + backward; torch's FLOP counter)."""
    model = s.model(train=True)
    optimizer = adam(model.param_groups(1e-4), betas=(0.9, 0.99))
    with FlopCounterMode(display=False) as counter:
        train_step(model, _batch(s), optimizer, amp_dtype=dtype)
    return float(counter.get_total_flops())


def torchrun_train(s: Setup) -> dict[str, object]:
    """``dmt train`` under ``torchrun --nproc_per_node=1`` on a DUTS-like stand-in."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_loader import write_standin

    with tempfile.TemporaryDirectory() as tmp:
        data = write_standin(Path(tmp) / "DUTS_class", groups=12, images=16)
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=1", "-m", "dmt_core", "train", "--preset", s.preset,
               "--no-pretrained", "--train-data", str(data), "--out", str(run),
               "--steps", str(s.train_steps), "--val-groups", "0", "--quiet",
               "--device", s.device.type, "--log-every", "10"]  # fmt: skip
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "NCCL_DEBUG": "INFO", "PYTHONPATH": path}
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
        text = res.stdout + res.stderr
        ok = res.returncode == 0 and (run / "final.pt").is_file()
        out: dict[str, object] = {
            "ok": ok,
            "wall_s": round(time.perf_counter() - t0, 1),
            "nccl_seen": "NCCL INFO" in text,
        }
        if not ok:
            out["tail"] = text[-1500:]
            return out
        lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
        steps = [x for x in lines if "sec" in x]
        steps = steps[5:] if len(steps) > 10 else steps  # the first steps build cuDNN plans
        for key in ("sec", "data_s", "forward_s", "backward_s", "optimizer_s"):
            vals = [x[key] for x in steps if key in x]
            if vals:
                out[f"median_{key}"] = round(statistics.median(vals), 4)
        out["images_per_s_timed"] = round(
            sum(x["images"] for x in steps) / sum(x["sec"] for x in steps), 1
        )
        summary = json.loads((run / "summary.json").read_text())
        out["summary_images_per_s"] = summary["images_per_s"]
        return out


class Report(dict):
    """The results, written to ``path`` after every section."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - recorded; the other sections still run
            traceback.print_exc()
            self[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        self[f"{name}_section_s"] = round(time.perf_counter() - t0, 1)
        self.path.write_text(json.dumps(self, indent=2) + "\n")

    def show(self) -> None:
        width = max(map(len, self))
        for k, v in self.items():
            print(f"{k:<{width}}  {v}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check.json"))
    ap.add_argument("--skip-torchrun", action="store_true")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny preset, toy sizes")
    args = ap.parse_args(argv)
    if args.smoke:
        s = Setup(torch.device("cpu"), "tiny", group=2, size=64, window_s=0.2, steps=1,
                  train_steps=2)  # fmt: skip
    elif torch.cuda.is_available():
        s = Setup(torch.device("cuda"))
        torch.backends.cudnn.benchmark = True
    else:
        print("gpu_check: no CUDA device here; nothing measured (run it on a GPU machine)")
        return 0
    auto = amp_dtype(s.device)
    name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    r = Report(args.out)
    r.update({
        "device": torch.cuda.get_device_name(s.device) if s.cuda else "cpu (--smoke)",
        "capability": ".".join(map(str, torch.cuda.get_device_capability(s.device)))
        if s.cuda else "",
        "torch": torch.__version__,
        "bf16_native": native_bf16(s.device),
        "amp_auto": name[auto],
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "preset": s.preset, "group": s.group, "size": s.size,
    })  # fmt: skip
    x = torch.randn(s.group, 3, s.size, s.size, generator=torch.Generator().manual_seed(1))
    x = x.to(s.device)

    def inference() -> None:
        predict = s.model(train=False).predict
        ref = probabilities(s, predict, x, None)
        for dtype in (None, torch.bfloat16, torch.float16):
            r[f"infer_{name[dtype]}_img_s"] = round(images_per_s(s, predict, x, dtype), 1)
            if dtype is not None:
                diff = (probabilities(s, predict, x, dtype) - ref).abs().max().item()
                r[f"max_prob_diff_{name[dtype]}"] = round(diff, 5)
        contiguous = s.model(train=False, channels_last=False).predict
        r["infer_amp_img_s_contiguous"] = round(images_per_s(s, contiguous, x, auto), 1)

    def training() -> None:
        runs = (("amp", auto, True), ("fp16", torch.float16, True), ("fp32", None, True),
                ("amp_contiguous", auto, False))  # fmt: skip
        for label, dtype, cl in runs:
            if label == "fp16" and auto is torch.float16:
                continue
            res = train_seconds(s, dtype, channels_last=cl)
            r[f"train_step_s_{label}"] = round(res["s"], 4)
            if "peak_gib" in res:
                r[f"train_peak_gib_{label}"] = round(res["peak_gib"], 2)
        flops = step_flops(s, auto)
        r["train_tflop_per_step"] = round(flops / 1e12, 4)
        r["train_tflop_s_amp"] = round(flops / 1e12 / r["train_step_s_amp"], 1)

    def torchrun() -> None:
        r["torchrun_train_1proc"] = torchrun_train(s)

    def compiled() -> None:
        model = s.model(train=False)
        net = torch.compile(model.predict)
        t0 = time.perf_counter()
        diff = probabilities(s, net, x, auto) - probabilities(s, model.predict, x, auto)
        r["compile_infer_first_call_s"] = round(time.perf_counter() - t0, 1)
        r["max_prob_diff_compiled_vs_eager"] = round(diff.abs().max().item(), 5)
        r["infer_amp_img_s_compiled"] = round(images_per_s(s, net, x, auto), 1)
        r["infer_amp_img_s_eager"] = round(images_per_s(s, model.predict, x, auto), 1)
        res = train_seconds(s, auto, compiled=True)
        r["train_step_s_amp_compiled"] = round(res["s"], 4)
        r["compile_train_first_steps_s"] = round(res["warmup_s"], 1)

    r.section("inference", inference)
    r.section("training", training)
    if not args.skip_torchrun:
        r.section("torchrun", torchrun)
    if not args.skip_compile:
        r.section("compile", compiled)
    r.show()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
