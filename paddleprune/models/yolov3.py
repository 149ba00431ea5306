"""YOLOv3 with a MobileNetV1 backbone (PaddleX 1.x / PaddleDetection head layout).

Structural names:

- ``backbone.features.<i>...``: exactly the ``features`` names of :class:`MobileNetV1`
  behind a ``backbone.`` prefix, so ImageNet MobileNetV1 weights load after stripping it.
  Features are taken after ``features[5]`` (stride 8), ``[11]`` (stride 16) and ``[13]``
  (stride 32); the classifier is not kept.
- ``yolo_block.<level>.conv.{0..3}``, ``.route``, ``.tip``: the detection block of each
  level (1x1 c, 3x3 2c, 1x1 c, 3x3 2c, then route 1x1 c and tip 3x3 2c), conv-BN-LeakyReLU(0.1).
- ``yolo_transition.<level>``: 1x1 conv to c/2 before the 2x upsample and the concat
  ``[upsampled route, backbone feature]``.
- ``yolo_output.<level>``: 1x1 conv with bias to ``len(mask) * (5 + num_classes)`` channels.

Two ops are written out by hand because the library versions get them wrong
(Paddle 3.3.1, paddle2onnx 2.1.0; input spec ``[None, 3, None, None]``, sizes 64x64 and
96x128, measured on this machine):

Upsample 2x (nearest). Needed: dygraph, the pruning engine's trace, Paddle Inference with
oneDNN and paddle2onnx + ONNX Runtime, all with a dynamic input size.

======================================  =====  ======  ===============================  ====================
variant                                 dygr.  engine  Paddle Inference + oneDNN        paddle2onnx + ORT
======================================  =====  ======  ===============================  ====================
``F.interpolate(scale_factor=2)``       ok     ok      fails (``ArrayAttribute<Double>  conversion fails
                                                       not supported``)                 (``MUST be FloatAttr``)
``F.interpolate(size=2 * shape[2:])``   ok     ok      fails (same error)               ok
``repeat_interleave`` on H then W       ok     no [1]  ok                               ORT fails at run time
                                                                                        (Tile: repeat length)
unsqueeze + ``expand`` + flatten        ok     no [1]  ok                               ok
unsqueeze + concat(x, x) + flatten      ok     ok      ok (2.8e-6)                      ok (3.8e-6)
======================================  =====  ======  ===============================  ====================

[1] the op is not understood, so the transition conv's channels become unprunable.
Numbers are the largest absolute difference from dygraph. The last row is used (:func:`upsample2x`): it needs no engine change.

LeakyReLU. paddle2onnx 2.1.0 converts the PIR ``leaky_relu`` op (attribute ``negative_slope``,
stored as a float64 in ``model.json``) to an ONNX ``LeakyRelu`` with ``alpha=0.0``, i.e. a
ReLU, silently: a conv + LeakyReLU(0.1) net differed from Paddle by 0.16-0.34 in ONNX Runtime.
:class:`LeakyReLU` computes the same function as ``maximum(x, 0.1 * x)`` (``scale`` +
``maximum``), which converts exactly (2e-7) and runs under oneDNN; with it the whole YOLOv3
also ran under oneDNN with the conv+BN fuse passes kept (no segfault, 1e-5).
"""
import copy
import math
import numbers

import numpy as np
import paddle
import paddle.nn as nn

from paddleprune.errors import InvalidParameterError
from paddleprune.models.layers import ConvBNAct, check_common_args, make_divisible
from paddleprune.models.mobilenet import MobileNetV1
from paddleprune.models.registry import Net, register_model

__all__ = ["YOLOv3Net", "LeakyReLU", "upsample2x", "DEFAULT_ANCHORS", "DEFAULT_ANCHOR_MASKS",
           "DOWNSAMPLE_RATIOS"]

#: COCO anchors (w, h) in pixels, as in PaddleX 1.x and PaddleDetection
DEFAULT_ANCHORS = [[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198],
                   [373, 326]]
#: anchor indices of each output level, stride 32 first
DEFAULT_ANCHOR_MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
#: stride of each output level
DOWNSAMPLE_RATIOS = (32, 16, 8)

_BACKBONES = ("MobileNetV1",)
_FEATURE_INDICES = (5, 11, 13)      # MobileNetV1.features ending at stride 8, 16, 32
_HEAD_CHANNELS = (512, 256, 128)    # c of each level at full width, stride 32 first


