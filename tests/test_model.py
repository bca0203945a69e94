"""Model behaviour: shapes, ablations, frozen encoder, permutation, errors, hazards."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import group, tiny_model

from dmt_core import DMT, DMTConfig
from dmt_core.model.tgfr import TGFR, minmax_mask, weighted_gap

ABLATIONS = ("use_r2r", "use_contrast", "use_cot2t", "use_tgfr", "use_bg_token")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model().eval()


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("n", [1, 2, 5, 25])
def test_output_shapes_for_group_sizes(tiny, n):
    with torch.no_grad():
        out = tiny(group(n, 64), aux=True)
    assert out.co.shape == out.bg.shape == out.group.shape == (n, 1, 64, 64)
    sides = [s.co.shape[-1] for s in out.stages]
    assert sides == [4, 4, 8, 16, 32]  # stages 6, 5, 4, 3, 2
    for s in out.stages:
        for t in (s.co, s.bg, s.group, s.co_after_co_proto, s.co_after_bg_proto):
            assert t.shape == (n, 1, s.co.shape[-2], s.co.shape[-1])
    official = out.to_official_dict()
    assert set(official) == {
        "co_pred",
        "bg_pred",
        "com_pred",
        "stage_co_preds",
        "stage_bg_preds",
        "stage_com_preds",
        "stage_co_preds_1",
        "stage_co_preds_2",
    }
    assert all(len(v) == 5 for k, v in official.items() if k.startswith("stage_"))


@pytest.mark.parametrize("size", range(64, 321, 32))
def test_output_shapes_for_image_sizes(tiny, size):
    with torch.no_grad():
        out = tiny(group(2, size), aux=True)
    assert out.co.shape == (2, 1, size, size)
    assert [s.co.shape[-1] for s in out.stages] == [
        size // 16,
        size // 16,
        size // 8,
        size // 4,
        size // 2,
    ]
    assert torch.isfinite(out.co).all()


def test_non_square_group(tiny):
    with torch.no_grad():
        out = tiny(group(2, 96, width=160), aux=True)
    assert out.co.shape == (2, 1, 96, 160)
    assert out.stages[-1].co.shape == (2, 1, 48, 80)


def test_paper_preset_shapes_and_parameter_counts():
    model = DMT(DMTConfig.paper()).eval()
    assert sum(p.numel() for p in model.parameters()) == 40_384_960
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 28_030_080
    with torch.no_grad():
        out = model(group(2, 64))
    assert out.co.shape == (2, 1, 64, 64)


# --------------------------------------------------------------------------- ablations
def _shared_weights(model: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Copy every weight the ablated model shares with the full one (same key, same shape)."""
    ref = reference.state_dict()
    own = model.state_dict()
    shared = {k: v for k, v in ref.items() if k in own and own[k].shape == v.shape}
    missing, _ = model.load_state_dict(shared, strict=False)
    # the only weights the full model does not have are reshaped ones (bg row of the embedding)
    assert all(k == "decoder.token_embed.weight" for k in missing), missing


@pytest.mark.parametrize("switch", ABLATIONS)
def test_every_ablation_runs_and_changes_the_outputs(switch):
    full = tiny_model().eval()
    ablated = tiny_model(**{switch: False}).eval()
    _shared_weights(ablated, full)
    if switch == "use_bg_token":
        with torch.no_grad():
            ablated.decoder.token_embed.weight.copy_(full.decoder.token_embed.weight[:1])
    x = group(3, 64)
    with torch.no_grad():
        a, b = full(x, aux=True), ablated(x, aux=True)
    assert b.co.shape == a.co.shape and torch.isfinite(b.co).all()
    assert (a.co - b.co).abs().max() > 1e-3, f"{switch}=False did not change the co map"
    assert len(b.stages) == 5
    if switch == "use_bg_token":
        assert b.bg is None and all(s.bg is None for s in b.stages)
        assert b.to_official_dict()["bg_pred"] is None


