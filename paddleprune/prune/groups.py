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
"""
import logging
import math
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


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


@dataclass
class _Space:
    size: int
    members: list = field(default_factory=list)   # (param, axis, elem_offset, elems_per_channel)
    producer: tuple = None                          # (param, axis) or None
    norm_scale: str = None
    order: int = 0


class SpaceSet:
    """Union-find over channel spaces with a common unit count per set."""

    def __init__(self):
        self.spaces = []
        self.parent = []
        self.units = {}       # root -> unit count
        self.expand = []      # space -> channels per unit
        self.reason = {}      # root -> first reason the set is unprunable

    def new(self, size, producer=None, reason=None):
        sid = len(self.spaces)
        self.spaces.append(_Space(size=size, producer=producer, order=sid))
        self.parent.append(sid)
        self.expand.append(1)
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

    def tie_side_by_side(self, first, other):
        """Tie two lists of side-by-side spaces pair by pair (an add of two concats).
        Returns False, tying nothing, when their widths differ space by space."""
        if [self.spaces[s].size for s in first] != [self.spaces[s].size for s in other]:
            return False
        for a, b in zip(first, other):
            self.tie(a, b)
        return True

    def attach(self, s, param, axis, offset=0, scale=1):
        self.spaces[s].members.append((param, axis, offset, scale))

    def groups(self):
        """Build the :class:`ChannelGroup` list, in the order of their first space."""
        by_root = {}
        for s in range(len(self.spaces)):
            by_root.setdefault(self.find(s), []).append(s)
        result = []
        for root, spaces in sorted(by_root.items(), key=lambda kv: kv[1][0]):
            members, producers, norms, seen = [], [], [], set()
            for s in spaces:
                sp = self.spaces[s]
                for param, axis, offset, scale in sp.members:
                    m = Member(param, axis, offset, self.expand[s] * scale)
                    if m not in seen:
                        seen.add(m)
                        members.append(m)
                if sp.producer:
                    producers.append(sp.producer)
                    if sp.norm_scale:
                        norms.append((sp.producer[0], sp.norm_scale))
            reason = self.reason.get(root)
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
