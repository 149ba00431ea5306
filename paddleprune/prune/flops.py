"""FLOPs and parameter counting.

Convention: FLOPs = 2 x multiply-accumulates (MACs) of every conv, transposed
conv and linear layer, per sample (batch size does not count). Bias adds,
batch norm, activations and pooling are not counted: they are a few percent
of a CNN's work and pruning shrinks them in proportion anyway. On
``paddle.vision`` MobileNetV1 at 224x224 this gives 1.14 GFLOPs (569 M MACs),
the "1.11 GFLOPs" of PaddleSlim's table within 3 %.

The module itself is callable: ``paddleprune.prune.flops(model_or_program, ...)``
is :func:`flops` (PaddleSlim's name), while ``import paddleprune.prune.flops``
still gives this module.
"""
import math
import sys
import types

import paddle

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.analysis import Analysis
from paddleprune.prune.graph import trace

__all__ = ["count_flops", "pruned_shapes", "dygraph_flops", "count_params", "flops"]


def count_flops(sites, shapes):
    """FLOPs for ``FlopSite`` list ``sites`` given parameter ``shapes`` {name: shape}."""
    return 2 * sum(math.prod(shapes[s.param]) * s.positions for s in sites)


def pruned_shapes(shapes, plan):
    """Parameter shapes after ``plan`` (a PruningPlan) would be applied."""
    out = {k: list(v) for k, v in shapes.items()}
    for name, masks in plan.masks.items():
        for m in masks:
            out[name][m.dims[0]] = int(m.mask.sum())
    return out


def dygraph_flops(model, input_shape, detail=False):
    """FLOPs of ``model`` for one sample of ``input_shape`` (see the module docstring).

    With ``detail=True`` returns ``(total, {param: flops})``.
    """
    analysis = Analysis(trace(model, input_shape, owner="dygraph_flops"))
    shapes = {n: [int(d) for d in p.shape] for n, p in analysis.traced.params.items()}
    total = count_flops(analysis.flop_sites, shapes)
    if detail:
        return total, {s.param: 2 * math.prod(shapes[s.param]) * s.positions for s in analysis.flop_sites}
    return total


def count_params(model, trainable_only=False):
    """Number of parameter elements (BN statistics included unless ``trainable_only``)."""
    return sum(math.prod(p.shape) for p in model.parameters() if not (trainable_only and p.stop_gradient))


def flops(model, inputs=None, detail=False):
    """FLOPs (2 x MACs of conv and fc layers, per sample) of a Program or a Layer.

    Parameters
    ----------
    model : paddle.static.Program or paddle.nn.Layer
        A legacy-IR Program (its var descs give the shapes), or a dygraph Layer.
    inputs : list of int, optional
        Input shape for a Layer, e.g. ``[1, 3, 224, 224]``; not used for a Program.
    detail : bool
        Also return ``{weight name: FLOPs}``.

    Returns
    -------
    int or (int, dict)

    Raises
    ------
    InvalidParameterError
        For a PIR program, a Layer without ``inputs``, or unknown spatial sizes.
    """
    if isinstance(model, paddle.nn.Layer):
        if inputs is None:
            raise InvalidParameterError("flops: a paddle.nn.Layer needs 'inputs', an input shape such as "
                                        "[1, 3, 224, 224].")
        return dygraph_flops(model, inputs, detail=detail)
    from paddleprune.prune.static.flops import program_flops
    return program_flops(model, detail=detail)


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`flops`."""

    def __call__(self, model, inputs=None, detail=False):
        return flops(model, inputs, detail=detail)


sys.modules[__name__].__class__ = _CallableModule
