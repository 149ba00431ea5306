"""From a sensitivities table to per-layer pruning ratios.

- ``get_ratios_by_loss``: PaddleX 1.x / PaddleSlim rule for one loss threshold.
- ``round_to`` / ``round_ratios``: PaddleSlim's channel alignment (``_round_to``).
- ``search_loss_threshold``: binary search on one threshold for a cost target
  (e.g. a FLOPs cut); the engine supplies the cost function.
"""
import logging
import math
from typing import NamedTuple

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.sensitivity_table import is_number, normalize_sensitivities
from paddleprune.utils.checks import check_int, check_interval

logger = logging.getLogger(__name__)

__all__ = ["get_ratios_by_loss", "round_to", "round_ratios", "SearchResult", "search_loss_threshold"]


def _ratio_for(points, loss):
    """Ratio of one layer (``points`` sorted by ratio) for threshold ``loss``."""
    for i in range(len(points) - 1, -1, -1):
        r0, l0 = points[i]
        if l0 <= loss:
            if i == len(points) - 1:
                return r0
            r1, l1 = points[i + 1]
            # l1 > loss >= l0 because every point above i exceeds the threshold,
            # so l1 - l0 > 0; the guard only protects against future edits.
            return r0 + (loss - l0) * (r1 - r0) / (l1 - l0) if l1 > l0 else r0
    return 0.0


def get_ratios_by_loss(sensitivities, loss):
    """Per-layer pruning ratios for a tolerated relative metric loss.

    For each layer independently (PaddleX 1.x / PaddleSlim ``get_ratios_by_loss``):
    sort the points by ratio and scan from the largest ratio down to the first
    point whose loss is ``<= loss``. If that is the largest ratio, use it;
    otherwise interpolate linearly towards the next larger ratio,
    ``r0 + (loss - l0) * (r1 - r0) / (l1 - l0)``. A layer over the threshold at
    every ratio (or without points) gets 0.0; no layer is left out.

    Parameters
    ----------
    sensitivities : dict
        ``{param_name: {ratio: relative_loss}}``; ratio keys with float noise
        (``0.30000000000000004``) are rounded to 6 decimals first.
    loss : float
        The threshold, e.g. ``eval_metric_loss=0.05``. Negative values are
        allowed (losses can be negative when pruning improves the metric).

    Returns
    -------
    dict
        ``{param_name: ratio}`` with every layer of the table, ratios in [0, 1).

    Raises
    ------
    InvalidParameterError
        If ``loss`` is not a finite number or the table is malformed.

    Notes
    -----
    Curves are used as measured, not smoothed. On a non-monotone curve the
    largest ratio whose loss is within the threshold wins even if a smaller
    ratio exceeded it (the PaddleX rule). The result is still non-decreasing
    in ``loss`` for every layer, which ``search_loss_threshold`` relies on.
    """
    if not is_number(loss) or not math.isfinite(float(loss)):
        raise InvalidParameterError(f"get_ratios_by_loss: 'loss' must be a finite number; got {loss!r}.")
    table = normalize_sensitivities(sensitivities, "get_ratios_by_loss")
    return {name: float(_ratio_for(list(points.items()), float(loss))) for name, points in table.items()}


def _check_positive_int(owner, name, value):
    return check_int(owner, name, value, what="a positive integer")


def round_to(ratio, channels, align):
    """Adjust a pruning ratio so the kept channel count is a multiple of ``align``.

    PaddleSlim's ``_round_to``: ``kept = round((1 - ratio) * channels / align) * align``
    (Python rounding, half to even); a kept count of 0 becomes ``align``; the
    new ratio is ``(channels - kept) / channels``, clamped at >= 0.

    Parameters
    ----------
    ratio : float
        Pruning ratio in [0, 1).
    channels : int
        Original channel count of the layer.
    align : int
        Alignment factor, e.g. 8.

    Returns
    -------
    float
        The aligned ratio. Example: 32 channels at 0.2 keep 26 unaligned and
        ``round_to(0.2, 32, 8) == 0.25`` keeps 24.

    Raises
    ------
    InvalidParameterError
        If ``ratio`` is outside [0, 1) or ``channels``/``align`` are not positive integers.
    """
    check_interval("round_to", "ratio", ratio, 0, 1, closed="left")
    channels = _check_positive_int("round_to", "channels", channels)
    align = _check_positive_int("round_to", "align", align)
    kept = round((1 - float(ratio)) * channels / align) * align
    if kept == 0:
        kept = align
    return max(float(channels - kept) / channels, 0.0)


def round_ratios(ratios, channels, align=None):
    """Apply ``round_to`` to every entry of ``{param_name: ratio}``.

    Parameters
    ----------
    ratios : dict
        ``{param_name: ratio}``.
    channels : dict
        ``{param_name: original channel count}`` (on the pruned axis).
    align : int, optional
        Alignment factor; None returns a copy of ``ratios`` unchanged.

    Returns
    -------
    dict
        Aligned ratios.

    Raises
    ------
    InvalidParameterError
        If a name has no channel count, or a value is invalid (see ``round_to``).
    """
    if align is None:
        return dict(ratios)
    missing = sorted(set(ratios) - set(channels))
    if missing:
        raise InvalidParameterError(f"round_ratios: no channel count for {missing[:5]}"
                                    f"{' ...' if len(missing) > 5 else ''}.")
    return {name: round_to(r, channels[name], align) for name, r in ratios.items()}


