"""Training step time and peak memory, as a ratio to a VGG16 forward of the same batch.

    python benchmarks/bench_train.py [--quick] [--levers] [--compile]

For each preset and group size: one optimisation step as ``dmt train`` takes it
(:func:`dmt_core.train.train_step`: forward with side outputs, the 12-term loss,
backward, the fused Adam of :func:`dmt_core.runtime.adam`, on a process that called
:func:`dmt_core.runtime.retain_freed_memory`) on random data, and a
``vgg16().features[:30]`` forward of the same batch, measured alternately in the same
process; each is the best of ``--reps`` after a warm-up. Each configuration runs in a
fresh process, ``--rounds`` times in turn; a row's ratio is its fastest step over the
fastest VGG16 forward of that batch in the whole run (on a shared 2-core machine the slow
outliers are other processes, not the model, and the VGG16 forward alone moves by 10-15 %
between processes: taking each row's own best ratio instead favours rows whose VGG16
happened to be slow). Memory is the RSS
sampled every 2 ms during the timed steps (peak, and the peak minus the RSS before).

``--levers`` measures what each speed lever is worth on the paper preset (group of 4 at
128 px, the issue's reference configuration; the official step is about 15x a VGG16
forward there): the same step with one lever taken away at a time, and with all of them
away (the step of the previous release). ``--compile`` adds ``torch.compile`` (several
minutes of compilation on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from bench_inference import PeakRSS, _best, bench_args

from dmt_core import DMT, DMTConfig
from dmt_core.model import heads, layers
from dmt_core.model.heads import TokenHead
from dmt_core.runtime import adam, retain_freed_memory
from dmt_core.train import train_step

#: memory formats compared in the main table (the child reads its own from the environment)
FORMATS = ("channels_last", "contiguous")

#: the levers --levers takes away one at a time: name -> what it is
LEVERS = {
    "head-layout": "token heads as a matmul on the channels-last map (the gradient stays "
    "channels-last); off: einsum, whose backward hands the map a contiguous gradient",
    "token-grad": "the token gradient of that matmul as grad^T @ map (heads._MapProduct); "
    "off: autograd's bmm backward, map^T @ grad on two transposed views",
    "fused-adam": "Adam's fused kernel; off: the per-tensor loop (PyTorch's CPU default)",
    "retain-memory": "freed activations stay mapped; off: glibc's mmap/munmap per block",
    "sdpa": "R2R attention through scaled_dot_product_attention; off: explicit softmax",
    "onednn-linear": "Linears of 128 rows or more as oneDNN 1x1 convolutions "
    "(layers.linear; by default not on AVX2-only CPUs); off: F.linear (MKL's sgemm)",
    "matmul-wgrad": "3x3 weight gradients as nine matmuls (layers.conv2d; by default on "
    "AVX2-only CPUs only); off: oneDNN's kernel",
    "winograd": "3x3 convolutions of 64 x 64 px or more as Winograd F(4x4, 3x3), forward "
    "and backward (layers.conv2d; by default on AVX2 and AVX-512 CPUs); off: as matmul-wgrad",
    "winograd-onednn": "Winograd's 36 channel products as oneDNN 1x1 convolutions and weight "
    "gradients (layers.WINOGRAD_ONEDNN; by default where the oneDNN linears are); off: "
    "torch.bmm / baddbmm_ (MKL)",
}


def _lever_default(name: str) -> bool:
    """Whether ``dmt train`` uses the lever on this CPU (two depend on its instruction set)."""
    if name == "onednn-linear":
        return layers.onednn_linear()
    if name == "matmul-wgrad":
        return layers.matmul_weight_grad()
    if name == "winograd":
        return layers.winograd_conv()
    if name == "winograd-onednn":
        return layers.winograd_conv() and layers.winograd_onednn()
    return True


def _einsum_head(self: TokenHead, tokens: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The token head as the previous release computed it (for ``head-layout`` off)."""
    h = self.norm2(self.linear2(F.relu(self.linear1(self.norm1(tokens))))) * self.scale
    return torch.einsum("ntc,nchw->nthw", h, features)


