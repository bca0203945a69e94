"""Saliency metrics: the one wrapper of pysodmetrics that the whole project uses.

``dmt evaluate``, the validation during training, the analysis tools and the notebooks
all score through :class:`SODMetrics`, so a number means the same everywhere:

    m = SODMetrics()                    # or SODMetrics(("Sm", "MAE")) for a quick score
    for prob, mask in pairs:            # prob (h, w) in [0, 1] (or uint8), mask (h, w) bool
        m.step(prob, mask)
    m.results()                         # {"Sm": ..., "maxEm": ..., ..., "MAE": ...}
    s_measure(prob, mask)               # one image

The metrics are the community's co-saliency protocol (the official DMT test code uses
the same definitions): S-measure (alpha 0.5); E-measure, max / mean over the 256
thresholds of the mean curve and adaptive at ``min(2 * mean, 1)``; F-measure with
beta^2 = 0.3 (max / mean / adaptive); weighted F (beta 1); MAE. Every result is a mean
over the images stepped, and max / mean of the curves are taken after that averaging.
Probabilities become 8-bit by rounding (``round(p * 255)``), masks 0/255.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import py_sod_metrics as sod

#: every metric name, in table order
METRIC_KEYS = ("Sm", "maxEm", "meanEm", "adpEm", "maxFm", "meanFm", "adpFm", "wFm", "MAE")
#: the curves over the 256 thresholds (index t = binarised at pred >= t)
CURVE_KEYS = ("precision", "recall", "fmeasure", "emeasure")
#: which pysodmetrics object each metric needs
_NEEDS = {
    "Sm": "sm", "wFm": "wfm", "MAE": "mae",
    "maxEm": "em", "meanEm": "em", "adpEm": "em",
    "maxFm": "fm", "meanFm": "fm", "adpFm": "fm",
}  # fmt: skip


def to_uint8(prob: Any) -> np.ndarray:
    """A probability map (array or tensor in [0, 1]) as uint8 0..255, rounded
    (the official code truncates); uint8 input is returned as it is."""
    if hasattr(prob, "detach"):
        prob = prob.detach().float().cpu().numpy()
    a = np.asarray(prob)
    if a.dtype == np.uint8:
        return a
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def mask_uint8(mask: Any) -> np.ndarray:
    """A ground-truth mask (bool, 0/1 float, or uint8 0..255) as uint8 0/255."""
    if hasattr(mask, "detach"):
        mask = mask.detach().float().cpu().numpy()
    a = np.asarray(mask)
    fg = a >= 128 if a.dtype == np.uint8 else a > 0.5
    return fg.astype(np.uint8) * 255


class SODMetrics:
    """pysodmetrics accumulators over a stream of (prediction, mask) pairs.

    Args:
        metrics: the :data:`METRIC_KEYS` to compute (default all); only the
            pysodmetrics objects those need are run.

    ``step(pred, gt)``: pred (h, w) probabilities in [0, 1] or uint8 0..255; gt (h, w)
    bool, 0/1 or uint8 (foreground >= 128). Squeezes leading singleton axes.
    """

    def __init__(self, metrics: Sequence[str] = METRIC_KEYS) -> None:
        unknown = [k for k in metrics if k not in _NEEDS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRIC_KEYS)}")
        self.metrics = tuple(metrics)
        need = {_NEEDS[k] for k in self.metrics}
        self._objs: dict[str, Any] = {}
        if "fm" in need:
            with warnings.catch_warnings():  # Fmeasure is the classic (DMT) F; V2 a superset
                warnings.simplefilter("ignore")
                self._objs["fm"] = sod.Fmeasure()
        factories = {"em": sod.Emeasure, "sm": sod.Smeasure, "wfm": sod.WeightedFmeasure,
                     "mae": sod.MAE}  # fmt: skip
        for key, make in factories.items():
            if key in need:
                self._objs[key] = make()
        self.n = 0

    def step(self, pred: Any, gt: Any) -> None:
        p, g = np.squeeze(to_uint8(pred)), np.squeeze(mask_uint8(gt))
        if p.shape != g.shape:
            raise ValueError(f"prediction {p.shape} and mask {g.shape} differ in size")
        for m in self._objs.values():
            m.step(pred=p, gt=g)
        self.n += 1

    def raw(self) -> dict[str, Any]:
        """Per-image means: the scalars, and the (256,) curves indexed by threshold 0..255."""
        if not self.n:
            raise ValueError("no image was scored (step() was never called)")
        out: dict[str, Any] = {}
        o = self._objs
        if "sm" in o:
            out["Sm"] = float(o["sm"].get_results()["sm"])
        if "wfm" in o:
            out["wFm"] = float(o["wfm"].get_results()["wfm"])
        if "mae" in o:
            out["MAE"] = float(o["mae"].get_results()["mae"])
        # pysodmetrics orders the curves by threshold 255..0: flip to 0..255
        if "em" in o:
            em = o["em"].get_results()["em"]
            out["adpEm"] = float(em["adp"])
            out["emeasure"] = np.asarray(em["curve"], np.float64)[::-1]
        if "fm" in o:
            fm = o["fm"].get_results()
            out["adpFm"] = float(fm["fm"]["adp"])
            out["fmeasure"] = np.asarray(fm["fm"]["curve"], np.float64)[::-1]
            out["precision"] = np.asarray(fm["pr"]["p"], np.float64)[::-1]
            out["recall"] = np.asarray(fm["pr"]["r"], np.float64)[::-1]
        return out

    def results(self) -> dict[str, float]:
        """The requested metrics over the images stepped so far."""
        return {k: v for k, v in summarise(self.raw()).items() if k in self.metrics}


def summarise(raw: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of :meth:`SODMetrics.raw` (max / mean of the mean curves), in order."""
    out: dict[str, float] = {}
    for key in METRIC_KEYS:
        if key in ("maxEm", "meanEm") and "emeasure" in raw:
            out[key] = float((np.max if key == "maxEm" else np.mean)(raw["emeasure"]))
        elif key in ("maxFm", "meanFm") and "fmeasure" in raw:
            out[key] = float((np.max if key == "maxFm" else np.mean)(raw["fmeasure"]))
        elif key in raw:
            out[key] = float(raw[key])
    return out


def weighted_mean(raws: Sequence[Mapping[str, Any]], counts: Sequence[int]) -> dict[str, Any]:
    """Image-count-weighted mean of several :meth:`SODMetrics.raw` (scalars and curves):
    what one accumulator over all their images gives, up to float rounding."""
    w = np.asarray(counts, np.float64) / float(sum(counts))
    return {
        k: sum(wi * np.asarray(r[k], np.float64) for wi, r in zip(w, raws, strict=True))
        for k in raws[0]
    }


def score(preds: Sequence[Any], gts: Sequence[Any], metrics: Sequence[str] = ("Sm",)) -> dict:
    """The ``metrics`` over pairs of predictions and masks (means over the images)."""
    m = SODMetrics(metrics)
    for p, g in zip(preds, gts, strict=True):
        m.step(p, g)
    return m.results()


def s_measure(pred: Any, gt: Any) -> float:
    """The S-measure of one prediction (h, w) against its mask (h, w)."""
    return score([pred], [gt])["Sm"]
