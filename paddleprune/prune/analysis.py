"""Walk a traced PIR program and build channel groups and FLOPs sites.

Every op either has a kind in :data:`PIR_KINDS` or is *unsupported*: then
every channel space flowing into it is marked unprunable with a reason naming
the op and the layer that produced the channels. Nothing is guessed. How
channels flow through each kind is in :mod:`paddleprune.prune.rules`, shared
with the legacy-Program walker; this module only reads PIR ops (operands by
position, attributes, constant operands, ``builtin.combine`` / ``builtin.split``
vectors). Layers with weights (conv, transposed conv, matmul) and the channel
shuffle's transpose are read and ruled here.
"""
import logging
from dataclasses import dataclass

from paddleprune.prune import rules
from paddleprune.prune.graph import constant_value, defining_op, value_shape
from paddleprune.prune.groups import Layout, SpaceSet
from paddleprune.prune.rules import OpRead

logger = logging.getLogger(__name__)


def _kinds(kind, names, inplace=False):
    out = {n: kind for n in names}
    if inplace:
        out.update({n + "_": kind for n in names})
    return out


#: PIR op name (without ``pd_op.``) -> kind. Adding an op is one entry here.
PIR_KINDS = {
    **_kinds("unary", ["relu", "relu6", "leaky_relu", "hardswish", "hardsigmoid", "sigmoid", "swish", "silu",
                       "gelu", "tanh", "elu", "selu", "mish", "softplus", "softsign", "logsigmoid", "hardtanh",
                       "celu", "square", "sqrt", "abs", "exp", "dropout", "scale", "cast", "assign", "clip",
                       "pool2d", "max_pool2d_with_index", "nearest_interp", "bilinear_interp", "bicubic_interp",
                       "pad3d", "prelu"], inplace=True),
    **_kinds("binary", ["add", "subtract", "multiply", "divide", "maximum", "minimum"], inplace=True),
    **_kinds("norm", ["batch_norm", "sync_batch_norm", "instance_norm"], inplace=True),
    **_kinds("reshape", ["reshape", "squeeze", "unsqueeze", "flatten"], inplace=True),
    **_kinds("reduction", ["mean", "sum", "max", "min", "softmax"]),
    **_kinds("split", ["split", "split_with_num"]),
    **_kinds("slice", ["slice", "strided_slice"]),
    **_kinds("concat", ["concat"]),
    **_kinds("conv", ["conv2d", "depthwise_conv2d"]),
    **_kinds("conv_transpose", ["conv2d_transpose"]),
    **_kinds("matmul", ["matmul"]),
}
_IGNORED = {"builtin.parameter", "pd_op.full", "pd_op.full_int_array", "pd_op.shape", "pd_op.shape64",
            "pd_op.data", "builtin.combine"}