class _BmmProduct:
    """The token map product with autograd's own bmm backward (for ``token-grad`` off)."""

    @staticmethod
    def apply(flat: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.bmm(flat, h.transpose(1, 2))


def one_config(preset: str, group: int, size: int, reps: int) -> dict:
    off = set(filter(None, os.environ.get("DMT_BENCH_OFF", "").split(",")))
    if "retain-memory" not in off:
        retain_freed_memory()
    if "head-layout" in off:
        TokenHead.forward = _einsum_head
    if "token-grad" in off:
        heads._MapProduct = _BmmProduct  # type: ignore[misc]
    on = set(filter(None, os.environ.get("DMT_BENCH_ON", "").split(",")))
    if "onednn-linear" in off | on:
        layers.ONEDNN_LINEAR = "onednn-linear" in on
    if "matmul-wgrad" in off | on:
        layers.MATMUL_CONV_WEIGHT_GRAD = "matmul-wgrad" in on
    if "winograd" in off | on:
        layers.WINOGRAD_CONV = "winograd" in on
    if "winograd-onednn" in off | on:
        layers.WINOGRAD_ONEDNN = "winograd-onednn" in on
    torch.manual_seed(0)
    channels_last = os.environ.get("DMT_BENCH_FORMAT", "channels_last") == "channels_last"
    model = DMT(DMTConfig.preset(preset), channels_last=channels_last).train()
    if "sdpa" in off:  # the recording path computes the softmax explicitly
        for m in model.modules():
            if type(m).__name__ == "RegionAttention":
                m.record_attention = True
    groups = model.param_groups(1e-4)
    opt = (
        torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-8)
        if "fused-adam" in off
        else adam(groups, betas=(0.9, 0.99), eps=1e-8)
    )
    net = torch.compile(model) if os.environ.get("DMT_BENCH_COMPILE") else model
    x = torch.randn(group, 3, size, size)
    y = (torch.rand(group, 1, size, size) > 0.5).float()
    batch = {"images": x, "masks": y}
    vgg = torchvision.models.vgg16().features[:30].eval()

    def vgg_forward() -> None:
        with torch.no_grad():
            vgg(x)

    compile_s = _timed(lambda: train_step(net, batch, opt))  # warm-up (and compilation)
    vgg_forward()
    t_vgg, t_step = [], []
    with PeakRSS() as mem:
        for _ in range(reps):  # alternate, so that both see the same machine
            t_vgg.append(_timed(vgg_forward))
            t_step.append(_timed(lambda: train_step(net, batch, opt)))
    return {
        "step_s": min(t_step),
        "vgg_s": min(t_vgg),
        "ratio": min(t_step) / min(t_vgg),
        "images_per_s": group / min(t_step),
        "peak_mb": mem.peak,
        "step_mb": mem.peak - mem.before,
        "first_step_s": compile_s,
    }


def _child(args, preset: str, group: int, size: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", f"{preset},{group},{size}",
         "--reps", str(args.reps), "--threads", str(args.threads)],
        check=True, capture_output=True, text=True, env={**os.environ, **env},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _best_of_rounds(args, runs: list[tuple[str, str, int, int, dict]]) -> dict[str, dict]:
    """Each (key, preset, group, size, env) ``args.rounds`` times in turn: the round with
    the fastest step, its ratio taken against the fastest VGG16 forward of the same batch
    shape in the whole run (every process times the same VGG16 on the same batch)."""
    best: dict[str, dict] = {}
    vgg: dict[tuple[int, int], float] = {}
    for round_ in range(args.rounds):
        for key, preset, group, size, env in runs:
            r = _child(args, preset, group, size, env)
            print(f"  round {round_ + 1}, {key}: step {r['step_s']:.3f} s, VGG16 "
                  f"{r['vgg_s']:.3f} s, {r['ratio']:.1f}x in its process", flush=True)  # fmt: skip
            vgg[group, size] = min(vgg.get((group, size), r["vgg_s"]), r["vgg_s"])
            if key not in best or r["step_s"] < best[key]["step_s"]:
                best[key] = {**r, "batch": (group, size)}
    for r in best.values():
        r["vgg_s"] = vgg[r["batch"]]
        r["ratio"] = r["step_s"] / r["vgg_s"]
    return best