class LeakyReLU(nn.Layer):
    """``max(x, negative_slope * x)``: LeakyReLU for ``0 <= negative_slope <= 1``, written so
    that paddle2onnx 2.1.0 keeps the slope (see the module docstring)."""

    def __init__(self, negative_slope=0.1):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return paddle.maximum(x, x * self.negative_slope)


def upsample2x(x):
    """Nearest-neighbour 2x upsample of an NCHW tensor with unsqueeze, concat and flatten only.

    Works for a dynamic H and W in dygraph, the pruning engine, Paddle Inference (oneDNN on
    or off) and paddle2onnx; see the module docstring for the alternatives that do not.
    """
    y = x.unsqueeze([3, 5])                    # N, C, H, 1, W, 1
    y = paddle.concat([y, y], axis=5)          # N, C, H, 1, W, 2
    y = paddle.concat([y, y], axis=3)          # N, C, H, 2, W, 2
    return y.flatten(4, 5).flatten(2, 3)       # N, C, 2H, 2W


def _cbl(in_channels, out_channels, kernel_size):
    return ConvBNAct(in_channels, out_channels, kernel_size, act=LeakyReLU)


class MobileNetV1Backbone(nn.Layer):
    """``MobileNetV1(scale).features`` returning the stride-32, -16 and -8 feature maps."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.features = MobileNetV1(num_classes=1, scale=scale).features
        self.out_channels = [max(1, int(c * scale)) for c in (1024, 512, 256)]

    def forward(self, x):
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _FEATURE_INDICES:
                feats.append(x)
        return feats[::-1]


class YoloDetectionBlock(nn.Layer):
    """Four alternating 1x1 c / 3x3 2c convs, then ``route`` (1x1 c) and ``tip`` (3x3 2c)."""

    def __init__(self, in_channels, channels):
        super().__init__()
        self.conv = nn.Sequential(_cbl(in_channels, channels, 1), _cbl(channels, 2 * channels, 3),
                                  _cbl(2 * channels, channels, 1), _cbl(channels, 2 * channels, 3))
        self.route = _cbl(2 * channels, channels, 1)
        self.tip = _cbl(channels, 2 * channels, 3)

    def forward(self, x):
        route = self.route(self.conv(x))
        return route, self.tip(route)


def _check_anchors(owner, anchors, anchor_masks):
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    ok = isinstance(anchors, (list, tuple)) and len(anchors) > 0 and all(
        isinstance(a, (list, tuple)) and len(a) == 2 and all(is_int(v) and v > 0 for v in a) for a in anchors)
    if not ok:
        raise InvalidParameterError(
            f"{owner}: 'anchors' must be a non-empty list of [width, height] pairs of positive ints; got {anchors!r}.")
    n = len(anchors)
    ok = isinstance(anchor_masks, (list, tuple)) and len(anchor_masks) == len(DOWNSAMPLE_RATIOS) and all(
        isinstance(m, (list, tuple)) and len(m) > 0 and all(is_int(i) and 0 <= i < n for i in m)
        for m in anchor_masks)
    if not ok:
        raise InvalidParameterError(
            f"{owner}: 'anchor_masks' must be {len(DOWNSAMPLE_RATIOS)} non-empty lists (stride 32, 16, 8) of "
            f"indices into the {n} anchors; got {anchor_masks!r}.")
    return [[int(v) for v in a] for a in anchors], [[int(i) for i in m] for m in anchor_masks]


#: prior probabilities the output biases start from: an object at a given anchor and cell,
#: and a class given an object (RetinaNet / YOLOv5 initialisation; see :func:`_output_conv`)
OBJECT_PRIOR = 0.01


def _output_conv(in_channels, num_anchors, num_classes):
    """The 1x1 output conv, weights ~ N(0, 0.01) (PaddleDetection's) and biases at the priors:
    objectness logit ``log(p / (1 - p))`` with p = :data:`OBJECT_PRIOR`, class logits at
    ``1 / num_classes``. Without it the loss starts near 0.7 per anchor (logits 0 on
    ~1,000 anchors per image); its first gradients blow up the backbone's weights and the
    batch-norm statistics lag behind them for hundreds of steps."""
    per = 5 + num_classes
    bias = np.zeros([num_anchors * per], np.float32)
    for a in range(num_anchors):
        bias[a * per + 4] = math.log(OBJECT_PRIOR / (1 - OBJECT_PRIOR))
        q = 1.0 / max(num_classes, 2)
        bias[a * per + 5:(a + 1) * per] = math.log(q / (1 - q))
    return nn.Conv2D(in_channels, num_anchors * per, 1,
                     weight_attr=paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, 0.01)),
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Assign(bias)))


@register_model("YOLOv3")
class YOLOv3Net(Net):
    """YOLOv3 (Redmon & Farhadi, 2018): MobileNetV1 backbone and the three-level YOLO head.

    ``forward(image)`` returns the three raw maps ``[N, len(mask) * (5 + num_classes), H/s, W/s]``
    for ``s = 32, 16, 8`` (in that order); :func:`paddleprune.models.yolo_ops.yolov3_loss` and
    :func:`~paddleprune.models.yolo_ops.yolov3_decode` consume them. H and W must be multiples of 32.

    Parameters
    ----------
    num_classes : int
        Object classes (int >= 1). Default 80.
    backbone : str
        Only ``'MobileNetV1'``.
    backbone_scale : float
        Width multiplier in (0, 4] of the backbone; the head's widths c = 512, 256, 128
        are scaled by it too (``make_divisible(c * backbone_scale)``, at least 8). Default 1.0.
    anchors : list of [w, h], optional
        Anchor sizes in input pixels; default :data:`DEFAULT_ANCHORS` (COCO).
    anchor_masks : list of 3 lists of int, optional
        Anchor indices of each level, stride 32 first; default :data:`DEFAULT_ANCHOR_MASKS`.
    """

    def __init__(self, num_classes=80, backbone="MobileNetV1", backbone_scale=1.0, anchors=None,
                 anchor_masks=None):
        super().__init__()
        check_common_args("YOLOv3", num_classes, backbone_scale)
        if backbone not in _BACKBONES:
            raise InvalidParameterError(f"YOLOv3: 'backbone' must be one of {list(_BACKBONES)}; got {backbone!r}.")
        anchors, anchor_masks = _check_anchors(
            "YOLOv3", DEFAULT_ANCHORS if anchors is None else anchors,
            DEFAULT_ANCHOR_MASKS if anchor_masks is None else anchor_masks)
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.backbone_scale = backbone_scale
        self.anchors = anchors
        self.anchor_masks = anchor_masks
        self.downsample_ratios = list(DOWNSAMPLE_RATIOS)

        self.backbone = MobileNetV1Backbone(backbone_scale)
        blocks, transitions, outputs = [], [], []
        route_channels = 0
        for level, (feat_channels, full) in enumerate(zip(self.backbone.out_channels, _HEAD_CHANNELS)):
            c = make_divisible(full * backbone_scale)
            blocks.append(YoloDetectionBlock(route_channels + feat_channels, c))
            outputs.append(_output_conv(2 * c, len(anchor_masks[level]), num_classes))
            if level < len(_HEAD_CHANNELS) - 1:
                route_channels = make_divisible(full // 2 * backbone_scale)
                transitions.append(_cbl(c, route_channels, 1))
        self.yolo_block = nn.LayerList(blocks)
        self.yolo_transition = nn.LayerList(transitions)
        self.yolo_output = nn.LayerList(outputs)

    def get_params(self):
        """Constructor arguments (see :meth:`Net.get_params`). Overridden because the argument
        ``backbone`` (a str) is stored as ``backbone_name``: ``self.backbone`` is the sublayer
        whose structural names must stay ``backbone.features...``."""
        return {"num_classes": self.num_classes, "backbone": self.backbone_name,
                "backbone_scale": self.backbone_scale, "anchors": copy.deepcopy(self.anchors),
                "anchor_masks": copy.deepcopy(self.anchor_masks)}

    def forward(self, image):
        outputs, route = [], None
        for level, feat in enumerate(self.backbone(image)):
            if route is not None:
                feat = paddle.concat([route, feat], axis=1)
            route, tip = self.yolo_block[level](feat)
            outputs.append(self.yolo_output[level](tip))
            if level < len(self.yolo_transition):
                route = upsample2x(self.yolo_transition[level](route))
        return outputs
