"""mindresnet.training.features: cached features and the HeadTrainer of the head-only epochs."""
import mindspore as ms
import numpy as np
from mindspore import dataset as ds

from mindresnet.checkpoint import save_checkpoint
from mindresnet.training.features import HeadTrainer, PooledFeatures, extract_features
from mindresnet.training.loss import build_loss
from mindresnet.training.optim import build_optimizer

from conftest import small_resnet, values


def test_linear_probe_trains_the_head_on_cached_features_and_saves_a_full_model(tmp_path):
    ms.set_seed(1)  # a random backbone's features: some draws separate the two classes too poorly for 20 epochs
    net = small_resnet(num_classes=2)
    rng = np.random.default_rng(0)
    images = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    labels = (np.arange(24) % 2).astype(np.int32)
    images[labels == 1] += 0.5  # separable classes
    pipeline = ds.NumpySlicesDataset((images, labels), ["image", "label"], shuffle=False).batch(8)
    backbone = {k: v for k, v in values(net).items() if not k.startswith("fc.")}
    features, feature_labels = extract_features(net, pipeline)
    assert features.shape == (24, 512) and list(feature_labels) == list(labels)
    net.set_train(False)
    np.testing.assert_allclose(features[:8], PooledFeatures(net)(ms.Tensor(images[:8])).asnumpy(),
                               rtol=1e-4, atol=1e-5)
    optimizer = build_optimizer(net.fc.trainable_params(), "sgd", [0.05] * 60, 0.9, 0.0)
    trainer = HeadTrainer(net, optimizer, build_loss(), batch_size=8)
    first, _ = trainer.run_epoch(features, feature_labels)
    for _ in range(19):
        last, _ = trainer.run_epoch(features, feature_labels)
    assert last < first * 0.5
    assert trainer.evaluate(features, feature_labels)["accuracy"] == 1.0
    for name, value in backbone.items():  # the backbone, BatchNorm statistics included, is untouched
        np.testing.assert_array_equal(values(net)[name], value, err_msg=name)
    save_checkpoint(net, tmp_path / "probe.ckpt")
    reloaded = small_resnet(num_classes=2, pretrained=str(tmp_path / "probe.ckpt"))
    reloaded.set_train(False)
    logits = reloaded(ms.Tensor(images)).asnumpy()
    assert (logits.argmax(1) == labels).mean() == 1.0


def test_head_epochs_draw_balanced_with_the_sampler():
    from mindresnet.training.loss import build_loss
    from mindresnet.training.optim import build_optimizer
    from mindresnet.models import create_model

    labels = np.repeat(np.arange(3, dtype=np.int32), [90, 8, 2])
    net = create_model("resnet18", num_classes=3, stem="cifar")
    optimizer = build_optimizer(net.get_classifier().trainable_params(), "sgd", [0.01], 0.9, 0.0)
    shuffled = HeadTrainer(net, optimizer, build_loss(), batch_size=16, seed=3)
    balanced = HeadTrainer(net, optimizer, build_loss(), batch_size=16, seed=3, balanced=True)
    plain_order = np.concatenate(shuffled.epoch_order(labels, 0))
    assert sorted(plain_order.tolist()) == list(range(100))
    draws = [np.concatenate(balanced.epoch_order(labels, epoch)) for epoch in range(20)]
    assert all(len(order) == 100 for order in draws)
    np.testing.assert_array_equal(draws[0], np.concatenate(balanced.epoch_order(labels, 0)))  # resumable
    assert not np.array_equal(draws[0], draws[1])
    share = np.bincount(labels[np.concatenate(draws)], minlength=3) / 2000
    np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.04)  # the 2-image class as often as the 90-image one


def test_a_short_batch_is_padded_to_one_graph_without_changing_the_step():
    """Padding rows carry the label the loss ignores: loss and head update equal the unpadded step's
    (with label smoothing and class weights, whose mean divides by the real rows' weights)."""
    rng = np.random.default_rng(2)
    features, labels = rng.standard_normal((5, 512)).astype(np.float32), np.array([0, 2, 1, 2, 2], np.int32)
    results = []
    for pad in (True, False):
        ms.set_seed(4)
        net = small_resnet(num_classes=3)
        optimizer = build_optimizer(net.fc.trainable_params(), "sgd", [0.1], 0.9, 1e-4)
        trainer = HeadTrainer(net, optimizer, build_loss(0.1, [1.0, 2.0, 0.5]), batch_size=8)
        assert trainer.pad_short_batches
        trainer.pad_short_batches = pad
        loss = trainer.train_batch(features, labels)
        results.append((loss, net.fc.weight.asnumpy().copy(), net.fc.bias.asnumpy().copy()))
    (padded_loss, *padded), (plain_loss, *plain) = results
    np.testing.assert_allclose(padded_loss, plain_loss, rtol=1e-6)
    for got, expected in zip(padded, plain):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
