"""Channel groups of a legacy-IR (ProgramDesc) ``paddle.base.framework.Program``.

The static counterpart of :mod:`paddleprune.prune.analysis`: the same channel
spaces, layouts, :class:`~paddleprune.prune.groups.SpaceSet` and channel rules
(:mod:`paddleprune.prune.rules`; this module only reads legacy ops into them), walked over
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

from paddleprune.prune import rules
from paddleprune.prune.groups import Layout, Member, SpaceSet
from paddleprune.prune.rules import OpRead
from paddleprune.prune.static.ops import (KINDS, RESHAPE_OPS, SHAPE_READERS, TERMINAL_OPS, AttrSite,
                                          forward_ops, nchw)

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

    grouped = None          # channel shuffles are not followed in legacy Programs

    def _param(self, name):
        return self.param_src.get(name)

    def _shape(self, name):
        return self.shape(name)

    @staticmethod
    def _key(name):
        return name

    def _fresh(self, op, reason):
        self._fresh_outputs(op, reason)

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
        kind = KINDS.get(t)
        if kind is None:
            return self._unsupported(op)
        getattr(self, f"_{kind}")(index, op)

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

    def _conv_transpose(self, index, op):
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

    # -- readers: legacy ops -> rules ----------------------------------------------
    def _norm(self, index, op):
        if not nchw(op, "data_layout"):
            return self._unsupported(op, "only NCHW inputs are understood")
        params = tuple((slot, self._one(op, slot)) for slot in ("Scale", "Bias", "Mean", "Variance")
                       if self._one(op, slot) is not None)
        rules.RULES["norm"](self, OpRead(op, op.type, x=self._one(op, "X"),
                                         out=self._out(op, "Y") or self._out(op, "Out"), params=params,
                                         attrs={"scale": self._one(op, "Scale")}))

    def _binary(self, index, op):
        """``axis`` aligns Y's first axis with axis ``axis`` of X (-1: from the right)."""
        x, y = self._one(op, "X"), self._one(op, "Y")
        sx, sy = self.shape(x), self.shape(y)
        axis = int(op.attr("axis")) if op.has_attr("axis") else -1
        offset = len(sx) - len(sy) if axis == -1 else axis
        dims = (1 if len(sx) == len(sy) else None, 1 - offset)
        rules.RULES["binary"](self, OpRead(op, op.type, out=self._out(op), inputs=(x, y), attrs={"dims": dims}))

    def _join(self, index, op):
        rules.RULES["join"](self, OpRead(op, op.type, out=self._out(op), inputs=tuple(op.input("X"))))

    def _concat(self, index, op):
        axis = None if self._one(op, "AxisTensor") is not None else int(op.attr("axis"))
        rules.RULES["concat"](self, OpRead(op, op.type, out=self._out(op), inputs=tuple(op.input("X")),
                                           attrs={"axis": axis}))

    def _reshape(self, index, op):
        if any(self._one(op, slot) is not None for slot in ("Shape", "ShapeTensor")):
            return self._unsupported(op, "its target shape is a tensor")
        new = rules.RULES["reshape"](self, OpRead(op, op.type, x=self._one(op, "X"), out=self._out(op)))
        if new is not None and op.type in ("reshape2", "reshape") and op.has_attr("shape"):
            target = list(op.attr("shape"))
            if len(target) > 1 and target[1] > 0:
                self.attr_sites.append(AttrSite(index, "shape", 1, spaces=new.spaces, scale=new.scale))

    def _fc(self, index, op):
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

    def _reduction(self, index, op):
        rank = len(self.shape(self._one(op, "X")))
        if op.type == "softmax":
            axes = [int(op.attr("axis"))]
        elif op.has_attr("reduce_all") and op.attr("reduce_all"):
            axes = list(range(rank))
        else:
            axes = list(op.attr("dim")) if op.has_attr("dim") else list(range(rank))
        rules.RULES["reduction"](self, OpRead(op, op.type, x=self._one(op, "X"), out=self._out(op),
                                              attrs={"axes": axes}))

    def _unary(self, index, op):
        if not (nchw(op, "data_format") and nchw(op, "data_layout")):
            return self._unsupported(op, "only NCHW inputs are understood")
        x, alpha = self._one(op, "X"), self._one(op, "Alpha")
        others = tuple(n for n in op.input_arg_names if n not in (x, alpha))
        rules.RULES["unary"](self, OpRead(op, op.type, x=x, out=self._out(op), others=others,
                                          params=(("Alpha", alpha),) if alpha is not None else ()))

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
        units = len(pruned.get(gi, ())) if gi is not None else 0
        removed = units * self.sets.expand[space] * self.sets.reps[space]
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
