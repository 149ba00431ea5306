"""UNet (Ronneberger et al., 2015) in the PaddleX 1.x layout (``paddlex/cv/nets/segmentation/unet.py``).

Structure (channel widths at ``scale=1``; every conv is conv-BN-ReLU without bias unless noted):

- ``encode.block1``: double 3x3 conv to 64 (``conv0``, ``conv1``);
  ``encode.block2`` ... ``block5``: 2x2 max pool (stride 2), then a double conv to
  128, 256, 512, 512. The outputs of blocks 1-4 are the skip connections.
- ``decode.decode1`` ... ``decode4`` (skips of blocks 4, 3, 2, 1; widths 256, 128, 64, 64):
  upsample x2, ``concat([upsampled, skip], axis=1)`` (the upsampled map first, as PaddleX), double conv.
  ``upsample_mode='bilinear'``: :func:`bilinear_upsample2x` (no parameters);
  ``'deconv'``: ``up``, a 2x2 stride-2 ``Conv2DTranspose`` (no bias, no BN) to half the block width.
- ``logit``: a **3x3** conv (padding 1, no bias) to ``num_classes`` -- PaddleX's ``_get_logit``,
  not the paper's 1x1.

Structural names map to PaddleX's: ``encode/block2/down/conv0/weights`` is ``encode.block2.conv0.0.weight``
(its BN ``.../BatchNorm/gamma`` is ``...conv0.1.weight``), ``decode/decode1/up/weights`` (deconv) is
``decode.decode1.up.weight``, ``logit/weights`` is ``logit.weight``. BN uses Paddle's defaults
(momentum 0.9, eps 1e-5) like the other networks here; PaddleX used momentum 0.99.

Bilinear semantics. PaddleX 1.x (source at commit 00533d5, a tree that already has FastSCNN, whose
resizes spell ``align_mode=1`` out) calls ``fluid.layers.resize_bilinear(data, shape(skip)[2:],
align_corners=False)``, whose ``align_mode`` defaults to **1**: source index =
destination index x in/out ("asymmetric", no half-pixel shift). For x2 that is
``out[2i] = x[i]``, ``out[2i+1] = (x[i] + x[min(i+1, H-1)]) / 2`` -- equal to Paddle 3's
``F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False, align_mode=1)``,
*not* to its default ``align_mode=0`` (half-pixel). (PaddleX 0.1.6, commit 1af3e04, used the fluid
default ``align_corners=True``.) :func:`bilinear_upsample2x` computes it from slices, concat, add, scale,
unsqueeze and flatten only, because ``F.interpolate`` does not run in Paddle Inference with
oneDNN on PIR (``ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>``).

Measured on Paddle 3.3.1 / paddle2onnx 2.1.0 / onnxruntime (CPU), scale 0.125, exported with input
spec ``[None, 3, None, None]``, batch 2 at 64x64 and 96x128, largest |diff| from dygraph:

======================================  ===============================  ===============================
upsample                                Paddle Inference + oneDNN [1]    paddle2onnx + ONNX Runtime
======================================  ===============================  ===============================
:func:`bilinear_upsample2x` (used)      ok (3.4e-6)                      ok (2.7e-6)
``Conv2DTranspose`` ('deconv')          ok (2.7e-6)                      ok (2.0e-6)
``F.interpolate(size=2 * shape[2:])``   fails (error above)              ok (2.7e-6)
``F.interpolate(scale_factor=2)``       fails (error above)              conversion fails (``MUST be
                                                                         ir::FloatAttribute``)
======================================  ===============================  ===============================

[1] with ``conv2d_bn_onednn_fuse_pass`` and ``conv2d_bias_bn_onednn_fuse_pass`` deleted (the runner's
setting before issue #14); with those passes kept (the runner's setting now) both modes also ran (2e-6). Both ``F.interpolate`` forms run in Paddle Inference with oneDNN off.
Label maps (argmax) were identical everywhere it ran, for the original and a 50 % pruned network.
Cost: in dygraph the basic-op upsample is slower than ``F.interpolate`` (a train step of batch 8 at
128x128, scale 0.125, took ~0.83 s against ~0.71 s on 2 cores).
"""
import paddle
import paddle.nn as nn

from paddleprune.errors import InvalidParameterError
from paddleprune.models.layers import ConvBNAct, check_common_args
from paddleprune.models.registry import Net, register_model

__all__ = ["UNetNet", "DoubleConv", "UpBlock", "bilinear_upsample2x", "UPSAMPLE_MODES"]

#: accepted ``upsample_mode`` values (PaddleX treated every value but 'bilinear' as deconv)
UPSAMPLE_MODES = ("bilinear", "deconv")
_ENCODER = (64, 128, 256, 512, 512)   # block1 ... block5
_DECODER = (256, 128, 64, 64)         # decode1 ... decode4
#: input height and width must be multiples of this (four 2x2 poolings)
STRIDE = 16


