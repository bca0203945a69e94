"""dmt predict: one PNG per image at its original size, chunking, layouts, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_model
from PIL import Image

from dmt_core import DMT, DMTConfig
from dmt_core import predict as P
from dmt_core.checkpoint import model_checkpoint, save_checkpoint
from dmt_core.cli import main
from dmt_core.data import InferenceGroups, resize_to_original
from dmt_core.metrics import to_uint8
from dmt_core.runtime import select_device
from dmt_core.weights import WEIGHTS, Weights, resolve

#: (width, height) cycled within every group, so a group mixes sizes
SIZES = [(40, 30), (33, 47), (64, 20), (25, 25)]


def write_groups(root: Path, groups: dict[str, int], masks: bool = True) -> Path:
    """Groups of noisy images with a bright box; CoCA layout with masks, else plain folders."""
    rng = np.random.default_rng(0)
    for name, n in groups.items():
        img_dir = root / "Image" / name if masks else root / name
        img_dir.mkdir(parents=True)
        if masks:
            (root / "GroundTruth" / name).mkdir(parents=True)
        for k in range(n):
            w, h = SIZES[k % len(SIZES)]
            img = rng.integers(0, 100, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4 : h // 2, w // 4 : w // 2] = 255
            img[mask > 0] = (240, 200, 30)
            Image.fromarray(img).save(img_dir / f"{name}_{k:02d}.jpg", quality=95)
            if masks:
                Image.fromarray(mask).save(root / "GroundTruth" / name / f"{name}_{k:02d}.png")
    return root


def expected_files(root: Path, groups: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {
        f"{g}/{g}_{k:02d}.png": SIZES[k % len(SIZES)] for g, n in groups.items() for k in range(n)
    }


def written_files(out: Path) -> dict[str, tuple[int, int]]:
    """The prediction PNGs under ``out`` and their sizes (beside the folder's record)."""
    assert (out / P.RECORD_NAME).is_file()
    sizes = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != P.RECORD_NAME:
            with Image.open(p) as im:
                assert im.mode == "L", p
                sizes[p.relative_to(out).as_posix()] = im.size
    return sizes


GROUPS = {"one": 1, "three": 3, "thirty": 30}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_groups(tmp_path_factory.mktemp("data") / "Set", GROUPS)


def test_one_png_per_image_at_original_size(dataset, tmp_path, monkeypatch):
    calls: list[Path] = []
    real = P.write_png
    monkeypatch.setattr(P, "write_png", lambda a, path, **kw: (calls.append(path), real(a, path)))
    out = tmp_path / "pred"
    model = tiny_model()
    summary = P.predict_folder(model, dataset, out, input_size=32, device="cpu", progress=False)
    assert written_files(out) == expected_files(dataset, GROUPS)
    assert len(calls) == len(set(calls)) == 34  # each image written exactly once
    assert (summary.images, summary.groups, summary.chunks) == (34, 3, 1 + 1 + 2)
    assert summary.forwarded == 1 + 3 + 25 + 25  # the back-filled chunk repeats 20 images
    assert summary.images_per_s > 0 and summary.seconds >= summary.model_seconds > 0
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))
    assert "34 predictions" in str(summary)
    # the model comes back as it was
    assert model.training and model.config.bn_inference == DMTConfig.tiny().bn_inference


def test_backfilled_chunk_prediction_wins(dataset, tmp_path, monkeypatch):
    """Images in both chunks of the 30-image group carry the later (back-filled) prediction."""
    written: dict[str, torch.Tensor] = {}
    real = P._write_chunk

    def spy(probs, sizes, stems, gdir):
        written.update({s: p.clone() for s, p in zip(stems, probs, strict=True)})
        real(probs, sizes, stems, gdir)

    monkeypatch.setattr(P, "_write_chunk", spy)
    # group BatchNorm statistics: the chunk visibly changes an untrained model's output
    model = tiny_model(seed=1, bn_scope="group").eval()
    out = tmp_path / "pred"
    kw = dict(input_size=32, groups=["thirty"], bn="group", progress=False)
    P.predict_folder(model, dataset, out, **kw)
    chunks = InferenceGroups(dataset, input_size=32, groups=["thirty"])
    first, last = chunks[0], chunks[1]
    assert last["indices"] == list(range(5, 30))
    model.set_inference_bn("group")  # chunk statistics: the chunk matters
    with torch.inference_mode():
        p_first = model.predict(first["images"])
        p_last = model.predict(last["images"])
    k = 10  # in both chunks; the two predictions differ (the group context differs)
    stem = first["stems"][k]
    assert sorted(written) == sorted(first["stems"] + last["stems"][-5:])
    torch.testing.assert_close(written[stem], p_last[k - 5], rtol=0, atol=1e-5)
    assert (p_first[k] - p_last[k - 5]).abs().max() > 1e-3
    saved = np.asarray(Image.open(out / "thirty" / f"{stem}.png"))
    expect = to_uint8(resize_to_original(p_last[k - 5 : k - 4], [last["sizes"][k - 5]])[0])
    assert np.abs(saved.astype(int) - expect).max() <= 1


