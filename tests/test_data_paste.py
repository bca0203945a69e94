"""Forward / reverse synthesis: masks stay aligned with the pasted pixels."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dmt_core.data.paste import (
    SynthesisConfig,
    cut_object,
    forward_synthesis,
    paste,
    reverse_synthesis,
    synthesize,
)

GREEN = (0, 255, 0)


def _host(h=64, w=80, seed=0):
    """Noisy image without pure green or pure blue, and a target mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[8:28, 10:34] = True
    return img, mask


def _donor(color=GREEN, h=40, w=40):
    img = np.full((h, w, 3), 90, np.uint8)
    mask = np.zeros((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    mask[(yy - 20) ** 2 + (xx - 18) ** 2 < 12**2] = True  # a disk, not a box
    img[mask] = color
    return img, mask


def test_cut_object():
    img, m = _donor()
    p, pm = cut_object(img, m)
    assert pm.shape == p.shape[:2] == (23, 23) and pm.sum() == m.sum()
    with pytest.raises(ValueError, match="empty mask"):
        cut_object(img, np.zeros_like(m))


def test_naive_paste_changes_exactly_the_footprint():
    host, _ = _host()
    p, pm = cut_object(*_donor())
    out, fp = paste(host, p, pm, (30, 20), "naive")
    assert fp.sum() == pm.sum() and fp[20:43, 30:53].sum() == pm.sum()
    assert np.array_equal(out[~fp], host[~fp])
    assert (out[fp] == GREEN).all()


def test_seamless_paste_is_aligned():
    host = np.full((64, 80, 3), 128, np.uint8)
    patch = np.zeros((20, 24, 3), np.uint8)
    patch[:, :12] = 30
    patch[:, 12:] = 230  # an internal vertical edge at patch column 12
    pm = np.zeros((20, 24), bool)
    pm[2:18, 2:22] = True
    out, fp = paste(host, patch, pm, (30, 20), "seamless")
    assert np.array_equal(fp[20:40, 30:54], pm) and fp.sum() == pm.sum()
    assert np.array_equal(out[~fp], host[~fp])  # nothing outside the footprint changes
    # Poisson blending keeps the patch's gradients: the strongest horizontal step inside the
    # footprint sits where the patch has its edge (host column 30 + 12)
    row = out[30].astype(int).sum(1)
    step = np.abs(np.diff(row[32:52]))
    assert 32 + int(np.argmax(step)) + 1 == 42


def test_seamless_near_border_falls_back_to_naive():
    host, _ = _host()
    p, pm = cut_object(*_donor())
    out, fp = paste(host, p, pm, (0, 0), "seamless")  # touches the border
    assert np.array_equal(out[~fp], host[~fp]) and fp.sum() == pm.sum()


def test_paste_errors():
    host, _ = _host()
    p, pm = cut_object(*_donor())
    with pytest.raises(ValueError, match="does not fit"):
        paste(host, p, pm, (70, 50))
    with pytest.raises(ValueError, match="blend must be"):
        paste(host, p, pm, (1, 1), "poisson")


def test_forward_keeps_mask_except_where_hidden():
    host, mask = _host()
    rng = np.random.default_rng(0)
    cfg = SynthesisConfig(p_seamless=0.0, scale=(0.4, 0.6))
    for _ in range(10):
        out, m = forward_synthesis(host, mask, [_donor(), _donor()], rng, cfg)
        pasted = (out == GREEN).all(-1)
        assert pasted.any()
        assert np.array_equal(m, mask & ~pasted)  # mask unchanged but where occluded
        assert np.array_equal(out[~pasted], host[~pasted])


def test_forward_seamless_alignment():
    host, mask = _host()
    rng = np.random.default_rng(1)
    cfg = SynthesisConfig(p_seamless=1.0)
    out, m = forward_synthesis(host, mask, [_donor()], rng, cfg)
    changed = (out != host).any(-1)
    assert changed.any()
    assert not (m & changed).any()  # the kept mask is never on a pasted pixel
    assert np.array_equal(m | (mask & changed), mask)


@pytest.mark.parametrize("seamless", [0.0, 1.0])
def test_reverse_mask_is_the_pasted_object(seamless):
    obj_img, obj_mask = _donor(color=(0, 0, 255))
    bg, _ = _host(seed=3)
    rng = np.random.default_rng(2)
    out, m = reverse_synthesis(obj_img, obj_mask, bg, rng, SynthesisConfig(p_seamless=seamless))
    assert out.shape == bg.shape and m.shape == bg.shape[:2] and m.any()
    assert np.array_equal(out[~m], bg[~m])
    if seamless == 0.0:
        assert np.array_equal(m, (out == (0, 0, 255)).all(-1))
    else:
        assert (out[m] != bg[m]).any(-1).mean() > 0.5


def test_synthesize_probabilities():
    host, mask = _host(24, 24)
    mask[:] = False
    mask[4:12, 4:12] = True
    donor = _donor(h=24, w=24)
    rng = np.random.default_rng(0)
    cfg = SynthesisConfig(p_seamless=0.0)
    kinds = Counter(synthesize(host, mask, lambda: donor, rng, cfg)[2] for _ in range(2000))
    assert abs(kinds["forward"] / 2000 - 0.6) < 0.04
    assert abs(kinds["reverse"] / 2000 - 0.2) < 0.04
    assert abs(kinds["original"] / 2000 - 0.2) < 0.04
    cfg = SynthesisConfig(p_forward=0.0, p_reverse=1.0, p_seamless=0.0)
    img, m, kind = synthesize(host, mask, lambda: donor, rng, cfg)
    assert kind == "reverse" and m.sum() > 0


def test_synthesis_config_validation():
    assert SynthesisConfig().p_original == pytest.approx(0.2)
    with pytest.raises(ValueError, match="sum <= 1"):
        SynthesisConfig(p_forward=0.9, p_reverse=0.3)
    with pytest.raises(ValueError, match="p_seamless"):
        SynthesisConfig(p_seamless=2)
