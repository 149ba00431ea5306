"""MobileNetV1 and MobileNetV2 (standard ImageNet layouts, optional small-input stem).

Only Conv2D, BatchNorm2D, ReLU/ReLU6, residual add, AdaptiveAvgPool2D, flatten and
Linear are used, so the pruning engine can trace every channel dependency.
``features`` is an ``nn.Sequential`` (stem, blocks, last conv) that detection backbones
can slice.
"""
import paddle
import paddle.nn as nn

from paddleprune.models.layers import ConvBNAct, check_common_args, make_divisible
from paddleprune.models.registry import Net, register_model

__all__ = ["MobileNetV1", "MobileNetV2", "InvertedResidual", "DepthwiseSeparable"]


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise ConvBNReLU then 1x1 pointwise ConvBNReLU (names ``.0``, ``.1``)."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__(ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels),
                         ConvBNAct(in_channels, out_channels, 1))


class InvertedResidual(nn.Layer):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project, residual add."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, act=nn.ReLU6))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   ConvBNAct(hidden, out_channels, 1, act=None)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


@register_model("MobileNetV1")
class MobileNetV1(Net):
    """MobileNetV1 (Howard et al., 2017).

    Parameters
    ----------
    num_classes : int
        Output classes (int >= 1). Default 1000.
    scale : float
        Width multiplier in (0, 4]; each layer has ``int(c * scale)`` channels. Default 1.0.
    small_input : bool
        If True the stem conv has stride 1 instead of 2 (total stride 16, not 32), so
        32x32 inputs end on a 2x2 map instead of 1x1. Default False.
    """

    _CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
            (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, num_classes=1000, scale=1.0, small_input=False):
        super().__init__()
        check_common_args("MobileNetV1", num_classes, scale, small_input)
        self.num_classes = num_classes
        self.scale = scale
        self.small_input = small_input
        channels = max(1, int(32 * scale))
        layers = [ConvBNAct(3, channels, 3, 1 if small_input else 2)]
        for out, stride in self._CFG:
            out = max(1, int(out * scale))
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.fc(paddle.flatten(x, 1))


@register_model("MobileNetV2")
class MobileNetV2(Net):
    """MobileNetV2 (Sandler et al., 2018), torchvision / paddle.vision layout, no dropout.

    Parameters
    ----------
    num_classes : int
        Output classes (int >= 1). Default 1000.
    scale : float
        Width multiplier in (0, 4]; channels are rounded to multiples of 8 and the
        last conv keeps 1280 channels for ``scale <= 1``. Default 1.0.
    small_input : bool
        If True the stem conv has stride 1 instead of 2 (total stride 16, not 32), so
        32x32 inputs end on a 2x2 map instead of 1x1. Default False.
    """

    _CFG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # expand t, channels c, repeats n, stride s

    def __init__(self, num_classes=1000, scale=1.0, small_input=False):
        super().__init__()
        check_common_args("MobileNetV2", num_classes, scale, small_input)
        self.num_classes = num_classes
        self.scale = scale
        self.small_input = small_input
        channels = make_divisible(32 * scale)
        last = make_divisible(1280 * max(1.0, scale))
        layers = [ConvBNAct(3, channels, 3, 1 if small_input else 2, act=nn.ReLU6)]
        for t, c, n, s in self._CFG:
            out = make_divisible(c * scale)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        layers.append(ConvBNAct(channels, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.fc(paddle.flatten(x, 1))
