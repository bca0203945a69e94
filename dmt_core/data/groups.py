"""Co-saliency benchmarks as lists of groups, whatever their folder layout.

Supported layouts (folder names are matched case-insensitively):

- ``image_gt``: ``<Set>/Image/<group>/`` + ``<Set>/GroundTruth/<group>/`` (CoCA,
  CoSal2015, CoSOD3k as DMT uses them);
- ``img_gt``: ``<Set>/img/<group>/`` + ``<Set>/gt/<group>/`` (DUTS_class, COCO-9k);
- ``gconet``: ``images/<Set>/<group>/`` + ``gts/<Set>/<group>/`` (GCoNet+ style; pass the
  folder holding ``images/`` and ``gts/``, or ``images/<Set>`` itself);
- ``plain``: ``<root>/<group>/`` without masks (your own photos, for prediction).

Images are matched to masks by file stem, whatever the extensions (``a.jpg`` with
``a.png`` or with ``a.jpg``). Problems found while listing (an image without a mask, a
mask without an image, an empty group, a file that is not an image) are collected as
:class:`Problem` objects; :func:`find_groups` raises them, :func:`scan` returns them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .io import image_size_candidates, is_image_file, load_image, load_mask

LAYOUTS = ("image_gt", "img_gt", "gconet", "plain")

#: (image folder, mask folder) names of the two-folder layouts
_PAIR_DIRS = {"image_gt": ("image", "groundtruth"), "img_gt": ("img", "gt")}
#: files and folders that are never data and never worth a complaint
_IGNORED_FILES = {"thumbs.db", "desktop.ini", "__macosx"}


@dataclass(frozen=True)
class Problem:
    """One problem in a dataset: the file (or folder) concerned and what is wrong."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Group:
    """One group (category) of a co-saliency dataset.

    Attributes:
        name: the group folder name.
        images: image files, sorted by file name.
        masks: the mask of each image (same order), or None for a layout without masks.
    """

    name: str
    images: list[Path]
    masks: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.images]

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def load_mask(self, i: int) -> np.ndarray:
        """Mask ``i`` as a boolean array (h, w). Raises ValueError without masks."""
        if self.masks is None:
            raise ValueError(f"group {self.name!r} has no masks (a folder of images only)")
        return load_mask(self.masks[i])

    def load(self, i: int) -> tuple[Image.Image, np.ndarray | None]:
        """Image ``i`` (RGB) and its mask (bool (h, w), or None without masks).

        The image orientation (EXIF) is the one whose size matches the mask; a mask of
        another size raises a ValueError naming both files.
        """
        if self.masks is None:
            return load_image(self.images[i]), None
        mask = load_mask(self.masks[i])
        h, w = mask.shape
        try:
            image = load_image(self.images[i], expect_size=(w, h))
        except ValueError as e:
            if "does not match" in str(e):
                raise ValueError(size_mismatch(self.masks[i], self.images[i], (w, h))) from e
            raise
        return image, mask


def size_mismatch(mask_path: Path, image_path: Path, mask_size: tuple[int, int]) -> str:
    """The message for a mask whose ``(width, height)`` matches no orientation of its image."""
    sizes = " or ".join(f"{w}x{h}" for w, h in image_size_candidates(image_path))
    return (
        f"{mask_path}: mask of size {mask_size[0]}x{mask_size[1]} does not match its image "
        f"{image_path} of size {sizes} (width x height)"
    )


def _is_ignored(p: Path) -> bool:
    return p.name.startswith(".") or p.name.lower() in _IGNORED_FILES


def _child_dirs(d: Path) -> list[Path]:
    return sorted(
        (p for p in d.iterdir() if p.is_dir() and not _is_ignored(p)), key=lambda p: p.name
    )


def _find_child(d: Path, name: str) -> Path | None:
    """The subfolder of ``d`` called ``name`` (case-insensitive), or None."""
    for p in _child_dirs(d):
        if p.name.lower() == name:
            return p
    return None


