"""mindresnet.training.optim: the optimizers' updates, layer-wise LR and decoupled weight decay."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from mindresnet.training.optim import build_optimizer, current_lr, lr_scale, parameter_groups

from conftest import small_resnet, values


class _Linear(ms.nn.Cell):
    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.array([1.0, -2.0], np.float32)), name="w")

    def construct(self, x):
        return (self.w * x).sum()


@pytest.mark.parametrize("name", ["sgd", "momentum"])
def test_optimizer_updates_follow_the_pytorch_formulas(name):
    """sgd is PyTorch's SGD(nesterov=True); momentum is classical momentum (the tutorial's)."""
    net = _Linear()
    rates = [0.1, 0.2, 0.3]
    step = ms.nn.TrainOneStepCell(net, build_optimizer(net.trainable_params(), name, rates, 0.9, 0.01))
    x = np.array([3.0, 4.0])
    w, v = np.array([1.0, -2.0]), np.zeros(2)
    for lr in rates:
        step(ms.Tensor(x.astype(np.float32)))
        grad = x + 0.01 * w  # d(w.x)/dw plus weight decay
        v = 0.9 * v + grad
        w = w - lr * (grad + 0.9 * v if name == "sgd" else v)
        np.testing.assert_allclose(net.w.asnumpy(), w, rtol=1e-5)


def test_layer_decay_and_head_scale_give_each_stage_its_rate():
    net = small_resnet()
    rates = [0.1, 0.05]
    optimizer = build_optimizer(net.trainable_params(), "sgd", rates, 0.9, 1e-4,
                                lr_scale=lambda name: lr_scale(name, 0.5, 10.0))
    params = {p.name: p for p in net.trainable_params()}
    expected = {"fc.weight": 10.0, "fc.bias": 10.0, "layer4.1.conv2.weight": 0.5, "layer3.0.norm1.gamma": 0.25,
                "layer2.0.down_sample.0.weight": 0.125, "layer1.1.conv1.weight": 0.0625, "conv1.weight": 0.03125,
                "norm.beta": 0.03125}
    for name, scale in expected.items():
        table = optimizer.get_lr_parameter(params[name]).asnumpy()
        np.testing.assert_allclose(table, np.array(rates) * scale, rtol=1e-6, err_msg=name)
    decay = {p.name: group["weight_decay"] for group in parameter_groups(net.trainable_params(), rates, 1e-4)
             for p in group["params"]}
    assert decay["conv1.weight"] == 1e-4 and decay["fc.bias"] == decay["norm.gamma"] == 0.0
    assert current_lr(optimizer, params["conv1.weight"]) == pytest.approx(0.1 * 0.03125)


def test_adamw_decay_is_decoupled_and_skips_batchnorm_and_biases():
    net = nn.SequentialCell([nn.Dense(4, 4), nn.BatchNorm1d(4)])
    before = values(net)
    optimizer = build_optimizer(net.trainable_params(), "adamw", [0.1], 0.9, 0.5)

    class ZeroLoss(nn.Cell):  # zero gradients: only the decoupled decay can move a weight
        def __init__(self):
            super().__init__(auto_prefix=False)
            self.net = net

        def construct(self, x):
            return (self.net(x) * 0.0).sum()

    nn.TrainOneStepCell(ZeroLoss(), optimizer)(ms.Tensor(np.ones((2, 4), np.float32)))
    after = values(net)
    np.testing.assert_allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5), rtol=1e-5)
    for name in ("0.bias", "1.gamma", "1.beta"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
