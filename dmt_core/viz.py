"""Figures for notebooks, docs and ``dmt evaluate --curves``: a group drawn as a grid
(images, masks, predictions) and the precision-recall / F-measure curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _to_list(x: Any) -> list[Any]:
    """Split a batch (tensor/array with a leading N) or a sequence into a list of items."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    if isinstance(x, np.ndarray):
        return list(x)
    return list(x)


def _image_hwc(x: Any, normalized: bool | None) -> np.ndarray:
    """One image as float (h, w, 3) in [0, 1] from PIL, (3, h, w) / (h, w, 3) / (h, w)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, 2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an image (3, h, w), (h, w, 3) or (h, w); got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if normalized is None:
        normalized = bool(a.min() < -0.01 or a.max() > 1.01) and a.max() <= 10
    if normalized:
        a = a * np.array(IMAGENET_STD, np.float32) + np.array(IMAGENET_MEAN, np.float32)
    elif a.max() > 1.01:
        a = a / 255.0
    return np.clip(a, 0, 1)


def _map_hw(x: Any) -> np.ndarray:
    """A mask or probability map as float (h, w) in [0, 1]."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    a = np.asarray(x)
    a = np.squeeze(a)
    if a.ndim != 2:
        raise ValueError(f"expected a map (h, w) or (1, h, w); got shape {np.shape(x)}")
    if a.dtype == bool:
        return a.astype(np.float32)
    a = a.astype(np.float32)
    return a / 255.0 if a.max(initial=0) > 1.01 else a


