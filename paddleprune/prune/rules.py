"""How channels flow through each class of op, written once for both walkers.

A walker (:class:`~paddleprune.prune.analysis.Analysis` over a PIR program,
:class:`~paddleprune.prune.static.walker.StaticAnalysis` over a legacy Program)
maps an op type to a *kind* with one table entry, reads the op of its IR into
an :class:`OpRead`, and calls ``RULES[kind](walker, read)``. The walkers differ
only in how they read ops; what a norm, binary, unary, reshape, concat,
reduction or split op does to channel spaces lives here.

A rule talks to the walker through a small interface: ``sets`` (the
:class:`~paddleprune.prune.groups.SpaceSet`), ``_lay(h)`` / ``_set(h, layout)``
(the :class:`~paddleprune.prune.groups.Layout` of a value handle), ``_shape(h)``,
``_param(h)`` (``(parameter name, axes of the value that hold its elements)`` or
None) and ``_unsupported(op, why)``; a walker that tracks channels split into
groups (a channel shuffle) has a ``grouped`` dict, else None.
"""
import math
from dataclasses import dataclass, field

from paddleprune.prune.groups import Layout

__all__ = ["OpRead", "RULES", "rule", "param_axis"]

#: kind -> ``fn(walker, read)``
RULES = {}
_NO_LAYOUT = "its channels come from an input other than the first"


@dataclass
class OpRead:
    """An op as read by a walker.

    ``x`` is the main channel input and ``out`` the output; ``inputs`` the joined
    inputs (binary, sum, concat); ``others`` inputs that must not carry channels;
    ``params`` ``(slot, handle)`` pairs of per-channel parameter operands; ``attrs``
    what the rule needs from the op's attributes (``axis``, ``axes``, ``dims``,
    ``sections``, ``scale`` ...).
    """
    op: object
    type: str
    x: object = None
    out: object = None
    inputs: tuple = ()
    others: tuple = ()
    params: tuple = ()
    outs: tuple = ()
    attrs: dict = field(default_factory=dict)


def rule(*kinds):
    """Register ``fn(walker, read)`` as the rule of op ``kinds``; twice is an error."""
    def deco(fn):
        for kind in kinds:
            if kind in RULES:
                raise ValueError(f"a channel rule for op kind {kind!r} is already registered")
            RULES[kind] = fn
        return fn
    return deco


def param_axis(src, dim):
    """The axis of parameter ``src = (name, axes)`` that holds dimension ``dim`` of the value."""
    return src[1].index(dim) if len(src[1]) > 1 else 0


def _attach(w, lay, param, axis):
    for s, off, sc in w.sets.elements(lay):
        w.sets.attach(s, param, axis, off, sc)


@rule("unary")
def unary(w, r):
    """Same channels in and out (activations, pooling, resize, pad, dropout, scale, prelu)."""
    lay, ins, outs = w._lay(r.x), w._shape(r.x), w._shape(r.out)
    if lay is None or outs is None or len(outs) < 2 or outs[1] != ins[1]:
        return w._unsupported(r.op, "changes the channel count")
    if any(w._lay(h) is not None for h in r.others):
        return w._unsupported(r.op, "a second input with channels")
    for slot, h in r.params:                      # prelu: one weight per channel, or one for all
        src, shape = w._param(h), w._shape(h) or [1]
        if src is None:
            return w._unsupported(r.op, f"its {slot} is not a parameter")
        if math.prod(shape) == ins[1] and ins[1] > 1:
            dims = [i for i, d in enumerate(shape) if d != 1]
            _attach(w, lay, src[0], param_axis(src, dims[0]))
        elif math.prod(shape) != 1:
            return w._unsupported(r.op, "element-wise prelu weights")
    w._set(r.out, lay)


@rule("norm")
def norm(w, r):
    """Batch / instance norm: every per-channel parameter joins the input's channels;
    ``attrs['scale']`` (gamma) is remembered for the ``bn_scale`` criterion."""
    lay = w._lay(r.x)
    if lay is None:
        return w._unsupported(r.op, _NO_LAYOUT)
    c = w._shape(r.x)[1]
    found = []
    for slot, h in r.params:
        src = w._param(h)
        if src is None or w._shape(h) != [c]:
            return w._unsupported(r.op, f"its {slot} is not a per-channel parameter")
        found.append(src[0])
    for p in found:
        _attach(w, lay, p, 0)
    scale = r.attrs.get("scale")
    if scale is not None:
        for s in lay.spaces:
            sp = w.sets.spaces[s]
            if sp.producer and sp.norm_scale is None:
                sp.norm_scale = scale
    w._set(r.out, lay)


