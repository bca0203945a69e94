"""Inference grouping: chunks cover every image, back-filled last chunk, original sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_fixtures import make_dataset
from PIL import Image

from dmt_core.data import InferenceGroups, chunk_indices, resize_to_original
from dmt_core.metrics import to_uint8


@pytest.mark.parametrize("n", [1, 24, 25, 26, 60])
def test_chunks_cover_everything(n):
    chunks = chunk_indices(n, 25)
    assert sorted(set(i for c in chunks for i in c)) == list(range(n))
    assert all(len(c) == min(n, 25) for c in chunks)
    assert all(c == list(range(c[0], c[0] + len(c))) for c in chunks)


def test_chunks_match_the_official_boundaries():
    assert chunk_indices(1) == [[0]]
    assert chunk_indices(24) == [list(range(24))]
    assert chunk_indices(25) == [list(range(25))]
    assert chunk_indices(26) == [list(range(25)), list(range(1, 26))]
    assert chunk_indices(60) == [list(range(25)), list(range(25, 50)), list(range(35, 60))]
    assert chunk_indices(50) == [list(range(25)), list(range(25, 50))]
    assert chunk_indices(0) == []
    with pytest.raises(ValueError, match="max_num"):
        chunk_indices(3, 0)


def test_inference_dataset_chunks_and_sizes(tmp_path):
    root = make_dataset(tmp_path, "image_gt", {"big": 27, "small": 2}, size=(40, 30))
    ds = InferenceGroups(root, input_size=32, max_num=25)
    assert len(ds) == 3
    first, last, small = ds[0], ds[1], ds[2]
    assert first["group"] == last["group"] == "big" and small["group"] == "small"
    assert first["images"].shape == (25, 3, 32, 32) and last["images"].shape == (25, 3, 32, 32)
    assert last["indices"] == list(range(2, 27)) and last["chunk"] == 1 and last["num_chunks"] == 2
    stems = sorted(f"big_{k}" for k in range(27))
    assert first["stems"] == stems[:25] and last["stems"] == stems[2:]  # sorted file order
    assert small["sizes"] == [(30, 40), (30, 40)]
    assert [p.stem for p in small["mask_paths"]] == small["stems"]
    assert torch.isfinite(first["images"]).all() and first["images"].min() < 0  # normalised
    assert len(InferenceGroups(root, input_size=32, groups=["small"])) == 1
    with pytest.raises(ValueError, match="no group"):
        InferenceGroups(root, groups=["nope"])


def test_plain_folder_with_exif_photo(tmp_path):
    (tmp_path / "mine" / "g").mkdir(parents=True)
    img = Image.new("RGB", (40, 30), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "mine" / "g" / "photo.jpg", exif=exif)
    Image.new("RGB", (20, 20)).save(tmp_path / "mine" / "g" / "b.png")
    item = InferenceGroups(tmp_path / "mine", input_size=16)[0]
    assert item["stems"] == ["b", "photo"] and item["mask_paths"] is None
    assert item["sizes"] == [(20, 20), (40, 30)]  # the photo as displayed (EXIF applied)


def test_resize_to_original():
    probs = torch.zeros(2, 1, 16, 16)
    probs[0] = 1.0
    probs[1, :, :, :8] = 1.0
    out = resize_to_original(probs, [(30, 40), (20, 10)])
    assert out[0].shape == (30, 40) and out[1].shape == (20, 10)
    assert np.allclose(out[0], 1.0) and out[1][:, 0].min() == 1.0 and out[1][:, -1].max() == 0.0
    assert out[0].dtype == np.float32
    assert to_uint8(out[0]).max() == 255
    with pytest.raises(ValueError, match="expected probs"):
        resize_to_original(probs, [(3, 3)])