def _upsample_axis(x, axis):
    """x2 along ``axis`` (2 or 3): even rows are ``x``, odd rows the mean of a row and the next
    (the last row repeated past the edge)."""
    if axis == 2:
        following = paddle.concat([x[:, :, 1:], x[:, :, -1:]], axis=2)
    else:
        following = paddle.concat([x[:, :, :, 1:], x[:, :, :, -1:]], axis=3)
    mid = (x + following) * 0.5
    pairs = paddle.concat([x.unsqueeze(axis + 1), mid.unsqueeze(axis + 1)], axis=axis + 1)
    return pairs.flatten(axis, axis + 1)


def bilinear_upsample2x(x):
    """Bilinear x2 upsample of an NCHW tensor with PaddleX 1.x semantics (see the module docstring).

    Equal (to float rounding) to ``F.interpolate(x, scale_factor=2, mode='bilinear',
    align_corners=False, align_mode=1)``; built from basic ops so that it runs in Paddle
    Inference with oneDNN and converts with paddle2onnx, for a dynamic H and W, and so that
    the pruning engine sees it as channel-preserving.
    """
    return _upsample_axis(_upsample_axis(x, 2), 3)


class DoubleConv(nn.Layer):
    """Two 3x3 conv-BN-ReLU (``conv0``, ``conv1``)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv0 = ConvBNAct(in_channels, out_channels, 3)
        self.conv1 = ConvBNAct(out_channels, out_channels, 3)

    def forward(self, x):
        return self.conv1(self.conv0(x))


class UpBlock(DoubleConv):
    """Decoder block: upsample ``x`` x2, concat ``[x, skip]`` on channels, double conv.

    Parameters
    ----------
    in_channels, skip_channels, out_channels : int
    deconv : bool
        True: ``up`` is a 2x2 stride-2 ``Conv2DTranspose`` to ``out_channels // 2``;
        False: :func:`bilinear_upsample2x` (``up`` is None).
    """

    def __init__(self, in_channels, skip_channels, out_channels, deconv):
        up_channels = max(1, out_channels // 2) if deconv else in_channels
        super().__init__(up_channels + skip_channels, out_channels)
        self.up = nn.Conv2DTranspose(in_channels, up_channels, 2, stride=2, bias_attr=False) if deconv else None

    def forward(self, x, skip):
        x = bilinear_upsample2x(x) if self.up is None else self.up(x)
        return super().forward(paddle.concat([x, skip], axis=1))


@register_model("UNet")
class UNetNet(Net):
    """UNet semantic segmentation network, PaddleX 1.x layout (see the module docstring).

    ``forward(image)`` maps ``[N, 3, H, W]`` to logits ``[N, num_classes, H, W]``; H and W
    must be multiples of 16.

    Parameters
    ----------
    num_classes : int
        Output classes (int >= 1).
    upsample_mode : str
        ``'bilinear'`` (default, no parameters) or ``'deconv'`` (transposed convs).
    scale : float
        Width multiplier in (0, 4] applied to every width: ``max(1, int(c * scale))``, e.g.
        0.125 gives encoder widths 8, 16, 32, 64, 64. Default 1.0.

    Raises
    ------
    InvalidParameterError
        Bad arguments; in ``forward``, an input size that is not a multiple of 16.
    """

    def __init__(self, num_classes, upsample_mode="bilinear", scale=1.0):
        super().__init__()
        check_common_args("UNet", num_classes, scale)
        if not isinstance(upsample_mode, str) or upsample_mode not in UPSAMPLE_MODES:
            raise InvalidParameterError(
                f"UNet: 'upsample_mode' must be one of {list(UPSAMPLE_MODES)}; got {upsample_mode!r}.")
        self.num_classes = num_classes
        self.upsample_mode = upsample_mode
        self.scale = scale
        enc = [max(1, int(c * scale)) for c in _ENCODER]
        dec = [max(1, int(c * scale)) for c in _DECODER]
        self.encode = nn.LayerDict()
        channels = 3
        for i, c in enumerate(enc, start=1):
            self.encode[f"block{i}"] = DoubleConv(channels, c)
            channels = c
        self.decode = nn.LayerDict()
        for i, (skip, c) in enumerate(zip(reversed(enc[:-1]), dec), start=1):
            self.decode[f"decode{i}"] = UpBlock(channels, skip, c, deconv=upsample_mode == "deconv")
            channels = c
        self.pool = nn.MaxPool2D(2, 2)
        self.logit = nn.Conv2D(channels, num_classes, 3, padding=1, bias_attr=False)

    def forward(self, image):
        if paddle.in_dynamic_mode():            # traced, the size may be a symbolic value
            h, w = image.shape[2], image.shape[3]
            if h % STRIDE or w % STRIDE:
                raise InvalidParameterError(
                    f"UNet: the input height and width must be multiples of {STRIDE}; got {h}x{w}.")
        skips, x = [], image
        for i, block in enumerate(self.encode.values()):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for block, skip in zip(self.decode.values(), reversed(skips[:-1])):
            x = block(x, skip)
        return self.logit(x)
