"""Weights compute what their publisher trained: each peer's own network against mindresnet's.

Every test builds a publisher's network, randomises its weights and BatchNorm statistics (so that
padding and eps matter), saves the publisher's own checkpoint, loads it with mindresnet, and
compares eval-mode logits (relative error < 1e-4). Each peer also gets a test with teeth: the same
file loaded into the wrong convention (a one-pixel shift, or BatchNorm eps 1e-5 instead of 1e-4)
must miss by far more.

Peers: torchvision and timm (their real code; .pth and .safetensors), MindCV 0.3 (its real
code), and the MindSpore tutorial's and mindspore/models' ResNet-50, written below from their
published code because neither is a package.
"""
from __future__ import annotations

from typing import Optional

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from mindresnet.models import create_model

TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def pynative():
    """Eager execution: a dozen ResNet-50s compiled in graph mode would take minutes."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def images(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def statistics(rng: np.random.Generator, channels: int):
    """BatchNorm (gamma, beta, mean, var) far from the identity; gamma ~ sqrt(var) keeps activations O(1).

    Variances down to 0.001 (trained networks have many) make eps matter: 1e-4 instead of 1e-5
    moves such a channel by ~4%.
    """
    var = np.exp(rng.uniform(np.log(1e-3), 0.0, channels))
    gamma = rng.uniform(0.5, 1.5, channels) * np.sqrt(var)
    beta, mean = rng.normal(0, 0.1, channels), rng.normal(0, 0.2, channels)
    return [v.astype(np.float32) for v in (gamma, beta, mean, var)]


def mindresnet_logits(arch: str, path, x: np.ndarray, convention: Optional[str] = None, num_classes=1000):
    net = create_model(arch, num_classes=num_classes, pretrained=str(path), convention=convention)
    assert not net.load_report.skipped_head and not net.load_report.unexpected
    net.set_train(False)
    return net(ms.Tensor(x)).asnumpy(), net.convention


# --- PyTorch: torchvision and timm --------------------------------------------------------------

def torch_peer(library: str, arch: str, seed: int = 0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    if library == "torchvision":
        model = getattr(pytest.importorskip("torchvision").models, arch)()
    else:
        model = pytest.importorskip("timm").create_model(arch, pretrained=False)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                gamma, beta, mean, var = statistics(rng, module.num_features)
                module.weight.copy_(torch.from_numpy(gamma))
                module.bias.copy_(torch.from_numpy(beta))
                module.running_mean.copy_(torch.from_numpy(mean))
                module.running_var.copy_(torch.from_numpy(var))
    return model.eval()


def torch_logits(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def save_torch(model, path):
    import torch

    if path.suffix == ".safetensors":
        pytest.importorskip("safetensors.torch").save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), str(path))
    return path


TORCH_CASES = [(library, arch, 32) for library in ("torchvision", "timm")
               for arch in ("resnet18", "resnet50", "resnext50_32x4d")]
TORCH_CASES += [pytest.param("torchvision", "resnet18", 224, id="torchvision-resnet18-224"),
                pytest.param("timm", "resnet50", 224, id="timm-resnet50-224", marks=pytest.mark.slow),
                pytest.param("torchvision", "resnext50_32x4d", 224, id="torchvision-resnext50_32x4d-224",
                             marks=pytest.mark.slow)]


@pytest.mark.parametrize("library,arch,size", TORCH_CASES)
def test_pytorch_weights_match_their_network(tmp_path, library, arch, size):
    model = torch_peer(library, arch)
    x = images(size, batch=2 if size == 32 else 1)
    path = save_torch(model, tmp_path / f"{arch}.pth")
    got, convention = mindresnet_logits(arch, path, x)
    assert convention == "torch"
    assert relative_error(got, torch_logits(model, x)) < TOLERANCE


def test_safetensors_weights_match_and_need_no_torch(tmp_path, monkeypatch):
    model = torch_peer("timm", "resnet18", seed=1)
    x = images(32)
    expected = torch_logits(model, x)
    path = save_torch(model, tmp_path / "resnet18.safetensors")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # `import torch` now fails
    got, convention = mindresnet_logits("resnet18", path, x)
    assert convention == "torch" and relative_error(got, expected) < TOLERANCE


@pytest.mark.parametrize("size", [32, 224])
def test_pytorch_weights_in_the_mindcv_convention_miss(tmp_path, size):
    """Teeth: MindCV's 'same' max-pool samples one pixel off PyTorch's symmetric one."""
    model = torch_peer("torchvision", "resnet18")
    x = images(size, batch=1)
    path = save_torch(model, tmp_path / "resnet18.pth")
    got, _ = mindresnet_logits("resnet18", path, x, convention="mindcv")
    assert relative_error(got, torch_logits(model, x)) > 100 * TOLERANCE


# --- MindCV 0.3: its real code ------------------------------------------------------------------

def randomise_mindspore(net: nn.Cell, seed: int = 0) -> nn.Cell:
    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            for param, value in zip((cell.gamma, cell.beta, cell.moving_mean, cell.moving_variance),
                                    statistics(rng, cell.num_features)):
                param.set_data(ms.Tensor(value))
    net.set_train(False)
    return net


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_mindcv_weights_match_its_network(tmp_path, arch):
    mindcv_resnet = pytest.importorskip("mindcv.models.resnet")
    ms.set_seed(0)
    peer = randomise_mindspore(getattr(mindcv_resnet, arch)())
    x = images(32)
    path = tmp_path / f"{arch}.ckpt"
    ms.save_checkpoint(peer, str(path))
    expected = peer(ms.Tensor(x)).asnumpy()
    got, convention = mindresnet_logits(arch, path, x)
    assert convention == "mindcv"
    assert relative_error(got, expected) < TOLERANCE
    if arch == "resnet50":  # teeth: 'same' convolutions shift every stride-2 layer by one pixel
        wrong, _ = mindresnet_logits(arch, path, x, convention="tutorial")
        assert relative_error(wrong, expected) > 100 * TOLERANCE


# --- The MindSpore tutorial's and mindspore/models' ResNet-50 --------------------------------------
# Written from their published code (neither is an installable package):
#   tutorial:          mindspore/docs tutorials/application/source_en/cv/resnet50.md (and the zh .ipynb)
#   mindspore/models:  mindspore/models official/cv/ResNet/src/resnet.py (ResNet-50, res_base=False)
# Both build every convolution with pad_mode='same' (MindSpore's default, also on the 7x7 stride-2
# stem, the stride-2 3x3 and the 1x1 shortcuts) and MaxPool2d(3, 2, pad_mode='same'), put the stride
# on the 3x3 (v1.5) and differ in names and in BatchNorm eps: 1e-5 (default) for the tutorial,
# 1e-4 (_bn: eps=1e-4, momentum=0.9) for mindspore/models, whose ImageNet head has 1001 classes.

class PublisherStyle:
    """What differs between the two publishers' ResNet-50."""

    def __init__(self, stem_norm, norm, shortcut, head, eps):
        self.stem_norm, self.norm, self.shortcut, self.head, self.eps = stem_norm, norm, shortcut, head, eps