class SearchResult(NamedTuple):
    """Outcome of ``search_loss_threshold``."""

    threshold: float
    """The loss threshold chosen."""
    ratios: dict
    """``{param_name: ratio}`` at that threshold (after ``postprocess``)."""
    reached: bool
    """False when the target cannot be met even at the largest threshold."""


def search_loss_threshold(sensitivities, target, cost_fn, tol=1e-3, max_iter=50, *, xtol=1e-6,
                          patience=4, postprocess=None):
    """Find the smallest loss threshold whose ratios remove at least ``target``.

    Bisection on one threshold ``t`` shared by all layers; ``cost_fn`` must be
    non-decreasing in ``t`` (FLOPs removed by ``get_ratios_by_loss(sens, t)`` is).
    The invariant is ``cost(lo) < target <= cost(hi)``; ``hi`` starts at the
    largest measured loss (every layer at its largest ratio) and ``lo`` just
    below the smallest (nothing pruned, assumed to cost 0).

    Parameters
    ----------
    sensitivities : dict
        ``{param_name: {ratio: loss}}``.
    target : float
        Fraction to remove, in (0, 1], e.g. ``pruned_flops=0.5``.
    cost_fn : callable
        ``cost_fn(ratios) -> float``: the fraction removed by ``ratios``.
    tol : float
        Stop once ``target <= cost <= target + tol``.
    max_iter : int
        At most this many bisection steps (plus one call at the largest threshold).
    xtol : float
        Stop when the threshold interval is narrower than this.
    patience : int
        Stop when this many steps in a row return a cost already seen at one
        end of the interval: the reached value stops changing (cost functions
        that count whole channels are step functions).
    postprocess : callable, optional
        ``postprocess(ratios) -> ratios`` applied before ``cost_fn`` and to the
        returned ratios, e.g. ``lambda r: round_ratios(r, channels, 8)``.

    Returns
    -------
    SearchResult
        ``(threshold, ratios, reached)``. When the target is unreachable the
        largest threshold and its ratios are returned with ``reached=False``
        and a warning is logged.

    Raises
    ------
    InvalidParameterError
        On invalid arguments, an empty table, or a cost that is not a finite number.
    """
    owner = "search_loss_threshold"
    check_interval(owner, "target", target, 0, 1, closed="right")
    check_interval(owner, "tol", tol, 0, 1, closed="left")
    check_interval(owner, "xtol", xtol, 0, math.inf)
    max_iter = _check_positive_int(owner, "max_iter", max_iter)
    patience = _check_positive_int(owner, "patience", patience)
    if not callable(cost_fn):
        raise InvalidParameterError(f"{owner}: 'cost_fn' must be callable; got {cost_fn!r}.")
    table = normalize_sensitivities(sensitivities, owner)
    losses = [loss for points in table.values() for loss in points.values()]
    if not losses:
        raise InvalidParameterError(f"{owner}: 'sensitivities' holds no measured points; "
                                    f"compute sensitivities first.")

    def evaluate(t):
        ratios = get_ratios_by_loss(table, t)
        if postprocess is not None:
            ratios = postprocess(ratios)
        cost = cost_fn(ratios)
        if not is_number(cost) or not math.isfinite(float(cost)):
            raise InvalidParameterError(f"{owner}: 'cost_fn' must return the fraction removed as a finite "
                                        f"number; got {cost!r}.")
        return ratios, float(cost)

    hi = max(losses)
    ratios_hi, cost_hi = evaluate(hi)
    if cost_hi < target:
        logger.warning("%s: target %.4f cannot be reached; every layer at its largest measured ratio "
                       "removes %.4f (threshold %.4g). Returning those ratios.", owner, target, cost_hi, hi)
        return SearchResult(hi, ratios_hi, False)
    lo, cost_lo = min(losses) - xtol, None
    steps = repeats = 0
    while steps < max_iter and cost_hi - target > tol and hi - lo > xtol and repeats < patience:
        mid = (lo + hi) / 2
        ratios, cost = evaluate(mid)
        steps += 1
        repeats = repeats + 1 if cost in (cost_hi, cost_lo) else 0
        if cost >= target:
            hi, ratios_hi, cost_hi = mid, ratios, cost
        else:
            lo, cost_lo = mid, cost
        logger.debug("%s: step %d threshold %.6g removes %.6f.", owner, steps, mid, cost)
    logger.info("%s: threshold %.6g removes %.4f (target %.4f) after %d steps.",
                owner, hi, cost_hi, target, steps + 1)
    return SearchResult(hi, ratios_hi, True)
