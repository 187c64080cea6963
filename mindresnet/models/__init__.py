"""ResNet / ResNeXt models: blocks, network, variant registry and pretrained weights."""
from mindresnet.models.blocks import ResidualBlock, ResidualBlockBase, make_layer
from mindresnet.models.registry import (VARIANTS, create_model, freeze, get_variant, list_models, resnet18,
                                        resnet34, resnet50, resnet101, resnet152, resnext50_32x4d,
                                        resnext101_32x8d)
from mindresnet.models.resnet import ResNet

__all__ = ["ResidualBlock", "ResidualBlockBase", "make_layer", "ResNet", "VARIANTS", "create_model",
           "freeze", "get_variant", "list_models", "resnet18", "resnet34", "resnet50", "resnet101",
           "resnet152", "resnext50_32x4d", "resnext101_32x8d"]
