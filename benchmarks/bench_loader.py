"""Groups per second of the training DataLoader, on a stand-in for DUTS_class.

    python benchmarks/bench_loader.py [--groups 12 --images 16 --draws 40 --workers 0 2 4]

The stand-in is written once to ``--data`` (default ``runs/bench_loader/DUTS_class``):
``--groups`` groups of ``--images`` JPEGs of 300-500 px a side (smooth colour noise with
one textured ellipse, quality 90) and their PNG masks, in the CoCA layout. The name has
"DUTS" in it, so the trainer's default synthesis rule applies to it as to the real set.

For each worker count and with synthesis off / on (forward + reverse seamless cloning
of another group's object, as the official ``dataset.py``) it times ``--draws`` draws of
the loader ``dmt train`` builds (paper preset: 256 px crops, groups of at most 8,
pinned memory off on a CPU), after two warm-up draws, and prints groups/s and
images/s. A GPU training step consumes one group: the loader keeps a GPU fed when its
groups/s exceed 1 / (GPU step seconds); ``benchmarks/gpu_check.py`` measures the step.
Run it alone: the numbers are throughput on this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import DataLoader

from dmt_core.data import GroupDataset
from dmt_core.data.paste import SynthesisConfig
from dmt_core.data.sampling import TrainGroups
from dmt_core.train import DrawSampler


def write_standin(root: Path, groups: int, images: int, seed: int = 0) -> Path:
    """JPEG images (300-500 px) with PNG masks, ``Image/<g>/`` + ``GroundTruth/<g>/``."""
    if (root / "GroundTruth").is_dir():
        return root
    rng = np.random.default_rng(seed)
    for g in range(groups):
        name = f"class_{g:03d}"
        (root / "Image" / name).mkdir(parents=True)
        (root / "GroundTruth" / name).mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for k in range(images):
            w, h = (int(v) for v in rng.integers(300, 501, 2))
            small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
            img = img.filter(ImageFilter.GaussianBlur(2))
            mask = Image.new("L", (w, h), 0)
            x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            box = (
                x0,
                y0,
                x0 + int(rng.integers(w // 4, w // 2)),
                y0 + int(rng.integers(h // 4, h // 2)),
            )
            ImageDraw.Draw(mask).ellipse(box, fill=255)
            tex = (rng.normal(0, 25, (h, w, 1)) + colour).clip(0, 255).astype(np.uint8)
            img.paste(Image.fromarray(tex), (0, 0), mask)
            img.save(root / "Image" / name / f"{k:04d}.jpg", quality=90)
            mask.save(root / "GroundTruth" / name / f"{k:04d}.png")
    return root


def groups_per_second(data: Path, workers: int, synthesis: bool, draws: int) -> tuple[float, float]:
    dataset = TrainGroups(
        [GroupDataset(data, require_masks=True)],
        input_size=256,
        max_num=8,
        synthesis=SynthesisConfig() if synthesis else None,
        seed=0,
    )
    loader = DataLoader(
        dataset,
        batch_size=None,
        sampler=DrawSampler(len(dataset), 0, 0, 0, 1),
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=workers > 0,
    )
    it = iter(loader)
    for _ in range(2):  # warm-up: worker start, first decodes
        next(it)
    n_images = 0
    t0 = time.perf_counter()
    for _ in range(draws):
        n_images += len(next(it)["images"])
    dt = time.perf_counter() - t0
    del it, loader
    return draws / dt, n_images / dt


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=Path("runs/bench_loader/DUTS_class"))
    ap.add_argument("--groups", type=int, default=12)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    args = ap.parse_args()
    torch.set_num_threads(1)  # the loader's work is per process; keep the main one honest
    data = write_standin(args.data, args.groups, args.images)
    print(f"stand-in: {args.groups} groups x {args.images} JPEGs (300-500 px) in {data}")
    print(f"{os.cpu_count()} CPU cores; {args.draws} draws of <= 8 images at 256 px each\n")
    print("| workers | synthesis | groups/s | images/s |")
    print("|---|---|---|---|")
    for synthesis in (False, True):
        for workers in args.workers:
            gps, ips = groups_per_second(data, workers, synthesis, args.draws)
            print(
                f"| {workers} | {'on' if synthesis else 'off'} | {gps:.2f} | {ips:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
