"""plot_group draws images, masks and predictions from tensors, arrays or PIL images."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dmt_core.data import normalize  # noqa: E402
from dmt_core.viz import _image_hwc, plot_group  # noqa: E402


def test_normalised_tensor_group_with_masks_and_preds(tmp_path):
    x = torch.rand(3, 3, 16, 16)
    fig = plot_group(normalize(x), torch.rand(3, 1, 16, 16) > 0.5, torch.rand(3, 1, 16, 16),
                     titles=["a", "b", "c"], title="group")  # fmt: skip
    assert len(fig.axes) == 9
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0
    # normalised input is detected and undone
    assert np.allclose(_image_hwc(normalize(x)[0], None), x[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_pil_and_arrays():
    imgs = [Image.new("RGB", (20, 10), (255, 0, 0)), np.zeros((10, 20, 3), np.uint8)]
    masks = [np.ones((10, 20), bool), np.zeros((10, 20), np.uint8)]
    fig = plot_group(imgs, masks)
    assert len(fig.axes) == 4
    assert np.allclose(_image_hwc(imgs[0], None)[0, 0], (1, 0, 0))


def test_length_mismatch():
    with pytest.raises(ValueError, match="2 images but 1 mask"):
        plot_group(torch.rand(2, 3, 8, 8), torch.rand(1, 1, 8, 8))


def test_plot_group_takes_fewer_row_labels_than_rows_it_could_draw():
    import numpy as np

    from dmt_core.viz import plot_group

    imgs = np.zeros((2, 8, 8, 3), np.uint8)
    fig = plot_group(imgs, np.zeros((2, 8, 8)), row_labels=("photo", "truth"))
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["photo", "truth"]
    fig = plot_group(imgs, preds=np.ones((2, 8, 8)), row_labels=("photo",))
    assert [ax.get_ylabel() for ax in fig.axes[::2]] == ["photo", "prediction"]


def test_readme_figure_with_a_shipped_models_predictions(tmp_path):
    from dmt_core.recipes.figures import main

    out = tmp_path / "f.png"
    assert main([str(out), "--model", "tiny-synthetic", "--seed", "1"]) == 0
    assert out.stat().st_size > 10_000
    from dmt_core.recipes.figures import synthetic_group_figure

    fig = synthetic_group_figure("test", 0, 1, max_images=4, model="tiny-synthetic")
    assert len(fig.axes) == 12 and fig.axes[8].get_ylabel() == "DMT"


# ------------------------------------------------------------------ notebook helpers
def test_ratio_norm_is_positive_log_and_symmetric_around_one():
    from dmt_core.viz import ratio_norm

    norm = ratio_norm(np.array([0.25, 1.0, 3.0]))
    assert norm.vmin == pytest.approx(0.25) and norm.vmax == pytest.approx(4.0)
    assert float(norm(1.0)) == pytest.approx(0.5)  # 1 (uniform) is the centre of the scale
    assert float(norm(2.0)) - 0.5 == pytest.approx(0.5 - float(norm(0.5)))  # x2 as strong as /2
    assert ratio_norm(np.array([0.99, 1.01])).vmax == pytest.approx(1.05)  # the floor
    with pytest.raises(ValueError, match="positive"):
        ratio_norm(np.array([0.0, -1.0]))


def test_pipeline_figure_highlights_the_chosen_box():
    from dmt_core.viz import PIPELINE_BOXES, plot_pipeline

    fig = plot_pipeline(["r2r", "tgfr"], title="x")
    patches = fig.axes[0].patches
    boxes = [p for p in patches if type(p).__name__ == "FancyBboxPatch"]
    assert len(boxes) == len(PIPELINE_BOXES)
    lit = [b for (name, *_), b in zip(PIPELINE_BOXES, boxes, strict=True) if b.get_linewidth() > 1]
    assert {PIPELINE_BOXES[boxes.index(b)][0] for b in lit} == {"r2r", "tgfr"}
    with pytest.raises(ValueError, match="unknown"):
        plot_pipeline("attention")


def test_notebook_style_sets_the_dpi_outside_ipython():
    import matplotlib as mpl

    from dmt_core.viz import notebook_style

    old = mpl.rcParams["figure.dpi"]
    try:
        notebook_style(dpi=61)
        assert mpl.rcParams["figure.dpi"] == 61
    finally:
        mpl.rcParams["figure.dpi"] = old
