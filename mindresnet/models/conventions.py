"""Padding, pooling and BatchNorm conventions: the small print that makes weights compute what they were trained to.

Publishers of ResNet weights build the same architecture with different layer settings, and a
checkpoint only reproduces its publisher's function in a network built the same way:

========== ====================== ======================= ======= ==========================================
name        convolutions           stem max-pool           BN eps  used by
========== ====================== ======================= ======= ==========================================
mindcv      symmetric (k//2)       'same'                  1e-5    MindCV 0.3; mindresnet's default
tutorial    'same'                 'same'                  1e-5    MindSpore's ResNet-50 tutorial
models      'same'                 'same'                  1e-4    mindspore/models ResNet-50/101/152
torch       symmetric (k//2)       symmetric pad 1         1e-5    torchvision, timm, mindspore/models
                                                                   ResNet-18/34 (``res_base``)
========== ====================== ======================= ======= ==========================================

MindSpore's ``pad_mode='same'`` pads a stride-2 layer on the bottom/right only (on even sizes), so
it samples one pixel away from a symmetric padding; 1x1 and stride-1 layers are the same either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Union

from mindspore import nn

from mindresnet.checkpoint_meta import DEFAULT_CONVENTION
from mindresnet.errors import ConfigError


@dataclass(frozen=True)
class Convention:
    """How the layers of one weights publisher pad and normalise."""

    name: str
    same_conv: bool  # True: pad_mode='same'; False: symmetric padding of kernel // 2
    symmetric_pool: bool  # True: the stem max-pool pads 1 on every side; False: pad_mode='same'
    bn_eps: float
    source: str  # who builds networks this way

    def conv(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             weight_init=None) -> nn.Conv2d:
        """A bias-free convolution padded this convention's way."""
        pad = {"pad_mode": "same"} if self.same_conv else {"pad_mode": "pad", "padding": kernel // 2}
        return nn.Conv2d(in_channels, out_channels, kernel, stride, group=groups, weight_init=weight_init, **pad)

    def batch_norm(self, channels: int) -> nn.BatchNorm2d:
        """A BatchNorm with this convention's eps."""
        return nn.BatchNorm2d(channels, eps=self.bn_eps)

    def stem_pool(self) -> nn.Cell:
        """The 3x3 stride-2 max-pool after the stem's ReLU."""
        if self.symmetric_pool:
            return SymmetricMaxPool2d()
        return nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")


class SymmetricMaxPool2d(nn.Cell):
    """3x3 stride-2 max-pool padded by 1 on every side (PyTorch's ``MaxPool2d(3, 2, padding=1)``).

    Zero padding, then 'valid' (as mindspore/models ``res_base``): equal to PyTorch's -inf padding
    because the stem's pool follows a ReLU. MindSpore's own ``pad_mode='pad'`` pool is slower on CPU
    and cannot be exported to ONNX.
    """

    def __init__(self):
        super().__init__()
        self.pad = nn.Pad(((0, 0), (0, 0), (1, 1), (1, 1)))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="valid")

    def construct(self, x):
        return self.pool(self.pad(x))


CONVENTIONS: Dict[str, Convention] = {
    "mindcv": Convention("mindcv", same_conv=False, symmetric_pool=False, bn_eps=1e-5, source="MindCV 0.3"),
    "tutorial": Convention("tutorial", same_conv=True, symmetric_pool=False, bn_eps=1e-5,
                           source="MindSpore ResNet-50 tutorial (resnet50_224_new.ckpt)"),
    "models": Convention("models", same_conv=True, symmetric_pool=False, bn_eps=1e-4,
                         source="mindspore/models official/cv/ResNet, ResNet-50/101/152"),
    "torch": Convention("torch", same_conv=False, symmetric_pool=True, bn_eps=1e-5,
                        source="torchvision, timm; mindspore/models ResNet-18/34 (res_base)"),
}


def get_convention(convention: Union[str, Convention, None]) -> Convention:
    """The :class:`Convention` named ``convention`` (None: the default); ConfigError when unknown."""
    if isinstance(convention, Convention):
        return convention
    name = DEFAULT_CONVENTION if convention is None else str(convention)
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ConfigError(f"--convention {name!r} is not one of {', '.join(CONVENTIONS)}.") from None