TUTORIAL = PublisherStyle(stem_norm="norm", norm="norm", shortcut="down_sample", head="fc", eps=1e-5)
MODELS = PublisherStyle(stem_norm="bn1", norm="bn", shortcut="down_sample_layer", head="end_point", eps=1e-4)


class PublisherBottleneck(nn.Cell):
    def __init__(self, style: PublisherStyle, in_channel: int, channel: int, stride: int):
        super().__init__()
        out_channel = channel * 4
        self.names = [f"{style.norm}{i}" for i in (1, 2, 3)]
        self.conv1 = nn.Conv2d(in_channel, channel, 1, stride=1, pad_mode="same")
        self.conv2 = nn.Conv2d(channel, channel, 3, stride=stride, pad_mode="same")
        self.conv3 = nn.Conv2d(channel, out_channel, 1, stride=1, pad_mode="same")
        for name, width in zip(self.names, (channel, channel, out_channel)):
            setattr(self, name, nn.BatchNorm2d(width, eps=style.eps))
        self.relu = nn.ReLU()
        self.shortcut_name = style.shortcut
        shortcut = None
        if stride != 1 or in_channel != out_channel:
            shortcut = nn.SequentialCell([nn.Conv2d(in_channel, out_channel, 1, stride=stride, pad_mode="same"),
                                          nn.BatchNorm2d(out_channel, eps=style.eps)])
        setattr(self, style.shortcut, shortcut)

    def construct(self, x):
        norm1, norm2, norm3 = (getattr(self, name) for name in self.names)
        out = self.relu(norm1(self.conv1(x)))
        out = self.relu(norm2(self.conv2(out)))
        out = norm3(self.conv3(out))
        shortcut = getattr(self, self.shortcut_name)
        identity = x if shortcut is None else shortcut(x)
        return self.relu(out + identity)


