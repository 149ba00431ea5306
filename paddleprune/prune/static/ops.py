"""Legacy-IR op vocabulary of the static walker: which op types it understands,
how to tell forward ops from backward/optimizer ops, and the attribute sites
that hold channel counts."""
from dataclasses import dataclass

from paddle.base import core

__all__ = ["AttrSite", "forward_ops", "is_forward", "nchw", "KINDS", "SUPPORTED_OPS", "UNARY_OPS", "CONV_OPS",
           "CONV_TRANSPOSE_OPS", "NORM_OPS", "ELEMENTWISE_OPS", "FLATTEN_OPS", "RESHAPE_OPS", "FC_OPS",
           "REDUCE_OPS", "TERMINAL_OPS", "SHAPE_READERS"]

_ROLE = core.op_proto_and_checker_maker.OpRole
_NOT_FORWARD = int(_ROLE.Backward) | int(_ROLE.Optimize) | int(_ROLE.RPC) | int(_ROLE.Dist) | int(_ROLE.LRSched)

#: Legacy op type -> kind (a rule of :mod:`paddleprune.prune.rules`, or a walker method for
#: ``conv``, ``conv_transpose``, ``fc``). Adding an op type is one entry here.
KINDS = {
    **dict.fromkeys([
        "relu", "relu6", "leaky_relu", "sigmoid", "hard_swish", "hard_sigmoid", "swish", "silu", "gelu", "tanh",
        "elu", "selu", "mish", "softplus", "softsign", "logsigmoid", "brelu", "hard_shrink", "softshrink",
        "thresholded_relu", "tanh_shrink", "celu", "square", "sqrt", "abs", "exp", "prelu", "dropout", "scale",
        "cast", "assign", "clip", "pool2d", "pad3d", "nearest_interp", "nearest_interp_v2", "bilinear_interp",
        "bilinear_interp_v2", "bicubic_interp", "bicubic_interp_v2"], "unary"),
    **dict.fromkeys(["conv2d", "depthwise_conv2d"], "conv"),
    **dict.fromkeys(["conv2d_transpose"], "conv_transpose"),
    **dict.fromkeys(["batch_norm", "sync_batch_norm", "instance_norm", "affine_channel"], "norm"),
    **dict.fromkeys(["elementwise_add", "elementwise_sub", "elementwise_mul", "elementwise_div",
                     "elementwise_max", "elementwise_min"], "binary"),
    **dict.fromkeys(["sum"], "join"),
    **dict.fromkeys(["concat"], "concat"),
    **dict.fromkeys(["flatten_contiguous_range", "flatten2", "flatten", "reshape2", "reshape", "squeeze2",
                     "unsqueeze2"], "reshape"),
    **dict.fromkeys(["mul", "matmul_v2", "matmul"], "fc"),
    **dict.fromkeys(["reduce_mean", "reduce_sum", "reduce_max", "reduce_min", "softmax"], "reduction"),
}


def _of(*kinds):
    return frozenset(t for t, k in KINDS.items() if k in kinds)


#: Same channels in and out, one channel input ``X`` and output ``Out``.
UNARY_OPS = _of("unary")
CONV_OPS = _of("conv")
CONV_TRANSPOSE_OPS = _of("conv_transpose")
NORM_OPS = _of("norm")
ELEMENTWISE_OPS = _of("binary")
FLATTEN_OPS = frozenset({"flatten_contiguous_range", "flatten2", "flatten"})
RESHAPE_OPS = _of("reshape") - FLATTEN_OPS
FC_OPS = _of("fc")
REDUCE_OPS = _of("reduction") - {"softmax"}
#: Loss and metric ops: the channels they consume are a network output, not an error.
TERMINAL_OPS = frozenset({
    "mean", "softmax_with_cross_entropy", "cross_entropy", "cross_entropy2", "accuracy", "top_k", "top_k_v2",
    "arg_max", "argmax", "sigmoid_cross_entropy_with_logits", "square_error_cost", "mse_loss", "huber_loss",
    "smooth_l1_loss", "bce_loss", "nll_loss", "kldiv_loss", "log_loss", "fetch", "fetch_v2",
    "yolov3_loss", "yolo_box",
})
#: Ops that only read a tensor's shape: no channel coupling.
SHAPE_READERS = frozenset({"shape", "size"})
SUPPORTED_OPS = frozenset(KINDS) | TERMINAL_OPS | SHAPE_READERS


def is_forward(op):
    """True for forward (and loss) ops; False for backward, optimizer, LR-schedule ops."""
    if op.type.endswith("_grad"):
        return False
    role = int(op.attr("op_role")) if op.has_attr("op_role") else 0
    return role & _NOT_FORWARD == 0


def forward_ops(block):
    """``[(index in block.ops, op)]`` of the forward ops of ``block``."""
    return [(i, op) for i, op in enumerate(block.ops) if is_forward(op)]


@dataclass(frozen=True)
class AttrSite:
    """An int attribute (or one entry of a list attribute) that holds a channel count.

    After pruning, the new value is ``scale * kept channels of spaces`` when
    ``spaces`` is set, else ``old * new_length / old_length`` of ``param``'s
    axis (``(name, axis)``): that covers conv ``groups`` and bias reshapes.
    """
    op_index: int
    attr: str
    position: int = None
    spaces: tuple = ()
    scale: int = 1
    param: tuple = None


def nchw(op, key):
    """True unless the op's ``key`` attribute names a layout without channels on axis 1."""
    return not op.has_attr(key) or op.attr(key) in ("NCHW", "NCDHW", "NCL", "AnyLayout", "")
