"""Channel importance criteria and index selectors (math only).

A criterion maps ``(group, var_name, axis)`` to one score per element of
``var_name``'s axis (higher = more important); ``group`` is the seed-003
style dict ``{param: {"pruned_dims", "layer", "var", "value"}}`` with the
underlying :class:`ChannelGroup` as ``group.channel_group``. A selector turns
per-unit scores and a ratio into the indices to prune.
"""
import numpy as np

from paddleprune.errors import InvalidParameterError

CRITERIA = {}
SELECTORS = {}


def criterion(name):
    """Register a criterion function under ``name``."""
    def deco(fn):
        if name in CRITERIA:
            raise ValueError(f"criterion {name!r} is already registered")
        CRITERIA[name] = fn
        return fn
    return deco


def selector(name):
    """Register an index selector ``fn(scores, ratio, keep_at_least=1) -> pruned indices``."""
    def deco(fn):
        if name in SELECTORS:
            raise ValueError(f"index selector {name!r} is already registered")
        SELECTORS[name] = fn
        return fn
    return deco


def get_criterion(name):
    if callable(name):
        return name
    if name not in CRITERIA:
        raise InvalidParameterError(f"unknown criterion {name!r}; known: {sorted(CRITERIA)}.")
    return CRITERIA[name]


def get_selector(name):
    if callable(name):
        return name
    name = {"default_idx_selector": "default", "optimal_threshold_selector": "optimal_threshold"}.get(name, name)
    if name not in SELECTORS:
        raise InvalidParameterError(f"unknown idx_selector {name!r}; known: {sorted(SELECTORS)}.")
    return SELECTORS[name]


def _flat(value, axis):
    return np.moveaxis(np.asarray(value, dtype="float64"), axis, 0).reshape(value.shape[axis], -1)


@criterion("l1_norm")
def l1_norm(group, var_name, axis):
    """Mean absolute value of each filter (PaddleSlim's L1 score)."""
    return np.abs(_flat(group[var_name]["value"], axis)).mean(axis=1)


@criterion("l2_norm")
def l2_norm(group, var_name, axis):
    """Euclidean norm of each filter."""
    return np.sqrt(np.square(_flat(group[var_name]["value"], axis)).sum(axis=1))


@criterion("geometry_median")
def geometry_median(group, var_name, axis):
    """FPGM: sum of Euclidean distances from each filter to all others; filters
    near the geometric median (small sums) are the most replaceable."""
    w = _flat(group[var_name]["value"], axis)
    sq = np.square(w).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * w @ w.T, 0.0)
    return np.sqrt(d2).sum(axis=1)


@criterion("bn_scale")
def bn_scale(group, var_name, axis):
    """|gamma| of the norm layer that directly follows ``var_name``."""
    channel_group = group.channel_group
    scale = dict(channel_group.norm_scales).get(var_name)
    if scale is None:
        raise InvalidParameterError(
            f"criterion 'bn_scale': no batch-norm layer directly follows {var_name!r}; "
            "use 'l1_norm' or another criterion for it.")
    gamma = np.abs(np.asarray(group[scale]["value"], dtype="float64"))
    member = channel_group.member(scale, 0)
    own = channel_group.member(var_name, axis)
    # bring gamma onto var_name's axis: unit u covers own.offset + u*own.expand ...
    units = np.array([gamma[member.offset + u * member.expand: member.offset + (u + 1) * member.expand].mean()
                      for u in range(channel_group.n)])
    length = group[var_name]["value"].shape[axis]
    scores = np.full(length, np.inf)
    for u in range(channel_group.n):
        scores[own.offset + u * own.expand: own.offset + (u + 1) * own.expand] = units[u]
    return scores


def count_to_prune(n, ratio, round_to=None):
    """Units to remove: ``round_half_even(n * ratio)``, at most ``n - 1``;
    with ``round_to`` the kept count is a multiple of it (PaddleSlim's rule)."""
    pruned = int(round(n * ratio))
    if round_to and round_to > 1 and ratio > 0:
        kept = int(round((1 - ratio) * n / round_to)) * round_to
        kept = round_to if kept <= 0 else kept
        pruned = max(0, n - kept)
    return max(0, min(n - 1, pruned))


@selector("default")
def default_selector(scores, ratio, round_to=None):
    """Prune the ``count_to_prune`` lowest-scoring units (stable order)."""
    k = count_to_prune(len(scores), ratio, round_to)
    return np.sort(np.argsort(scores, kind="stable")[:k])


@selector("optimal_threshold")
def optimal_threshold(scores, ratio, round_to=None):
    """PaddleSlim's optimal threshold: sort |scores| ascending, find the first
    position where the cumulative share of squared scores exceeds ``ratio``,
    and prune every unit scoring below the midpoint there. So ``ratio`` is the
    share of squared-scale energy removed, not of channels."""
    s = np.maximum(np.abs(np.asarray(scores, dtype="float64")), 1e-18)
    order = np.sort(s)
    share = np.cumsum(order ** 2) / np.sum(order ** 2)
    i = int(np.searchsorted(share, ratio, side="right"))
    if i <= 0:
        return np.array([], dtype=int)
    if i >= len(order):
        threshold = order[-1]
    else:
        threshold = (order[i - 1] + order[i]) / 2.0
    return np.flatnonzero(s < threshold)      # the largest score is never below it: one unit stays
