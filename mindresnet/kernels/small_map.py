"""Convolutions on small feature maps computed as matrix products: the CPU fallback without the oneDNN kernels.

MindSpore's CPU convolution kernels (above all their backward passes) are very slow on the
2x2 and 1x1 feature maps of a ResNet's last stages at 32x32 input, where the work is really a
matrix product (bench/README.md). On a map of at most :data:`MAX_PIXELS` pixels,
:class:`SmallMapConv2d` computes

* a 1x1 convolution as ``rows @ W.T`` on channels-last rows (for stride 2, the strided pick is
  itself a product with a one-hot matrix),
* a 3x3 convolution output pixel by output pixel, as ``x.flatten() @ D_p.T`` where ``D_p``
  (``O`` x ``C*H*W``) holds the weights linking every input pixel to pixel ``p``, built as
  ``W.reshape(O*C, 9) @ one-hot taps`` (on a 1x1 map, only the centre tap). One dense
  ``C*H*W`` x ``O*Ho*Wo`` matrix would need a transpose, and MindSpore's CPU Transpose kernel keeps
  about 4x its tensor's size in memory from compilation on (0.1 GB for ResNet-50).

All products use ``P.MatMul`` with transpose flags: its gradient needs no transpose ops, while
``ops.matmul``'s gradient transposes both operands explicitly (slow on CPU).

Larger maps keep the native kernel. The parameter is the convolution's own ``weight`` (same
name and shape), so checkpoints are unchanged; results match ``nn.Conv2d`` to float rounding.
ResNet-50 at 32x32, batch 128: about 2x the training throughput of MindSpore's kernels
(bench/README.md).
"""
from __future__ import annotations

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.ops import operations as P
from mindspore.ops.primitive import constexpr

_MATMUL = P.MatMul()
_MATMUL_NT = P.MatMul(transpose_b=True)
MAX_PIXELS = 4  # H*W at or below which a convolution runs as a matrix product (2x2 maps)


def eligible(conv: nn.Cell) -> bool:
    """Whether ``conv`` is a plain ``nn.Conv2d`` :class:`SmallMapConv2d` reproduces exactly.

    That is: NCHW, no bias, no groups or dilation, equal strides, and either a 1x1 kernel without
    padding or a 3x3 kernel padded by 1 on every side or as ``pad_mode='same'`` (which on stride 2
    pads only the bottom/right of an even-sized map: :func:`_pad_before`).
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
        return (conv.pad_mode == "pad" and set(padding) == {1}) or conv.pad_mode == "same"
    return False


@constexpr
def _pad_before(pad_mode: str, size: int, stride: int) -> int:
    """Padding of a 3x3 convolution before (above / left of) an input side of ``size``.

    ``'pad'`` (eligible only with padding 1) pads 1 on both sides; ``'same'`` pads ``total // 2``
    before and the rest after, so on a stride-2 layer of even size it pads only after.
    """
    if pad_mode != "same":
        return 1
    out = (size - 1) // stride + 1
    return max((out - 1) * stride + 3 - size, 0) // 2


@constexpr
def _tap_selector(height: int, width: int, stride: int, out_pixel: int, pad_top: int, pad_left: int):
    """One-hot ``(9, H*W)`` matrix: column ``(ih, iw)`` picks the 3x3 tap linking it to ``out_pixel``.

    ``W.reshape(O*C, 9) @ selector`` gives, as ``(O, C*H*W)``, the weights of a convolution padded
    by ``pad_top``/``pad_left`` before the map that produce output pixel ``out_pixel`` (row-major);
    taps outside the kernel stay zero.
    """
    kernel = 3
    out_w = (width - 1) // stride + 1
    oh, ow = divmod(out_pixel, out_w)
    selector = np.zeros((kernel * kernel, height, width), np.float32)
    for ih in range(height):
        for iw in range(width):
            i, j = ih - stride * oh + pad_top, iw - stride * ow + pad_left
            if 0 <= i < kernel and 0 <= j < kernel:
                selector[i * kernel + j, ih, iw] = 1.0
    return ms.Tensor(selector.reshape(kernel * kernel, -1))


@constexpr
def _pick_selector(height: int, width: int, stride: int):
    """One-hot ``(H*W, Ho*Wo)`` matrix: ``x_flat @ selector`` is ``x[..., ::stride, ::stride]``.

    A matrix product, because MindSpore's CPU strided slice (and its gradient) is slow here.
    """
    out_h, out_w = (height - 1) // stride + 1, (width - 1) // stride + 1
    selector = np.zeros((height, width, out_h, out_w), np.float32)
    for oh in range(out_h):
        for ow in range(out_w):
            selector[stride * oh, stride * ow, oh, ow] = 1.0
    return ms.Tensor(selector.reshape(height * width, out_h * out_w))


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as matrix products on maps of at most :data:`MAX_PIXELS` pixels.

    Obtained by :func:`mindresnet.kernels.use_cpu_kernels` (without the oneDNN kernels) from an eligible ``nn.Conv2d`` (same object, same
    parameter); the choice is static per input shape, so graph mode compiles only one path.
    """

    def construct(self, x):
        n, c, h, w = x.shape
        if h * w > MAX_PIXELS:
            return super().construct(x)
        kernel, stride = self.kernel_size[0], self.stride[-1]
        out_ch = self.out_channels
        out_h, out_w = (h - 1) // stride + 1, (w - 1) // stride + 1  # 1x1 unpadded, 3x3 padded by 1 or 'same'
        weight = ops.cast(self.weight, x.dtype)
        if kernel == 1:
            if stride != 1:
                selector = ops.cast(_pick_selector(h, w, stride), x.dtype)
                x = _MATMUL(x.reshape(n * c, h * w), selector).reshape(n, c, out_h, out_w)
            rows = x.reshape(n, c) if out_h * out_w == 1 else ops.transpose(x, (0, 2, 3, 1)).reshape(-1, c)
            out = _MATMUL_NT(rows, weight.reshape(out_ch, c))
            if out_h * out_w == 1:
                return out.reshape(n, out_ch, 1, 1)
            return ops.transpose(out.reshape(n, out_h, out_w, out_ch), (0, 3, 1, 2))
        rows, taps = x.reshape(n, c * h * w), weight.reshape(out_ch * c, 9)
        pad_top, pad_left = _pad_before(self.pad_mode, h, stride), _pad_before(self.pad_mode, w, stride)
        pixels = []
        for pixel in range(out_h * out_w):
            selector = ops.cast(_tap_selector(h, w, stride, pixel, pad_top, pad_left), x.dtype)
            pixel_weight = _MATMUL(taps, selector).reshape(out_ch, c * h * w)
            pixels.append(_MATMUL_NT(rows, pixel_weight))
        out = pixels[0] if len(pixels) == 1 else ops.stack(pixels, axis=2)
        return out.reshape(n, out_ch, out_h, out_w)
