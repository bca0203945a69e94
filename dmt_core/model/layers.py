"""Small building blocks shared by the DMT components.

* :class:`GroupBatchNorm2d` -- BatchNorm that can normalise with the group's own
  statistics at inference, the behaviour of the official test script.
* :func:`conv_bn_act` -- conv + BN (+ ReLU), torchvision's ``Conv2dNormActivation``.
* :class:`Linear` -- ``nn.Linear`` whose large CPU products run on oneDNN.
* :class:`Conv2d` -- ``nn.Conv2d`` whose 3x3 weight gradient can be taken by matmuls.
* :func:`trunc_normal_init` -- the official init of transformer Linears and LayerNorms.
"""

from __future__ import annotations

import sys
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torchvision.ops.misc import Conv2dNormActivation

from . import winograd


class GroupBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose statistics can be the group's or each image's own.

    A DMT batch is one group of related images, so a plain BatchNorm in training mode
    mixes the images: its mean and variance are group statistics. That is itself a
    channel of information between the images (a channel that fires in every image
    of the group has a different mean and spread than one that fires in a single
    image), and models trained this way rely on it.

    * ``use_group_stats`` (inference): in eval mode, normalise with the batch's own
      statistics instead of the running ones, the behaviour of the official test
      script (which never calls ``eval()``), without updating the running statistics.
    * ``per_image``: statistics of each image alone, in training and with
      ``use_group_stats``; no information crosses the images through normalisation.
      ``image_groups`` = 0 takes them per channel (instance normalisation with BN's
      affine map); G > 0 over G groups of channels, as ``GroupNorm(G)`` does (G = 1:
      one mean and variance per image). Per-channel statistics erase what a channel's
      level says about the image (an absent object's channel is stretched to unit
      variance like a present one's); shared statistics keep it.
    * ``frozen``: always the running statistics (a BN of a frozen pretrained layer).
    """

    use_group_stats: bool = False
    per_image: bool = False
    image_groups: int = 0
    frozen: bool = False

    def forward(self, x: Tensor) -> Tensor:
        if self.frozen:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if self.per_image and (self.training or self.use_group_stats):
            if self.training:
                self._track_per_image_stats(x)
            # group_norm with one group per channel is instance norm; unlike
            # F.instance_norm it keeps a channels-last input channels-last (1.7x faster steps)
            groups = self.image_groups or x.shape[1]
            return F.group_norm(x, groups, self.weight, self.bias, self.eps)
        if self.training or not self.use_group_stats:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    @torch.no_grad()
    def _track_per_image_stats(self, x: Tensor) -> None:
        """Running statistics as ``F.instance_norm`` keeps them: the mean over the images
        of each image's channel mean and unbiased variance."""
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        if self.running_mean is None or self.running_var is None:
            return
        var, mean = torch.var_mean(x.detach().float(), dim=(2, 3), correction=1)
        m = self.momentum if self.momentum is not None else 0.1
        self.running_mean.lerp_(mean.mean(0).to(self.running_mean.dtype), m)
        self.running_var.lerp_(var.mean(0).to(self.running_var.dtype), m)


class ConvBNAct(Conv2dNormActivation):
    """Bias-free conv ("same" padding) -> BN -> optional ReLU; keys ``0.weight``, ``1.*``.

    In eval mode with running statistics the BN is folded into the conv weights on the
    fly (``W * gamma / sigma``, bias ``beta - mu * gamma / sigma``): one pass over the
    feature map instead of three, the same math up to float rounding.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self[0].__class__ = Conv2d  # same parameters and init; see conv2d

    def forward(self, x: Tensor) -> Tensor:
        conv, bn = self[0], self[1]
        if self.training or getattr(bn, "use_group_stats", False):
            return super().forward(x)
        weight, bias = fold_bn(conv.weight, bn)
        x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return F.relu(x, inplace=True) if len(self) > 2 else x


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as an affine map: bn(x) = x * scale + shift, both (C,)."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_bn(weight: Tensor, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Conv weight (C_out, ...) and an eval-mode BN -> folded (weight, bias)."""
    scale, shift = bn_scale_shift(bn)
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), shift


def conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel_size: int = 1,
    dilation: int = 1,
    relu: bool = True,
) -> ConvBNAct:
    """Bias-free conv -> :class:`GroupBatchNorm2d` -> optional ReLU."""
    return ConvBNAct(
        in_ch,
        out_ch,
        kernel_size=kernel_size,
        dilation=dilation,
        norm_layer=GroupBatchNorm2d,
        activation_layer=nn.ReLU if relu else None,
        inplace=True,
        bias=False,
    )


def slow_onednn_weight_grad() -> bool:
    """Whether this CPU is one where oneDNN's weight gradients of channels-last maps are
    slow: an x86 CPU whose best instruction set is AVX2 (no AVX-512).

    oneDNN 3.12 (PyTorch 2.14) computes them with brgemm kernels on AVX-512, but with its
    older direct ``jit:avx2`` kernel on AVX2 (``ONEDNN_VERBOSE=1`` names them). On the
    AVX2 AMD EPYC this was measured on, that kernel took 2.9 s for the full-resolution
    3x3 convolution of a paper step (4 x 256 x 128 x 128), 4x the same sums as
    matmuls, and 3-10x MKL's matmul for the weight gradient of a 1x1 convolution; on the
    AVX-512 AMD EPYC of the earlier measurements oneDNN's kernels were the fastest.
    """
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


#: :func:`linear` through oneDNN: ``True``, ``False``, or ``None`` = unless
#: :func:`slow_onednn_weight_grad` (there a 1x1 convolution's backward loses to MKL)
ONEDNN_LINEAR: bool | None = None

