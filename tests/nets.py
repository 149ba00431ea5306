"""Small hand-built networks that exercise each kind of channel coupling."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=True):
    layers = [nn.Conv2D(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias_attr=False),
              nn.BatchNorm2D(cout)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TwoBranchConcat(nn.Layer):
    """Two conv branches concatenated, then a conv and a linear head."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = conv_bn(3, 6, k=1)
        self.c = conv_bn(14, 12)
        self.fc = nn.Linear(12 * 4 * 4, 5)

    def forward(self, x):
        y = paddle.concat([self.a(x), self.b(x)], axis=1)
        y = F.adaptive_avg_pool2d(self.c(y), 4)
        return self.fc(paddle.flatten(y, 1))


class DepthwiseGrouped(nn.Layer):
    """Pointwise -> depthwise -> grouped conv (4 groups) -> depthwise with multiplier 2."""

    def __init__(self):
        super().__init__()
        self.pw = conv_bn(3, 16, k=1)
        self.dw = conv_bn(16, 16, groups=16)
        self.gc = conv_bn(16, 24, groups=4)
        self.dw2 = nn.Conv2D(24, 48, 3, padding=1, groups=24)
        self.head = nn.Conv2D(48, 10, 1)

    def forward(self, x):
        y = self.dw2(self.gc(self.dw(self.pw(x))))
        return F.adaptive_avg_pool2d(self.head(F.relu(y)), 1).flatten(1)


class SqueezeExcite(nn.Layer):
    def __init__(self, c=16, r=4):
        super().__init__()
        self.stem = conv_bn(3, c)
        self.fc1 = nn.Conv2D(c, c // r, 1)
        self.fc2 = nn.Conv2D(c // r, c, 1)
        self.out = nn.Conv2D(c, 7, 1)

    def forward(self, x):
        x = self.stem(x)
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return self.out(x * s).mean(axis=[2, 3])


class YoloNeck(nn.Layer):
    """Backbone at two strides; the deep map is reduced, upsampled and concatenated."""

    def __init__(self):
        super().__init__()
        self.s8 = conv_bn(3, 16, stride=2)
        self.s16 = conv_bn(16, 32, stride=2)
        self.reduce = conv_bn(32, 8, k=1)
        self.fuse = conv_bn(16 + 8, 16)
        self.head16 = nn.Conv2D(32, 18, 1)
        self.head8 = nn.Conv2D(16, 18, 1)

    def forward(self, x):
        c8 = self.s8(x)
        c16 = self.s16(c8)
        up = F.interpolate(self.reduce(c16), scale_factor=2, mode="nearest")
        p8 = self.fuse(paddle.concat([up, c8], axis=1))
        return paddle.concat([self.head16(c16).flatten(2), self.head8(p8)[:, :, ::2, ::2].flatten(2)], axis=2)


class UNetSkip(nn.Layer):
    """Encoder-decoder with a skip concat and a transposed-conv upsample."""

    def __init__(self):
        super().__init__()
        self.enc1 = conv_bn(3, 8)
        self.enc2 = conv_bn(8, 16, stride=2)
        self.up = nn.Conv2DTranspose(16, 8, 2, stride=2)
        self.dec = conv_bn(16, 8)
        self.cls = nn.Conv2D(8, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        d = self.up(self.enc2(e1))
        return self.cls(self.dec(paddle.concat([e1, d], axis=1)))


class ResidualChain(nn.Layer):
    """Seed 002's net: conv1 -> conv2, sum1 = conv1 + conv2, conv3 -> conv4,
    sum2 = conv4 + sum1, conv5 -> conv6."""

    def __init__(self):
        super().__init__()
        for i in range(1, 7):
            setattr(self, f"conv{i}", conv_bn(3 if i == 1 else 8, 8, act=False))

    def forward(self, x):
        c1 = self.conv1(x)
        sum1 = c1 + self.conv2(c1)
        sum2 = self.conv4(self.conv3(sum1)) + sum1
        return self.conv6(self.conv5(sum2))


class RollNet(nn.Layer):
    """A channel roll (an op the analysis does not know) after conv a."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = conv_bn(8, 8)
        self.c = nn.Conv2D(8, 4, 1)

    def forward(self, x):
        y = paddle.roll(self.a(x), shifts=1, axis=1)
        return self.c(self.b(y))
