"""A procedural co-saliency benchmark that needs group reasoning (like CoCA).

Every group has one *target* category. Each of its images holds 1-2 target instances
and 1-3 *distractor* objects of other categories drawn from the same pool, with the
same size distribution and the same colours, so a single image cannot tell which
object is co-salient: only "what recurs in every image of the group" can. A *companion*
category co-occurs in about half of the images of a group (like the performers in
guitar images), and every category is the target of some groups and a distractor in
others. The mask covers the visible pixels of the target instances only.

Categories are fixed combinations of a shape family, a texture and a two-colour
palette (24 by default, see :func:`categories`); instances vary in scale, rotation,
aspect, colour and outline. The generator is vectorised numpy/OpenCV (over 1000
images/s at 128 px on one core) and deterministic: the same seed gives byte-identical
files. Group ``i`` depends only on ``(seed, stream, i)``, so ``--groups 10`` writes the
first 10 groups of ``--groups 120``.

    write_benchmark("synth/train", preset="train", seed=0)   # 120 groups, 128 px
    write_benchmark("synth/test", preset="test", seed=0)     # 40 groups, another stream

Files: ``OUT/Image/<group>/<stem>.jpg``, ``OUT/GroundTruth/<group>/<stem>.png`` (0/255)
and ``OUT/meta.json`` (categories, and per image the objects with role, category, box
and visible area).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# ---------------------------------------------------------------- category design

SHAPES = (
    "disk", "triangle", "square", "star", "cross", "ring",
    "crescent", "heart", "arrow", "dome", "diamond", "sparkle",
)  # fmt: skip
TEXTURES = ("solid", "stripes", "checker", "dots", "rings", "halves")
PALETTES: tuple[tuple[str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("red/yellow", (215, 30, 30), (250, 215, 40)),
    ("blue/white", (30, 60, 215), (240, 240, 240)),
    ("green/black", (30, 170, 50), (20, 20, 20)),
    ("purple/orange", (135, 40, 190), (250, 140, 20)),
    ("cyan/magenta", (20, 200, 210), (215, 40, 175)),
    ("yellow/black", (240, 225, 30), (25, 25, 25)),
    ("orange/blue", (250, 120, 20), (25, 70, 200)),
    ("white/red", (240, 240, 240), (210, 25, 35)),
    ("black/cyan", (20, 20, 20), (40, 215, 230)),
    ("pink/green", (250, 130, 185), (30, 130, 40)),
    ("brown/sky", (130, 70, 25), (130, 200, 250)),
    ("lime/purple", (165, 230, 30), (110, 30, 160)),
)
MAX_CATEGORIES = 2 * len(PALETTES)


@dataclass(frozen=True)
class Category:
    """An object category: a shape family, a texture and a two-colour palette."""

    id: int
    shape: str
    texture: str
    palette: str
    colors: tuple[tuple[int, int, int], tuple[int, int, int]]

    @property
    def name(self) -> str:
        return f"{self.palette.replace('/', '-')}-{self.texture}-{self.shape}"


def categories(n: int = MAX_CATEGORIES) -> list[Category]:
    """The first ``n`` (<= 24) categories.

    Category ``k`` has palette ``k // 2``, shape ``k % 12`` and texture
    ``(k + 3 * (k // 12)) % 6``: two categories sharing a palette differ in shape and
    texture, two sharing a shape differ in palette and texture.
    """
    if not 2 <= n <= MAX_CATEGORIES:
        raise ValueError(f"num_categories must be in [2, {MAX_CATEGORIES}], got {n}")
    out = []
    for k in range(n):
        pname, c1, c2 = PALETTES[k // 2]
        shape = SHAPES[k % len(SHAPES)]
        texture = TEXTURES[(k + 3 * (k // len(SHAPES))) % len(TEXTURES)]
        out.append(Category(k, shape, texture, pname, (c1, c2)))
    return out


def _circle(n: int, r: float = 1.0, cx: float = 0.0, cy: float = 0.0, a0=0.0, a1=2 * math.pi):
    t = np.linspace(a0, a1, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _star(points: int, inner: float) -> np.ndarray:
    t = np.arange(2 * points) * math.pi / points - math.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _shape_contours(name: str) -> list[np.ndarray]:
    """Contours of a shape in unit coordinates (y down); later ones are holes."""
    if name == "disk":
        return [_circle(28)]
    if name == "triangle":
        return [_circle(3, a0=-math.pi / 2, a1=-math.pi / 2 + 2 * math.pi)]
    if name == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float)]
    if name == "star":
        return [_star(5, 0.45)]
    if name == "cross":
        w = 0.33
        return [np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1],
                          [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w]], float)]  # fmt: skip
    if name == "ring":
        return [_circle(28), _circle(20, 0.5)]
    if name == "crescent":
        a = math.radians(50)
        outer = _circle(22, a0=a, a1=2 * math.pi - a)
        ex, ey = math.cos(a) - 0.5, math.sin(a)
        r2, b = math.hypot(ex, ey), math.atan2(ey, ex)
        t = np.linspace(2 * math.pi - b, b, 16)
        inner = np.stack([0.5 + r2 * np.cos(t), r2 * np.sin(t)], 1)
        return [np.concatenate([outer, inner])]
    if name == "heart":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return [np.stack([x, -y - 2.5], 1) / 16]
    if name == "arrow":
        return [np.array([[-1, -0.3], [0.15, -0.3], [0.15, -0.75], [1, 0], [0.15, 0.75],
                          [0.15, 0.3], [-1, 0.3]], float)]  # fmt: skip
    if name == "dome":
        return [_circle(18, cy=0.4, a0=math.pi, a1=2 * math.pi + math.pi / 17)]
    if name == "diamond":
        return [np.array([[0, -1], [0.55, 0], [0, 1], [-0.55, 0]], float)]
    if name == "sparkle":
        return [_star(4, 0.32)]
    raise ValueError(f"unknown shape {name!r}; expected one of {SHAPES}")


def _area(c: np.ndarray) -> float:
    x, y = c[:, 0], c[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _normalised_shapes() -> dict[str, tuple[list[np.ndarray], float]]:
    """Each shape scaled to the area of the unit disk, and its largest vertex radius."""
    out = {}
    for name in SHAPES:
        cs = _shape_contours(name)
        area = _area(cs[0]) - sum(_area(c) for c in cs[1:])
        k = math.sqrt(math.pi / area)
        cs = [c * k for c in cs]
        out[name] = (cs, float(max(np.hypot(c[:, 0], c[:, 1]).max() for c in cs)))
    return out


_SHAPES = _normalised_shapes()

# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SynthConfig:
    """Difficulty knobs of the synthetic benchmark (the presets are instances).

    Attributes:
        groups: number of groups written.
        size: image side in pixels.
        stream: random-stream id; presets use disjoint streams (train 0, test 1, hard 2).
        images_per_group: inclusive range of the group size.
        num_categories: size of the category pool (<= 24), shared by targets and distractors.
        second_target_prob: probability that an image holds 2 target instances (else 1).
        distractors: inclusive range of the number of distractor objects per image.
        distractor_pair_prob: probability that a distractor repeats the previous
            distractor's category (so "two of a kind" does not reveal the target).
        companion_prob: probability that an image holds the group's companion category
            (at least one and at most all-but-one images of a group do).
        object_scale: range of an object's equivalent radius (sqrt(area / pi)) as a
            fraction of the image side; targets and distractors share it.
        aspect_jitter: aspect ratio drawn in [1 / (1 + j), 1 + j].
        rotation_deg: rotation drawn in [-r, r] degrees.
        deformation: per-vertex radial jitter of the outline (fraction of the radius).
        color_jitter: standard deviation of the per-instance colour shift (0-255 scale).
        clutter: number of small low-contrast marks drawn on the background.
        background_noise: amplitude of the smooth background colour variation.
        max_overlap: allowed overlap of bounding circles, as a fraction of their radii sum.
        min_visible: each object keeps at least this fraction of its area visible.
        mask_fraction: allowed range of the visible target area (fraction of the image).
        jpeg_quality: quality of the written JPEG images.
    """

    groups: int = 120
    size: int = 128
    stream: int = 0
    images_per_group: tuple[int, int] = (5, 12)
    num_categories: int = 24
    second_target_prob: float = 0.35
    distractors: tuple[int, int] = (1, 3)
    distractor_pair_prob: float = 0.2
    companion_prob: float = 0.5
    object_scale: tuple[float, float] = (0.1, 0.16)
    aspect_jitter: float = 0.25
    rotation_deg: float = 30.0
    deformation: float = 0.06
    color_jitter: float = 12.0
    clutter: int = 14
    background_noise: float = 28.0
    max_overlap: float = 0.3
    min_visible: float = 0.6
    mask_fraction: tuple[float, float] = (0.02, 0.6)
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.groups < 1 or self.size < 32:
            raise ValueError(f"need groups >= 1 and size >= 32, got {self.groups}, {self.size}")
        lo, hi = self.images_per_group
        if not 2 <= lo <= hi:
            raise ValueError(f"images_per_group must satisfy 2 <= lo <= hi, got {(lo, hi)}")
        if not 0 <= self.distractors[0] <= self.distractors[1]:
            raise ValueError(f"distractors must be an increasing range, got {self.distractors}")
        categories(self.num_categories)  # validates the count
        a, b = self.object_scale
        if not 0 < a <= b < 0.5:
            raise ValueError(f"object_scale must satisfy 0 < lo <= hi < 0.5, got {(a, b)}")
        for name in ("second_target_prob", "distractor_pair_prob", "companion_prob",
                     "max_overlap", "min_visible"):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    def replace(self, **changes: Any) -> SynthConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


#: the three presets: ``train`` and ``test`` differ only by their random stream;
#: ``hard`` has more distractors and smaller objects (targets and distractors alike).
PRESETS: dict[str, SynthConfig] = {
    "train": SynthConfig(groups=120, stream=0),
    "test": SynthConfig(groups=40, stream=1),
    "hard": SynthConfig(
        groups=40,
        stream=2,
        distractors=(3, 5),
        object_scale=(0.085, 0.12),
        clutter=24,
        companion_prob=0.6,
        min_visible=0.55,
    ),  # fmt: skip
}


def preset_config(preset: str, **overrides: Any) -> SynthConfig:
    """The config of a preset (``train``, ``test``, ``hard``) with ``overrides`` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[preset].replace(**overrides)


# ---------------------------------------------------------------- rendering


@dataclass
class SynthImage:
    """One rendered image.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) bool, the visible target pixels.
        objects: per object: category, role, box, area, visible, depth.
        labels: (H, W) uint8, ``k + 1`` where object ``objects[k]`` is visible, 0 elsewhere.
    """

    image: np.ndarray
    mask: np.ndarray
    objects: list[dict[str, Any]]
    labels: np.ndarray | None = None


@dataclass
class SynthGroup:
    """One group: its name, target and companion category ids, and its images."""

    name: str
    target: int
    companion: int
    images: list[SynthImage] = field(default_factory=list)

    def tensors(self, size: int | None = None) -> tuple[Any, Any]:
        """The group ready for the model: ``(images, masks)``.

        images (N, 3, S, S) float, ImageNet-normalised; masks (N, 1, S, S) float in
        {0, 1}; ``S = size`` (bilinear resize of the images, nearest of the masks) or
        the rendered size.
        """
        import torch
        import torch.nn.functional as F

        from .transforms import normalize

        if not self.images:
            raise ValueError(f"group {self.name} has no images")
        x = torch.from_numpy(np.stack([im.image for im in self.images])).permute(0, 3, 1, 2)
        m = torch.from_numpy(np.stack([im.mask for im in self.images]))[:, None].float()
        x = x.float() / 255.0
        if size is not None and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
            m = F.interpolate(m, size=(size, size), mode="nearest")
        return normalize(x), m


class Generator:
    """Renders groups of a :class:`SynthConfig` (``Generator(cfg, seed).group(i)``)."""

    def __init__(self, config: SynthConfig, seed: int = 0) -> None:
        self.cfg = config
        self.seed = int(seed)
        self.categories = categories(config.num_categories)
        s = config.size
        self._ys, self._xs = np.mgrid[0:s, 0:s].astype(np.float32)

    # ------------------------------------------------------------ planning
    def target_of(self, index: int) -> int:
        """Target category of group ``index``.

        Each block of ``num_categories`` consecutive groups uses every category once as
        its target (in a seeded random order), so targets are balanced.
        """
        C = self.cfg.num_categories
        block = np.random.default_rng(
            np.random.SeedSequence([self.seed, self.cfg.stream, 7919, index // C])
        )
        return int(block.permutation(C)[index % C])

    def _plan(
        self, rng: np.random.Generator, target: int
    ) -> tuple[int, int, list[list[tuple[int, str]]]]:
        """Categories of every image of a group: ``(target, companion, objects)``."""
        cfg = self.cfg
        C = cfg.num_categories
        n = int(rng.integers(cfg.images_per_group[0], cfg.images_per_group[1] + 1))
        companion = int((target + 1 + rng.integers(C - 1)) % C)
        pool = np.array([c for c in range(C) if c not in (target, companion)])
        for _ in range(100):
            comp = rng.random(n) < cfg.companion_prob
            if cfg.companion_prob > 0 and n >= 2:
                if not comp.any():
                    comp[rng.integers(n)] = True
                if comp.all():
                    comp[rng.integers(n)] = False
            plans = []
            for j in range(n):
                objs = [(target, "target")]
                if rng.random() < cfg.second_target_prob:
                    objs.append((target, "target"))
                d = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
                others: list[tuple[int, str]] = []
                if comp[j]:
                    others.append((companion, "companion"))
                paired = False
                while len(others) < max(d, int(comp[j])):
                    if others and not paired and rng.random() < cfg.distractor_pair_prob:
                        others.append(others[-1])
                        paired = True
                    else:
                        others.append((int(rng.choice(pool)), "distractor"))
                        paired = False
                plans.append(objs + others)
            # no category but the target may occur in every image of the group
            sets = [{c for c, role in p if role != "target"} for p in plans]
            if not set.intersection(*sets):
                return target, companion, plans
        raise RuntimeError("could not plan a group")  # pragma: no cover

    # ------------------------------------------------------------ background
    def _background(self, rng: np.random.Generator, noise_tile: np.ndarray) -> np.ndarray:
        cfg, s = self.cfg, self.cfg.size
        base = rng.uniform(75, 185) + rng.uniform(-22, 22, 3)
        low = rng.normal(0.0, cfg.background_noise, (5, 5, 3)).astype(np.float32)
        low += base.astype(np.float32)
        low = cv2.resize(low, (s, s), interpolation=cv2.INTER_LINEAR)
        oy, ox = rng.integers(0, s, 2)
        fine = noise_tile[oy : oy + s, ox : ox + s]
        low += fine
        img = np.clip(low, 0, 255, out=low).astype(np.uint8)
        # clutter: short strokes and small blobs, low saturation
        n = cfg.clutter
        if n:
            pts = rng.integers(0, s, (n, 4))
            gray = rng.uniform(40, 220, n)
            tint = rng.uniform(-25, 25, (n, 3))
            kind = rng.random(n)
            rad = rng.integers(2, max(3, s // 28) + 1, n)
            cols = np.clip(gray[:, None] + tint, 0, 255).tolist()
            kinds, rads = kind.tolist(), rad.tolist()
            for i, (x0, y0, x1, y1) in enumerate(pts.tolist()):
                col = cols[i]
                if kinds[i] < 0.5:
                    x1 = x0 + (x1 - x0) // 4
                    y1 = y0 + (y1 - y0) // 4
                    cv2.line(img, (x0, y0), (x1, y1), col, 1 + int(kinds[i] < 0.2), cv2.LINE_AA)
                elif kinds[i] < 0.8:
                    cv2.circle(img, (x0, y0), rads[i], col, -1, cv2.LINE_AA)
                else:
                    r = rads[i]
                    cv2.rectangle(img, (x0 - r, y0 - r), (x0 + r, y0 + r), col, -1)
        return img

    # ------------------------------------------------------------ objects
    def _layout(self, rng: np.random.Generator, extents: list[float]) -> np.ndarray | None:
        """Per object (cx, cy, r, aspect, angle, body radius, margin), or None when it failed.

        ``extents``: largest vertex radius of each object's shape (in units of r).
        """
        cfg, s = self.cfg, self.cfg.size
        n = len(extents)
        out = np.zeros((n, 7))
        k = 24  # candidates drawn at once per object
        lo, hi = cfg.object_scale
        lj = math.log1p(cfg.aspect_jitter)
        rot = math.radians(cfg.rotation_deg)
        for i in range(n):
            u = rng.random((5, k))
            r = (lo + (hi - lo) * u[0]) * s
            a = np.exp((2 * u[1] - 1) * lj)
            ang = (2 * u[2] - 1) * rot
            stretch = np.sqrt(np.maximum(a, 1 / a)) * (1 + cfg.deformation)
            margin = r * extents[i] * stretch + 1  # the whole object stays inside the image
            body = r * 1.15 * stretch  # radius used for the overlap test
            cx = margin + u[3] * (s - 2 * margin)
            cy = margin + u[4] * (s - 2 * margin)
            ok = 2 * margin < s
            if i:
                d = np.hypot(out[:i, 0, None] - cx, out[:i, 1, None] - cy)
                ok &= ~np.any(d < (out[:i, 5, None] + body) * (1 - cfg.max_overlap), axis=0)
            j = int(np.argmax(ok))
            if not ok[j]:
                return None
            out[i] = (cx[j], cy[j], r[j], a[j], ang[j], body[j], margin[j])
        return out

    def _draw(self, rng, img, owner, idx, cat: Category, p: np.ndarray) -> tuple[int, list[int]]:
        """Draw one object into ``img``, label its pixels ``idx`` in ``owner``.

        Returns its drawn area (pixels) and the box ``[x0, y0, x1, y1]`` of its outline
        (exclusive end, clipped to the image).
        """
        cfg, s = self.cfg, self.cfg.size
        cx, cy, r, a, ang, _, margin = p.tolist()
        contours, _ = _SHAPES[cat.shape]
        ca, sa = math.cos(ang), math.sin(ang)
        sx, sy = math.sqrt(a), 1 / math.sqrt(a)
        x0, y0 = max(int(cx - margin), 0), max(int(cy - margin), 0)
        x1, y1 = min(int(cx + margin) + 2, s), min(int(cy + margin) + 2, s)
        # row vectors @ rot: aspect, rotation, scale and 4 bits of sub-pixel precision
        rot = np.array([[ca * sx, sa * sx], [-sa * sy, ca * sy]]) * (16 * r)
        off = np.array([(cx - x0) * 16, (cy - y0) * 16])
        polys = []
        for c in contours:
            k = rng.uniform(1 - cfg.deformation, 1 + cfg.deformation, (len(c), 1))
            polys.append(np.rint((c * k) @ rot + off).astype(np.int32))
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, polys, 1, cv2.LINE_8, shift=4)
        m = m.view(bool)
        # texture in object coordinates (units of the radius), random phase
        tex = cat.texture
        ph0, ph1 = rng.random(2)
        if tex == "solid":
            t = None
        elif tex == "halves":
            t = (self._xs[y0:y1, x0:x1] - cx) * ca + (self._ys[y0:y1, x0:x1] - cy) * sa > 0
        else:
            xs = self._xs[y0:y1, x0:x1] - cx
            ys = self._ys[y0:y1, x0:x1] - cy
            if tex == "rings":
                t = (np.sqrt(xs * xs + ys * ys) * (3.0 / r)).astype(np.int32) % 2 == 1
            else:
                u = xs * (ca / r) + ys * (sa / r)
                if tex == "stripes":
                    t = (u * 2.2 + (ph0 + 8)).astype(np.int32) % 2 == 0
                else:
                    v = ys * (ca / r) - xs * (sa / r)
                    if tex == "checker":
                        t = ((u * 1.7 + (ph0 + 8)).astype(np.int32)
                             + (v * 1.7 + (ph1 + 8)).astype(np.int32)) % 2 == 0  # fmt: skip
                    else:  # dots
                        fu = (u * 2.0 + ph0) % 1 - 0.5
                        fv = (v * 2.0 + ph1) % 1 - 0.5
                        t = fu * fu + fv * fv < 0.09
        jit = (rng.normal(0, cfg.color_jitter, 3)).tolist()
        c1, c2 = (
            [min(255, max(0, round(c + j))) for c, j in zip(col, jit, strict=True)]
            for col in cat.colors
        )
        sub = img[y0:y1, x0:x1]
        sub[m] = c1
        if t is not None:
            sub[m & t] = c2
        owner[y0:y1, x0:x1][m] = idx
        return int(np.count_nonzero(m)), [int(x0), int(y0), int(x1), int(y1)]

    def image(
        self, rng: np.random.Generator, objects: list[tuple[int, str]], noise_tile
    ) -> SynthImage:
        """Render one image holding ``objects`` (category id, role), in random depth order."""
        cfg, s = self.cfg, self.cfg.size
        n = len(objects)
        for _ in range(200):
            order = rng.permutation(n)  # drawing order: later objects occlude earlier ones
            cats = [self.categories[objects[k][0]] for k in order]
            lay = self._layout(rng, [_SHAPES[c.shape][1] for c in cats])
            if lay is None:
                continue
            img = self._background(rng, noise_tile)
            owner = np.zeros((s, s), np.uint8)
            info = []
            for z, k in enumerate(order):
                cat = cats[z]
                area, box = self._draw(rng, img, owner, z + 1, cat, lay[z])
                info.append((k, area, box))
            visible = np.bincount(owner.ravel(), minlength=n + 1)
            target_ids = [z + 1 for z, k in enumerate(order) if objects[k][1] == "target"]
            frac = visible[target_ids].sum() / (s * s)
            ok = cfg.mask_fraction[0] <= frac <= cfg.mask_fraction[1] and all(
                visible[z + 1] >= cfg.min_visible * area for z, (_, area, _) in enumerate(info)
            )
            if not ok:
                continue
            lut = np.zeros(n + 1, bool)
            lut[target_ids] = True
            mask = lut[owner]
            objs = [None] * n
            for z, (k, area, box) in enumerate(info):
                cid, role = objects[k]
                objs[k] = {
                    "category": cid, "role": role, "box": box, "area": area,
                    "visible": int(visible[z + 1]), "depth": z,
                }  # fmt: skip
            relabel = np.zeros(n + 1, np.uint8)
            relabel[1:] = order + 1  # depth z + 1 -> object index + 1
            return SynthImage(img, mask, objs, relabel[owner])  # type: ignore[arg-type]
        raise RuntimeError(
            f"could not place {n} objects in a {s}px image; lower object_scale or distractors"
        )

    def render(self, objects: list[tuple[int, str]], seed: int = 0) -> SynthImage:
        """One image holding ``objects`` ((category id, role) pairs), for experiments.

        The mask covers the objects whose role is ``"target"``; ``labels`` tells every
        object's pixels apart, so the same image can serve as a member of different
        groups (see the quickstart notebook). Deterministic in ``(seed, objects)``.
        """
        for cid, role in objects:
            if not 0 <= cid < len(self.categories):
                raise ValueError(f"category {cid} out of range [0, {len(self.categories)})")
            if role not in ("target", "companion", "distractor"):
                raise ValueError(f"role must be target, companion or distractor, got {role!r}")
        s = self.cfg.size
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed, self.cfg.stream, 104729, seed])
        )
        tile = (rng.random((2 * s, 2 * s, 3), dtype=np.float32) - 0.5) * 20.0
        return self.image(rng, list(objects), tile)

    def group(self, index: int) -> SynthGroup:
        """Group ``index``: depends only on (seed, stream, index)."""
        cfg, s = self.cfg, self.cfg.size
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, cfg.stream, index]))
        target, companion, plans = self._plan(rng, self.target_of(index))
        tile = rng.random((2 * s, 2 * s, 3), dtype=np.float32)
        tile -= 0.5
        tile *= 20.0  # fine-grained background noise, +-10 gray levels
        cat = self.categories[target]
        g = SynthGroup(f"{index:03d}_{cat.name}", target, companion)
        for objects in plans:
            g.images.append(self.image(rng, objects, tile))
        return g


