"""Decoding of images and masks, whatever their storage format.

Every image comes back as an 8-bit RGB ``PIL.Image`` and every mask as a boolean
array ``(h, w)``. Grayscale, RGBA, palette, 16-bit and CMYK files are all handled;
broken files raise a ``ValueError`` that names the file.

EXIF orientation: phone photos often store the pixels sideways plus an EXIF tag
saying how to rotate them. Datasets disagree on whether their masks were drawn on
the stored or on the rotated pixels, so :func:`load_image` takes the size of the
mask (``expect_size``) and returns the orientation that matches it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: file extensions read as images or masks (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION = 0x0112


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode ``path``; any decoding failure becomes a ValueError naming it."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        img = Image.open(p)
        img.load()  # decode now, so truncated files fail here and not later
    except UnidentifiedImageError as e:
        raise ValueError(f"{p}: unreadable file (not a recognised image format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ValueError(f"{p}: truncated file ({msg})") from e
        raise ValueError(f"{p}: unreadable file ({msg})") from e
    return img


def _to_uint8_array(img: Image.Image) -> np.ndarray:
    """Pixel values of a single-channel high-bit-depth image scaled to uint8 (h, w)."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
        return (arr.astype(np.uint32) // 257).clip(0, 255).astype(np.uint8)
    if img.mode == "F":
        a = arr.astype(np.float64)
        scale = 255.0 if a.max(initial=0.0) <= 1.0 else 1.0
        return (a * scale).clip(0, 255).round().astype(np.uint8)
    return arr.clip(0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha is dropped, 16-bit is scaled down)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_to_uint8_array(img), mode="L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    # CMYK, YCbCr, LAB, L, LA, 1, P, RGBA, RGBX, ... : PIL knows the conversion
    return img.convert("RGB")


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8), or 1 when there is none."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF blocks: treat as not rotated
        return 1
    return value if 1 <= value <= 8 else 1


def image_size_candidates(path: str | Path) -> list[tuple[int, int]]:
    """Sizes ``(width, height)`` an image may have: EXIF-rotated first, then as stored.

    Only reads the header. Used to compare an image with its mask.
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            w, h = img.size
            rot = exif_orientation(img) in (5, 6, 7, 8)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{p}: unreadable file ({e})") from e
    return [(h, w), (w, h)] if rot else [(w, h)]


def load_image(path: str | Path, expect_size: tuple[int, int] | None = None) -> Image.Image:
    """Load an image as 8-bit RGB.

    Args:
        path: image file (any format PIL reads).
        expect_size: ``(width, height)`` of the image's mask, if known. When the file has
            an EXIF orientation, the orientation whose size equals ``expect_size`` is
            returned (the EXIF-rotated one when both match). Without it, EXIF is applied.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable or truncated file, or no orientation matches ``expect_size``.
    """
    img = _open(path)
    orientation = exif_orientation(img)
    rotated = ImageOps.exif_transpose(img) if orientation != 1 else img
    if expect_size is not None:
        expect_size = (int(expect_size[0]), int(expect_size[1]))
        if rotated.size == expect_size:
            img = rotated
        elif img.size != expect_size:
            raise ValueError(
                f"{path}: image of size {rotated.size[0]}x{rotated.size[1]} (width x height)"
                f" does not match its mask of size {expect_size[0]}x{expect_size[1]}"
            )
    else:
        img = rotated
    return to_rgb(img)


def load_mask(path: str | Path) -> np.ndarray:
    """Load a mask as a boolean array ``(h, w)``.

    Gray levels are thresholded at 128 (of 255, after scaling 16-bit files). Masks that
    store labels 0/1 are recognised (all values in {0, 1}). Colour masks are converted to
    luminance; palette masks with a coloured palette use "index != 0". The EXIF
    orientation of a mask is ignored (masks are drawn on the stored pixels).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable or truncated file.
    """
    img = _open(path)
    if img.mode == "1":
        return np.asarray(img, dtype=bool).copy()
    if img.mode == "P":
        pal = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        idx = np.asarray(img)
        used = pal[np.unique(idx)] if len(pal) else np.zeros((0, 3), np.int32)
        gray_palette = len(used) == 0 or bool(np.all(used.max(1) == used.min(1)))
        if not gray_palette:
            return idx != 0
        img = img.convert("L")
    elif img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.asarray(img)
        if arr.size and arr.max() <= 1 and arr.min() >= 0:
            return arr > 0
        img = Image.fromarray(_to_uint8_array(img), mode="L")
    elif img.mode != "L":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.size and arr.max() == 1:
        return arr > 0  # label masks stored as 0/1
    return arr >= 128