def test_ablations_remove_their_modules():
    def names(**kw):
        return {n for n, _ in tiny_model(**kw).named_modules()}

    assert not any("r2r" in n for n in names(use_r2r=False))
    assert not any("gate" in n for n, _ in tiny_model(use_contrast=False).named_parameters())
    assert not any("cot2t" in n for n in names(use_cot2t=False))
    assert not any("fuse_" in n for n in names(use_tgfr=False))
    assert not any("fuse_bg" in n for n in names(use_bg_token=False))
    assert tiny_model(use_bg_token=False).decoder.token_embed.weight.shape[0] == 1


# --------------------------------------------------------------------------- training set-up
def test_only_conv5_3_of_the_encoder_trains_in_the_paper_preset():
    model = DMT(DMTConfig.paper()).train()
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"conv5_3.weight", "conv5_3.bias"}
    out = model(group(2, 32), aux=True)
    out.co.sum().backward()
    for name, p in model.encoder.named_parameters():
        assert (p.grad is not None) == name.startswith("conv5_3"), name
    assert model.decoder.stages[0].fpn.conv[0].weight.grad is not None
    groups = model.param_groups(1e-4)
    assert [g["name"] for g in groups] == ["encoder", "decoder"]
    assert groups[0]["lr"] == pytest.approx(1e-6)
    assert sum(p.numel() for g in groups for p in g["params"]) == 28_030_080


def test_tiny_preset_trains_the_whole_encoder_and_backward_reaches_every_weight():
    model = tiny_model().train()
    out = model(group(3, 64), aux=True)
    loss = out.co.mean() + out.bg.mean() + out.group.mean()
    for s in out.stages:
        loss = loss + sum(
            t.mean() for t in (s.co, s.bg, s.group, s.co_after_co_proto, s.co_after_bg_proto)
        )
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []


def test_token_head_on_a_channels_last_map_is_the_einsum_and_keeps_its_gradient_layout():
    from dmt_core.model.heads import TokenHead

    torch.manual_seed(0)
    head = TokenHead(32)
    tokens = torch.randn(3, 2, 32, requires_grad=True)
    feats = torch.randn(3, 32, 8, 8).to(memory_format=torch.channels_last).requires_grad_()
    out = head(tokens, feats)
    h = head.norm2(head.linear2(torch.relu(head.linear1(head.norm1(tokens))))) * head.scale
    ref = torch.einsum("ntc,nchw->nthw", h, feats)
    torch.testing.assert_close(out, ref)
    weight = torch.randn(3, 2, 8, 8)
    got = torch.autograd.grad((out * weight).sum(), (tokens, feats))
    want = torch.autograd.grad((ref * weight).sum(), (tokens, feats))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # the point of the matmul form: the map's gradient comes back channels-last, so the
    # ReLU, BN and conv backward before it run on one layout
    assert got[1].is_contiguous(memory_format=torch.channels_last)


