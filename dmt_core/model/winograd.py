"""Winograd F(4x4, 3x3): the large 3x3 convolutions of a training step with 4x fewer products.

A 3x3 convolution's output tile of 4 x 4 pixels needs 144 multiply-adds per channel
pair computed directly, but only 36 after Lavin and Gray's transforms ("Fast Algorithms
for Convolutional Neural Networks", CVPR 2016; what cuDNN and oneDNN call Winograd):
for each 6 x 6 input tile d (stride 4 over the zero-padded map) and the kernel g,

    V = B^T d B,   U = G g G^T,   M[a, b] = sum_c V[a, b, c] U[a, b, c, k],   Y = A^T M A

so the channel sums become 36 matrix products of (tiles, C_in) by (C_in, C_out), a
quarter of the direct sums; the transforms are additions with small constants. The
result equals the convolution's in exact arithmetic; in float32 its rounding error is
larger than a direct convolution's (measured: 0.9e-5 of the output's largest value
against 0.2e-5; ``tests/test_winograd.py`` bounds it).

The same algebra gives the two gradients. The input gradient of a stride-1, padding-1
convolution is the convolution of the output gradient with the flipped, transposed
kernel; the kernel's gradient is ``dU[a, b] = sum_tiles V[a, b]^T dM[a, b]`` with
``dM = A dY A^T`` per output tile, then ``dg = G^T dU G``.

The tiles are processed in chunks of about :data:`CHUNK_TILES` so that a chunk's
transforms stay in the CPU's cache: done on whole maps, the transforms' memory traffic
cost as much as the products saved (measured on an AVX2 AMD EPYC, 4 x 256 x 128 x 128:
0.90 s unchunked, 0.38-0.45 s chunked, 0.58-0.66 s oneDNN's direct convolution).
:func:`dmt_core.model.layers.conv2d` decides where this path is taken.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))  # fmt: skip
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))  # fmt: skip
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))

#: tiles (of 4 x 4 output pixels) per chunk: 512 tiles of 256 channels keep a chunk's
#: transformed tiles (36 x 512 x 256 floats, 19 MB) within a 32 MB L3 cache
CHUNK_TILES = 512


def _const(rows: tuple, like: Tensor) -> Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _onednn(t: Tensor, asked: bool) -> bool:
    """Whether the channel products go through oneDNN: where asked (see
    :data:`dmt_core.model.layers.WINOGRAD_ONEDNN`) and oneDNN can: float32 CPU tensors."""
    return (
        asked
        and t.dtype == torch.float32
        and t.device.type == "cpu"
        and torch.backends.mkldnn.enabled
    )


def _rows_as_map(rows: Tensor) -> Tensor:
    """A row-major matrix (T, C) as the channels-last map (1, C, T, 1): a free view."""
    return rows.view(1, rows.shape[0], 1, rows.shape[1]).permute(0, 3, 1, 2)


def _products(u: Tensor, onednn: bool) -> Callable[[Tensor], Tensor]:
    """``v -> M`` with M[a] = V[a] @ U[a] for the 36 points: v (36, T, C_in) contiguous,
    u (36, C_in, C_out) -> (36, T, C_out): ``torch.bmm``, or per point a oneDNN 1x1
    convolution of the rows (a row-major matrix is a channels-last map)."""
    if not _onednn(u, onednn):
        return lambda v: torch.bmm(v, u)
    w = u.transpose(1, 2).contiguous()[..., None, None]  # (36, C_out, C_in, 1, 1)

    def run(v: Tensor) -> Tensor:
        m = v.new_empty(36, v.shape[1], u.shape[2])
        for a in range(36):
            y = torch.nn.functional.conv2d(_rows_as_map(v[a]), w[a])  # (1, C_out, T, 1)
            m[a].copy_(y.permute(0, 2, 3, 1).view(v.shape[1], -1))
        return m

    return run


def _add_kernel_products(du: Tensor, dm: Tensor, v: Tensor, onednn: bool) -> None:
    """du[a] += dM[a]^T V[a]: du (36, C_out, C_in), dm (36, T, C_out), v (36, T, C_in),
    ``baddbmm_`` or per point a oneDNN 1x1 convolution's weight gradient."""
    if not _onednn(v, onednn):
        du.baddbmm_(dm.transpose(1, 2), v)
        return
    k, c = du.shape[1], du.shape[2]
    like = v.new_empty(k, c, 1, 1)  # the weight whose gradient is asked: shape only
    for a in range(36):
        _, gw, _ = torch.ops.aten.convolution_backward(
            _rows_as_map(dm[a]), _rows_as_map(v[a]), like, None,
            [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False],
        )  # fmt: skip
        du[a] += gw.reshape(k, c)


def weight_transform(weight: Tensor) -> Tensor:
    """U = G g G^T: weight (C_out, C_in, 3, 3) -> (36, C_in, C_out), computed in float64."""
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,bj,kcij->abck", g, g, weight.double())
    return u.reshape(36, weight.shape[1], weight.shape[0]).to(weight.dtype)


