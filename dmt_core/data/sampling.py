"""Training groups, sampled as DMT samples them.

One item is one group: at most ``max_num`` (8) of its images, drawn without replacement
each time the group is drawn, each resized to ``input_size * 288 / 256`` (288 for the
paper's 256, 144 for the tiny preset's 128), randomly cropped to ``input_size`` and
flipped horizontally with p = 0.5, the same crop and flip for the image and its mask
(torchvision transforms v2, the mask as a ``tv_tensors.Mask``). Several training sets
are mixed by concatenating their groups, so every group is equally likely whatever its
set or size (DMT mixes DUTS_class and COCO-9k that way).

Optionally, images are replaced on the fly by forward/reverse synthetic images
(:mod:`dmt_core.data.paste`), on the sets chosen by ``synthesis_sets``.

    ds = TrainGroups(["data/DUTS_class", "data/COCO9k"], input_size=256,
                     synthesis=SynthesisConfig(), synthesis_sets=[0], seed=0)
    loader = DataLoader(ds, batch_size=None, shuffle=True, num_workers=2)
    for batch in loader:  # batch["images"]: (N, 3, 256, 256), batch["masks"]: (N, 1, 256, 256)
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .groups import Group, GroupDataset
from .paste import SynthesisConfig, synthesize
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize


def train_sizes(input_size: int) -> tuple[int, int]:
    """``(resize, crop)`` of the training augmentation: (288, 256) for 256, (144, 128) for 128."""
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    return round(input_size * 288 / 256), int(input_size)


def augment_pair(
    image: Image.Image | np.ndarray,
    mask: np.ndarray,
    input_size: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DMT's training augmentation of one image and its mask.

    Resize to ``resize x resize`` (bilinear for the image, nearest for the mask), random
    ``input_size`` crop, horizontal flip with p = 0.5; same parameters for both.

    Returns:
        image (3, S, S) float, ImageNet-normalised; mask (1, S, S) float in {0, 1}.
    """
    resize, crop = train_sizes(input_size)
    arr = np.asarray(image) if isinstance(image, Image.Image) else image
    img = tv_tensors.Image(torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1))
    msk = tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.uint8))[None])
    img = TF.resize(img, [resize, resize], antialias=True)
    msk = TF.resize(msk, [resize, resize])  # Mask: nearest
    top, left = (int(v) for v in rng.integers(0, resize - crop + 1, 2))
    img, msk = TF.crop(img, top, left, crop, crop), TF.crop(msk, top, left, crop, crop)
    if rng.random() < 0.5:
        img, msk = TF.horizontal_flip(img), TF.horizontal_flip(msk)
    x = normalize(TF.to_dtype(img, torch.float32, scale=True))
    return x.as_subclass(torch.Tensor), msk.as_subclass(torch.Tensor).float()


