"""Pretrained weights: round trip, head reset, foreign namings and their conventions, bad files,
checked cached downloads, ImageNet class names. Equality with the publishers' own networks is in
tests/test_peer_weights.py."""
import ast
import dataclasses
import json
import os
import re
import threading
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

import mindresnet
from mindresnet import hub
from mindresnet.checkpoint import META_KEY, CheckpointError, read_checkpoint, save_checkpoint
from mindresnet.checkpoint_meta import CheckpointMeta
from mindresnet.data.constants import CIFAR10_MEAN, CIFAR10_STD
from mindresnet.data.imagenet import imagenet_class_names
from mindresnet.data.preprocess import Preprocess
from mindresnet.errors import ConfigError
from mindresnet.models import VARIANTS, get_weights, load_model, parse_pretrained, pretrained_model
from mindresnet.models.naming import canonical_name, detect_naming
from mindresnet.models.pretrained import pretrained_path
from mindresnet.tools.eval_data import load_trained_model

X = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


def outputs(net) -> np.ndarray:
    net.set_train(False)
    return net(ms.Tensor(X)).asnumpy()


def save_renamed(net, path, rename):
    """Save ``net`` with every parameter name passed through ``rename`` (a foreign naming scheme)."""
    ms.save_checkpoint([{"name": rename(p.name), "data": p} for p in net.get_parameters()], str(path))
    return path


def to_mindcv(name):
    name = re.sub(r"^norm\.", "bn1.", name)
    name = re.sub(r"\.norm(\d)\.", r".bn\1.", name)
    return re.sub(r"^fc\.", "classifier.", name)


def to_models(name):
    return re.sub(r"^fc\.", "end_point.", to_mindcv(name).replace(".down_sample.", ".down_sample_layer."))


@pytest.fixture(scope="module")
def source_net():
    """A resnet18 with a 1000-class head and non-trivial BatchNorm statistics."""
    net = mindresnet.resnet18()
    for param in net.get_parameters():
        if "moving" in param.name or "gamma" in param.name:
            param.set_data(ms.Tensor(np.random.uniform(0.5, 1.5, param.shape).astype(np.float32)))
    return net


