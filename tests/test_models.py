"""mindresnet.models: variants, parameter counts, names; the net's classifier, groups, frozen backbone, drop-path."""
import re
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import mindresnet
from mindresnet import models
from mindresnet.checkpoint import read_checkpoint, save_checkpoint
from mindresnet.models import CONVENTIONS, ResidualBlock, ResidualBlockBase, ResNet, create_model, make_layer
from mindresnet.models.blocks import DropPath
from mindresnet.models.conventions import SymmetricMaxPool2d
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer
from mindresnet.training.step import build_train_step

from conftest import batch, small_resnet, values

# Trainable parameters with a 1000-class head, as published for torchvision's architectures.
REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x4d": 44_177_704,  # this and the two 64x4d: as MindCV 0.3 and timm build them
    "resnext101_64x4d": 83_455_272,
    "resnext101_32x8d": 88_791_336,
    "resnext152_64x4d": 114_971_944,
}


def count(net) -> int:
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.fixture
def pynative():
    """Shape checks of the deep variants run eagerly: compiling each would take minutes."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def test_registry_lists_every_variant_with_a_builder():
    assert mindresnet.list_models() == sorted(REFERENCE_PARAMS)
    for name in REFERENCE_PARAMS:
        assert getattr(models, name).__name__ == name


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_count_matches_reference(name):
    assert count(mindresnet.create_model(name)) == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
@pytest.mark.parametrize("size", [32, 64])
def test_output_shape(name, size, pynative):
    net = getattr(models, name)(num_classes=10)
    net.set_train(False)
    out = net(ms.Tensor(np.random.rand(2, 3, size, size).astype(np.float32)))
    assert out.shape == (2, 10)
    assert np.isfinite(out.asnumpy()).all()


def test_cifar_stem_keeps_resolution_and_fits_graph_mode():
    net = mindresnet.resnet18(num_classes=10, stem="cifar")
    assert net.max_pool is None and net.conv1.weight.shape == (64, 3, 3, 3)
    assert count(net) == REFERENCE_PARAMS["resnet18"] - 1000 * 513 + 10 * 513 - 64 * 3 * (49 - 9)
    features = net.forward_features(ms.Tensor(np.zeros((1, 3, 32, 32), np.float32)))
    assert features.shape == (1, 512, 4, 4)  # the ImageNet stem would give 1x1


def test_imagenet_stem_handles_224():
    net = mindresnet.resnet18(num_classes=3)
    net.set_train(False)
    assert net(ms.Tensor(np.zeros((1, 3, 224, 224), np.float32))).shape == (1, 3)


def test_resnet50_has_the_tutorial_checkpoint_names():
    names = {p.name for p in mindresnet.resnet50().get_parameters()}
    bn = ("gamma", "beta", "moving_mean", "moving_variance")
    expected = {"conv1.weight", "fc.weight", "fc.bias"} | {f"norm.{k}" for k in bn}
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        expected |= {f"layer{stage}.0.down_sample.0.weight"} | {f"layer{stage}.0.down_sample.1.{k}" for k in bn}
        for i in range(blocks):
            expected |= {f"layer{stage}.{i}.conv{c}.weight" for c in (1, 2, 3)}
            expected |= {f"layer{stage}.{i}.norm{c}.{k}" for c in (1, 2, 3) for k in bn}
    assert names == expected


def test_basic_block_has_two_norms_and_right_channels():
    """The tutorial's base block shared one BatchNorm and mis-sized conv2; ours must not."""
    block = ResidualBlockBase(64, 128, stride=2, down_sample=make_layer(64, ResidualBlockBase, 128, 1, 2)[0].down_sample)
    assert block.norm1 is not block.norm2
    assert block.conv2.weight.shape == (128, 128, 3, 3)


def test_resnext_bottleneck_is_grouped():
    block = ResidualBlock(256, 128, groups=32, width_per_group=4)
    assert block.conv2.group == 32
    assert block.conv2.weight.shape == (256, 8, 3, 3)


def test_make_layer_adds_down_sample_only_when_needed():
    assert make_layer(64, ResidualBlockBase, 64, 2)[0].down_sample is None
    assert make_layer(64, ResidualBlock, 64, 3)[0].down_sample is not None  # 64 -> 256 channels
    assert len(make_layer(256, ResidualBlock, 128, 4, stride=2)) == 4


def test_bad_names_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown model 'resnet51'.*resnet50"):
        mindresnet.create_model("resnet51")
    with pytest.raises(ValueError, match="--convention 'keras' is not one of mindcv, tutorial, models, torch"):
        mindresnet.create_model("resnet18", convention="keras")
    with pytest.raises(ValueError, match="stem='tiny'"):
        mindresnet.resnet18(stem="tiny")
    with pytest.raises(ValueError, match="groups=1"):
        ResNet(ResidualBlockBase, (2, 2, 2, 2), groups=32)


