"""Training step time and peak memory, as a ratio to a VGG16 forward of the same batch.

    python benchmarks/bench_train.py [--quick]

For each preset and group size: one optimisation step (forward with side outputs, the
12-term loss, backward, Adam) on random data, best of ``--reps`` after a warm-up, and a
``vgg16().features[:30]`` forward of the same batch measured in the same run (the
official training step is about 15x that for a group of 4 at 128 px, issue #4). Each
configuration runs in a fresh process; memory is the RSS sampled every 2 ms during the
timed steps (peak, and the peak minus the RSS before them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torchvision
from bench_inference import PeakRSS, _best, bench_args

from dmt_core import DMT, DMTConfig
from dmt_core.train import train_step

#: memory formats compared (the child reads its own from the environment)
FORMATS = ("channels_last", "contiguous")


def one_config(preset: str, group: int, size: int, reps: int) -> dict:
    torch.manual_seed(0)
    channels_last = os.environ.get("DMT_BENCH_FORMAT", "channels_last") == "channels_last"
    model = DMT(DMTConfig.preset(preset), channels_last=channels_last).train()
    opt = torch.optim.Adam(model.param_groups(1e-4))
    x = torch.randn(group, 3, size, size)
    y = (torch.rand(group, 1, size, size) > 0.5).float()
    batch = {"images": x, "masks": y}

    def step() -> None:  # the step dmt train takes
        train_step(model, batch, opt)

    vgg = torchvision.models.vgg16().features[:30].eval()

    def vgg_forward() -> None:
        with torch.no_grad():
            vgg(x)

    t_vgg = _best(vgg_forward, reps)
    with PeakRSS() as mem:
        t_step = _best(step, reps)
    return {
        "step_s": t_step,
        "vgg_s": t_vgg,
        "ratio": t_step / t_vgg,
        "images_per_s": group / t_step,
        "peak_mb": mem.peak,
        "step_mb": mem.peak - mem.before,
    }


def main() -> None:
    args = bench_args(__doc__, "tiny preset only", 3, one_config)
    if args is None:
        return
    configs = [("tiny", g, 128) for g in (4, 8)] if "tiny" in args.presets else []
    if not args.quick and "paper" in args.presets:
        configs += [("paper", 4, 128), ("paper", 8, 256)]
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.reps}\n")
    print("| preset | size | group | memory format | step (s) | VGG16 fwd (s) | ratio | images/s "
          "| peak RSS (MB) | step peak (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset, group, size in configs:
        for fmt in FORMATS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", f"{preset},{group},{size}",
                 "--reps", str(args.reps), "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
                env={**os.environ, "DMT_BENCH_FORMAT": fmt},
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {preset} | {size} | {group} | {fmt} | {r['step_s']:.3f} | {r['vgg_s']:.3f} "
                  f"| {r['ratio']:.1f}x | {r['images_per_s']:.1f} | {r['peak_mb']:.0f} "
                  f"| {r['step_mb']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
