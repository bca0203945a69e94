"""Helpers that write tiny co-saliency datasets in every layout (for tests/test_data_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: the object colour of the generated images (the mask covers exactly these pixels)
OBJECT_RGB = (250, 20, 20)


def make_pair(w: int = 40, h: int = 30, seed: int = 0) -> tuple[Image.Image, Image.Image]:
    """A dark noisy RGB image with a red rectangle, and its 0/255 L mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    y1, x1 = y0 + h // 3, x0 + w // 3
    img[y0:y1, x0:x1] = OBJECT_RGB
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return Image.fromarray(img), Image.fromarray(mask)


def dirs_for(root: Path, layout: str, set_name: str = "Set") -> tuple[Path, Path | None]:
    """(image folder, mask folder) that hold the group folders for ``layout``."""
    if layout == "image_gt":
        return root / set_name / "Image", root / set_name / "GroundTruth"
    if layout == "img_gt":
        return root / set_name / "img", root / set_name / "gt"
    if layout == "gconet":
        return root / "images" / set_name, root / "gts" / set_name
    if layout == "plain":
        return root / set_name, None
    raise ValueError(layout)


def dataset_root(root: Path, layout: str, set_name: str = "Set") -> Path:
    """The folder to pass to the loaders for a dataset written by :func:`make_dataset`."""
    return root if layout == "gconet" else root / set_name


def make_dataset(
    root: Path,
    layout: str = "image_gt",
    groups: dict[str, int] | None = None,
    set_name: str = "Set",
    img_ext: str = ".jpg",
    mask_ext: str = ".png",
    size: tuple[int, int] = (40, 30),
) -> Path:
    """Write groups ``{name: n_images}`` in ``layout``; returns the root for the loaders.

    Images are saved with ``img_ext`` (JPEG at quality 100 keeps the red object), masks
    with ``mask_ext``; file stems are ``<group>_<k>``.
    """
    groups = groups or {"cat": 3, "dog": 2}
    img_dir, mask_dir = dirs_for(root, layout, set_name)
    seed = 0
    for g, n in groups.items():
        (img_dir / g).mkdir(parents=True, exist_ok=True)
        if mask_dir is not None:
            (mask_dir / g).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            img, mask = make_pair(*size, seed=seed)
            seed += 1
            img.save(img_dir / g / f"{g}_{k}{img_ext}", quality=100)
            if mask_dir is not None:
                mask.save(mask_dir / g / f"{g}_{k}{mask_ext}", quality=100)
    return dataset_root(root, layout, set_name)
