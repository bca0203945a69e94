"""``dmt predict``: co-saliency maps for every image of a dataset, at its original size.

    summary = predict_folder("final.pt", "data/CoCA", "pred/CoCA")
    # -> pred/CoCA/<group>/<stem>.png, one 8-bit PNG per image, the image's own size

Each group is predicted in chunks of at most ``max_num`` (25) images, as DMT's test
script does: boundaries 0, 25, 50, ... with the last chunk back-filled from earlier
images so that it also holds 25 (:func:`dmt_core.data.chunk_indices`). An image that
appears in two chunks takes the prediction of the later one (the official script
overwrites the earlier file); here every PNG is written exactly once, through a
temporary name and a rename, so an interrupted run never leaves a truncated PNG under
a final name.

Images are resized directly to ``input_size`` (bilinear, no crop) and normalised; the
probabilities ``sigmoid(co)`` (n, 1, S, S) are resized back to each image's
``(height, width)`` (bilinear) and rounded to 0..255.

Nothing is written over an input: the prediction folder may not be, contain or lie in
the dataset folder (after resolving symbolic links). Every prediction folder holds a
record, ``dmt_predict.json`` (:data:`RECORD_NAME`), of the model that wrote it (the
checkpoint's path and a SHA-256 of its weights) and the settings that shape the maps
(input size, BatchNorm mode, chunk size, dtype), with the files it wrote. A folder with
predictions of another model, or with prediction images that no record accounts for,
is refused unless ``overwrite=True`` (``--overwrite``), which removes the recorded
predictions of the other model first. ``dmt evaluate`` warns when the predictions it
reads are not all accounted for by the record.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from .data.chunks import InferenceGroups, chunk_indices, resize_to_original
from .data.groups import GroupDataset
from .data.io import is_image_file
from .files import atomic_write
from .metrics import to_uint8
from .model.config import DMTConfig
from .runtime import AMP_MODES, DEVICES, autocast_dtype, select_device
from .weights import list_weights, load_model, resolve

BN_MODES = ("running", "group")
#: the file in every prediction folder that records which model wrote it
RECORD_NAME = "dmt_predict.json"
RECORD_FORMAT = "dmt_predict/1"


@dataclass
class PredictSummary:
    """What :func:`predict_folder` did.

    Attributes:
        images: PNG files written (one per image).
        groups: groups predicted.
        chunks: forward passes (one per chunk).
        forwarded: images through the model (``>= images``: back-filled chunks repeat some).
        seconds: wall time of the whole run (decoding, model, resizing, writing).
        model_seconds: time spent in the forward passes alone.
        images_per_s: ``images / seconds`` (end to end).
        out_dir: the prediction folder.
        device, dtype, bn, input_size: how the model ran.
    """

    images: int
    groups: int
    chunks: int
    forwarded: int
    seconds: float
    model_seconds: float
    images_per_s: float
    out_dir: str
    device: str
    dtype: str
    bn: str
    input_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"wrote {self.images} predictions ({self.groups} groups) to {self.out_dir} in "
            f"{self.seconds:.1f} s ({self.images_per_s:.1f} images/s; model "
            f"{self.forwarded / max(self.model_seconds, 1e-9):.1f} images/s) "
            f"[{self.device}, {self.dtype}, BN {self.bn}, {self.input_size} px]"
        )


def write_png(array: np.ndarray, path: Path, compress_level: int = 1) -> None:
    """Save a (h, w) uint8 array as a grayscale PNG via a temporary file and a rename.

    Compression level 1 (of 9): lossless like any level, several times faster to encode
    than PIL's default 6, files a little larger.
    """
    with atomic_write(path) as f:
        Image.fromarray(array, mode="L").save(f, format="PNG", compress_level=compress_level)


def _last_owner(n: int, max_num: int) -> list[int]:
    """For each index of a group of ``n``, the last chunk that holds it (its writer)."""
    owner = [0] * n
    for k, chunk in enumerate(chunk_indices(n, max_num)):
        for i in chunk:
            owner[i] = k
    return owner


def _identity(item: dict[str, Any]) -> dict[str, Any]:
    return item


def _check_input_size(input_size: int) -> int:
    if int(input_size) <= 0 or int(input_size) % 16:
        raise ValueError(f"--input-size must be a positive multiple of 16, got {input_size}")
    return int(input_size)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises:
        FileNotFoundError / NotADirectoryError: ``folder`` is not a folder.
        ValueError: it holds no image file (the message lists what it holds).
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    files = sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        seen = sorted(p.name for p in root.iterdir())[:5]
        raise ValueError(f"{root}: no image file (.jpg, .png, ...) in it; it holds {seen}")
    return files


@torch.no_grad()
def predict_images(
    model: torch.nn.Module,
    images: Sequence[str | os.PathLike | Image.Image | np.ndarray],
    *,
    max_num: int = 25,
) -> list[np.ndarray]:
    """Co-saliency maps for one group given as image files, PIL images or uint8 arrays
    (h, w, 3): one float32 (h, w) probability map per image, at the image's own size,
    in chunks of at most ``max_num`` as the official test script (on the model's device,
    in its current BatchNorm mode).

    Raises:
        ValueError: fewer than one image, or a file that is not a readable image (named).
    """
    from .data.chunks import load_for_inference
    from .data.io import load_image, to_rgb

    if len(images) == 0:
        raise ValueError("predict_images: the group is empty; give at least one image")
    pil = []
    for im in images:
        if isinstance(im, (str, os.PathLike)):
            im = load_image(im)
        elif isinstance(im, np.ndarray):
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(
                    f"predict_images: arrays must be uint8 (h, w, 3), got {im.dtype} {im.shape}"
                )
            im = Image.fromarray(im)
        pil.append(to_rgb(im))
    size = model.config.input_size
    device = next(model.parameters()).device
    x = torch.stack([load_for_inference(im, size) for im in pil])
    was_training = model.training
    model.eval()
    try:
        probs = torch.empty(len(pil), 1, size, size)
        for chunk in chunk_indices(len(pil), max_num):
            probs[chunk] = model.predict(x[chunk].to(device)).float().cpu()
    finally:
        model.train(was_training)
    return resize_to_original(probs, [(im.height, im.width) for im in pil])


def predict_folder(
    model: torch.nn.Module | str | os.PathLike,
    data: str | os.PathLike | GroupDataset,
    out: str | os.PathLike,
    *,
    input_size: int | None = None,
    device: str = "auto",
    amp: str = "off",
    bn: str | None = None,
    max_num: int = 25,
    groups: Sequence[str] | None = None,
    workers: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    checkpoint: str | os.PathLike | None = None,
) -> PredictSummary:
    """Predict every image of ``data`` and write ``out/<group>/<stem>.png``.

    Args:
        model: a ``DMT`` module, or a checkpoint path / shipped model name.
        data: a dataset folder in any layout of :mod:`dmt_core.data.groups` (masks are
            not needed) or a :class:`GroupDataset`.
        out: prediction folder (created), outside the dataset folder; it records the
            model in ``dmt_predict.json`` and refuses predictions of another model.
        input_size: side the images are resized to (default: ``model.config.input_size``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        amp: ``off`` (float32, as the official test script; the default), ``auto``
            (GPUs only: bfloat16 where native, else float16), ``bf16`` or ``fp16``.
        bn: inference BatchNorm mode, ``"running"`` or ``"group"`` (default: the config's).
        max_num: chunk size (DMT: 25).
        groups: restrict to these group names.
        workers: DataLoader worker processes decoding images (0: in this process).
        progress: show a tqdm progress bar over images.
        overwrite: write into a folder that holds predictions of another model (or
            unrecorded ones), removing the other model's recorded predictions first.
        checkpoint: the file a ``model`` module was loaded from, for the record (a
            checkpoint ``model`` is recorded by itself).

    The model's training flag, BN mode and device are restored afterwards.

    Raises:
        ValueError: ``out`` is, contains or lies in the dataset folder; ``out`` holds
            predictions of another model and ``overwrite`` is off; an image has NaN or
            infinite pixel values.

    Returns:
        A :class:`PredictSummary` (images, groups, seconds, images/s, ...).
    """
    t_start = time.perf_counter()
    if not isinstance(model, torch.nn.Module):
        checkpoint = resolve(model)
        model = load_model(checkpoint)
    ckpt_name = str(Path(checkpoint).resolve()) if checkpoint is not None else None
    cfg: DMTConfig = model.config  # type: ignore[assignment]
    size = _check_input_size(input_size if input_size is not None else cfg.input_size)
    if bn is not None and bn not in BN_MODES:
        raise ValueError(f"--bn must be one of {BN_MODES}, got {bn!r}")
    if int(max_num) < 1:
        raise ValueError(f"max_num must be >= 1, got {max_num}")
    dev = select_device(device)
    amp_as = autocast_dtype(amp, dev)
    dtype = amp_as or torch.float32

    chunks = InferenceGroups(data, input_size=size, max_num=max_num, groups=groups)
    ds = chunks.dataset
    selected = {g.name for g, _, _, _ in chunks.items}
    total = sum(len(g) for g in ds if g.name in selected)
    owners = {g.name: _last_owner(len(g), max_num) for g in ds if g.name in selected}
    out_dir = Path(out)
    check_out_dir(out_dir, ds.root)
    source = {
        "model_sha256": weights_sha256(model),
        "input_size": size,
        "bn": bn or cfg.bn_inference,
        "max_num": int(max_num),
        "dtype": str(dtype).replace("torch.", ""),
    }
    planned = {g.name: [p.stem for p in g.images] for g in ds if g.name in selected}
    _claim_out_dir(out_dir, source, ckpt_name, ds.root, planned, overwrite)
    in_dtype = dtype if amp_as else next(model.parameters()).dtype

    was_training = model.training
    old_bn = cfg.bn_inference
    old_device = next(model.parameters()).device
    model.eval().to(dev)
    if bn is not None:
        model.set_inference_bn(bn)  # type: ignore[operator]
    loader = DataLoader(
        chunks, batch_size=None, shuffle=False, num_workers=int(workers), collate_fn=_identity
    )
    bar = _progress(total, progress)
    written = forwarded = n_chunks = 0
    model_seconds = 0.0
    pending: list[Future] = []
    autocast = torch.autocast(dev.type, dtype=dtype) if amp_as else contextlib.nullcontext()
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            for item in loader:
                name = item["group"]
                keep = [
                    j for j, i in enumerate(item["indices"]) if owners[name][i] == item["chunk"]
                ]
                _check_finite(item)
                images = item["images"].to(dev, dtype=in_dtype, non_blocking=True)
                t0 = time.perf_counter()
                with torch.inference_mode(), autocast:
                    logits = model(images, aux=False).co
                probs = torch.sigmoid(logits[keep].float()).cpu()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                model_seconds += time.perf_counter() - t0
                forwarded += images.shape[0]
                n_chunks += 1
                gdir = out_dir / name
                gdir.mkdir(parents=True, exist_ok=True)
                sizes = [item["sizes"][j] for j in keep]
                stems = [item["stems"][j] for j in keep]
                # resizing and PNG encoding overlap with the next forward pass
                _drain(pending, limit=2)
                pending.append(writer.submit(_write_chunk, probs, sizes, stems, gdir))
                written += len(keep)
                if bar is not None:
                    bar.set_postfix_str(name, refresh=False)
                    bar.update(len(keep))
            _drain(pending, limit=0)
    finally:
        if bar is not None:
            bar.close()
        model.set_inference_bn(old_bn)  # type: ignore[operator]
        model.to(old_device).train(was_training)
    if written != total:  # every image of every selected group must have been written
        raise RuntimeError(f"internal error: wrote {written} predictions for {total} images")
    seconds = time.perf_counter() - t_start
    return PredictSummary(
        images=written,
        groups=len(selected),
        chunks=n_chunks,
        forwarded=forwarded,
        seconds=seconds,
        model_seconds=model_seconds,
        images_per_s=written / seconds if seconds > 0 else float("inf"),
        out_dir=str(out_dir),
        device=str(dev),
        dtype=str(dtype).replace("torch.", ""),
        bn=bn or old_bn,
        input_size=size,
    )


def _check_finite(item: dict[str, Any]) -> None:
    """Refuse a chunk with NaN or infinite inputs, naming the image (one would spoil the
    maps of the whole group: the images meet in R2R, CoT2T and group BatchNorm)."""
    finite = torch.isfinite(item["images"]).flatten(1).all(1)
    if not bool(finite.all()):
        j = int((~finite).nonzero()[0, 0])
        raise ValueError(f"{item['paths'][j]}: NaN or infinite pixel values after decoding")


# ---------------------------------------------------------------- the folder's record


def check_out_dir(out: Path, data: str | os.PathLike) -> None:
    """Refuse a prediction folder that is, contains or lies in the dataset folder."""
    o, d = Path(out).resolve(), Path(data).resolve()
    if o == d or o.is_relative_to(d) or d.is_relative_to(o):
        where = "is" if o == d else ("lies inside" if o.is_relative_to(d) else "contains")
        raise ValueError(
            f"--out {out} {where} the dataset folder --data {data} (resolved: {o} and {d}); "
            "predictions would be written among its images and masks: choose a folder "
            "outside the dataset"
        )
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: a file, not a folder; choose another --out")


def weights_sha256(model: torch.nn.Module) -> str:
    """A SHA-256 of the model's state dict (names, dtypes, shapes and values)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_record(pred_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The ``dmt_predict.json`` of a prediction folder (None when there is none).

    Raises:
        ValueError: the file exists but is not a record.
    """
    path = Path(pred_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable prediction record ({e})") from e
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path}: not a dmt predict record")
    return data


def prediction_images(pred_dir: Path) -> list[Path]:
    """The image files in the group folders of ``pred_dir`` (``<group>/<stem>.<ext>``)."""
    if not pred_dir.is_dir():
        return []
    return [
        f
        for gdir in sorted(pred_dir.iterdir())
        if gdir.is_dir() and not gdir.name.startswith(".")
        for f in sorted(gdir.iterdir())
        if f.is_file() and is_image_file(f) and not f.name.startswith(".")
    ]


def _describe_source(record: dict[str, Any]) -> str:
    src = record.get("source", {})
    return (
        f"checkpoint {record.get('checkpoint') or '(a model object)'}, weights sha256 "
        f"{str(src.get('model_sha256'))[:12]}..., input size {src.get('input_size')}, "
        f"BN {src.get('bn')}"
    )


def _claim_out_dir(
    out: Path,
    source: dict[str, Any],
    checkpoint: str | None,
    data: Path,
    planned: dict[str, list[str]],
    overwrite: bool,
) -> None:
    """Check that ``out`` may take this model's predictions, then write its record.

    The record is written before any prediction, so every file this run writes is
    accounted for even if it is interrupted.
    """
    try:
        old = read_record(out)
    except ValueError:
        if not overwrite:
            raise
        old = None
    same = old is not None and old.get("source") == source
    recorded = _recorded_files(out, old) if old is not None else set()
    foreign = [p for p in prediction_images(out) if p not in recorded]
    if (old is not None and not same) or foreign:
        if not overwrite:
            what = (
                f"predictions of another model ({_describe_source(old)})"
                if old is not None and not same
                else f"{len(foreign)} prediction image(s) that its {RECORD_NAME} does not "
                f"account for (e.g. {foreign[0]})"
            )
            raise ValueError(
                f"--out {out} holds {what}; this run would mix them with its own: choose "
                "another --out, or pass --overwrite to replace them"
            )
        if not same:
            for p in recorded:  # the other model's own predictions go; nothing else
                p.unlink(missing_ok=True)
    groups: dict[str, list[str]] = {}
    if same and old is not None:
        groups = {g: list(stems) for g, stems in old.get("groups", {}).items()}
    for g, stems in planned.items():
        groups[g] = sorted(set(groups.get(g, [])) | set(stems))
    record = {
        "format": RECORD_FORMAT,
        "source": source,
        "checkpoint": checkpoint,
        "data": str(data.resolve()),
        "groups": groups,
    }
    with atomic_write(out / RECORD_NAME, "w") as f:
        f.write(json.dumps(record, indent=1) + "\n")


def _recorded_files(out: Path, record: dict[str, Any]) -> set[Path]:
    """The prediction files present in ``out`` that ``record`` lists."""
    listed = {(g, stem) for g, stems in record.get("groups", {}).items() for stem in stems}
    return {p for p in prediction_images(out) if (p.parent.name, p.stem) in listed}


def _write_chunk(
    probs: torch.Tensor, sizes: list[tuple[int, int]], stems: list[str], gdir: Path
) -> None:
    """Resize probabilities (n, 1, S, S) to the original sizes and write one PNG each."""
    for prob, stem in zip(resize_to_original(probs, sizes), stems, strict=True):
        write_png(to_uint8(prob), gdir / f"{stem}.png")


def _drain(pending: list[Future], limit: int) -> None:
    """Wait until at most ``limit`` writes are pending (re-raising their errors)."""
    while len(pending) > limit:
        pending.pop(0).result()


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc="predict", dynamic_ncols=True)


# ---------------------------------------------------------------- command line


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = resolve(args.checkpoint)
    model = load_model(checkpoint)
    data = GroupDataset(args.data, subset=args.subset) if args.subset else args.data
    summary = predict_folder(
        model,
        data,
        args.out,
        input_size=args.input_size,
        device=args.device,
        amp=args.amp,
        bn=args.bn,
        max_num=args.max_num,
        groups=args.groups,
        workers=args.workers,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        checkpoint=checkpoint,
    )
    print(summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict`` to the ``dmt`` command."""
    p = subparsers.add_parser(
        "predict",
        help="write a co-saliency map PNG per image (PRED_DIR/<group>/<stem>.png, original size)",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file (dmt train / dmt convert-official), run folder, or a registered "
        "model (dmt weights): " + ", ".join(list_weights("model")),
    )
    p.add_argument(
        "--data", type=Path, required=True, help="dataset folder, any layout (masks optional)"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help=f"prediction folder to write, outside --data (records the model in {RECORD_NAME})",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the predictions of another model in --out (default: refuse)",
    )
    p.add_argument("--subset", default=None, help="set name for an images/<Set>/ + gts/<Set>/ root")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument(
        "--amp",
        choices=AMP_MODES,
        default="off",
        help="mixed precision as in dmt train: auto (GPUs only: bf16 where native, else fp16), "
        "bf16, fp16; default off (float32, as the official test script)",
    )
    p.add_argument(
        "--bn",
        choices=BN_MODES,
        default=None,
        help="inference BatchNorm: running statistics or the group's own (default: checkpoint's)",
    )
    p.add_argument(
        "--input-size", type=int, default=None, help="image side (default: the checkpoint's)"
    )
    p.add_argument("--max-num", type=int, default=25, help="images per forward pass (default 25)")
    p.add_argument("--groups", nargs="+", default=None, help="only these groups")
    p.add_argument("--workers", type=int, default=0, help="image decoding processes (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
