"""Dataset constants: normalisation statistics, the CIFAR-10 binary layout and its download URL."""
from __future__ import annotations

# Per-channel statistics of the CIFAR-10 training set (the tutorial's values), RGB order, [0, 1] scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

# ImageNet statistics, for custom datasets fine-tuned from ImageNet weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-bin"
CLASS_FILE = "batches.meta.txt"
TRAIN_PATTERN = "data_batch_*.bin"
TEST_FILE = "test_batch.bin"

CIFAR10_SIZE = 32
CIFAR10_CLASSES = 10
IMAGE_BYTES = 3 * CIFAR10_SIZE * CIFAR10_SIZE
RECORD_BYTES = 1 + IMAGE_BYTES  # one label byte, then the R, G and B planes
STANDARD_RECORDS = 10000  # records per official file; the only count Cifar10Dataset reads

# Largest --image-size: one 2048 x 2048 float32 image is 48 MiB, a batch of 64 already 3 GiB.
MAX_IMAGE_SIZE = 2048

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# PIL format names that MindSpore's C++ Decode reads (MPO: multi-picture JPEG from cameras).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "BMP")
CLASS_INDICES_FILE = "class_indices.json"