def batch_norms(net):
    return [cell for _, cell in net.cells_and_names() if isinstance(cell, ms.nn.BatchNorm2d)]


def test_freeze_backbone_leaves_only_the_head_trainable_and_batchnorm_in_inference_mode():
    net = mindresnet.resnet18(num_classes=10, freeze_backbone=True)
    assert sorted(p.name for p in net.trainable_params()) == ["fc.bias", "fc.weight"]
    assert len(batch_norms(net)) == 20 and all(bn.use_batch_statistics is False for bn in batch_norms(net))
    net.freeze_backbone(False)
    assert len(net.trainable_params()) == len([p for p in net.get_parameters() if "moving_" not in p.name])
    assert all(bn.use_batch_statistics is None for bn in batch_norms(net))


def test_the_network_owns_and_resets_its_classifier(pynative):
    net = mindresnet.resnet18(num_classes=10, stem="cifar")
    assert net.get_classifier() is net.fc and net.get_classifier().weight.shape == (10, 512)
    backbone = {p.name: p.asnumpy().copy() for p in net.get_parameters() if not net.is_head(p.name)}
    net.reset_classifier(7)
    assert net.get_classifier() is net.fc and net.fc.weight.shape == (7, 512)
    names = [p.name for p in net.get_parameters()]
    assert names[-2:] == ["fc.weight", "fc.bias"] and len(names) == len(set(names))
    for name, param in ((p.name, p) for p in net.get_parameters() if p.name in backbone):
        np.testing.assert_array_equal(param.asnumpy(), backbone[name])
    net.set_train(False)
    assert net(ms.Tensor(np.zeros((2, 3, 32, 32), np.float32))).shape == (2, 7)


def test_parameter_groups_are_stem_stages_and_head():
    net = mindresnet.resnet50()
    groups = {}
    for param in net.get_parameters():
        groups.setdefault(ResNet.param_group(param.name), []).append(param.name)
    assert sorted(groups) == [0, 1, 2, 3, 4, 5]
    assert sorted(groups[0]) == sorted(["conv1.weight"] + [f"norm.{k}" for k in ("gamma", "beta", "moving_mean",
                                                                                 "moving_variance")])
    assert groups[5] == ["fc.weight", "fc.bias"] and all(net.is_head(name) for name in groups[5])
    for stage in (1, 2, 3, 4):
        assert groups[stage] and all(name.startswith(f"layer{stage}.") for name in groups[stage])
    matcher = ResNet.group_matcher()
    for param in net.get_parameters():  # timm's group_matcher: every parameter in exactly one group
        assert sum(bool(re.match(pattern, param.name)) for pattern in matcher.values()) == 1, param.name


def test_only_the_network_spells_its_head_and_stage_names():
    """Loading, fine-tuning, checkpoints and conversion ask the network (get_classifier, param_group)."""
    package = Path(mindresnet.__file__).parent
    spelled = re.compile(r"""["'(]fc\.|layer\\d|["'(]layer\d\.|\.fc\b""")
    offenders = [f"{path.relative_to(package)}:{number}" for path in sorted(package.rglob("*.py"))
                 if path.parent.name != "models"
                 for number, line in enumerate(path.read_text().splitlines(), 1) if spelled.search(line)]
    assert not offenders


def test_builders_are_named_and_documented():
    assert mindresnet.resnet50.__name__ == "resnet50"
    assert "ResNet-50" in mindresnet.resnet50.__doc__


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_every_layer_follows_the_convention(name):
    convention = CONVENTIONS[name]
    net = mindresnet.resnet18(convention=name)
    assert net.convention == name
    convs = [cell for _, cell in net.cells_and_names() if isinstance(cell, ms.nn.Conv2d)]
    norms = [cell for _, cell in net.cells_and_names() if isinstance(cell, ms.nn.BatchNorm2d)]
    assert len(convs) == 20 and len(norms) == 20
    for conv in convs:
        if convention.same_conv:
            assert conv.pad_mode == "same"
        else:
            assert conv.pad_mode == "pad" and conv.padding == conv.kernel_size[0] // 2
    assert {norm.eps for norm in norms} == {convention.bn_eps}
    assert isinstance(net.max_pool, SymmetricMaxPool2d) == convention.symmetric_pool


