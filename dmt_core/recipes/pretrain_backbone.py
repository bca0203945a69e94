"""A pretrained encoder for the tiny preset: the synthetic counterpart of ImageNet VGG16.

DMT's encoder starts from ImageNet weights, so from the first step its features tell
object categories apart and the cross-image modules have something to match. The tiny
preset cannot download ImageNet weights, and a VGG trained from scratch inside a few
CPU minutes of co-saliency training learns categories too slowly. So the project
pretrains the tiny VGG16-BN the way ImageNet models are pretrained, on labelled
objects: dense category segmentation of synthetic images,

    images (B, 3, S, S) -> encoder -> 1x1 heads on conv4_3 and conv5_3 -> (B, K + 1, S, S)

with K object categories plus background (weight 0.1, it covers most pixels),
cross-entropy at both levels, Adam with a cosine schedule. The images come from the
generator's ``pretrain`` stream, disjoint from the ``train``/``test``/``hard`` streams;
the masks and group structure are not used. The result, about 2.4 MB in float16, ships
as ``data/pretrained/tiny-vgg16bn-synthetic.pt`` in torchvision's ``vgg16_bn`` key
layout, registered in :mod:`dmt_core.weights`; ``create_model(DMTConfig.tiny(),
pretrained=True)`` loads it.

    dmt pretrain-backbone --out data/pretrained/tiny-vgg16bn-synthetic.pt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.encoder import CONV_NAMES, TORCHVISION_BN_CONV_INDICES, VGG16Encoder
from ..weights import TINY_WIDTHS

#: the shipped backbone: file stem in data/pretrained, and what it fits
TINY_BACKBONE = "tiny-vgg16bn-synthetic"
#: random stream of the synthetic generator reserved for backbone pretraining
PRETRAIN_STREAM = 5
BACKGROUND_WEIGHT = 0.1


def to_torchvision_keys(encoder: VGG16Encoder) -> dict[str, Tensor]:
    """The encoder's weights in torchvision's ``vgg16_bn().features`` layout."""
    if not encoder.batch_norm:
        raise ValueError("to_torchvision_keys expects a VGG16-BN encoder (batch_norm=True)")
    out: dict[str, Tensor] = {}
    for name, idx in zip(CONV_NAMES, TORCHVISION_BN_CONV_INDICES, strict=True):
        conv, bn = getattr(encoder, name), getattr(encoder, "bn" + name[4:])
        out[f"features.{idx}.weight"] = conv.weight.detach().clone()
        out[f"features.{idx}.bias"] = conv.bias.detach().clone()
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            out[f"features.{idx + 1}.{leaf}"] = getattr(bn, leaf).detach().clone()
    return out


class _Stream:
    """Batches of (images, per-pixel category labels) from the generator's pretrain stream."""

    def __init__(self, seed: int) -> None:
        from ..data.synthetic import Generator, preset_config

        self.cfg = preset_config("train").replace(stream=PRETRAIN_STREAM)
        self.gen = Generator(self.cfg, seed)
        self.next_group = 0
        self.buffer: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def num_classes(self) -> int:
        return self.cfg.num_categories + 1

    def batch(self, size: int) -> tuple[Tensor, Tensor]:
        from ..data.transforms import normalize

        while len(self.buffer) < size:
            g = self.gen.group(self.next_group)
            self.next_group += 1
            for im in g.images:
                assert im.labels is not None
                lut = np.zeros(len(im.objects) + 1, np.int64)
                lut[1:] = [o["category"] + 1 for o in im.objects]
                self.buffer.append((im.image, lut[im.labels]))
        items, self.buffer = self.buffer[:size], self.buffer[size:]
        x = torch.from_numpy(np.stack([a for a, _ in items])).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(np.stack([lab for _, lab in items]))
        flip = torch.rand(size) < 0.5  # the only augmentation: horizontal flips
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        return normalize(x), y


def pretrain_tiny_backbone(
    images: int = 6400,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[VGG16Encoder, dict[str, Any]]:
    """Train the tiny VGG16-BN encoder by dense category segmentation (module docstring).

    Returns the encoder (eval mode) and a report: steps, seconds, and the pixel accuracy
    on objects and on the background of a held-out batch of the same stream.
    """
    torch.manual_seed(seed)
    stream = _Stream(seed)
    k = stream.num_classes
    encoder = VGG16Encoder(TINY_WIDTHS, trainable="all", batch_norm=True)
    heads = nn.ModuleDict({lvl: nn.Conv2d(TINY_WIDTHS[-1], k, 1) for lvl in ("conv4_3", "conv5_3")})
    params = [*encoder.parameters(), *heads.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    weight = torch.ones(k)
    weight[0] = BACKGROUND_WEIGHT
    steps = max(1, images // batch_size)
    held_x, held_y = _Stream(seed + 1).batch(64)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, unit="step", desc="pretrain backbone")
    t0 = time.perf_counter()
    encoder.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, y = stream.batch(batch_size)
        feats = encoder(x)
        loss = sum(
            F.cross_entropy(
                F.interpolate(head(feats[lvl]), size=y.shape[-2:], mode="bilinear"), y, weight
            )
            for lvl, head in heads.items()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.3f}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0

    encoder.eval()
    with torch.no_grad():
        logits = F.interpolate(heads["conv4_3"](encoder(held_x)["conv4_3"]), size=held_y.shape[-2:])
        pred = logits.argmax(1)
    obj = held_y > 0
    report = {
        "images": steps * batch_size,
        "batch_size": batch_size,
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "seconds": round(seconds, 1),
        "held_out_pixel_accuracy": {
            "objects": round(float((pred[obj] == held_y[obj]).float().mean()), 4),
            "background": round(float((pred[~obj] == 0).float().mean()), 4),
        },
        "classes": k,
        "stream": PRETRAIN_STREAM,
    }
    return encoder, report


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ..checkpoint import half_weights, save_checkpoint
    from ..runtime import git_commit

    if args.threads:
        torch.set_num_threads(args.threads)
    encoder, report = pretrain_tiny_backbone(args.images, args.batch_size, args.lr, args.seed)
    weights = half_weights(to_torchvision_keys(encoder))
    path = save_checkpoint(weights, args.out)
    report.update(
        {
            "file": path.name,
            "widths": list(TINY_WIDTHS),
            "layout": "torchvision vgg16_bn().features state dict, float16",
            "command": f"dmt pretrain-backbone --out {args.out} --images {args.images} "
            f"--seed {args.seed}",
            "commit": git_commit(Path(__file__).resolve().parents[2]),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
        }
    )
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    acc = report["held_out_pixel_accuracy"]
    print(
        f"wrote {path} in {report['seconds']:.0f} s; held-out pixel accuracy: objects "
        f"{acc['objects']:.3f} ({report['classes'] - 1} categories), "
        f"background {acc['background']:.3f}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain-backbone`` to the ``dmt`` command."""
    p = subparsers.add_parser(
        "pretrain-backbone",
        help="pretrain the tiny preset's VGG16-BN encoder on synthetic object categories",
    )
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.pt)")
    p.add_argument("--images", type=int, default=6400, help="training images (default 6400)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    p.set_defaults(func=_cmd_pretrain)
