"""ResNet18 and ResNet50 (He et al., 2016), torchvision / paddle.vision layout and names.

Structural names: ``conv1``, ``bn1``, ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``,
``fc.weight`` ... Only Conv2D, BatchNorm2D, ReLU, MaxPool2D, residual add,
AdaptiveAvgPool2D, flatten and Linear are used.
"""
import paddle
import paddle.nn as nn

from paddleprune.models.layers import check_common_args
from paddleprune.models.registry import Net, register_model

__all__ = ["ResNet18", "ResNet50", "BasicBlock", "BottleneckBlock"]


def _conv(in_channels, out_channels, kernel_size, stride=1):
    return nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                     padding=(kernel_size - 1) // 2, bias_attr=False)


class BasicBlock(nn.Layer):
    """Two 3x3 convs with a residual add (ResNet18/34)."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv(in_channels, channels, 3, stride)
        self.bn1 = nn.BatchNorm2D(channels)
        self.conv2 = _conv(channels, channels, 3)
        self.bn2 = nn.BatchNorm2D(channels)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class BottleneckBlock(nn.Layer):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, residual add (ResNet50+, stride on the 3x3)."""

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = _conv(in_channels, channels, 1)
        self.bn1 = nn.BatchNorm2D(channels)
        self.conv2 = _conv(channels, channels, 3, stride)
        self.bn2 = nn.BatchNorm2D(channels)
        self.conv3 = _conv(channels, channels * 4, 1)
        self.bn3 = nn.BatchNorm2D(channels * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class _ResNet(Net):
    block = None
    depth = ()

    def __init__(self, num_classes=1000, small_input=False):
        super().__init__()
        check_common_args(type(self).__name__, num_classes, 1.0, small_input)
        self.num_classes = num_classes
        self.small_input = small_input
        if small_input:
            self.conv1 = _conv(3, 64, 3, 1)
        else:
            self.conv1 = nn.Conv2D(3, 64, 7, stride=2, padding=3, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(64)
        self.relu = nn.ReLU()
        self.maxpool = None if small_input else nn.MaxPool2D(3, stride=2, padding=1)
        in_channels = 64
        for i, (channels, blocks) in enumerate(zip((64, 128, 256, 512), self.depth)):
            stride = 1 if i == 0 else 2
            layer, in_channels = self._make_layer(in_channels, channels, blocks, stride)
            setattr(self, f"layer{i + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def _make_layer(self, in_channels, channels, blocks, stride):
        out_channels = channels * self.block.expansion
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(_conv(in_channels, out_channels, 1, stride),
                                       nn.BatchNorm2D(out_channels))
        layers = [self.block(in_channels, channels, stride, downsample)]
        layers += [self.block(out_channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers), out_channels

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(paddle.flatten(self.avgpool(x), 1))


@register_model("ResNet18")
class ResNet18(_ResNet):
    """ResNet-18 (BasicBlock, depths 2-2-2-2).

    Parameters
    ----------
    num_classes : int
        Output classes (int >= 1). Default 1000.
    small_input : bool
        If True the stem is a 3x3 stride-1 conv with no max-pool (CIFAR style, total
        stride 8), so 32x32 inputs end on a 4x4 map. Default False (7x7/2 conv + 3x3/2 pool).
    """

    block = BasicBlock
    depth = (2, 2, 2, 2)

    def __init__(self, num_classes=1000, small_input=False):
        super().__init__(num_classes, small_input)


@register_model("ResNet50")
class ResNet50(_ResNet):
    """ResNet-50 (BottleneckBlock, depths 3-4-6-3); parameters as :class:`ResNet18`."""

    block = BottleneckBlock
    depth = (3, 4, 6, 3)

    def __init__(self, num_classes=1000, small_input=False):
        super().__init__(num_classes, small_input)
