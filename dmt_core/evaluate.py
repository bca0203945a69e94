"""``dmt evaluate``: the standard co-saliency metrics of a prediction folder, via pysodmetrics.

    result = evaluate_folder("pred/CoCA", "data/CoCA")    # the JSON structure, a dict
    result["overall"]["Sm"], result["groups"]["apple"]["MAE"]
    fig = dmt_core.viz.plot_curves([evaluate("pred/CoCA", "data/CoCA", label="DMT")])

Metrics (the community protocol of the official evaluation code): S-measure (alpha 0.5), E-measure
(max / mean over the 256 thresholds of the dataset-mean curve, adaptive at
``min(2 * mean, 1)``), F-measure with beta^2 = 0.3 (max / mean / adaptive), weighted F
(beta 1) and MAE, all computed by :mod:`dmt_core.metrics` (pysodmetrics) on each
(prediction, mask) pair and **averaged over all images of the dataset**, not over groups.
Predictions are read as 8-bit grayscale (min-max normalised by pysodmetrics), masks are decoded by
:func:`dmt_core.data.load_mask` (foreground = gray >= 128, as DMT's ``gt / 255 > 0.5``)
and passed to pysodmetrics as 0/255.

Per group, one set of pysodmetrics accumulators sees that group's images. Every
pysodmetrics result is a mean over images (the curves per threshold), so the dataset
numbers are the image-count-weighted means of the group results, and max / mean of
the curves are taken after that averaging: exactly what a single accumulator over the
whole dataset gives (up to float rounding).

Every mask needs ``PRED_DIR/<group>/<stem>.png`` (another image extension with the same
stem is accepted) of the mask's size; a missing or mis-sized prediction is an error
that lists the files. Prediction files without a mask are counted and reported, not used.
Masks smaller than :data:`MIN_SIDE` pixels on a side are refused by name: the metrics
are undefined or absurd there (a 1x1 image has an E-measure of 4.5e15). When the
predictions are not all accounted for by the folder's ``dmt_predict.json`` (the record
``dmt predict`` writes, see :mod:`dmt_core.predict`), the evaluation carries a warning
that the folder may mix models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from .data.groups import Group, GroupDataset
from .data.io import is_image_file, load_mask, too_large_error
from .files import atomic_write
from .metrics import CURVE_KEYS, METRIC_KEYS, SODMetrics, summarise, weighted_mean

#: how many problem files an error message lists
SHOW_PROBLEMS = 5
#: the smallest mask side (pixels) the metrics are evaluated on
MIN_SIDE = 8


@dataclass
class Curves:
    """Dataset-mean curves over the 256 binarisation thresholds ``t`` (pred >= t).

    All arrays are (256,) and indexed by the threshold 0..255 (ascending).
    """

    precision: np.ndarray
    recall: np.ndarray
    fmeasure: np.ndarray
    emeasure: np.ndarray

    @property
    def thresholds(self) -> np.ndarray:
        return np.arange(256)

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "thresholds": self.thresholds.tolist(),
            **{k: getattr(self, k).astype(float).tolist() for k in CURVE_KEYS},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[float]]) -> Curves:
        return cls(**{k: np.asarray(d[k], dtype=np.float64) for k in CURVE_KEYS})


@dataclass
class Evaluation:
    """The metrics of one prediction folder against one dataset.

    Attributes:
        label: a name for tables and plots (default: the prediction folder's name).
        overall: ``METRIC_KEYS`` -> value, averaged over all images.
        groups: group name -> ``METRIC_KEYS`` -> value (its images only), plus ``images``.
        images: number of evaluated images.
        curves: the dataset-mean PR / F / E curves.
        unused_predictions: prediction files with no mask (not evaluated).
        warnings: what may make the numbers misleading (e.g. a folder that mixes models).
    """

    label: str
    pred_dir: str
    data: str
    overall: dict[str, float]
    groups: dict[str, dict[str, float]]
    images: int
    curves: Curves
    seconds: float = 0.0
    unused_predictions: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """The JSON structure: ``overall``, ``groups`` (+ counts), optionally ``curves``."""
        out: dict[str, Any] = {
            "label": self.label,
            "pred": self.pred_dir,
            "data": self.data,
            "images": self.images,
            "num_groups": len(self.groups),
            "overall": dict(self.overall),
            "groups": {k: dict(v) for k, v in self.groups.items()},
            "unused_predictions": self.unused_predictions,
            "warnings": list(self.warnings),
            "seconds": self.seconds,
            "metrics": {
                "library": f"pysodmetrics {_sod_version()}",
                "averaging": "over all images",
                "F beta^2": 0.3,
                "thresholds": 256,
            },
        }
        if curves:
            out["curves"] = self.curves.to_dict()
        return out


def _sod_version() -> str:
    try:
        from importlib.metadata import version

        return version("pysodmetrics")
    except Exception:  # noqa: BLE001 - only informative
        return "unknown"


# ---------------------------------------------------------------- pairing files


def _prediction_files(gdir: Path) -> dict[str, Path]:
    """Image files of a prediction group folder by stem (``.png`` wins over others)."""
    out: dict[str, Path] = {}
    if not gdir.is_dir():
        return out
    for p in sorted(gdir.iterdir(), key=lambda q: (q.suffix.lower() != ".png", q.name)):
        if p.is_file() and is_image_file(p) and not p.name.startswith("."):
            out.setdefault(p.stem, p)
    return out


def _size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header; unreadable files raise naming the file."""
    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise too_large_error(path) from e
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: unreadable image ({e})") from e


def pair_files(
    pred_dir: str | os.PathLike, dataset: GroupDataset
) -> tuple[list[tuple[Group, list[Path]]], int]:
    """The prediction file of every mask, checked for presence and size.

    Returns:
        ``([(group, prediction paths in the group's order)], unused)`` where ``unused``
        counts prediction files that no mask asks for.

    Raises:
        FileNotFoundError: ``pred_dir`` is not a folder.
        ValueError: predictions are missing or differ in size from their masks; the
            message gives the counts and the first few files of each kind.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} does not exist")
    missing: list[str] = []
    missized: list[str] = []
    too_small: list[str] = []
    pairs: list[tuple[Group, list[Path]]] = []
    used = 0
    available = 0
    for g in dataset:
        assert g.masks is not None
        files = _prediction_files(pred_dir / g.name)
        available += len(files)
        preds: list[Path] = []
        for stem, mask in zip(g.stems, g.masks, strict=True):
            p = files.get(stem)
            if p is None:
                missing.append(str(pred_dir / g.name / f"{stem}.png"))
                continue
            used += 1
            ps, ms = _size(p), _size(mask)
            if ps != ms:
                missized.append(f"{p} is {ps[0]}x{ps[1]}, its mask {mask} is {ms[0]}x{ms[1]}")
            if min(ms) < MIN_SIDE:
                too_small.append(f"{mask} is {ms[0]}x{ms[1]}")
            preds.append(p)
        pairs.append((g, preds))
    if too_small:
        raise ValueError(
            f"{len(too_small)} mask(s) smaller than {MIN_SIDE}x{MIN_SIDE} pixels, too small "
            "to evaluate (S- and E-measure are undefined or absurd there): leave them out "
            "of the dataset, e.g.:\n  " + "\n  ".join(too_small[:SHOW_PROBLEMS])
        )
    if missing or missized:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} of {dataset.num_images} predictions missing, e.g.:\n  "
                + "\n  ".join(missing[:SHOW_PROBLEMS])
                + _layout_hint(pred_dir, dataset, used)
            )
        if missized:
            parts.append(
                f"{len(missized)} predictions differ in size from their masks "
                "(width x height), e.g.:\n  " + "\n  ".join(missized[:SHOW_PROBLEMS])
            )
        raise ValueError(f"{pred_dir}: " + "\n".join(parts))
    unused = sum(
        1
        for gdir in pred_dir.iterdir()
        if gdir.is_dir()
        for p in gdir.iterdir()
        if p.is_file() and is_image_file(p) and not p.name.startswith(".")
    )
    return pairs, unused - used


def provenance_warnings(
    pred_dir: str | os.PathLike, pairs: Sequence[tuple[Group, list[Path]]]
) -> list[str]:
    """Warnings when the predictions used are not all accounted for by ``dmt_predict.json``.

    No record: which model wrote the folder is unknown. A record: the predictions it does
    not list come from elsewhere (an earlier model, another tool), so the folder mixes
    sources and the numbers describe no single model.
    """
    from .predict import RECORD_NAME, read_record

    pred_dir = Path(pred_dir)
    used = [p for _, preds in pairs for p in preds]
    if not used:
        return []
    try:
        record = read_record(pred_dir)
    except ValueError as e:
        return [f"{e}; cannot tell which model wrote the predictions"]
    if record is None:
        return [
            f"{pred_dir}: no {RECORD_NAME} (written by dmt predict), so which model wrote "
            "these predictions is not recorded"
        ]
    listed = {(g, s) for g, stems in record.get("groups", {}).items() for s in stems}
    foreign = [p for p in used if (p.parent.name, p.stem) not in listed]
    if not foreign:
        return []
    return [
        f"{pred_dir}: {len(foreign)} of {len(used)} predictions were not written by the model "
        f"its {RECORD_NAME} names (e.g. {foreign[0]}): the folder mixes sources; predict "
        "into an empty folder"
    ]


def _layout_hint(pred_dir: Path, dataset: GroupDataset, used: int) -> str:
    """A hint when no prediction matched at all (wrong folder level, typically)."""
    if used:
        return ""
    names = {g.name for g in dataset}
    subdirs = [p for p in pred_dir.iterdir() if p.is_dir()]
    for sub in subdirs:
        if any((sub / n).is_dir() for n in names):
            return f"\n  (the group folders are in {sub}: pass that folder as the predictions)"
    return (
        f"\n  (no prediction matched; expected {pred_dir}/<group>/<stem>.png for the groups "
        f"of {dataset.root}, e.g. {sorted(names)[:3]})"
    )


def read_prediction(path: Path) -> np.ndarray:
    """A prediction as a (h, w) uint8 array (colour and 16-bit files are converted)."""
    arr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise ValueError(f"{path}: unreadable prediction image")
    return arr


def _as_dataset(data: str | os.PathLike | GroupDataset, subset: str | None) -> GroupDataset:
    if isinstance(data, GroupDataset):
        if not data.has_masks:
            raise ValueError(f"{data.root}: evaluation needs masks, this dataset has none")
        return data
    return GroupDataset(Path(data), subset=subset, require_masks=True)


def evaluate(
    pred_dir: str | os.PathLike,
    data: str | os.PathLike | GroupDataset,
    *,
    label: str | None = None,
    subset: str | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate ``pred_dir/<group>/<stem>.png`` against the masks of ``data``.

    Args:
        pred_dir: prediction folder (one subfolder per group, as ``dmt predict`` writes).
        data: dataset folder with masks (any layout) or a :class:`GroupDataset`.
        label: name in tables and plots (default: the prediction folder's name).
        subset: set name for an ``images/<Set>/ + gts/<Set>/`` root holding several sets.
        progress: tqdm progress bar over images.

    Raises:
        ValueError: missing / mis-sized / unreadable predictions (named), or no masks.
    """
    t0 = time.perf_counter()
    dataset = _as_dataset(data, subset)
    pairs, unused = pair_files(pred_dir, dataset)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=dataset.num_images, unit="img", desc="evaluate", dynamic_ncols=True)
    raws: list[dict[str, Any]] = []
    counts: list[int] = []
    per_group: dict[str, dict[str, float]] = {}
    try:
        for g, preds in pairs:
            acc = SODMetrics()
            for pred_path, mask_path in zip(preds, g.masks or [], strict=True):
                pred = read_prediction(pred_path)
                gt = load_mask(mask_path)  # bool; SODMetrics makes it 0/255 once
                if pred.shape != gt.shape:  # e.g. an EXIF tag the header check did not see
                    raise ValueError(
                        f"{pred_path}: prediction of {pred.shape[1]}x{pred.shape[0]} does not "
                        f"match its mask {mask_path} of {gt.shape[1]}x{gt.shape[0]}"
                    )
                acc.step(pred, gt)
                if bar is not None:
                    bar.update(1)
            raw = acc.raw()
            raws.append(raw)
            counts.append(acc.n)
            per_group[g.name] = {**summarise(raw), "images": acc.n}
    finally:
        if bar is not None:
            bar.close()
    total = weighted_mean(raws, counts)
    curves = Curves(**{k: np.asarray(total[k]) for k in CURVE_KEYS})
    return Evaluation(
        label=label or Path(pred_dir).name,
        pred_dir=str(pred_dir),
        data=str(dataset.root),
        overall=summarise(total),
        groups=per_group,
        images=sum(counts),
        curves=curves,
        seconds=time.perf_counter() - t0,
        unused_predictions=unused,
        warnings=provenance_warnings(pred_dir, pairs),
    )


