"""Image transforms shared by the dataset pipelines and single-image prediction.

Every list returned here holds MindSpore C++ vision ops that take an HWC ``uint8`` RGB image and
end with a normalised ``float32`` CHW array, so a dataset's eval pipeline and
:func:`preprocess_image` run the very same ops. :func:`map_and_batch` is the stage both dataset
readers end with.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import mindspore as ms
import numpy as np
from mindspore import dataset as ds
from mindspore.dataset import transforms, vision
from PIL import Image

from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_SIZE, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from mindresnet.runtime import cpu_count

# Eval resize for image sizes above CIFAR's: shorter side to size*256/224, then a centre crop.
RESIZE_RATIO = 256 / 224


def normalize_ops(mean: Sequence[float], std: Sequence[float]) -> List:
    """Rescale to [0, 1], normalise per channel, HWC -> CHW.

    Args:
        mean: per-channel mean on the [0, 1] scale, RGB order.
        std: per-channel standard deviation on the [0, 1] scale.
    """
    return [vision.Rescale(1.0 / 255.0, 0.0), vision.Normalize(list(mean), list(std)), vision.HWC2CHW()]


def resize_ops(image_size: int, center_crop: bool) -> List:
    """Eval resize: plain ``image_size`` x ``image_size``, or shorter side to size*256/224 + centre crop."""
    if center_crop:
        return [vision.Resize(int(image_size * RESIZE_RATIO)), vision.CenterCrop(image_size)]
    return [vision.Resize((image_size, image_size))]


AUTO_AUGMENTS = ("randaugment", "autoaugment")


def auto_augment_ops(name: Optional[str], policy: str = "imagenet") -> List:
    """MindSpore's learned-policy augmentation for HWC uint8 images: ``randaugment`` (2 ops,
    magnitude 9), ``autoaugment`` (the ``policy`` learned on ``imagenet`` or ``cifar10``), or none."""
    if not name:
        return []
    if name == "randaugment":
        return [vision.RandAugment()]
    if name == "autoaugment":
        return [vision.AutoAugment(getattr(vision.AutoAugmentPolicy, policy.upper()))]
    raise ValueError(f"--auto-augment {name!r} is not one of {AUTO_AUGMENTS}.")


def cifar10_transforms(train: bool, image_size: int, auto_augment: Optional[str] = None) -> List:
    """The tutorial's CIFAR-10 pipeline for one 32x32 HWC uint8 image.

    Args:
        train: add RandomCrop(32, padding 4) and RandomHorizontalFlip(0.5).
        image_size: output side; images are resized only when it is not 32.
        auto_augment: with ``train``, then :func:`auto_augment_ops` (the CIFAR-10 AutoAugment policy).
    """
    ops = [vision.RandomCrop(CIFAR10_SIZE, padding=4), vision.RandomHorizontalFlip(0.5)] if train else []
    if train:
        ops += auto_augment_ops(auto_augment, policy="cifar10")
    if image_size != CIFAR10_SIZE:
        ops += resize_ops(image_size, center_crop=False)
    return ops + normalize_ops(CIFAR10_MEAN, CIFAR10_STD)


def folder_transforms(train: bool, image_size: int, auto_augment: Optional[str] = None) -> List:
    """Pipeline for a decoded image of a custom (ImageNet-like) dataset.

    Args:
        train: RandomResizedCrop + RandomHorizontalFlip; otherwise Resize(size*256/224) + CenterCrop.
        image_size: output side.
        auto_augment: with ``train``, then :func:`auto_augment_ops` (the ImageNet AutoAugment policy).
    """
    if train:
        ops = [vision.RandomResizedCrop(image_size), vision.RandomHorizontalFlip(0.5)]
        ops += auto_augment_ops(auto_augment, policy="imagenet")
    else:
        ops = resize_ops(image_size, center_crop=True)
    return ops + normalize_ops(IMAGENET_MEAN, IMAGENET_STD)


def image_transforms(image_size: int, mean: Sequence[float], std: Sequence[float],
                     center_crop: Optional[bool] = None) -> List:
    """Eval transform for one HWC uint8 RGB image of any size.

    Args:
        image_size: output side.
        mean: per-channel mean ([0, 1] scale).
        std: per-channel standard deviation.
        center_crop: resize the shorter side to size*256/224 and crop the centre (the folder eval
            transform), or resize straight to size x size (the CIFAR-10 eval transform). Default:
            plain resize at 32 and below, centre crop above.

    Returns:
        A list of MindSpore vision ops ending in a float32 CHW array.
    """
    if center_crop is None:
        center_crop = image_size > CIFAR10_SIZE
    return resize_ops(image_size, center_crop) + normalize_ops(mean, std)


def preprocess_image(pil_image: Image.Image, image_size: int, mean: Sequence[float], std: Sequence[float],
                     center_crop: Optional[bool] = None) -> np.ndarray:
    """Turn one PIL image (any mode: RGBA, L, P, ...) into a normalised float32 CHW array.

    Args:
        pil_image: the image.
        image_size: output side.
        mean: per-channel mean ([0, 1] scale) of the dataset the model was trained on.
        std: per-channel standard deviation.
        center_crop: see :func:`image_transforms`.

    Returns:
        ``np.ndarray`` of shape (3, image_size, image_size), dtype float32.
    """
    rgb = np.ascontiguousarray(np.asarray(pil_image.convert("RGB"), dtype=np.uint8))
    out = transforms.Compose(image_transforms(image_size, mean, std, center_crop))(rgb)
    return np.asarray(out, dtype=np.float32)


def resolve_workers(workers: Optional[int]) -> int:
    """Parallel workers per pipeline stage: ``workers`` capped at the cores, default all cores.

    MindSpore's own default (8) fails or thrashes on small machines.
    """
    cores = cpu_count()
    if workers is None:
        return cores
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    return min(int(workers), cores)


def map_and_batch(dataset: ds.Dataset, image_ops: List, batch_size: int, drop_remainder: bool,
                  workers: int, cast_label: bool = True) -> ds.Dataset:
    """Apply ``image_ops`` to column ``image``, cast ``label`` to int32, batch.

    Args:
        dataset: source with columns ``image`` and ``label``.
        image_ops: per-image ops (e.g. :func:`cifar10_transforms`).
        batch_size: images per batch.
        drop_remainder: drop the last incomplete batch.
        workers: parallel workers of the map and batch stages.
        cast_label: add TypeCast(int32) on ``label`` (skip when it is int32 already).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    dataset = dataset.map(operations=image_ops, input_columns="image", num_parallel_workers=workers)
    if cast_label:
        dataset = dataset.map(operations=transforms.TypeCast(ms.int32), input_columns="label",
                              num_parallel_workers=workers)
    return dataset.batch(int(batch_size), drop_remainder=drop_remainder, num_parallel_workers=workers)


