"""README figures: one synthetic group drawn with :func:`dmt_core.viz.plot_group`.

python -m dmt_core.recipes.figures data/figures/synthetic_group.png [--preset test]
python -m dmt_core.recipes.figures data/figures/tiny_synthetic_predictions.png \
    --model tiny-synthetic --seed 1            # with a shipped model's predictions
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.synthetic import Generator, preset_config


def _others(objects) -> str:
    k = sum(o["role"] != "target" for o in objects)
    return f"{k} other object{'s' if k != 1 else ''}"


def synthetic_group_figure(
    preset: str = "test",
    index: int = 0,
    seed: int = 0,
    max_images: int = 8,
    model: str | None = None,
):
    """A matplotlib Figure of group ``index`` of a synthetic preset (images and masks).

    ``model``: a shipped model's name or a checkpoint file; its predictions for the
    whole group (all its images, however many are drawn) become a third row.
    """
    from ..viz import plot_group

    gen = Generator(preset_config(preset), seed)
    g = gen.group(index)
    cats = gen.categories
    imgs = g.images[:max_images]
    preds = None
    title = (
        f"synthetic '{preset}' group {index}: target = {cats[g.target].name}, "
        f"companion = {cats[g.companion].name}"
    )
    if model is not None:
        from ..weights import load_model

        net = load_model(model)
        images, _ = g.tensors(net.config.input_size)
        preds = net.predict(images)[: len(imgs)]
        title += f"; predictions of {model}"
    return plot_group(
        [im.image for im in imgs],
        [im.mask for im in imgs],
        preds,
        titles=[_others(im.objects) for im in imgs],
        title=title,
        row_labels=("image", "ground truth", "DMT" if model else "prediction"),
        cell=1.5,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="draw one synthetic group as a PNG")
    ap.add_argument("out", type=Path, help="PNG file to write")
    ap.add_argument("--preset", default="test")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="shipped model name or checkpoint: add its maps")
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    fig = synthetic_group_figure(args.preset, args.index, args.seed, model=args.model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