def test_round_trip_gives_identical_outputs(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt", CheckpointMeta(arch="resnet18", num_classes=1000))
    loaded = mindresnet.resnet18(pretrained=str(path))
    np.testing.assert_array_equal(outputs(loaded), outputs(source_net))
    assert len(loaded.load_report.loaded) == len(list(source_net.get_parameters()))
    assert read_checkpoint(path)[1] == CheckpointMeta(arch="resnet18", num_classes=1000)


def test_head_is_reset_for_ten_classes(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    net = mindresnet.resnet18(num_classes=10, pretrained=str(path))
    report = net.load_report
    assert not [p.name for p in net.get_parameters() if p.has_init]  # no parameter left to initialise lazily
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert not report.unexpected
    np.testing.assert_array_equal(net.layer4[1].conv2.weight.asnumpy(), source_net.layer4[1].conv2.weight.asnumpy())
    assert net.fc.weight.shape == (10, 512)
    assert "head left freshly initialised" in str(report)
    assert_initialised_like(net.fc.weight, mindresnet.resnet18(num_classes=10).fc.weight)
    assert np.isfinite(outputs(net)).all()


def assert_initialised_like(param, fresh):
    """``param`` (not filled by a file) holds its initializer's values: the spread of a freshly built twin's."""
    values, reference = param.asnumpy(), fresh.asnumpy()
    assert values.shape == reference.shape and np.isfinite(values).all()
    assert 0.8 < values.std() / reference.std() < 1.25


def test_cifar_stem_skips_only_the_stem_conv(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    net = mindresnet.resnet18(num_classes=10, stem="cifar", pretrained=str(path))
    assert net.load_report.skipped_stem == ["conv1.weight"]
    assert not [p.name for p in net.get_parameters() if p.has_init]
    assert_initialised_like(net.conv1.weight, mindresnet.resnet18(num_classes=10, stem="cifar").conv1.weight)
    np.testing.assert_array_equal(net.norm.gamma.asnumpy(), source_net.norm.gamma.asnumpy())


@pytest.mark.parametrize("rename,naming,convention", [(to_mindcv, "mindcv", "mindcv"), (to_models, "models", "torch")],
                         ids=["mindcv", "mindspore-models-res_base"])
def test_foreign_namings_load_into_their_convention(tmp_path, source_net, rename, naming, convention):
    path = tmp_path / "foreign.ckpt"
    ms.save_checkpoint([{"name": rename(p.name), "data": p} for p in source_net.get_parameters()]
                       + [{"name": "moments.fc.weight", "data": source_net.fc.weight}], str(path))
    net = mindresnet.resnet18(pretrained=str(path))
    assert net.convention == convention  # mindspore/models builds ResNet-18/34 as PyTorch does
    assert net.load_report.naming == naming and f"({naming} naming)" in str(net.load_report)
    same_function = mindresnet.resnet18(pretrained=str(path), convention="mindcv")
    np.testing.assert_array_equal(outputs(same_function), outputs(source_net))
    assert not net.load_report.unexpected  # optimizer state is ignored, not reported


def test_convention_comes_from_metadata_then_names_and_an_explicit_one_wins(tmp_path, source_net):
    old = tmp_path / "old.ckpt"  # written before conventions were recorded
    stored = json.dumps({"arch": "resnet18", "num_classes": 1000})
    ms.save_checkpoint(source_net, str(old), append_dict={META_KEY: stored})
    assert mindresnet.resnet18(pretrained=str(old)).convention == "mindcv"
    recorded = save_checkpoint(source_net, tmp_path / "new.ckpt", CheckpointMeta("resnet18", 1000, convention="torch"))
    assert mindresnet.resnet18(pretrained=str(recorded)).convention == "torch"
    bare = tmp_path / "bare.ckpt"  # the tutorial's names, no metadata
    ms.save_checkpoint(source_net, str(bare))
    assert mindresnet.resnet18(pretrained=str(bare)).convention == "tutorial"
    assert mindresnet.resnet18(pretrained=str(bare), convention="models").convention == "models"
    assert mindresnet.resnet18().convention == "mindcv"


def test_a_network_saved_without_metadata_describes_itself(tmp_path):
    net = mindresnet.resnet18(num_classes=5, stem="cifar", convention="torch")
    path = save_checkpoint(net, tmp_path / "self.ckpt")
    stored = read_checkpoint(path)[1]
    assert (stored.arch, stored.num_classes, stored.stem, stored.convention) == ("resnet18", 5, "cifar", "torch")
    assert (stored.image_size, stored.mean, stored.std) == (32, CIFAR10_MEAN, CIFAR10_STD)
    loaded = mindresnet.resnet18(num_classes=5, stem="cifar", pretrained=str(path))
    assert loaded.convention == "torch"
    np.testing.assert_array_equal(outputs(loaded), outputs(net))


def test_naming_detection():
    assert detect_naming(["conv1.weight", "norm.gamma", "fc.weight"]) == "tutorial"
    assert detect_naming(["bn1.gamma", "classifier.weight"]) == "mindcv"
    assert detect_naming(["bn1.gamma", "layer1.0.down_sample_layer.0.weight", "end_point.weight"]) == "models"
    assert detect_naming(["bn1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight"]) == "torch"


def test_canonical_names():
    assert canonical_name("bn1.gamma") == "norm.gamma"
    assert canonical_name("layer2.0.bn3.moving_mean") == "layer2.0.norm3.moving_mean"
    assert canonical_name("layer2.0.down_sample_layer.1.beta") == "layer2.0.down_sample.1.beta"
    assert canonical_name("classifier.weight") == canonical_name("end_point.weight") == "fc.weight"
    assert canonical_name("layer1.0.norm1.gamma") == "layer1.0.norm1.gamma"
    # PyTorch: modules renamed, then BatchNorm fields (only of BatchNorms: conv and fc keep "weight")
    assert canonical_name("bn1.weight") == "norm.gamma"
    assert canonical_name("layer3.1.bn2.bias") == "layer3.1.norm2.beta"
    assert canonical_name("layer2.0.downsample.1.running_var") == "layer2.0.down_sample.1.moving_variance"
    assert canonical_name("module.layer2.0.downsample.0.weight") == "layer2.0.down_sample.0.weight"
    assert canonical_name("layer1.0.conv2.weight") == "layer1.0.conv2.weight"
    assert canonical_name("fc.bias") == "fc.bias"


def test_wrong_architecture_names_the_missing_parameters(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    with pytest.raises(CheckpointError, match=r"r18\.ckpt does not fit resnet34.*missing.*layer1\.2\.conv1"):
        mindresnet.resnet34(pretrained=str(path))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        mindresnet.resnet50(pretrained=str(path))


@pytest.mark.parametrize("kind", ["empty", "truncated", "random"])
def test_bad_files_give_clear_errors(tmp_path, source_net, kind):
    good = save_checkpoint(source_net, tmp_path / "good.ckpt").read_bytes()
    bad = tmp_path / f"{kind}.ckpt"
    bad.write_bytes({"empty": b"", "truncated": good[: len(good) // 3], "random": os.urandom(4096)}[kind])
    with pytest.raises(CheckpointError, match=rf"{kind}\.ckpt.*(empty|truncated)"):
        mindresnet.resnet18(pretrained=str(bad))


def test_missing_local_file():
    with pytest.raises(ConfigError, match="--pretrained nope.ckpt: no such file, and not a weights tag of resnet18"):
        mindresnet.resnet18(pretrained="nope.ckpt")


def test_published_weights_tags():
    assert get_weights("resnet50").tag == "tutorial" and get_weights("resnet50", "mindcv").sha256_prefix == "e0733ab8"
    assert get_weights("resnext101_32x8d").naming == "torch"  # torchvision's file, through the PyTorch reader
    with pytest.raises(ConfigError, match="resnet18 has no weights tagged 'tutorial'; its weights: mindcv"):
        get_weights("resnet18", "tutorial")


def test_every_published_entry_is_consistent():
    for name, variant in VARIANTS.items():
        assert variant.weights, f"{name} has no published weights"
        for weights in variant.weights:
            assert weights.convention in mindresnet.models.CONVENTIONS
            assert weights.naming in ("tutorial", "mindcv", "models", "torch")
            if "mindcv" in weights.url or "pytorch" in weights.url:
                assert weights.sha256_prefix and weights.sha256_prefix in weights.file_name
            assert len(weights.class_names()) == weights.num_classes


def test_cache_names_follow_the_official_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path))
    assert pretrained_path("resnet50") == tmp_path / "checkpoints" / "resnet50_224_new.ckpt"
    assert pretrained_path("resnet18").name == "resnet18-1e65cd21.ckpt"
    assert pretrained_path("resnet50", "mindcv").name == "resnet50-e0733ab8.ckpt"


def publish(monkeypatch, folder: Path, name: str, file: Path, tag=None) -> str:
    """Serve ``file`` as variant ``name``'s published weights, under a name carrying its SHA-256 prefix."""
    variant = VARIANTS[name]
    weights = get_weights(name, tag)
    served = f"{name}-{hub.sha256_of(file)[:8]}{file.suffix}"
    file.rename(folder / served)
    entries = tuple(dataclasses.replace(w, url="https://example.org/weights/" + served) if w is weights else w
                    for w in variant.weights)
    monkeypatch.setitem(VARIANTS, name, dataclasses.replace(variant, weights=entries))
    return served


def test_pretrained_true_downloads_once_through_the_mirror(tmp_path, monkeypatch, file_server, source_net):
    folder, base_url, requests = file_server
    served = publish(monkeypatch, folder, "resnet18", save_renamed(source_net, tmp_path / "r18.ckpt", to_mindcv))
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    net = mindresnet.resnet18(num_classes=10, pretrained=True)
    assert set(requests) == {"/" + served}
    first_download = len(requests)
    assert net.convention == "mindcv"
    assert sorted(net.load_report.skipped_head) == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(net.conv1.weight.asnumpy(), source_net.conv1.weight.asnumpy())
    mindresnet.resnet18(num_classes=10, pretrained=True)
    assert len(requests) == first_download, "the second call must reuse the cache"
    cached = list((tmp_path / "home" / "checkpoints").iterdir())
    assert [p.name for p in cached] == [served]  # no lock file left behind


def test_a_published_tag_builds_its_convention(tmp_path, monkeypatch, file_server):
    folder, base_url, _ = file_server
    publish(monkeypatch, folder, "resnet50", save_checkpoint(mindresnet.resnet50(), tmp_path / "r50.ckpt"), "mindcv")
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    assert mindresnet.resnet50(num_classes=10, pretrained="mindcv").convention == "mindcv"


def test_download_with_another_hash_prefix_is_rejected(tmp_path, monkeypatch, file_server, source_net):
    folder, base_url, _ = file_server
    save_renamed(source_net, folder / "resnet18-1e65cd21.ckpt", to_mindcv)  # not MindCV's real file
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    with pytest.raises(hub.DownloadError, match="does not match the published SHA-256 1e65cd21"):
        mindresnet.resnet18(pretrained=True)
    assert not list((tmp_path / "home" / "checkpoints").iterdir())


def test_concurrent_downloads_fetch_once(tmp_path, monkeypatch, file_server):
    folder, base_url, requests = file_server
    (folder / "blob.bin").write_bytes(os.urandom(1 << 20))
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    dest = tmp_path / "cache" / "blob.bin"
    threads = [threading.Thread(target=hub.fetch, args=("https://example.org/x/blob.bin", dest),
                                kwargs={"progressbar": False}) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    single = len(requests)
    hub.fetch("https://example.org/x/blob.bin", tmp_path / "alone" / "blob.bin", progressbar=False)
    assert set(requests) == {"/blob.bin"} and len(requests) == 2 * single, "4 threads must download once"
    assert dest.read_bytes() == (folder / "blob.bin").read_bytes()


def test_corrupt_download_without_checksum_leaves_nothing_in_the_cache(tmp_path, monkeypatch, file_server):
    folder, base_url, _ = file_server
    (folder / "resnet50_224_new.ckpt").write_bytes(os.urandom(2048))  # the tutorial publishes no hash
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    with pytest.raises(hub.DownloadError, match="failed its check"):
        mindresnet.resnet50(pretrained=True)
    assert not list((tmp_path / "home" / "checkpoints").iterdir())


def test_sha256_mismatch_is_rejected(tmp_path, monkeypatch, file_server):
    folder, base_url, _ = file_server
    (folder / "blob.bin").write_bytes(b"abc")
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    with pytest.raises(hub.DownloadError, match="SHA-256"):
        hub.fetch("https://example.org/blob.bin", tmp_path / "blob.bin", sha256="0" * 64, progressbar=False)
    assert not (tmp_path / "blob.bin").exists()
    good = hub.sha256_of(folder / "blob.bin")
    assert hub.fetch("https://example.org/blob.bin", tmp_path / "blob.bin", sha256=good, progressbar=False)
    assert hub.fetch("https://example.org/blob.bin", tmp_path / "prefix" / "blob.bin", sha256=good[:8],
                     progressbar=False)  # the prefix MindCV and torchvision put in file names


def test_offline_error_names_url_cache_and_mirror(tmp_path, monkeypatch, closed_port_url):
    monkeypatch.setenv("MINDRESNET_MIRROR", closed_port_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    with pytest.raises(hub.DownloadError) as info:
        mindresnet.resnet50(pretrained=True)
    message = str(info.value)
    assert closed_port_url + "resnet50_224_new.ckpt" in message
    assert str(tmp_path / "home" / "checkpoints" / "resnet50_224_new.ckpt") in message
    assert "MINDRESNET_MIRROR" in message


def test_mirror_replaces_everything_before_the_file_name(monkeypatch):
    monkeypatch.delenv("MINDRESNET_MIRROR", raising=False)
    url = "https://download.mindspore.cn/toolkits/mindcv/resnet/resnet18-1e65cd21.ckpt"
    assert hub.resolve_url(url) == url
    monkeypatch.setenv("MINDRESNET_MIRROR", "http://mirror.local/weights")
    assert hub.resolve_url(url) == "http://mirror.local/weights/resnet18-1e65cd21.ckpt"


def test_imagenet_class_names():
    names = imagenet_class_names(1000)
    assert len(names) == 1000 == len(set(names))
    assert names[0] == "tench" and names[417] == "balloon" and names[999] == "toilet tissue"
    with_background = imagenet_class_names(1001)  # mindspore/models: class i + 1 is ImageNet class i
    assert with_background[0] == "background" and with_background[418] == "balloon"
    with pytest.raises(ValueError, match="1000 or 1001 classes, not 10"):
        imagenet_class_names(10)


@pytest.mark.parametrize("num_classes,balloon", [(1000, 417), (1001, 418)])
def test_pretrained_model_keeps_the_head_and_names_imagenet_classes(tmp_path, num_classes, balloon):
    net = mindresnet.resnet18(num_classes=num_classes)
    rename = to_models if num_classes == 1001 else to_mindcv
    path = save_renamed(net, tmp_path / "imagenet.ckpt", rename)
    loaded, meta = pretrained_model("resnet18", str(path))
    assert loaded.fc.weight.shape == (num_classes, 512) and not loaded.load_report.skipped_head
    assert meta.class_names[balloon] == "balloon" and len(meta.class_names) == num_classes
    assert meta.class_names_from == "ImageNet"
    assert meta.convention == ("torch" if num_classes == 1001 else "mindcv")
    assert (meta.arch, meta.num_classes, meta.stem, meta.image_size) == ("resnet18", num_classes, "imagenet", 224)
    assert meta.mean == (0.485, 0.456, 0.406) and meta.std == (0.229, 0.224, 0.225)


def test_pretrained_model_uses_the_files_own_class_names(tmp_path):
    stored = CheckpointMeta("resnet18", 3, stem="cifar", class_names=["a", "b", "c"],
                            preprocess=Preprocess(32, "squash", 1.0, mean=(0.5,) * 3, std=(0.25,) * 3))
    path = save_checkpoint(mindresnet.resnet18(num_classes=3, stem="cifar"), tmp_path / "three.ckpt", stored)
    _, meta = pretrained_model("resnet18", str(path))
    assert meta.class_names == ["a", "b", "c"] and meta.class_names_from == "metadata"
    assert (meta.stem, meta.convention, meta.image_size, meta.mean, meta.std) == ("cifar", "mindcv", 32,
                                                                                  (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), (None, False), ("true", True),
                                            (" Yes ", True), ("0", False), ("none", False), ("", False),
                                            ("tutorial", "tutorial"), ("mindcv", "mindcv")])
def test_one_parser_reads_every_pretrained_value(value, expected):
    assert parse_pretrained(value, "resnet50") == expected


def test_the_pretrained_parser_takes_files_and_names_what_it_refuses(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    assert parse_pretrained(weights, "resnet18") == parse_pretrained(str(weights), None) == str(weights)
    with pytest.raises(ConfigError, match=r"--pretrained tutorial: no such file, and not a weights tag of resnet18 "
                                          r"\(mindcv\)"):
        parse_pretrained("tutorial", "resnet18")
    with pytest.raises(ConfigError, match=r"--pretrained mindcv: .*tags need --arch"):
        parse_pretrained("mindcv", None)
    assert mindresnet.resnet18(pretrained="false").load_report is None  # create_model reads it the same way


def write_safetensors(net, path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    torch_names = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    tensors = {}
    for param in net.get_parameters():
        module, _, field = param.name.rpartition(".")
        module = re.sub(r"^norm$", "bn1", re.sub(r"\.norm(\d)$", r".bn\1", module)).replace("down_sample", "downsample")
        tensors[f"{module}.{torch_names.get(field, field)}"] = param.asnumpy()
    save_file(tensors, str(path))
    return path


@pytest.mark.parametrize("kind", ["trained", "plain", "mindcv", "safetensors"])
def test_one_loader_for_every_kind_of_weights(tmp_path, kind):
    """load_model, and its thin callers load_trained_model (--ckpt) and pretrained_model, agree on every source."""
    expected = {"trained": "mindcv", "plain": "tutorial", "mindcv": "mindcv", "safetensors": "torch"}[kind]
    net = mindresnet.resnet18(num_classes=4, stem="cifar", convention=expected)  # what the file's naming implies
    stored = CheckpointMeta("resnet18", 4, stem="cifar", convention="mindcv", class_names=list("abcd"),
                            preprocess=Preprocess(32, "squash", 1.0, mean=(0.5,) * 3, std=(0.25,) * 3))
    path = {"trained": lambda: save_checkpoint(net, tmp_path / "trained.ckpt", stored),
            "plain": lambda: save_renamed(net, tmp_path / "plain.ckpt", lambda name: name),
            "mindcv": lambda: save_renamed(net, tmp_path / "mindcv.ckpt", to_mindcv),
            "safetensors": lambda: write_safetensors(net, tmp_path / "torch.safetensors")}[kind]()
    arch = None if kind == "trained" else "resnet18"
    loaded, meta = load_model(path, arch=arch)
    np.testing.assert_array_equal(outputs(loaded), outputs(net))
    assert not loaded.training and len(loaded.load_report.loaded) == len(list(net.get_parameters()))
    assert (meta.arch, meta.num_classes, meta.stem, meta.image_size) == ("resnet18", 4, "cifar", 32)
    assert loaded.convention == meta.convention == expected
    assert meta.class_names == (list("abcd") if kind == "trained" else [f"class_{i}" for i in range(4)])
    for again, again_meta in (load_trained_model(path, arch=arch), pretrained_model("resnet18", str(path))):
        np.testing.assert_array_equal(outputs(again), outputs(loaded))
        assert again_meta == meta


def test_the_loader_refuses_flags_that_contradict_the_metadata_and_heads_that_do_not_fit(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    with pytest.raises(CheckpointError, match=r"--convention torch contradicts checkpoint .*r18\.ckpt"):
        load_model(path, convention="torch")
    bare = save_renamed(source_net, tmp_path / "bare.ckpt", lambda name: name)
    with pytest.raises(CheckpointError, match=r"bare\.ckpt has no mindresnet metadata.*--arch"):
        load_model(bare)
    with pytest.raises(CheckpointError, match=r"bare\.ckpt has a classifier head of shape \(1000, 512\).*10 classes"):
        load_model(bare, arch="resnet18", num_classes=10)


def test_model_modules_import_one_way():
    """No module of mindresnet.models imports one that imports it back, not even inside a function."""
    folder = Path(mindresnet.models.__file__).parent
    imports = {}
    for path in folder.glob("*.py"):
        module = f"mindresnet.models.{path.stem}"
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mindresnet.models."):
                found.add(node.module)
        imports[module] = found

    def reaches(start, target, seen=()):
        return any(dep == target or (dep not in seen and reaches(dep, target, seen + (dep,)))
                   for dep in imports.get(start, ()))

    cycles = [module for module in imports if reaches(module, module)]
    assert not cycles, f"import cycles through {cycles}"
    below_factory = imports["mindresnet.models.registry"] | imports["mindresnet.models.pretrained"]
    assert "mindresnet.models.factory" not in below_factory
    assert "mindresnet.models.loader" not in below_factory | imports["mindresnet.models.factory"]