def test_the_token_map_product_has_bmms_gradients_in_float64_and_under_autocast():
    from dmt_core.model.heads import _MapProduct

    g = torch.Generator().manual_seed(0)
    flat = torch.randn(2, 12, 5, dtype=torch.float64, generator=g).requires_grad_()
    h = torch.randn(2, 3, 5, dtype=torch.float64, generator=g).requires_grad_()
    assert torch.autograd.gradcheck(_MapProduct.apply, (flat, h))
    # under autocast (bfloat16 on a CPU) the product computes in bfloat16, like bmm, and
    # hands each input a gradient of its own dtype
    flat32, h32 = (t.detach().float().requires_grad_() for t in (flat, h))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _MapProduct.apply(flat32, h32)
        ref = torch.bmm(flat32, h32.transpose(1, 2))
    assert out.dtype == ref.dtype == torch.bfloat16
    got = torch.autograd.grad(out.float().sum(), (flat32, h32))
    want = torch.autograd.grad(ref.float().sum(), (flat32, h32))
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_linear_runs_large_float32_cpu_products_as_onednn_convolutions(monkeypatch):
    from dmt_core.model import layers

    calls = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(
        torch.nn.functional, "conv2d", lambda *a, **k: calls.append(a[0].shape) or conv2d(*a, **k)
    )
    monkeypatch.setattr(layers, "ONEDNN_LINEAR", True)  # whatever this CPU's default
    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(24, 16, generator=g), torch.randn(24, generator=g)
    # (2, 80, 16) is 160 rows: the oneDNN path, whose values and gradients are F.linear's
    x = torch.randn(2, 80, 32, generator=g)[..., ::2].transpose(0, 1)  # not contiguous
    for bias in (b, None):
        xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
        out = layers.linear(xs, ws, bias)
        ref = torch.nn.functional.linear(x, w, bias)
        assert out.shape == ref.shape == (80, 2, 24) and out.is_contiguous()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        gx, gw = torch.autograd.grad(out, (xs, ws), torch.ones_like(out))
        torch.testing.assert_close(gx, torch.ones(80, 2, 24) @ w, rtol=1e-5, atol=1e-5)
        want_w = torch.ones(24, 160) @ x.reshape(160, 16)
        torch.testing.assert_close(gw, want_w, rtol=1e-5, atol=1e-4)
    assert calls == [(1, 16, 160, 1), (1, 16, 160, 1)]
    # few rows, float64, or the path turned off: F.linear itself, bit for bit
    calls.clear()
    small = torch.randn(3, 16, generator=g)
    assert torch.equal(layers.linear(small, w, b), torch.nn.functional.linear(small, w, b))
    assert layers.linear(x.double(), w.double(), b.double()).dtype == torch.float64
    monkeypatch.setattr(layers, "ONEDNN_LINEAR_MIN_ROWS", 10**9)
    assert torch.equal(layers.linear(x, w, b), torch.nn.functional.linear(x, w, b))
    assert calls == []
    monkeypatch.setattr(layers, "ONEDNN_LINEAR_MIN_ROWS", 128)
    monkeypatch.setattr(layers, "ONEDNN_LINEAR", False)
    assert torch.equal(layers.linear(x, w, b), torch.nn.functional.linear(x, w, b))
    assert calls == []
    # the module keeps nn.Linear's parameters and keys
    m = layers.Linear(16, 24)
    assert isinstance(m, torch.nn.Linear) and list(m.state_dict()) == ["weight", "bias"]


@pytest.mark.parametrize("capability", ["AVX2", "AVX512", "DEFAULT"])
def test_onednn_paths_follow_the_cpu_instruction_set(monkeypatch, capability):
    """By default the matmul weight gradient is on, and the oneDNN linear off, exactly on
    x86 CPUs whose best instruction set is AVX2 (where oneDNN's channels-last weight
    gradient is its slow direct kernel); the module flags override the default."""
    from dmt_core.model import layers

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    avx2 = capability == "AVX2"
    assert layers.slow_onednn_weight_grad() is avx2
    assert layers.matmul_weight_grad() is avx2
    calls = []
    monkeypatch.setattr(layers, "_Conv3x3", type("Spy", (), {"apply": lambda *a: calls.append(1)}))
    x = torch.randn(1, 64, 4, 4).to(memory_format=torch.channels_last)
    layers.conv2d(x, torch.randn(8, 64, 3, 3, requires_grad=True), None, 1, 1)
    assert calls == ([1] if avx2 else [])
    conv2d = torch.nn.functional.conv2d
    seen = []
    monkeypatch.setattr(
        torch.nn.functional, "conv2d", lambda *a, **k: seen.append(1) or conv2d(*a, **k)
    )
    layers.linear(torch.randn(256, 16), torch.randn(8, 16))
    assert seen == ([] if avx2 or not torch.backends.mkldnn.is_available() else [1])
    for flag in (True, False):
        monkeypatch.setattr(layers, "MATMUL_CONV_WEIGHT_GRAD", flag)
        assert layers.matmul_weight_grad() is flag


