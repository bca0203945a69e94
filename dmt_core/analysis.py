"""Where does a DMT model find the co-salient object? Measurements on labelled groups.

Each function takes a model in eval mode and one labelled group (``images`` (N, 3, S, S)
ImageNet-normalised, ``masks`` (N, 1, S, S) in {0, 1}) or a dataset folder, and returns
plain numbers, so notebook 08 and ``benchmarks/module_evidence.py`` share them:

* :func:`co_token_target_ratio` -- how much of the co-saliency token's pixel attention
  (CtP2T, per stage) lands on the target, relative to uniform attention (1.0).
* :func:`r2r_cross_image_ratio` -- how much of a target pixel's R2R attention goes to
  the target regions of the *other* images, relative to uniform attention (1.0).
* :func:`sm_by_group_size`, :func:`foreign_image_probability` -- behaviour that only
  group reasoning explains: groups cut into smaller ones, an image of another group.
* :func:`r2r_within_images`, :func:`cot2t_within_images` -- inference-time cuts of
  one module's path between the images (context managers), and :func:`group_sm` to
  score a model with and without them.

And the tools the notebooks share to look inside a model:

* :func:`record_io` -- a context manager that keeps the inputs and output of named
  modules during a forward (the attention-recording and token-state hooks);
* :func:`multihead_attention` -- ``nn.MultiheadAttention`` computed step by step, with
  the attention weights of every head (notebook 03 builds it by hand and checks it
  against this one);
* :func:`r2r_layers` -- the R2R blocks of a model by name;
* :func:`region_density` -- R2R's region weights of one image spread over its pixels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .data.chunks import load_for_inference
from .data.groups import GroupDataset
from .metrics import score

Group = tuple[Tensor, Tensor]  # images (N, 3, S, S), masks (N, 1, S, S)


# ----------------------------------------------------------------- looking inside
@contextlib.contextmanager
def record_io(modules: dict[str, torch.nn.Module], store: dict[str, Any]) -> Iterator[None]:
    """Within the block, every forward of ``modules[name]`` stores ``(args, output)`` in
    ``store[name]`` (tensors detached; the newest call wins). Hooks are removed on exit.

    >>> seen = {}
    >>> with record_io({"top": model.r2r}, seen):
    ...     model(images)
    >>> x, y = seen["top"][0][0], seen["top"][1]   # R2R's input and output (N, C, h, w)
    """

    def hook(name: str) -> Any:
        def keep(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
            store[name] = (_detach(args), _detach(output))

        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, tuple | list):
        return type(x)(_detach(v) for v in x)
    return x


def multihead_attention(
    mha: torch.nn.MultiheadAttention, q_in: Tensor, k_in: Tensor, v_in: Tensor
) -> tuple[Tensor, Tensor]:
    """``nn.MultiheadAttention`` (batch-first, no mask, no dropout) written out.

    q_in (B, Lq, C), k_in and v_in (B, Lk, C) -> output (B, Lq, C) and the weights of
    every head (B, heads, Lq, Lk): softmax(q k^T / sqrt(d)) per head of width d = C / heads.
    """
    c = q_in.shape[-1]
    heads = mha.num_heads
    d = c // heads
    wq, wk, wv = mha.in_proj_weight.chunk(3)
    bq, bk, bv = mha.in_proj_bias.chunk(3)
    q = (q_in @ wq.T + bq).unflatten(-1, (heads, d)).transpose(1, 2)  # (B, heads, Lq, d)
    k = (k_in @ wk.T + bk).unflatten(-1, (heads, d)).transpose(1, 2)  # (B, heads, Lk, d)
    v = (v_in @ wv.T + bv).unflatten(-1, (heads, d)).transpose(1, 2)  # (B, heads, Lk, d)
    w = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1)  # (B, heads, Lq, Lk)
    return mha.out_proj((w @ v).transpose(1, 2).flatten(2)), w


def r2r_layers(model: Any) -> dict[str, Any]:
    """name -> R2R block: ``"top"`` (after DASPP), then ``"stage 5"`` .. ``"stage 2"``."""
    layers = {"top": model.r2r} if model.r2r is not None else {}
    layers.update({f"stage {s.stage}": s.r2r for s in model.decoder.stages if s.r2r is not None})
    return layers


def region_density(weights: Tensor, size: int, pools: Sequence[int] = (1, 3, 6)) -> Tensor:
    """One image's R2R region weights (sum of p*p over ``pools``: 46) -> (size, size).

    Each region's weight is spread evenly over the pixels it pools and scaled by the
    pixel count (``size**2``): a map whose mean is the image's share of the attention
    times the number of pools, 1.0 everywhere for uniform attention over one image.
    """
    out = torch.zeros(size, size)
    start = 0
    for p in pools:
        block = weights[start : start + p * p].reshape(1, 1, p, p).float() * p * p
        out += F.interpolate(block, size=(size, size), mode="nearest")[0, 0]
        start += p * p
    return out


def labelled_groups(root: str | Path, input_size: int) -> Iterator[tuple[str, Tensor, Tensor]]:
    """``(name, images, masks)`` of every group of a dataset with masks, at ``input_size``."""
    for g in GroupDataset(Path(root), require_masks=True):
        imgs, masks = [], []
        for i in range(len(g)):
            img, mask = g.load(i)
            imgs.append(load_for_inference(img, input_size))
            m = torch.from_numpy(mask.astype(np.float32))[None, None]
            masks.append(F.interpolate(m, size=(input_size, input_size), mode="nearest")[0])
        yield g.name, torch.stack(imgs), torch.stack(masks)


@torch.no_grad()
def co_token_target_ratio(model: Any, images: Tensor, masks: Tensor) -> dict[int, float]:
    """Per decoder stage (6..1): target mass of the co token's pixel attention / uniform.

    The co token of image n attends over the h6 x w6 memory pixels (CtP2T, averaged over
    heads); its target mass is sum_j A[n, j] * t[n, j] with t the target fraction of
    memory pixel j. Uniform attention would give mean_j t[n, j]. Returned: the ratio of
    the two sums over the images (1.0 = no preference, 2.0 = twice the target share).
    """
    model.capture_attention(True)
    try:
        model(images)
        layers = [(s.stage, s.tokens.ctp2t.cross_attn) for s in model.decoder.stages]
        out = {}
        for stage, layer in layers:
            attn = layer.last_attention  # (N, g, T, HW)
            n, _, _, hw = attn.shape
            side = int(round(hw**0.5))
            t = F.adaptive_avg_pool2d(masks.float(), side).reshape(n, hw)
            a = attn[:, :, 0].mean(dim=1)  # co token, heads averaged: (N, HW)
            out[stage] = float((a * t).sum() / t.mean(dim=1).sum().clamp_min(1e-8))
        return out
    finally:
        model.capture_attention(False)


@torch.no_grad()
def r2r_cross_image_ratio(model: Any, images: Tensor, masks: Tensor) -> dict[str, float]:
    """Per R2R block: target pixels' attention to other images' target regions / uniform.

    For a query cell q of image n with target fraction >= 0.5 and a region k of another
    image with target fraction r_k (regions: the 1x1, 3x3, 6x6 average pools), the share
    sum_k A[q, k] r_k is compared with what uniform attention (1 / K for each of the K
    regions) gives, sum_k r_k / K; the ratio of the sums over all target cells is returned
    (1.0 = no preference; heads averaged). Needs N >= 2.
    """
    n = images.shape[0]
    if n < 2:
        raise ValueError("the cross-image share needs a group of at least 2 images")
    blocks = list(r2r_layers(model).items())
    model.capture_attention(True)
    try:
        model(images)
        out = {}
        for name, block in blocks:
            attn = block.attention.last_attention[0].mean(dim=0)  # (N*q, N*R)
            q_per, k_total = attn.shape[0] // n, attn.shape[1]
            side = int(round(q_per**0.5))
            qt = F.adaptive_avg_pool2d(masks.float(), side).reshape(n, q_per)
            rt = torch.cat(
                [F.adaptive_avg_pool2d(masks.float(), s).reshape(n, -1) for s in block.scales],
                dim=1,
            )  # (N, R) in the order of region_tokens
            r = rt.shape[1]
            a = attn.reshape(n, q_per, n, r)
            other = 1.0 - torch.eye(n)  # (N_query, N_key)
            weight = other[:, None, :, None] * rt[None, None]  # (N, 1, N, R)
            share = (a * weight).sum(dim=(2, 3))  # (N, q)
            uniform = weight.sum(dim=(2, 3)) / k_total  # (N, 1)
            sel = qt >= 0.5
            if not sel.any():
                continue
            num = share[sel].sum()
            den = uniform.expand_as(share)[sel].sum().clamp_min(1e-8)
            out[name] = float(num / den)
        return out
    finally:
        model.capture_attention(False)


@contextlib.contextmanager
def r2r_within_images(model: Any) -> Iterator[None]:
    """Inside the block, every R2R block attends to the regions of each pixel's own image.

    Each image then goes through R2R as a group of one; nothing else changes, so the
    difference to the normal output is what R2R carries between the images.
    """
    from .model.r2r import R2R

    def per_image(module: Any, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return torch.cat([R2R.forward(module, x[None]) for x in args[0]])

    hooks = [block.register_forward_hook(per_image) for block in r2r_layers(model).values()]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@contextlib.contextmanager
def cot2t_within_images(model: Any) -> Iterator[None]:
    """Inside the block, CoT2T runs on each image alone: every co token has a group of one.

    Each image keeps a group token of its own through the stages, gathered from its own
    co token only; R2R and everything else are unchanged, so the difference to the
    normal output is what CoT2T carries between the images.
    """
    from .model.cot2t import CoT2T

    def per_image(module: Any, args: tuple[Tensor, ...], output: Any) -> tuple[Tensor, Tensor]:
        co, co_embed, group, group_embed = args
        group = group.expand(co.shape[0], -1)
        outs = [
            CoT2T.forward(module, co[i : i + 1], co_embed[i : i + 1], group[i : i + 1], group_embed)
            for i in range(co.shape[0])
        ]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    blocks = [s.tokens.cot2t for s in model.decoder.stages if s.tokens.cot2t is not None]
    hooks = [b.register_forward_hook(per_image) for b in blocks]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def group_sm(model: Any, groups: Iterable[Group]) -> float:
    """S-measure over ``(images, masks)`` groups, each predicted as one group."""
    preds: list[np.ndarray] = []
    gts: list[np.ndarray] = []
    for images, masks in groups:
        preds += [p[0].cpu().numpy() for p in model.predict(images)]
        gts += [m[0].cpu().numpy() > 0.5 for m in masks]
    return score(preds, gts)["Sm"]


@torch.no_grad()
def sm_by_group_size(
    model: Any, root: str | Path, sizes: Sequence[int | None] = (None, 1, 2)
) -> dict[str, float]:
    """S-measure when every group is cut into consecutive sub-groups of ``size`` images.

    ``None`` keeps the whole group (chunks of 25, as inference does). A model whose
    group reasoning works scores about the same with 2 images as with the whole group;
    one image alone leaves it nothing to compare.
    """
    s = model.config.input_size
    preds: dict[str, list[np.ndarray]] = {str(k): [] for k in sizes}
    gts: list[np.ndarray] = []
    for _, images, masks in labelled_groups(root, s):
        gts += [m[0].numpy() > 0.5 for m in masks]
        n = len(images)
        for k in sizes:
            step = 25 if k is None else k
            for i in range(0, n, step):
                part = images[i : i + step]
                preds[str(k)] += [p[0].numpy() for p in model.predict(part)]
    return {k: score(v, gts)["Sm"] for k, v in preds.items()}


@torch.no_grad()
def foreign_image_probability(model: Any, root: str | Path, max_groups: int = 20) -> float:
    """Mean predicted probability over an image of another group added to a group.

    Group g gets the first image of group g+1 appended; the model should find nothing
    co-salient in it (its own objects are not in the other images).
    """
    groups = list(labelled_groups(root, model.config.input_size))[:max_groups]
    if len(groups) < 2:
        raise ValueError(f"{root}: the foreign-image test needs at least 2 groups")
    means = []
    for k, (_, images, _) in enumerate(groups):
        foreign = groups[(k + 1) % len(groups)][1][:1]
        probs = model.predict(torch.cat([images[:24], foreign]))
        means.append(float(probs[-1].mean()))
    return float(np.mean(means))


def module_evidence(
    model: Any, groups: str | Path | Iterable[Group], max_groups: int = 20
) -> dict[str, Any]:
    """Both attention ratios averaged over groups (see the two functions above).

    ``groups``: a dataset folder with masks, or an iterable of ``(images, masks)``
    (e.g. ``[g.tensors(128) for g in synthetic_groups]``).
    """
    if isinstance(groups, (str, Path)):
        groups = ((x, m) for _, x, m in labelled_groups(groups, model.config.input_size))
    co: dict[int, list[float]] = {}
    r2r: dict[str, list[float]] = {}
    for k, (images, masks) in enumerate(groups):
        if k >= max_groups:
            break
        for stage, v in co_token_target_ratio(model, images, masks).items():
            co.setdefault(stage, []).append(v)
        for name, v in r2r_cross_image_ratio(model, images, masks).items():
            r2r.setdefault(name, []).append(v)
    return {
        "co_token_target_ratio": {k: float(np.mean(v)) for k, v in co.items()},
        "r2r_cross_image_ratio": {k: float(np.mean(v)) for k, v in r2r.items()},
    }


def format_evidence(evidence: dict[str, Any]) -> str:
    """The two ratios of :func:`module_evidence` as four printable lines."""
    co, r2r = evidence["co_token_target_ratio"], evidence["r2r_cross_image_ratio"]
    return "\n".join([
        "co token attention on the target / uniform, per stage:",
        "  " + "  ".join(f"stage {k}: {v:.2f}" for k, v in co.items()),
        "R2R target pixels -> target regions of the other images / uniform, per block:",
        "  " + "  ".join(f"{k}: {v:.2f}" for k, v in r2r.items()),
    ])  # fmt: skip
