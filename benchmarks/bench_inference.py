"""Inference speed and memory of DMT on this machine (CPU, fp32).

    python benchmarks/bench_inference.py            # full table + VGG16 ratio (~10 min on 2 cores)
    python benchmarks/bench_inference.py --quick    # fewer configurations

Prints:
1. The ratio of a DMT forward (inference path: eval, co map only) to torchvision's
   VGG16 feature extractor ``vgg16().features[:30]`` on the same batch (group of 4,
   256x256, fp32, 2 threads), measured in the same run, best of ``--reps``. The
   official implementation measures 5.3x on this machine (issue #2); the target is 4.8x.
2. A markdown table: images/s and peak memory for both presets, group sizes 1, 5, 8, 25
   at 128 and 256 px, each configuration in a fresh process. Memory is the process RSS,
   sampled every 2 ms during the timed forwards: "peak RSS" is its maximum, "forward
   peak" the maximum minus the RSS just before (what the forward itself allocates).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import torch
import torchvision

from dmt_core import DMT, DMTConfig


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Samples the RSS in a background thread while the block runs."""

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _best(fn, reps: int) -> float:
    fn()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def one_config(preset: str, group: int, size: int, reps: int) -> dict:
    """Run in a child process: images/s and peak memory of one configuration."""
    torch.manual_seed(0)
    model = DMT(DMTConfig.preset(preset)).eval()
    x = torch.randn(group, 3, size, size)
    with torch.inference_mode():
        model(x[:1])
        with PeakRSS() as mem:
            t = _best(lambda: model(x), reps)
    return {
        "images_per_s": group / t,
        "seconds": t,
        "peak_mb": mem.peak,
        "forward_mb": mem.peak - mem.before,
    }


def vgg_ratio(reps: int, group: int = 4, size: int = 256) -> None:
    torch.manual_seed(0)
    x = torch.randn(group, 3, size, size)
    vgg = torchvision.models.vgg16().features[:30].eval()
    model = DMT(DMTConfig.paper()).eval()
    plain = DMT(DMTConfig.paper(), channels_last=False).eval()
    plain.load_state_dict(model.state_dict())
    with torch.inference_mode():
        t_vgg = _best(lambda: vgg(x), reps)
        vgg_cl = vgg.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        t_vgg_cl = _best(lambda: vgg_cl(x_cl), reps)
        t_fast = _best(lambda: model(x), reps)
        t_aux = _best(lambda: model(x, aux=True), reps)
        t_plain = _best(lambda: plain(x, aux=True), reps)
    print(
        f"## DMT paper preset vs VGG16 features[:30]: group {group}, {size}x{size}, fp32, "
        f"{torch.get_num_threads()} threads, best of {reps}"
    )
    print(f"VGG16 (contiguous)                    {t_vgg:7.3f} s")
    print(f"VGG16 (channels-last)                 {t_vgg_cl:7.3f} s")
    rows = [
        ("DMT inference path (eval, co only)", t_fast),
        ("DMT with all side outputs", t_aux),
        ("DMT contiguous, all side outputs", t_plain),
    ]
    for name, t in rows:
        print(
            f"{name:38s}{t:7.3f} s  {t / group:6.3f} s/image  "
            f"ratio {t / t_vgg:4.2f}x (vs channels-last VGG {t / t_vgg_cl:4.2f}x)"
        )
    print("official implementation (issue #2, same machine): 5.3x; target <= 4.8x\n")


def bench_args(
    doc: str, quick_help: str, reps: int, child_fn, extra: Sequence[tuple[str, dict]] = ()
) -> argparse.Namespace | None:
    """Parse the shared options (and ``extra`` (flag, add_argument kwargs) ones); in a
    ``--child`` process run ``child_fn`` and return None."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for flag, kwargs in extra:
        ap.add_argument(flag, **kwargs)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.child:
        return args
    preset, group, size = args.child.split(",")
    print(json.dumps(child_fn(preset, int(group), int(size), args.reps)))
    return None


def main() -> None:
    args = bench_args(__doc__, "group sizes 1 and 5 at 128 px only", 2, one_config)
    if args is None:
        return
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads\n"
    )
    if "paper" in args.presets:
        vgg_ratio(args.reps)
    groups = (1, 5) if args.quick else (1, 5, 8, 25)
    sizes = (128,) if args.quick else (128, 256)
    print("| preset | size | group | images/s | s/forward | peak RSS (MB) | forward peak (MB) |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for size in sizes:
            for group in groups:
                reps = (
                    1 if preset == "paper" and size * size * group >= 256 * 256 * 8 else args.reps
                )
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        f"{preset},{group},{size}",
                        "--reps",
                        str(reps),
                        "--threads",
                        str(args.threads),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {preset} | {size} | {group} | {r['images_per_s']:.1f} | {r['seconds']:.3f} "
                    f"| {r['peak_mb']:.0f} | {r['forward_mb']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
