"""Dense ASPP on the deepest encoder feature (the official ``DASPPBlock``).

With C = 512 (paper): adapt 1x1 C->C, a global-average branch, three densely
connected dilated branches (dilations 2, 4, 8; each 1x1 in->C/2 then 3x3 dilated
C/2->192) whose outputs are *prepended* to a running stack, and a 1x1 fusion of
[global, stack] (512 + 1088 = 1600 channels) back to C. Every conv is bias-free and
followed by BN and ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import c2_xavier_init, conv_bn_act


class DASPPBranch(nn.Module):
    """1x1 reduction then a dilated 3x3: (N, C_in, h, w) -> (N, C_out, h, w)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, dilation: int) -> None:
        super().__init__()
        self.reduce = conv_bn_act(in_ch, mid_ch, 1)
        self.dilated = conv_bn_act(mid_ch, out_ch, 3, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.dilated(self.reduce(x))


class DASPP(nn.Module):
    """(N, C, h, w) -> (N, C, h, w) multi-rate context.

    Args:
        dim: input and output width C.
        branch_dim: output width of each dilated branch (ceil(C / 3 / 32) * 32).
        dilations: one branch per dilation, applied densely in this order.
    """

    def __init__(self, dim: int, branch_dim: int, dilations: Sequence[int] = (2, 4, 8)) -> None:
        super().__init__()
        self.adapt = conv_bn_act(dim, dim, 1)
        self.branches = nn.ModuleList(
            DASPPBranch(dim + i * branch_dim, dim // 2, branch_dim, d)
            for i, d in enumerate(dilations)
        )
        self.fuse = conv_bn_act(2 * dim + len(dilations) * branch_dim, dim, 1)
        c2_xavier_init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.adapt(x)
        stack = x
        for branch in self.branches:
            stack = torch.cat([branch(stack), stack], dim=1)  # newest branch first
        glob = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
        return self.fuse(torch.cat([glob, stack], dim=1))
