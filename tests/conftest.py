"""Shared fixtures: MindSpore context, generated and real CIFAR-10, and helpers the tests of several modules use."""
from __future__ import annotations

import os
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from PIL import Image

from mindresnet.checkpoint import save_checkpoint
from mindresnet.data.constants import RECORD_BYTES
from mindresnet.models import create_model
from mindresnet.runtime import setup_context
from mindresnet.tools.eval_data import load_trained_model
from mindresnet.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
SUBSET = Path(os.environ.get("MINDRESNET_SUBSET", REPO.parent / "shared" / "data" / "cifar10-subset"))
REQUIRE_SUBSET_ENV = "MINDRESNET_REQUIRE_SUBSET"
REQUIRE_PEERS_ENV = "MINDRESNET_REQUIRE_PEERS"  # CI: a test skipped for a missing peer package fails instead
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _fail_missing_peer(report, reason: str) -> None:
    """Under MINDRESNET_REQUIRE_PEERS, a ``pytest.importorskip`` of a peer (torch, onnx, ...) is a failure."""
    if os.environ.get(REQUIRE_PEERS_ENV) and report.skipped and "could not import" in reason:
        report.outcome = "failed"
        report.longrepr = f"{reason}, and {REQUIRE_PEERS_ENV} is set: pip install -r tests/requirements.txt"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing_peer(outcome.get_result(), str(call.excinfo.value) if call.excinfo else "")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # a module-level importorskip skips the whole file
    outcome = yield
    report = outcome.get_result()
    _fail_missing_peer(report, str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr))


class SquaredSum(ms.nn.Cell):
    """Scalar ``sum(conv(x) ** 2)`` so that gradients reach the input and the weight."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def construct(self, x):
        return (self.conv(x) ** 2).sum()


def conv_and_grads(conv, x: ms.Tensor):
    """A convolution's output, input gradient and weight gradient (of :class:`SquaredSum`), as arrays."""
    out = conv(x).asnumpy()
    dx, (dw,) = ms.grad(SquaredSum(conv), grad_position=0, weights=conv.trainable_params())(x)
    return out, dx.asnumpy(), dw.asnumpy()


def twin_nets(build):
    """``build()`` twice with the same weights: (reference net, twin net, the initial weights by name)."""
    reference, twin = build(), build()
    ms.load_param_into_net(twin, {p.name: ms.Parameter(p.data.copy(), p.name) for p in reference.get_parameters()})
    return reference, twin, {p.name: p.asnumpy().copy() for p in reference.get_parameters()}


def random_batch(count: int, size: int, classes: int = 10, seed: int = 0):
    """(images count x 3 x size x size, integer labels) drawn from a seeded generator, as Tensors."""
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.standard_normal((count, 3, size, size)).astype(np.float32)),
            ms.Tensor(rng.integers(0, classes, count).astype(np.int32)))


def step_losses(net, images, labels, steps: int, cpu_kernels: bool = False):
    """The losses of ``steps`` momentum steps (LR 1e-3) of mindresnet's train step on one batch."""
    from mindresnet.training.loss import build_loss
    from mindresnet.training.optim import build_optimizer
    from mindresnet.training.step import build_train_step

    optimizer = build_optimizer(net.trainable_params(), "momentum", [1e-3] * steps, 0.9, 0.0)
    step = build_train_step(net, build_loss(), optimizer, cpu_kernels=cpu_kernels)
    return [float(step(images, labels).asnumpy()) for _ in range(steps)]


def assert_same_updates(initial: dict, expected_net, got_net, tolerance: float = 0.05) -> None:
    """Two nets trained from the same ``initial`` parameters moved them the same way.

    Compares each parameter's update in L2 norm: a max-pool's near-ties after a ReLU send single
    gradients elsewhere under other rounding, and BatchNorm shifts sum gradients that nearly cancel, so
    elementwise checks would test rounding, not kernels (seen: 1% on a beta between two exact kernels).
    """
    for expected, got in zip(expected_net.get_parameters(), got_net.get_parameters()):
        start = initial[expected.name]
        want, have = expected.asnumpy() - start, got.asnumpy() - start
        scale = max(float(np.linalg.norm(want)), 1e-12)
        assert float(np.linalg.norm(have - want)) / scale < tolerance, expected.name