def main() -> None:
    extra = [
        ("--levers", {"action": "store_true", "help": "the lever table (paper, 4 x 128 px)"}),
        ("--compile", {"action": "store_true", "help": "add torch.compile to the lever table"}),
        ("--rounds", {"type": int, "default": 2, "help": "runs of each configuration"}),
    ]
    args = bench_args(__doc__, "tiny preset only", 5, one_config, extra)
    if args is None:
        return
    print(f"torch {torch.__version__}, {args.threads} threads, best of {args.reps} steps "
          f"x {args.rounds} rounds, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}\n")  # fmt: skip
    if args.levers:
        _levers(args)
        return
    configs = [("tiny", g, 128) for g in (4, 8)] if "tiny" in args.presets else []
    if not args.quick and "paper" in args.presets:
        configs += [("paper", 4, 128), ("paper", 8, 256)]
    runs = [
        (f"{p},{g},{s},{fmt}", p, g, s, {"DMT_BENCH_FORMAT": fmt})
        for p, g, s in configs
        for fmt in FORMATS
    ]
    best = _best_of_rounds(args, runs)
    print("| preset | size | group | memory format | step (s) | VGG16 fwd (s) | ratio | images/s "
          "| peak RSS (MB) | step peak (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, preset, group, size, env in runs:
        r = best[key]
        print(f"| {preset} | {size} | {group} | {env['DMT_BENCH_FORMAT']} | {r['step_s']:.3f} "
              f"| {r['vgg_s']:.3f} | {r['ratio']:.1f}x | {r['images_per_s']:.2f} "
              f"| {r['peak_mb']:.0f} | {r['step_mb']:.0f} |", flush=True)  # fmt: skip


def _matmul_rates(reps: int = 10) -> None:
    """GFLOP/s of one (16384, 256) x (256, 256) product, as F.linear (MKL's sgemm) and as
    layers.linear (a oneDNN 1x1 convolution): the onednn-linear lever in isolation."""
    x, w = torch.randn(16384, 256), torch.randn(256, 256)
    flops = 2 * x.shape[0] * w.shape[0] * w.shape[1]
    default, layers.ONEDNN_LINEAR = layers.ONEDNN_LINEAR, True  # whatever this CPU's default
    for name, fn in (("F.linear (MKL sgemm)", F.linear), ("layers.linear (oneDNN)", layers.linear)):
        best = _best(lambda fn=fn: fn(x, w), reps)
        print(f"{name}: {best * 1e3:.2f} ms, {flops / best / 1e9:.0f} GFLOP/s")
    layers.ONEDNN_LINEAR = default
    print()


def _flop_ratio() -> None:
    """The arithmetic of one paper step (4 x 128 px) against a VGG16 forward of the same
    batch, as ``torch.utils.flop_counter`` counts it (convolutions and matmuls, forward
    and backward): the ratio a step would reach at the VGG16 forward's FLOP rate. Counted
    with direct convolutions (the model's arithmetic) and as the step runs on this CPU
    (Winograd's products are a quarter of the direct ones; its in-place ``baddbmm_`` is
    counted as ``baddbmm``)."""
    from torch.utils import flop_counter

    torch.manual_seed(0)
    model = DMT(DMTConfig.preset("paper")).train()
    opt = adam(model.param_groups(1e-4), betas=(0.9, 0.99), eps=1e-8)
    x = torch.randn(4, 3, 128, 128)
    batch = {"images": x, "masks": (torch.rand(4, 1, 128, 128) > 0.5).float()}

    def baddbmm_flops(acc, a, b, *args, out_shape=None, **kwargs) -> int:  # shapes
        return 2 * a[0] * a[1] * a[2] * b[2]

    inplace = {torch.ops.aten.baddbmm_: baddbmm_flops}

    def flops(fn) -> int:
        with flop_counter.FlopCounterMode(display=False, custom_mapping=inplace) as counter:
            fn()
        return counter.get_total_flops()

    default, layers.WINOGRAD_CONV = layers.WINOGRAD_CONV, False
    direct = flops(lambda: train_step(model, batch, opt))
    layers.WINOGRAD_CONV = default
    run = flops(lambda: train_step(model, batch, opt))
    vgg = flops(lambda: _vgg16_forward(x))
    print(f"FLOPs: step {direct / 1e9:.1f} G with direct convolutions ({direct / vgg:.2f}x), "
          f"{run / 1e9:.1f} G as it runs here ({run / vgg:.2f}x); VGG16 forward "
          f"{vgg / 1e9:.1f} G\n")  # fmt: skip


def _vgg16_forward(x: torch.Tensor) -> None:
    with torch.no_grad():
        torchvision.models.vgg16().features[:30].eval()(x)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _levers(args) -> None:
    _matmul_rates()
    _flop_ratio()
    runs = [("all levers (as dmt train)", {})]
    runs += [
        (f"without {name}", {"DMT_BENCH_OFF": name})
        if _lever_default(name)
        else (f"with {name} (off by default on this CPU)", {"DMT_BENCH_ON": name})
        for name in LEVERS
    ]
    runs += [
        ("as two releases ago (oneDNN linears and weight gradients, no Winograd)",
         {"DMT_BENCH_ON": "onednn-linear", "DMT_BENCH_OFF": "matmul-wgrad,winograd"}),
        ("without head layout, fused Adam, retained memory, oneDNN linears, matmul "
         "weight gradients and Winograd (the releases before them)",
         {"DMT_BENCH_OFF": "head-layout,fused-adam,retain-memory,onednn-linear,"
          "matmul-wgrad,winograd"}),
        ("all levers, contiguous tensors", {"DMT_BENCH_FORMAT": "contiguous"}),
    ]  # fmt: skip
    if args.compile:
        runs.append(("all levers + torch.compile", {"DMT_BENCH_COMPILE": "1"}))
    best = _best_of_rounds(args, [(k, "paper", 4, 128, env) for k, env in runs])
    for name, what in LEVERS.items():
        print(f"- {name}: {what}")
    print("\n| paper, 4 x 128 px, fp32 | step (s) | VGG16 fwd (s) | ratio | peak RSS (MB) "
          "| first step (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for key, _ in runs:
        r = best[key]
        print(f"| {key} | {r['step_s']:.3f} | {r['vgg_s']:.3f} | {r['ratio']:.1f}x "
              f"| {r['peak_mb']:.0f} | {r['first_step_s']:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