# ---------------------------------------------------------------- writing


def _encode(img: np.ndarray, ext: str, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:  # pragma: no cover
        raise ValueError(f"could not encode a {ext} image")
    return buf.tobytes()


def write_benchmark(
    out_dir: str | Path,
    preset: str = "train",
    groups: int | None = None,
    seed: int = 0,
    size: int | None = None,
    *,
    config: SynthConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic benchmark in the CoCA layout and return ``out_dir``.

    Args:
        out_dir: output folder; gets ``Image/``, ``GroundTruth/`` and ``meta.json``.
        preset: ``train``, ``test`` or ``hard`` (ignored when ``config`` is given).
        groups, size: override the preset's number of groups / image side.
        seed: base seed; the same seed gives byte-identical files.
        config: a full :class:`SynthConfig` instead of a preset.
        overwrite: replace a benchmark that this function wrote in ``out_dir`` (else a
            ValueError). Only a folder it can prove it wrote is removed
            (:func:`written_by_generator`); any other ``Image/``, ``GroundTruth/`` or
            ``meta.json`` is refused, with or without ``overwrite``.
    """
    cfg = config if config is not None else preset_config(preset)
    cfg = cfg.replace(
        **{k: v for k, v in {"groups": groups, "size": size}.items() if v is not None}
    )
    out = Path(out_dir)
    existing = [out / n for n in ("Image", "GroundTruth", "meta.json") if (out / n).exists()]
    if existing:
        why = _not_ours(out)
        if why:
            raise ValueError(
                f"{out}: holds {existing[0].name} that dmt synth did not write ({why}); "
                "it is left alone: choose another folder, or remove it yourself"
            )
        if not overwrite:
            raise ValueError(
                f"{out}: already holds a benchmark written by dmt synth; pass --overwrite "
                "(overwrite=True) to replace it, or choose another folder"
            )
        for p in existing:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    gen = Generator(cfg, seed)
    meta: dict[str, Any] = {
        "generator": GENERATOR_MARK,
        "preset": preset if config is None else "custom",
        "seed": int(seed),
        "config": cfg.to_dict(),
        "categories": [dataclasses.asdict(c) | {"name": c.name} for c in gen.categories],
        "groups": [],
    }
    jpg = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    for gi in range(cfg.groups):
        g = gen.group(gi)
        img_dir, gt_dir = out / "Image" / g.name, out / "GroundTruth" / g.name
        img_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        gm: dict[str, Any] = {
            "name": g.name,
            "target": g.target,
            "companion": g.companion,
            "images": [],
        }
        for j, im in enumerate(g.images):
            stem = f"{gi:03d}_{j:02d}"
            (img_dir / f"{stem}.jpg").write_bytes(
                _encode(cv2.cvtColor(im.image, cv2.COLOR_RGB2BGR), ".jpg", jpg)
            )
            (gt_dir / f"{stem}.png").write_bytes(
                _encode(im.mask.astype(np.uint8) * 255, ".png", png)
            )
            gm["images"].append({"stem": stem, "mask_fraction": round(float(im.mask.mean()), 5),
                                 "objects": im.objects})  # fmt: skip
        meta["groups"].append(gm)
    (out / "meta.json").write_text(json.dumps(meta, sort_keys=True, separators=(",", ":")))
    return out


#: the ``generator`` entry of every ``meta.json`` that :func:`write_benchmark` writes
GENERATOR_MARK = "dmt_core.data.synthetic.write_benchmark"


def _not_ours(out: Path) -> str:
    """Why ``out`` is not provably a benchmark of :func:`write_benchmark` ("" if it is).

    The proof: ``meta.json`` carries :data:`GENERATOR_MARK` and lists exactly the files
    under ``Image/`` and ``GroundTruth/`` (one ``.jpg`` and one ``.png`` per image, in
    the listed groups), and nothing else lies in those folders.
    """
    p = out / "meta.json"
    if not p.is_file():
        return "no meta.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError):
        return "meta.json is not readable JSON"
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR_MARK:
        return "meta.json lacks the generator's mark"
    try:
        expect = {
            (root, gm["name"], f"{im['stem']}{ext}")
            for gm in meta["groups"]
            for im in gm["images"]
            for root, ext in (("Image", ".jpg"), ("GroundTruth", ".png"))
        }
    except (KeyError, TypeError):
        return "meta.json does not list the images"
    found: set[tuple[str, str, str]] = set()
    for root in ("Image", "GroundTruth"):
        folder = out / root
        if not folder.exists():
            continue
        for group_dir in folder.iterdir():
            if not group_dir.is_dir() or group_dir.is_symlink():
                return f"{root}/{group_dir.name} is not a group folder"
            for f in group_dir.iterdir():
                if not f.is_file() or f.is_symlink():
                    return f"{root}/{group_dir.name}/{f.name} is not a file it wrote"
                found.add((root, group_dir.name, f.name))
    extra = sorted(found - expect)
    if extra:
        return f"{'/'.join(extra[0])} is not in its meta.json"
    return ""


def written_by_generator(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a benchmark that :func:`write_benchmark` wrote and
    nothing else in its ``Image/`` and ``GroundTruth/`` (so it may be replaced)."""
    return not _not_ours(Path(out_dir))


def load_meta(out_dir: str | Path) -> dict[str, Any]:
    """The ``meta.json`` written by :func:`write_benchmark`."""
    p = Path(out_dir) / "meta.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (not a synthetic benchmark folder?)")
    return json.loads(p.read_text())