def _chunks(n: int, th: int, tw: int):
    """(image, first tile row, tile rows) of each chunk, in the tiles' row-major order."""
    band = max(1, CHUNK_TILES // tw)
    for i in range(n):
        for t0 in range(0, th, band):
            yield i, t0, min(band, th - t0)


def _input_tiles(xp: Tensor, i: int, t0: int, b: int, bt: Tensor) -> Tensor:
    """V = B^T d B of the 6 x 6 tiles of image i, tile rows t0 .. t0 + b - 1.

    xp (N, H + 2, W + 2, C): the zero-padded map, channels last -> (36, b * W / 4, C).
    """
    wp, c = xp.shape[2], xp.shape[3]
    tw = (wp - 2) // 4
    r0 = 4 * t0
    rows = torch.stack([xp[i, r0 + a : r0 + a + 4 * b : 4] for a in range(6)])  # (6, b, W+2, C)
    t = (bt @ rows.view(6, -1)).view(6, b, wp, c)
    cols = torch.stack([t[:, :, j : j + 4 * tw : 4] for j in range(6)], 1)  # (6, 6, b, tw, C)
    return torch.matmul(bt, cols.view(6, 6, -1)).view(36, b * tw, c)


def conv3x3(
    x: Tensor, u: Tensor, bias: Tensor | None = None, keep: bool = False, onednn: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """The 3x3, stride-1, padding-1 convolution of x by the transformed kernel u.

    x (N, H, W, C_in) channels last (a row-major NHWC tensor), H and W multiples of 4;
    u (36, C_in, C_out) from :func:`weight_transform`; bias (C_out,) or None
    -> y (N, H, W, C_out), and with ``keep`` also every tile's V (36, N H W / 16, C_in),
    which the kernel gradient needs. ``onednn``: the channel products as oneDNN 1x1
    convolutions (float32 CPU tensors) instead of ``torch.bmm``.
    """
    n, h, w, c = x.shape
    th, tw = h // 4, w // 4
    bt, at = _const(_BT, x), _const(_AT, x)
    xp = torch.nn.functional.pad(x, (0, 0, 1, 1, 1, 1))
    y = x.new_empty(n, h, w, u.shape[2])
    kept = x.new_empty(36, n * th * tw, c) if keep else None
    products = _products(u, onednn)
    for i, t0, b in _chunks(n, th, tw):
        v = _input_tiles(xp, i, t0, b, bt)
        if kept is not None:
            first = (i * th + t0) * tw
            kept[:, first : first + b * tw] = v
        m = products(v).view(6, -1)  # (36, b tw, C_out): M[a, l] for every tile
        ys = torch.matmul(at, (at @ m).view(4, 6, -1))  # (4 rows, 4 columns, b tw C_out)
        ys = ys.view(4, 4, b, tw, -1).permute(2, 0, 3, 1, 4)
        out = y[i, 4 * t0 : 4 * (t0 + b)].view(b, 4, tw, 4, -1)
        if bias is None:
            out.copy_(ys)
        else:
            torch.add(ys, bias, out=out)
    return (y, kept) if keep else y


def kernel_grad(v: Tensor, grad: Tensor, onednn: bool = False) -> Tensor:
    """The kernel gradient from the kept tiles v (36, N H W / 16, C_in) and the output
    gradient grad (N, H, W, C_out) channels last -> (C_out, C_in, 3, 3); ``onednn`` as
    in :func:`conv3x3` (the sums as oneDNN 1x1 weight gradients, else ``baddbmm_``)."""
    n, h, w, k = grad.shape
    th, tw = h // 4, w // 4
    a = _const(_AT, grad).t().contiguous()  # A (6, 4)
    du = grad.new_zeros(36, k, v.shape[2])  # dU[a]^T
    for i, t0, b in _chunks(n, th, tw):
        r0 = 4 * t0
        rows = torch.stack([grad[i, r0 + r : r0 + 4 * b : 4] for r in range(4)])  # (4, b, W, K)
        t = (a @ rows.view(4, -1)).view(6, b, w, k)
        cols = torch.stack([t[:, :, s::4] for s in range(4)], 1)  # (6, 4, b, tw, K)
        dm = torch.matmul(a, cols.view(6, 4, -1)).view(36, b * tw, k)
        first = (i * th + t0) * tw
        _add_kernel_products(du, dm, v[:, first : first + b * tw], onednn)
    g = torch.tensor(_G, dtype=torch.float64, device=grad.device)
    dw = torch.einsum("ai,bj,abkc->kcij", g, g, du.double().view(6, 6, *du.shape[1:]))
    return dw.to(grad.dtype)


def usable(x: Tensor) -> bool:
    """Whether :class:`WinogradConv3x3` takes an input (N, C, H, W): H, W multiples of 4."""
    return x.shape[2] % 4 == 0 and x.shape[3] % 4 == 0


class WinogradConv3x3(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, padding=1)`` and its gradients through Winograd
    F(4x4, 3x3); x (N, C_in, H, W) channels-last, H and W multiples of 4; ``onednn``
    (a bool): the channel products through oneDNN (:func:`conv3x3`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, onednn: bool) -> Tensor:  # type: ignore[override]
        need_v = ctx.needs_input_grad[1]
        u = weight_transform(weight)
        out = conv3x3(x.permute(0, 2, 3, 1), u, bias, keep=need_v, onednn=onednn)
        y, v = out if need_v else (out, None)
        ctx.save_for_backward(weight, v)
        ctx.has_bias, ctx.onednn = bias is not None, onednn
        return y.permute(0, 3, 1, 2)  # (N, C_out, H, W), channels-last

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        weight, v = ctx.saved_tensors
        g = grad.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C_out); free if channels-last
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flipped = weight.flip(2, 3).transpose(0, 1)  # (C_in, C_out, 3, 3)
            u = weight_transform(flipped)
            grad_x = conv3x3(g, u, onednn=ctx.onednn).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            grad_w = kernel_grad(v, g, ctx.onednn).contiguous(memory_format=torch.channels_last)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum((0, 1, 2))
        return grad_x, grad_w, grad_b, None
