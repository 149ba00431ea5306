"""Legacy-IR static programs for the static pruner tests (seed 002 networks)."""
import contextlib

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


@contextlib.contextmanager
def legacy_static():
    """Legacy IR + static mode + fresh unique names; dynamic mode is always restored."""
    try:
        with paddle.pir_utils.OldIrGuard(), paddle.utils.unique_name.guard():
            paddle.enable_static()
            yield
    finally:
        paddle.disable_static()


def conv_bn_layer(x, c, k, name, groups=1, act=None):
    """PaddleSlim's ``tests/layers.py`` fixture: conv (no bias) ``<name>_weights`` + BN ``<name>_bn_*``."""
    conv = paddle.static.nn.conv2d(x, c, k, padding=(k - 1) // 2, groups=groups, bias_attr=False,
                                   param_attr=paddle.ParamAttr(name=name + "_weights"))
    bn = name + "_bn"
    return paddle.static.nn.batch_norm(conv, act=act, param_attr=paddle.ParamAttr(name=bn + "_scale"),
                                       bias_attr=paddle.ParamAttr(bn + "_offset"),
                                       moving_mean_name=bn + "_mean", moving_variance_name=bn + "_variance")


class Built:
    """A built program pair with its scope, executor and feeds."""

    def __init__(self, main, startup, test, loss, out, feeds, batch=4, size=16):
        self.main, self.startup, self.test, self.loss, self.out = main, startup, test, loss, out
        self.place = paddle.CPUPlace()
        self.exe = paddle.static.Executor(self.place)
        self.scope = paddle.static.Scope()
        self.exe.run(startup, scope=self.scope)
        rng = np.random.RandomState(0)
        self.feed = {"image": rng.uniform(-1, 1, (batch, 3, size, size)).astype("float32")}
        if "label" in feeds:
            self.feed["label"] = rng.randint(0, 10, (batch, 1)).astype("int64")

    def run(self, program, fetch=None):
        fetch = fetch or [self.out.name]
        return self.exe.run(program, feed=self.feed, fetch_list=fetch, scope=self.scope)

    def value(self, name):
        return np.array(self.scope.find_var(name).get_tensor())

    def shapes(self, program, key="weights"):
        return {p.name: tuple(p.shape) for p in program.global_block().all_parameters() if key in p.name}


def seed_residual(optimizer="momentum", classifier=True, size=16):
    """Seed 002's conv1..conv6 residual chain (+ fc classifier and a training step)."""
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("image", [None, 3, size, size])
        label = paddle.static.data("label", [None, 1], dtype="int64")
        conv1 = conv_bn_layer(x, 8, 3, "conv1")
        conv2 = conv_bn_layer(conv1, 8, 3, "conv2")
        sum1 = conv1 + conv2
        conv3 = conv_bn_layer(sum1, 8, 3, "conv3")
        conv4 = conv_bn_layer(conv3, 8, 3, "conv4")
        sum2 = conv4 + sum1
        conv5 = conv_bn_layer(sum2, 8, 3, "conv5")
        out = conv6 = conv_bn_layer(conv5, 8, 3, "conv6")
        loss = None
        if classifier:
            out = paddle.static.nn.fc(conv6, 10)
            loss = paddle.mean(F.cross_entropy(out, label))
        test = main.clone(for_test=True)
        if optimizer == "momentum":
            paddle.optimizer.Momentum(0.01, momentum=0.9).minimize(loss)
        elif optimizer == "adam":
            paddle.optimizer.Adam(0.01).minimize(loss)
    return Built(main, startup, test, loss, out, ["label"], size=size)


def oracle_e():
    """PaddleSlim test_prune_op TestMul: conv_bn 8 at 16x16 -> fc 10 -> fc 10."""
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("image", [None, 3, 16, 16])
        conv1 = conv_bn_layer(x, 8, 3, "conv1")
        fc_0 = paddle.static.nn.fc(conv1, 10)
        out = paddle.static.nn.fc(fc_0, 10)
    return Built(main, startup, main.clone(for_test=True), None, out, [])


def layer_program(make_layer, size=16, optimizer=None):
    """Build ``make_layer()`` and call it in legacy static mode; returns (Built, {structural: static name})."""
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        layer = make_layer()
        x = paddle.static.data("image", [None, 3, size, size])
        out = layer(x)
        test = main.clone(for_test=True)
        loss = None
        if optimizer is not None:
            loss = paddle.mean(out * out)
            optimizer(parameters=None).minimize(loss)
    names = {n: p.name for n, p in layer.named_parameters()}
    return Built(main, startup, test, loss, out, [], size=size), names


class MobileLike(nn.Layer):
    """conv-bn stem, depthwise-separable blocks (one residual), pool, flatten, linear."""

    def __init__(self, num_classes=10):
        super().__init__()

        def cbr(cin, cout, k=1, stride=1, groups=1):
            return nn.Sequential(nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, groups=groups,
                                           bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU())
        self.stem = cbr(3, 8, 3, stride=2)
        self.dw1, self.pw1 = cbr(8, 8, 3, groups=8), cbr(8, 16)
        self.dw2, self.pw2 = cbr(16, 16, 3, stride=2, groups=16), cbr(16, 16)
        self.dw3, self.pw3 = cbr(16, 16, 3, groups=16), cbr(16, 16)
        self.head = cbr(16, 24)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        x = self.pw2(self.dw2(self.pw1(self.dw1(self.stem(x)))))
        x = x + self.pw3(self.dw3(x))
        x = F.adaptive_avg_pool2d(self.head(x), 1)
        return self.fc(paddle.flatten(x, 1))


class ConcatGrouped(nn.Layer):
    """Two branches concatenated (offsets), a grouped conv with 4 groups, a biased conv, flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 8, 3, padding=1)
        self.b = nn.Conv2D(3, 6, 1)
        self.c = nn.Conv2D(14, 8, 3, padding=1)
        self.g = nn.Conv2D(8, 8, 3, padding=1, groups=4)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        y = paddle.concat([F.relu(self.a(x)), F.relu(self.b(x))], axis=1)
        y = self.g(F.relu(self.c(y)))
        y = F.max_pool2d(F.relu(y), 4)
        return self.fc(paddle.reshape(y, [-1, 8 * 4 * 4]))


class Upsample(nn.Layer):
    """conv -> conv2d_transpose (x2) -> conv."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2D(3, 8, 3, padding=1)
        self.up = nn.Conv2DTranspose(8, 6, 2, stride=2)
        self.c2 = nn.Conv2D(6, 4, 1)

    def forward(self, x):
        return self.c2(F.relu(self.up(F.relu(self.c1(x)))))
