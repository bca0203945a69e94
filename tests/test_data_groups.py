"""Layouts, stem matching, and every problem `dmt data check` reports."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import dirs_for, make_dataset, make_pair
from PIL import Image

from dmt_core.cli import main
from dmt_core.data import GroupDataset, check_dataset, detect_layout, find_groups


@pytest.mark.parametrize("layout", ["image_gt", "img_gt", "gconet", "plain"])
def test_every_layout(tmp_path, layout):
    root = make_dataset(tmp_path, layout, {"cat": 3, "dog": 2})
    assert detect_layout(root) == layout
    ds = GroupDataset(root)
    assert [g.name for g in ds] == ["cat", "dog"]
    assert ds.num_images == 5 and len(ds) == 2
    assert ds[0].stems == ["cat_0", "cat_1", "cat_2"]
    img, mask = ds[0].load(1)
    assert img.mode == "RGB" and img.size == (40, 30)
    if layout == "plain":
        assert mask is None and not ds.has_masks
    else:
        assert mask.dtype == bool and mask.shape == (30, 40)
        red = np.asarray(img)[..., 0] > 200
        assert (red != mask).mean() < 0.05  # the mask belongs to this image (JPEG edges aside)


def test_hidden_and_system_entries_are_ignored(tmp_path):
    root = make_dataset(tmp_path, "plain", {"a": 2})
    (root / "__MACOSX").mkdir()
    (root / ".cache").mkdir()
    (root / "a" / ".DS_Store").write_text("x")
    (root / "a" / "Thumbs.db").write_text("x")
    assert [g.name for g in GroupDataset(root)] == ["a"] and check_dataset(root).ok


def test_case_insensitive_folder_names(tmp_path):
    root = make_dataset(tmp_path, "image_gt", {"a": 2})
    (root / "Image").rename(root / "image")
    (root / "GroundTruth").rename(root / "groundtruth")
    assert detect_layout(root) == "image_gt" and len(GroupDataset(root)) == 1


def test_gconet_set_folder_and_subset(tmp_path):
    make_dataset(tmp_path, "gconet", {"a": 2}, set_name="CoCA")
    make_dataset(tmp_path, "gconet", {"b": 3, "c": 1}, set_name="CoSal2015")
    with pytest.raises(ValueError, match="choose one with subset"):
        find_groups(tmp_path)
    assert [g.name for g in find_groups(tmp_path, subset="CoSal2015")] == ["b", "c"]
    with pytest.raises(ValueError, match="no set 'X'"):
        find_groups(tmp_path, subset="X")
    # the set folder itself: masks found in the sibling gts/ tree
    ds = GroupDataset(tmp_path / "images" / "CoCA")
    assert ds.layout == "gconet" and ds[0].masks is not None


@pytest.mark.parametrize("img_ext,mask_ext", [(".jpg", ".png"), (".png", ".png"), (".jpg", ".jpg"),
                                              (".JPG", ".bmp"), (".jpeg", ".tif")])  # fmt: skip
def test_images_matched_to_masks_by_stem(tmp_path, img_ext, mask_ext):
    root = make_dataset(tmp_path, "img_gt", {"g": 3}, img_ext=img_ext, mask_ext=mask_ext)
    g = GroupDataset(root)[0]
    assert [p.stem for p in g.masks] == g.stems == ["g_0", "g_1", "g_2"]
    assert all(p.suffix == mask_ext for p in g.masks)


def test_no_groups_and_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        GroupDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no group folders found"):
        GroupDataset(tmp_path / "empty")


def test_require_masks_rejects_plain_folder(tmp_path):
    root = make_dataset(tmp_path, "plain", {"a": 2})
    with pytest.raises(ValueError, match="masks are required"):
        find_groups(root, require_masks=True)


# ---------------------------------------------------------------- problems


def _make_problem(tmp_path, kind):
    """A valid dataset with one problem of ``kind``; returns (root, offending path)."""
    root = make_dataset(tmp_path, "image_gt", {"a": 3, "b": 2})
    img_dir, mask_dir = dirs_for(tmp_path, "image_gt")
    if kind == "unreadable":
        bad = img_dir / "a" / "a_1.jpg"
        bad.write_bytes(b"garbage")
    elif kind == "truncated":
        bad = img_dir / "a" / "a_1.jpg"
        make_pair(200, 150, seed=7)[0].save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[:600])
    elif kind == "truncated_mask":
        bad = mask_dir / "b" / "b_0.png"
        big = np.random.default_rng(0).integers(0, 2, (120, 160), dtype=np.uint8) * 255
        Image.fromarray(big).save(bad)
        bad.write_bytes(bad.read_bytes()[:300])
    elif kind == "no_mask":
        (mask_dir / "a" / "a_2.png").unlink()
        bad = img_dir / "a" / "a_2.jpg"
    elif kind == "no_image":
        (img_dir / "b" / "b_1.jpg").unlink()
        bad = mask_dir / "b" / "b_1.png"
    elif kind == "size":
        bad = mask_dir / "a" / "a_0.png"
        Image.new("L", (17, 11)).save(bad)
    elif kind == "empty_group":
        bad = img_dir / "c"
        bad.mkdir()
        (mask_dir / "c").mkdir()
    elif kind == "no_mask_folder":
        bad = img_dir / "d"
        bad.mkdir()
        make_pair()[0].save(bad / "d_0.jpg")
    elif kind == "stray_file":
        bad = img_dir / "a" / "notes.txt"
        bad.write_text("hello")
    elif kind == "duplicate_stem":
        bad = img_dir / "a" / "a_0.png"
        make_pair()[0].save(bad)
    return root, bad


PROBLEMS = {
    "unreadable": "unreadable file",
    "truncated": "truncated file",
    "truncated_mask": "(truncated|unreadable)",
    "no_mask": "image without mask",
    "no_image": "mask without image",
    "size": "mask of size 17x11 does not match its image",
    "empty_group": "empty group",
    "no_mask_folder": "group has no mask folder",
    "stray_file": "not an image file",
    "duplicate_stem": "two files with the stem 'a_0'",
}


@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_data_check_reports_each_problem(tmp_path, capsys, kind):
    root, bad = _make_problem(tmp_path, kind)
    report = check_dataset(root)
    assert len(report.problems) == 1, report.lines()
    assert report.problems[0].path == bad
    assert __import__("re").search(PROBLEMS[kind], report.problems[0].message)
    # CLI: one line naming the file, then the summary, exit 1
    rc = main(["data", "check", str(root)])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 1
    assert len(out) == 2 and out[0].startswith(str(bad)) and "problems: 1" in out[1]


@pytest.mark.parametrize(
    "kind", ["no_mask", "no_image", "empty_group", "stray_file", "duplicate_stem"]
)
def test_loaders_raise_listing_problems(tmp_path, kind):
    root, bad = _make_problem(tmp_path, kind)
    with pytest.raises(ValueError, match=PROBLEMS[kind].replace("(", r"\(").replace(")", r"\)")):
        GroupDataset(root)


@pytest.mark.parametrize("kind", ["unreadable", "truncated", "size"])
def test_group_load_raises_decoding_problems(tmp_path, kind):
    root, bad = _make_problem(tmp_path, kind)
    g = GroupDataset(root)[0]
    i = g.images.index(bad) if bad in g.images else g.masks.index(bad)
    with pytest.raises(ValueError, match=PROBLEMS[kind]) as e:
        g.load(i)
    assert bad.name in str(e.value)


def test_data_check_clean_dataset(tmp_path, capsys):
    root = make_dataset(tmp_path, "image_gt", {"a": 3, "b": 2})
    assert main(["data", "check", str(root)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == ["groups: 2 images: 5 problems: 0"]


def test_data_check_exif_rotated_image_matches_mask(tmp_path, capsys):
    root = make_dataset(tmp_path, "image_gt", {"a": 2})
    img_dir, mask_dir = dirs_for(tmp_path, "image_gt")
    # stored 40x30 with a 90-degree EXIF tag: a mask of either orientation is valid
    img, _ = make_pair(40, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(img_dir / "a" / "a_0.jpg", exif=exif)
    Image.new("L", (30, 40)).save(mask_dir / "a" / "a_0.png")
    assert check_dataset(root).ok
    g = GroupDataset(root)[0]
    assert g.load(0)[0].size == (30, 40)
    Image.new("L", (40, 30)).save(mask_dir / "a" / "a_0.png")
    assert check_dataset(root).ok and g.load(0)[0].size == (40, 30)


def test_data_check_counts_and_plain_folder(tmp_path, capsys):
    root = make_dataset(tmp_path, "plain", {"x": 2, "y": 4})
    assert main(["data", "check", str(root)]) == 0
    assert "groups: 2 images: 6 problems: 0" in capsys.readouterr().out