_OUTPUT_OPS = {"builtin.shadow_output", "pd_op.fetch"}
_CHANNELS_FIRST = ("NCHW", "NCDHW", "NCL", "AnyLayout", "")


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
        self.grouped = {}       # value id -> (Layout, groups, transposed): axis 1 split in two by a reshape
        self.pieces = {}        # vector value id -> [Layout] of a channel split's parts
        self.batch = traced.inputs[0][0] if traced.inputs and traced.inputs[0] else 1
        for op in traced.ops:
            self._visit(op)
        self._mark_outputs()
        self.groups = self.sets.groups()

    # -- helpers -----------------------------------------------------------------
    def _describe(self, space):
        prod = self.sets.spaces[self.sets.base(space)[0]].producer
        if prod:
            return prod[0].rpartition(".")[0] or prod[0]
        return "the network input"

    def _new_space(self, size, producer=None, reason=None):
        return self.sets.new(size, producer=producer, reason=reason)

    def _segments(self, layout):
        return self.sets.segments(layout.spaces)

    def _elements(self, layout):
        return self.sets.elements(layout)

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

    @staticmethod
    def _shape(value):
        return value_shape(value)

    @staticmethod
    def _key(value):
        return value.id

    def _fresh(self, op, reason):
        for r in op.results():
            shape = value_shape(r)
            if (shape is not None and len(shape) >= 2 and shape[1] > 0 and r.id not in self.layout
                    and r.id not in self.param_src):
                self._set(r, Layout((self._new_space(shape[1], reason=reason),)))

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
        if name == "builtin.split" and op.operand_source(0).id in self.pieces:
            for r, lay in zip(op.results(), self.pieces[op.operand_source(0).id]):
                self._set(r, lay)
            return
        grouped = [self.grouped[v.id] for v in op.operands_source() if v.initialized() and v.id in self.grouped]
        if grouped and not (short in ("transpose", "reshape", "reshape_") and len(op.operands_source()) <= 2):
            for lay, _, _ in grouped:
                for s in lay.spaces:
                    self.sets.mark(s, f"unsupported op {name} consumes channels split into groups "
                                      f"(output of {self._describe(s)})")
            return self._untraced_results(op)
        if grouped:
            return self._grouped_op(op, short, grouped[0])
        if not self._has_channel_input(op):
            self._params_only(op, short)
            self._untraced_results(op)
            return
        kind = PIR_KINDS.get(short) if name.startswith("pd_op.") else None
        if kind is None:
            return self._unsupported(op)
        fmt = op.attrs().get("data_format", op.attrs().get("data_layout", "NCHW"))
        if fmt not in _CHANNELS_FIRST:
            return self._unsupported(op, "only NCHW inputs are understood")
        getattr(self, f"_{kind}")(op)

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
        self._fresh(op, f"produced by {op.name()}, whose channels are not traced")

    def _params_only(self, op, short):
        """Ops on parameters only: follow reshapes of a parameter (conv / linear biases)."""
        if PIR_KINDS.get(short) == "reshape" or short in ("cast", "assign"):
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
        cin, cout = value_shape(x)[1], wshape[0]
        if groups == 1:
            for s, off, sc in self._elements(lay):
                self.sets.attach(s, weight, 1, off, sc)
            space = self._new_space(cout, producer=(weight, 0))
            self.sets.attach(space, weight, 0)
            self._set(out, Layout((space,)))
        elif groups == cin and cout == cin:
            for s, off, sc in self._elements(lay):
                self.sets.attach(s, weight, 0, off, sc)
            self._set(out, lay)
        elif lay.scale != 1 or any(self.sets.spaces[s].view_of is not None or self.sets.reps[s] > 1
                                   for s in lay.spaces):
            self._unsupported(op, f"grouped conv (groups={groups}) over shuffled or split channels")
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
        for s, off, sc in self._elements(lay):
            self.sets.attach(s, weight, in_axis, off, sc)
        space = self._new_space(yshape[out_axis], producer=(weight, out_axis))
        self.sets.attach(space, weight, out_axis)
        self._set(op.result(0), Layout((space,)))

    # -- readers: PIR ops -> rules -------------------------------------------------
    def _param_operands(self, op):
        return [(f"operand {i}", v) for i, v in enumerate(op.operands_source()[1:], start=1)
                if v.initialized() and self._param(v) is not None]

    def _norm(self, op):
        params = self._param_operands(op)
        scale = next((self._param(v)[0] for _, v in params if self._param(v)[0].endswith(".weight")), None)
        rules.RULES["norm"](self, OpRead(op, op.name(), x=op.operand_source(0), out=op.result(0),
                                         params=tuple(params), attrs={"scale": scale}))

    def _binary(self, op):
        """Operands broadcast from the right: the output's channel axis is axis ``1 - (R - r)``
        of an operand of rank ``r``."""
        a, b, out = op.operand_source(0), op.operand_source(1), op.result(0)
        rank = len(value_shape(out) or [])
        dims = tuple(1 - (rank - len(value_shape(v) or [])) for v in (a, b))
        rules.RULES["binary"](self, OpRead(op, op.name(), out=out, inputs=(a, b), attrs={"dims": dims}))

    def _unary(self, op):
        x = op.operand_source(0)
        rest = [v for v in op.operands_source()[1:] if v.initialized()]
        rules.RULES["unary"](self, OpRead(
            op, op.name(), x=x, out=op.result(0), others=tuple(v for v in rest if self._lay(v) is not None),
            params=tuple(("Alpha", v) for v in rest if self._param(v) is not None)))

    def _concat(self, op):
        parts_op = defining_op(op.operand_source(0))
        parts = tuple(parts_op.operands_source()) if parts_op is not None else ()
        rules.RULES["concat"](self, OpRead(op, op.name(), out=op.result(0), inputs=parts,
                                           attrs={"axis": constant_value(op.operand_source(1))}))

    def _reshape(self, op):
        target = constant_value(op.operand_source(1)) if op.name().startswith("pd_op.reshape") else None
        fixed = target if target is not None and len(target) > 1 and int(target[1]) not in (-1, 0) else None
        rules.RULES["reshape"](self, OpRead(op, op.name(), x=op.operand_source(0), out=op.result(0),
                                            attrs={"fixed": fixed}))

    def _reduction(self, op):
        axes = None
        if op.name() in ("pd_op.softmax", "pd_op.softmax_"):
            axes = [op.attrs().get("axis", -1)]
        elif len(op.operands_source()) > 1:
            axes = constant_value(op.operand_source(1))
            axes = [axes] if isinstance(axes, (int, float)) else axes
        rules.RULES["reduction"](self, OpRead(op, op.name(), x=op.operand_source(0), out=op.result(0),
                                              attrs={"axes": axes}))

    def _split(self, op):
        x = op.operand_source(0)
        ins = value_shape(x)
        if op.name().endswith("split_with_num"):
            num = int(op.attrs().get("num", 0))
            axis = constant_value(op.operand_source(1))
            sections = [ins[int(axis) % len(ins)] // num] * num if axis is not None and num > 0 else None
        else:
            sections, axis = constant_value(op.operand_source(1)), constant_value(op.operand_source(2))
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        parts = rules.RULES["split"](self, OpRead(op, op.name(), x=x, attrs={"axis": axis, "sections": sections}))
        if parts is not None:
            self.pieces[op.result(0).id] = parts

    def _grouped_op(self, op, short, grouped):
        """Ops on channels split into groups by a reshape ``[N, C, H, W] -> [N, G, C/G, H, W]``:
        a transpose of the two channel axes, and the reshape back (a channel shuffle when transposed)."""
        lay, groups, transposed = grouped
        x, out = op.operand_source(0), op.result(0)
        ins, outs = value_shape(x), value_shape(out)
        if short == "transpose":
            perm = list(op.attrs().get("perm", []))
            if perm == [0, 1, 2, 3, 4]:
                self.grouped[out.id] = grouped
            elif perm == [0, 2, 1, 3, 4]:
                self.grouped[out.id] = (lay, groups, not transposed)
            else:
                return self._unsupported_grouped(op, lay, f"transpose {perm} of channels split into groups")
            return
        if outs is None or len(outs) != 4 or outs[1] != ins[1] * ins[2] or outs[2:] != ins[3:]:
            return self._unsupported_grouped(op, lay, f"reshapes channels split into groups ({ins} -> {outs})")
        new = rules.unshuffle(self, OpRead(op, op.name(), x=x, out=out), grouped)
        if new is None:
            return self._unsupported_grouped(op, lay, f"a channel shuffle into {groups} groups that cuts "
                                                       "channel units")
        self._set(out, new)

    def _unsupported_grouped(self, op, lay, why):
        for s in lay.spaces:
            self.sets.mark(s, f"unsupported op {op.name()} ({why}) consumes the output of {self._describe(s)}")
        self._untraced_results(op)

    def _slice(self, op):
        """``slice`` / ``strided_slice`` (``x[:, :, 1:]``, ``x[..., ::2]``) only along spatial axes
        (2 and up) keep every channel in place; slicing the batch or channel axis is unsupported."""
        x = op.operand_source(0)
        rank = len(value_shape(x) or [])
        axes = [int(a) % rank for a in op.attrs().get("axes", [])] if rank >= 2 else []
        if not axes or min(axes) < 2:
            return self._unsupported(op, f"slices axes {list(op.attrs().get('axes', []))}, not only spatial ones")
        self._set(op.result(0), self._lay(x))

    def _mark_outputs(self):
        for op in self.traced.ops:
            for r in op.results():
                if r.id in self.grouped and not list(r.all_used_ops()):
                    for s in self.grouped[r.id][0].spaces:
                        self.sets.mark(s, "network output")
                lay = self.layout.get(r.id)
                if lay is not None and not list(r.all_used_ops()):
                    for s in lay.spaces:
                        self.sets.mark(s, "network output")
