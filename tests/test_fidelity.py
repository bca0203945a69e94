"""The definition of "faithful": the official model's golden outputs, within 1e-4."""

from __future__ import annotations

import pytest
import torch

from dmt_core import DMT, DMTConfig, convert_official_state_dict

ATOL = 1e-4
INPUTS = {"n3_s64": (3, 64), "n2_s128": (2, 128)}


def _compare(out: dict, gold: dict) -> dict[str, float]:
    assert set(out) == set(gold)
    diffs = {}
    for key, ref in gold.items():
        got = out[key]
        if isinstance(ref, list):
            assert len(got) == len(ref) == 5, key
            for i, (a, b) in enumerate(zip(got, ref, strict=True)):
                assert a.shape == b.shape, (key, i)
                diffs[f"{key}[{i}]"] = (a - b).abs().max().item()
        else:
            assert got.shape == ref.shape, key
            diffs[key] = (got - ref).abs().max().item()
    return diffs


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_golden_outputs_match(official_paper_model, reference, name):
    seeded, golden = reference
    n, size = INPUTS[name]
    with torch.no_grad():
        out = official_paper_model(seeded.seeded_input(n, size), aux=True).to_official_dict()
    diffs = _compare(out, golden[name])
    assert len(diffs) == 3 + 5 * 5
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < ATOL, f"{worst} differs by {diffs[worst]:.2e}"


def test_golden_outputs_match_contiguous_layout(reference):
    """The channels-first path (e.g. a user's model.to(memory_format=contiguous)) too."""
    seeded, golden = reference
    model = DMT(DMTConfig.paper(), channels_last=False).eval()
    model.load_state_dict(convert_official_state_dict(seeded.seeded_state_dict()))
    with torch.no_grad():
        out = model(seeded.seeded_input(3, 64), aux=True).to_official_dict()
    diffs = _compare(out, golden["n3_s64"])
    assert max(diffs.values()) < ATOL


def test_inference_path_matches_golden_co(official_paper_model, reference):
    """The fast path (no side outputs) gives the same co-saliency map."""
    seeded, golden = reference
    with torch.no_grad():
        out = official_paper_model(seeded.seeded_input(2, 128))
    assert out.bg is None and out.group is None and out.stages == []
    assert (out.co - golden["n2_s128"]["co_pred"]).abs().max() < ATOL


def test_a_one_percent_weight_change_is_detected(reference):
    """The tolerance separates faithful from wrong: perturb one matrix, the test would fail."""
    seeded, golden = reference
    sd = convert_official_state_dict(seeded.seeded_state_dict())
    key = "decoder.stages.2.tokens.ctp2t.cross_attn.proj2.weight"
    sd[key] = sd[key] * 1.01
    model = DMT(DMTConfig.paper()).eval()
    model.load_state_dict(sd)
    with torch.no_grad():
        out = model(seeded.seeded_input(3, 64), aux=True).to_official_dict()
    assert max(_compare(out, golden["n3_s64"]).values()) > ATOL