@rule("binary")
def binary(w, r):
    """Element-wise ops of two operands. Two channel tensors are tied channel by channel;
    a parameter broadcast along the channel axis joins the channels; anything else
    broadcast over channels leaves them alone. ``attrs['dims']`` gives, per operand,
    the axis that lines up with the output's channel axis (None: not aligned)."""
    a, b = r.inputs
    la, lb = w._lay(a), w._lay(b)
    sa, sb = w._shape(a), w._shape(b)
    dims = r.attrs.get("dims", (1, 1))
    if la is not None and lb is not None:
        if len(sa) != len(sb) or dims != (1, 1):
            return w._unsupported(r.op, "operands of different rank")
        if sa[1] == 1 or sb[1] == 1:
            return w._set(r.out, la if sa[1] != 1 else lb)
        if not w.sets.tie_layouts(la, lb):
            return w._unsupported(r.op, "joins tensors whose channels are concatenated differently")
        return w._set(r.out, la)
    lay, other, dim = (la, b, dims[1]) if la is not None else (lb, a, dims[0])
    if dim is None:
        return w._unsupported(r.op, "a broadcast the analysis does not line up")
    oshape = w._shape(other) or []
    if not 0 <= dim < len(oshape) or oshape[dim] == 1:
        return w._set(r.out, lay)                  # broadcast over channels: no coupling
    src = w._param(other)
    if src is None:
        return w._unsupported(r.op, "a per-channel operand that is not a parameter")
    if dim not in src[1] or any(d != 1 for i, d in enumerate(oshape) if i != dim):
        return w._unsupported(r.op, "a parameter operand that is not per-channel")
    _attach(w, lay, src[0], param_axis(src, dim))
    w._set(r.out, lay)


@rule("join")
def join(w, r):
    """N-ary sum: every input is tied channel by channel."""
    lays = [w._lay(h) for h in r.inputs]
    if None in lays:
        return w._unsupported(r.op, "an input without a channel layout")
    for lay in lays[1:]:
        if not w.sets.tie_layouts(lays[0], lay):
            return w._unsupported(r.op, "joins tensors whose channels are concatenated differently")
    w._set(r.out, lays[0])


@rule("concat")
def concat(w, r):
    """Along the channel axis: spaces side by side. Along another axis: inputs tied."""
    lays = [w._lay(h) for h in r.inputs]
    axis = r.attrs.get("axis")
    rank = len(w._shape(r.out) or [])
    if axis is None or None in lays or rank == 0:
        return w._unsupported(r.op, "inputs without a channel layout or a computed axis")
    if int(axis) % rank == 1:
        return w._set(r.out, Layout(tuple(s for lay in lays for s in lay.spaces),
                                    scales=tuple(sc for lay in lays for sc in lay.scales)))
    return join(w, r)