def _list_images(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """Image files of ``folder`` by stem; stray files and duplicate stems become problems."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda q: q.name):
        if _is_ignored(p):
            continue
        if p.is_dir():
            problems.append(Problem(p, "unexpected folder inside a group folder"))
        elif not is_image_file(p):
            problems.append(Problem(p, "not an image file (unknown extension)"))
        elif p.stem in out:
            problems.append(Problem(p, f"two files with the stem {p.stem!r} ({out[p.stem].name})"))
        else:
            out[p.stem] = p
    return out


def detect_layout(root: str | Path) -> str:
    """Name of the layout of ``root`` (one of :data:`LAYOUTS`).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no group folders found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    for layout, (img_dir, _) in _PAIR_DIRS.items():
        if _find_child(root, img_dir) is not None:
            return layout
    if _find_child(root, "images") is not None and _find_child(root, "gts") is not None:
        return "gconet"
    if root.parent.name.lower() == "images" and (root.parent.parent / "gts" / root.name).is_dir():
        return "gconet"
    if _child_dirs(root):
        return "plain"
    raise ValueError(
        f"{root}: no group folders found; expected <root>/Image/<group>/ + <root>/GroundTruth/,"
        " <root>/img/ + <root>/gt/, images/<Set>/ + gts/<Set>/, or <root>/<group>/ folders"
    )


def _gconet_dirs(root: Path, subset: str | None) -> tuple[Path, Path]:
    if root.parent.name.lower() == "images" and (root.parent.parent / "gts" / root.name).is_dir():
        return root, root.parent.parent / "gts" / root.name
    images, gts = _find_child(root, "images"), _find_child(root, "gts")
    assert images is not None and gts is not None
    sets = [p.name for p in _child_dirs(images)]
    if subset is None:
        if len(sets) != 1:
            raise ValueError(
                f"{images}: holds the sets {sets}; choose one with subset= (or pass {images}/<Set>)"
            )
        subset = sets[0]
    if subset not in sets:
        raise ValueError(f"{images}: no set {subset!r}; available: {sets}")
    mask_dir = gts / subset
    if not mask_dir.is_dir():
        raise ValueError(f"{mask_dir}: missing mask folder for set {subset!r}")
    return images / subset, mask_dir


def scan(
    root: str | Path, *, subset: str | None = None, layout: str | None = None
) -> tuple[list[Group], list[Problem], str]:
    """List the groups of ``root`` without decoding any file.

    Args:
        root: the dataset folder (see the module docstring for the layouts).
        subset: the set name for a ``gconet`` root holding several sets.
        layout: force a layout instead of detecting it.

    Returns:
        ``(groups, problems, layout)``. Groups contain only matched images; every image
        without a mask, mask without an image, empty group or stray file is a problem.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    problems: list[Problem] = []
    groups: list[Group] = []
    if layout == "plain":
        for gdir in _child_dirs(root):
            imgs = _list_images(gdir, problems)
            if not imgs:
                problems.append(Problem(gdir, "empty group (no image files)"))
                continue
            groups.append(Group(gdir.name, [imgs[s] for s in sorted(imgs)], None))
        return groups, problems, layout

    if layout == "gconet":
        img_root, mask_root = _gconet_dirs(root, subset)
    else:
        img_name, mask_name = _PAIR_DIRS[layout]
        found_img, found_mask = _find_child(root, img_name), _find_child(root, mask_name)
        if found_img is None or found_mask is None:
            want = "Image/ and GroundTruth/" if layout == "image_gt" else "img/ and gt/"
            raise ValueError(f"{root}: expected the folders {want} (layout {layout!r})")
        img_root, mask_root = found_img, found_mask

    mask_groups = {p.name: p for p in _child_dirs(mask_root)}
    for gdir in _child_dirs(img_root):
        imgs = _list_images(gdir, problems)
        mdir = mask_groups.pop(gdir.name, None)
        masks = _list_images(mdir, problems) if mdir is not None else {}
        if not imgs:
            problems.append(Problem(gdir, "empty group (no image files)"))
            continue
        if mdir is None:
            problems.append(
                Problem(gdir, f"group has no mask folder (expected {mask_root / gdir.name})")
            )
            continue
        for stem in sorted(set(masks) - set(imgs)):
            problems.append(Problem(masks[stem], "mask without image"))
        keep = []
        for stem in sorted(imgs):
            if stem in masks:
                keep.append(stem)
            else:
                problems.append(
                    Problem(imgs[stem], f"image without mask (expected {mdir / stem}.<ext>)")
                )
        if keep:
            groups.append(Group(gdir.name, [imgs[s] for s in keep], [masks[s] for s in keep]))
    for name, mdir in sorted(mask_groups.items()):
        problems.append(
            Problem(mdir, f"mask folder without image folder (expected {img_root / name})")
        )
    return groups, problems, layout


def format_problems(problems: Sequence[Problem], limit: int = 10) -> str:
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more (run `dmt data check` for all)")
    return "\n".join(lines)


def find_groups(
    root: str | Path,
    *,
    subset: str | None = None,
    layout: str | None = None,
    require_masks: bool = False,
) -> list[Group]:
    """The groups of a dataset, sorted by name; raises on any problem.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: the layout is not recognised, ``require_masks`` is set for a folder
            without masks, or :func:`scan` found problems (listed in the message).
    """
    groups, problems, layout = scan(root, subset=subset, layout=layout)
    if problems:
        raise ValueError(f"{root}: {len(problems)} problem(s):\n{format_problems(problems)}")
    if not groups:
        raise ValueError(f"{root}: no groups found")
    if require_masks and layout == "plain":
        raise ValueError(
            f"{root}: masks are required but this is a folder of groups without masks; "
            "expected Image/ + GroundTruth/, img/ + gt/ or images/ + gts/"
        )
    return groups


@dataclass
class GroupDataset(Sequence[Group]):
    """A co-saliency dataset: a sequence of :class:`Group` found under ``root``.

    ``GroupDataset("CoCA")[0].load(0)`` gives the first image and mask of the first group.
    """

    root: Path
    subset: str | None = None
    require_masks: bool = False
    groups: list[Group] = field(init=False)
    layout: str = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.layout = detect_layout(self.root)
        self.groups = find_groups(
            self.root, subset=self.subset, layout=self.layout, require_masks=self.require_masks
        )

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def num_images(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def has_masks(self) -> bool:
        return self.layout != "plain"

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i):  # type: ignore[override]
        return self.groups[i]

    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __repr__(self) -> str:
        return (
            f"GroupDataset({str(self.root)!r}, layout={self.layout!r}, groups={len(self)}, "
            f"images={self.num_images})"
        )
