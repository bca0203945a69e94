"""``dmt synth`` and ``dmt data check`` (registered by :mod:`dmt_core.cli`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import load_meta, write_benchmark

    t0 = time.perf_counter()
    out = write_benchmark(
        args.out_dir, preset=args.preset, groups=args.groups, seed=args.seed, size=args.size,
        overwrite=args.overwrite,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    meta = load_meta(out)
    n = sum(len(g["images"]) for g in meta["groups"])
    print(
        f"wrote {len(meta['groups'])} groups, {n} images ({meta['config']['size']} px, "
        f"preset {args.preset}, seed {args.seed}) to {out} in {dt:.1f} s ({n / dt:.0f} images/s)"
    )
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from .check import check_dataset

    report = check_dataset(args.root, subset=args.subset)
    for line in report.lines():
        print(line)
    sys.stdout.flush()
    return 0 if report.ok else 1


def _cmd_data_download(args: argparse.Namespace) -> int:
    from .download import download

    download(args.name, args.to, mirror=args.mirror)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` and ``data`` (with ``check``) to the ``dmt`` command."""
    from .synthetic import PRESETS

    p = subparsers.add_parser(
        "synth", help="write the built-in synthetic co-saliency benchmark (CoCA layout)"
    )
    p.add_argument(
        "out_dir", type=Path, help="output folder (gets Image/, GroundTruth/, meta.json)"
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="train")
    p.add_argument("--groups", type=int, default=None, help="number of groups (default: preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 128)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a benchmark that dmt synth wrote there (nothing else is ever removed)",
    )
    p.set_defaults(func=_cmd_synth)

    p = subparsers.add_parser("data", help="dataset tools (check, download)")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    q = sub.add_parser(
        "check",
        help="decode every file of a dataset; one line per problem, then a summary; "
        "exit 1 when there are problems",
    )
    q.add_argument("root", type=Path, help="dataset folder (any supported layout)")
    q.add_argument("--subset", default=None, help="set name for an images/<Set>/ + gts/<Set>/ root")
    q.set_defaults(func=_cmd_data_check)
    from .download import DATASETS

    q = sub.add_parser(
        "download",
        help="download a CoSOD dataset from its published mirror into DIR/NAME (resumable, "
        "checked, atomic)",
    )
    q.add_argument("name", choices=list(DATASETS), help="the dataset")
    q.add_argument("--to", type=Path, required=True, metavar="DIR", help="folder to install into")
    q.add_argument(
        "--mirror", metavar="URL", help="fetch URL/<archive name> instead of the default host"
    )
    q.set_defaults(func=_cmd_data_download)
