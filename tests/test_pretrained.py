"""Pretrained weights: round trip, head reset, foreign namings, bad files, cached download."""
import os
import re
import threading

import mindspore as ms
import numpy as np
import pytest

import mindresnet
from mindresnet import hub
from mindresnet.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from mindresnet.models.pretrained import canonical_name, pretrained_path

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
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt", {"arch": "resnet18"})
    loaded = mindresnet.resnet18(pretrained=str(path))
    np.testing.assert_array_equal(outputs(loaded), outputs(source_net))
    assert len(loaded.load_report.loaded) == len(list(source_net.get_parameters()))
    assert read_checkpoint(path)[1] == {"arch": "resnet18"}


def test_head_is_reset_for_ten_classes(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    net = mindresnet.resnet18(num_classes=10, pretrained=str(path))
    report = net.load_report
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert not report.missing and not report.unexpected
    np.testing.assert_array_equal(net.layer4[1].conv2.weight.asnumpy(), source_net.layer4[1].conv2.weight.asnumpy())
    assert net.fc.weight.shape == (10, 512)
    assert "head left freshly initialised" in str(report)


def test_cifar_stem_skips_only_the_stem_conv(tmp_path, source_net):
    path = save_checkpoint(source_net, tmp_path / "r18.ckpt")
    report = mindresnet.resnet18(num_classes=10, stem="cifar", pretrained=str(path)).load_report
    assert report.skipped_stem == ["conv1.weight"]


@pytest.mark.parametrize("rename", [to_mindcv, to_models], ids=["mindcv", "mindspore-models"])
def test_foreign_namings_load(tmp_path, source_net, rename):
    path = save_renamed(source_net, tmp_path / "foreign.ckpt", rename)
    ms.save_checkpoint([{"name": rename(p.name), "data": p} for p in source_net.get_parameters()]
                       + [{"name": "moments.fc.weight", "data": source_net.fc.weight}], str(path))
    net = mindresnet.resnet18(pretrained=str(path))
    np.testing.assert_array_equal(outputs(net), outputs(source_net))
    assert not net.load_report.unexpected  # optimizer state is ignored, not reported


def test_canonical_names():
    assert canonical_name("bn1.gamma") == "norm.gamma"
    assert canonical_name("layer2.0.bn3.moving_mean") == "layer2.0.norm3.moving_mean"
    assert canonical_name("layer2.0.down_sample_layer.1.beta") == "layer2.0.down_sample.1.beta"
    assert canonical_name("classifier.weight") == canonical_name("end_point.weight") == "fc.weight"
    assert canonical_name("layer1.0.norm1.gamma") == "layer1.0.norm1.gamma"


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
    with pytest.raises(CheckpointError, match="nope.ckpt: no such file"):
        mindresnet.resnet18(pretrained="nope.ckpt")


def test_variant_without_official_weights():
    with pytest.raises(ValueError, match="resnext101_32x8d has no official"):
        pretrained_path("resnext101_32x8d")


def test_cache_names_follow_the_official_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path))
    assert pretrained_path("resnet50") == tmp_path / "checkpoints" / "resnet50_224_new.ckpt"
    assert pretrained_path("resnet18").name == "resnet18-1e65cd21.ckpt"


def test_pretrained_true_downloads_once_through_the_mirror(tmp_path, monkeypatch, file_server, source_net):
    folder, base_url, requests = file_server
    save_renamed(source_net, folder / "resnet18-1e65cd21.ckpt", to_mindcv)  # served in MindCV naming
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    net = mindresnet.resnet18(num_classes=10, pretrained=True)
    assert set(requests) == {"/resnet18-1e65cd21.ckpt"}
    first_download = len(requests)
    assert sorted(net.load_report.skipped_head) == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(net.conv1.weight.asnumpy(), source_net.conv1.weight.asnumpy())
    mindresnet.resnet18(num_classes=10, pretrained=True)
    assert len(requests) == first_download, "the second call must reuse the cache"
    cached = list((tmp_path / "home" / "checkpoints").iterdir())
    assert sorted(p.name for p in cached) == ["resnet18-1e65cd21.ckpt", "resnet18-1e65cd21.ckpt.lock"]


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


def test_corrupt_download_leaves_nothing_in_the_cache(tmp_path, monkeypatch, file_server):
    folder, base_url, _ = file_server
    (folder / "resnet18-1e65cd21.ckpt").write_bytes(os.urandom(2048))
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    monkeypatch.setenv("MINDRESNET_HOME", str(tmp_path / "home"))
    with pytest.raises(hub.DownloadError, match="failed its check"):
        mindresnet.resnet18(pretrained=True)
    leftovers = [p.name for p in (tmp_path / "home" / "checkpoints").iterdir()]
    assert leftovers == ["resnet18-1e65cd21.ckpt.lock"]


def test_sha256_mismatch_is_rejected(tmp_path, monkeypatch, file_server):
    folder, base_url, _ = file_server
    (folder / "blob.bin").write_bytes(b"abc")
    monkeypatch.setenv("MINDRESNET_MIRROR", base_url)
    with pytest.raises(hub.DownloadError, match="SHA-256"):
        hub.fetch("https://example.org/blob.bin", tmp_path / "blob.bin", sha256="0" * 64, progressbar=False)
    assert not (tmp_path / "blob.bin").exists()
    good = hub.sha256_of(folder / "blob.bin")
    assert hub.fetch("https://example.org/blob.bin", tmp_path / "blob.bin", sha256=good, progressbar=False)


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
