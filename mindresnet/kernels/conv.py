"""The CPU kernel switch: every eligible ``nn.Conv2d`` and ``nn.BatchNorm2d`` of a network runs on mindresnet's kernels.

:func:`use_cpu_kernels` changes, in place, the class of each eligible convolution (same object,
same ``weight`` parameter, same name, so checkpoints are unchanged):

* to :class:`OneDnnConv2d` when the oneDNN kernels are loaded (:mod:`mindresnet.kernels.onednn`):
  forward, input gradient and weight gradient as AOT custom ops on oneDNN's blocked jit kernels;
* BatchNorms to :class:`~mindresnet.kernels.batch_norm.CpuBatchNorm2d` (training-mode statistics);
* otherwise to :class:`~mindresnet.kernels.small_map.SmallMapConv2d`, the matrix-product path for
  2x2 and 1x1 maps that MindSpore's own kernels handle worst (their larger maps stay native).

:func:`use_native_kernels` turns them back into ``nn.Conv2d`` (export writes MindSpore's Conv2D).
:func:`frozen_weights` lets inference loops reorder each convolution's weights once, not per batch.
"""
from __future__ import annotations

import contextlib
import math
from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import nn, ops
from mindspore.ops.primitive import constexpr

from mindresnet.cpu_isa import avx512_in_effect
from mindresnet.kernels import batch_norm
from mindresnet.kernels.small_map import MAX_PIXELS, SmallMapConv2d, eligible

_library: list = []  # [path of the loaded kernel library] once activate() succeeded
_frozen_depth = [0]  # how many frozen_weights() blocks are open
SMALL_MAP_PIXELS = MAX_PIXELS  # maps up to this many pixels run as small-map products, not oneDNN
_AVX512 = avx512_in_effect()  # without it two routes beat oneDNN's jit:avx2 kernels (bench/README.md, "AVX2 class")
# In inference too: jit:avx2 convolutions on 2x2 and 1x1 maps take 5-20x the products' time
# (jit:avx512_core ones beat the products there).
SMALL_MAPS_IN_INFERENCE = not _AVX512
# 1x1 stride-1 convolutions keep MindSpore's plain layout (oneDNN's GEMM convolution): faster than
# jit_1x1:avx2 and the reorders around it.
PLAIN_POINTWISE = not _AVX512


def activate(library) -> None:
    """Route :func:`use_cpu_kernels` to the kernel library at ``library`` (None: the fallback)."""
    _library[:] = [str(library)] if library else []
    if library:
        from mindresnet.runtime import cpu_count
        set_threads(cpu_count())


def kernels_active() -> bool:
    """Whether mindresnet's oneDNN convolution kernels are loaded in this process."""
    return bool(_library)


def loaded_library() -> Optional[str]:
    """The path of the loaded kernel library (its folder names its build key), or None."""
    return _library[0] if _library else None


def set_threads(threads: int) -> None:
    """Size the kernels' thread pool (takes effect before their first convolution)."""
    if _library:
        import ctypes
        ctypes.CDLL(_library[0]).mindresnet_set_threads(int(threads))


@contextlib.contextmanager
def frozen_weights():
    """Within this block, forward convolutions keep their weights' blocked copies between calls.

    Use it around inference loops whose weights cannot change (evaluation, feature extraction,
    prediction): the weights are reordered once instead of at every batch. The copies are freed on
    exit. Without the kernels it does nothing. Nested blocks keep the copies until the outermost exits.
    """
    if not _library:
        yield
        return
    import ctypes
    library = ctypes.CDLL(_library[0])
    _frozen_depth[0] += 1
    library.mindresnet_freeze_weights(1)
    try:
        yield
    finally:
        _frozen_depth[0] -= 1
        if not _frozen_depth[0]:
            library.mindresnet_freeze_weights(0)


def _output_size(size: int, kernel: int, stride: int, pad_mode: str, pad_before: int, pad_after: int) -> int:
    if pad_mode == "same":
        return math.ceil(size / stride)
    return (size + pad_before + pad_after - kernel) // stride + 1


def _explicit_padding(cell: nn.Conv2d):
    """``(top, bottom, left, right)`` of a ``pad_mode='pad'`` convolution (zeros otherwise)."""
    if cell.pad_mode != "pad":
        return (0, 0, 0, 0)
    return tuple(cell.padding) if isinstance(cell.padding, (tuple, list)) else (cell.padding,) * 4