@pytest.mark.parametrize(
    "n,c_in,c_out,h,w",
    [(2, 5, 3, 9, 7), (1, 4, 6, 1, 1), (3, 3, 2, 1, 5), (2, 6, 4, 4, 1), (1, 2, 2, 2, 2)],
)
def test_conv3x3_weight_grad_is_the_convolution_weight_gradient(n, c_in, c_out, h, w):
    """The nine shifted matmuls, with the pairs across the image borders taken back out,
    are the 3x3 convolution's weight gradient (float64: equal to 1e-12), channels-last;
    including maps of one row or column, where most taps have no pairs at all."""
    from dmt_core.model import layers

    g = torch.Generator().manual_seed(n * 100 + h * 10 + w)
    cl = torch.channels_last
    x = torch.randn(n, c_in, h, w, generator=g, dtype=torch.float64).to(memory_format=cl)
    grad = torch.randn(n, c_out, h, w, generator=g, dtype=torch.float64).to(memory_format=cl)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=torch.float64, requires_grad=True)
    xr = x.clone().requires_grad_()
    (torch.nn.functional.conv2d(xr, weight, None, 1, 1) * grad).sum().backward()
    got = layers.conv3x3_weight_grad(grad, x)
    assert got.is_contiguous(memory_format=cl)
    torch.testing.assert_close(got, weight.grad, rtol=1e-12, atol=1e-12)


def test_conv2d_takes_3x3_weight_gradients_as_matmuls_where_asked(monkeypatch):
    """With the matmul weight gradient on, a float32 channels-last 3x3 convolution that
    needs a weight gradient computes F.conv2d's output (bit for bit: the same oneDNN
    forward) and its gradients (input: the same kernel; weight, bias: summation order);
    every other convolution is F.conv2d itself."""
    from dmt_core.model import layers

    monkeypatch.setattr(layers, "MATMUL_CONV_WEIGHT_GRAD", True)
    taken = []
    original = layers.conv3x3_weight_grad
    monkeypatch.setattr(
        layers, "conv3x3_weight_grad", lambda grad, x: taken.append(x.shape) or original(grad, x)
    )
    g = torch.Generator().manual_seed(3)
    cl = torch.channels_last
    x = torch.randn(2, 64, 12, 10, generator=g).to(memory_format=cl)
    w = (torch.randn(32, 64, 3, 3, generator=g) * 0.05).to(memory_format=cl)
    b = torch.randn(32, generator=g)

    def grads(fn, *args):
        xs, ws, bs = (t.clone().requires_grad_() for t in args)
        out = fn(xs, ws, bs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out, xs.grad, ws.grad, bs.grad

    conv = lambda x_, w_, b_: layers.conv2d(x_, w_, b_, 1, 1)  # noqa: E731
    ref = lambda x_, w_, b_: torch.nn.functional.conv2d(x_, w_, b_, 1, 1)  # noqa: E731
    got, want = grads(conv, x, w, b), grads(ref, x, w, b)
    assert taken == [(2, 64, 12, 10)]
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[2].is_contiguous(memory_format=cl)
    for a, e in zip(got[2:], want[2:], strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)
    # the module form, with frozen input (no input gradient needed)
    m = layers.Conv2d(64, 32, 3, padding=1).to(memory_format=cl)
    m(x).sum().backward()
    assert len(taken) == 2 and m.weight.grad is not None and m.bias.grad is not None
    # everything else: F.conv2d itself, and the path never taken
    taken.clear()
    cases = [
        (x.contiguous(), w, 1, 1),  # a contiguous map
        (x[:, :32], w[:, :32], 1, 1),  # fewer than MATMUL_CONV_MIN_CHANNELS channels
        (x, w, 2, 2),  # dilation 2 (DASPP)
        (x.double(), w.double(), 1, 1),  # float64
    ]
    for xi, wi, pad, dil in cases:
        wi = wi.clone().requires_grad_()
        out = layers.conv2d(xi, wi, None, 1, pad, dil)
        assert torch.equal(out, torch.nn.functional.conv2d(xi, wi, None, 1, pad, dil))
        out.sum().backward()
    with torch.no_grad():
        layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1)
    layers.conv2d(x, w, None, 1, 1)  # a weight without gradient
    with monkeypatch.context() as m:  # being traced by torch.compile
        m.setattr(torch.compiler, "is_compiling", lambda: True)
        layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1).sum().backward()
    monkeypatch.setattr(layers, "MATMUL_CONV_WEIGHT_GRAD", False)
    layers.conv2d(x, w.clone().requires_grad_(), None, 1, 1).sum().backward()
    assert taken == []