#: float32 CPU inputs of :class:`Linear` with at least this many rows run as a oneDNN
#: 1x1 convolution (below it the call overhead outweighs the gain; ``sys.maxsize`` turns
#: the path off)
ONEDNN_LINEAR_MIN_ROWS = 128


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``: x (..., C_in), weight (C_out, C_in) -> (..., C_out).

    On the CPU PyTorch multiplies float32 matrices with MKL's sgemm, which on the
    project's AVX-512 AMD EPYC reached about 183 GFLOP/s, against 345-437 GFLOP/s for
    the same product as a oneDNN convolution (``benchmarks/bench_train.py --levers``
    prints both; not measured on an Intel CPU, where MKL may do better). A row-major
    (rows, C_in) matrix is already the channels-last map (1, C_in, rows, 1), so a 1x1
    convolution computes the same product through oneDNN without a copy, forward and
    backward: 1.7-2.0x faster than ``F.linear`` there at 1,024-16,384 rows of 256-1,024
    channels. Only float32 CPU inputs with at least :data:`ONEDNN_LINEAR_MIN_ROWS` rows
    take that path (where oneDNN is enabled, and per :data:`ONEDNN_LINEAR`: not on
    AVX2-only CPUs, where its weight gradient took 3-10x MKL's); the result equals
    ``F.linear``'s up to the summation order.
    """
    c_in = x.shape[-1]
    rows = x.numel() // max(c_in, 1)
    if (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or rows < ONEDNN_LINEAR_MIN_ROWS
        or not torch.backends.mkldnn.is_available()
        or not torch.backends.mkldnn.enabled
        or not onednn_linear()
    ):
        return F.linear(x, weight, bias)
    lead = x.shape[:-1]
    as_map = x.reshape(1, rows, 1, c_in).permute(0, 3, 1, 2)  # (1, C_in, rows, 1) channels-last
    out = F.conv2d(as_map, weight[:, :, None, None], bias)  # (1, C_out, rows, 1) channels-last
    return out.permute(0, 2, 3, 1).reshape(*lead, weight.shape[0])


def onednn_linear() -> bool:
    """Whether :func:`linear` may take the oneDNN path (see :data:`ONEDNN_LINEAR`)."""
    if ONEDNN_LINEAR is not None:
        return ONEDNN_LINEAR
    return not slow_onednn_weight_grad()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, keys and init) computed by :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


#: the 3x3 convolutions' weight gradient on float32 CPU channels-last maps as matmuls
#: (:func:`conv2d`): ``True``, ``False``, or ``None`` = where
#: :func:`slow_onednn_weight_grad`
MATMUL_CONV_WEIGHT_GRAD: bool | None = None

#: inputs with fewer channels keep oneDNN's weight gradient (VGG16's RGB conv1_1:
#: 10 ms in oneDNN against 156 ms as matmuls on 3 channels)
MATMUL_CONV_MIN_CHANNELS = 64


def matmul_weight_grad() -> bool:
    """Whether :func:`conv2d` takes 3x3 weight gradients as matmuls."""
    if MATMUL_CONV_WEIGHT_GRAD is not None:
        return MATMUL_CONV_WEIGHT_GRAD
    return slow_onednn_weight_grad()


#: the large 3x3 convolutions of a training step through Winograd F(4x4, 3x3)
#: (:mod:`dmt_core.model.winograd`, see :func:`conv2d`): ``True``, ``False``, or
#: ``None`` = on the x86 CPUs it was measured faster on (:func:`winograd_conv`)
WINOGRAD_CONV: bool | None = None

#: the CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) whose default is
#: Winograd, each with the largest map (H W) it takes there. Measured on two AMD EPYCs,
#: forward and backward of the paper step's full-resolution convolution: AVX2-only,
#: 1.10 s against 2.05 s at 4 x 256 x 128 x 128 and faster at 256 x 256 too (the
#: 8 x 256 px step: 25.5 s against 30.4 s); AVX-512, 0.46 s against 0.59 s at
#: 4 x 256 x 128 x 128, 1.10 s against 1.25 s at 8 x 256 x 128 x 128, but 4.80 s
#: against 4.89 s at 8 x 256 x 256 x 256, where its kept tiles cost 1.2 GB. Not
#: measured on Intel CPUs (they report the same capabilities, so they get the same
#: default) nor on Arm ones (which keep the direct convolution).
WINOGRAD_MAX_PIXELS: dict[str, int] = {"AVX2": sys.maxsize, "AVX512": 128 * 128}

#: maps with fewer pixels (H W) keep the direct convolution: at 32 x 32 the transforms
#: cost what the products save (4 x 256 channels: 0.12 s forward and backward either way;
#: 512 channels at 16 x 16: 0.27 s against 0.12 s)
WINOGRAD_MIN_PIXELS = 64 * 64

#: inputs with fewer channels keep the direct convolution (64 channels at 128 x 128:
#: 0.16 s forward and backward either way; 128 channels: 0.34 s against 0.43 s)
WINOGRAD_MIN_CHANNELS = 128


def winograd_conv() -> bool:
    """Whether :func:`conv2d` takes the large 3x3 convolutions through Winograd:
    :data:`WINOGRAD_CONV`, else whether this CPU is in :data:`WINOGRAD_MAX_PIXELS`."""
    if WINOGRAD_CONV is not None:
        return WINOGRAD_CONV
    return torch.backends.cpu.get_cpu_capability() in WINOGRAD_MAX_PIXELS


#: Winograd's 36 channel products through oneDNN (1x1 convolutions, and their weight
#: gradients for the kernel gradient) instead of MKL's batched sgemm: ``True``,
#: ``False``, or ``None`` = where :func:`onednn_linear` (the same finding: on the
#: AVX-512 AMD EPYC a chunk's 36 products of (512, 256) by (256, 256) took 7.5 ms as
#: 1x1 convolutions against 12.1 ms in ``torch.bmm``, their kernel-gradient sums 9.0 ms
#: against 12.0 ms in ``baddbmm_``; not measured on the AVX2-only CPU)
WINOGRAD_ONEDNN: bool | None = None


def winograd_onednn() -> bool:
    """Whether Winograd's channel products go through oneDNN (:data:`WINOGRAD_ONEDNN`)."""
    return onednn_linear() if WINOGRAD_ONEDNN is None else WINOGRAD_ONEDNN


def winograd_takes(x: Tensor) -> bool:
    """Whether :func:`conv2d` takes this input (N, C, H, W) through Winograd: at least
    :data:`WINOGRAD_MIN_CHANNELS` channels and :data:`WINOGRAD_MIN_PIXELS` pixels, H and
    W multiples of 4, and :func:`winograd_conv`; by default (``WINOGRAD_CONV = None``)
    no more pixels than :data:`WINOGRAD_MAX_PIXELS` gives this CPU."""
    pixels = x.shape[2] * x.shape[3]
    if not (
        x.shape[1] >= WINOGRAD_MIN_CHANNELS
        and pixels >= WINOGRAD_MIN_PIXELS
        and winograd.usable(x)
        and winograd_conv()
    ):
        return False
    if WINOGRAD_CONV is not None:
        return True
    return pixels <= WINOGRAD_MAX_PIXELS[torch.backends.cpu.get_cpu_capability()]


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: tuple[int, ...] | int = 1,
    padding: tuple[int, ...] | int | str = 0,
    dilation: tuple[int, ...] | int = 1,
    groups: int = 1,
) -> Tensor:
    """``F.conv2d``: x (N, C_in, H, W), weight (C_out, C_in, kh, kw) -> (N, C_out, H', W').

    Where oneDNN's channels-last weight gradient is slow (AVX2-only CPUs,
    :func:`slow_onednn_weight_grad`), it took 2.9 s for the full-resolution 3x3
    convolution of a paper step (4 x 256 x 128 x 128): 4x the 0.73 s of the same sums
    as nine matmuls, one per kernel tap, and the weight gradients of all the step's
    convolutions took 2.4x what they take on contiguous maps (where oneDNN runs them on
    8-channel blocks). So where :func:`matmul_weight_grad` says so, a float32 CPU 3x3
    convolution (stride 1, padding 1, no dilation or groups) of a channels-last input of
    at least :data:`MATMUL_CONV_MIN_CHANNELS` channels that needs a weight gradient runs
    through :class:`_Conv3x3`: the forward and the input gradient stay oneDNN's, the
    weight gradient is :func:`conv3x3_weight_grad`. The result equals ``F.conv2d``'s;
    the weight gradient differs in the summation order only.

    Of the same convolutions (whatever the weight gradient), those that
    :func:`winograd_takes` (large maps, many channels, on the CPUs measured faster) go
    through Winograd F(4x4, 3x3) forward and backward (:class:`winograd.WinogradConv3x3`;
    the paper step's 4 x 256 x 128 x 128 convolution, forward and backward: 1.1 s
    against 2.0 s on the AVX2 CPU, 0.46 s against 0.59 s on the AVX-512 one); its
    float32 rounding differs from the direct convolution's (its error is about 4x
    larger, 1e-5 of the output's scale). Anything else, and
    everything under ``torch.compile`` (which has its own kernels), is ``F.conv2d``.
    """
    if (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.requires_grad
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and x.dim() == 4
        and tuple(weight.shape[2:]) == (3, 3)
        and x.shape[1] >= MATMUL_CONV_MIN_CHANNELS
        and groups == 1
        and _pair(stride) == (1, 1)
        and _pair(padding) == (1, 1)
        and _pair(dilation) == (1, 1)
        and x.is_contiguous(memory_format=torch.channels_last)
        and not torch.compiler.is_compiling()
    ):
        if winograd_takes(x):
            return winograd.WinogradConv3x3.apply(x, weight, bias, winograd_onednn())
        if matmul_weight_grad():
            return _Conv3x3.apply(x, weight, bias)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _pair(v: tuple[int, ...] | int | str) -> tuple[int, ...] | str:
    return v if isinstance(v, str) else (v, v) if isinstance(v, int) else tuple(v)


