"""Inference grouping: groups split into chunks of at most ``max_num`` images.

DMT's test script predicts a group in chunks of ``max_num`` (25) images: boundaries
0, 25, 50, ...; the last chunk is back-filled with earlier images so that it also holds
``max_num`` images when the group has that many (60 images -> [0, 25), [25, 50),
[35, 60)). Here the file order is sorted, so chunks are deterministic. Images are resized
directly to the input size (no crop); predictions are resized back to each image's
original size with :func:`resize_to_original`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from .groups import Group, GroupDataset
from .transforms import normalize


def chunk_indices(n: int, max_num: int = 25) -> list[list[int]]:
    """Split ``range(n)`` into chunks of at most ``max_num`` that cover every index.

    All chunks hold ``min(n, max_num)`` indices: the last one starts at ``n - max_num``
    and may repeat indices of the previous chunk (their later prediction wins).

    >>> [(c[0], c[-1] + 1) for c in chunk_indices(60, 25)]
    [(0, 25), (25, 50), (35, 60)]
    """
    if n < 0 or max_num < 1:
        raise ValueError(f"need n >= 0 and max_num >= 1, got n={n}, max_num={max_num}")
    chunks = [list(range(s, min(s + max_num, n))) for s in range(0, n, max_num)]
    if chunks and len(chunks[-1]) < max_num and n > max_num:
        chunks[-1] = list(range(n - max_num, n))
    return chunks


def load_for_inference(image, input_size: int) -> torch.Tensor:
    """A PIL RGB image as a (3, S, S) ImageNet-normalised float tensor (bilinear resize)."""
    t = tv_tensors.Image(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    t = TF.resize(t, [input_size, input_size], antialias=True)
    return normalize(TF.to_dtype(t, torch.float32, scale=True)).as_subclass(torch.Tensor)


class InferenceGroups(Dataset):
    """Chunks of the groups of a dataset, ready for the model.

    Args:
        root: dataset folder (any layout, masks optional) or a :class:`GroupDataset`.
        input_size: side the images are resized to (256 paper, 128 tiny).
        max_num: chunk size (DMT: 25).
        groups: restrict to these group names.

    Items: dict with ``images`` (n, 3, S, S) normalised float, ``sizes`` (list of the
    original ``(height, width)``; with masks, the masks' size), ``stems``, ``paths`` (image
    files), ``mask_paths`` (or None without masks), ``indices`` (in the group), ``group``
    (name), ``chunk`` (its number) and ``num_chunks``.
    """

    def __init__(
        self,
        root: str | Path | GroupDataset,
        input_size: int = 256,
        max_num: int = 25,
        groups: Sequence[str] | None = None,
    ) -> None:
        self.dataset = root if isinstance(root, GroupDataset) else GroupDataset(Path(root))
        selected: list[Group] = list(self.dataset)
        if groups is not None:
            known = {g.name for g in selected}
            missing = sorted(set(groups) - known)
            if missing:
                raise ValueError(f"{self.dataset.root}: no group(s) {missing}")
            selected = [g for g in selected if g.name in set(groups)]
        self.input_size = int(input_size)
        self.max_num = int(max_num)
        self.items: list[tuple[Group, int, list[int], int]] = []
        for g in selected:
            chunks = chunk_indices(len(g), self.max_num)
            self.items += [(g, k, c, len(chunks)) for k, c in enumerate(chunks)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        group, k, idx, total = self.items[index]
        images, sizes = [], []
        for i in idx:
            img, _ = group.load(i)
            sizes.append((img.height, img.width))
            images.append(load_for_inference(img, self.input_size))
        return {
            "images": torch.stack(images),
            "sizes": sizes,
            "stems": [group.images[i].stem for i in idx],
            "paths": [group.images[i] for i in idx],
            "mask_paths": [group.masks[i] for i in idx] if group.masks is not None else None,
            "indices": list(idx),
            "group": group.name,
            "chunk": k,
            "num_chunks": total,
        }


def resize_to_original(probs: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Resize probability maps back to each image's original size.

    Args:
        probs: (n, 1, S, S) or (n, S, S) probabilities in [0, 1].
        sizes: ``(height, width)`` per image.

    Returns:
        n float32 arrays (height, width), bilinear, in [0, 1].
    """
    if probs.dim() == 3:
        probs = probs[:, None]
    if probs.dim() != 4 or probs.shape[1] != 1 or probs.shape[0] != len(sizes):
        raise ValueError(
            f"expected probs (n, 1, S, S) with n = {len(sizes)}, got {tuple(probs.shape)}"
        )
    out = []
    for p, (h, w) in zip(probs.detach().float().cpu(), sizes, strict=True):
        r = F.interpolate(p[None], size=(int(h), int(w)), mode="bilinear", align_corners=False)
        out.append(r[0, 0].clamp(0, 1).numpy())
    return out
