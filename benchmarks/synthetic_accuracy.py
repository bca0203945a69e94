"""Accuracy of the tiny preset on the built-in synthetic benchmark, trained on this CPU.

    python benchmarks/synthetic_accuracy.py --out runs/accuracy [--budget 600]

1. ``dmt synth`` the default ``train`` set (seed 0), a ``test`` set of 20 groups with
   another seed (1) and the ``hard`` set (seed 2);
2. trains ``--preset tiny --time-budget BUDGET`` once per variant:

   ``full``            the tiny preset: BatchNorm statistics per image, so R2R and CoT2T
                       are the only paths between the images
   ``no_modules``      ``--set use_r2r=false --set use_cot2t=false``: no path between the
                       images at all (a single-image model)
   ``group_bn``        (optional) ``--set bn_scope=group``: BatchNorm statistics over the
                       group, the official model's extra path between the images

3. predicts and evaluates each on ``test`` and ``hard``.

Prints a markdown table and writes ``OUT/accuracy.json``. Run it on an otherwise idle
machine: the training runs are time-budgeted, so a busy CPU means fewer steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

NO_MODULES = ["--set", "use_r2r=false", "--set", "use_cot2t=false"]
VARIANTS = {
    "full": [],
    "no_modules": NO_MODULES,
    "group_bn": ["--set", "bn_scope=group"],
}
DEFAULT_VARIANTS = ["full", "no_modules"]


def dmt(*args: str) -> None:
    cmd = [sys.executable, "-m", "dmt_core", *args]
    print("$ dmt " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("runs/accuracy"))
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per variant")
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out: Path = args.out
    data = {
        "train": out / "data" / "train",
        "test": out / "data" / "test",
        "hard": out / "data" / "hard",
    }
    if not data["train"].exists():
        dmt("synth", str(data["train"]), "--preset", "train", "--seed", "0")
    if not data["test"].exists():
        dmt("synth", str(data["test"]), "--preset", "test", "--groups", "20", "--seed", "1")
    if not data["hard"].exists():
        dmt("synth", str(data["hard"]), "--preset", "hard", "--seed", "2")

    results: dict[str, dict] = {}
    for name in args.variants:
        run = out / name
        t0 = time.time()
        if not (run / "final.pt").exists():
            dmt(
                "train",
                "--preset",
                "tiny",
                "--train-data",
                str(data["train"]),
                "--out",
                str(run),
                "--time-budget",
                str(args.budget),
                "--seed",
                str(args.seed),
                *VARIANTS[name],
            )
        summary = json.loads((run / "summary.json").read_text())
        results[name] = {"steps": summary["steps"], "train_s": summary["elapsed_s"]}
        for split in ("test", "hard"):
            pred = run / f"pred_{split}"
            dmt(
                "predict",
                "--checkpoint",
                str(run / "final.pt"),
                "--data",
                str(data[split]),
                "--out",
                str(pred),
                "--overwrite",
                "--no-progress",
            )
            dmt(
                "evaluate",
                "--pred",
                str(pred),
                "--data",
                str(data[split]),
                "--json",
                str(run / f"eval_{split}.json"),
                "--no-progress",
                "--summary-only",
            )
            overall = json.loads((run / f"eval_{split}.json").read_text())["overall"]
            results[name][split] = overall
        results[name]["wall_s"] = round(time.time() - t0, 1)

    (out / "accuracy.json").write_text(json.dumps(results, indent=2))
    print(
        "\n| variant | steps in budget | test Sm | test maxFm | test MAE | hard Sm | hard maxFm |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        t, h = r["test"], r["hard"]
        print(
            f"| {name} | {r['steps']} | {t['Sm']:.4f} | {t['maxFm']:.4f} | {t['MAE']:.4f} "
            f"| {h['Sm']:.4f} | {h['maxFm']:.4f} |"
        )
    for other in ("no_modules", "group_bn"):
        if {"full", other} <= results.keys():
            gap = results["full"]["test"]["Sm"] - results[other]["test"]["Sm"]
            print(f"S-measure gap full - {other} on test: {gap:+.4f}")


if __name__ == "__main__":
    main()
