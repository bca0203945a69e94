"""Training-time co-saliency synthesis (the CADC / DMT augmentation, on the fly).

DMT trains on DUTS_class images that were replaced, 60 % of the time, by a *forward*
synthetic image (salient objects cut from other groups pasted in; the mask is the
original one) and, 20 % of the time, by a *reverse* one (this image's object pasted
into an image of another group; the mask is the pasted object). The authors ship the
precomputed files; here they are made on the fly from the training set itself.

Blending is naive (copy the pixels under the object mask) or seamless (OpenCV Poisson
``seamlessClone``). Either way only pixels under the pasted object's footprint change,
so the masks stay aligned with the pasted pixels:

- forward: ``mask_out = mask & ~pasted`` (a pasted object may hide part of the target);
- reverse: ``mask_out = pasted`` (the visible footprint of this group's object).

Arrays: ``image`` (h, w, 3) uint8 RGB, ``mask`` (h, w) bool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Blend = Literal["naive", "seamless"]


@dataclass(frozen=True)
class SynthesisConfig:
    """Probabilities and sizes of the on-the-fly synthesis.

    Attributes:
        p_forward: probability of a forward synthesis (DMT: 3/5).
        p_reverse: probability of a reverse synthesis (DMT: 1/5); the rest is original.
        p_seamless: probability that a paste uses seamless cloning rather than a naive copy.
        num_paste: inclusive range of foreign objects pasted by a forward synthesis.
        scale: range of the pasted object's longer side, as a fraction of the host's
            shorter side.
        max_target_cover: forward pastes are placed to hide at most this fraction of the
            target (the best of several tries is kept).
    """

    p_forward: float = 0.6
    p_reverse: float = 0.2
    p_seamless: float = 0.5
    num_paste: tuple[int, int] = (1, 2)
    scale: tuple[float, float] = (0.25, 0.5)
    max_target_cover: float = 0.2

    def __post_init__(self) -> None:
        if self.p_forward < 0 or self.p_reverse < 0 or self.p_forward + self.p_reverse > 1:
            raise ValueError(
                f"p_forward ({self.p_forward}) and p_reverse ({self.p_reverse}) must be >= 0 "
                "with a sum <= 1"
            )
        if not 0 <= self.p_seamless <= 1:
            raise ValueError(f"p_seamless must be in [0, 1], got {self.p_seamless}")
        if not 1 <= self.num_paste[0] <= self.num_paste[1]:
            raise ValueError(f"num_paste must be an increasing range >= 1, got {self.num_paste}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")

    @property
    def p_original(self) -> float:
        return 1.0 - self.p_forward - self.p_reverse


def cut_object(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object's bounding box: ``patch`` (h, w, 3) uint8 and ``patch_mask`` (h, w) bool.

    Raises ValueError for an empty mask.
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        raise ValueError("cannot cut an object from an empty mask")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return image[y0:y1, x0:x1].copy(), mask[y0:y1, x0:x1].copy()


def _resize_patch(
    patch: np.ndarray, pmask: np.ndarray, longer: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize an object; colours are mask-weighted so no background bleeds into its edge."""
    h, w = pmask.shape
    k = longer / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    mf = pmask.astype(np.float32)
    num = cv2.resize(patch.astype(np.float32) * mf[..., None], size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(mf, size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(pmask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    p = np.clip(np.rint(num / np.maximum(den, 1e-6)[..., None]), 0, 255).astype(np.uint8)
    return p, m


def paste(
    host: np.ndarray,
    patch: np.ndarray,
    patch_mask: np.ndarray,
    xy: tuple[int, int],
    blend: Blend = "naive",
) -> tuple[np.ndarray, np.ndarray]:
    """Paste an object into ``host`` with its top-left corner at ``xy = (x, y)``.

    Args:
        host: (H, W, 3) uint8 RGB.
        patch, patch_mask: (h, w, 3) uint8 and (h, w) bool, from :func:`cut_object`.
        xy: position of the patch's top-left corner; the patch must fit inside the host.
        blend: ``"naive"`` copies the object pixels, ``"seamless"`` Poisson-blends them.

    Returns:
        ``(image, footprint)``: the new (H, W, 3) image and the (H, W) bool footprint of the
        pasted object. Pixels outside the footprint are unchanged.
    """
    H, W = host.shape[:2]
    h, w = patch_mask.shape
    x, y = int(xy[0]), int(xy[1])
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise ValueError(f"a {w}x{h} patch at {(x, y)} does not fit in a {W}x{H} image")
    footprint = np.zeros((H, W), bool)
    footprint[y : y + h, x : x + w] = patch_mask
    out = host.copy()
    if blend == "seamless":
        # seamlessClone zeroes the mask's outer 1-px frame and centres the mask's bounding
        # box on `center`; pad so that the frame is empty and the box is the patch.
        src = cv2.copyMakeBorder(patch, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
        m = cv2.copyMakeBorder(patch_mask.astype(np.uint8) * 255, 1, 1, 1, 1, cv2.BORDER_CONSTANT)
        rows, cols = np.flatnonzero(patch_mask.any(1)), np.flatnonzero(patch_mask.any(0))
        bw, bh = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
        bx, by = x + cols[0], y + rows[0]
        # the clone region must stay strictly inside the host
        if len(rows) and bx >= 1 and by >= 1 and bx + bw <= W - 1 and by + bh <= H - 1:
            center = (int(bx + bw // 2), int(by + bh // 2))
            cloned = cv2.seamlessClone(src, host, m, center, cv2.NORMAL_CLONE)
            out[footprint] = cloned[footprint]
            return out, footprint
        # too close to the border for Poisson blending: fall back to a naive paste
    elif blend != "naive":
        raise ValueError(f"blend must be 'naive' or 'seamless', got {blend!r}")
    out[footprint] = patch[patch_mask]
    return out, footprint


def _place(
    rng: np.random.Generator,
    host_hw: tuple[int, int],
    pmask: np.ndarray,
    avoid: np.ndarray | None,
    max_cover: float,
    tries: int = 8,
) -> tuple[int, int]:
    """A top-left corner for the patch; with ``avoid`` the least covering of ``tries``."""
    H, W = host_hw
    h, w = pmask.shape
    best, best_cover = (0, 0), np.inf
    total = float(avoid.sum()) if avoid is not None else 0.0
    for _ in range(tries):
        x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
        if avoid is None or total == 0:
            return x, y
        cover = float((avoid[y : y + h, x : x + w] & pmask).sum()) / total
        if cover < best_cover:
            best, best_cover = (x, y), cover
        if cover <= max_cover:
            break
    return best


def _fit_patch(rng, cfg: SynthesisConfig, host_hw, patch, pmask):
    H, W = host_hw
    longer = int(round(min(H, W) * rng.uniform(*cfg.scale)))
    longer = max(4, min(longer, H - 2, W - 2))
    return _resize_patch(patch, pmask, longer)


def forward_synthesis(
    image: np.ndarray,
    mask: np.ndarray,
    donors: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    cfg: SynthesisConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the salient objects of ``donors`` (images of *other* groups) into ``image``.

    Args:
        image, mask: (H, W, 3) uint8 and (H, W) bool of this group.
        donors: ``(image, mask)`` pairs from other groups; one object is cut from each.

    Returns:
        ``(image, mask & ~pasted)``: the co-salient mask is kept except where a pasted
        object hides it.
    """
    cfg = cfg or SynthesisConfig()
    out, keep = image, mask.copy()
    for dimg, dmask in donors:
        patch, pmask = _fit_patch(rng, cfg, mask.shape, *cut_object(dimg, dmask))
        xy = _place(rng, mask.shape, pmask, keep, cfg.max_target_cover)
        blend: Blend = "seamless" if rng.random() < cfg.p_seamless else "naive"
        out, fp = paste(out, patch, pmask, xy, blend)
        keep &= ~fp
    return out, keep


def reverse_synthesis(
    image: np.ndarray,
    mask: np.ndarray,
    background: np.ndarray,
    rng: np.random.Generator,
    cfg: SynthesisConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste this image's object into ``background`` (an image of another group).

    Returns:
        ``(new_image, footprint)`` at the size of ``background``; the mask is the pasted
        object.
    """
    cfg = cfg or SynthesisConfig()
    patch, pmask = _fit_patch(rng, cfg, background.shape[:2], *cut_object(image, mask))
    xy = _place(rng, background.shape[:2], pmask, None, 1.0)
    blend: Blend = "seamless" if rng.random() < cfg.p_seamless else "naive"
    return paste(background, patch, pmask, xy, blend)


def synthesize(
    image: np.ndarray,
    mask: np.ndarray,
    sample_other: Callable[[], tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator,
    cfg: SynthesisConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Apply forward, reverse or no synthesis with the configured probabilities.

    Args:
        sample_other: returns a random ``(image, mask)`` of another group (called as needed).

    Returns:
        ``(image, mask, kind)`` with kind ``"forward"``, ``"reverse"`` or ``"original"``.
        An empty mask is returned as it is (original).
    """
    cfg = cfg or SynthesisConfig()
    u = rng.random()
    if not mask.any() or u >= cfg.p_forward + cfg.p_reverse:
        return image, mask, "original"
    if u < cfg.p_forward:
        n = int(rng.integers(cfg.num_paste[0], cfg.num_paste[1] + 1))
        donors = [d for d in (sample_other() for _ in range(n)) if d[1].any()]
        img, m = forward_synthesis(image, mask, donors, rng, cfg)
        return img, m, "forward"
    bg, _ = sample_other()
    img, m = reverse_synthesis(image, mask, bg, rng, cfg)
    return img, m, "reverse"
