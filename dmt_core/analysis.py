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

from .data.groups import GroupDataset
from .data.inference import load_for_inference, to_uint8

Group = tuple[Tensor, Tensor]  # images (N, 3, S, S), masks (N, 1, S, S)


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


def _r2r_blocks(model: Any) -> list[tuple[str, Any]]:
    blocks = [("encoder", model.r2r)] if model.r2r is not None else []
    blocks += [(f"stage {s.stage}", s.r2r) for s in model.decoder.stages if s.r2r is not None]
    return blocks


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
    blocks = _r2r_blocks(model)
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

    hooks = [block.register_forward_hook(per_image) for _, block in _r2r_blocks(model)]
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
    return _sm(preds, gts)


def _sm(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    from py_sod_metrics import Smeasure

    sm = Smeasure()
    for p, g in zip(preds, gts, strict=True):
        sm.step(pred=to_uint8(p), gt=g.astype(np.uint8) * 255)
    return float(sm.get_results()["sm"])


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
    return {k: _sm(v, gts) for k, v in preds.items()}


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