def conv3x3_weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """Weight gradient of a 3x3, stride-1, padding-1 convolution, as nine matmuls.

    grad (N, C_out, H, W) and x (N, C_in, H, W), channels-last -> (C_out, C_in, 3, 3),
    channels-last. A channels-last map is already the row matrix (N H W, C) (a free
    view). Kernel tap (i, j) pairs output position p with input position p + s,
    s = (i-1) W + (j-1), so its (C_out, C_in) slice is ``grad_rows^T @ x_rows[shifted]``
    over all p: one matmul of a transposed view and a block of rows, no copies. That sum
    also pairs the positions whose neighbour lies across a border (a row's first column
    with the row above's last, an image's first row with the previous image's last): at
    most N (2H + 2W) rows per tap, which a small matmul takes back out.
    """
    n, c_in, h, w = x.shape
    c_out = grad.shape[1]
    x_rows = x.permute(0, 2, 3, 1).reshape(-1, c_in)  # views of channels-last maps
    g_rows = grad.permute(0, 2, 3, 1).reshape(-1, c_out)
    total = n * h * w
    taps = grad.new_empty(3, 3, c_out, c_in)
    for i in range(3):
        for j in range(3):
            shift = (i - 1) * w + (j - 1)
            lo, hi = max(0, -shift), total - max(0, shift)
            if hi <= lo:
                taps[i, j].zero_()
                continue
            torch.mm(g_rows[lo:hi].t(), x_rows[lo + shift : hi + shift], out=taps[i, j])
            wrong = _across_border(n, h, w, i - 1, j - 1, grad.device)
            if wrong.numel():
                taps[i, j].addmm_(g_rows[wrong].t(), x_rows[wrong + shift], alpha=-1)
    return taps.permute(2, 3, 0, 1).contiguous(memory_format=torch.channels_last)


