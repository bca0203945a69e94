"""The DMT training loss (as in the official training script): 12 terms, each weight 1.

G is the ground truth binarised at 0.5, B = 1 - G; stage ground truths are G resized
by *nearest* down-sampling to each stage's map. With BCE = mean binary cross-entropy
on logits and the fuzzy IoU loss

    IoU(P, G) = 1 - mean_n [ sum_xy min(sigmoid(P), G) / sum_xy max(sigmoid(P), G) ]

the loss is

    final:   BCE(co, G) + BCE(bg, B) + BCE(group, G) + IoU(co, G) + IoU(group, G)
    stages:  mean over stages 6..2 of
             BCE(co_k, G_k) + BCE(bg_k, B_k) + BCE(group_k, G_k) + BCE(co1_k, G_k)
             + BCE(co2_k, G_k) + IoU(co_k, G_k) + IoU(group_k, G_k)

Without the background token (ablation) the two bg terms are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model.dmt import DMTOutput

FINAL_TERMS = ("bce_co", "bce_bg", "bce_group", "iou_co", "iou_group")
STAGE_TERMS = (
    "stage_bce_co",
    "stage_bce_bg",
    "stage_bce_group",
    "stage_bce_co1",
    "stage_bce_co2",
    "stage_iou_co",
    "stage_iou_group",
)
TERMS = FINAL_TERMS + STAGE_TERMS


def iou_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Fuzzy-Jaccard loss: logits, target (N, 1, h, w) -> scalar.

    The official has no epsilon; the denominator is clamped at 1e-12, which changes
    nothing unless every pixel's sigmoid underflows to 0 on an empty mask.
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    inter = torch.minimum(p, t).sum(dim=1)
    union = torch.maximum(p, t).sum(dim=1).clamp_min(1e-12)
    return 1.0 - (inter / union).mean()


def bce(logits: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def dmt_loss(
    out: DMTOutput, masks: Tensor, group_weight: float = 1.0
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and every term (detached scalars, for logging; unweighted).

    Args:
        out: model output with side outputs (``model(images, aux=True)``).
        masks: ground truth (N, 1, H, W), any values; binarised at 0.5.
        group_weight: weight of the four group-token terms in the total (the paper: 1).
    """
    if not out.stages:
        raise ValueError("the loss needs the per-stage maps: call the model with aux=True")
    if out.group is None:
        raise ValueError("the loss needs the group map: call the model with aux=True")
    g = (masks > 0.5).float()
    terms: dict[str, Tensor] = {
        "bce_co": bce(out.co, g),
        "bce_group": bce(out.group, g),
        "iou_co": iou_loss(out.co, g),
        "iou_group": iou_loss(out.group, g),
    }
    if out.bg is not None:
        terms["bce_bg"] = bce(out.bg, 1 - g)
    stage_terms: dict[str, list[Tensor]] = {k: [] for k in STAGE_TERMS}
    for s in out.stages:
        gk = F.interpolate(g, size=s.co.shape[-2:], mode="nearest")
        stage_terms["stage_bce_co"].append(bce(s.co, gk))
        stage_terms["stage_bce_group"].append(bce(s.group, gk))
        stage_terms["stage_bce_co1"].append(bce(s.co_after_co_proto, gk))
        stage_terms["stage_bce_co2"].append(bce(s.co_after_bg_proto, gk))
        stage_terms["stage_iou_co"].append(iou_loss(s.co, gk))
        stage_terms["stage_iou_group"].append(iou_loss(s.group, gk))
        if s.bg is not None:
            stage_terms["stage_bce_bg"].append(bce(s.bg, 1 - gk))
    for k, values in stage_terms.items():
        if values:
            terms[k] = torch.stack(values).mean()
    total = torch.stack([v * group_weight if "group" in k else v for k, v in terms.items()]).sum()
    return total, {k: v.detach() for k, v in terms.items()}
