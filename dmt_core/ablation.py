"""The paper's ablation as a sweep: the training notebook run once per variant and seed.

Each run is ``notebooks/06_training.ipynb`` executed by papermill with the variant's
DMTConfig switches injected (``model_options``), a step or time budget and a seed; the
trained model is then predicted and evaluated on the synthetic ``test`` and ``hard``
sets. Layout of ``output_dir``::

    data/{train,test,hard}/             the synthetic sets (written once)
    <variant>-seed<k>/06_training.ipynb the executed training notebook
    <variant>-seed<k>/train/            its output_dir (run1/final.pt, metrics.json)
    <variant>-seed<k>/result.json       the finished run: spec, training and test metrics
    <variant>-seed<k>/failed.json       the last failure (retried by the next sweep)

A folder with a ``result.json`` of the same spec is reused, so an interrupted sweep
continues where it stopped (an interrupted training resumes from its ``last.pt``); a
``result.json`` of another spec (budget, switches) is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .model.config import DMTConfig

#: variant name -> DMTConfig switches, on top of the tiny preset
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_r2r": {"use_r2r": False},
    "no_contrast": {"use_contrast": False},  # plain attention instead of the contrast gate
    "no_cot2t": {"use_cot2t": False},
    "no_tgfr": {"use_tgfr": False},
    "no_bg_token": {"use_bg_token": False},
    "group_bn": {"bn_scope": "group"},  # the official model's group statistics
}

#: what each variant takes away, for tables and prose
DESCRIPTIONS: dict[str, str] = {
    "full": "the tiny preset, every module on",
    "no_r2r": "no region-to-region correlation (R2R)",
    "no_contrast": "pixel-to-token attention without the contrast gate (CtP2T -> P2T)",
    "no_cot2t": "no token-to-token exchange between the images (CoT2T)",
    "no_tgfr": "no token-guided feature refinement (TGFR)",
    "no_bg_token": "no background token",
    "group_bn": "BatchNorm statistics over the whole group (the official model's)",
}


@dataclass(frozen=True)
class Budget:
    """A training budget per run: ``steps`` or ``seconds`` (exactly one)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int | float) -> Budget:
        """``"1200 steps"``, ``"600 s"``, ``"600s"``, ``"10 min"``; a bare number is steps."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = f"{text} steps"
        m = re.fullmatch(
            r"\s*(\d+(?:\.\d+)?)\s*(steps?|s|sec|seconds?|min|minutes?)?\s*", str(text)
        )
        if not m or float(m.group(1)) <= 0:
            raise ValueError(
                f"budget: expected e.g. '1200 steps', '600 s' or '10 min', got {text!r}"
            )
        value, unit = float(m.group(1)), (m.group(2) or "steps")
        if unit.startswith("step"):
            if value != int(value):
                raise ValueError(f"budget: a step count must be whole, got {text!r}")
            return cls(steps=int(value))
        return cls(seconds=value * (60 if unit.startswith("min") else 1))

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps else f"{self.seconds:g} s"


def check_variants(names: list[str] | tuple[str, ...] | str) -> list[str]:
    """Variant names (a list, a comma-separated string or "all"), each known, none twice."""
    if names == "all":
        return list(VARIANTS)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise ValueError(
            f"variants: unknown {unknown or 'none given'}; expected some of {list(VARIANTS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"variants: {names} names a variant twice")
    for n in names:  # every switch is a valid tiny config
        DMTConfig.tiny(**VARIANTS[n])
    return names


def check_seeds(seeds: list[int] | tuple[int, ...] | str | int) -> list[int]:
    if isinstance(seeds, int):
        seeds = [seeds]
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"seeds: expected whole numbers like '0,1,2', got {seeds!r}") from None
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(int(s) != s or s < 0 for s in seeds):
        raise ValueError(f"seeds: expected distinct non-negative integers, got {seeds}")
    return [int(s) for s in seeds]


def notebook_parameters(
    variant: str, seed: int, budget: Budget, run_dir: Path, train_data: Path, **extra: Any
) -> dict[str, Any]:
    """What the training notebook gets for one run."""
    options = ",".join(f"{k}={json.dumps(v)}" for k, v in VARIANTS[variant].items())
    return {
        "output_dir": str(run_dir / "train"),
        "preset": "tiny",
        "train_data": str(train_data),
        "max_steps": budget.steps or 0,
        "time_budget": budget.seconds or 0,
        "seed": seed,
        "model_options": options,
        "device": extra.pop("device", "cpu"),
        **extra,
    }


def _spec(variant: str, seed: int, budget: Budget) -> dict[str, Any]:
    return {
        "variant": variant,
        "switches": VARIANTS[variant],
        "seed": seed,
        "budget": asdict(budget),
    }


def evaluate_run(checkpoint: Path, sets: dict[str, Path], out: Path, device: str = "cpu") -> dict:
    """Predict and evaluate ``checkpoint`` on each labelled set; {set: overall metrics}."""
    from .evaluate import evaluate
    from .predict import predict_folder
    from .weights import load_model

    model = load_model(checkpoint, device=device)
    scores = {}
    for name, data in sets.items():
        pred = out / f"pred_{name}"
        predict_folder(
            model, data, pred, device=device, progress=False, overwrite=True, checkpoint=checkpoint
        )
        scores[name] = evaluate(pred, data, progress=False).overall
    return scores


def run_variant(
    notebook: Path,
    output_dir: Path,
    variant: str,
    seed: int,
    budget: Budget,
    sets: dict[str, Path],
    **notebook_extra: Any,
) -> dict[str, Any]:
    """Train (or reuse) one variant with one seed and evaluate it; returns its record
    (``status`` "ok" or "failed" with ``error``)."""
    from .nbrun import run_notebook

    run_dir = output_dir / f"{variant}-seed{seed}"
    spec = _spec(variant, seed, budget)
    done = run_dir / "result.json"
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("spec") != spec:
            raise ValueError(
                f"{done}: a finished run of another spec ({record.get('spec')}), not {spec}; "
                "choose another output_dir (or delete the folder to rerun it)"
            )
        return {**record, "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    params = notebook_parameters(variant, seed, budget, run_dir, sets["train"], **notebook_extra)
    record: dict[str, Any] = {"spec": spec, "variant": variant, "seed": seed, "reused": False}
    try:
        status, error, seconds = run_notebook(notebook, run_dir / notebook.name, params)
        record["notebook_s"] = round(seconds, 1)
        if status != "ok":
            raise RuntimeError(f"{run_dir / notebook.name}: {error}")
        train = json.loads((run_dir / "train" / "metrics.json").read_text())
        labelled = {k: v for k, v in sets.items() if k != "train"}
        record.update(
            status="ok",
            steps=train["steps"],
            seconds=train["seconds"],
            val_Sm=train["val_Sm"],
            scores=evaluate_run(
                Path(train["run_dir"]) / "final.pt", labelled, run_dir, device=params["device"]
            ),
        )
    except Exception as e:  # reported in the table, retried by the next sweep
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
        (run_dir / "failed.json").write_text(
            json.dumps({**record, "traceback": traceback.format_exc()}, indent=2)
        )
        return record
    tmp = done.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, done)
    (run_dir / "failed.json").unlink(missing_ok=True)
    return record


def table(records: list[dict[str, Any]], sets: tuple[str, ...] = ("test", "hard")) -> Any:
    """One row per variant (mean over its seeds; ``*_sd`` the spread where there are two
    or more), the differences to ``full`` and the failures; a pandas DataFrame."""
    import pandas as pd

    rows = []
    order = [v for v in VARIANTS if any(r["variant"] == v for r in records)]
    for v in order:
        runs = [r for r in records if r["variant"] == v]
        ok = [r for r in runs if r["status"] == "ok"]
        row: dict[str, Any] = {"variant": v, "runs": f"{len(ok)}/{len(runs)}"}
        for s in sets:
            for key, col in (("Sm", f"{s} Sm"), ("maxFm", f"{s} maxF"), ("MAE", f"{s} MAE")):
                vals = pd.Series(
                    [r["scores"][s][key] for r in ok if s in r.get("scores", {})], dtype=float
                )
                row[col] = vals.mean() if len(vals) else float("nan")
                if key == "Sm":
                    row[f"{col} sd"] = vals.std() if len(vals) > 1 else float("nan")
        row["steps"] = pd.Series([r["steps"] for r in ok], dtype=float).mean()
        row["seconds"] = pd.Series([r["seconds"] for r in ok], dtype=float).mean()
        failed = [r for r in runs if r["status"] != "ok"]
        row["failed"] = "; ".join(f"seed {r['seed']}: {r['error']}" for r in failed)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("variant")
    if "full" in df.index:
        for s in sets:
            df[f"Δ {s} Sm"] = df[f"{s} Sm"] - df.loc["full", f"{s} Sm"]
    return df
