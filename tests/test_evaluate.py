"""dmt evaluate: equal to pysodmetrics called directly; missing / mis-sized files refused."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics as sod
import pytest
from PIL import Image

from dmt_core.cli import main
from dmt_core.evaluate import METRIC_KEYS, evaluate, evaluate_folder
from dmt_core.viz import plot_curves

#: group -> (width, height) of its images, one size per image
GROUPS = {
    "apple": [(40, 30), (33, 47), (40, 30)],
    "boat": [(25, 25), (48, 36)],
    "cat": [(30, 40), (30, 40), (52, 20), (20, 20)],
}


def _mask(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    m[y : y + h // 3 + 1, x : x + w // 3 + 1] = 255
    return m


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(dataset in the CoCA layout, a prediction folder, a second prediction folder)."""
    root = tmp_path_factory.mktemp("eval")
    data, pred_a, pred_b = root / "Set", root / "predA", root / "predB"
    rng = np.random.default_rng(0)
    for g, sizes in GROUPS.items():
        for d in (data / "Image" / g, data / "GroundTruth" / g, pred_a / g, pred_b / g):
            d.mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            stem = f"{g}{k}"
            mask = _mask(w, h, rng)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                data / "Image" / g / f"{stem}.jpg"
            )
            Image.fromarray(mask).save(data / "GroundTruth" / g / f"{stem}.png")
            blur = cv2.GaussianBlur(mask.astype(np.float32), (7, 7), 3)
            noisy = np.clip(0.7 * blur + rng.normal(40, 30, (h, w)), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(pred_a / g / f"{stem}.png")
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(
                pred_b / g / f"{stem}.png"
            )
    return data, pred_a, pred_b


def direct(pred_dir: Path, data: Path, groups: list[str]) -> dict[str, float]:
    """The metrics by calling pysodmetrics directly, the way the toolboxes do."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = sod.Fmeasure()
    em, sm, wfm, mae = sod.Emeasure(), sod.Smeasure(), sod.WeightedFmeasure(), sod.MAE()
    for g in groups:
        for gt_path in sorted((data / "GroundTruth" / g).iterdir()):
            gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)
            pred = cv2.imread(str(pred_dir / g / gt_path.name), cv2.IMREAD_GRAYSCALE)
            for m in (fm, em, sm, wfm, mae):
                m.step(pred=pred, gt=gt)
    f, e = fm.get_results()["fm"], em.get_results()["em"]
    return {
        "Sm": sm.get_results()["sm"],
        "maxEm": e["curve"].max(),
        "meanEm": e["curve"].mean(),
        "adpEm": e["adp"],
        "maxFm": f["curve"].max(),
        "meanFm": f["curve"].mean(),
        "adpFm": f["adp"],
        "wFm": wfm.get_results()["wfm"],
        "MAE": mae.get_results()["mae"],
    }


def test_matches_pysodmetrics_called_directly(bench):
    data, pred, _ = bench
    result = evaluate_folder(pred, data, progress=False)
    assert list(result["overall"]) == list(METRIC_KEYS)
    expect = direct(pred, data, list(GROUPS))
    for k in METRIC_KEYS:
        assert result["overall"][k] == pytest.approx(expect[k], rel=1e-10, abs=1e-12), k
    assert result["images"] == 9 and result["num_groups"] == 3
    for g in GROUPS:
        per = result["groups"][g]
        assert per["images"] == len(GROUPS[g])
        expect = direct(pred, data, [g])
        for k in METRIC_KEYS:
            assert per[k] == pytest.approx(expect[k], rel=1e-10, abs=1e-12), (g, k)
    # a better prediction scores better than noise
    noise = evaluate_folder(bench[2], data, progress=False)["overall"]
    assert result["overall"]["Sm"] > noise["Sm"] and result["overall"]["MAE"] < noise["MAE"]


def test_curves_follow_the_thresholds(bench):
    data, pred, _ = bench
    ev = evaluate(pred, data, progress=False)
    c = ev.curves
    assert c.precision.shape == c.recall.shape == c.fmeasure.shape == (256,)
    assert c.recall[0] == pytest.approx(1.0)  # threshold 0: everything is foreground
    assert np.all(np.diff(c.recall) <= 1e-12)  # recall falls as the threshold rises
    assert ev.overall["maxFm"] == pytest.approx(c.fmeasure.max())
    fig = plot_curves([ev, evaluate_folder(bench[2], data, curves=True, progress=False)])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_predictions_are_named(bench, tmp_path):
    data, pred, _ = bench
    pred = _copy(pred, tmp_path / "pred")
    gone = [pred / "apple" / "apple1.png", pred / "cat" / "cat0.png", pred / "cat" / "cat3.png"]
    for p in gone:
        p.unlink()
    shutil.rmtree(pred / "boat")
    with pytest.raises(ValueError) as e:
        evaluate_folder(pred, data, progress=False)
    msg = str(e.value)
    assert "5 of 9 predictions missing" in msg
    assert str(gone[0]) in msg and str(pred / "boat" / "boat0.png") in msg


def test_missized_predictions_are_named(bench, tmp_path, capsys):
    data, pred, _ = bench
    pred = _copy(pred, tmp_path / "pred")
    bad = pred / "boat" / "boat1.png"
    Image.fromarray(np.zeros((36, 47), np.uint8)).save(bad)  # mask is 48x36
    with pytest.raises(ValueError, match="1 predictions differ in size") as e:
        evaluate_folder(pred, data, progress=False)
    assert f"{bad} is 47x36" in str(e.value)
    assert str(data / "GroundTruth" / "boat" / "boat1.png") in str(e.value)
    # the command line exits with 2 and names the file
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--no-progress"]) == 2
    assert str(bad) in capsys.readouterr().err


def test_cli_json_table_and_curves(bench, tmp_path, capsys):
    data, pred_a, pred_b = bench
    out_json, out_png = tmp_path / "res" / "eval.json", tmp_path / "curves.png"
    rc = main(
        ["evaluate", "--pred", str(pred_a), "--data", str(data), "--no-progress"]
        + ["--json", str(out_json), "--curves", str(out_png)]
    )
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert set(res["overall"]) == set(METRIC_KEYS)
    assert set(res["groups"]) == set(GROUPS)
    for g, per in res["groups"].items():
        assert set(per) == {*METRIC_KEYS, "images"} and per["images"] == len(GROUPS[g])
    assert res["images"] == 9
    printed = capsys.readouterr().out
    assert "maxFm" in printed and "apple" in printed and "overall" in printed
    with Image.open(out_png) as im:
        assert im.format == "PNG" and im.size[0] > 400

    # several prediction folders with labels: one plot, the runs side by side in the JSON
    rc = main(
        ["evaluate", "--pred", str(pred_a), str(pred_b), "--labels", "blur", "noise"]
        + ["--data", str(data), "--no-progress", "--summary-only"]
        + ["--json", str(out_json), "--curves", str(out_png)]
    )
    assert rc == 0
    res = json.loads(out_json.read_text())
    assert list(res["runs"]) == ["blur", "noise"]
    assert res["runs"]["blur"]["overall"]["Sm"] > res["runs"]["noise"]["overall"]["Sm"]
    assert main(["evaluate", "--pred", str(pred_a), "--data", str(data), "--labels", "x", "y"]) == 2


def test_needs_masks(tmp_path):
    (tmp_path / "photos" / "g").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photos" / "g" / "a.jpg")
    with pytest.raises(ValueError, match="masks"):
        evaluate_folder(tmp_path, tmp_path / "photos", progress=False)