@lru_cache(maxsize=64)
def _across_border(n: int, h: int, w: int, di: int, dj: int, device: torch.device) -> Tensor:
    """Rows p of an (N H W) row matrix whose row p + di W + dj exists but is not the
    (di, dj) neighbour of p (it lies across an image's left/right or top/bottom edge)."""
    shift = di * w + dj
    p = torch.arange(max(0, -shift), n * h * w - max(0, shift), device=device)
    y, x = (p // w) % h, p % w
    return p[(y + di < 0) | (y + di >= h) | (x + dj < 0) | (x + dj >= w)]


class _Conv3x3(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, padding=1)`` with :func:`conv3x3_weight_grad` as the
    weight gradient (see :func:`conv2d`); x (N, C_in, H, W) channels-last."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, 1, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_w = conv3x3_weight_grad(grad, x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, keys and init) computed by :func:`conv2d`."""

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(x, weight, bias)
        return conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class NormedQKV(nn.Module):
    """Base of the official ``AnyAttention``: LayerNorms then bias-free projections.

    ``project(q, k, v)`` returns ``to_q(norm_q(q)), to_k(norm_k(k)), to_v(norm_v(v))``,
    each (..., C). Subclasses add the attention itself.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm_q, self.norm_k, self.norm_v = (
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
            nn.LayerNorm(dim),
        )
        self.to_q = Linear(dim, dim, bias=False)
        self.to_k = Linear(dim, dim, bias=False)
        self.to_v = Linear(dim, dim, bias=False)
        self.last_attention: Tensor | None = None
        self.record_attention = False

    def project(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.to_q(self.norm_q(q)), self.to_k(self.norm_k(k)), self.to_v(self.norm_v(v))


def c2_xavier_init(module: nn.Module) -> None:
    """Caffe2 "Xavier" fill used by the official convs: Kaiming-uniform with a=1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def trunc_normal_init(module: nn.Module) -> None:
    """Linear weights ~ truncated N(0, 0.02), biases 0; LayerNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_group(images: Tensor, multiple: int = 16) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty (N, 3, H, W) group, H, W % 16 == 0."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (N, 3, H, W), got {type(images)}")
    if images.dim() != 4:
        raise ValueError(
            f"images must be 4-D (N, 3, H, W), one group of N images; "
            f"got shape {tuple(images.shape)}"
        )
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("images is an empty group (N = 0); a group needs at least one image")
    if c != 3:
        raise ValueError(
            f"images must have 3 (RGB) channels, got {c} in shape {tuple(images.shape)}"
        )
    if h % multiple or w % multiple or h == 0 or w == 0:
        raise ValueError(
            f"image sides must be positive multiples of {multiple} (the encoder stride), "
            f"got {h}x{w}; resize, e.g. to 256x256"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor (ImageNet-normalised RGB), got dtype {images.dtype}"
        )
    if not torch.isfinite(images).all():
        bad = sorted({int(i) for i in (~torch.isfinite(images)).flatten(1).any(1).nonzero()})
        raise ValueError(f"images {bad[:10]} of the group hold NaN or infinite values")
