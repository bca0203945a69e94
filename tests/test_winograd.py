"""Winograd F(4x4, 3x3) (dmt_core.model.winograd): exact, bounded in float32, taken where asked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import group

from dmt_core import DMT, DMTConfig
from dmt_core.model import layers, winograd

CL = torch.channels_last


def _grads(fn, x, w, b, grad, need=(True, True, True)):
    """fn's output and the gradients of <output, grad> for the inputs in ``need``."""
    xs, ws, bs = (t.clone().requires_grad_(n) for t, n in zip((x, w, b), need, strict=True))
    out = fn(xs, ws, bs)
    wrt = [t for t in (xs, ws, bs) if t.requires_grad]
    return out, torch.autograd.grad(out, wrt, grad)


@pytest.mark.parametrize(
    "n,c_in,c_out,h,w", [(2, 5, 7, 8, 12), (1, 3, 4, 4, 4), (3, 6, 2, 16, 8), (1, 2, 3, 12, 20)]
)
@pytest.mark.parametrize("need", [(True, True, True), (False, True, False), (True, False, True)])
def test_winograd_is_the_convolution_and_its_gradients(monkeypatch, n, c_in, c_out, h, w, need):
    """In float64 the Winograd output, input gradient, kernel gradient and bias gradient
    equal F.conv2d's (padding 1) to 1e-10, over chunks of 3 tiles (several chunks per
    image, the last one partial) and for any subset of inputs needing a gradient."""
    monkeypatch.setattr(winograd, "CHUNK_TILES", 3)
    gen = torch.Generator().manual_seed(n * 100 + h + w)
    x = torch.randn(n, c_in, h, w, generator=gen, dtype=torch.float64).to(memory_format=CL)
    wt = torch.randn(c_out, c_in, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64)
    grad = torch.randn(n, c_out, h, w, generator=gen, dtype=torch.float64)
    got = _grads(lambda *a: winograd.WinogradConv3x3.apply(*a, False), x, wt, b, grad, need)
    want = _grads(lambda *a: F.conv2d(*a, 1, 1), x, wt, b, grad, need)
    assert got[0].is_contiguous(memory_format=CL)
    for a, e in zip((got[0], *got[1]), (want[0], *want[1]), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("onednn", [True, False])
def test_winograd_float32_error_is_within_float32_noise(monkeypatch, onednn):
    """In float32 the Winograd results stay within 3e-5 of each result's scale of the
    float64 convolution (measured 0.9e-5; the direct convolution's error is 0.2e-5),
    at the paper's 128-channel-plus widths and a map of several chunks, with the channel
    products through oneDNN and through torch.bmm / baddbmm_."""
    taken = []
    real = winograd._rows_as_map
    monkeypatch.setattr(winograd, "_rows_as_map", lambda t: taken.append(1) or real(t))
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 128, 64, 64, generator=gen).to(memory_format=CL)
    wt = torch.randn(128, 128, 3, 3, generator=gen) / 34
    b = torch.randn(128, generator=gen)
    grad = torch.randn(2, 128, 64, 64, generator=gen).to(memory_format=CL)
    got = _grads(lambda *a: winograd.WinogradConv3x3.apply(*a, onednn), x, wt, b, grad)
    # one chunk per image (16 x 16 tiles), each with 36 products forward, 36 for the
    # input gradient and 36 kernel-gradient sums of two maps
    assert len(taken) == (2 * 36 * 4 if onednn else 0)
    want = _grads(lambda *a: F.conv2d(*a, 1, 1), x.double(), wt.double(), b.double(), grad.double())
    for name, a, e in zip(("output", "input", "kernel", "bias"), (got[0], *got[1]),
                          (want[0], *want[1]), strict=True):  # fmt: skip
        err = ((a.double() - e).abs().max() / e.abs().max()).item()
        assert err < 3e-5, f"{name}: {err:.1e}"


def test_conv2d_takes_winograd_where_asked(monkeypatch):
    """With Winograd on, a float32 channels-last 3x3 convolution (stride and padding 1)
    that needs a weight gradient, of 128+ channels and 64 x 64+ pixels in multiples of 4,
    goes through it with F.conv2d's results (to float32 noise); anything else does not."""
    monkeypatch.setattr(layers, "WINOGRAD_CONV", True)
    taken = []
    real = winograd.WinogradConv3x3.apply
    monkeypatch.setattr(
        winograd.WinogradConv3x3, "apply", lambda *a: taken.append(a[0].shape) or real(*a)
    )
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 128, 64, 68, generator=gen).to(memory_format=CL)
    w = (torch.randn(16, 128, 3, 3, generator=gen) * 0.03).to(memory_format=CL)
    b = torch.randn(16, generator=gen)
    grad = torch.randn(1, 16, 64, 68, generator=gen).to(memory_format=CL)
    got = _grads(lambda *a: layers.conv2d(*a, 1, 1), x, w, b, grad)
    want = _grads(lambda *a: F.conv2d(*a, 1, 1), x, w, b, grad)
    assert taken == [(1, 128, 64, 68)]
    for a, e in zip((got[0], *got[1]), (want[0], *want[1]), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * e.abs().max().item())
    taken.clear()
    cases = [
        (x[:, :64], w[:, :64], 1),  # fewer than WINOGRAD_MIN_CHANNELS channels
        (x[:, :, :60, :60], w, 1),  # fewer than WINOGRAD_MIN_PIXELS pixels
        (x[:, :, :, :66], w, 1),  # a width that is not a multiple of 4
        (x.contiguous(), w, 1),  # a contiguous map
        (x, w, 2),  # dilation 2
    ]
    for xi, wi, dil in cases:
        xi = xi if xi.is_contiguous() else xi.contiguous(memory_format=CL)  # slices: copies
        layers.conv2d(xi, wi.clone().requires_grad_(), None, 1, dil, dil).sum().backward()
    with torch.no_grad():
        layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1)
    layers.conv2d(x.clone().requires_grad_(), w, None, 1, 1).sum().backward()  # frozen weight
    with monkeypatch.context() as m:  # being traced by torch.compile
        m.setattr(torch.compiler, "is_compiling", lambda: True)
        layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1).sum().backward()
    monkeypatch.setattr(layers, "WINOGRAD_CONV", False)
    layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1).sum().backward()
    assert taken == []


