"""Token prediction head (the official ``Sal_Pred_with_Tok``).

A token t becomes a map over a feature F by a dot product with a transformed token:

    h(t)      = LN_b(W2 relu(W1 LN_a(t) + b1) + b2)
    map[x, y] = <h(t), F[:, x, y]> / sqrt(C)      # a batched matmul over C

F is not normalised; each image's tokens are dotted with that image's features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Linear, trunc_normal_init


class TokenHead(nn.Module):
    """tokens (N, T, C), features (N, C, h, w) -> logits (N, T, h, w)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = Linear(dim, dim)
        self.linear2 = Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.scale = dim**-0.5
        trunc_normal_init(self)

    def forward(self, tokens: Tensor, features: Tensor) -> Tensor:
        h = self.norm2(self.linear2(F.relu(self.linear1(self.norm1(tokens))))) * self.scale
        n, c, height, width = features.shape
        if features.is_contiguous(memory_format=torch.channels_last):
            # (N, hw, C) is a free view of a channels-last map, and the gradient of the
            # product comes back channels-last too; einsum's backward hands the feature a
            # contiguous gradient, which made the ReLU, BN and conv backward of the
            # full-resolution stage run on mixed layouts (5-7 % of a paper step)
            flat = features.permute(0, 2, 3, 1).reshape(n, height * width, c)
            out = _MapProduct.apply(flat, h)  # (N, hw, T)
            return out.view(n, height, width, -1).permute(0, 3, 1, 2)
        return torch.einsum("ntc,nchw->nthw", h, features)


class _MapProduct(torch.autograd.Function):
    """``flat (N, hw, C) @ h (N, T, C)^T -> (N, hw, T)``, with the token gradient taken as
    ``grad^T @ flat`` (N, T, C).

    The same products as ``torch.bmm(flat, h.transpose(1, 2))``; only the orientation of
    the token gradient differs. Autograd's bmm backward computes it as
    ``flat^T (N, C, hw) @ grad (N, hw, T)``, whose operands are both transposed views
    here; on a CPU that product took 60-70 ms at full resolution (4 x 128 px, C = 256)
    against about 5 ms for ``grad^T @ flat``. Under autocast the backward computes in
    the gradient's dtype and returns each gradient in its input's dtype, as autocast's
    own casts do.
    """

    @staticmethod
    def forward(ctx, flat: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(flat, h)
        return torch.bmm(flat, h.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        flat, h = ctx.saved_tensors
        dtype = grad.dtype
        grad_flat = grad_h = None
        if ctx.needs_input_grad[0]:
            grad_flat = torch.bmm(grad, h.to(dtype)).to(flat.dtype)  # (N, hw, C)
        if ctx.needs_input_grad[1]:
            grad_h = torch.bmm(grad.transpose(1, 2), flat.to(dtype)).to(h.dtype)  # (N, T, C)
        return grad_flat, grad_h
