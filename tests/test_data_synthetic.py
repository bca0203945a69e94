"""The synthetic co-saliency benchmark: files, category/companion rules, masks, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from dmt_core.cli import main
from dmt_core.data import GroupDataset, check_dataset
from dmt_core.data.synthetic import (
    PRESETS,
    Generator,
    SynthConfig,
    categories,
    load_meta,
    preset_config,
    write_benchmark,
)

N_GROUPS = 8


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("syn") / "train", "train", groups=N_GROUPS)


@pytest.fixture(scope="module")
def meta(train_set):
    return load_meta(train_set)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_files_and_binary_masks(train_set, meta):
    ds = GroupDataset(train_set)
    assert ds.layout == "image_gt" and len(ds) == N_GROUPS
    assert check_dataset(train_set).ok
    for g, gm in zip(ds, meta["groups"], strict=True):
        assert g.name == gm["name"] and 5 <= len(g) <= 12
        assert g.stems == [im["stem"] for im in gm["images"]]
        assert all(p.suffix == ".jpg" for p in g.images)
        assert all(p.suffix == ".png" for p in g.masks)
        raw = np.asarray(Image.open(g.masks[0]))
        assert raw.shape == (128, 128) and set(np.unique(raw)) <= {0, 255}
        assert Image.open(g.images[0]).size == (128, 128)


def test_at_least_20_distinct_categories():
    cats = categories()
    assert len(cats) >= 20
    assert len({(c.shape, c.texture, c.palette) for c in cats}) == len(cats)
    # two categories differ in at least two of shape / texture / palette
    for a in cats:
        for b in cats:
            if a.id < b.id:
                same = (a.shape == b.shape) + (a.texture == b.texture) + (a.palette == b.palette)
                assert same <= 1, (a.name, b.name)


def test_target_in_every_image_and_never_a_distractor(meta):
    for gm in meta["groups"]:
        for im in gm["images"]:
            roles = Counter(o["role"] for o in im["objects"])
            assert 1 <= roles["target"] <= 2
            assert 1 <= roles["distractor"] + roles["companion"] <= 3
            for o in im["objects"]:
                if o["role"] == "target":
                    assert o["category"] == gm["target"]
                else:
                    assert o["category"] != gm["target"]
                if o["role"] == "companion":
                    assert o["category"] == gm["companion"]


def test_companion_in_about_half_of_the_images(meta):
    shares = []
    for gm in meta["groups"]:
        n = len(gm["images"])
        k = sum(any(o["role"] == "companion" for o in im["objects"]) for im in gm["images"])
        assert 1 <= k <= n - 1  # co-occurs, but never in every image
        shares.append(k / n)
    assert 0.3 <= np.mean(shares) <= 0.7


def test_only_the_target_recurs_in_every_image(meta):
    for gm in meta["groups"]:
        per_image = [{o["category"] for o in im["objects"]} for im in gm["images"]]
        assert set.intersection(*per_image) == {gm["target"]}


def test_mask_is_the_visible_target_area(train_set, meta):
    occluded = 0
    for gm in meta["groups"]:
        for im in gm["images"]:
            m = (
                np.asarray(Image.open(train_set / "GroundTruth" / gm["name"] / f"{im['stem']}.png"))
                > 0
            )
            targets = [o for o in im["objects"] if o["role"] == "target"]
            assert m.sum() == sum(o["visible"] for o in targets)
            assert 0.02 <= m.mean() <= 0.6
            occluded += sum(o["visible"] < o["area"] for o in targets)
            # the mask lies inside the target boxes
            inside = np.zeros_like(m)
            for o in targets:
                x0, y0, x1, y1 = o["box"]
                inside[y0:y1, x0:x1] = True
            assert not (m & ~inside).any()
    assert occluded > 0  # occlusion happens and is reflected in the masks


def test_mask_pixels_are_the_pasted_object_pixels():
    """Rendered (before JPEG): object pixels carry the category colours, the mask only them."""
    gen = Generator(PRESETS["train"].replace(clutter=0, background_noise=0.0, color_jitter=0.0), 1)
    g = gen.group(0)
    cat = gen.categories[g.target]
    for im in g.images:
        px = im.image[im.mask].astype(int)
        cols = np.array(cat.colors)
        d = np.abs(px[:, None, :] - cols[None]).sum(-1).min(1)
        assert (d == 0).all()  # every mask pixel has a target colour


def test_distractors_as_large_as_targets():
    gen = Generator(PRESETS["test"], 0)
    areas: dict[str, list[int]] = {"target": [], "other": []}
    for i in range(12):
        for im in gen.group(i).images:
            for o in im.objects:
                areas["target" if o["role"] == "target" else "other"].append(o["area"])
    t, d = np.mean(areas["target"]), np.mean(areas["other"])
    assert abs(t - d) / t < 0.15


def test_every_category_is_both_target_and_distractor():
    gen = Generator(PRESETS["train"], 0)
    targets, others = set(), set()
    for i in range(48):
        rng = np.random.default_rng(np.random.SeedSequence([0, 0, i]))
        target, _, plans = gen._plan(rng, gen.target_of(i))
        targets.add(target)
        others |= {c for p in plans for c, role in p if role != "target"}
    assert targets == others == set(range(24))


def test_same_seed_gives_identical_bytes(tmp_path, train_set):
    again = write_benchmark(tmp_path / "again", "train", groups=N_GROUPS)
    assert _files(again) == _files(train_set)
    other = write_benchmark(tmp_path / "other", "train", groups=2, seed=1)
    assert _files(other)[next(iter(_files(other)))] != _files(train_set).get(
        next(iter(_files(other)))
    )


def test_group_i_independent_of_group_count(tmp_path, train_set):
    small = write_benchmark(tmp_path / "small", "train", groups=3)
    big = _files(train_set)
    for k, v in _files(small).items():
        if k.name != "meta.json":
            assert big[k] == v


def test_targets_are_balanced():
    gen = Generator(PRESETS["train"], 5)
    counts = Counter(gen.target_of(i) for i in range(120))
    assert set(counts.values()) == {5}  # 120 groups, 24 categories


def test_train_and_test_streams_differ():
    a = Generator(preset_config("train"), 0).group(0)
    b = Generator(preset_config("test"), 0).group(0)
    assert a.name != b.name or not np.array_equal(a.images[0].image, b.images[0].image)
    assert PRESETS["train"].stream != PRESETS["test"].stream != PRESETS["hard"].stream


def test_hard_has_more_distractors_and_smaller_targets():
    def stats(preset):
        gen = Generator(PRESETS[preset], 0)
        n_other, t_area = [], []
        for i in range(6):
            for im in gen.group(i).images:
                n_other.append(sum(o["role"] != "target" for o in im.objects))
                t_area += [o["area"] for o in im.objects if o["role"] == "target"]
        return np.mean(n_other), np.mean(t_area)

    (d_train, a_train), (d_hard, a_hard) = stats("train"), stats("hard")
    assert d_hard > d_train + 1 and a_hard < 0.7 * a_train


def test_default_sizes_and_size_option(tmp_path):
    assert (PRESETS["train"].groups, PRESETS["test"].groups, PRESETS["hard"].groups) == (
        120,
        40,
        40,
    )
    assert PRESETS["train"].size == 128
    out = write_benchmark(tmp_path / "s", "test", groups=1, size=96)
    assert Image.open(next((out / "Image").rglob("*.jpg"))).size == (96, 96)


def test_refuses_to_overwrite(tmp_path):
    write_benchmark(tmp_path / "s", "train", groups=1)
    with pytest.raises(ValueError, match="already holds a benchmark"):
        write_benchmark(tmp_path / "s", "train", groups=1)
    write_benchmark(tmp_path / "s", "train", groups=2, overwrite=True)
    assert len(load_meta(tmp_path / "s")["groups"]) == 2


def test_config_validation():
    with pytest.raises(ValueError, match="num_categories"):
        SynthConfig(num_categories=30)
    with pytest.raises(ValueError, match="object_scale"):
        SynthConfig(object_scale=(0.3, 0.1))
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("easy")


def test_cli_synth(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "s"), "--preset", "hard", "--groups", "2", "--seed", "3"])
    assert rc == 0 and "wrote 2 groups" in capsys.readouterr().out
    meta = load_meta(tmp_path / "s")
    assert meta["seed"] == 3 and meta["preset"] == "hard"
    assert main(["synth", str(tmp_path / "s"), "--groups", "1"]) == 2  # exists: clear error


def test_labels_match_objects_and_mask():
    gen = Generator(PRESETS["hard"], 2)
    for im in gen.group(0).images:
        counts = np.bincount(im.labels.ravel(), minlength=len(im.objects) + 1)
        assert [o["visible"] for o in im.objects] == counts[1:].tolist()
        tids = [k + 1 for k, o in enumerate(im.objects) if o["role"] == "target"]
        assert np.array_equal(np.isin(im.labels, tids), im.mask)


def test_readme_figure(tmp_path):
    from dmt_core.recipes.figures import main as figure_main

    assert figure_main([str(tmp_path / "f.png"), "--preset", "hard", "--index", "1"]) == 0
    assert Image.open(tmp_path / "f.png").size[0] > 500


def test_group_tensors_are_model_ready():
    from dmt_core.data.synthetic import Generator, preset_config
    from dmt_core.data.transforms import denormalize

    g = Generator(preset_config("test"), 0).group(0)
    x, m = g.tensors()
    assert x.shape == (len(g.images), 3, 128, 128) and m.shape == (len(g.images), 1, 128, 128)
    back = (denormalize(x[0]).permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(back - g.images[0].image).max() <= 1
    assert torch.equal(m[0, 0].bool(), torch.from_numpy(g.images[0].mask))
    x96, m96 = g.tensors(96)
    assert x96.shape[-1] == 96 and set(m96.unique().tolist()) <= {0.0, 1.0}


def test_render_one_image_with_chosen_objects():
    from dmt_core.data.synthetic import Generator, preset_config

    gen = Generator(preset_config("test"), 1)
    im = gen.render([(3, "target"), (7, "distractor")], seed=5)
    assert [(o["category"], o["role"]) for o in im.objects] == [(3, "target"), (7, "distractor")]
    assert np.array_equal(im.mask, im.labels == 1) and (im.labels == 2).any()
    again = gen.render([(3, "target"), (7, "distractor")], seed=5)
    assert np.array_equal(im.image, again.image)
    with pytest.raises(ValueError, match="category 99 out of range"):
        gen.render([(99, "target")])
    with pytest.raises(ValueError, match="role must be"):
        gen.render([(1, "hero")])