def evaluate_folder(
    pred_dir: str | os.PathLike,
    data: str | os.PathLike | GroupDataset,
    *,
    curves: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate` as the JSON dict (``overall``, ``groups``; ``curves`` on request)."""
    return evaluate(pred_dir, data, **kwargs).to_dict(curves=curves)


# ---------------------------------------------------------------- output


def format_table(evaluations: Sequence[Evaluation], per_group: bool = True) -> str:
    """Text tables: per-group rows of each evaluation (optional), then one overall row each."""
    head = f"{'':<32}{'images':>7}" + "".join(f"{k:>8}" for k in METRIC_KEYS)

    def row(name: str, n: int, m: Mapping[str, float]) -> str:
        name = name if len(name) <= 31 else name[:30] + "~"
        return f"{name:<32}{n:>7}" + "".join(f"{m[k]:>8.4f}" for k in METRIC_KEYS)

    lines: list[str] = []
    if per_group:
        for ev in evaluations:
            lines += [f"== {ev.label}: per group", head]
            lines += [row(g, int(m["images"]), m) for g, m in ev.groups.items()]
            lines.append("")
    lines += ["== overall (mean over images)", head]
    lines += [row(ev.label, ev.images, ev.overall) for ev in evaluations]
    return "\n".join(lines)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _save_figure_atomic(fig, path: Path) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=120)


# ---------------------------------------------------------------- command line


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.labels is not None and len(args.labels) != len(args.pred):
        raise ValueError(f"--labels: got {len(args.labels)} labels for {len(args.pred)} --pred")
    labels = args.labels or [None] * len(args.pred)
    dataset = _as_dataset(args.data, args.subset)
    evals = [
        evaluate(p, dataset, label=lab, progress=not args.no_progress)
        for p, lab in zip(args.pred, labels, strict=True)
    ]
    print(format_table(evals, per_group=not args.summary_only))
    for ev in evals:
        if ev.unused_predictions:
            print(f"note: {ev.pred_dir}: {ev.unused_predictions} prediction file(s) have no mask")
        for w in ev.warnings:
            print(f"warning: {w}", file=sys.stderr)
    if args.json is not None:
        data = (
            evals[0].to_dict()
            if len(evals) == 1
            else {"runs": {ev.label: ev.to_dict() for ev in evals}}
        )
        _write_text_atomic(args.json, json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.curves is not None:
        from .viz import plot_curves

        _save_figure_atomic(plot_curves(evals, title=dataset.name), args.curves)
        print(f"wrote {args.curves}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``evaluate`` to the ``dmt`` command."""
    p = subparsers.add_parser(
        "evaluate",
        help="S-measure, E-measure, F-measure, weighted F, MAE of prediction folders "
        "(pysodmetrics, mean over images)",
    )
    p.add_argument(
        "--pred", type=Path, nargs="+", required=True, help="prediction folder(s): <group>/<stem>"
    )
    p.add_argument("--data", type=Path, required=True, help="dataset folder with masks")
    p.add_argument("--labels", nargs="+", default=None, help="names of the --pred folders")
    p.add_argument("--subset", default=None, help="set name for an images/<Set>/ + gts/<Set>/ root")
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write overall, per-group and curve numbers (several --pred: under 'runs')",
    )
    p.add_argument("--curves", type=Path, default=None, help="PR and F-threshold plot (PNG)")
    p.add_argument("--summary-only", action="store_true", help="no per-group table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)
