"""Evidence that a model finds the co-salient object through DMT's modules.

    python benchmarks/module_evidence.py [--model tiny-synthetic] [--out runs/evidence]

On the synthetic ``test`` set (20 groups, seed 1; written to ``OUT/data`` if missing)
it prints, for a shipped model name or a checkpoint path:

* the co token's CtP2T attention mass on the target per decoder stage, relative to
  uniform attention (1.0 = none, the modules issue asks >= 2 at the best stage);
* per R2R block, the share of target pixels' attention that goes to the target regions
  of the other images, relative to uniform (asks >= 2 in at least one block);
* S-measure on whole groups, on groups cut into pairs and on single images (pairs
  within 0.05 of whole groups);
* the mean probability given to an image of another group added to a group (<= 0.05).

Writes ``OUT/evidence.json``. See :mod:`dmt_core.analysis` for the definitions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dmt_core.analysis import (
    foreign_image_probability,
    format_evidence,
    module_evidence,
    sm_by_group_size,
)
from dmt_core.data.synthetic import write_benchmark
from dmt_core.weights import load_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="tiny-synthetic", help="shipped name or checkpoint path")
    ap.add_argument("--out", type=Path, default=Path("runs/evidence"))
    ap.add_argument("--groups", type=int, default=20, help="test groups (seed 1)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    data = args.out / "data" / f"test_{args.groups}"
    if not data.exists():
        write_benchmark(data, "test", groups=args.groups, seed=1)
    model = load_model(args.model)
    t0 = time.perf_counter()
    ev = module_evidence(model, data)
    ev["sm_by_group_size"] = sm_by_group_size(model, data, sizes=(None, 2, 1))
    ev["foreign_image_probability"] = foreign_image_probability(model, data)
    ev["model"] = args.model
    ev["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evidence.json").write_text(json.dumps(ev, indent=2))

    print(f"model: {args.model}  ({args.groups} test groups, seed 1)")
    print(format_evidence(ev))
    sm = ev["sm_by_group_size"]
    print(f"S-measure: whole groups {sm['None']:.3f}, pairs {sm['2']:.3f}, alone {sm['1']:.3f}")
    print(f"foreign image mean probability: {ev['foreign_image_probability']:.3f}")


if __name__ == "__main__":
    main()