def test_matmul_weight_gradients_give_the_training_step_its_gradients(monkeypatch):
    """A whole channels-last training step (tiny preset at width 64, so that its decoder's
    3x3 convolutions take the path) has the same gradients with the matmul weight
    gradient as with oneDNN's, and every module conv of 64+ channels took it."""
    from dmt_core.loss import dmt_loss
    from dmt_core.model import layers

    taken = []
    original = layers.conv3x3_weight_grad
    monkeypatch.setattr(
        layers, "conv3x3_weight_grad", lambda grad, x: taken.append(x.shape) or original(grad, x)
    )
    cfg = DMTConfig.preset(
        "tiny", hidden_dim=64, drop_path=0.0, token_dropout=0.0, pretrained_backbone=False
    )
    x = group(2, 64, seed=5)
    masks = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    grads = []
    for on in (True, False):
        monkeypatch.setattr(layers, "MATMUL_CONV_WEIGHT_GRAD", on)
        torch.manual_seed(0)
        model = DMT(cfg).train()
        loss, _ = dmt_loss(model(x, aux=True), masks)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        if on:
            convs = [
                m for m in model.modules()
                if isinstance(m, layers.Conv2d) and m.kernel_size == (3, 3) and m.dilation == (1, 1)
                and m.in_channels >= 64 and m.weight.requires_grad
            ]  # fmt: skip
            assert len(taken) == len(convs) >= 7  # six FPN convs and conv5_3
    assert grads[0].keys() == grads[1].keys()
    scale = max(g.abs().max().item() for g in grads[1].values())
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-4, atol=1e-6 * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip


def test_channels_last_training_step_has_the_contiguous_gradients():
    """The channels-last path (token heads as a matmul on the channels-last map, in-place
    TGFR ops, BN and ReLU on matching layouts) computes the gradients of the plain one.
    (The tiny preset: in a randomly initialised paper preset the two layouts' float
    rounding already differs by 2 % in the gradients, through the 13 untrained VGG layers.)"""
    from dmt_core.loss import dmt_loss

    cfg = DMTConfig.preset("tiny", drop_path=0.0, token_dropout=0.0, pretrained_backbone=False)
    x = group(2, 64, seed=5)
    masks = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    grads = []
    for channels_last in (True, False):
        torch.manual_seed(0)
        model = DMT(cfg, channels_last=channels_last).train()
        loss, _ = dmt_loss(model(x, aux=True), masks)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 100
    scale = max(g.abs().max().item() for g in grads[1].values())  # float noise is relative
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-3, atol=1e-5 * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip


