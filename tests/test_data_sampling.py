"""Training sampling as DMT does it: one group per item, max_num, aligned crop/flip, mixing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from data_fixtures import make_dataset
from PIL import Image
from torch.utils.data import DataLoader

from dmt_core.data import SynthesisConfig, TrainGroups, denormalize, train_sizes
from dmt_core.data.sampling import augment_pair, train_transform
from dmt_core.model.config import DMTConfig


@pytest.fixture
def two_sets(tmp_path):
    a = make_dataset(tmp_path / "A", "image_gt", {"a1": 3, "a2": 2}, size=(48, 40))
    b = make_dataset(tmp_path / "B", "img_gt", {"b1": 10, "b2": 2, "b3": 4}, size=(48, 40))
    return a, b


def _red(images: torch.Tensor) -> torch.Tensor:
    x = denormalize(images)
    return (x[:, 0] > 0.7) & (x[:, 1] < 0.35)


def test_sizes_follow_the_preset(two_sets):
    assert train_sizes(256) == (288, 256)
    assert train_sizes(DMTConfig.tiny().input_size) == (144, 128)
    ds = TrainGroups.for_config(DMTConfig.tiny(), two_sets, max_num=2)
    assert ds[0]["images"].shape == (2, 3, 128, 128)


def test_item_shapes_and_max_num(two_sets):
    ds = TrainGroups(two_sets, input_size=32, max_num=4, seed=0)
    assert len(ds) == 5
    item = ds[2]  # b1, 10 images
    assert item["group"] == "b1" and item["set"] == "Set"
    assert item["images"].shape == (4, 3, 32, 32) and item["images"].dtype == torch.float32
    assert item["masks"].shape == (4, 1, 32, 32)
    assert set(item["masks"].unique().tolist()) <= {0.0, 1.0}
    assert len(set(item["stems"])) == 4  # without replacement
    assert ds[1]["images"].shape[0] == 2  # a2 has 2 < max_num images: all used
    assert item["images"].mean().abs() < 2  # normalised, not raw 0..255


def test_fresh_sample_each_draw(two_sets):
    ds = TrainGroups(two_sets, input_size=32, max_num=3, seed=0)
    seen = set()
    for _ in range(15):
        seen |= set(ds[2]["stems"])
    assert len(seen) == 10


def test_crop_and_flip_identical_for_image_and_mask(tmp_path):
    # the red object sits in the left quarter: flips move it to the right
    root = tmp_path / "S"
    for g in ("g",):
        (root / "Image" / g).mkdir(parents=True)
        (root / "GroundTruth" / g).mkdir(parents=True)
        for k in range(4):
            img = np.full((64, 64, 3), 40, np.uint8)
            mask = np.zeros((64, 64), np.uint8)
            img[10 + k : 40, 4:18] = (250, 20, 20)
            mask[10 + k : 40, 4:18] = 255
            Image.fromarray(img).save(root / "Image" / g / f"{k}.png")
            Image.fromarray(mask).save(root / "GroundTruth" / g / f"{k}.png")
    ds = TrainGroups([root], input_size=48, max_num=4, seed=1)
    sides = set()
    for _ in range(6):
        item = ds[0]
        red, m = _red(item["images"]), item["masks"][:, 0] > 0.5
        assert (red != m).float().mean() < 0.02  # same crop, same flip
        cx = m.nonzero()[:, 2].float().mean().item()
        sides.add(cx > 24)
    assert sides == {True, False}  # flips happen


def test_augment_pair_random_crop_moves():
    img = np.zeros((40, 40, 3), np.uint8)
    img[5:15, 5:15] = (250, 20, 20)
    mask = np.zeros((40, 40), bool)
    mask[5:15, 5:15] = True
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(10):
        x, m = augment_pair(img, mask, 32, rng)
        assert x.shape == (3, 32, 32) and m.shape == (1, 32, 32)
        assert (_red(x[None])[0] != (m[0] > 0.5)).float().mean() < 0.02
        offsets.add(tuple(m[0].nonzero().min(0).values.tolist()))
    assert len(offsets) > 2


def test_groups_equally_likely_across_sets(two_sets):
    ds = TrainGroups(two_sets, input_size=16, max_num=1, seed=0)
    g = torch.Generator().manual_seed(0)
    counts = Counter(ds.sample(g)["group"] for _ in range(500))
    assert set(counts) == {"a1", "a2", "b1", "b2", "b3"}
    assert max(counts.values()) < 2 * min(counts.values())  # ~100 each, whatever the group size


def test_reproducible_with_seed(two_sets):
    a = TrainGroups(two_sets, input_size=32, seed=3)[2]
    b = TrainGroups(two_sets, input_size=32, seed=3)[2]
    c = TrainGroups(two_sets, input_size=32, seed=4)[2]
    assert torch.equal(a["images"], b["images"]) and a["stems"] == b["stems"]
    assert not torch.equal(a["images"], c["images"]) or a["stems"] != c["stems"]


def test_dataloader_one_group_per_step(two_sets):
    ds = TrainGroups(two_sets, input_size=32, max_num=8, seed=0)
    loader = DataLoader(
        ds, batch_size=None, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    names = [batch["group"] for batch in loader]
    assert sorted(names) == ["a1", "a2", "b1", "b2", "b3"]


def test_synthesis_on_chosen_sets(two_sets):
    cfg = SynthesisConfig(p_forward=0.5, p_reverse=0.5, p_seamless=0.5)
    ds = TrainGroups(two_sets, input_size=32, synthesis=cfg, synthesis_sets=[1], seed=0)
    kinds_a = {k for _ in range(3) for k in ds[0]["kinds"]}
    kinds_b = Counter(k for _ in range(6) for k in ds[2]["kinds"])
    assert kinds_a == {"original"}  # set 0 is never synthesised
    assert kinds_b["forward"] > 0 and kinds_b["reverse"] > 0 and kinds_b["original"] == 0
    item = ds[2]
    assert set(item["masks"].unique().tolist()) <= {0.0, 1.0}


def test_errors(tmp_path, two_sets):
    plain = make_dataset(tmp_path / "P", "plain", {"x": 2})
    with pytest.raises(ValueError, match="masks are required"):
        TrainGroups([plain])
    with pytest.raises(ValueError, match="max_num"):
        TrainGroups(two_sets, max_num=0)
    with pytest.raises(ValueError, match="synthesis_sets index 5"):
        TrainGroups(two_sets, synthesis=SynthesisConfig(), synthesis_sets=[5])
    with pytest.raises(IndexError):
        TrainGroups(two_sets)[9]


def test_v2_pipeline_keeps_alignment():
    from torchvision import tv_tensors

    img = torch.zeros(3, 40, 40, dtype=torch.uint8)
    img[0, 5:20, 3:12] = 250
    mask = torch.zeros(1, 40, 40, dtype=torch.uint8)
    mask[0, 5:20, 3:12] = 1
    torch.manual_seed(0)
    x, m = train_transform(32)(tv_tensors.Image(img), tv_tensors.Mask(mask))
    assert x.shape == (3, 32, 32) and m.shape == (1, 32, 32) and m.dtype == torch.uint8
    red = denormalize(x)[0] > 0.7
    assert (red != m[0].bool()).float().mean() < 0.03


def test_keyed_draws_are_pure_functions_of_seed_group_and_draw(tmp_path):
    from dmt_core.data.sampling import TrainGroups
    from dmt_core.data.synthetic import write_benchmark

    root = tmp_path / "s"
    write_benchmark(root, "train", groups=3, seed=0, size=64)
    ds = TrainGroups([root], input_size=64, max_num=3, seed=5)
    a, b = ds[(1, 7)], ds[(1, 7)]
    ds[0]  # unkeyed calls in between do not disturb keyed draws
    c = TrainGroups([root], input_size=64, max_num=3, seed=5)[(1, 7)]
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["images"], c["images"])
    assert not torch.equal(a["images"], ds[(1, 8)]["images"])
