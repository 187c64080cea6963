"""Datasets: CIFAR-10 (binary version) and image folders, as batched MindSpore pipelines.

Both readers validate their input up front and raise :class:`DataError` naming the bad file;
which reader ran and what was skipped is logged on the ``mindresnet.data`` logger.
"""
from mindresnet.errors import DataError
from mindresnet.data.constants import (CIFAR10_MEAN, CIFAR10_STD, CIFAR10_URL, CLASS_FILE,
                                       IMAGENET_MEAN, IMAGENET_STD, RECORD_BYTES)
from mindresnet.data.cifar10 import create_dataset_cifar10
from mindresnet.data.folder import create_dataset_folder, read_class_indices
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess, imagenet_preprocess

__all__ = ["DataError", "create_dataset_cifar10", "create_dataset_folder", "read_class_indices",
           "Preprocess", "cifar10_preprocess", "imagenet_preprocess", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_URL",
           "CLASS_FILE", "IMAGENET_MEAN", "IMAGENET_STD", "RECORD_BYTES"]
