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


def channel_shuffle(x, groups):
    """ShuffleNet's channel shuffle, reading the channel count at run time."""
    n, c, h, w = x.shape
    x = paddle.reshape(x, [n, groups, c // groups, h, w])
    return paddle.reshape(paddle.transpose(x, [0, 2, 1, 3, 4]), [n, c, h, w])


class DoubleShuffle(nn.Layer):
    """Two branches concatenated, shuffled into 2 groups, then at once into 4 groups;
    a depthwise conv + BN after the shuffles, then a head conv."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = conv_bn(3, 8, k=1)
        self.dw = conv_bn(16, 16, groups=16, act=False)
        self.head = nn.Conv2D(16, 6, 1)

    def forward(self, x):
        y = channel_shuffle(paddle.concat([self.a(x), self.b(x)], axis=1), 2)
        y = self.dw(channel_shuffle(y, 4))
        return F.adaptive_avg_pool2d(self.head(y), 1).flatten(1)


class ShuffleUnits(nn.Layer):
    """ShuffleNetV2-style units: chunk in two halves, transform one, concat, shuffle;
    twice in a row, with a residual add of two shuffled tensors at the end."""

    def __init__(self):
        super().__init__()
        self.stem_a = conv_bn(3, 16)
        self.stem_b = conv_bn(3, 16, k=1)
        self.u1 = nn.Sequential(conv_bn(16, 12, k=1), conv_bn(12, 12, groups=12, act=False), conv_bn(12, 16, k=1))
        self.u2 = nn.Sequential(conv_bn(16, 10, k=1), conv_bn(10, 16, k=1))
        self.side = conv_bn(3, 32, k=1)
        self.head = nn.Conv2D(32, 5, 1)

    def forward(self, x):
        y = channel_shuffle(paddle.concat([self.stem_a(x), self.stem_b(x)], axis=1), 2)
        for unit in (self.u1, self.u2):
            x1, x2 = paddle.chunk(y, 2, axis=1)
            y = channel_shuffle(paddle.concat([x1, unit(x2)], axis=1), 2)
        y = y + channel_shuffle(self.side(x), 2)
        return F.adaptive_avg_pool2d(self.head(y), 1).flatten(1)


class UnevenShuffle(nn.Layer):
    """A shuffle over a concat of 8 + 6 channels: its groups cut conv a's channels."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = conv_bn(3, 6)
        self.c = nn.Conv2D(14, 4, 1)

    def forward(self, x):
        return self.c(channel_shuffle(paddle.concat([self.a(x), self.b(x)], axis=1), 2))


class ChunkThenAdd(nn.Layer):
    """A chunk ties conv a's two channel halves; a residual add then ties a (whole) to
    conv c and conv b position by position, so c and b must tie their halves the same way."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = conv_bn(4, 8, k=1)
        self.c = conv_bn(3, 8, k=1)
        self.head = nn.Conv2D(8, 3, 1)

    def forward(self, x):
        y = self.a(x)
        y1, y2 = paddle.chunk(y, 2, axis=1)
        s = self.b(y1 + y2)
        return self.head(y + self.c(x) + s)


class FixedReshape(nn.Layer):
    """Conv a's output reshaped to a fixed [1, 8, H*W] target (a channel count baked in)."""

    def __init__(self):
        super().__init__()
        self.a = conv_bn(3, 8)
        self.b = nn.Conv1D(8, 4, 1)

    def forward(self, x):
        return self.b(paddle.reshape(self.a(x), [1, 8, 64])).mean(axis=2)
