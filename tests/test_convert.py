"""Official checkpoints: conversion, wrappers, mismatches, the CLI, safe loading."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from dmt_core import DMT, DMTConfig, convert_official_state_dict
from dmt_core.checkpoint import load_checkpoint
from dmt_core.cli import main
from dmt_core.convert import expected_layout, official_to_dmt_key


@pytest.fixture(scope="module")
def official_sd(reference):
    seeded, _ = reference
    return seeded.seeded_state_dict()


def test_every_official_key_maps_to_a_distinct_model_key(reference, official_sd):
    from helpers import REFERENCE_DIR

    shapes = json.loads((REFERENCE_DIR / "official_state_dict_shapes.json").read_text())
    assert len(shapes) == 737
    mapped = {official_to_dmt_key(k) for k in shapes}
    assert len(mapped) == 737
    layout = expected_layout()
    assert mapped == set(layout)
    for k, shape in shapes.items():
        assert tuple(layout[official_to_dmt_key(k)]) == tuple(shape), k


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict", "model"])
def test_wrappers_and_prefixes_are_accepted(official_sd, wrap):
    sd = official_sd
    if wrap == "module":
        sd = {f"module.{k}": v for k, v in sd.items()}
    elif wrap in ("state_dict", "model"):
        sd = {wrap: sd, "epoch": 3}
    converted = convert_official_state_dict(sd)
    model = DMT(DMTConfig.paper())
    model.load_state_dict(converted, strict=True)
    assert torch.equal(model.encoder.conv1_1.weight, official_sd["encoder.conv1.conv1_1.weight"])
    gate = model.decoder.stages[5].tokens.ctp2t.cross_attn.gate_weight
    assert torch.equal(
        gate, official_sd["cosod_former.parse_1.trans_feat2gr.cross_attn.mlp.weight"]
    )


def test_wrong_shapes_are_listed_with_both_shapes(official_sd):
    sd = dict(official_sd)
    sd["cosod_former.decoder_3.output_conv.weight"] = torch.zeros(128, 256, 3, 3)
    with pytest.raises(ValueError) as e:
        convert_official_state_dict(sd, source="bad.pth")
    msg = str(e.value)
    assert "bad.pth" in msg and "wrong shape" in msg
    assert "cosod_former.decoder_3.output_conv.weight" in msg
    assert "(128, 256, 3, 3)" in msg and "(256, 256, 3, 3)" in msg


def test_missing_and_unknown_keys_are_listed(official_sd):
    sd = {k: v for k, v in official_sd.items() if "parse_2" not in k}
    with pytest.raises(ValueError, match=r"lacks \(53\)") as e:
        convert_official_state_dict(sd)
    assert "decoder.stages.4.tokens" in str(e.value) and "... and 43 more" in str(e.value)
    sd = dict(official_sd)
    sd["cosod_former.noco_pos.weight"] = torch.zeros(1, 256)
    with pytest.raises(ValueError, match=r"cosod_former.noco_pos.weight \(1, 256\)"):
        convert_official_state_dict(sd)


def test_a_non_state_dict_is_refused():
    with pytest.raises(ValueError, match="expected a \\(non-empty\\) state dict"):
        convert_official_state_dict([1, 2, 3])
    with pytest.raises(ValueError, match="not a tensor"):
        convert_official_state_dict({"encoder.conv1.conv1_1.weight": "oops"})


def test_convert_official_command(tmp_path, official_sd, capsys):
    src, dst = tmp_path / "DMT_model.pth", tmp_path / "dmt.pt"
    torch.save(official_sd, src)
    assert main(["convert-official", str(src), str(dst)]) == 0
    assert "converted 737 tensors" in capsys.readouterr().out
    ck = load_checkpoint(dst)
    model = DMT(DMTConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["model"], strict=True)
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in official_sd.items() if "proto_refine_4" not in k}, bad)
    assert main(["convert-official", str(bad), str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "bad.pth" in err and "decoder.stages.2.tgfr" in err
    assert not (tmp_path / "x.pt").exists()


class _RunsCode:
    """Unpickling this writes a marker file: a stand-in for any code a pickle can run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"import pathlib; pathlib.Path({self.marker!r}).write_text('pwned')",))


def test_a_checkpoint_whose_pickle_runs_code_is_refused(tmp_path):
    marker = tmp_path / "marker"
    payload = {"state_dict": {"x": torch.zeros(1)}, "evil": _RunsCode(marker)}
    evil = tmp_path / "evil.pth"
    blob = pickle.dumps(payload, protocol=2)
    evil.write_bytes(blob)
    pickle.loads(blob)  # the payload really runs code when unpickled naively ...
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(ValueError, match="evil.pth: refused to load"):
        load_checkpoint(evil)
    assert not marker.exists()  # ... and did not run here
    assert main(["convert-official", str(evil), str(tmp_path / "o.pt")]) == 2
    assert not marker.exists()


def test_converted_checkpoints_predict_with_group_statistics_as_the_official_test(
    reference, tmp_path, capsys
):
    """test.py never calls eval(): BN normalises with the predicted group's statistics."""
    from dmt_core.cli import main
    from dmt_core.weights import load_model

    seeded, _ = reference
    src = tmp_path / "DMT_model.pth"
    torch.save(seeded.seeded_state_dict(), src)
    assert main(["convert-official", str(src), str(tmp_path / "dmt_official.pt")]) == 0
    assert "group's own statistics" in capsys.readouterr().out
    model = load_model(tmp_path / "dmt_official.pt")
    assert model.config.bn_inference == "group"
    bns = [m for m in model.modules() if hasattr(m, "use_group_stats")]
    assert bns and all(m.use_group_stats for m in bns)