class TrainGroups(Dataset):
    """One item = one training group (DMT sampling, see the module docstring).

    Args:
        roots: training sets (folders with masks, or :class:`GroupDataset` objects).
        input_size: crop side (``DMTConfig.input_size``: 256 paper, 128 tiny).
        max_num: at most this many images per group and draw (DMT: 8).
        synthesis: on-the-fly synthesis config, or None for original images only.
        synthesis_sets: indices in ``roots`` of the sets to synthesise (default: all).
            DMT synthesises DUTS_class only.
        seed: base seed. Items are reproducible: in the main process the k-th call gives
            the same result for the same seed; in DataLoader workers the randomness also
            depends on the worker seed (set the loader's ``generator`` to reproduce).

    Items: dict with ``images`` (N, 3, S, S) float ImageNet-normalised, ``masks``
    (N, 1, S, S) float in {0, 1}, ``group`` (name), ``set`` (name), ``stems`` (list[str]),
    ``kinds`` (list of "original" / "forward" / "reverse").
    """

    def __init__(
        self,
        roots: Sequence[str | Path | GroupDataset],
        input_size: int = 256,
        max_num: int = 8,
        synthesis: SynthesisConfig | None = None,
        synthesis_sets: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(roots, (str, Path, GroupDataset)):
            roots = [roots]
        if not roots:
            raise ValueError("TrainGroups needs at least one training set")
        if max_num < 1:
            raise ValueError(f"max_num must be >= 1, got {max_num}")
        train_sizes(input_size)
        self.sets = [
            r if isinstance(r, GroupDataset) else GroupDataset(Path(r), require_masks=True)
            for r in roots
        ]
        for s in self.sets:
            if not s.has_masks:
                raise ValueError(f"{s.root}: training needs masks; this folder has none")
        self.items: list[tuple[int, Group]] = [(i, g) for i, s in enumerate(self.sets) for g in s]
        self.input_size = int(input_size)
        self.max_num = int(max_num)
        self.synthesis = synthesis
        sel = range(len(self.sets)) if synthesis_sets is None else synthesis_sets
        for i in sel:
            if not 0 <= i < len(self.sets):
                raise ValueError(f"synthesis_sets index {i} out of range for {len(self.sets)} sets")
        self.synthesis_sets = frozenset(int(i) for i in sel)
        if synthesis is not None and len(self.items) < 2:
            raise ValueError("synthesis needs at least two groups (objects come from other groups)")
        self.seed = int(seed)
        self._calls = 0

    @classmethod
    def for_config(
        cls, config: Any, roots: Sequence[str | Path | GroupDataset], **kwargs: Any
    ) -> TrainGroups:
        """Training groups at ``config.input_size`` (a :class:`dmt_core.DMTConfig`)."""
        return cls(roots, input_size=int(config.input_size), **kwargs)

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self, index: int, draw: int | None = None) -> np.random.Generator:
        if draw is not None:  # keyed draws: reproducible whatever the worker or call order
            return np.random.default_rng([self.seed, index, int(draw), 1])
        info = get_worker_info()
        worker_seed = int(info.seed) % (2**63) if info is not None else 0
        self._calls += 1
        return np.random.default_rng([self.seed, index, worker_seed, self._calls])

    def _other(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
        """A random image and mask from a group other than ``index``."""
        j = int(rng.integers(len(self.items) - 1))
        j += j >= index
        g = self.items[j][1]
        img, m = g.load(int(rng.integers(len(g))))
        return np.asarray(img), m  # type: ignore[return-value]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``ds[i]`` draws group i; ``ds[(i, d)]`` is draw ``d`` of group i, a pure function
        of (seed, i, d) (the trainer keys draws by step, so a resumed run continues exactly).
        """
        index, draw = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"group index {index} out of range for {len(self)} groups")
        index %= len(self)
        rng = self._rng(index, draw)
        set_idx, group = self.items[index]
        n = len(group)
        picks = sorted(rng.choice(n, size=min(n, self.max_num), replace=False).tolist())
        images, masks, kinds = [], [], []
        synth = self.synthesis is not None and set_idx in self.synthesis_sets
        for i in picks:
            img, mask = group.load(i)
            arr, kind = np.asarray(img), "original"
            assert mask is not None
            if synth:
                arr, mask, kind = synthesize(
                    arr, mask, lambda: self._other(rng, index), rng, self.synthesis
                )
            x, m = augment_pair(arr, mask, self.input_size, rng)
            images.append(x)
            masks.append(m)
            kinds.append(kind)
        return {
            "images": torch.stack(images),
            "masks": torch.stack(masks),
            "group": group.name,
            "set": self.sets[set_idx].name,
            "stems": [group.images[i].stem for i in picks],
            "kinds": kinds,
        }

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """A random group (each group equally likely), for loops without a DataLoader."""
        i = int(torch.randint(len(self), (1,), generator=generator))
        return self[i]


#: torchvision v2 pipeline equivalent to :func:`augment_pair` (uses torch's global RNG);
#: call as ``image, mask = train_transform(256)(tv_tensors.Image(...), tv_tensors.Mask(...))``.
def train_transform(input_size: int) -> v2.Compose:
    resize, crop = train_sizes(input_size)
    return v2.Compose([
        v2.Resize((resize, resize), antialias=True),
        v2.RandomCrop(crop),
        v2.RandomHorizontalFlip(0.5),
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ])  # fmt: skip