@pytest.mark.parametrize("capability", ["AVX2", "AVX512", "DEFAULT", "SVE256"])
def test_winograd_is_on_by_default_only_on_the_measured_x86_cpus(monkeypatch, capability):
    """Winograd was measured faster than oneDNN on the AVX2-only and the AVX-512 CPU, on
    nothing else; the module flag overrides the default either way."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert layers.winograd_conv() is (capability in ("AVX2", "AVX512"))
    for flag in (True, False):
        monkeypatch.setattr(layers, "WINOGRAD_CONV", flag)
        assert layers.winograd_conv() is flag


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])
def test_conv2d_gives_winograd_onednn_products_where_the_onednn_linears_are(
    monkeypatch, capability
):
    """layers.conv2d hands Winograd its products' path: oneDNN where the oneDNN linears
    are on (not on AVX2-only CPUs), unless layers.WINOGRAD_ONEDNN says otherwise."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(layers, "WINOGRAD_CONV", True)
    asked = []
    real = winograd.WinogradConv3x3.apply
    monkeypatch.setattr(
        winograd.WinogradConv3x3, "apply", lambda *a: asked.append(a[3]) or real(*a)
    )
    x = torch.randn(1, 128, 64, 64).to(memory_format=CL)
    w = (torch.randn(8, 128, 3, 3) * 0.03).requires_grad_()
    for flag in (None, True, False):
        monkeypatch.setattr(layers, "WINOGRAD_ONEDNN", flag)
        layers.conv2d(x, w, None, 1, 1).sum().backward()
    assert asked == [capability != "AVX2", True, False]


@pytest.mark.parametrize("capability", ["AVX2", "AVX512"])
def test_winograd_default_takes_maps_up_to_the_capabilitys_size(monkeypatch, capability):
    """By default an AVX-512 CPU keeps maps larger than 128 x 128 on the direct
    convolution (measured no faster there, and 1.2 GB of kept tiles at 8 x 256 x 256 x
    256); an AVX2-only CPU takes every size; WINOGRAD_CONV = True takes every size."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    at_cap = torch.empty(1, 128, 128, 128).to(memory_format=CL)
    above = torch.empty(1, 128, 128, 132).to(memory_format=CL)
    assert layers.winograd_takes(at_cap)
    assert layers.winograd_takes(above) is (capability == "AVX2")
    monkeypatch.setattr(layers, "WINOGRAD_CONV", True)
    assert layers.winograd_takes(above)
    monkeypatch.setattr(layers, "WINOGRAD_CONV", False)
    assert not layers.winograd_takes(at_cap)


def test_winograd_gives_the_training_step_its_gradients(monkeypatch):
    """A whole channels-last float32 training step (tiny preset at width 128 on 64 px
    images, so that its full-resolution decoder convolution takes Winograd) has the
    gradients of the same step in float64 (which never takes it): within 1e-3 of each
    parameter's gradient scale (measured 1.4e-5; the direct float32 step: 4.6e-4, the
    step amplifies a rounding difference near its maxima and thresholds)."""
    from dmt_core.loss import dmt_loss

    monkeypatch.setattr(layers, "WINOGRAD_CONV", True)
    taken = []
    real = winograd.WinogradConv3x3.apply
    monkeypatch.setattr(
        winograd.WinogradConv3x3, "apply", lambda *a: taken.append(a[0].shape) or real(*a)
    )
    cfg = DMTConfig.preset(
        "tiny", hidden_dim=128, drop_path=0.0, token_dropout=0.0, pretrained_backbone=False
    )
    x = group(2, 64, seed=5)
    masks = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    grads = []
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        model = DMT(cfg, channels_last=True).train().to(dtype)
        loss, _ = dmt_loss(model(x.to(dtype), aux=True), masks.to(dtype))
        loss.backward()
        grads.append(
            {n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None}
        )
        if dtype == torch.float32:
            assert len(taken) == 1 and taken[0][1] >= 128 and taken[0][2] * taken[0][3] >= 4096
    assert grads[0].keys() == grads[1].keys()
    top = max(g.abs().max().item() for g in grads[1].values())
    for name, want in grads[1].items():
        scale = want.abs().max().item()
        if scale > 1e-3 * top:  # the rest are rounding noise around a zero gradient
            err = (grads[0][name] - want).abs().max().item() / scale
            assert err < 1e-3, f"{name}: {err:.1e} of its scale {scale:.1e}"
