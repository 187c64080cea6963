"""Image transforms of the dataset pipelines: training augmentation, then the model's :class:`Preprocess`.

Every list returned here holds MindSpore C++ vision ops that take an HWC ``uint8`` RGB image and
end with a normalised ``float32`` CHW array. Eval pipelines are exactly
:meth:`Preprocess.ops() <mindresnet.data.preprocess.Preprocess.ops>`, the ops that prediction runs
too. :func:`map_and_batch` is the stage both dataset readers end with.
"""
from __future__ import annotations

from typing import List, Optional

import mindspore as ms
from mindspore import dataset as ds
from mindspore.dataset import transforms, vision

from mindresnet.data.constants import CIFAR10_SIZE
from mindresnet.data.preprocess import INTERPOLATIONS, Preprocess
from mindresnet.runtime import cpu_count

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


def color_jitter_ops(strength: float) -> List:
    """timm's ``--color-jitter S``: brightness, contrast and saturation each scaled by a random factor in
    [1-S, 1+S] (MindSpore's ``RandomColorAdjust``, HWC uint8); none for 0."""
    return [vision.RandomColorAdjust(brightness=strength, contrast=strength, saturation=strength)] if strength else []


def erasing_ops(prob: float) -> List:
    """timm's ``--reprob P``: with probability P, one random rectangle of the normalised CHW image set to 0
    (the mean pixel; MindSpore's ``RandomErasing``); none for 0."""
    return [vision.RandomErasing(prob=prob)] if prob else []


def cifar10_transforms(train: bool, preprocess: Preprocess, auto_augment: Optional[str] = None,
                       color_jitter: float = 0.0, reprob: float = 0.0) -> List:
    """The tutorial's CIFAR-10 pipeline for one 32x32 HWC uint8 image.

    Args:
        train: RandomCrop(32, padding 4) and RandomHorizontalFlip(0.5), resized to ``preprocess.size``
            when it is not 32; otherwise ``preprocess.ops()``.
        preprocess: output size, eval transform and normalisation.
        auto_augment: with ``train``, then :func:`auto_augment_ops` (the CIFAR-10 AutoAugment policy).
        color_jitter, reprob: with ``train``, :func:`color_jitter_ops` before it and :func:`erasing_ops` last.
    """
    if not train:
        return preprocess.ops()
    ops = [vision.RandomCrop(CIFAR10_SIZE, padding=4), vision.RandomHorizontalFlip(0.5)]
    ops += color_jitter_ops(color_jitter) + auto_augment_ops(auto_augment, policy="cifar10")
    if preprocess.size != CIFAR10_SIZE:
        ops.append(vision.Resize((preprocess.size, preprocess.size), INTERPOLATIONS[preprocess.interpolation]))
    return ops + preprocess.normalize_ops() + erasing_ops(reprob)


def folder_transforms(train: bool, preprocess: Preprocess, auto_augment: Optional[str] = None,
                      color_jitter: float = 0.0, reprob: float = 0.0) -> List:
    """Pipeline for a decoded image of a custom (ImageNet-like) dataset.

    Args:
        train: RandomResizedCrop + RandomHorizontalFlip; otherwise ``preprocess.ops()``.
        preprocess: output size, eval transform and normalisation.
        auto_augment: with ``train``, then :func:`auto_augment_ops` (the ImageNet AutoAugment policy).
        color_jitter, reprob: with ``train``, :func:`color_jitter_ops` before it and :func:`erasing_ops` last.
    """
    if not train:
        return preprocess.ops()
    ops = [vision.RandomResizedCrop(preprocess.size, interpolation=INTERPOLATIONS[preprocess.interpolation]),
           vision.RandomHorizontalFlip(0.5)]
    ops += color_jitter_ops(color_jitter) + auto_augment_ops(auto_augment, policy="imagenet")
    return ops + preprocess.normalize_ops() + erasing_ops(reprob)


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
