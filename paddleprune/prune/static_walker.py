"""Channel groups of a legacy-IR (ProgramDesc) ``paddle.base.framework.Program``.

The static counterpart of :mod:`paddleprune.prune.analysis`: the same channel
spaces, layouts and :class:`~paddleprune.prune.groups.SpaceSet`, walked over
the forward ops of a Program's global block (backward, optimizer and
learning-rate ops are skipped; the pruner updates them separately). Every op
either has a rule here or is *unsupported*: the channels flowing into it are
marked unprunable with a reason naming the op. Loss and metric ops (and any
tensor no forward op consumes) end a group as "network output", which keeps
the class count of a classifier intact.

Besides the groups, the walk records the op attributes that hold channel
counts (:class:`AttrSite`): ``groups`` of grouped/depthwise convs and the
``shape`` of ``reshape2`` ops (a conv bias reshaped to ``[1, C, 1, 1]``, a
flatten written as ``reshape2([-1, C*H*W])``).
"""
import logging
import math

from paddleprune.prune.analysis import Layout
from paddleprune.prune.groups import Member, SpaceSet
from paddleprune.prune.static_ops import (CONV_OPS, CONV_TRANSPOSE_OPS, ELEMENTWISE_OPS, FC_OPS, FLATTEN_OPS,
                                          NORM_OPS, REDUCE_OPS, RESHAPE_OPS, SHAPE_READERS, TERMINAL_OPS,
                                          UNARY_OPS, AttrSite, forward_ops, nchw)

logger = logging.getLogger(__name__)

__all__ = ["StaticAnalysis"]