def mix_batches(dataset: ds.Dataset, num_classes: int, mixup: float = 0.0, cutmix: float = 0.0) -> ds.Dataset:
    """Mix the images and labels of each batch: MindSpore's ``MixUpBatch`` / ``CutMixBatch``.

    Labels become one-hot float32 rows, then soft targets: the mixing weights of the two images
    (``nn.CrossEntropyLoss`` takes such class probabilities). With both alphas, each batch gets
    one of the two at random (as timm's ``switch_prob`` 0.5). Apply to batched NCHW training data.

    Args:
        dataset: batched (image, label) pipeline with integer labels.
        num_classes: classes of the one-hot labels.
        mixup: Beta-distribution alpha of MixUp (0: off).
        cutmix: Beta-distribution alpha of CutMix (0: off).
    """
    mixers = []
    if mixup > 0:
        mixers.append(vision.MixUpBatch(float(mixup)))
    if cutmix > 0:
        mixers.append(vision.CutMixBatch(vision.ImageBatchFormat.NCHW, float(cutmix), 1.0))
    if not mixers:
        return dataset
    dataset = dataset.map(operations=[transforms.OneHot(int(num_classes)), transforms.TypeCast(ms.float32)],
                          input_columns="label")
    mixer = mixers[0] if len(mixers) == 1 else transforms.RandomChoice(mixers)
    return dataset.map(operations=mixer, input_columns=["image", "label"])
