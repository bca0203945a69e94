"""Decoding: every odd image format loads as RGB, every mask as bool, errors name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dmt_core.data.io import load_image, load_mask


def _rgb(seed: int = 0, w: int = 20, h: int = 14) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_roundtrip_png(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), a)


def test_grayscale_loads_as_rgb(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    a = np.asarray(load_image(tmp_path / "g.png"))
    assert a.shape == (14, 20, 3)
    assert np.array_equal(a[..., 0], g) and np.array_equal(a[..., 2], g)


def test_rgba_loads_as_rgb(tmp_path):
    a = _rgb()
    rgba = np.concatenate([a, np.full(a.shape[:2] + (1,), 128, np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), a)


def test_palette_loads_as_rgb(tmp_path):
    idx = np.random.default_rng(0).integers(0, 3, (14, 20), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    pal = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    p.putpalette(pal + [0] * (768 - len(pal)))
    p.save(tmp_path / "p.png")
    a = np.asarray(load_image(tmp_path / "p.png"))
    expected = np.array(pal, np.uint8).reshape(3, 3)[idx]
    assert np.array_equal(a, expected)


def test_palette_with_transparency_loads_as_rgb(tmp_path):
    idx = np.zeros((6, 6), np.uint8)
    idx[2:4] = 1
    p = Image.fromarray(idx, "P")
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "t.png", transparency=0)
    a = np.asarray(load_image(tmp_path / "t.png"))
    assert a.shape == (6, 6, 3) and tuple(a[3, 0]) == (200, 100, 50)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    v = np.zeros((8, 8), np.uint16)
    v[:, :4] = 65535
    v[:, 4:] = 32896  # = 128 * 257
    Image.fromarray(v).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    a = np.asarray(load_image(tmp_path / "d.png"))
    assert a.shape == (8, 8, 3)
    assert (a[:, :4] == 255).all() and (a[:, 4:] == 128).all()


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:] = (0, 0, 255)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    img = load_image(tmp_path / "c.jpg")
    a = np.asarray(img).astype(int)
    assert img.mode == "RGB"
    assert a[8, 2, 0] > 200 and a[8, 2, 2] < 60  # red stays red
    assert a[8, 13, 2] > 200 and a[8, 13, 0] < 60  # blue stays blue


def _exif_image(path, w=40, h=30, orientation=6):
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 4] = 255  # a white band on the left of the stored pixels
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, quality=100)
    return a


def test_exif_rotation_applied_by_default(tmp_path):
    _exif_image(tmp_path / "r.jpg")
    assert load_image(tmp_path / "r.jpg").size == (30, 40)  # 90-degree rotation swaps w/h


def test_exif_orientation_follows_the_mask_size(tmp_path):
    _exif_image(tmp_path / "r.jpg")
    # mask drawn on the rotated image (30 wide, 40 high)
    assert load_image(tmp_path / "r.jpg", expect_size=(30, 40)).size == (30, 40)
    # mask drawn on the stored pixels (40 wide, 30 high): the EXIF tag is ignored
    img = load_image(tmp_path / "r.jpg", expect_size=(40, 30))
    assert img.size == (40, 30)
    assert np.asarray(img)[:, :5].mean() > 200  # the band is still on the left
    with pytest.raises(ValueError, match=r"r\.jpg.*does not match its mask of size 20x20"):
        load_image(tmp_path / "r.jpg", expect_size=(20, 20))


def test_truncated_file_raises_naming_it(tmp_path):
    Image.fromarray(_rgb(w=64, h=64)).save(tmp_path / "t.jpg", quality=95)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.jpg: truncated"):
        load_image(tmp_path / "t.jpg")
    Image.fromarray(_rgb(w=64, h=64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.png: (truncated|unreadable)"):
        load_mask(tmp_path / "t.png")


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "x.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"x\.jpg: unreadable"):
        load_image(tmp_path / "x.jpg")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_mask(tmp_path / "nope.png")


# ---------------------------------------------------------------- masks


def _ref_mask() -> np.ndarray:
    m = np.zeros((12, 16), bool)
    m[3:9, 4:12] = True
    return m


@pytest.mark.parametrize(
    "kind", ["L255", "L01", "mode1", "RGB", "RGBA", "P_gray", "P_color", "I16", "JPEG"]
)
def test_masks_load_as_binary(tmp_path, kind):
    m = _ref_mask()
    u8 = m.astype(np.uint8) * 255
    path = tmp_path / ("m.jpg" if kind == "JPEG" else "m.png")
    if kind == "L255":
        Image.fromarray(u8, "L").save(path)
    elif kind == "L01":
        Image.fromarray(m.astype(np.uint8), "L").save(path)
    elif kind == "mode1":
        Image.fromarray(u8, "L").convert("1").save(path)
    elif kind == "RGB":
        Image.fromarray(np.repeat(u8[..., None], 3, 2)).save(path)
    elif kind == "RGBA":
        a = np.concatenate(
            [np.repeat(u8[..., None], 3, 2), np.full(m.shape + (1,), 255, np.uint8)], 2
        )
        Image.fromarray(a, "RGBA").save(path)
    elif kind == "P_gray":
        p = Image.fromarray(u8 // 255, "P")
        p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
        p.save(path)
    elif kind == "P_color":  # VOC-style: index 1 drawn in dark red
        p = Image.fromarray(m.astype(np.uint8), "P")
        p.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
        p.save(path)
    elif kind == "I16":
        Image.fromarray(m.astype(np.uint16) * 65535).save(path)
    elif kind == "JPEG":
        Image.fromarray(u8, "L").save(path, quality=90)
    out = load_mask(path)
    assert out.dtype == bool and out.shape == m.shape
    if kind == "JPEG":  # compression noise near the edges only
        assert (out != m).mean() < 0.02
    else:
        assert np.array_equal(out, m)


@pytest.mark.parametrize(
    "kind", ["red", "blue", "dark_green", "red_jpeg", "alpha", "alpha_white", "LA", "P_alpha"]
)
def test_colour_and_alpha_masks_read_as_the_community_reads_them(tmp_path, kind):
    """Any non-black pixel of a colour mask is foreground; an alpha-only mask uses alpha."""
    m = _ref_mask()
    if kind == "red_jpeg":  # JPEG smears colour edges: a larger mask, a tolerance
        m = np.kron(m, np.ones((8, 8), bool))
    path = tmp_path / ("m.jpg" if kind == "red_jpeg" else "m.png")
    colour = {"red": (255, 0, 0), "blue": (0, 0, 255), "dark_green": (0, 100, 0)}
    if kind in colour or kind == "red_jpeg":
        rgb = np.zeros(m.shape + (3,), np.uint8)
        rgb[m] = colour.get(kind, (255, 0, 0))
        Image.fromarray(rgb).save(path, quality=90)
    elif kind in ("alpha", "alpha_white"):  # the object in the alpha channel only
        rgba = np.full(m.shape + (4,), 0 if kind == "alpha" else 255, np.uint8)
        rgba[..., 3] = m * 255
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "LA":
        la = np.zeros(m.shape + (2,), np.uint8)
        la[..., 1] = m * 255
        Image.fromarray(la, "LA").save(path)
    elif kind == "P_alpha":  # a one-colour palette, the object opaque, the rest transparent
        p = Image.fromarray(m.astype(np.uint8), "P")
        p.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
        p.info["transparency"] = 0
        p.save(path, transparency=0)
    out = load_mask(path)
    assert out.dtype == bool and out.shape == m.shape
    if kind == "red_jpeg":
        assert (out != m).mean() < 0.02
    else:
        assert np.array_equal(out, m)


def test_read_mask_says_which_rule_and_warns():
    from dmt_core.data.io import MaskReading

    soft = MaskReading(np.ones((4, 4), bool), "gray >= 128", gray_fraction=0.5)
    assert soft.warnings() == [
        "mask is not binary: 50% of its pixels are gray (read as gray >= 128)"
    ]
    empty = MaskReading(np.zeros((4, 4), bool), "gray >= 128", 0.0, max_level=100)
    assert "mask is empty" in empty.warnings()[0] and "highest level 100" in empty.warnings()[0]
    assert MaskReading(np.eye(4, dtype=bool), "labels 0/1", 0.0, 1).warnings() == []


def test_data_check_warns_about_soft_and_empty_masks_naming_them(tmp_path, capsys, monkeypatch):
    import dmt_core.data.check as check
    import dmt_core.data.io as io
    from dmt_core.cli import main

    rng = np.random.default_rng(0)
    for g in ("a", "b"):
        (tmp_path / "Image" / g).mkdir(parents=True)
        (tmp_path / "GroundTruth" / g).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(_rgb(k, 16, 12)).save(tmp_path / "Image" / g / f"{k}.jpg")
            Image.fromarray(_ref_mask().astype(np.uint8) * 255).save(
                tmp_path / "GroundTruth" / g / f"{k}.png"
            )
    soft = tmp_path / "GroundTruth" / "a" / "1.png"
    Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)).save(soft)  # a saliency map
    empty = tmp_path / "GroundTruth" / "b" / "2.png"
    Image.fromarray(np.full((12, 16), 90, np.uint8)).save(empty)  # a 0/90 mask: nothing >= 128
    opened: list = []
    real_open = io._open
    monkeypatch.setattr(io, "_open", lambda p: (opened.append(p), real_open(p))[1])
    report = check.check_dataset(tmp_path)
    assert report.ok and len(opened) == 12  # every file decoded once, nothing more
    assert [w.path for w in report.warnings] == [soft, empty, empty]
    assert main(["data", "check", str(tmp_path)]) == 0  # warnings, not problems
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"warning: {soft}: mask is not binary")
    assert out[2] == (
        f"warning: {empty}: mask is empty: no foreground pixel (read as gray >= 128; "
        "highest level 90)"
    )
    assert out[-1] == "groups: 2 images: 6 problems: 0 warnings: 3"