@rule("reshape")
def reshape(w, r):
    """Reshape / flatten / squeeze. Returns the output layout (None when unsupported or
    when the channels were split into groups, tracked in ``walker.grouped``).

    Channels stay when axis 1 and the product of the rest are unchanged; merging axis 1
    with the next axes makes each channel cover their product of elements; splitting
    axis 1 in two (``[N, C, H, W] -> [N, G, C/G, H, W]``, the first step of a channel
    shuffle) is followed by the walker. ``attrs['fixed']`` is a target shape that fixes
    the channel count where the walker cannot update it.
    """
    lay, ins, outs = w._lay(r.x), w._shape(r.x), w._shape(r.out)
    if lay is None:
        return w._unsupported(r.op, _NO_LAYOUT)
    if ins is None or outs is None or len(outs) < 2 or outs[0] != ins[0]:
        return w._unsupported(r.op, f"changes the batch axis ({ins} -> {outs})")
    if ins[1] <= 0 or outs[1] <= 0:
        return w._unsupported(r.op, f"has unknown sizes ({ins} -> {outs})")
    if (getattr(w, "grouped", None) is not None and len(ins) == 4 and len(outs) == 5
            and outs[1] * outs[2] == ins[1] and outs[3:] == ins[2:] and outs[1] > 1 and outs[2] > 1):
        w.grouped[w._key(r.out)] = (lay, outs[1], False)
        return None
    fixed = r.attrs.get("fixed")
    if fixed is not None:
        return w._unsupported(r.op, f"reshape to the fixed shape {list(fixed)}")
    new = None
    if outs[1] == ins[1]:                      # same batch and channels: each channel keeps its elements
        new = lay
    elif all(d > 0 for d in ins[2:] + outs[2:]):
        for k in range(1, len(ins) - 1):        # axis 1 merged with axes 2 .. k+1
            factor = math.prod(ins[2:2 + k])
            if outs[1] == ins[1] * factor and math.prod(outs[2:]) == math.prod(ins[2 + k:]):
                new = lay.scaled(factor)
                break
    if new is None:
        return w._unsupported(r.op, f"reshapes channels ({ins} -> {outs})")
    w._set(r.out, new)
    return new


@rule("reduction")
def reduction(w, r):
    """reduce_* / mean / sum / max / min / softmax: channels pass when neither the batch
    nor the channel axis is reduced (``attrs['axes']``, or the shapes when unknown);
    otherwise the channels end here, unprunable."""
    lay, ins, outs = w._lay(r.x), w._shape(r.x), w._shape(r.out)
    if lay is None:
        return w._unsupported(r.op, _NO_LAYOUT)
    axes = r.attrs.get("axes")
    if axes is not None:
        axes = {int(a) % len(ins) for a in axes} if len(axes) else set(range(len(ins)))
    if (axes is not None and axes & {0, 1}) or outs is None or len(outs) < 2 or outs[1] != ins[1]:
        for s in lay.spaces:
            w.sets.mark(s, f"network output (channels reduced by {r.type})")
        return w._fresh(r.op, f"produced by {r.type}, which reduces channels")
    w._set(r.out, lay)


@rule("split")
def split(w, r):
    """``split`` / ``chunk``: along a spatial axis every part keeps the channels; along the
    channel axis only into equal parts, tied channel by channel (a model splits at
    ``C // n`` of its run-time width); unequal sections stay unsupported.
    Returns the parts' layouts, or None."""
    lay, ins = w._lay(r.x), w._shape(r.x)
    if lay is None:
        return w._unsupported(r.op, _NO_LAYOUT)
    axis, sections = r.attrs.get("axis"), r.attrs.get("sections")
    if axis is None or sections is None:
        return w._unsupported(r.op, "sections or axis computed at run time")
    axis = int(axis) % len(ins)
    sections = [int(d) for d in sections]
    if axis >= 2:
        return [lay] * len(sections)
    if axis != 1 or len(set(sections)) != 1 or sum(sections) != ins[1]:
        return w._unsupported(r.op, f"splits axis {axis} into sections {sections}")
    parts = w.sets.split_tied(lay.spaces, lay.scales, len(sections))
    if parts is None:
        why = (f"splits {ins[1]} channels into {len(sections)} equal parts that cut channel units "
               "(channels tied by a channel shuffle or an earlier split)")
        w._unsupported(r.op, why)
        return [Layout((w.sets.new(n, reason=f"produced by unsupported op {r.type} ({why})"),)) for n in sections]
    return [Layout(tuple(s for s, _ in p), scales=tuple(sc for _, sc in p)) for p in parts]


def unshuffle(w, r, grouped):
    """The reshape back of channels split into ``G`` groups: without a transpose the
    layout comes back; after one (a channel shuffle) element ``i*G + g`` is element
    ``i`` of part ``g``, so the ``G`` parts are tied. Returns the layout or None."""
    lay, groups, transposed = grouped
    if not transposed:
        return lay
    parts = w.sets.split_tied(lay.spaces, lay.scales, groups)
    if parts is None:
        return None
    return Layout(tuple(s for s, _ in parts[0]), scales=tuple(sc * groups for _, sc in parts[0]))
