"""ResNet / ResNeXt models: conventions, blocks, network, variant registry, pretrained weights, factory, loader."""
from mindresnet.models.blocks import ResidualBlock, ResidualBlockBase, make_layer
from mindresnet.models.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention, get_convention
from mindresnet.models.factory import (create_model, resnet18, resnet34, resnet50, resnet101, resnet152,
                                       resnext50_32x4d, resnext101_32x4d, resnext101_32x8d, resnext101_64x4d,
                                       resnext152_64x4d)
from mindresnet.models.loader import load_model, pretrained_model
from mindresnet.models.pretrained import parse_pretrained
from mindresnet.models.registry import VARIANTS, Weights, get_variant, get_weights, list_models
from mindresnet.models.resnet import ResNet

__all__ = ["ResidualBlock", "ResidualBlockBase", "make_layer", "CONVENTIONS", "DEFAULT_CONVENTION", "Convention",
           "get_convention", "ResNet", "VARIANTS", "Weights", "create_model", "get_variant", "get_weights",
           "list_models", "load_model", "parse_pretrained", "pretrained_model", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x4d", "resnext101_64x4d", "resnext101_32x8d",
           "resnext152_64x4d"]
