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

from mindresnet.data.factory import DATASETS
from mindresnet.data.preprocess import Preprocess, cifar10_preprocess, imagenet_preprocess
from mindresnet.errors import CheckpointError

# The padding/BatchNorm convention (mindresnet.models.conventions) of models trained from scratch, and of
# every checkpoint written before the field existed.
DEFAULT_CONVENTION = "mindcv"
# What files written before the Preprocess record stored of it; the record is derived from them.
LEGACY_PREPROCESS_KEYS = ("image_size", "mean", "std")


@dataclass
class CheckpointMeta:
    """Model, preprocessing and progress of a checkpoint.

    ``preprocess`` is the model's one :class:`~mindresnet.data.preprocess.Preprocess`; ``image_size``,
    ``mean`` and ``std`` read it. ``val_split``/``val_seed``: the training images held out to pick
    the best checkpoint (0: none, the dataset's held-out split picked it).

    ``class_names_from`` is not stored: it says where :func:`mindresnet.models.load_model`
    found the class names (``"metadata"``, a class index file, or None for generic names).
    """

    arch: str
    num_classes: int
    stem: str = "imagenet"
    convention: str = DEFAULT_CONVENTION
    preprocess: Preprocess = field(default_factory=imagenet_preprocess)
    class_names: List[str] = field(default_factory=list)
    dataset: Optional[str] = None
    mindresnet: Optional[str] = None  # package version that wrote the file
    epoch: int = 0  # epochs completed
    stage: str = "full"  # what trained: "head" (head-only epochs on cached features) or "full" (every trainable layer)
    drop_path: float = 0.0  # stochastic-depth rate trained with (models are rebuilt without it: inference ignores it)
    step: int = 0  # steps done of the interrupted epoch (last checkpoints; 0 at an epoch's end)
    epoch_loss_sum: float = 0.0  # summed loss of those steps, so the epoch's mean loss survives a resume
    epoch_seconds: float = 0.0  # their training time, likewise for the epoch's images/s
    accuracy: Optional[float] = None  # eval top-1 of these weights (best checkpoints)
    best_accuracy: Optional[float] = None  # best eval top-1 of the run so far (last checkpoints)
    rank: Optional[int] = None  # data-parallel rank that wrote a per-rank copy
    val_split: float = 0.0
    val_seed: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # keys of a newer mindresnet, kept as they are
    class_names_from: Optional[str] = field(default=None, compare=False)

    @property
    def image_size(self) -> int:
        """Side of the model input (``preprocess.size``)."""
        return self.preprocess.size

    @property
    def mean(self) -> Tuple[float, ...]:
        """Per-channel mean of the input normalisation (``preprocess.mean``)."""
        return self.preprocess.mean

    @property
    def std(self) -> Tuple[float, ...]:
        """Per-channel standard deviation of the input normalisation (``preprocess.std``)."""
        return self.preprocess.std

    @classmethod
    def describe(cls, arch: str, num_classes: int, stem: str = "imagenet", convention: str = DEFAULT_CONVENTION,
                 image_size: Optional[int] = None) -> "CheckpointMeta":
        """Metadata of a model known only by how it was built: CIFAR-10's preprocessing (32x32 unless
        ``image_size``) for the cifar stem, ImageNet's (224) for the imagenet stem."""
        make = cifar10_preprocess if stem == "cifar" else imagenet_preprocess
        preprocess = make() if image_size is None else make(int(image_size))
        return cls(arch, int(num_classes), stem=stem, convention=convention, preprocess=preprocess)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str) -> "CheckpointMeta":
        """Parse stored metadata; CheckpointError naming ``source`` when a field has a wrong type."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "class_names_from"}
        values = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known and key not in LEGACY_PREPROCESS_KEYS}
        missing = [key for key in ("arch", "num_classes") if key not in values]
        if missing:
            raise CheckpointError(f"Checkpoint {source} has mindresnet metadata without {', '.join(missing)}; "
                                  "it was not written by mindresnet.train. Pass --arch and --num-classes.")
        try:
            values["preprocess"] = (Preprocess.from_dict(values["preprocess"]) if "preprocess" in values
                                    else legacy_preprocess(data))
            meta = cls(**values, extra=extra)
            meta.num_classes, meta.epoch, meta.step = int(meta.num_classes), int(meta.epoch), int(meta.step)
            meta.val_split = float(meta.val_split)
            meta.class_names = [str(name) for name in meta.class_names]
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"Checkpoint {source} has malformed mindresnet metadata ({exc}).") from exc
        return meta

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready dict of the stored fields (``extra`` keys included, ``class_names_from`` not).

        ``image_size``, ``mean`` and ``std`` are written too, copies of ``preprocess`` for mindresnet
        versions that predate it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("extra", "class_names_from")}
        data["preprocess"] = self.preprocess.to_dict()
        data.update(image_size=self.image_size, mean=list(self.mean), std=list(self.std))
        return {**self.extra, **data}

    def replace(self, **changes: Any) -> "CheckpointMeta":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def legacy_preprocess(data: Dict[str, Any]) -> Preprocess:
    """The :class:`Preprocess` of metadata written before the record: its dataset kind's rule (the one its
    training evaluated with; the stem's kind when no dataset is named) at its stored size, mean and std."""
    kind = DATASETS.get(data.get("dataset"))
    if kind is not None:
        make = kind.preprocess
    else:
        make = cifar10_preprocess if data.get("stem") == "cifar" else imagenet_preprocess
    size = int(data.get("image_size", 224))
    rule = make(size)
    return dataclasses.replace(rule, mean=tuple(data.get("mean", rule.mean)), std=tuple(data.get("std", rule.std)))