@constexpr
def _config(height: int, width: int, kernel: tuple, stride: tuple, pad_mode: str, padding: tuple, groups: int,
            plain_pointwise: bool):
    """The int64 config tensor of the kernels: strides, padding before each side, groups, and whether the
    tensors stay in the plain layout (a 1x1 stride-1 ungrouped convolution when ``plain_pointwise``)."""
    before = []
    for size, k, s, pad in ((height, kernel[0], stride[0], padding[0]), (width, kernel[1], stride[1], padding[2])):
        if pad_mode == "same":
            out = math.ceil(size / s)
            before.append(max((out - 1) * s + k - size, 0) // 2)
        else:
            before.append(pad)
    plain = plain_pointwise and kernel == (1, 1) and stride == (1, 1) and groups == 1
    return ms.Tensor(np.array([stride[0], stride[1], before[0], before[1], groups, int(plain)], np.int64))


class _OneDnnConvolution(nn.Cell):
    """``y = conv(x, w)`` and its gradients as three AOT custom ops of the kernel library."""

    def __init__(self, library: str, cell: nn.Conv2d):
        super().__init__()
        kernel, stride = tuple(cell.kernel_size), tuple(cell.stride)[-2:]
        pad_mode, padding = cell.pad_mode, _explicit_padding(cell)

        def output_shape(x, w, config):
            return [x[0], w[0], _output_size(x[2], kernel[0], stride[0], pad_mode, padding[0], padding[1]),
                    _output_size(x[3], kernel[1], stride[1], pad_mode, padding[2], padding[3])]

        def shape_of_third(first, second, third, config):
            return third

        self.forward = ops.Custom(f"{library}:conv_forward", output_shape, ms.float32, func_type="aot")
        # PyNative caches an op's inferred shape by its name, inputs and attributes: the geometry
        # must be among them, or two convolutions with equal inputs would share an output shape.
        self.forward.add_prim_attr("geometry", f"k{kernel} s{stride} {pad_mode} {padding}")
        self.backward_data = ops.Custom(f"{library}:conv_backward_data", shape_of_third, ms.float32,
                                        func_type="aot")
        self.backward_weights = ops.Custom(f"{library}:conv_backward_weights", shape_of_third, ms.float32,
                                           func_type="aot")

    def construct(self, x, weight, config):
        return self.forward(x, weight, config)

    def bprop(self, x, weight, config, out, dout):
        return (self.backward_data(dout, weight, x, config), self.backward_weights(x, dout, weight, config),
                ops.zeros_like(config))


class OneDnnConv2d(SmallMapConv2d):
    """``nn.Conv2d`` on mindresnet's oneDNN kernels (float32; other dtypes keep MindSpore's kernel).

    In training, maps of at most :data:`SMALL_MAP_PIXELS` pixels keep the small-map matrix products
    where they apply (faster there: bench/README.md); inference runs every map on oneDNN, except on
    CPUs without AVX-512 (:data:`SMALL_MAPS_IN_INFERENCE`). There, 1x1 stride-1 convolutions also
    keep the plain layout (:data:`PLAIN_POINTWISE`). Obtained by
    :func:`use_cpu_kernels` from an eligible ``nn.Conv2d`` (same object and parameter).
    """

    def construct(self, x):
        small = (self.small_map and (self.training or SMALL_MAPS_IN_INFERENCE)
                 and x.shape[2] * x.shape[3] <= SMALL_MAP_PIXELS)
        if x.dtype != ms.float32 or small:
            return super().construct(x)  # small-map products, or MindSpore's kernel for other dtypes
        config = _config(x.shape[2], x.shape[3], tuple(self.kernel_size), tuple(self.stride)[-2:],
                         self.pad_mode, self.onednn_padding, self.group, PLAIN_POINTWISE)
        return self.onednn(x, self.weight, config)


def _eligible(cell: nn.Cell) -> bool:
    """A bias-free, undilated NCHW ``nn.Conv2d`` (grouped or not) the kernels compute exactly."""
    return (type(cell) in (nn.Conv2d, SmallMapConv2d)  # pylint: disable=unidiomatic-typecheck
            and not cell.has_bias and cell.data_format == "NCHW" and tuple(cell.dilation)[-2:] == (1, 1))


def use_cpu_kernels(net: nn.Cell, onednn: Optional[bool] = None) -> int:
    """Switch ``net``'s convolutions to mindresnet's CPU kernels in place; return how many switched.

    With the kernels (``onednn``; default: when they are loaded), every bias-free undilated
    convolution becomes an :class:`OneDnnConv2d` and every BatchNorm a
    :class:`~mindresnet.kernels.batch_norm.CpuBatchNorm2d`; otherwise the small-map fallback
    applies to eligible convolutions. Parameters, their names and the outputs stay the same.
    Returns the number of convolutions switched.
    """
    if onednn is None:
        onednn = kernels_active()
    if onednn and not kernels_active():
        raise RuntimeError("mindresnet's oneDNN kernels are not loaded in this process")
    switched = 0
    for _, cell in list(net.cells_and_names()):
        if onednn and batch_norm.eligible(cell):
            batch_norm.switch(cell, _library[0])
        elif onednn and _eligible(cell):
            cell.small_map = eligible(cell)
            cell.__class__ = OneDnnConv2d
            cell.onednn_padding = _explicit_padding(cell)
            cell.onednn = _OneDnnConvolution(_library[0], cell)
            switched += 1
        elif not onednn and eligible(cell):
            cell.__class__ = SmallMapConv2d
            switched += 1
    return switched


def use_native_kernels(net: nn.Cell) -> int:
    """Turn ``net``'s switched convolutions (and BatchNorms) back into MindSpore's; return how many convolutions."""
    restored = 0
    for _, cell in list(net.cells_and_names()):
        batch_norm.restore(cell)
        if isinstance(cell, OneDnnConv2d):
            del cell.onednn
        if isinstance(cell, SmallMapConv2d):  # OneDnnConv2d included
            cell.__class__ = nn.Conv2d
            restored += 1
    return restored
