"""The ``dmt`` command line (also ``python -m dmt_core``).

Subcommands live beside the code they drive: this file holds the model commands and
imports the ``register(subparsers)`` of every module listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: modules whose ``register(subparsers)`` adds more subcommands
COMMAND_MODULES: tuple[str, ...] = (
    "dmt_core.data.cli",
    "dmt_core.train",
    "dmt_core.predict",
    "dmt_core.evaluate",
    "dmt_core.pretrained",
    "dmt_core.backbone",
)


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from . import DMT, DMTConfig

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = ["tiny", "paper"] if args.preset == "both" else [args.preset]
    for name in presets:
        cfg = DMTConfig.preset(name)
        size = args.size or cfg.input_size
        t0 = time.perf_counter()
        model = DMT(cfg).eval()
        built = time.perf_counter() - t0
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        images = torch.randn(args.group, 3, size, size, generator=torch.Generator().manual_seed(0))
        print(
            f"== preset {name}: {n_params:,} parameters ({n_train:,} trainable), "
            f"built in {built:.2f} s"
        )
        print(f"   input group: {tuple(images.shape)}  (N images, RGB, H, W)")
        with torch.inference_mode():
            model(images[:1])  # warm-up
            t0 = time.perf_counter()
            out = model(images, aux=True)
            dt = time.perf_counter() - t0
        print(
            f"   co    {tuple(out.co.shape)}   bg {tuple(out.bg.shape)}   "
            f"group {tuple(out.group.shape)}"
        )
        for k, s in zip((6, 5, 4, 3, 2), out.stages, strict=True):
            print(f"   stage {k}: 5 maps of {tuple(s.co.shape)}")
        print(f"   forward with side outputs: {dt:.3f} s ({args.group / dt:.1f} images/s)")
        with torch.inference_mode():
            t0 = time.perf_counter()
            probs = model.predict(images)
            dt = time.perf_counter() - t0
        print(
            f"   inference (co map only): {dt:.3f} s ({args.group / dt:.1f} images/s), "
            f"probabilities in [{probs.min():.3f}, {probs.max():.3f}]"
        )
    return 0


def _cmd_convert_official(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import DMTConfig
    from .convert import convert_official_state_dict

    cfg = DMTConfig.paper()
    obj = load_checkpoint(args.input)
    sd = convert_official_state_dict(obj, cfg, source=str(args.input))
    save_checkpoint(
        {
            "format": "dmt_core",
            "model": sd,
            "config": cfg.to_dict(),
            "origin": f"official:{Path(args.input).name}",
        },
        args.output,
    )
    print(f"converted {len(sd)} tensors from {args.input} -> {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmt", description="DMT co-salient object detection (CVPR 2023): model, data, training"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build a model and run a synthetic group through it (CPU)")
    p.add_argument("--preset", choices=["tiny", "paper", "both"], default="both")
    p.add_argument("--group", type=int, default=5, help="images in the group (default 5)")
    p.add_argument("--size", type=int, default=0, help="image side (default: the preset's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "convert-official",
        help="convert an official DMT checkpoint (.pth) to this project's format",
    )
    p.add_argument("input", type=Path, help="official checkpoint, e.g. DMT_model.pth")
    p.add_argument("output", type=Path, help="converted checkpoint to write, e.g. dmt_official.pt")
    p.set_defaults(func=_cmd_convert_official)

    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"dmt {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
