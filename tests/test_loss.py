"""The 12-term DMT loss against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import group, tiny_model

from dmt_core.loss import TERMS, bce, dmt_loss, iou_loss
from dmt_core.model.dmt import DMTOutput
from dmt_core.model.tgfr import StageMaps

LN2 = math.log(2)


def test_iou_loss_by_hand():
    logits = torch.zeros(1, 1, 2, 2)  # sigmoid 0.5 everywhere
    g = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # min: 0.5 ; max: 1 + 3 * 0.5 = 2.5
    assert iou_loss(logits, g).item() == pytest.approx(1 - 0.5 / 2.5)
    two = torch.cat([logits, torch.full_like(logits, 50.0)])  # 2nd image: sigmoid 1
    gg = torch.cat([g, torch.ones_like(g)])
    assert iou_loss(two, gg).item() == pytest.approx(1 - (0.2 + 1.0) / 2)  # mean over images


def test_bce_by_hand():
    assert bce(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == pytest.approx(LN2)
    x = torch.tensor([[[[2.0]]]])
    assert bce(x, torch.zeros_like(x)).item() == pytest.approx(math.log(1 + math.e**2))


def _output(n=2, size=8, co=0.0, bg=None, stage_value=0.0):
    def full(v, s):
        return torch.full((n, 1, s, s), float(v)) if not torch.is_tensor(v) else v

    stages = [StageMaps(*(full(stage_value, s) for _ in range(5))) for s in (2, 2, 2, 4, 4)]
    return DMTOutput(full(co, size), full(0.0, size) if bg is None else bg, full(0.0, size), stages)


def test_total_loss_by_hand():
    g = torch.zeros(2, 1, 8, 8)
    g[..., :4] = 1.0  # left half: every nearest-downsampled stage GT is a left half too
    total, terms = dmt_loss(_output(), g)
    assert set(terms) == set(TERMS) and len(TERMS) == 12
    iou = 1 - 0.5 / 1.5  # f = 1/2: inter 0.5 f, union f + 0.5 (1 - f)
    for k in terms:
        expected = iou if "iou" in k else LN2
        assert terms[k].item() == pytest.approx(expected, abs=1e-6), k
    assert total.item() == pytest.approx(8 * LN2 + 4 * iou, abs=1e-5)


def test_background_map_is_supervised_with_the_inverted_mask():
    g = torch.zeros(2, 1, 8, 8)
    g[..., :4] = 1.0
    bg = 20.0 * (1 - 2 * g)  # confidently "background" exactly where the mask is 0
    _, terms = dmt_loss(_output(bg=bg), g)
    assert terms["bce_bg"].item() < 1e-6
    _, terms = dmt_loss(_output(bg=-bg), g)
    assert terms["bce_bg"].item() == pytest.approx(20.0, abs=1e-3)


def test_stage_targets_are_nearest_downsampled():
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    g = ((yy + xx) % 2 == 0).float().expand(2, 1, 8, 8)  # pixel checkerboard
    # nearest keeps the even pixels: every stage GT is all ones (bilinear would give 0.5)
    _, terms = dmt_loss(_output(stage_value=5.0), g)
    assert terms["stage_bce_co"].item() == pytest.approx(math.log1p(math.exp(-5)), rel=1e-4)
    assert terms["stage_bce_bg"].item() == pytest.approx(5 + math.log1p(math.exp(-5)), rel=1e-4)


def test_masks_are_binarised_at_one_half():
    soft = torch.full((2, 1, 8, 8), 0.6)
    a = dmt_loss(_output(co=3.0), soft)[1]["bce_co"]
    b = dmt_loss(_output(co=3.0), torch.ones(2, 1, 8, 8))[1]["bce_co"]
    assert a.item() == pytest.approx(b.item())


def test_the_loss_needs_side_outputs_and_works_without_bg():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="aux=True"):
        dmt_loss(model(group(2, 64)), torch.ones(2, 1, 64, 64))
    nobg = tiny_model(use_bg_token=False).train()
    total, terms = dmt_loss(nobg(group(2, 64)), torch.ones(2, 1, 64, 64))
    assert "bce_bg" not in terms and "stage_bce_bg" not in terms and len(terms) == 10
    total.backward()
