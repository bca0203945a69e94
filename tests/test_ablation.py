"""The ablation sweep (notebook 09): budgets, variants, reuse, refusal, failures, the table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dmt_core import DMT, DMTConfig, ablation

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize(
    "text, steps, seconds",
    [
        ("1200 steps", 1200, None),
        ("1 step", 1, None),
        (1200, 1200, None),
        ("600 s", None, 600.0),
        ("600s", None, 600.0),
        ("90 seconds", None, 90.0),
        ("10 min", None, 600.0),
    ],
)
def test_budget_parses_steps_and_seconds(text, steps, seconds):
    b = ablation.Budget.parse(text)
    assert (b.steps, b.seconds) == (steps, seconds)


@pytest.mark.parametrize("text", ["", "fast", "0 steps", "1.5 steps", "-3 s", "10 hours"])
def test_budget_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="budget"):
        ablation.Budget.parse(text)


def test_variants_by_name_list_or_all():
    assert ablation.check_variants("all") == list(ablation.VARIANTS)
    assert ablation.check_variants("full, no_r2r") == ["full", "no_r2r"]
    assert ablation.check_variants(["group_bn"]) == ["group_bn"]
    with pytest.raises(ValueError, match="no_rr"):
        ablation.check_variants("full,no_rr")
    with pytest.raises(ValueError, match="twice"):
        ablation.check_variants("full,full")
    with pytest.raises(ValueError, match="none given"):
        ablation.check_variants("")


def test_the_paper_variants_are_all_there_and_described():
    names = {"full", "no_r2r", "no_contrast", "no_cot2t", "no_tgfr", "no_bg_token", "group_bn"}
    assert set(ablation.VARIANTS) == names == set(ablation.DESCRIPTIONS)


@pytest.mark.parametrize("variant", [v for v in ablation.VARIANTS if v != "full"])
def test_each_variant_changes_the_model(variant):
    """Every switch builds a model and changes its output (same init seed)."""
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    outs = []
    for name in ("full", variant):
        torch.manual_seed(0)
        cfg = DMTConfig.tiny(pretrained_backbone=False, input_size=64, **ablation.VARIANTS[name])
        model = DMT(cfg).train()  # training mode: group_bn differs only there and in group BN
        with torch.no_grad():
            outs.append(model(x, aux=False).co)
    assert not torch.allclose(outs[0], outs[1], atol=1e-6)


def test_seeds():
    assert ablation.check_seeds("0,1,2") == [0, 1, 2]
    assert ablation.check_seeds(3) == [3]
    for bad in ("", "0,0", "a", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            ablation.check_seeds(bad)


def test_the_training_notebook_declares_every_injected_parameter():
    from dmt_core.nbrun import declared_parameters

    params = ablation.notebook_parameters(
        "no_bg_token", 1, ablation.Budget(steps=5), Path("/x"), Path("/d"), device="cpu"
    )
    assert set(params) <= declared_parameters(NOTEBOOKS / "06_training.ipynb")
    assert params["model_options"] == "use_bg_token=false"
    assert (params["max_steps"], params["time_budget"], params["seed"]) == (5, 0, 1)


def test_run_notebook_refuses_an_unknown_parameter(tmp_path):
    from dmt_core.nbrun import run_notebook

    with pytest.raises(ValueError, match="max_step"):
        run_notebook(NOTEBOOKS / "06_training.ipynb", tmp_path / "x.ipynb", {"max_step": 3})


class FakeRuns:
    """Stands in for papermill and the evaluation: records the calls, fails on request."""

    def __init__(self, monkeypatch, fail: set[str] = frozenset()):
        self.calls: list[dict] = []
        self.fail = set(fail)
        monkeypatch.setattr("dmt_core.nbrun.run_notebook", self.run_notebook)
        monkeypatch.setattr(ablation, "evaluate_run", self.evaluate_run)

    def run_notebook(self, path, out, params):
        self.calls.append(params)
        variant = Path(out).parent.name.split("-seed")[0]
        if variant in self.fail:
            return "failed", "RuntimeError: out of memory", 0.5
        train = Path(params["output_dir"])
        train.mkdir(parents=True)
        metrics = {"steps": params["max_steps"], "seconds": 2.0, "val_Sm": 0.5}
        (train / "metrics.json").write_text(json.dumps({**metrics, "run_dir": str(train)}))
        return "ok", None, 1.0

    def evaluate_run(self, checkpoint, sets, out, device="cpu"):
        sm = 0.9 if "full" in str(checkpoint) else 0.7
        return {s: {"Sm": sm, "maxFm": sm, "MAE": 1 - sm} for s in sets}


def _sweep(tmp_path, variants, budget="4 steps", seeds=(0,)):
    sets = {"train": tmp_path / "train", "test": tmp_path / "test", "hard": tmp_path / "hard"}
    nb = NOTEBOOKS / "06_training.ipynb"
    b = ablation.Budget.parse(budget)
    return [
        ablation.run_variant(nb, tmp_path / "out", v, s, b, sets) for s in seeds for v in variants
    ]


def test_finished_runs_are_reused_and_failed_ones_reported_then_retried(tmp_path, monkeypatch):
    fake = FakeRuns(monkeypatch, fail={"no_tgfr"})
    records = _sweep(tmp_path, ["full", "no_tgfr", "no_r2r"], seeds=(0, 1))
    assert len(fake.calls) == 6
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["seed"] for r in failed] == [0, 1] and "out of memory" in failed[0]["error"]
    assert (tmp_path / "out" / "no_tgfr-seed0" / "failed.json").is_file()
    assert not (tmp_path / "out" / "no_tgfr-seed0" / "result.json").exists()

    df = ablation.table(records)
    assert list(df.index) == ["full", "no_r2r", "no_tgfr"]  # the failed variant is a row
    assert df.loc["no_tgfr", "runs"] == "0/2" and "out of memory" in df.loc["no_tgfr", "failed"]
    assert math.isnan(df.loc["no_tgfr", "test Sm"])
    assert df.loc["no_r2r", "Δ test Sm"] == pytest.approx(-0.2)
    assert df.loc["full", "test Sm sd"] == pytest.approx(0.0)  # two seeds: a spread

    # the next sweep reuses the four finished runs and retries the two failed ones
    fake.calls.clear()
    fake.fail.clear()
    again = _sweep(tmp_path, ["full", "no_tgfr", "no_r2r"], seeds=(0, 1))
    assert [Path(c["output_dir"]).parent.name for c in fake.calls] == [
        "no_tgfr-seed0",
        "no_tgfr-seed1",
    ]
    assert [r["reused"] for r in again] == [True, False, True, True, False, True]
    assert all(r["status"] == "ok" for r in again)
    assert not (tmp_path / "out" / "no_tgfr-seed0" / "failed.json").exists()


def test_a_finished_run_of_another_spec_is_refused(tmp_path, monkeypatch):
    FakeRuns(monkeypatch)
    _sweep(tmp_path, ["full"], budget="4 steps")
    with pytest.raises(ValueError, match="another spec"):
        _sweep(tmp_path, ["full"], budget="8 steps")
    record = json.loads((tmp_path / "out" / "full-seed0" / "result.json").read_text())
    assert record["spec"]["budget"] == {"steps": 4, "seconds": None}  # left as it was
