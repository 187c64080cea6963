"""mindresnet: ResNet transfer learning for image classification with MindSpore."""
from mindresnet.interrupts import route_sigint, started_as_cli

if started_as_cli():
    route_sigint()  # before MindSpore is imported and starts its threads: see interrupts.py
from mindresnet import kernels  # noqa: E402
from mindresnet.cpu_isa import apply_isa_cap  # noqa: E402

apply_isa_cap(own_kernels=kernels.load())  # before any MindSpore kernel runs: see cpu_isa.py
from mindresnet.models import (ResidualBlock, ResidualBlockBase, ResNet, create_model,  # noqa: E402
                               list_models, make_layer, pretrained_model, resnet18, resnet34, resnet50,
                               resnet101, resnet152, resnext50_32x4d, resnext101_32x4d, resnext101_32x8d,
                               resnext101_64x4d, resnext152_64x4d)

__version__ = "0.1.0"

__all__ = ["ResidualBlock", "ResidualBlockBase", "ResNet", "create_model", "list_models", "make_layer",
           "pretrained_model", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
           "resnext101_32x4d", "resnext101_32x8d", "resnext101_64x4d", "resnext152_64x4d", "__version__"]
