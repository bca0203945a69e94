"""Shipping a training run as a registered model: ``dmt export-pretrained RUN --name NAME``.

Writes ``NAME.pt`` (float16 weights, loaded back as float32) and its JSON card into the
weights folder (:mod:`dmt_core.weights`). The card's metrics are measured on exactly the
rounded weights that ship, on the synthetic ``test`` and ``hard`` sets, and the small
guard set's S-measure is what ``tests/test_weights.py`` re-checks on every test run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..runtime import git_commit
from ..weights import REPO_WEIGHTS_DIR, SHIPPED_MODELS, WEIGHTS, load_model

#: the synthetic sets a card reports: name -> (preset, groups, seed)
CARD_SETS: dict[str, tuple[str, int | None, int]] = {
    "test": ("test", 20, 1),
    "hard": ("hard", None, 2),
}
#: the small set the regression test re-evaluates (first groups of the card's test set)
GUARD_SET = ("test", 6, 1)


def synthetic_sm(
    model: torch.nn.Module, preset: str, groups: int | None, seed: int, work: Path
) -> dict[str, float]:
    """Overall metrics of ``model`` on a synthetic set generated into ``work``."""
    from ..data.synthetic import write_benchmark
    from ..evaluate import evaluate
    from ..predict import predict_folder

    data = work / f"{preset}_{seed}_{groups}"
    if not data.exists():
        write_benchmark(data, preset, groups=groups, seed=seed)
    pred = work / f"pred_{data.name}"
    predict_folder(model, data, pred, device="cpu", progress=False)
    return {k: round(float(v), 5) for k, v in evaluate(pred, data, progress=False).overall.items()}


def export_pretrained(
    run_dir: str | os.PathLike, name: str, out_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Ship ``RUN_DIR/final.pt`` as ``OUT_DIR/NAME.pt`` (float16 weights) with its card.

    The card records the config, the commands that reproduce the model, the commit,
    the training time and the metrics of the *shipped* (float16-rounded) weights on the
    synthetic ``test`` (20 groups, seed 1) and ``hard`` (seed 2) sets, plus the guard
    set's S-measure that ``tests/test_pretrained.py`` re-checks.
    """
    import datetime
    import hashlib
    import platform
    import tempfile

    from ..checkpoint import half_weights, load_checkpoint, save_checkpoint

    if name not in SHIPPED_MODELS:
        raise ValueError(
            f"--name {name!r}: not a shipped model name; one of {list(SHIPPED_MODELS)}"
        )
    run = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else REPO_WEIGHTS_DIR
    ck = load_checkpoint(run / "final.pt")
    weights = half_weights(ck["model"])
    path = save_checkpoint(
        {"format": "dmt_core", "model": weights, "config": ck["config"], "origin": name},
        out / f"{name}.pt",
    )
    model = load_model(path)
    with tempfile.TemporaryDirectory(prefix="dmt-card-") as tmp:
        metrics = {
            key: synthetic_sm(model, preset, groups, seed, Path(tmp))
            for key, (preset, groups, seed) in CARD_SETS.items()
        }
        guard = synthetic_sm(model, *GUARD_SET, Path(tmp))
    options = json.loads((run / "options.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    commands = [
        f"dmt synth {d} --preset train --seed {options['seed']}" for d in options["train_data"]
    ]
    commands.append(options.get("command") or "(recorded by the Python API: see options)")
    commands.append(f"dmt export-pretrained {run} --name {name}")
    card = {
        "name": name,
        "description": WEIGHTS[name].description,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "weights_dtype": "float16 (loaded as float32)",
        "config": ck["config"],
        "reproduce": commands,
        # the commit the run recorded when it ended (older runs: the one exported from)
        "commit": summary.get("commit") or git_commit(REPO_WEIGHTS_DIR.parents[1]),
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "training": {
            "steps": summary["steps"],
            "seconds": summary["elapsed_s"],
            "images_per_s": summary["images_per_s"],
            "val": summary["val"],
            "options": options,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        },
        "metrics": {
            key: {"set": dict(zip(("preset", "groups", "seed"), spec, strict=True)), **metrics[key]}
            for key, spec in CARD_SETS.items()
        },
        "guard": {
            "set": dict(zip(("preset", "groups", "seed"), GUARD_SET, strict=True)),
            "Sm": guard["Sm"],
        },  # fmt: skip
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _cmd_export(args: Any) -> int:
    card = export_pretrained(args.run, args.name, args.out_dir)
    m = card["metrics"]
    print(
        f"wrote {card['file']} ({card['bytes'] / 1e6:.1f} MB) and its card; "
        f"S-measure test {m['test']['Sm']:.4f}, hard {m['hard']['Sm']:.4f}"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add ``export-pretrained`` to the ``dmt`` command."""
    p = subparsers.add_parser(
        "export-pretrained",
        help="ship a training run as a named pretrained model (float16 weights + JSON card)",
    )
    p.add_argument("run", type=Path, help="training run folder (holds final.pt, options.json)")
    p.add_argument("--name", required=True, choices=sorted(SHIPPED_MODELS))
    p.add_argument("--out-dir", type=Path, default=None, help="default: data/pretrained")
    p.set_defaults(func=_cmd_export)
