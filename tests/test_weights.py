"""The shipped models: they load, they still score what their cards say, loading is safe."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from dmt_core import DMT, DMTConfig, create_model, load_model, weights_card
from dmt_core.checkpoint import load_checkpoint
from dmt_core.cli import main
from dmt_core.recipes.export import GUARD_SET, synthetic_sm
from dmt_core.recipes.pretrain_backbone import (
    TINY_BACKBONE,
    pretrain_tiny_backbone,
    to_torchvision_keys,
)
from dmt_core.weights import REPO_WEIGHTS_DIR, SHIPPED_MODELS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_model_loads_and_its_card_is_complete(name):
    path = REPO_WEIGHTS_DIR / f"{name}.pt"
    assert path.stat().st_size <= 10_000_000
    model = load_model(name)
    assert not model.training
    card = weights_card(name)
    assert model.config.to_dict() == card["config"]
    assert card["bytes"] == path.stat().st_size
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", card["commit"])
    assert any(c.startswith("dmt train ") for c in card["reproduce"])
    assert card["training"]["seconds"] > 0 and card["training"]["steps"] > 0
    for split in ("test", "hard"):
        assert 0 < card["metrics"][split]["Sm"] <= 1 and 0 <= card["metrics"][split]["MAE"] < 1


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_model_still_scores_its_recorded_s_measure(name, tmp_path):
    """When a model change breaks this, retrain and re-export (dmt export-pretrained)."""
    card = weights_card(name)
    assert tuple(card["guard"]["set"].values()) == GUARD_SET
    sm = synthetic_sm(load_model(name), *GUARD_SET, tmp_path)["Sm"]
    assert abs(sm - card["guard"]["Sm"]) <= 0.02, (sm, card["guard"]["Sm"])


def test_predict_accepts_a_shipped_name(tmp_path, capsys):
    from dmt_core.data.synthetic import write_benchmark

    data = write_benchmark(tmp_path / "data", "test", groups=2, seed=3)
    assert main(["predict", "--checkpoint", "tiny-synthetic", "--data", str(data),
                 "--out", str(tmp_path / "pred"), "--no-progress"]) == 0  # fmt: skip
    n = sum(1 for _ in (data / "Image").rglob("*.jpg"))
    assert len(list((tmp_path / "pred").rglob("*.png"))) == n
    assert "wrote" in capsys.readouterr().out


def test_unknown_and_missing_models_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="'huge'.*registered models: .*tiny-synthetic"):
        load_model("huge")
    monkeypatch.setenv("DMT_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="DMT_PRETRAINED_DIR"):
        load_model("tiny-synthetic")
    with pytest.raises(FileNotFoundError, match="dmt pretrain-backbone"):
        create_model(DMTConfig.tiny(), pretrained=True)


def test_tiny_preset_starts_from_the_shipped_backbone():
    shipped = load_checkpoint(REPO_WEIGHTS_DIR / f"{TINY_BACKBONE}.pt")
    model = create_model(DMTConfig.tiny(), pretrained=True)
    assert torch.equal(model.encoder.conv2_2.weight, shipped["features.10.weight"].float())
    assert torch.equal(model.encoder.bn5_3.running_var, shipped["features.41.running_var"].float())
    card = json.loads((REPO_WEIGHTS_DIR / f"{TINY_BACKBONE}.json").read_text())
    assert card["held_out_pixel_accuracy"]["objects"] > 0.5  # 24 categories: chance is 0.04
    with pytest.raises(ValueError, match="no pretrained encoder for widths"):
        create_model(DMTConfig.tiny(encoder_widths=(8, 8, 8, 8, 8)), pretrained=True)


def test_backbone_pretraining_learns_and_writes_the_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    encoder, report = pretrain_tiny_backbone(images=48, batch_size=8, progress=False)
    assert report["steps"] == 6 and report["classes"] == 25
    keys = to_torchvision_keys(encoder)
    assert set(keys) == set(load_checkpoint(REPO_WEIGHTS_DIR / f"{TINY_BACKBONE}.pt"))
    torch.save(keys, tmp_path / "b.pt")
    model = create_model(DMTConfig.tiny(), pretrained=tmp_path / "b.pt")
    assert torch.equal(model.encoder.conv1_1.weight, encoder.conv1_1.weight)


# ----------------------------------------------------------------- safe loading
class _RunsCode:
    """Unpickling this writes a marker file: a stand-in for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('ran')",))


