"""Walk a traced PIR program and build channel groups and FLOPs sites.

Every op either has a rule here or is *unsupported*: then every channel
space flowing into it is marked unprunable with a reason naming the op and
the layer that produced the channels. Nothing is guessed.
"""
import logging
import math
from dataclasses import dataclass

from paddleprune.prune.graph import constant_value, defining_op, value_shape
from paddleprune.prune.groups import SpaceSet

logger = logging.getLogger(__name__)

_UNARY = {
    "relu", "relu6", "leaky_relu", "hardswish", "hardsigmoid", "sigmoid", "swish", "silu", "gelu",
    "tanh", "elu", "selu", "mish", "softplus", "softsign", "logsigmoid", "hardtanh", "celu", "square",
    "sqrt", "abs", "exp", "dropout", "scale", "cast", "assign", "clip", "pool2d", "max_pool2d_with_index",
    "nearest_interp", "bilinear_interp", "bicubic_interp", "pad3d", "prelu", "relu_", "sigmoid_",
    "tanh_", "scale_", "clip_", "leaky_relu_", "hardswish_", "exp_",
}
_BINARY = {"add", "add_", "subtract", "subtract_", "multiply", "multiply_", "divide", "divide_",
           "maximum", "minimum"}
_NORMS = {"batch_norm", "batch_norm_", "sync_batch_norm_", "instance_norm"}
_RESHAPES = {"reshape", "reshape_", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_", "flatten", "flatten_"}
_IGNORED = {"builtin.parameter", "pd_op.full", "pd_op.full_int_array", "pd_op.shape", "pd_op.shape64",
            "pd_op.data", "builtin.combine"}
_OUTPUT_OPS = {"builtin.shadow_output", "pd_op.fetch"}


@dataclass(frozen=True)
class Layout:
    """Channel layout of a tensor's axis 1: whole spaces side by side; each
    channel covers ``scale`` consecutive elements (``H*W`` after a flatten)."""
    spaces: tuple
    scale: int = 1


@dataclass(frozen=True)
class FlopSite:
    """A weight whose multiply-accumulates are ``numel(weight) * positions``."""
    param: str
    positions: int
    op: str


class Analysis:
    """Channel groups and FLOPs sites of a traced model."""

    def __init__(self, traced):
        self.traced = traced
        self.sets = SpaceSet()
        self.layout = {}        # value id -> Layout
        self.param_src = {}     # value id -> (structural name, axis of the param seen as this value's dims, rank)
        self.flop_sites = []
        self.batch = traced.inputs[0][0] if traced.inputs and traced.inputs[0] else 1
        for op in traced.ops:
            self._visit(op)
        self._mark_outputs()
        self.groups = self.sets.groups()

    # -- helpers -----------------------------------------------------------------
    def _describe(self, space):
        prod = self.sets.spaces[space].producer
        if prod:
            return prod[0].rpartition(".")[0] or prod[0]
        return "the network input"

    def _new_space(self, size, producer=None, reason=None):
        return self.sets.new(size, producer=producer, reason=reason)

    def _channels(self, layout):
        return self.sets.width(layout.spaces)

    def _segments(self, layout):
        return self.sets.segments(layout.spaces)

    def _lay(self, value):
        return self.layout.get(value.id) if value.initialized() else None

    def _set(self, value, layout):
        shape = value_shape(value)
        if layout is not None and shape is not None and len(shape) >= 2:
            self.layout[value.id] = layout

    def _unsupported(self, op, why=None):
        name = op.name()
        values = []
        for v in op.operands_source():
            src = defining_op(v)
            values.extend(src.operands_source() if src is not None and src.name() == "builtin.combine" else [v])
        for v in values:
            lay = self._lay(v)
            if lay is None:
                continue
            for s in lay.spaces:
                text = f"unsupported op {name}" + (f" ({why})" if why else "") + \
                       f" consumes the output of {self._describe(s)}"
                self.sets.mark(s, text)
        for r in op.results():
            shape = value_shape(r)
            if shape is not None and len(shape) >= 2 and shape[1] > 0:
                self._set(r, Layout((self._new_space(shape[1], reason=f"produced by unsupported op {name}"),)))

    def _param(self, value):
        return self.param_src.get(value.id) if value.initialized() else None

    # -- the walk ---------------------------------------------------------------
    def _visit(self, op):
        name = op.name()
        short = name.split(".", 1)[1] if "." in name else name
        if name == "builtin.parameter":
            struct = self.traced.struct_of.get(op.attrs().get("parameter_name"))
            if struct is not None:
                rank = len(value_shape(op.result(0)) or [])
                self.param_src[op.result(0).id] = (struct, tuple(range(rank)))
            return
        if name == "pd_op.data":
            shape = value_shape(op.result(0))
            if shape and len(shape) >= 2:
                self._set(op.result(0), Layout((self._new_space(shape[1], reason="network input"),)))
            return
        if name in _OUTPUT_OPS:
            for v in op.operands_source():
                lay = self._lay(v)
                for s in (lay.spaces if lay else ()):
                    self.sets.mark(s, "network output")
            return
        if name in _IGNORED:
            return
        if not self._has_channel_input(op):
            self._params_only(op, short)
            self._untraced_results(op)
            return
        if short in ("conv2d", "depthwise_conv2d"):
            self._conv(op)
        elif short == "conv2d_transpose":
            self._conv_transpose(op)
        elif short in ("matmul",):
            self._matmul(op)
        elif short in _NORMS:
            self._norm(op)
        elif short in _BINARY:
            self._binary(op)
        elif short == "concat":
            self._concat(op)
        elif short in _RESHAPES:
            self._reshape(op)
        elif short in ("slice", "strided_slice"):
            self._slice(op)
        elif short in ("mean", "sum", "max", "min") and not self._reduces_channels(op):
            self._pass(op)
        elif short in _UNARY:
            self._unary(op)
        else:
            self._unsupported(op)

    def _has_channel_input(self, op):
        for v in op.operands_source():
            if self._lay(v) is not None:
                return True
            src = defining_op(v)
            if src is not None and src.name() == "builtin.combine" and any(
                    self._lay(p) is not None for p in src.operands_source()):
                return True
        return False

    def _untraced_results(self, op):
        """Results of an op with no traced channel input (a vector unpack, a created
        tensor) get channel spaces of their own, fixed, so consumers still work."""
        for r in op.results():
            shape = value_shape(r)
            if (shape is not None and len(shape) >= 2 and shape[1] > 0 and r.id not in self.layout
                    and r.id not in self.param_src):
                self._set(r, Layout((self._new_space(shape[1], reason=f"produced by {op.name()}, "
                                                                       "whose channels are not traced"),)))

    def _params_only(self, op, short):
        """Ops on parameters only: follow reshapes of a parameter (conv / linear biases)."""
        if short in _RESHAPES or short in ("cast", "assign"):
            src = self._param(op.operand_source(0))
            if src is not None:
                in_shape = value_shape(op.operand_source(0)) or []
                out_shape = value_shape(op.result(0)) or []
                nontrivial = [d for d in in_shape if d != 1]
                if len(nontrivial) <= 1:
                    # a 1-D-like parameter reshaped: remember which output axis holds its elements
                    axes = [i for i, d in enumerate(out_shape) if d != 1]
                    self.param_src[op.result(0).id] = (src[0], tuple(axes))

    def _conv(self, op):
        x, w = op.operand_source(0), op.operand_source(1)
        wp = self._param(w)
        if wp is None:
            return self._unsupported(op, "its filter is not a parameter")
        weight = wp[0]
        lay = self._lay(x)
        groups = int(op.attrs().get("groups", 1))
        if op.attrs().get("data_format", "NCHW") != "NCHW":
            return self._unsupported(op, "data_format must be NCHW")
        out = op.result(0)
        oshape = value_shape(out)
        wshape = value_shape(w)
        self.flop_sites.append(FlopSite(weight, oshape[2] * oshape[3], op.name()))
        cin, cout = self._channels(lay), wshape[0]
        if lay.scale != 1:
            return self._unsupported(op)
        if groups == 1:
            for s, off in self._segments(lay):
                self.sets.attach(s, weight, 1, off, 1)
            space = self._new_space(cout, producer=(weight, 0))
            self.sets.attach(space, weight, 0)
            self._set(out, Layout((space,)))
        elif groups == cin and cout == cin:
            for s, off in self._segments(lay):
                self.sets.attach(s, weight, 0, off, 1)
            self._set(out, lay)
        elif len(lay.spaces) == 1:
            space = self._new_space(cout)
            self.sets.attach(space, weight, 0)
            self.sets.tie(lay.spaces[0], space, groups=groups)
            self._set(out, Layout((space,)))
        else:
            self._unsupported(op, f"grouped conv (groups={groups}) over concatenated inputs")

    def _conv_transpose(self, op):
        x, w = op.operand_source(0), op.operand_source(1)
        wp = self._param(w)
        lay = self._lay(x)
        groups = int(op.attrs().get("groups", 1))
        if wp is None or groups != 1 or lay.scale != 1:
            return self._unsupported(op, "only plain conv2d_transpose with a parameter filter")
        weight = wp[0]
        ishape = value_shape(x)
        self.flop_sites.append(FlopSite(weight, ishape[2] * ishape[3], op.name()))
        for s, off in self._segments(lay):
            self.sets.attach(s, weight, 0, off, 1)
        space = self._new_space(value_shape(w)[1], producer=(weight, 1))
        self.sets.attach(space, weight, 1)
        self._set(op.result(0), Layout((space,)))

    def _matmul(self, op):
        x, y = op.operand_source(0), op.operand_source(1)
        lay, yp = self._lay(x), self._param(y)
        xshape, yshape = value_shape(x), value_shape(y)
        attrs = op.attrs()
        if yp is None or len(xshape) != 2 or len(yshape) != 2 or attrs.get("transpose_x"):
            return self._unsupported(op, "only input[N, F] @ weight[F, O] is understood")
        in_axis, out_axis = (1, 0) if attrs.get("transpose_y") else (0, 1)
        weight = yp[0]
        self.flop_sites.append(FlopSite(weight, max(1, xshape[0] // max(1, self.batch)), op.name()))
        for s, off in self._segments(lay):
            self.sets.attach(s, weight, in_axis, off * lay.scale, lay.scale)
        space = self._new_space(yshape[out_axis], producer=(weight, out_axis))
        self.sets.attach(space, weight, out_axis)
        self._set(op.result(0), Layout((space,)))

    def _norm(self, op):
        x = op.operand_source(0)
        lay = self._lay(x)
        if lay.scale != 1:
            return self._unsupported(op)
        c = self._channels(lay)
        for i, v in enumerate(op.operands_source()[1:], start=1):
            p = self._param(v)
            if p is None:
                continue
            if value_shape(v) != [c]:
                return self._unsupported(op, "per-channel parameters of unexpected shape")
            for s, off in self._segments(lay):
                self.sets.attach(s, p[0], 0, off, 1)
        scale = self._norm_scale(op)
        if scale is not None:
            for s, off in self._segments(lay):
                sp = self.sets.spaces[s]
                if sp.producer and sp.norm_scale is None:
                    sp.norm_scale = scale
        self._set(op.result(0), lay)

    def _norm_scale(self, op):
        """The scale (gamma) parameter of a norm op: owned by a norm layer as ``.weight``."""
        for v in op.operands_source()[1:]:
            p = self._param(v)
            if p is not None and p[0].endswith(".weight"):
                return p[0]
        return None

    def _binary(self, op):
        a, b = op.operand_source(0), op.operand_source(1)
        la, lb = self._lay(a), self._lay(b)
        out = op.result(0)
        oshape = value_shape(out)
        if la is not None and lb is not None:
            sa, sb = value_shape(a), value_shape(b)
            if len(sa) != len(sb):
                return self._unsupported(op, "operands of different rank")
            if sa[1] == 1 or sb[1] == 1:
                self._set(out, la if sa[1] != 1 else lb)
                return
            if la.scale != lb.scale or not self.sets.tie_side_by_side(la.spaces, lb.spaces):
                return self._unsupported(op, "joins tensors whose channels are concatenated differently")
            self._set(out, la)
            return
        lay, other = (la, b) if la is not None else (lb, a)
        oshape_other = value_shape(other) or []
        rank = len(oshape)
        idx = 1 - (rank - len(oshape_other))        # the channel axis in the other operand
        cdim = oshape_other[idx] if 0 <= idx < len(oshape_other) else 1
        if cdim == 1:
            self._set(out, lay)                      # broadcast over channels: no coupling
            return
        src = self._param(other)
        if src is None or lay.scale != 1:
            return self._unsupported(op, "a per-channel operand that is not a parameter")
        param, axes = src
        if idx not in axes or any(d != 1 for i, d in enumerate(oshape_other) if i != idx):
            return self._unsupported(op, "a parameter operand that is not per-channel")
        axis = axes.index(idx) if len(axes) > 1 else 0
        if len(axes) > 1 and any(d != 1 for i, d in enumerate(value_shape(other)) if i != idx):
            return self._unsupported(op, "a parameter operand that is not per-channel")
        for s, off in self._segments(lay):
            self.sets.attach(s, param, axis, off, 1)
        self._set(out, lay)

    def _concat(self, op):
        parts_op = defining_op(op.operand_source(0))
        axis = constant_value(op.operand_source(1))
        parts = list(parts_op.operands_source()) if parts_op is not None else []
        lays = [self._lay(v) for v in parts]
        rank = len(value_shape(op.result(0)) or [])
        if axis is None or None in lays or len({lay.scale for lay in lays}) != 1:
            return self._unsupported(op, "inputs without a channel layout or a computed axis")
        axis = int(axis) % rank
        if axis == 1:
            spaces = tuple(s for lay in lays for s in lay.spaces)
            return self._set(op.result(0), Layout(spaces, lays[0].scale))
        first = lays[0]
        for lay in lays[1:]:
            if not self.sets.tie_side_by_side(first.spaces, lay.spaces):
                return self._unsupported(op, "joins tensors whose channels are concatenated differently")
        self._set(op.result(0), first)

    def _reshape(self, op):
        x = op.operand_source(0)
        lay = self._lay(x)
        ins, outs = value_shape(x), value_shape(op.result(0))
        if ins is None or outs is None or len(outs) < 2 or outs[0] != ins[0]:
            return self._unsupported(op, "changes the batch or channel axis")
        target = constant_value(op.operand_source(1)) if op.name().startswith("pd_op.reshape") else None
        if target is not None and len(target) > 1 and int(target[1]) not in (-1, 0):
            return self._unsupported(op, f"reshape to the fixed shape {list(target)}")
        if outs[1] == ins[1] and math.prod(ins[2:]) == math.prod(outs[2:]):
            return self._set(op.result(0), lay)
        if len(outs) == 2 and outs[1] == math.prod(ins[1:]):
            return self._set(op.result(0), Layout(lay.spaces, lay.scale * math.prod(ins[2:])))
        self._unsupported(op, f"reshapes channels ({ins} -> {outs})")

    def _slice(self, op):
        """``slice`` / ``strided_slice`` (``x[:, :, 1:]``, ``x[..., ::2]``) only along spatial axes
        (2 and up) keep every channel in place; slicing the batch or channel axis is unsupported."""
        x = op.operand_source(0)
        rank = len(value_shape(x) or [])
        axes = [int(a) % rank for a in op.attrs().get("axes", [])] if rank >= 2 else []
        if not axes or min(axes) < 2:
            return self._unsupported(op, f"slices axes {list(op.attrs().get('axes', []))}, not only spatial ones")
        self._set(op.result(0), self._lay(x))

    def _reduces_channels(self, op):
        ins, outs = value_shape(op.operand_source(0)), value_shape(op.result(0))
        return not (ins and outs and len(outs) >= 2 and outs[1] == ins[1] and len(ins) >= 2)

    def _unary(self, op):
        x = op.operand_source(0)
        lay = self._lay(x)
        ins, outs = value_shape(x), value_shape(op.result(0))
        if lay is None or outs is None or len(outs) < 2 or outs[1] != ins[1]:
            return self._unsupported(op, "changes the channel count")
        others = [v for v in op.operands_source()[1:] if v.initialized() and self._lay(v) is not None]
        if others:
            return self._unsupported(op)
        for v in op.operands_source()[1:]:        # prelu: a per-channel parameter
            p = self._param(v) if v.initialized() else None
            if p is not None and (value_shape(v) or [1])[0] == ins[1] and ins[1] > 1:
                for s, off in self._segments(lay):
                    self.sets.attach(s, p[0], 0, off, 1)
        self._set(op.result(0), lay)

    def _pass(self, op):
        self._set(op.result(0), self._lay(op.operand_source(0)))

    def _mark_outputs(self):
        for op in self.traced.ops:
            for r in op.results():
                lay = self.layout.get(r.id)
                if lay is not None and not list(r.all_used_ops()):
                    for s in lay.spaces:
                        self.sets.mark(s, "network output")
