"""Module evidence and knock-outs (dmt_core.analysis), R2R centering init, recipe options."""

from __future__ import annotations

import pytest
import torch
from helpers import group, tiny_model

from dmt_core import DMTConfig
from dmt_core.analysis import (
    co_token_target_ratio,
    cot2t_within_images,
    group_sm,
    module_evidence,
    r2r_cross_image_ratio,
    r2r_within_images,
)
from dmt_core.model.r2r import R2R, region_tokens


def masks_for(n: int, size: int) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size)
    m[:, :, size // 4 : size // 2, size // 4 : size // 2] = 1.0
    return m


def uniform_attention(model: torch.nn.Module) -> None:
    """Zero every query projection: all attention weights become uniform."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "to_q"):
                m.to_q.weight.zero_()


def test_uniform_attention_gives_ratios_of_exactly_one():
    model = tiny_model().eval()
    uniform_attention(model)
    x, m = group(3, 64), masks_for(3, 64)
    co = co_token_target_ratio(model, x, m)
    r2r = r2r_cross_image_ratio(model, x, m)
    assert sorted(co) == [1, 2, 3, 4, 5, 6]
    assert set(r2r) == {"top", "stage 5", "stage 4", "stage 3", "stage 2"}
    for v in [*co.values(), *r2r.values()]:
        assert v == pytest.approx(1.0, abs=1e-4)
    ev = module_evidence(model, [(x, m), (x.flip(0), m)])
    assert ev["co_token_target_ratio"][6] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2 images"):
        r2r_cross_image_ratio(model, x[:1], m[:1])


def test_attention_on_the_target_raises_the_co_token_ratio():
    model = tiny_model().eval()
    x, m = group(2, 64), masks_for(2, 64)
    layer = model.decoder.stages[0].tokens.ctp2t.cross_attn
    hw = (64 // 16) ** 2
    target = torch.nn.functional.adaptive_avg_pool2d(m, 4).reshape(2, hw)

    def on_target(module, args, output):  # replace the recorded attention by "all on target"
        a = target / target.sum(dim=1, keepdim=True)
        module.last_attention = a[:, None, None].expand(2, 4, 2, hw).clone()

    h = layer.register_forward_hook(on_target)
    try:
        ratio = co_token_target_ratio(model, x, m)[6]
    finally:
        h.remove()
    assert ratio == pytest.approx(1.0 / target.mean().item(), rel=1e-4)  # 4x for a 1/4 target


def test_r2r_within_images_cuts_exactly_the_r2r_path():
    x = group(3, 64)
    y = x.clone()
    y[1:] = torch.randn_like(y[1:])
    model = tiny_model(use_cot2t=False).eval()
    with torch.no_grad():
        assert (model(x).co[0] - model(y).co[0]).abs().max() > 1e-3
        with r2r_within_images(model):
            cut_x, cut_y = model(x).co, model(y).co
        alone = model(x[:1]).co  # a group of one has no path between images anyway
    torch.testing.assert_close(cut_x[0], cut_y[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cut_x[:1], alone, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the hooks are gone afterwards
        assert (model(x).co[0] - model(y).co[0]).abs().max() > 1e-3


def test_cot2t_within_images_cuts_exactly_the_cot2t_path():
    x = group(3, 64)
    y = x.clone()
    y[1:] = torch.randn(y[1:].shape, generator=torch.Generator().manual_seed(7))
    model = tiny_model(use_r2r=False).eval()
    with torch.no_grad():  # the group token's map of image 0 depends on the other images
        assert (model(x, aux=True).group[0] - model(y, aux=True).group[0]).abs().max() > 1e-5
        with cot2t_within_images(model):
            cut_x, cut_y = model(x, aux=True), model(y, aux=True)
        alone = model(x[:1], aux=True)
    torch.testing.assert_close(cut_x.co[0], cut_y.co[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(cut_x.group[0], cut_y.group[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(cut_x.group[:1], alone.group, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cut_x.co[:1], alone.co, atol=1e-4, rtol=1e-4)


def test_group_sm_scores_a_perfect_and_an_empty_prediction():
    class Oracle(torch.nn.Module):
        def __init__(self, masks, value=None):
            super().__init__()
            self.masks, self.value = masks, value

        def predict(self, images):
            return self.masks if self.value is None else torch.full_like(self.masks, self.value)

    m = masks_for(2, 32)
    assert group_sm(Oracle(m), [(torch.zeros(2, 3, 32, 32), m)]) == pytest.approx(1.0)
    assert group_sm(Oracle(m, 0.0), [(torch.zeros(2, 3, 32, 32), m)]) < 0.5


def test_r2r_centering_init_starts_as_minus_the_group_mean_of_the_regions():
    torch.manual_seed(0)
    block = R2R(16, num_heads=4, drop_path=0.0, init="centering").eval()
    with torch.no_grad():
        block.attention.to_q.weight.zero_()  # uniform attention, as (nearly) at the start
        x = torch.randn(3, 16, 8, 8)
        regions = region_tokens(x, block.scales)  # (1, 3 * 46, 16)
        queries = x.permute(0, 2, 3, 1).reshape(1, -1, 16)
        out = block.attention(queries, regions, regions)
        expected = -block.attention.norm_v(regions).mean(dim=1, keepdim=True)
    torch.testing.assert_close(out, expected.expand_as(out), atol=1e-5, rtol=1e-5)
    official = R2R(16, num_heads=4, init="official")
    assert official.attention.proj.weight.abs().max() < 0.1  # truncated normal, std 0.02
    with pytest.raises(ValueError, match="R2R init"):
        R2R(16, init="zeros")
    assert DMTConfig.tiny().r2r_init == "centering" and DMTConfig.paper().r2r_init == "official"
    with pytest.raises(ValueError, match="r2r_init"):
        DMTConfig.tiny(r2r_init="zeros")


def test_module_lr_scale_puts_the_attention_modules_in_their_own_group():
    model = tiny_model()
    plain = model.param_groups(1e-3, 1.0)
    assert [g["name"] for g in plain] == ["encoder", "decoder"]
    scaled = model.param_groups(1e-3, 0.5, module_lr_scale=4.0)
    by_name = {g["name"]: g for g in scaled}
    assert by_name["modules"]["lr"] == pytest.approx(4e-3)
    assert by_name["encoder"]["lr"] == pytest.approx(5e-4)
    ids = {id(p) for p in by_name["modules"]["params"]}
    assert id(model.r2r.attention.to_q.weight) in ids
    assert id(model.decoder.stages[2].tokens.cot2t.gather.linear1.weight) in ids
    assert id(model.decoder.stages[2].fpn.conv[0].weight) not in ids
    n_all = sum(len(g["params"]) for g in plain)
    assert sum(len(g["params"]) for g in scaled) == n_all  # every parameter exactly once


def test_group_bn_anneal_draws_group_statistics_less_and_less_often():
    from dmt_core.train import TrainOptions, _step_bn_scope

    opts = TrainOptions(train_data=("x",), group_bn_anneal=0.5)
    early = [_step_bn_scope(opts, 0.05, s) for s in range(400)]
    late = [_step_bn_scope(opts, 0.4, s) for s in range(400)]
    assert early.count("group") > 300 and 40 < late.count("group") < 120
    assert all(_step_bn_scope(opts, 0.5, s) == "image" for s in range(100))
    assert early == [_step_bn_scope(opts, 0.05, s) for s in range(400)]  # resumable: by step