def plot_group(
    images: Any,
    masks: Any | None = None,
    preds: Any | None = None,
    *,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    normalized: bool | None = None,
    max_images: int = 12,
    cell: float = 1.6,
    row_labels: Sequence[str] = ("image", "mask", "prediction"),
):
    """Draw a group as a grid: one column per image, rows image / mask / prediction.

    Args:
        images: (N, 3, H, W) tensor or array (ImageNet-normalised or in [0, 1] / [0, 255]),
            or a list of PIL images / (h, w, 3) arrays.
        masks: optional (N, 1, H, W) / (N, H, W) or a list of (h, w) maps (bool, 0/1 or 0..255).
        preds: optional predictions, same forms as ``masks``, in [0, 1].
        titles: one title per column (e.g. file stems).
        normalized: whether float images are ImageNet-normalised (default: guessed).
        max_images: draw at most this many columns.
        cell: size of one cell in inches.

    Returns:
        A matplotlib ``Figure`` (not shown; ``fig.savefig(...)`` or display it).
    """
    import matplotlib.pyplot as plt

    imgs = _to_list(images)[:max_images]
    if not imgs:
        raise ValueError("plot_group: no images")
    # labels of the rows present, the defaults filling any not given
    labels = [*row_labels, *("image", "mask", "prediction")[len(row_labels) :]]
    rows: list[tuple[str, list[np.ndarray], bool]] = [
        (labels[0], [_image_hwc(x, normalized) for x in imgs], False)
    ]
    for label, maps in ((labels[1], masks), (labels[2], preds)):
        if maps is not None:
            lst = _to_list(maps)[: len(imgs)]
            if len(lst) != len(imgs):
                raise ValueError(f"plot_group: {len(imgs)} images but {len(lst)} {label} maps")
            rows.append((label, [_map_hw(m) for m in lst], True))
    n = len(imgs)
    fig, axes = plt.subplots(len(rows), n, figsize=(cell * n, cell * len(rows)), squeeze=False)
    for r, (label, items, is_map) in enumerate(rows):
        for c, a in enumerate(items):
            ax = axes[r][c]
            if is_map:
                ax.imshow(a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(a, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0 and titles is not None and c < len(titles):
                ax.set_title(str(titles[c]), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _curves_of(ev: Any) -> tuple[str, Any]:
    """(label, curves) of an :class:`~dmt_core.evaluate.Evaluation` or its JSON dict."""
    if hasattr(ev, "curves"):
        return ev.label, ev.curves
    if isinstance(ev, Mapping) and "curves" in ev:
        c = {k: np.asarray(v, np.float64) for k, v in ev["curves"].items()}
        c.setdefault("thresholds", np.arange(256))
        return str(ev.get("label", "prediction")), SimpleNamespace(**c)
    raise ValueError("an evaluation dict needs 'curves' (use evaluate_folder(curves=True))")


def plot_curves(
    evaluations: Any,
    labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """Precision-recall and F-measure-vs-threshold curves in one matplotlib Figure.

    Args:
        evaluations: one or several :class:`~dmt_core.evaluate.Evaluation` (or dicts
            with ``curves``).
        labels: legend names (default: each evaluation's label).
        title: figure title.

    Returns:
        A ``matplotlib.figure.Figure`` with two axes (no pyplot state is touched).
    """
    from matplotlib.figure import Figure

    if hasattr(evaluations, "curves") or isinstance(evaluations, Mapping):
        evaluations = [evaluations]
    items = [_curves_of(ev) for ev in evaluations]
    if labels is not None:
        if len(labels) != len(items):
            raise ValueError(f"--labels: got {len(labels)} labels for {len(items)} predictions")
        items = [(lab, c) for lab, (_, c) in zip(labels, items, strict=True)]
    try:
        import seaborn as sns

        colors = sns.color_palette("colorblind", len(items))
    except ImportError:  # seaborn is optional (notebooks extra)
        colors = [f"C{i}" for i in range(len(items))]

    fig = Figure(figsize=(11, 4.4), layout="constrained")
    ax_pr, ax_f = fig.subplots(1, 2)
    for (label, c), color in zip(items, colors, strict=True):
        ax_pr.plot(c.recall, c.precision, color=color, lw=1.8, label=label)
        best = int(np.argmax(c.fmeasure))
        ax_f.plot(
            c.thresholds, c.fmeasure, color=color, lw=1.8,
            label=f"{label} (max {c.fmeasure[best]:.3f} at {best})",
        )  # fmt: skip
        ax_f.plot([best], [c.fmeasure[best]], "o", color=color, ms=5)
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1.01))
    ax_f.set(
        xlabel="threshold (prediction >= t, of 255)",
        ylabel=r"F-measure ($\beta^2 = 0.3$)",
        title="F-measure vs threshold",
        xlim=(0, 255),
    )
    for ax in (ax_pr, ax_f):
        ax.set_ylim(0, 1.01)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------ notebook helpers
def notebook_style(
    dpi: int = 80,
    image_format: str = "jpeg",
    quality: int = 85,
    theme: Mapping[str, Any] | None = None,
) -> None:
    """The series' figure settings: inline figures stored as JPEG at ``dpi`` (a PNG of
    an image grid is 3-4x larger; the stored series stays under 6 MB). Also registers
    the inline image formatter, so that a Figure made outside pyplot
    (:func:`plot_curves`) shows as an image when it ends a cell.

    ``theme``: arguments of ``seaborn.set_theme`` (None: matplotlib's own look).
    Outside IPython only the matplotlib settings are made.
    """
    import matplotlib as mpl

    if theme is not None:
        import seaborn as sns

        sns.set_theme(**theme)
    mpl.rcParams["figure.dpi"] = dpi
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - notebooks extra not installed
        return
    if get_ipython() is None:
        return
    import matplotlib.pyplot  # noqa: F401  (activates the inline backend)
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    kwargs = {"pil_kwargs": {"quality": quality}} if image_format == "jpeg" else {}
    set_matplotlib_formats(image_format, **kwargs)


def ratio_norm(values: Any, floor: float = 1.05):
    """A colour scale for a ratio to uniform (>= 0, 1 = uniform): logarithmic, symmetric
    around 1 (``1/r .. r``), so that it never implies a value below zero and "half as
    much" is as strong a colour as "twice as much". Use with a diverging colormap.

    ``r`` is the largest of ``max(values)``, ``1 / min(values)`` and ``floor``.
    """
    from matplotlib.colors import LogNorm

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        raise ValueError("ratio_norm: no positive finite value to scale")
    r = float(max(v.max(), 1.0 / v.min(), floor))
    return LogNorm(vmin=1.0 / r, vmax=r, clip=True)


#: the boxes of the pipeline figure: (name, label, x, y, width, height)
PIPELINE_BOXES = (
    ("encoder", "VGG16\nencoder", 0.00, 0.40, 0.09, 0.22),
    ("daspp", "DASPP", 0.11, 0.40, 0.07, 0.22),
    ("r2r", "R2R\n(region-to-\nregion)", 0.20, 0.40, 0.12, 0.22),
    ("decoder", "decoder stages 5 -> 2\n(each with its own R2R)", 0.35, 0.40, 0.41, 0.22),
    ("heads", "co / bg maps,\nthe 12-term loss", 0.80, 0.40, 0.13, 0.22),
    ("tokens", "co / bg\ntokens", 0.22, 0.03, 0.10, 0.22),
    ("ctp2t", "CtP2T\n(contrast-induced\npixel-to-token)", 0.35, 0.03, 0.13, 0.22),
    ("cot2t", "CoT2T\n(co-saliency\ntoken-to-token)", 0.50, 0.03, 0.12, 0.22),
    ("tgfr", "TGFR\n(token-guided\nfeature refinement)", 0.64, 0.03, 0.13, 0.22),
)
_PIPELINE_ARROWS = (
    ("encoder", "daspp"), ("daspp", "r2r"), ("r2r", "decoder"), ("decoder", "heads"),
    ("tokens", "ctp2t"), ("ctp2t", "cot2t"), ("cot2t", "tgfr"), ("decoder", "ctp2t"),
    ("tgfr", "decoder"),
)  # fmt: skip


def plot_pipeline(highlight: str | Sequence[str] = (), title: str | None = None):
    """DMT's pipeline as boxes and arrows, the ``highlight`` box(es) coloured: the figure
    that opens each module notebook (one drawing, shared by all of them).

    Names: ``encoder``, ``daspp``, ``r2r``, ``tokens``, ``ctp2t``, ``cot2t``, ``tgfr``,
    ``decoder``, ``heads``. Returns a matplotlib Figure (no pyplot state is touched).

    The token path (bottom) runs once per decoder stage: the tokens read the stage's
    pixels (CtP2T), exchange across the group (CoT2T), and refine the stage's features
    (TGFR) that go on to the next stage.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    names = {b[0] for b in PIPELINE_BOXES}
    chosen = {highlight} if isinstance(highlight, str) else set(highlight)
    if chosen - names:
        raise ValueError(f"plot_pipeline: unknown {sorted(chosen - names)}; known {sorted(names)}")
    fig = Figure(figsize=(9.0, 2.6))
    ax = fig.add_axes((0, 0, 1, 0.9 if title else 1))
    ax.set(xlim=(-0.01, 0.94), ylim=(0, 0.68))
    ax.axis("off")
    centre = {}
    for name, label, x, y, w, h in PIPELINE_BOXES:
        on = name in chosen
        ax.add_patch(FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.005,rounding_size=0.015",
            fc="#f4a259" if on else "#eef1f5", ec="#c0392b" if on else "#8a94a6",
            lw=2.0 if on else 0.8,
        ))  # fmt: skip
        ax.text(x + w / 2, y + h / 2, label, ha="center", va="center", fontsize=7.5,
                fontweight="bold" if on else "normal")  # fmt: skip
        centre[name] = (x, y, w, h)
    for a, b in _PIPELINE_ARROWS:
        xa, ya, wa, ha = centre[a]
        xb, yb, wb, hb = centre[b]
        if abs(ya - yb) < 1e-6:  # same row: right edge to left edge
            p, q = (xa + wa, ya + ha / 2), (xb, yb + hb / 2)
        else:  # between the rows: the facing edges, where the boxes overlap in x
            lo, hi = max(xa, xb), min(xa + wa, xb + wb)
            x = (lo + hi) / 2 if lo < hi else (xa + wa / 2 + xb + wb / 2) / 2
            p, q = (x, ya if ya > yb else ya + ha), (x, yb + hb if ya > yb else yb)
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=9, lw=0.9,
                                     color="#4a5568"))  # fmt: skip
    ax.text(0.0, 0.64, "a group of N images -> N co-saliency maps; at every decoder stage the "
            "tokens read its pixels, meet across the group and refine its features",
            fontsize=7, color="#4a5568")  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