class PublisherResNet50(nn.Cell):
    def __init__(self, style: PublisherStyle, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, pad_mode="same")
        self.stem_norm_name, self.head_name = style.stem_norm, style.head
        setattr(self, style.stem_norm, nn.BatchNorm2d(64, eps=style.eps))
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        stages, last = [], 64
        for index, (channel, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stride = 1 if index == 0 else 2
            layer = [PublisherBottleneck(style, last, channel, stride)]
            layer += [PublisherBottleneck(style, channel * 4, channel, 1) for _ in range(blocks - 1)]
            stages.append(nn.SequentialCell(layer))
            last = channel * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        setattr(self, style.head, nn.Dense(2048, num_classes))

    def construct(self, x):
        x = self.max_pool(self.relu(getattr(self, self.stem_norm_name)(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return getattr(self, self.head_name)(ops.mean(x, (2, 3)))


@pytest.fixture(scope="module", params=[(TUTORIAL, 1000), (MODELS, 1001)], ids=["tutorial", "mindspore-models"])
def publisher_checkpoint(request, tmp_path_factory):
    """(style, num_classes, checkpoint path, its network) of one publisher's randomised ResNet-50."""
    style, num_classes = request.param
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    net = randomise_mindspore(PublisherResNet50(style, num_classes))
    path = tmp_path_factory.mktemp("publisher") / f"resnet50-{style.head}.ckpt"
    ms.save_checkpoint(net, str(path))
    names = {p.name for p in net.get_parameters()}
    assert f"layer1.0.{style.shortcut}.1.moving_variance" in names and f"{style.head}.weight" in names
    return style, num_classes, path, net


@pytest.mark.parametrize("size", [32, pytest.param(224, marks=pytest.mark.slow)])
def test_publisher_resnet50_weights_match_their_network(publisher_checkpoint, size):
    style, num_classes, path, net = publisher_checkpoint
    x = images(size, batch=2 if size == 32 else 1)
    got, convention = mindresnet_logits("resnet50", path, x, num_classes=num_classes)
    assert convention == ("tutorial" if style is TUTORIAL else "models")
    assert relative_error(got, net(ms.Tensor(x)).asnumpy()) < TOLERANCE


def test_publisher_weights_in_a_wrong_convention_miss(publisher_checkpoint):
    """Teeth: symmetric padding (MindCV's) shifts by a pixel; eps 1e-5 instead of 1e-4 misses too."""
    style, num_classes, path, net = publisher_checkpoint
    x = images(32)
    expected = net(ms.Tensor(x)).asnumpy()
    shifted, _ = mindresnet_logits("resnet50", path, x, convention="mindcv", num_classes=num_classes)
    assert relative_error(shifted, expected) > 100 * TOLERANCE
    other_eps = "tutorial" if style is MODELS else "models"  # same padding, the other eps
    wrong_eps, _ = mindresnet_logits("resnet50", path, x, convention=other_eps, num_classes=num_classes)
    assert relative_error(wrong_eps, expected) > 10 * TOLERANCE, "eps 1e-5 vs 1e-4 must fail the comparison"
