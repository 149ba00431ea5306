"""FLOPs of a legacy-IR static Program, with the convention of
:mod:`paddleprune.prune.flops`: 2 x multiply-accumulates of every conv,
depthwise conv, transposed conv and fc (``mul`` / ``matmul(_v2)`` with a
parameter weight), per sample (the batch axis does not count). Bias adds,
batch norm, activations and pooling are not counted. The same architecture
gives the same number as :func:`~paddleprune.prune.dygraph_flops`.
"""
import logging
import math

import paddle

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.static.pruner import check_program
from paddleprune.prune.static.ops import CONV_OPS, CONV_TRANSPOSE_OPS, FC_OPS, forward_ops

logger = logging.getLogger(__name__)

__all__ = ["program_flops"]


def _shape(block, name):
    var = block._find_var_recursive(name)
    return [int(d) for d in var.shape]


def program_flops(program, detail=False):
    """FLOPs of a legacy-IR Program per sample; with ``detail``, ``(total, {weight: flops})``."""
    check_program(program, "flops")
    with paddle.pir_utils.OldIrGuard():
        block = program.global_block()
        params = {p.name for p in block.all_parameters()}
        per_weight = {}
        for _, op in forward_ops(block):
            if op.type in CONV_OPS | CONV_TRANSPOSE_OPS:
                weight = op.input("Filter")[0]
                if weight not in params:
                    continue
                spatial = _shape(block, op.input("Input")[0] if op.type in CONV_TRANSPOSE_OPS
                                 else op.output("Output")[0])[2:]
                if any(d <= 0 for d in spatial):
                    raise InvalidParameterError(
                        f"flops: the spatial size of {op.type} with filter {weight} is unknown ({spatial}); "
                        f"build the program with a fixed input size such as [None, 3, 224, 224].")
                positions = math.prod(spatial)
            elif op.type in FC_OPS:
                weight = op.input("Y")[0]
                if weight not in params or len(_shape(block, weight)) != 2:
                    continue
                xs = _shape(block, op.input("X")[0])
                if op.type == "mul":
                    rows = xs[1:int(op.attr("x_num_col_dims"))]
                else:
                    rows = xs[1:-1]
                if any(d <= 0 for d in rows):
                    raise InvalidParameterError(f"flops: the input of {op.type} with weight {weight} has "
                                                f"unknown sizes {xs}.")
                positions = math.prod(rows)
            else:
                continue
            per_weight[weight] = per_weight.get(weight, 0) + 2 * math.prod(_shape(block, weight)) * positions
    total = sum(per_weight.values())
    return (total, per_weight) if detail else total
