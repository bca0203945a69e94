"""Decoding of images and masks, whatever their storage format.

Every image comes back as an 8-bit RGB ``PIL.Image`` and every mask as a boolean
array ``(h, w)``. Grayscale, RGBA, palette, 16-bit and CMYK files are all handled;
broken files raise a ``ValueError`` that names the file.

EXIF orientation: phone photos often store the pixels sideways plus an EXIF tag
saying how to rotate them. Datasets disagree on whether their masks were drawn on
the stored or on the rotated pixels, so :func:`load_image` takes the size of the
mask (``expect_size``) and returns the orientation that matches it.

Size limit: a file whose header claims more than :func:`max_pixels` pixels (default
:data:`DEFAULT_MAX_PIXELS`, 178,956,970, Pillow's own limit against "decompression
bombs"; ``dmt --max-pixels N``, the ``DMT_MAX_PIXELS`` environment variable or
:func:`set_max_pixels` change it) is refused with a ``ValueError`` naming it, before
any pixel is decoded. Float images (mode ``F``) with NaN or infinite values are refused
the same way.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: file extensions read as images or masks (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION = 0x0112

#: the default decoding limit in pixels (width x height): Pillow's, twice its warning level
DEFAULT_MAX_PIXELS = 2 * 89_478_485


def max_pixels() -> int:
    """The largest image (width x height) that is decoded; larger files raise ValueError."""
    limit = Image.MAX_IMAGE_PIXELS
    return int(2 * limit) if limit else 0


def set_max_pixels(limit: int | None) -> int:
    """Set the decoding limit in pixels (None: the default); returns the previous one.

    Pillow refuses files of more than twice its ``Image.MAX_IMAGE_PIXELS`` (and warns above
    it; this module silences that warning), so the limit is stored as half of that.
    """
    old = max_pixels()
    if limit is None:
        limit = DEFAULT_MAX_PIXELS
    if int(limit) < 1:
        raise ValueError(f"--max-pixels must be a positive number of pixels, got {limit}")
    Image.MAX_IMAGE_PIXELS = int(limit) / 2  # type: ignore[assignment]
    return old


def _limit_from_env() -> None:
    value = os.environ.get("DMT_MAX_PIXELS", "").strip()
    if not value:
        return
    try:
        set_max_pixels(int(value.replace("_", "")))
    except ValueError as e:
        raise ValueError(f"DMT_MAX_PIXELS={value!r}: expected a positive integer") from e


_limit_from_env()


def too_large_error(path: str | Path) -> ValueError:
    """The error for a file over :func:`max_pixels` (Pillow's ``DecompressionBombError``)."""
    return ValueError(
        f"{path}: image too large to decode (over the limit of {max_pixels():,} pixels, a "
        "guard against decompression bombs); if the file is genuine, raise the limit with "
        "--max-pixels N (or DMT_MAX_PIXELS)"
    )


def is_image_file(path: str | Path) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode ``path``; any decoding failure becomes a ValueError naming it."""
    p = Path(path)
    if not p.is_file():
        if p.is_dir():
            raise IsADirectoryError(f"{p}: a folder, not an image file")
        raise FileNotFoundError(f"{p}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
            img.load()  # decode now, so truncated files fail here and not later
    except Image.DecompressionBombError as e:
        raise too_large_error(p) from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{p}: unreadable file (not a recognised image format)") from e
    except PermissionError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ValueError(f"{p}: truncated file ({msg})") from e
        raise ValueError(f"{p}: unreadable file ({msg})") from e
    if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise ValueError(f"{p}: float image with NaN or infinite pixel values")
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
    except Image.DecompressionBombError as e:
        raise too_large_error(p) from e
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


#: a pixel of a colour mask is foreground when its brightest channel exceeds this level
BLACK_LEVEL = 32
#: a mask is a colour mask when some pixel's channels differ by at least this much
COLOUR_CHROMA = 64
#: gray levels counted as "neither black nor white" by :attr:`MaskReading.gray_fraction`
GRAY_LEVELS = (32, 223)
#: ``dmt data check`` warns when more than this fraction of a mask's pixels is gray
NOT_BINARY_FRACTION = 0.05


@dataclass
class MaskReading:
    """A decoded mask and how it was read (see :func:`read_mask`).

    Attributes:
        mask: boolean ``(h, w)``, True = foreground.
        rule: which rule made it, e.g. ``"gray >= 128"`` or ``"alpha >= 128"``.
        gray_fraction: the fraction of pixels whose level (gray, brightest colour channel
            or alpha, whichever the rule thresholds) is far from black and white
            (:data:`GRAY_LEVELS`); 0 for masks that store labels.
        max_level: the highest such level (0..255), or 1 for a label mask.
    """

    mask: np.ndarray
    rule: str
    gray_fraction: float = 0.0
    max_level: int = 255

    def warnings(self) -> list[str]:
        """What ``dmt data check`` says about the mask: not binary, or empty."""
        out = []
        if self.gray_fraction > NOT_BINARY_FRACTION:
            out.append(
                f"mask is not binary: {100 * self.gray_fraction:.0f}% of its pixels are gray "
                f"(read as {self.rule})"
            )
        if not self.mask.any():
            out.append(
                f"mask is empty: no foreground pixel (read as {self.rule}; highest level "
                f"{self.max_level})"
            )
        return out


def _levels(levels: np.ndarray, rule: str, mask: np.ndarray) -> MaskReading:
    lo, hi = GRAY_LEVELS
    gray = np.count_nonzero((levels >= lo) & (levels <= hi)) / max(levels.size, 1)
    top = int(levels.max(initial=0))
    return MaskReading(mask, rule, float(gray), top)


def _constant(arr: np.ndarray) -> bool:
    """Every pixel of (h, w) or (h, w, c) ``arr`` has the same value(s)."""
    flat = arr.reshape(arr.shape[0] * arr.shape[1], -1) if arr.size else arr.reshape(0, 1)
    return bool((flat == flat[:1]).all()) if len(flat) else True


def _read_colour(rgb: np.ndarray) -> MaskReading:
    """An (h, w, 3) uint8 mask: gray (luminance >= 128) or colour (non-black) pixels."""
    chroma = rgb.max(2).astype(np.int16) - rgb.min(2)
    if chroma.size and int(chroma.max()) >= COLOUR_CHROMA:
        top = rgb.max(2)
        return _levels(top, f"colour mask: channel > {BLACK_LEVEL}", top > BLACK_LEVEL)
    gray = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    return _read_gray(gray)


def _read_gray(arr: np.ndarray) -> MaskReading:
    if arr.size and arr.max() == 1:
        return MaskReading(arr > 0, "labels 0/1", 0.0, 1)  # label masks stored as 0/1
    return _levels(arr, "gray >= 128", arr >= 128)


def read_mask(path: str | Path) -> MaskReading:
    """Decode a mask and say how it was read; :func:`load_mask` returns its ``mask``.

    The rules, in order:

    * 1-bit files: as stored. Palette files with a coloured palette (VOC style):
      index != 0.
    * 0/1 label masks (8- or 16-bit, every value 0 or 1): value 1.
    * gray masks (L, 16-bit scaled to 8 bits, RGB whose channels agree): level >= 128.
    * colour masks (some pixel's channels differ by >= 64, e.g. red or blue on black):
      every non-black pixel, i.e. the brightest channel > 32 (which tolerates JPEG noise).
    * masks with an alpha channel (RGBA, LA, palette with transparency) whose colour is
      the same everywhere, or gives no foreground, while the alpha varies: alpha >= 128.
      Otherwise the alpha channel is ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable or truncated file, or NaN pixels.
    """
    img = _open(path)
    if img.mode == "1":
        return MaskReading(np.asarray(img, dtype=bool).copy(), "1-bit", 0.0, 255)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif img.mode == "P":
        pal = np.asarray(img.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        idx = np.asarray(img)
        used = pal[np.unique(idx)] if len(pal) else np.zeros((0, 3), np.int32)
        gray_palette = len(used) == 0 or bool(np.all(used.max(1) == used.min(1)))
        if not gray_palette:
            return MaskReading(idx != 0, "palette index != 0", 0.0, 255)
        img = img.convert("L")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.asarray(img)
        if arr.size and arr.max() <= 1 and arr.min() >= 0:
            return MaskReading(arr > 0, "labels 0/1", 0.0, 1)
        return _read_gray(_to_uint8_array(img))
    if img.mode in ("RGBA", "LA"):
        arr = np.asarray(img)
        colour, alpha = arr[..., :-1], arr[..., -1]
        reading = _read_colour(colour) if img.mode == "RGBA" else _read_gray(colour[..., 0])
        if not _constant(alpha) and (_constant(colour) or not reading.mask.any()):
            return _levels(alpha, "alpha >= 128", alpha >= 128)
        return reading
    if img.mode == "L":
        return _read_gray(np.asarray(img))
    return _read_colour(np.asarray(img.convert("RGB")))


def load_mask(path: str | Path) -> np.ndarray:
    """Load a mask as a boolean array ``(h, w)`` (the rules: :func:`read_mask`).

    Gray levels are thresholded at 128 (of 255, after scaling 16-bit files); 0/1 label
    masks, colour masks (any non-black pixel), alpha-only masks (the alpha channel) and
    VOC-style palette masks (index != 0) are recognised. The EXIF orientation of a mask
    is ignored (masks are drawn on the stored pixels).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable or truncated file.
    """
    return read_mask(path).mask