class StaticAnalysis:
    """Walk the forward ops of ``program``'s global block.

    Attributes
    ----------
    groups : list of ChannelGroup
        Channel groups; member names are the Program's parameter names.
    layout : dict
        ``{var name: Layout}`` of every activation with a traced channel axis 1.
    attr_sites : list of AttrSite
    params : dict
        ``{name: Parameter}`` of the global block.
    """

    def __init__(self, program):
        self.program = program
        self.block = program.global_block()
        self.params = {p.name: p for p in self.block.all_parameters()}
        self.sets = SpaceSet()
        self.layout = {}
        self.param_src = {name: (name, tuple(range(len(p.shape)))) for name, p in self.params.items()}
        self.attr_sites = []
        self.ops = forward_ops(self.block)
        self.produced = {n for _, op in self.ops for n in op.output_arg_names}
        for index, op in self.ops:
            self._visit(index, op)
        self._mark_outputs()
        self.groups = self.sets.groups()
        self._space_group = self._map_spaces()

    # -- helpers -----------------------------------------------------------------
    def shape(self, name):
        var = self.block._find_var_recursive(name)
        return None if var is None else [int(d) for d in var.shape]

    def _lay(self, name):
        lay = self.layout.get(name)
        if lay is not None or name in self.produced or name in self.param_src:
            return lay
        var = self.block._find_var_recursive(name)
        shape = self.shape(name)
        if var is None or var.persistable or shape is None or len(shape) < 2 or shape[1] <= 0:
            return None
        lay = Layout((self.sets.new(shape[1], reason="network input"),))
        self.layout[name] = lay
        return lay

    def _set(self, name, layout):
        shape = self.shape(name)
        if layout is not None and shape is not None and len(shape) >= 2:
            self.layout[name] = layout

    def _param(self, name):
        return self.param_src.get(name)

    def channels(self, layout):
        return self.sets.width(layout.spaces)

    def _segments(self, layout):
        return self.sets.segments(layout.spaces)

    def _describe(self, space):
        prod = self.sets.spaces[space].producer
        return prod[0] if prod else "the network input"

    def _mark(self, names, reason):
        for name in names:
            lay = self._lay(name)
            for s in (lay.spaces if lay else ()):
                self.sets.mark(s, reason.replace("{src}", self._describe(s)))

    def _unsupported(self, op, why=None):
        text = f"unsupported op {op.type}" + (f" ({why})" if why else "") + " consumes the output of {src}"
        self._mark(op.input_arg_names, text)
        self._fresh_outputs(op, f"produced by unsupported op {op.type}")

    def _fresh_outputs(self, op, reason):
        for name in op.output_arg_names:
            shape = self.shape(name)
            if name not in self.layout and name not in self.param_src and shape is not None \
                    and len(shape) >= 2 and shape[1] > 0:
                self.layout[name] = Layout((self.sets.new(shape[1], reason=reason),))

    @staticmethod
    def _one(op, slot):
        names = op.input(slot) if slot in op.input_names else []
        return names[0] if names else None

    @staticmethod
    def _out(op, slot="Out"):
        names = op.output(slot) if slot in op.output_names else []
        return names[0] if names else None

    # -- the walk ---------------------------------------------------------------
    def _visit(self, index, op):
        t = op.type
        if t in ("feed",):
            return
        if t in TERMINAL_OPS:
            return self._mark(op.input_arg_names, f"network output (consumed by {t})")
        if t in SHAPE_READERS:
            return
        if not any(self._lay(n) is not None for n in op.input_arg_names):
            self._params_only(index, op)
            return self._fresh_outputs(op, f"produced by {t}, whose channels are not traced")
        if t in CONV_OPS:
            self._conv(index, op)
        elif t in CONV_TRANSPOSE_OPS:
            self._conv_transpose(op)
        elif t in NORM_OPS:
            self._norm(op)
        elif t in ELEMENTWISE_OPS:
            self._binary(op)
        elif t == "sum":
            self._sum(op)
        elif t == "concat":
            self._concat(op)
        elif t in FLATTEN_OPS:
            self._flatten(op)
        elif t in RESHAPE_OPS:
            self._reshape(index, op)
        elif t in FC_OPS:
            self._fc(op)
        elif t in REDUCE_OPS or t == "softmax":
            self._reduce_like(op)
        elif t in UNARY_OPS:
            self._unary(op)
        else:
            self._unsupported(op)

    def _params_only(self, index, op):
        """Reshapes/casts of a parameter (conv and linear biases): follow the element axis."""
        if op.type not in RESHAPE_OPS | {"cast", "assign"}:
            return
        x, out = self._one(op, "X"), self._out(op)
        src = self._param(x) if x else None
        if src is None or out is None:
            return
        in_shape, out_shape = self.shape(x) or [], self.shape(out) or []
        if len([d for d in in_shape if d != 1]) > 1:
            return
        axes = tuple(i for i, d in enumerate(out_shape) if d != 1)
        self.param_src[out] = (src[0], axes)
        if op.type in ("reshape2", "reshape") and op.has_attr("shape") and len(axes) == 1:
            pos = axes[0]
            target = list(op.attr("shape"))
            if pos < len(target) and target[pos] > 0:
                self.attr_sites.append(AttrSite(index, "shape", pos, param=(src[0], 0)))

    def _conv(self, index, op):
        x, w, out = self._one(op, "Input"), self._one(op, "Filter"), self._out(op, "Output")
        src = self._param(w)
        lay = self._lay(x)
        if src is None or len(src[1]) != 4:
            return self._unsupported(op, "its filter is not a parameter")
        if not nchw(op, "data_format") or lay.scale != 1:
            return self._unsupported(op, "only NCHW inputs are understood")
        weight = src[0]
        groups = int(op.attr("groups")) if op.has_attr("groups") else 1
        cin, cout = self.channels(lay), self.shape(w)[0]
        if groups == 1:
            for s, off in self._segments(lay):
                self.sets.attach(s, weight, 1, off, 1)
            space = self.sets.new(cout, producer=(weight, 0))
            self.sets.attach(space, weight, 0)
            self._set(out, Layout((space,)))
            return
        if groups == cin and cout == cin:
            for s, off in self._segments(lay):
                self.sets.attach(s, weight, 0, off, 1)
            self._set(out, lay)
        elif len(lay.spaces) == 1:
            space = self.sets.new(cout)
            self.sets.attach(space, weight, 0)
            self.sets.tie(lay.spaces[0], space, groups=groups)
            self._set(out, Layout((space,)))
        else:
            return self._unsupported(op, f"grouped conv (groups={groups}) over concatenated inputs")
        self.attr_sites.append(AttrSite(index, "groups", param=(weight, 0)))

    def _conv_transpose(self, op):
        x, w, out = self._one(op, "Input"), self._one(op, "Filter"), self._out(op, "Output")
        src = self._param(w)
        lay = self._lay(x)
        groups = int(op.attr("groups")) if op.has_attr("groups") else 1
        if src is None or groups != 1 or lay.scale != 1 or not nchw(op, "data_format"):
            return self._unsupported(op, "only plain NCHW conv2d_transpose with a parameter filter")
        weight = src[0]
        for s, off in self._segments(lay):
            self.sets.attach(s, weight, 0, off, 1)
        space = self.sets.new(self.shape(w)[1], producer=(weight, 1))
        self.sets.attach(space, weight, 1)
        self._set(out, Layout((space,)))

    def _norm(self, op):
        x = self._one(op, "X")
        out = self._out(op, "Y") or self._out(op, "Out")
        lay = self._lay(x)
        if lay.scale != 1 or not nchw(op, "data_layout"):
            return self._unsupported(op, "only NCHW inputs are understood")
        c = self.channels(lay)
        found = []
        for slot in ("Scale", "Bias", "Mean", "Variance"):
            name = self._one(op, slot)
            if name is None:
                continue
            src = self._param(name)
            if src is None or self.shape(name) != [c]:
                return self._unsupported(op, f"its {slot} is not a per-channel parameter")
            found.append(src[0])
        for p in found:
            for s, off in self._segments(lay):
                self.sets.attach(s, p, 0, off, 1)
        scale = self._one(op, "Scale")
        if scale is not None:
            for s in lay.spaces:
                sp = self.sets.spaces[s]
                if sp.producer and sp.norm_scale is None:
                    sp.norm_scale = scale
        self._set(out, lay)

    def _binary(self, op):
        x, y, out = self._one(op, "X"), self._one(op, "Y"), self._out(op)
        lx, ly = self._lay(x), self._lay(y)
        sx, sy = self.shape(x), self.shape(y)
        axis = int(op.attr("axis")) if op.has_attr("axis") else -1
        offset = len(sx) - len(sy) if axis == -1 else axis
        if lx is not None and ly is not None:
            if offset != 0 or len(sx) != len(sy):
                return self._unsupported(op, "operands of different rank")
            if sx[1] == 1 or sy[1] == 1:
                return self._set(out, lx if sx[1] != 1 else ly)
            if lx.scale != ly.scale or not self.sets.tie_side_by_side(lx.spaces, ly.spaces):
                return self._unsupported(op, "joins tensors whose channels are concatenated differently")
            return self._set(out, lx)
        if lx is None:                         # a constant or parameter on the left: same rank only
            if len(sx) != len(sy) or sx[1] == 1:
                return self._set(out, ly) if len(sx) == len(sy) else self._unsupported(op, "broadcast on X")
            lay, other, dim = ly, x, 1
        else:
            lay, other, dim = lx, y, 1 - offset
        oshape = self.shape(other) or []
        if not 0 <= dim < len(oshape) or oshape[dim] == 1:
            return self._set(out, lay)         # broadcast over channels: no coupling
        src = self._param(other)
        if src is None or lay.scale != 1:
            return self._unsupported(op, "a per-channel operand that is not a parameter")
        param, axes = src
        if dim not in axes or any(d != 1 for i, d in enumerate(oshape) if i != dim):
            return self._unsupported(op, "a parameter operand that is not per-channel")
        for s, off in self._segments(lay):
            self.sets.attach(s, param, axes.index(dim) if len(axes) > 1 else 0, off, 1)
        self._set(out, lay)

    def _sum(self, op):
        names = op.input("X")
        lays = [self._lay(n) for n in names]
        if None in lays:
            return self._unsupported(op, "an input without a channel layout")
        first = lays[0]
        for lay in lays[1:]:
            if not self.sets.tie_side_by_side(first.spaces, lay.spaces):
                return self._unsupported(op, "joins tensors whose channels are concatenated differently")
        self._set(self._out(op), first)

    def _concat(self, op):
        names = op.input("X")
        lays = [self._lay(n) for n in names]
        out = self._out(op)
        rank = len(self.shape(out) or [])
        if self._one(op, "AxisTensor") is not None or None in lays or len({lay.scale for lay in lays}) != 1:
            return self._unsupported(op, "inputs without a channel layout or an axis given as a tensor")
        axis = int(op.attr("axis")) % rank
        if axis == 1:
            return self._set(out, Layout(tuple(s for lay in lays for s in lay.spaces), lays[0].scale))
        first = lays[0]
        for lay in lays[1:]:
            if not self.sets.tie_side_by_side(first.spaces, lay.spaces):
                return self._unsupported(op, "joins tensors whose channels are concatenated differently")
        self._set(out, first)

    def _flatten(self, op):
        x, out = self._one(op, "X"), self._out(op)
        lay, ins = self._lay(x), self.shape(x)
        if op.type == "flatten_contiguous_range":
            start, stop = int(op.attr("start_axis")), int(op.attr("stop_axis"))
        else:
            start, stop = int(op.attr("axis")), len(ins) - 1
        start, stop = start % len(ins), stop % len(ins)
        if start > 1 or stop < 1:
            return self._set(out, lay)             # the channel axis is not merged
        if start != 1 or any(d <= 0 for d in ins[2:stop + 1]):
            return self._unsupported(op, "merges the batch and channel axes or unknown spatial sizes")
        self._set(out, Layout(lay.spaces, lay.scale * math.prod(ins[2:stop + 1])))

    def _reshape(self, index, op):
        x, out = self._one(op, "X"), self._out(op)
        lay, ins, outs = self._lay(x), self.shape(x), self.shape(out)
        if any(self._one(op, slot) is not None for slot in ("Shape", "ShapeTensor")):
            return self._unsupported(op, "its target shape is a tensor")
        if outs is None or len(outs) < 2 or outs[0] != ins[0] or any(d <= 0 for d in ins[1:] + outs[1:]):
            return self._unsupported(op, f"changes the batch axis or has unknown sizes ({ins} -> {outs})")
        if outs[1] == ins[1] and math.prod(ins[2:]) == math.prod(outs[2:]):
            new = lay
        elif len(outs) == 2 and outs[1] == math.prod(ins[1:]):
            new = Layout(lay.spaces, lay.scale * math.prod(ins[2:]))
        else:
            return self._unsupported(op, f"reshapes channels ({ins} -> {outs})")
        if op.type in ("reshape2", "reshape") and op.has_attr("shape"):
            target = list(op.attr("shape"))
            if len(target) > 1 and target[1] > 0:
                self.attr_sites.append(AttrSite(index, "shape", 1, spaces=new.spaces, scale=new.scale))
        self._set(out, new)

    def _fc(self, op):
        x, y, out = self._one(op, "X"), self._one(op, "Y"), self._out(op)
        lay, src, xs, ys = self._lay(x), self._param(y), self.shape(x), self.shape(y)
        if src is None or len(src[1]) != 2 or self._lay(y) is not None:
            return self._unsupported(op, "only input @ parameter[in, out] is understood")
        if op.type == "mul":
            if int(op.attr("x_num_col_dims")) != 1 or int(op.attr("y_num_col_dims")) != 1:
                return self._unsupported(op, "x_num_col_dims and y_num_col_dims must be 1")
            scale, in_axis, out_axis = lay.scale * math.prod(xs[2:]), 0, 1
        else:
            tx = op.attr("trans_x") if op.has_attr("trans_x") else op.attr("transpose_X")
            ty = op.attr("trans_y") if op.has_attr("trans_y") else op.attr("transpose_Y")
            if len(xs) != 2 or tx:
                return self._unsupported(op, "only a 2-D input [N, F] times a parameter is understood")
            scale, (in_axis, out_axis) = lay.scale, ((1, 0) if ty else (0, 1))
        if scale * self.channels(lay) != ys[in_axis]:
            return self._unsupported(op, f"input features {scale * self.channels(lay)} != weight rows {ys[in_axis]}")
        for s, off in self._segments(lay):
            self.sets.attach(s, src[0], in_axis, off * scale, scale)
        space = self.sets.new(ys[out_axis], producer=(src[0], out_axis))
        self.sets.attach(space, src[0], out_axis)
        self._set(out, Layout((space,)))

    def _reduce_like(self, op):
        """reduce_* / softmax: channels pass when the reduced axes exclude axis 1."""
        x, out = self._one(op, "X"), self._out(op)
        rank = len(self.shape(x))
        if op.type == "softmax":
            axes = [int(op.attr("axis"))]
        elif op.has_attr("reduce_all") and op.attr("reduce_all"):
            axes = list(range(rank))
        else:
            axes = list(op.attr("dim")) if op.has_attr("dim") else list(range(rank))
        axes = {a % rank for a in axes} if axes else set(range(rank))
        outs = self.shape(out) or []
        if 1 in axes or 0 in axes or len(outs) < 2:
            return self._mark(op.input_arg_names, f"network output (channels reduced by {op.type})")
        self._set(out, self._lay(x))

    def _unary(self, op):
        x, out = self._one(op, "X"), self._out(op)
        lay, ins, outs = self._lay(x), self.shape(x), self.shape(out)
        if outs is None or len(outs) < 2 or outs[1] != ins[1]:
            return self._unsupported(op, "changes the channel count")
        if not (nchw(op, "data_format") and nchw(op, "data_layout")):
            return self._unsupported(op, "only NCHW inputs are understood")
        if any(self._lay(n) is not None for n in op.input_arg_names if n != x):
            return self._unsupported(op, "a second input with channels")
        alpha = self._one(op, "Alpha")
        if alpha is not None:                      # prelu
            src, ashape = self._param(alpha), self.shape(alpha)
            if src is None:
                return self._unsupported(op, "its Alpha is not a parameter")
            if math.prod(ashape) == ins[1] and ins[1] > 1:
                axes = [i for i, d in enumerate(ashape) if d != 1]
                for s, off in self._segments(lay):
                    self.sets.attach(s, src[0], axes[0] if axes else 0, off, 1)
            elif math.prod(ashape) != 1:
                return self._unsupported(op, "element-wise prelu weights")
        self._set(out, lay)

    def _mark_outputs(self):
        consumed = {n for _, op in self.ops for n in op.input_arg_names}
        for name, lay in self.layout.items():
            if name not in consumed:
                for s in lay.spaces:
                    self.sets.mark(s, "network output")

    # -- after the walk -----------------------------------------------------------
    def _map_spaces(self):
        index = {m: gi for gi, g in enumerate(self.groups) for m in g.members}
        by_root = {}
        for s, sp in enumerate(self.sets.spaces):
            if sp.members and self.sets.find(s) not in by_root:
                param, axis, offset, scale = sp.members[0]
                gi = index.get(Member(param, axis, offset, self.sets.expand[s] * scale))
                if gi is not None:
                    by_root[self.sets.find(s)] = gi
        return by_root

    def group_of_space(self, space):
        """Index in :attr:`groups` of the group holding ``space`` (None if it has no members)."""
        return self._space_group.get(self.sets.find(space))

    def kept(self, space, pruned):
        """Channels of ``space`` left when ``pruned`` ({group index: pruned units}) is applied."""
        gi = self.group_of_space(space)
        removed = len(pruned.get(gi, ())) * self.sets.expand[space] if gi is not None else 0
        return self.sets.spaces[space].size - removed

    def unsupported_reasons(self):
        """``[(group, reason)]`` of groups made by a conv or fc and blocked by an unsupported op."""
        return [(g, g.reason) for g in self.groups
                if g.producers and g.reason and g.reason.startswith(("unsupported", "produced by unsupported"))]

    def find_groups(self, name):
        """Indices of the groups holding axis 0 of parameter ``name`` (what pruning it removes:
        a conv's output channels, a BN's channels, an fc's input rows). Two or more when its
        axis 0 spans a concat of several groups."""
        return [gi for gi, g in enumerate(self.groups) if g.member(name, 0) is not None]
