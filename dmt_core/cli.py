"""The ``dmt`` command line (also ``python -m dmt_core``).

Subcommands live beside the code they drive: this file holds the model commands and
imports the ``register(subparsers)`` of every module listed in :data:`COMMAND_MODULES`.

Errors: every expected failure (file system, decoding, checkpoint, configuration,
divergence, a folder in use) ends in one ``dmt COMMAND: error: ...`` line naming the
file or argument, sometimes a second line on what to do, and exit status 2.
``--debug`` (any subcommand) or ``DMT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

#: modules whose ``register(subparsers)`` adds more subcommands
COMMAND_MODULES: tuple[str, ...] = (
    "dmt_core.data.commands",
    "dmt_core.train",
    "dmt_core.predict",
    "dmt_core.evaluate",
    "dmt_core.weights",
    "dmt_core.recipes.export",
    "dmt_core.recipes.pretrain_backbone",
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
    from .convert import convert_official_state_dict
    from .model.config import DMTConfig

    # the official test script never calls eval(): its BatchNorms normalise with the
    # statistics of the group being predicted, which bn_inference="group" reproduces
    cfg = DMTConfig.paper(bn_inference="group")
    obj = load_checkpoint(args.input)
    sd = convert_official_state_dict(obj, cfg, source=str(args.input))
    save_checkpoint(
        {
            "format": "dmt_core",
            "model": sd,
            "config": cfg.to_dict(),
            "origin": f"official:{Path(args.input).name}",
            "bn_inference": "group: the statistics of the predicted group, as the official "
            "test.py (which never calls eval()); dmt predict --bn running for running ones",
        },
        args.output,
    )
    print(
        f"converted {len(sd)} tensors from {args.input} -> {args.output}; BatchNorm at "
        "inference: the group's own statistics, as the official test.py (--bn running: "
        "the running statistics)"
    )
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
    _add_common_options(parser, top=True)
    for leaf in _leaf_parsers(sub):
        _add_common_options(leaf, top=False)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of pixels, got {text!r}")
    return value


def _add_common_options(p: argparse.ArgumentParser, top: bool) -> None:
    """``--debug`` and ``--max-pixels``, before or after the subcommand."""
    default: dict = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also: DMT_DEBUG=1)",
        **default,
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        metavar="N",
        help="decode images of at most N pixels (default 178,956,970, Pillow's guard "
        "against decompression bombs; also: DMT_MAX_PIXELS)",
        **({"default": None} if top else default),
    )


def _leaf_parsers(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    """The parsers of every subcommand (``data check``, not ``data``)."""
    out = []
    for p in dict.fromkeys(sub.choices.values()):
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        out += _leaf_parsers(nested[0]) if nested else [p]
    return out


#: the errors that a user's input or machine causes (the rest are bugs: a traceback)
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # bad values, undecodable images, checkpoints and JSON (UnicodeError too)
    OSError,  # missing, unreadable, unwritable files, folders in the way, a full disk
    FloatingPointError,  # training diverged
    MemoryError,
)

_OS_HINTS = {
    PermissionError: "check the permissions, or choose another location",
    IsADirectoryError: "a folder is where a file is expected",
    NotADirectoryError: "a file is where a folder is expected",
    FileExistsError: "a file is in the way of a folder of that name",
}


def _expected(e: BaseException) -> bool:
    from .files import InUseError

    oom = type(e).__name__ == "OutOfMemoryError"  # torch.cuda.OutOfMemoryError
    return isinstance(e, EXPECTED_ERRORS + (InUseError,)) or oom


def format_error(command: str, e: BaseException) -> str:
    """One or two lines: what failed (naming the file or argument) and what to do."""
    head = f"dmt {command}: error: "
    if type(e).__name__ == "OutOfMemoryError" or isinstance(e, MemoryError):
        first = str(e).strip().splitlines()[0] if str(e).strip() else "out of memory"
        return (
            f"{head}out of memory ({first[:200]})\n  use fewer images per forward pass "
            "(--max-num), a smaller --input-size, or --device cpu"
        )
    if isinstance(e, OSError) and e.filename is not None:
        what = e.strerror or str(e)
        where = f"{e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
        hint = _OS_HINTS.get(type(e))
        if e.errno == errno.ENOSPC:
            hint = "the disk is full: free some space or write elsewhere"
        elif e.errno == errno.EROFS:
            hint = "the file system is read-only: write elsewhere"
        return f"{head}{where}: {what}" + (f"\n  {hint}" if hint else "")
    text = str(e).strip() or type(e).__name__
    return head + text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dmt``; returns the exit status (0 ok, 2 an error, 1 ``data check`` problems)."""
    from .data.io import set_max_pixels

    args = build_parser().parse_args(argv)
    debug = bool(args.debug) or os.environ.get("DMT_DEBUG", "").strip() not in ("", "0")
    old_limit = set_max_pixels(args.max_pixels) if args.max_pixels else None
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        if debug or not _expected(e):
            raise
        print(format_error(args.command, e), file=sys.stderr)
        return 2
    finally:
        if old_limit is not None:
            set_max_pixels(old_limit)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
