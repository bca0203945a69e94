"""One wrapper of pysodmetrics: the numbers are pysodmetrics', whatever form the inputs take."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as sod
import pytest
import torch

from dmt_core.metrics import METRIC_KEYS, SODMetrics, mask_uint8, s_measure, score, to_uint8


def _pairs(n: int = 4, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts = [rng.random((size, size)) > 0.6 for _ in range(n)]
    preds = [np.clip(g * 0.7 + rng.random((size, size)) * 0.4, 0, 1) for g in gts]
    return preds, gts


def test_results_equal_pysodmetrics_on_the_same_images():
    preds, gts = _pairs()
    sm, mae, wfm = sod.Smeasure(), sod.MAE(), sod.WeightedFmeasure()
    for p, g in zip(preds, gts, strict=True):
        for m in (sm, mae, wfm):
            m.step(pred=np.round(p * 255).astype(np.uint8), gt=g.astype(np.uint8) * 255)
    m = SODMetrics()
    for p, g in zip(preds, gts, strict=True):
        m.step(p, g)
    got = m.results()
    assert list(got) == list(METRIC_KEYS)
    assert got["Sm"] == pytest.approx(sm.get_results()["sm"])
    assert got["MAE"] == pytest.approx(mae.get_results()["mae"])
    assert got["wFm"] == pytest.approx(wfm.get_results()["wfm"])
    assert got["maxFm"] >= got["meanFm"] and got["maxEm"] >= got["meanEm"]


def test_inputs_in_any_form_give_the_same_score():
    preds, gts = _pairs(1)
    p, g = preds[0], gts[0]
    ref = s_measure(p, g)
    assert s_measure(to_uint8(p), g.astype(np.uint8) * 255) == ref
    assert s_measure(torch.from_numpy(p)[None], torch.from_numpy(g.astype(np.float32))[None]) == ref
    assert mask_uint8(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[0, 0, 255, 255]]
    assert score(preds, gts, ("Sm", "MAE")).keys() == {"Sm", "MAE"}


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="unknown metric"):
        SODMetrics(("Sm", "IoU"))
    m = SODMetrics(("Sm",))
    with pytest.raises(ValueError, match="step"):
        m.results()
    with pytest.raises(ValueError, match="differ in size"):
        m.step(np.zeros((4, 4)), np.zeros((4, 5), bool))
