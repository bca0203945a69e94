"""Speed of the synthetic benchmark generator (images/s), on one core.

    OMP_NUM_THREADS=1 python benchmarks/bench_synth.py [--size 128] [--groups 40]

Prints, per preset, the rate of rendering in memory and of writing the files
(JPEG + PNG encoding and disk I/O, into a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2

from dmt_core.data.synthetic import PRESETS, Generator, load_meta, write_benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--groups", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cv2 threads 1, "
          f"{args.size} px, {args.groups} groups per run, best of {args.repeats}")  # fmt: skip
    for preset in ("train", "test", "hard"):
        cfg = PRESETS[preset].replace(size=args.size)
        best = 0.0
        for _ in range(args.repeats):
            gen = Generator(cfg, 0)
            t0, n = time.perf_counter(), 0
            for i in range(args.groups):
                n += len(gen.group(i).images)
            best = max(best, n / (time.perf_counter() - t0))
        best_w = 0.0
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                write_benchmark(d, preset, groups=args.groups, size=args.size, overwrite=True)
                dt = time.perf_counter() - t0
                n = sum(len(g["images"]) for g in load_meta(d)["groups"])
            best_w = max(best_w, n / dt)
        print(f"{preset:5s}  render {best:6.0f} images/s   render+write {best_w:6.0f} images/s")


if __name__ == "__main__":
    main()