def test_default_convention_is_mindcv_and_names_do_not_depend_on_it():
    assert mindresnet.resnet18().convention == "mindcv"
    names = [p.name for p in mindresnet.resnet50().get_parameters()]
    assert [p.name for p in mindresnet.resnet50(convention="torch").get_parameters()] == names


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_export_keeps_the_convention(tmp_path, name):
    """MINDIR and ONNX compute what the network does: 'same' padding, the symmetric pool and eps survive export."""
    from mindresnet.tools.export import export_model

    ort = pytest.importorskip("onnxruntime")
    net = mindresnet.resnet18(num_classes=10, convention=name)
    for _, cell in net.cells_and_names():
        if isinstance(cell, ms.nn.BatchNorm2d):  # variances near eps make a wrong eps visible
            cell.moving_variance.set_data(ms.Tensor(np.full(cell.num_features, 1e-3, np.float32)))
    net.set_train(False)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    expected = net(ms.Tensor(x)).asnumpy()
    session = ort.InferenceSession(str(export_model(net, tmp_path / "net.onnx", "ONNX", 1, 32)))
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    mindir_out = ms.nn.GraphCell(ms.load(str(export_model(net, tmp_path / "net.mindir", "MINDIR", 1, 32))))(
        ms.Tensor(x)).asnumpy()
    for got in (onnx_out, mindir_out):
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_frozen_backbone_keeps_the_pretrained_batchnorm_statistics(tmp_path):
    source = small_resnet()
    rng = np.random.default_rng(0)
    for param in source.get_parameters():  # non-trivial statistics, as a real pretrained file has
        if "moving_" in param.name:
            low = 0.8 if "variance" in param.name else -0.1
            param.set_data(ms.Tensor(rng.uniform(low, low + 0.4, param.shape).astype(np.float32)))
    pretrained = save_checkpoint(source, tmp_path / "pretrained.ckpt")
    file_values = {name: p.asnumpy().copy() for name, p in read_checkpoint(pretrained)[0].items()}

    def train_three_steps(freeze, **build):
        net = small_resnet(pretrained=str(pretrained), **build)
        freeze(net)
        optimizer = build_optimizer(net.trainable_params(), "momentum", [0.1] * 3, 0.9, 0.0)
        step = build_train_step(net, build_loss(), optimizer)
        for seed in range(3):
            step(*batch(seed=seed))
        return values(net)

    backbone = [name for name in file_values if not name.startswith("fc.")]
    assert any("moving_mean" in name for name in backbone)
    # The one freeze: called on the network (train, the head stage) or asked of create_model.
    for frozen in (train_three_steps(lambda net: net.freeze_backbone()),
                   train_three_steps(lambda net: None, freeze_backbone=True)):
        for name in backbone:
            np.testing.assert_array_equal(frozen[name], file_values[name], err_msg=name)
        assert not np.allclose(frozen["fc.weight"], file_values["fc.weight"])
    # Freezing only the weights (the old --freeze-backbone) lets the statistics drift.
    weights_only = train_three_steps(lambda net: [setattr(p, "requires_grad", p.name.startswith("fc."))
                                                  for p in net.get_parameters()])
    assert not np.allclose(weights_only["norm.moving_mean"], file_values["norm.moving_mean"])


def _pair(arch="resnet18", rate=0.5):
    """(network with drop-path, the same weights without it)."""
    ms.set_seed(0)
    plain = create_model(arch, num_classes=10, stem="cifar")
    dropping = create_model(arch, num_classes=10, stem="cifar", drop_path=rate)
    ms.load_param_into_net(dropping, {p.name: p for p in plain.get_parameters()}, strict_load=True)
    return plain, dropping


def test_drop_path_keeps_parameter_names_and_scales_with_depth():
    plain, dropping = _pair()
    assert [p.name for p in plain.get_parameters()] == [p.name for p in dropping.get_parameters()]
    rates = [cell.drop_path.rate if cell.drop_path is not None else 0.0
             for layer in (dropping.layer1, dropping.layer2, dropping.layer3, dropping.layer4) for cell in layer]
    np.testing.assert_allclose(rates, np.linspace(0, 0.5, 8))


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_drop_path_in_every_bottleneck_block(arch):
    net = create_model(arch, num_classes=10, stem="cifar", drop_path=0.2)
    drops = [cell for _, cell in net.cells_and_names() if isinstance(cell, DropPath)]
    assert len(drops) == 16 - 1  # every block but the first, whose rate is 0
    assert max(cell.rate for cell in drops) == pytest.approx(0.2)


def test_drop_path_varies_training_outputs_only():
    plain, dropping = _pair()
    images = ms.Tensor(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    for net in (plain, dropping):
        net.set_train(False)
    eval_out = dropping(images).asnumpy()
    np.testing.assert_array_equal(eval_out, dropping(images).asnumpy())
    np.testing.assert_allclose(eval_out, plain(images).asnumpy(), rtol=1e-5, atol=1e-5)
    dropping.set_train(True)
    plain.set_train(True)
    assert not np.allclose(dropping(images).asnumpy(), dropping(images).asnumpy())
    np.testing.assert_array_equal(plain(images).asnumpy(), plain(images).asnumpy())
