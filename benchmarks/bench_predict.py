"""End-to-end speed of ``dmt predict`` against the model alone, on the synthetic test set.

    python benchmarks/bench_predict.py                 # 40 groups, tiny preset, 128 px, 1 thread
    python benchmarks/bench_predict.py --groups 10 --threads 2 --amp

The model is the tiny preset with RANDOM weights (seeded): speed does not depend on the
weights, so no trained checkpoint is needed. The data is ``dmt synth --preset test``
(128 px JPEGs + masks) written to a temporary folder.

Prints, from the same run and the same chunks:
- end to end: :func:`dmt_core.predict.predict_folder` (JPEG decoding, resizing to the
  input size, the model, resizing back, PNG encoding and atomic writes) in images/s;
- model only: the forward passes (``model(images, aux=False)`` + sigmoid) on the
  already decoded chunks, in images/s (images through the model);
- the share of the end-to-end time spent outside the model.
Both are the best of ``--reps`` interleaved runs after a warm-up run. Decoding runs in
the main process (``--workers 0``) and PNG writing in a background thread, so on a
machine with a spare core the end-to-end rate can approach the model-only rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dmt_core import DMT, DMTConfig
from dmt_core.data import InferenceGroups, write_benchmark
from dmt_core.predict import predict_folder
from dmt_core.runtime import amp_dtype


def model_only(model: torch.nn.Module, chunks: list[torch.Tensor], amp: bool) -> float:
    """Seconds for the forward passes of all chunks (inference mode)."""
    ctx = torch.autocast("cpu", dtype=amp_dtype(torch.device("cpu")), enabled=amp)
    t0 = time.perf_counter()
    with torch.inference_mode(), ctx:
        for x in chunks:
            torch.sigmoid(model(x, aux=False).co.float())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--groups", type=int, default=40, help="synthetic test groups (default 40)")
    ap.add_argument("--size", type=int, default=128, help="image side and input size (128)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for predict")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    ap.add_argument("--reps", type=int, default=2, help="timed repetitions (best is kept)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = DMT(DMTConfig.tiny(input_size=args.size)).eval()

    with tempfile.TemporaryDirectory() as tmp:
        data = write_benchmark(Path(tmp) / "synth", "test", groups=args.groups, size=args.size)
        ds = InferenceGroups(data, input_size=args.size)
        chunks = [ds[i]["images"] for i in range(len(ds))]
        n_img = sum(x.shape[0] for x in chunks)

        def end_to_end():
            return predict_folder(
                model, data, Path(tmp) / "pred", input_size=args.size, device="cpu",
                amp="bf16" if args.amp else "off", workers=args.workers, progress=False,
            )  # fmt: skip

        end_to_end()  # warm-up (oneDNN primitives, file cache)
        runs, t_models = [], []
        for _ in range(args.reps):  # interleaved, so both see the same machine load
            runs.append(end_to_end())
            t_models.append(model_only(model, chunks, args.amp))
        e2e = min(runs, key=lambda s: s.seconds)
        t_model = min(t_models)
        n_png = len(list((Path(tmp) / "pred").rglob("*.png")))

    mo = n_img / t_model
    print(
        f"dmt predict benchmark: tiny preset (random weights), {args.size} px, "
        f"{args.threads} thread(s), {'bf16 autocast' if args.amp else 'fp32'}, "
        f"synthetic test set: {e2e.groups} groups, {e2e.images} images ({e2e.chunks} chunks), "
        f"best of {args.reps}"
    )
    print(f"  end to end (decode, model, resize, PNG write): {e2e.images_per_s:7.1f} images/s")
    print(f"  model only (same chunks, pre-decoded):         {mo:7.1f} images/s")
    print(
        f"  end-to-end / model-only: {e2e.images_per_s / mo:.2f}; inside the predict run the "
        f"forward passes took {e2e.model_seconds:.2f} s of {e2e.seconds:.2f} s "
        f"({100 * e2e.model_seconds / e2e.seconds:.0f}%); {n_png} PNGs written"
    )


if __name__ == "__main__":
    main()