@pytest.fixture(scope="session", autouse=True)
def mindspore_context():
    """Graph mode on CPU with as many threads as cores, once per test session."""
    setup_context("CPU", "graph")


@pytest.fixture(autouse=True)
def graph_mode_per_test(mindspore_context):
    """Each test starts in graph mode, whatever the one before left (predict runs PyNative)."""
    ms.set_context(mode=ms.GRAPH_MODE)


def write_cifar_bin(folder: Path, records_per_file: int = 20, seed: int = 0, test_records: int | None = None,
                    files=("data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                           "data_batch_5.bin")) -> Path:
    """Write a CIFAR-10 binary folder (``cifar-10-batches-bin`` layout) of random images.

    Each record: 1 label byte then 3072 pixel bytes (R, G, B planes of 32x32). Labels cycle 0-9
    so every class is present. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def records(count: int) -> bytes:
        labels = (np.arange(count) % 10).astype(np.uint8)[:, None]
        pixels = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        return np.concatenate([labels, pixels], axis=1).tobytes()

    for name in files:
        (folder / name).write_bytes(records(records_per_file))
    (folder / "test_batch.bin").write_bytes(records(test_records or records_per_file))
    (folder / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return folder


def collect(dataset):
    """All batches of one epoch of ``dataset``, concatenated: (images, labels) as numpy arrays."""
    images, labels = [], []
    for image, label in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
        images.append(image)
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    """A generated CIFAR-10 binary folder: 5 x 20 training and 20 test records."""
    return write_cifar_bin(tmp_path / "cifar-10-batches-bin")


@pytest.fixture(scope="session")
def real_subset() -> Path:
    """``../shared/data/cifar10-subset/cifar-10-batches-bin``; skips when absent, unless CI requires it."""
    folder = SUBSET / "cifar-10-batches-bin"
    if not (folder / "data_batch_1.bin").is_file():
        message = f"real CIFAR-10 subset not found at {folder} (set MINDRESNET_SUBSET to its parent)"
        if os.environ.get(REQUIRE_SUBSET_ENV):
            pytest.fail(f"{message}, and {REQUIRE_SUBSET_ENV} is set")
        pytest.skip(message)
    return folder


@pytest.fixture
def file_server(tmp_path):
    """Serve a fresh folder over HTTP on 127.0.0.1; yields (folder, base_url, list of requested paths).

    The ``download`` package makes several GETs per file (a size probe, then the transfer).
    """
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "served"
    folder.mkdir()
    requests: list = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            try:
                super().do_GET()
            except (BrokenPipeError, ConnectionResetError):  # the client probes the size, then hangs up
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory, real_slice) -> Path:
    """A resnet18 (cifar stem) trained 15 steps on real images (:func:`real_slice`), once per session; its best
    checkpoint."""
    from mindresnet.training.config import TrainConfig
    from mindresnet.training.run import fit

    tmp = tmp_path_factory.mktemp("trained")
    result = fit(TrainConfig(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(real_slice),
                             download=False, epochs=1, batch_size=64, max_steps_per_epoch=15, lr=0.05,
                             optimizer="sgd", lr_schedule="constant", ckpt_dir=str(tmp / "ckpt")))
    assert result.best_path is not None, "training saved no best checkpoint"
    return result.best_path


# --- shared by the tests of several modules: short training runs, small networks, data sets ---

def tiny_config(data_dir, ckpt_dir, **overrides) -> TrainConfig:
    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=2, lr=0.01, optimizer="sgd", workers=1,
                  ckpt_dir=str(ckpt_dir))
    values.update(overrides)
    return TrainConfig(**values)


def one_step_config(data_dir, ckpt_dir, **overrides) -> TrainConfig:
    """A :func:`tiny_config` of one step an epoch (the --val-split runs)."""
    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=1, lr=0.01, optimizer="sgd", workers=1,
                  ckpt_dir=str(ckpt_dir))
    return TrainConfig(**{**values, **overrides})


def small_resnet(num_classes=3, **kwargs):
    return create_model("resnet18", num_classes=num_classes, stem="cifar", **kwargs)


def batch(count=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (ms.Tensor(rng.standard_normal((count, 3, 32, 32)).astype(np.float32)),
            ms.Tensor((np.arange(count) % classes).astype(np.int32)))


def values(cell, names=None):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters() if names is None or p.name in names}


def tiny_mlp(seed=0):
    ms.set_seed(seed)
    return nn.SequentialCell([nn.Dense(6, 8), nn.ReLU(), nn.Dense(8, 3)])


def fit_config(data_dir, ckpt_dir, **overrides):
    from mindresnet.training.config import TrainConfig

    values = dict(arch="resnet18", stem="cifar", pretrained="false", data_dir=str(data_dir), download=False,
                  epochs=2, batch_size=8, max_steps_per_epoch=2, lr=0.01, optimizer="sgd", workers=1,
                  lr_schedule="constant", ckpt_dir=str(ckpt_dir))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture
def pretrained_file(tmp_path):
    """A resnet18 (cifar stem, 10 classes) .ckpt with non-trivial BatchNorm statistics, as a real pretrained file has."""
    net = small_resnet(num_classes=10)
    rng = np.random.default_rng(0)
    for param in net.get_parameters():
        if "moving_" in param.name:
            low = 0.8 if "variance" in param.name else -0.1
            param.set_data(ms.Tensor(rng.uniform(low, low + 0.4, param.shape).astype(np.float32)))
    return save_checkpoint(net, tmp_path / "pretrained.ckpt")


def snapshots(monkeypatch):
    """Record (stage, every network value) at the end of each epoch of fit."""
    from mindresnet.training.run import RunRecord

    taken = []
    real_end_epoch = RunRecord.end_epoch

    def end_epoch(record, stage, epoch, row):
        taken.append((stage.name, values(record.net)))
        real_end_epoch(record, stage, epoch, row)

    monkeypatch.setattr(RunRecord, "end_epoch", end_epoch)
    return taken


COUNTS = {"common": 24, "middling": 6, "rare": 2}


@pytest.fixture
def imbalanced_root(tmp_path) -> Path:
    """root/train/<class>/ with 24, 6 and 2 small PNGs; root/val/<class>/ 2 each."""
    root = tmp_path / "imbalanced"
    rng = np.random.default_rng(0)
    for name, count in COUNTS.items():
        for split, images in (("train", count), ("val", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(images):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return root


SAMPLE = 64  # test images evaluated: enough for every tool, fast on 2 cores


SLICE_TEST = 128  # test images of real_slice


def subset_part(real_subset: Path, folder: Path, test_records: int, train_files=()) -> Path:
    """A CIFAR-10 folder at ``folder`` of the real subset's first ``test_records`` test images, its class names
    and its ``train_files`` whole."""
    folder.mkdir()
    for name in ("batches.meta.txt", *train_files):
        (folder / name).write_bytes((real_subset / name).read_bytes())
    (folder / "test_batch.bin").write_bytes((real_subset / "test_batch.bin").read_bytes()[:test_records * RECORD_BYTES])
    return folder


@pytest.fixture(scope="session")
def real_slice(real_subset, tmp_path_factory) -> Path:
    """Real images for runs of several processes: the subset's first training file (1017 images) and its
    first 128 test images, as a CIFAR-10 folder of their own."""
    return subset_part(real_subset, tmp_path_factory.mktemp("slice") / "cifar-10-batches-bin", SLICE_TEST,
                       ("data_batch_1.bin",))


@pytest.fixture(scope="module")
def sample_dir(real_subset, tmp_path_factory):
    """The first 64 test records of the real subset, as their own CIFAR-10 folder."""
    return subset_part(real_subset, tmp_path_factory.mktemp("sample") / "cifar-10-batches-bin", SAMPLE)


@pytest.fixture(scope="module")
def model(trained_ckpt):
    return load_trained_model(trained_ckpt)


@pytest.fixture(autouse=True)
def no_graph_cache(monkeypatch):
    """Training compiles afresh in tests: a graph saved by one test would hide another's monkeypatched code
    (tests/test_training_graph_cache.py turns the cache on where it is the subject)."""
    monkeypatch.setenv("MINDRESNET_GRAPH_CACHE", "0")
