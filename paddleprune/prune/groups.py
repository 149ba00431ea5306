"""Channel-dependency groups.

A *channel space* is a set of channels created by one op: a conv's or a
linear layer's outputs, or the network input. Ops that pass channels through
(BN, activations, pooling, depthwise conv, ...) keep the space; ops that join
tensors (residual ``add``, SE ``multiply``) tie spaces together; ``concat``
lays several spaces side by side along the consumer's input axis. A
:class:`ChannelGroup` is one set of tied spaces: removing a unit of it removes
the matching slice of every member parameter.

Units: depthwise and grouped convs tie spaces of possibly different widths,
so a group counts *units*, each covering ``member.expand`` consecutive
elements of a member's axis (1 for ordinary channels, ``H*W`` after a flatten,
``C/groups`` for a grouped conv).

Channel shuffles and equal splits along the channel axis tie *blocks* of a
space: a space of a set with ``U`` units then holds ``reps`` blocks of
``U * expand`` channels, and unit ``u`` is the ``u``-th slice of every block.
A member attached to a whole space becomes one :class:`Member` per block.
A *view* is a channel range of a space (one split piece); operations on a
view act on its space.
"""
import logging
import math
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Channel layout of a tensor's axis 1: channel spaces (or views) side by side;
    each channel of ``spaces[i]`` covers ``scales[i]`` consecutive elements (``H*W``
    after a flatten, ``G`` after a channel shuffle into ``G`` groups).

    ``scale`` is the common scale, or 0 when the spaces have different scales.
    """
    spaces: tuple
    scale: int = 1
    scales: tuple = None

    def __post_init__(self):
        if self.scales is None:
            object.__setattr__(self, "scales", (self.scale,) * len(self.spaces))
        else:
            scales = tuple(int(x) for x in self.scales)
            object.__setattr__(self, "scales", scales)
            object.__setattr__(self, "scale", scales[0] if len(set(scales)) == 1 else 0)

    def scaled(self, factor):
        """The same spaces with every scale multiplied by ``factor``."""
        return Layout(self.spaces, scales=tuple(sc * factor for sc in self.scales))


@dataclass(frozen=True)
class Member:
    """A slice of one parameter axis that belongs to a group.

    Unit ``u`` of the group is elements ``offset + u*expand ... offset + (u+1)*expand - 1``
    of axis ``axis`` of parameter ``param`` (a structural name).
    """
    param: str
    axis: int
    offset: int = 0
    expand: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """Parameters whose channels must be removed together."""
    root: str
    root_axis: int
    members: tuple
    n: int
    prunable: bool
    reason: str = None
    producers: tuple = ()          # (param, axis) pairs that create the group's channels
    norm_scales: tuple = ()        # (producer param, following norm-scale param) pairs

    def member(self, param, axis):
        """The first member for ``(param, axis)``, or None."""
        for m in self.members:
            if m.param == param and m.axis == axis:
                return m
        return None

    @property
    def params(self):
        return tuple(dict.fromkeys(m.param for m in self.members))

    def __str__(self):
        state = "prunable" if self.prunable else f"unprunable ({self.reason})"
        return f"ChannelGroup({self.root}:{self.root_axis}, {self.n} units, {len(self.members)} members, {state})"


class GroupView(dict):
    """Seed-003 ``group`` dict: ``{param: {"pruned_dims", "layer", "var", "value"}}``.

    Keys are structural names; Paddle parameter names (``conv2d_0.w_0``) work too.
    ``channel_group`` is the underlying :class:`ChannelGroup`.
    """

    def __init__(self, entries, channel_group, aliases):
        super().__init__(entries)
        self.channel_group = channel_group
        self._aliases = aliases

    def __missing__(self, key):
        if key in self._aliases and self._aliases[key] in self:
            return self[self._aliases[key]]
        raise KeyError(key)

    def __contains__(self, key):
        return dict.__contains__(self, key) or (key in self._aliases and dict.__contains__(self, self._aliases[key]))


@dataclass
class _Space:
    size: int
    members: list = field(default_factory=list)   # (param, axis, elem_offset, elems_per_channel)
    producer: tuple = None                          # (param, axis) or None
    norm_scale: str = None
    order: int = 0
    view_of: tuple = None                           # (space, first channel) for a view
    ranged: list = field(default_factory=list)      # (param, axis, elem_offset, scale, lo, hi) via views


class SpaceSet:
    """Union-find over channel spaces with a common unit count per set."""

    def __init__(self):
        self.spaces = []
        self.parent = []
        self.units = {}       # root -> unit count
        self.expand = []      # space -> channels per unit (within a block)
        self.reps = []        # space -> blocks tied unit by unit (channel shuffles, equal splits)
        self.reason = {}      # root -> first reason the set is unprunable

    def new(self, size, producer=None, reason=None):
        sid = len(self.spaces)
        self.spaces.append(_Space(size=size, producer=producer, order=sid))
        self.parent.append(sid)
        self.expand.append(1)
        self.reps.append(1)
        self.units[sid] = size
        if reason:
            self.reason[sid] = reason
        return sid

    def find(self, s):
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def mark(self, s, reason):
        root = self.find(s)
        self.reason.setdefault(root, reason)

    # -- views: channel ranges of a space ----------------------------------------------
    def base(self, s):
        """``(space, first channel, channel count)`` of ``s`` (a space or a view)."""
        sp = self.spaces[s]
        if sp.view_of is None:
            return s, 0, sp.size
        return sp.view_of[0], sp.view_of[1], sp.size

    def view(self, s, lo, hi):
        """A view of channels ``lo ... hi - 1`` of ``s``; ``s`` itself for the whole range."""
        space, first, size = self.base(s)
        if lo == 0 and hi == size and first == 0 and size == self.spaces[space].size:
            return space
        vid = len(self.spaces)
        self.spaces.append(_Space(size=hi - lo, order=vid, view_of=(space, first + lo)))
        self.parent.append(space)
        self.expand.append(1)
        self.reps.append(1)
        return vid

    def _block(self, space):
        return self.units[self.find(space)] * self.expand[space]

    def _blocks(self, s):
        """Blocks of its space that ``s`` covers, or None when it cuts a block."""
        space, lo, size = self.base(s)
        block = self._block(space)
        if lo % block or size % block:
            return None
        return size // block

    def fold(self, s, factor):
        """Tie the ``factor`` equal parts of every block of ``s``'s set unit by unit.
        Returns False, changing nothing, when the units do not divide."""
        root = self.find(s)
        if self.units[root] % factor:
            return False
        self.units[root] //= factor
        for t in range(len(self.spaces)):
            if self.spaces[t].view_of is None and self.find(t) == root:
                self.reps[t] *= factor
        return True

    def split_tied(self, spaces, scales, pieces):
        """Cut spaces laid side by side (each channel ``scales[i]`` elements wide) into
        ``pieces`` parts of equal width and tie the parts element by element.

        Returns the parts as lists of ``(space or view, scale)``, or None when the parts
        cannot be expressed (a cut inside a channel, parts that differ space by space,
        units that do not divide); nothing is tied then.
        """
        widths = [self.spaces[s].size * sc for s, sc in zip(spaces, scales)]
        total = sum(widths)
        if pieces < 1 or total % pieces:
            return None
        step = total // pieces
        parts, acc, whole = [[] for _ in range(pieces)], 0, True
        for s, sc, w in zip(spaces, scales, widths):
            k = acc // step
            if acc + w > (k + 1) * step:
                whole = False              # a space crosses a cut
                break
            parts[k].append((s, sc))
            acc += w
        if whole:
            return parts if self._tie_parts(parts) else None
        if len(spaces) != 1 or step % scales[0]:
            return None
        # one space cut into parts: tie its blocks' parts together
        s, sc = spaces[0], scales[0]
        blocks = self._blocks(s)
        if blocks is None:
            return None
        factor = pieces // math.gcd(blocks, pieces)
        if factor > 1 and not self.fold(s, factor):
            return None
        per = step // sc
        return [[(self.view(s, k * per, (k + 1) * per), sc)] for k in range(pieces)]

    def _tie_parts(self, parts):
        first = parts[0]
        for part in parts[1:]:
            if [self.spaces[s].size * sc for s, sc in part] != [self.spaces[s].size * sc for s, sc in first]:
                return False
        for part in parts[1:]:
            for (a, _), (b, _) in zip(first, part):
                if not self.tie_views(a, b):
                    return False
        return True

    def tie_views(self, a, b):
        """Tie ``a`` and ``b`` (spaces or views of equal width) channel unit by unit.
        Returns False when one of them cuts a block of its set."""
        na, nb = self._blocks(a), self._blocks(b)
        if na is None or nb is None:
            return False
        if na != nb:
            small, ns, nbig = (a, na, nb) if na < nb else (b, nb, na)
            if nbig % ns or self.find(a) == self.find(b) or not self.fold(small, nbig // ns):
                return False
        self.tie(self.base(a)[0], self.base(b)[0])
        return True

    # -- sets -------------------------------------------------------------------------
    def _coarsen(self, root, units):
        old = self.units[root]
        if units == old:
            return
        factor = old // units
        for s in range(len(self.spaces)):
            if self.find(s) == root:
                self.expand[s] *= factor
        self.units[root] = units

    def tie(self, a, b, groups=None):
        """Tie spaces ``a`` and ``b``: channel-by-channel, or, with ``groups``,
        conv-group by conv-group (grouped and depthwise convs)."""
        ra, rb = self.find(a), self.find(b)
        ua, ub = self.units[ra], self.units[rb]
        common = math.gcd(ua, ub) if groups is None else math.gcd(math.gcd(ua, groups), math.gcd(ub, groups))
        if ra == rb:
            self._coarsen(ra, math.gcd(ua, common))
            return
        self._coarsen(ra, common)
        self._coarsen(rb, common)
        self.parent[rb] = ra
        del self.units[rb]
        if rb in self.reason:
            self.reason.setdefault(ra, self.reason.pop(rb))

    def width(self, spaces):
        """Channels of spaces laid side by side."""
        return sum(self.spaces[s].size for s in spaces)

    def segments(self, spaces):
        """``(space, channel offset)`` pairs of spaces laid side by side."""
        out, offset = [], 0
        for s in spaces:
            out.append((s, offset))
            offset += self.spaces[s].size
        return out

    def elements(self, layout):
        """``(space, element offset, scale)`` triples of a :class:`Layout`."""
        out, offset = [], 0
        for s, sc in zip(layout.spaces, layout.scales):
            out.append((s, offset, sc))
            offset += self.spaces[s].size * sc
        return out

    def tie_side_by_side(self, first, other):
        """Tie two lists of side-by-side spaces pair by pair (an add of two concats).
        Returns False, tying nothing, when their widths differ space by space."""
        if [self.spaces[s].size for s in first] != [self.spaces[s].size for s in other]:
            return False
        if any(self.spaces[s].view_of is not None or self.reps[s] > 1 for s in (*first, *other)):
            return self._tie_parts([[(s, 1) for s in first], [(s, 1) for s in other]])
        for a, b in zip(first, other):
            self.tie(a, b)
        return True

    def tie_layouts(self, first, other):
        """Tie two :class:`Layout` element by element (an add of two tensors). Their
        spaces must line up, with equal widths in elements; returns False otherwise."""
        if first.scales == other.scales:
            return self.tie_side_by_side(first.spaces, other.spaces)
        return self._tie_parts([list(zip(first.spaces, first.scales)), list(zip(other.spaces, other.scales))])

    def attach(self, s, param, axis, offset=0, scale=1):
        sp = self.spaces[s]
        if sp.view_of is None:
            sp.members.append((param, axis, offset, scale))
        else:
            space, lo = sp.view_of
            self.spaces[space].ranged.append((param, axis, offset, scale, lo, lo + sp.size))

    def _members(self, s):
        """Members of space ``s`` as ``(Member, ok)``; ok is False when a view cuts a block."""
        sp = self.spaces[s]
        block = self._block(s)
        out = []
        for param, axis, offset, scale in sp.members:
            out += [(Member(param, axis, offset + b * block * scale, self.expand[s] * scale), True)
                    for b in range(self.reps[s])]
        for param, axis, offset, scale, lo, hi in sp.ranged:
            ok = lo % block == 0 and hi % block == 0
            out += [(Member(param, axis, offset + (b * block - lo) * scale, self.expand[s] * scale), ok)
                    for b in range(lo // block, hi // block)]
            if not ok:
                out.append((None, False))
        return out

    def groups(self):
        """Build the :class:`ChannelGroup` list, in the order of their first space."""
        by_root = {}
        for s in range(len(self.spaces)):
            if self.spaces[s].view_of is None:
                by_root.setdefault(self.find(s), []).append(s)
        result = []
        for root, spaces in sorted(by_root.items(), key=lambda kv: kv[1][0]):
            members, producers, norms, seen = [], [], [], set()
            cut = False
            for s in spaces:
                sp = self.spaces[s]
                for m, ok in self._members(s):
                    cut = cut or not ok
                    if m is not None and m not in seen:
                        seen.add(m)
                        members.append(m)
                if sp.producer:
                    producers.append(sp.producer)
                    if sp.norm_scale:
                        norms.append((sp.producer[0], sp.norm_scale))
            reason = self.reason.get(root)
            if cut:
                reason = reason or "a channel split cuts its channel units"
            if not producers:
                reason = reason or "no conv or linear layer produces these channels"
            if self.units[root] < 2:
                reason = reason or "a single channel unit cannot be pruned"
            if not members:
                continue
            root_param, root_axis = producers[0] if producers else (members[0].param, members[0].axis)
            result.append(ChannelGroup(
                root=root_param, root_axis=root_axis, members=tuple(members), n=self.units[root],
                prunable=reason is None, reason=reason, producers=tuple(producers), norm_scales=tuple(norms)))
        return result