def _evil(path: Path, marker: Path) -> Path:
    model = DMT(DMTConfig.tiny(input_size=64))
    payload = {"format": "dmt_core", "model": model.state_dict(),
               "config": model.config.to_dict(), "step": 1, "hook": _RunsCode(marker)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(payload, f, protocol=2)
    return path


def test_every_checkpoint_entry_point_refuses_code(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    evil = _evil(tmp_path / "evil.pt", marker)
    # predict, convert, resume, shipped names, the backbone file: all refuse, none runs it
    assert main(["predict", "--checkpoint", str(evil), "--data", str(tmp_path),
                 "--out", str(tmp_path / "p")]) == 2  # fmt: skip
    assert "evil.pt: refused to load" in capsys.readouterr().err
    assert main(["convert-official", str(evil), str(tmp_path / "o.pt")]) == 2
    run = tmp_path / "run"
    _evil(run / "last.pt", marker)
    assert main(["train", "--train-data", str(tmp_path), "--out", str(run), "--resume"]) == 2
    assert "last.pt: refused to load" in capsys.readouterr().err
    shipped = tmp_path / "shipped"
    _evil(shipped / "tiny-synthetic.pt", marker)
    _evil(shipped / f"{TINY_BACKBONE}.pt", marker)
    monkeypatch.setenv("DMT_PRETRAINED_DIR", str(shipped))
    with pytest.raises(ValueError, match="tiny-synthetic.pt: refused to load"):
        load_model("tiny-synthetic")
    with pytest.raises(ValueError, match=f"{TINY_BACKBONE}.pt: refused to load"):
        create_model(DMTConfig.tiny(), pretrained=True)
    assert not marker.exists()


def test_no_torch_load_without_weights_only():
    """Every torch.load in the package passes weights_only=True."""
    calls = []
    for path in (REPO / "dmt_core").rglob("*.py"):
        for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
            calls.append((path.name, m.group(1)))
    assert calls, "expected torch.load calls in dmt_core"
    unsafe = [c for c in calls if "weights_only=True" not in c[1]]
    assert not unsafe, unsafe


def test_export_writes_half_weights_and_a_card_from_a_run(tmp_path):
    from dmt_core.data.synthetic import write_benchmark
    from dmt_core.recipes.export import export_pretrained
    from dmt_core.train import TrainOptions, train

    data = write_benchmark(tmp_path / "train", "train", groups=6, seed=0, size=64)
    run = tmp_path / "run"
    train(TrainOptions(train_data=(str(data),), out=str(run), steps=2, val_groups=2,
                       overrides={"input_size": 64}, quiet=True, ckpt_every=0,
                       command="dmt train --steps 2"))  # fmt: skip
    card = export_pretrained(run, "tiny-synthetic", tmp_path / "out")
    ck = load_checkpoint(tmp_path / "out" / "tiny-synthetic.pt")
    assert {v.dtype for v in ck["model"].values() if v.is_floating_point()} == {torch.float16}
    saved = json.loads((tmp_path / "out" / "tiny-synthetic.json").read_text())
    assert saved == card and card["training"]["steps"] == 2
    assert card["reproduce"][1] == "dmt train --steps 2"
    assert card["reproduce"][0] == f"dmt synth {data} --preset train --seed 0"
    assert set(card["metrics"]) == {"test", "hard"} and 0 <= card["guard"]["Sm"] <= 1


# ----------------------------------------------------------------- the registry
def test_one_registry_names_every_weight_and_dmt_weights_lists_it(capsys):
    from dmt_core.weights import WEIGHTS, list_weights

    assert set(list_weights("encoder")) == {"vgg16-imagenet", "vgg16-bn-imagenet",
                                           "tiny-vgg16bn-synthetic"}  # fmt: skip
    assert set(SHIPPED_MODELS) == {"tiny-synthetic", "tiny-synthetic-modules",
                                   "tiny-synthetic-single-image"}  # fmt: skip
    assert WEIGHTS["dmt-official"].source == "local"
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in WEIGHTS)
    assert "tiny-synthetic " in out and "present" in out


def test_load_model_takes_a_name_a_file_a_run_folder_or_a_dict(tmp_path):
    from dmt_core.checkpoint import model_checkpoint, save_checkpoint

    model = load_model("tiny-synthetic")
    ck = model_checkpoint(model, model.config)
    save_checkpoint(ck, tmp_path / "run" / "final.pt")
    want = model.state_dict()
    for source in (tmp_path / "run" / "final.pt", tmp_path / "run", str(tmp_path / "run"), ck):
        got = load_model(source).state_dict()
        assert all(torch.equal(got[k], v) for k, v in want.items())
    with pytest.raises(FileNotFoundError, match="without final.pt"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="unknown model weights 'vgg16-imagenet'"):
        load_model("vgg16-imagenet")  # an encoder, not a model


def test_create_model_takes_a_registered_encoder_by_name():
    by_name = create_model(DMTConfig.tiny(), pretrained="tiny-vgg16bn-synthetic")
    default = create_model(DMTConfig.tiny(), pretrained=True)
    assert torch.equal(by_name.encoder.conv3_1.weight, default.encoder.conv3_1.weight)
    fresh = create_model(DMTConfig.tiny())
    assert not torch.equal(fresh.encoder.conv3_1.weight, default.encoder.conv3_1.weight)


def test_present_models_lists_what_is_on_disk(tmp_path, monkeypatch):
    from dmt_core.weights import ENV_DIR, SHIPPED_MODELS, WEIGHTS, is_present, present_models

    assert set(SHIPPED_MODELS) <= set(present_models()) and "dmt-official" not in present_models()
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert present_models() == [] and not is_present("tiny-synthetic")
    (tmp_path / WEIGHTS["dmt-official"].filename).write_bytes(b"x")
    assert present_models() == ["dmt-official"] and is_present("dmt-official")
