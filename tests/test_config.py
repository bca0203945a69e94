"""Configuration presets, YAML round trip, state-dict and checkpoint round trips."""

from __future__ import annotations

import pytest
import torch
from helpers import group, tiny_model

from dmt_core import DMT, DMTConfig
from dmt_core.checkpoint import load_checkpoint, model_checkpoint, save_checkpoint


def test_presets():
    paper, tiny = DMTConfig.paper(), DMTConfig.tiny()
    assert paper.encoder_widths == (64, 128, 256, 512, 512) and paper.hidden_dim == 256
    assert paper.input_size == 256 and paper.encoder_trainable == "last"
    assert tiny.encoder_widths == (16, 32, 64, 128, 128) and tiny.hidden_dim == 32
    assert tiny.input_size == 128 and tiny.encoder_trainable == "last" and tiny.encoder_bn
    assert tiny.pretrained_backbone and tiny.bn_inference == "group" and tiny.bn_scope == "image"
    assert paper.bn_inference == "running" and not paper.encoder_bn
    assert all(getattr(paper, f"use_{k}") for k in ("r2r", "contrast", "cot2t", "tgfr", "bg_token"))
    assert DMTConfig.preset("tiny", use_r2r=False).use_r2r is False
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        DMTConfig.preset("huge")


def test_yaml_round_trip(tmp_path):
    cfg = DMTConfig.tiny(use_cot2t=False, bn_inference="group", r2r_scales=(1, 2, 4))
    path = tmp_path / "cfg.yaml"
    cfg.to_yaml(path)
    back = DMTConfig.from_yaml(path)
    assert back == cfg
    assert isinstance(back.encoder_widths, tuple)
    assert DMTConfig.from_yaml_text(cfg.to_yaml()) == cfg  # from text as well


@pytest.mark.parametrize(
    "data, message",
    [
        ({"hidden_dmi": 3}, "unknown DMTConfig field"),
        ({"hidden_dim": 60, "num_heads": 8}, "divisible by num_heads"),
        ({"input_size": 100}, "multiple of 16"),
        ({"bn_inference": "batch"}, "'running' or 'group'"),
        ({"encoder_widths": [1, 2, 3]}, "5 entries"),
        ({"drop_path": 1.5}, "drop_path"),
    ],
)
def test_bad_config_values_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        DMTConfig.from_dict(data)


def test_bad_yaml_file_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        DMTConfig.from_yaml(p)


def test_state_dict_round_trip_through_an_atomic_checkpoint(tmp_path):
    model = tiny_model(seed=1).eval()
    path = save_checkpoint(model_checkpoint(model, model.config, step=3), tmp_path / "ck" / "m.pt")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    ck = load_checkpoint(path)
    assert ck["step"] == 3 and ck["format"] == "dmt_core"
    clone = DMT(DMTConfig.from_dict(ck["config"])).eval()
    clone.load_state_dict(ck["model"], strict=True)
    x = group(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(clone(x).co, model(x).co, atol=0, rtol=0)


def test_interrupted_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint({"step": 1}, path)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
