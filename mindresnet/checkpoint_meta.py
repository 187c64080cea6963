"""What a checkpoint written by mindresnet says about itself: :class:`CheckpointMeta`, the one type.

Training writes it into its best and last checkpoints (as JSON under
:data:`mindresnet.checkpoint.META_KEY`); evaluate, visualize, predict, export and ``--resume``
read it back, so the checkpoint alone rebuilds the model and its preprocessing. To add a field,
add it here with a default: files written before it existed read with that default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_SIZE, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from mindresnet.errors import CheckpointError

# The padding/BatchNorm convention (mindresnet.models.conventions) of models trained from scratch, and of
# every checkpoint written before the field existed.
DEFAULT_CONVENTION = "mindcv"


@dataclass
class CheckpointMeta:
    """Model, preprocessing and progress of a checkpoint.

    ``class_names_from`` is not stored: it says where :func:`mindresnet.trained.load_trained_model`
    found the class names (``"metadata"``, a class index file, or None for generic names).
    """

    arch: str
    num_classes: int
    stem: str = "imagenet"
    convention: str = DEFAULT_CONVENTION
    image_size: int = 224
    mean: Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: Tuple[float, ...] = (0.229, 0.224, 0.225)
    class_names: List[str] = field(default_factory=list)
    dataset: Optional[str] = None
    mindresnet: Optional[str] = None  # package version that wrote the file
    epoch: int = 0  # epochs completed
    stage: str = "full"  # what trained: "head" (head-only epochs on cached features) or "full" (every trainable layer)
    step: int = 0  # steps done of the interrupted epoch (last checkpoints; 0 at an epoch's end)
    epoch_loss_sum: float = 0.0  # summed loss of those steps, so the epoch's mean loss survives a resume
    epoch_seconds: float = 0.0  # their training time, likewise for the epoch's images/s
    accuracy: Optional[float] = None  # eval top-1 of these weights (best checkpoints)
    best_accuracy: Optional[float] = None  # best eval top-1 of the run so far (last checkpoints)
    rank: Optional[int] = None  # data-parallel rank that wrote a per-rank copy
    extra: Dict[str, Any] = field(default_factory=dict)  # keys of a newer mindresnet, kept as they are
    class_names_from: Optional[str] = field(default=None, compare=False)

    @classmethod
    def describe(cls, arch: str, num_classes: int, stem: str = "imagenet", convention: str = DEFAULT_CONVENTION,
                 image_size: Optional[int] = None) -> "CheckpointMeta":
        """Metadata of a model known only by how it was built: CIFAR-10's 32x32 input and statistics for
        the cifar stem (or a size up to 32), ImageNet's 224 and statistics otherwise."""
        size = int(image_size or (CIFAR10_SIZE if stem == "cifar" else 224))
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if size <= CIFAR10_SIZE else (IMAGENET_MEAN, IMAGENET_STD)
        return cls(arch, int(num_classes), stem=stem, convention=convention, image_size=size, mean=tuple(mean),
                   std=tuple(std))

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str) -> "CheckpointMeta":
        """Parse stored metadata; CheckpointError naming ``source`` when a field has a wrong type."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "class_names_from"}
        values = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known}
        missing = [key for key in ("arch", "num_classes") if key not in values]
        if missing:
            raise CheckpointError(f"Checkpoint {source} has mindresnet metadata without {', '.join(missing)}; "
                                  "it was not written by mindresnet.train. Pass --arch and --num-classes.")
        try:
            meta = cls(**values, extra=extra)
            meta.num_classes, meta.image_size = int(meta.num_classes), int(meta.image_size)
            meta.epoch, meta.step = int(meta.epoch), int(meta.step)
            meta.mean, meta.std = tuple(float(v) for v in meta.mean), tuple(float(v) for v in meta.std)
            meta.class_names = [str(name) for name in meta.class_names]
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"Checkpoint {source} has malformed mindresnet metadata ({exc}).") from exc
        return meta

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict of the stored fields (``extra`` keys included, ``class_names_from`` not)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("extra", "class_names_from")}
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return {**self.extra, **data}

    def replace(self, **changes: Any) -> "CheckpointMeta":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)