# --------------------------------------------------------------------------- group semantics
@pytest.mark.parametrize("bn", ["running", "group"])
def test_permuting_the_group_permutes_the_outputs(bn):
    model = tiny_model(bn_inference=bn).eval()
    x = group(5, 64, seed=3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        a = model(x, aux=True)
        b = model(x[perm], aux=True)
    torch.testing.assert_close(b.co, a.co[perm], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.group, a.group[perm], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.stages[2].bg, a.stages[2].bg[perm], atol=1e-4, rtol=1e-4)


def test_images_of_a_group_influence_each_other():
    """R2R/CoT2T mix the group: changing image 1 changes the prediction for image 0."""
    model = tiny_model().eval()
    x = group(3, 64)
    y = x.clone()
    y[1] = torch.randn_like(y[1])
    with torch.no_grad():
        assert (model(x).co[0] - model(y).co[0]).abs().max() > 1e-4
    solo = tiny_model(use_r2r=False, use_cot2t=False, bn_inference="running", bn_scope="group")
    solo.eval()
    with torch.no_grad():  # without both, and with running BN statistics: independent
        torch.testing.assert_close(solo(x).co[0], solo(y).co[0], atol=1e-5, rtol=1e-5)
    solo.set_inference_bn("group")  # the group's BN statistics are a path of their own
    with torch.no_grad():
        assert (solo(x).co[0] - solo(y).co[0]).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tiny_preset_connects_the_images_only_through_r2r_and_cot2t(mode):
    """The default tiny preset: without R2R and CoT2T, image 0's output ignores the others.

    Every output (the co, bg and group maps and every per-stage map) of image 0 stays
    the same when the other images change or are removed; with R2R or CoT2T on, it moves.
    """
    assert DMTConfig.tiny().bn_scope == "image"
    x = group(4, 64, seed=5)
    y = x.clone()
    y[1:] = torch.randn_like(y[1:]) * 2 + 1

    def outputs(model, images):
        with torch.no_grad():
            out = model.train(mode == "train")(images, aux=True)
        maps = [out.co, out.bg, out.group]
        for s in out.stages:
            maps += [s.co, s.bg, s.group, s.co_after_co_proto, s.co_after_bg_proto]
        return torch.cat([m[:1].flatten() for m in maps])

    solo = tiny_model(use_r2r=False, use_cot2t=False)
    torch.testing.assert_close(outputs(solo, x), outputs(solo, y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs(solo, x), outputs(solo, x[:1]), atol=1e-4, rtol=1e-4)
    for on in ({"use_r2r": False}, {"use_cot2t": False}):  # either module alone connects them
        model = tiny_model(**on)
        assert (outputs(model, x) - outputs(model, y)).abs().max() > 1e-4, on


def test_bn_scope_image_keeps_the_images_apart_in_training_and_group_inference():
    """Group BatchNorm statistics connect the images; per-image statistics do not."""
    x = group(3, 64)
    y = x.clone()
    y[1:] = torch.randn_like(y[1:])
    cfg = dict(use_r2r=False, use_cot2t=False, drop_path=0.0, token_dropout=0.0)
    apart = tiny_model(bn_scope="image", bn_inference="group", **cfg)
    mixed = tiny_model(bn_scope="group", bn_inference="group", **cfg)
    for mode in ("train", "eval"):
        for model in (apart, mixed):
            model.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(apart(x).co[0], apart(y).co[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(apart(x).co[:1], apart(x[:1]).co, atol=1e-4, rtol=1e-4)
            assert (mixed(x).co[0] - mixed(y).co[0]).abs().max() > 1e-3, mode
    # per-image statistics are instance statistics; running stats average them
    bn = apart.decoder.stages[0].fpn.conv[1]
    assert bn.per_image and bn.num_batches_tracked > 0
    feats = torch.randn(2, 4, 5, 5) * 3 + 2
    from dmt_core.model.layers import GroupBatchNorm2d

    norm = GroupBatchNorm2d(4, momentum=1.0)
    norm.per_image = True
    out = norm.train()(feats)
    torch.testing.assert_close(out, torch.nn.functional.instance_norm(feats, eps=norm.eps))
    torch.testing.assert_close(norm.running_mean, feats.mean(dim=(2, 3)).mean(0))
    with pytest.raises(ValueError, match="bn_scope must be 'group' or 'image'"):
        DMTConfig.tiny(bn_scope="batch")


def test_per_image_statistics_over_channel_groups_and_frozen_running_statistics():
    from dmt_core.model.layers import GroupBatchNorm2d

    g = torch.Generator().manual_seed(0)
    feats = (torch.randn(3, 8, 5, 5, generator=g) * 3 + 2).contiguous(
        memory_format=torch.channels_last
    )
    norm = GroupBatchNorm2d(8)
    norm.per_image, norm.image_groups = True, 1
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    out = norm.train()(feats)
    ref = torch.nn.functional.group_norm(feats, 1, norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # one mean/variance per image keeps what the channel levels say: a silent channel
    # stays silent, where per-channel (instance) statistics stretch it like the others
    feats = torch.zeros(1, 2, 4, 4)
    feats[0, 0, :2, :2] = 5.0
    feats[0, 1] = torch.randn(4, 4, generator=g) * 1e-2
    norm = GroupBatchNorm2d(2).train()
    norm.per_image = True
    norm.image_groups = 1
    assert norm(feats)[0, 1].std() < 0.02  # flat: nothing there
    norm.image_groups = 0
    assert norm(feats)[0, 1].std() > 0.9  # noise stretched to unit variance
    # frozen: the running statistics in every mode, never updated
    frozen = GroupBatchNorm2d(8)
    frozen.running_mean.fill_(1.0)
    frozen.running_var.fill_(4.0)
    frozen.frozen = frozen.per_image = frozen.use_group_stats = True
    x = torch.randn(2, 8, 3, 3, generator=g)
    for mode in (True, False):
        torch.testing.assert_close(frozen.train(mode)(x), (x - 1.0) / (4.0 + frozen.eps) ** 0.5)
    assert frozen.running_mean.eq(1.0).all() and frozen.num_batches_tracked == 0
    model = tiny_model(frozen_bn_stats="running", image_norm_groups=2)
    enc = model.encoder
    assert enc.bn1_1.frozen and enc.bn5_2.frozen and not enc.bn5_3.frozen
    assert model.decoder.stages[0].fpn.conv[1].image_groups == 2
    with pytest.raises(ValueError, match="frozen_bn_stats"):
        DMTConfig.tiny(frozen_bn_stats="batch")


def test_group_bn_mode_equals_train_mode_batch_norm_without_dropout():
    model = tiny_model(drop_path=0.0, token_dropout=0.0)
    x = group(4, 64)
    running = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.eval().set_inference_bn("group")
    with torch.no_grad():
        grouped = model(x, aux=True)
    for k, v in model.state_dict().items():  # running statistics untouched
        if "running" in k:
            assert torch.equal(v, running[k]), k
    model.train()
    with torch.no_grad():
        trained = model(x, aux=True)
    torch.testing.assert_close(grouped.co, trained.co, atol=1e-4, rtol=1e-4)
    model.eval().set_inference_bn("running")
    with torch.no_grad():
        assert (model(x).co - grouped.co).abs().max() > 1e-3
    with pytest.raises(ValueError, match="'running' or 'group'"):
        model.set_inference_bn("batch")


def test_aux_false_gives_the_same_co_map(tiny):
    x = group(3, 64)
    with torch.no_grad():
        a, b = tiny(x, aux=True), tiny(x)
    assert b.bg is None and b.group is None and b.stages == []
    torch.testing.assert_close(a.co, b.co, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tiny.predict(x), torch.sigmoid(a.co), atol=1e-5, rtol=1e-5)


def test_train_mode_defaults_to_side_outputs():
    model = tiny_model().train()
    out = model(group(2, 64))
    assert len(out.stages) == 5 and out.bg is not None and out.group is not None


def test_fast_eval_path_equals_plain_conv_bn_and_prototype_concatenation(monkeypatch):
    """BN folding and the broadcast prototype term are the official math, rearranged."""
    from torch import nn

    from dmt_core.model.layers import ConvBNAct
    from dmt_core.model.tgfr import PrototypeFusion

    model = tiny_model().eval()
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    x = group(2, 64)
    with torch.no_grad():
        fast = model(x, aux=True)

    def concat_fusion(self, features, proto):  # the official: conv over [D; p tiled]
        tiled = proto[:, :, None, None].expand_as(features)
        return self.block[2](self.block[1](self.block[0](torch.cat([features, tiled], dim=1))))

    monkeypatch.setattr(ConvBNAct, "forward", nn.Sequential.forward)
    monkeypatch.setattr(PrototypeFusion, "forward", concat_fusion)
    with torch.no_grad():
        plain = model(x, aux=True)
    torch.testing.assert_close(fast.co, plain.co, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        fast.stages[4].co_after_bg_proto, plain.stages[4].co_after_bg_proto, atol=1e-4, rtol=1e-4
    )


def test_autocast_bfloat16_forward_and_backward():
    model = tiny_model().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(group(2, 64), aux=True)
        loss = out.co.float().mean() + out.stages[0].co.float().mean()
    loss.backward()
    assert torch.isfinite(out.co.float()).all()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        co = model(group(2, 64)).co
    assert co.shape == (2, 1, 64, 64) and torch.isfinite(co.float()).all()


def test_capture_attention_keeps_maps(tiny):
    tiny.capture_attention(True)
    try:
        with torch.no_grad():
            tiny(group(3, 64))
        ctp2t = tiny.decoder.stages[0].tokens.ctp2t.cross_attn
        assert ctp2t.last_attention.shape == (3, 4, 2, 16)  # (N, heads, tokens, h6*w6)
        assert ctp2t.last_gate.shape == (3, 2, tiny.config.hidden_dim)  # (N, tokens, C)
        r2r = tiny.r2r.attention.last_attention
        assert r2r.shape == (1, 4, 3 * 16, 3 * 46)  # (1, heads, N*h*w, N*46 regions)
        gather = tiny.decoder.stages[0].tokens.cot2t.gather.last_attention
        assert gather.shape == (1, 1, 3)
    finally:
        tiny.capture_attention(False)
    assert tiny.r2r.attention.last_attention is None


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "x, message",
    [
        (torch.randn(3, 64, 64), "4-D"),
        (torch.randn(1, 2, 3, 64, 64), "4-D"),
        (torch.randn(2, 1, 64, 64), "3 \\(RGB\\) channels"),
        (torch.randn(2, 4, 64, 64), "3 \\(RGB\\) channels"),
        (torch.randn(2, 3, 64, 72), "multiples of 16"),
        (torch.randn(2, 3, 50, 64), "multiples of 16"),
        (torch.randn(0, 3, 64, 64), "empty group"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "float"),
        ([[1.0]], "torch.Tensor"),
    ],
)
def test_wrong_input_raises_a_clear_value_error(tiny, x, message):
    with pytest.raises(ValueError, match=message):
        tiny(x)


# --------------------------------------------------------------------------- official hazards
def test_minmax_mask_guards_constant_maps():
    const = torch.full((2, 1, 8, 8), 40.0)  # sigmoid saturates to exactly 1.0
    mask = minmax_mask(const)
    assert torch.isfinite(mask).all() and torch.equal(mask, torch.ones_like(mask))
    x = torch.randn(2, 1, 8, 8)
    m = minmax_mask(x)
    p = torch.sigmoid(x).flatten(1)
    ref = (p - p.min(1, keepdim=True).values) / (
        p.max(1, keepdim=True).values - p.min(1, keepdim=True).values
    )
    torch.testing.assert_close(m.flatten(1), ref)
    feats = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(
        weighted_gap(feats, mask), feats.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5
    )


def test_tgfr_survives_constant_token_maps():
    tgfr = TGFR(16).eval()
    tokens = torch.zeros(2, 2, 16)
    feats = torch.full((2, 16, 8, 8), 50.0)  # every map constant
    with torch.no_grad():
        maps, refined = tgfr(tokens, torch.zeros(1, 16), feats)
    assert torch.isfinite(refined).all() and torch.isfinite(maps.co_after_bg_proto).all()


def test_dropout_rates_are_floats_and_follow_the_official_ramp():
    cfg = DMTConfig.paper()
    assert cfg.stage_dropouts() == pytest.approx(
        {1: 0.0, 2: 0.1, 3: 0.075, 4: 0.05, 5: 0.025, 6: 0.0}
    )
    model = DMT(cfg)
    rates = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Dropout):
            assert type(m.p) is float, name
        if isinstance(m, torch.nn.MultiheadAttention):
            assert type(m.dropout) is float, name
            rates[name] = m.dropout
    assert rates["decoder.stages.4.tokens.ctp2t.self_attn"] == pytest.approx(0.1)  # stage 2
    assert rates["decoder.stages.0.tokens.ctp2t.self_attn"] == 0.0  # stage 6


def test_memory_layernorm_is_initialised_as_intended():
    norm = DMT(DMTConfig.tiny()).decoder.memory_norm
    assert torch.equal(norm.weight, torch.ones_like(norm.weight))
    assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_daspp_branch_width_follows_the_official_rule():
    assert DMTConfig.paper().daspp_branch_dim == 192
    assert DMTConfig.tiny().daspp_branch_dim == 64
    fuse = DMT(DMTConfig.paper()).daspp.fuse[0]
    assert fuse.in_channels == 1600 and math.prod(fuse.weight.shape) == 512 * 1600


def test_non_finite_and_mismatched_dtype_inputs_get_clear_errors():
    model = tiny_model().eval()
    x = group(3, 64)
    x[1, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match=r"images \[1\] of the group hold NaN"):
        model(x)
    with pytest.raises(ValueError, match="torch.float16 but the model's weights are torch.float32"):
        model(group(2, 64).half())
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = model(group(2, 64).bfloat16())  # under autocast a low-precision input works
    assert out.co.shape == (2, 1, 64, 64)
