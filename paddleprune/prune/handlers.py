"""Per-layer-class handlers: after a layer's parameters change shape, bring the
layer's own attributes (``_in_channels``, ``_groups``, ``_num_features`` ...)
in line so that ``forward`` and ``repr`` agree with the new tensors.

A parameter owned by a class with no handler cannot be pruned: its group is
marked unprunable (the layer may read channel counts we do not know about).
"""
import paddle.nn as nn

_HANDLERS = {}


def register_handler(*classes):
    """Register ``fn(layer, old_shapes)`` for layer classes; twice is an error."""
    def deco(fn):
        for klass in classes:
            if klass in _HANDLERS:
                raise ValueError(f"a pruning handler for {klass.__name__} is already registered")
            _HANDLERS[klass] = fn
        return fn
    return deco


def handler_for(layer):
    """The handler for ``layer``'s class (walking the MRO), or None."""
    for klass in type(layer).__mro__:
        if klass in _HANDLERS:
            return _HANDLERS[klass]
    return None


def _shape(param):
    return [int(d) for d in param.shape]


@register_handler(nn.Conv1D, nn.Conv2D, nn.Conv3D)
def _sync_conv(layer, old_shapes):
    w = _shape(layer.weight)
    old = old_shapes.get("weight", w)
    if layer._groups not in (None, 1):
        layer._groups = layer._groups * w[0] // old[0]
    groups = layer._groups or 1
    layer._out_channels = w[0]
    layer._in_channels = w[1] * groups


@register_handler(nn.Conv1DTranspose, nn.Conv2DTranspose, nn.Conv3DTranspose)
def _sync_conv_transpose(layer, old_shapes):
    w = _shape(layer.weight)
    groups = layer._groups or 1
    layer._in_channels = w[0]
    layer._out_channels = w[1] * groups


@register_handler(nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm, nn.SyncBatchNorm,
                  nn.InstanceNorm1D, nn.InstanceNorm2D, nn.InstanceNorm3D)
def _sync_norm(layer, old_shapes):
    for name in ("weight", "scale", "_mean", "bias"):
        p = getattr(layer, name, None)
        if p is not None and hasattr(p, "shape"):
            n = int(p.shape[0])
            break
    else:
        return
    for attr in ("_num_features", "_num_channels"):
        if hasattr(layer, attr):
            setattr(layer, attr, n)


@register_handler(nn.Linear)
def _sync_linear(layer, old_shapes):
    """Linear keeps no channel counts of its own: the weight shape is the truth."""


@register_handler(nn.PReLU)
def _sync_prelu(layer, old_shapes):
    if getattr(layer, "_num_parameters", 1) != 1:
        layer._num_parameters = int(layer._weight.shape[0]) if hasattr(layer, "_weight") else layer._num_parameters