def test_plain_folder_without_masks_through_the_cli(tmp_path, capsys):
    groups = {"mine": 3, "yours": 2}
    data = write_groups(tmp_path / "photos", groups, masks=False)
    model = tiny_model()
    ckpt = save_checkpoint(model_checkpoint(model, model.config), tmp_path / "final.pt")
    out = tmp_path / "pred"
    args = ["predict", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]
    rc = main(args + ["--input-size", "32", "--bn", "group", "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert written_files(out) == expected_files(data, groups)
    assert "5 predictions (2 groups)" in capsys.readouterr().out


def test_converted_official_checkpoint_predicts(tmp_path):
    """A paper-preset checkpoint as ``dmt convert-official`` writes it loads and predicts."""
    torch.manual_seed(0)
    cfg = DMTConfig.paper()
    ckpt = tmp_path / "dmt_official.pt"
    save_checkpoint(
        {
            "format": "dmt_core",
            "model": DMT(cfg).state_dict(),
            "config": cfg.to_dict(),
            "origin": "official:DMT_model.pth",
        },
        ckpt,
    )
    data = write_groups(tmp_path / "Set", {"pair": 2})
    out = tmp_path / "pred"
    rc = main(
        ["predict", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]
        + ["--input-size", "32", "--no-progress"]
    )
    assert rc == 0
    assert written_files(out) == expected_files(data, {"pair": 2})


def test_amp_on_cpu_uses_bfloat16(dataset, tmp_path):
    out = tmp_path / "pred"
    s = P.predict_folder(
        tiny_model(), dataset, out, input_size=32, amp="bf16", groups=["three"], progress=False
    )
    assert s.dtype == "bfloat16" and s.images == 3
    assert written_files(out) == expected_files(dataset, {"three": 3})


def test_errors_name_the_argument(dataset, tmp_path, monkeypatch, capsys):
    model = tiny_model()
    with pytest.raises(ValueError, match="--input-size"):
        P.predict_folder(model, dataset, tmp_path / "p", input_size=40, progress=False)
    with pytest.raises(ValueError, match="--bn"):
        P.predict_folder(model, dataset, tmp_path / "p", bn="batch", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda"):
            select_device("cuda")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        resolve(tmp_path / "nope.pt")
    args = ["predict", "--checkpoint", "tiny-nothing", "--data", str(dataset), "--out", "x"]
    assert main(args) == 2
    assert "tiny-nothing" in capsys.readouterr().err
    # a shipped model is a name in the registry, its file in the weights folder
    ckpt = save_checkpoint(model_checkpoint(model, model.config), tmp_path / "tiny-test.pt")
    monkeypatch.setitem(WEIGHTS, "tiny-test", Weights("tiny-test", "model", "shipped", "a test"))
    monkeypatch.setenv("DMT_PRETRAINED_DIR", str(tmp_path))
    assert resolve("tiny-test") == ckpt


def test_written_files_have_the_usual_permissions(tmp_path):
    """Atomic writes go through a temporary file, but the result is not 0600."""
    import os

    from dmt_core.files import atomic_write

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
        P.write_png(np.zeros((4, 4), np.uint8), tmp_path / "p.png")
        save_checkpoint({"x": torch.zeros(1)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    for name in ("a.txt", "p.png", "c.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "c.pt", "p.png"]
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "b.bin") as f:
        f.write(b"partial")
        raise RuntimeError("interrupted")
    assert not (tmp_path / "b.bin").exists() and len(list(tmp_path.iterdir())) == 3


def test_amp_fits_the_gpu_it_runs_on(monkeypatch):
    """bf16 only where it is native (compute capability >= 8); fp16 on a T4 or V100, even
    though torch.cuda.is_bf16_supported() says True there through emulation."""
    from dmt_core.runtime import autocast_dtype

    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for capability, want in (((7, 5), torch.float16), ((7, 0), torch.float16),
                             ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):  # fmt: skip
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert autocast_dtype("auto", gpu) == want, capability
        assert autocast_dtype("bf16", gpu) == torch.bfloat16
        assert autocast_dtype("fp16", gpu) == torch.float16
        assert autocast_dtype("off", gpu) is None
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="--amp must be one of"):
        autocast_dtype("fp8", cpu)


def test_predict_and_train_take_the_same_amp_choices():
    from dmt_core.cli import build_parser
    from dmt_core.runtime import AMP_MODES

    parser = build_parser()
    for cmd in (["predict", "--checkpoint", "x", "--data", "d", "--out", "o"],
                ["train", "--train-data", "d", "--out", "o"]):  # fmt: skip
        for mode in AMP_MODES:
            assert parser.parse_args([*cmd, "--amp", mode]).amp == mode
        with pytest.raises(SystemExit):
            parser.parse_args([*cmd, "--amp", "fp8"])


# ------------------------------------------------------------ bring your own group
def test_predict_images_matches_predict_folder_at_the_original_sizes(tmp_path):
    """predict_images (00's "your own group") gives what predict_folder writes, from files,
    PIL images or arrays, and chunks a large group as the official test script does."""
    root = write_groups(tmp_path / "data", {"g": 5}, masks=False)
    files = P.image_files(root / "g")
    model = tiny_model()
    maps = P.predict_images(model, files, max_num=3)
    assert [m.shape for m in maps] == [(h, w) for w, h in (SIZES * 2)[:5]]
    P.predict_folder(model, root, tmp_path / "pred", max_num=3, progress=False)
    for f, m in zip(files, maps, strict=True):
        written = np.asarray(Image.open(tmp_path / "pred" / "g" / f"{f.stem}.png"))
        assert np.abs(to_uint8(m).astype(int) - written).max() <= 1
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    again = P.predict_images(model, arrays, max_num=3)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(maps, again, strict=True))


def test_predict_images_and_image_files_name_what_is_wrong(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="empty"):
        P.predict_images(model, [])
    with pytest.raises(ValueError, match="uint8"):
        P.predict_images(model, [np.zeros((8, 8), np.float32)])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        P.image_files(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no image file.*notes.txt"):
        P.image_files(tmp_path)
