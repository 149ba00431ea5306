"""Building blocks shared by the networks, made of standard layers only."""
import math
import numbers

import paddle.nn as nn

from paddleprune.errors import InvalidParameterError
from paddleprune.utils.checks import check_int

__all__ = ["ConvBNAct", "make_divisible", "check_common_args"]


class ConvBNAct(nn.Sequential):
    """``Conv2D`` (no bias) -> ``BatchNorm2D`` -> activation, as one Sequential.

    Structural names are ``<prefix>.0.weight`` (conv), ``<prefix>.1.*`` (BN).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Odd kernel size; padding keeps the size at stride 1. Default 3.
    stride : int
        Default 1.
    groups : int
        Default 1 (``in_channels`` for a depthwise conv).
    act : type or None
        Activation class (``nn.ReLU``, ``nn.ReLU6``) or ``None`` for no activation.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                            padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False),
                  nn.BatchNorm2D(out_channels)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


def make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to a multiple of ``divisor``, never below 90% of it (MobileNet rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def check_common_args(owner, num_classes, scale=1.0, small_input=False):
    """Validate ``num_classes`` (int >= 1), ``scale`` (in (0, 4]) and ``small_input`` (bool).

    Raises
    ------
    InvalidParameterError
        With the message shape ``"Owner: 'name' must be ...; got value."``.
    """
    check_int(owner, "num_classes", num_classes)
    ok = isinstance(scale, numbers.Real) and not isinstance(scale, bool) and 0 < scale <= 4 and math.isfinite(scale)
    if not ok:
        raise InvalidParameterError(f"{owner}: 'scale' must be a number in (0, 4]; got {scale!r}.")
    if not isinstance(small_input, bool):
        raise InvalidParameterError(f"{owner}: 'small_input' must be True or False; got {small_input!r}.")
