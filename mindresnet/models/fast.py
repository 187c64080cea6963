"""Convolutions on small feature maps computed as one matrix product (a CPU speed-up).

MindSpore's CPU convolution kernels (above all their backward passes) are very slow on the
2x2 and 1x1 feature maps of a ResNet's last stages at 32x32 input, where the work is really a
matrix product (docs/REFERENCE.md §6). On a map of at most :data:`MAX_PIXELS` pixels,
:class:`SmallMapConv2d` computes

* a 1x1 convolution as ``rows @ W.T`` on channels-last rows (strided pick first for stride 2),
* a 3x3 convolution on a 1x1 map with stride 1 from its centre tap alone (``x @ W[:, :, 1, 1].T``),
* any other 3x3 convolution as ``x.flatten() @ D`` where ``D`` (``C*H*W`` x ``O*Ho*Wo``) is the
  convolution written out as a dense matrix, gathered from ``W`` (padding taps gather a zero).

Larger maps keep the native kernel. The parameter is the convolution's own ``weight`` (same
name and shape), so checkpoints are unchanged; results match ``nn.Conv2d`` to float rounding.
Cost: more resident memory (ResNet-50, 32x32, batch 128: about +0.5 GB) for about 1.9x the
training throughput (bench/README.md).
"""
from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.ops.primitive import constexpr

MAX_PIXELS = 4  # H*W at or below which a convolution runs as a matrix product (2x2 maps)


def eligible(conv: nn.Cell) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` :class:`SmallMapConv2d` reproduces exactly.

    That is: NCHW, no bias, no groups or dilation, equal strides, and either a 1x1 kernel without
    padding or a 3x3 kernel padded by 1 on every side.
    """
    if type(conv) is not nn.Conv2d:  # pylint: disable=unidiomatic-typecheck (subclasses may differ)
        return False
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)[-2:]
    if conv.has_bias or conv.group != 1 or tuple(conv.dilation)[-2:] != (1, 1) or stride[0] != stride[1]:
        return False
    if conv.data_format != "NCHW":
        return False
    padding = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 4
    if kernel == (1, 1):
        return conv.pad_mode in ("same", "valid") or set(padding) == {0}
    if kernel == (3, 3):
        return (conv.pad_mode == "pad" and set(padding) == {1}) or (conv.pad_mode == "same" and stride[0] == 1)
    return False


@constexpr
def _dense_index(channels: int, height: int, width: int, out_channels: int, stride: int):
    """Indices into ``concat(W.flatten(), [0])`` that write a padded 3x3 convolution as a matrix.

    Row ``(c, ih, iw)``, column ``(o, oh, ow)`` holds ``W[o, c, ih - s*oh + 1, iw - s*ow + 1]``,
    or the trailing zero where that tap falls outside the kernel.
    """
    kernel, pad = 3, 1
    out_h = (height + 2 * pad - kernel) // stride + 1
    out_w = (width + 2 * pad - kernel) // stride + 1
    index = np.full((channels, height, width, out_channels, out_h, out_w),
                    out_channels * channels * kernel * kernel, np.int32)
    base = (np.arange(out_channels)[None, :] * channels + np.arange(channels)[:, None]) * kernel * kernel
    for ih in range(height):
        for iw in range(width):
            for oh in range(out_h):
                for ow in range(out_w):
                    i, j = ih - stride * oh + pad, iw - stride * ow + pad
                    if 0 <= i < kernel and 0 <= j < kernel:
                        index[:, ih, iw, :, oh, ow] = base + i * kernel + j
    return ms.Tensor(index.reshape(channels * height * width, out_channels * out_h * out_w))


def _pick(x, stride: int, out_h: int, out_w: int):
    """``x[:, :, ::stride, ::stride]`` via reshape (a strided slice's CPU gradient is unreliable)."""
    n, c, h, w = x.shape
    if h < stride * out_h or w < stride * out_w:
        x = ops.pad(x, (0, stride * out_w - w, 0, stride * out_h - h))
    x = x.reshape(n, c, out_h, stride, out_w, stride)
    return x[:, :, :, 0, :, 0]


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as one matrix product on maps of at most :data:`MAX_PIXELS` pixels.

    Obtained by :func:`use_small_map_gemm` from an eligible ``nn.Conv2d`` (same object, same
    parameter); the choice is static per input shape, so graph mode compiles only one path.
    """

    def construct(self, x):
        n, c, h, w = x.shape
        if h * w > MAX_PIXELS:
            return super().construct(x)
        kernel, stride = self.kernel_size[0], self.stride[-1]
        out_ch = self.out_channels
        weight = ops.cast(self.weight, x.dtype)
        if kernel == 1:
            out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
            if stride != 1:
                x = _pick(x, stride, out_h, out_w)
            rows = x.reshape(n, c) if out_h * out_w == 1 else ops.transpose(x, (0, 2, 3, 1)).reshape(-1, c)
            out = ops.matmul(rows, weight.reshape(out_ch, c).T)
            if out_h * out_w == 1:
                return out.reshape(n, out_ch, 1, 1)
            return ops.transpose(out.reshape(n, out_h, out_w, out_ch), (0, 3, 1, 2))
        if h * w == 1 and stride == 1:  # only the centre tap sees a pixel; the rest read padding
            return ops.matmul(x.reshape(n, c), weight[:, :, 1, 1].T).reshape(n, out_ch, 1, 1)
        out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1
        flat = ops.concat((weight.reshape(-1), ops.zeros((1,), x.dtype)))
        dense = ops.gather(flat, _dense_index(c, h, w, out_ch, stride), 0)
        return ops.matmul(x.reshape(n, c * h * w), dense).reshape(n, out_ch, out_h, out_w)


def use_small_map_gemm(net: nn.Cell) -> int:
    """Switch every eligible ``nn.Conv2d`` in ``net`` to :class:`SmallMapConv2d`, in place.

    Parameters, their names and the outputs stay the same; only the CPU kernels change.

    Returns:
        How many convolutions were switched.
    """
    switched = 0
    for _, cell in net.cells_and_names():
        if eligible(cell):
            cell.__class__ = SmallMapConv2d
            switched += 1
    return switched
