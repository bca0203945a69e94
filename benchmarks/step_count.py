"""What one training step computes and keeps, counted (not timed) on the CPU.

    python benchmarks/step_count.py [--preset paper] [--group 8] [--size 256]

For one step of ``--group`` images at ``--size`` px (forward with side outputs, the
12-term loss, backward) it prints:
- the FLOPs of the forward and backward (``torch.utils.flop_counter``), and those of a
  VGG16 forward of the same batch;
- the bytes of the tensors autograd keeps for the backward, in float32 and under
  float16 / bfloat16 autocast (CPU autocast, whose casts are close to CUDA's): the
  activation memory a GPU step needs on top of the weights, gradients and Adam state;
- the parameters (all and trained).

Everything runs with direct convolutions, as on a GPU (the CPU's Winograd path, which
keeps its transformed tiles, is turned off in this process). These size a GPU run
without a GPU: whether a step fits a card's memory, and the arithmetic its time can be
estimated from. ``benchmarks/gpu_check.py`` measures both on a GPU.
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from dmt_core import DMTConfig, create_model
from dmt_core.loss import dmt_loss
from dmt_core.model import layers


def kept_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, dtype) -> int:
    """Bytes of the distinct storages autograd saves for the backward of one step."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    autocast = torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast:
            out = model(x, aux=True)
        dmt_loss(out, y)
    return sum(saved.values())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    layers.WINOGRAD_CONV = False  # direct convolutions, as on a GPU (this process only)
    torch.manual_seed(0)
    cfg = DMTConfig.preset(args.preset, input_size=args.size)
    model = create_model(cfg, pretrained=False).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.group, 3, args.size, args.size, generator=g)
    y = (torch.rand(args.group, 1, args.size, args.size, generator=g) > 0.5).float()
    params = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{args.preset} preset, group of {args.group} at {args.size} px")
    print(f"parameters: {params / 1e6:.2f} M, {trained / 1e6:.2f} M of them trained")
    dtypes = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
    for name, dtype in dtypes.items():
        gib = kept_bytes(model, x, y, dtype) / 2**30
        print(f"kept for the backward, {name}{' autocast' if dtype else ''}: {gib:.3f} GiB")
    with FlopCounterMode(display=False) as step:
        loss, _ = dmt_loss(model(x, aux=True), y)
        loss.backward()
    vgg = torchvision.models.vgg16().features[:30]
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        vgg(x)
    s, v = step.get_total_flops() / 1e12, fwd.get_total_flops() / 1e12
    print(f"step FLOPs (direct convolutions): {s:.4f} T; VGG16 forward: {v:.4f} T ({s / v:.1f}x)")


if __name__ == "__main__":
    main()
