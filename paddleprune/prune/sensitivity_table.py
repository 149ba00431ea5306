"""The in-memory sensitivities table: validation and canonical ratio keys.

A table is ``{structural_param_name: {ratio: relative_loss}}``. Normalised, a
ratio is a float in (0, 1) rounded to 6 decimals (so PaddleSlim's
``np.arange(0.1, 1, 0.1)`` keys such as ``0.30000000000000004`` become ``0.3``)
and a loss is a finite float, possibly negative.
"""
import logging
import math
import numbers

import numpy as np

from paddleprune.errors import InvalidParameterError, SensitivityFileError

logger = logging.getLogger(__name__)

__all__ = ["RATIO_DECIMALS", "DEFAULT_RATIOS", "canonical_ratio", "ratio_to_str", "normalize_sensitivities",
           "relative_loss", "warn_if_zero_baseline"]

RATIO_DECIMALS = 6
#: Pruning ratios measured by default.
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def relative_loss(base, value):
    """(base - value) / base; may be negative. With a baseline of 0 (a model that scores nothing
    on the evaluation data) a relative loss is undefined and the absolute one, base - value, is
    used: pruning cannot lose what is not there (:func:`warn_if_zero_baseline` says so)."""
    if base == 0:
        return float(base - value)
    return (base - value) / base


def warn_if_zero_baseline(base, metric):
    """Warn that a baseline of 0 makes every layer look insensitive."""
    if base == 0:
        logger.warning("sensitivity: the baseline %s is 0 on the evaluation data, so no layer can lose anything "
                       "and every layer will look insensitive (losses are base - pruned, not relative). Train "
                       "the model further or evaluate on more images before using these sensitivities.", metric)


def canonical_ratio(value):
    """Return ``value`` as a float rounded to 6 decimals (``0.30000000000000004`` -> ``0.3``)."""
    return round(float(value), RATIO_DECIMALS)


def ratio_to_str(ratio):
    """Return the short canonical JSON key of a ratio: ``0.3`` -> ``"0.3"``, ``0.125`` -> ``"0.125"``."""
    text = f"{canonical_ratio(ratio):.{RATIO_DECIMALS}f}".rstrip("0").rstrip(".")
    return text or "0"


def is_number(value):
    """True for real numbers (numpy ones included), False for bools and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def parse_ratio(key, name, where):
    """Return the canonical float of a ratio key (a number, or a string for JSON)."""
    shown = str(key.item() if isinstance(key, np.generic) else key)
    try:
        if not (is_number(key) or isinstance(key, str)):
            raise TypeError
        ratio = canonical_ratio(key)
    except (TypeError, ValueError, OverflowError):
        raise SensitivityFileError(f"{where}: ratio key '{shown}' for {name!r} is not a number.") from None
    if not 0.0 < ratio < 1.0:  # also refuses nan and keys that round to 0 or 1
        raise SensitivityFileError(f"{where}: ratio key '{shown}' for {name!r} must be in (0, 1).")
    return ratio


def validate_table(table, where, decode_bytes=False):
    """Validate a ``{name: {ratio: loss}}`` mapping; return a fresh normalised dict.

    ``where`` is a string or a callable ``name -> str`` used as the message prefix.
    Raises SensitivityFileError; callers validating arguments re-raise it as
    InvalidParameterError.
    """
    prefix = where if callable(where) else (lambda _name: where)
    if not isinstance(table, dict):
        raise SensitivityFileError(f"{prefix(None)}: expected a dict {{param_name: {{ratio: loss}}}}; "
                                   f"got {type(table).__name__}.")
    out = {}
    for name, points in table.items():
        if isinstance(name, bytes) and decode_bytes:  # Python 2-era pickles
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                raise SensitivityFileError(f"{prefix(None)}: parameter name {name!r} is not UTF-8.") from None
        if not isinstance(name, str) or not name:
            raise SensitivityFileError(f"{prefix(None)}: parameter name {name!r} must be a non-empty string.")
        at = prefix(name)
        if not isinstance(points, dict):
            raise SensitivityFileError(f"{at}: entry for {name!r} must be a dict of ratio -> loss; "
                                       f"got {type(points).__name__}.")
        clean = {}
        for key, loss in points.items():
            ratio = parse_ratio(key, name, at)
            if not is_number(loss) or not math.isfinite(float(loss)):
                raise SensitivityFileError(f"{at}: loss {loss!r} for {name!r} at ratio {ratio} must be a "
                                           f"finite number.")
            if ratio in clean and clean[ratio] != float(loss):
                logger.warning("%s: %r has two points that round to ratio %s (%r and %r); keeping the later.",
                               at, name, ratio, clean[ratio], float(loss))
            clean[ratio] = float(loss)
        out[name] = dict(sorted(clean.items()))
    return out


def normalize_sensitivities(sensitivities, owner="normalize_sensitivities"):
    """Validate an in-memory table and return a normalised copy.

    Parameters
    ----------
    sensitivities : dict
        ``{param_name: {ratio: loss}}``; ratio keys may carry float noise
        (``0.30000000000000004``) or be numpy floats.
    owner : str
        Name used as the prefix of error messages.

    Returns
    -------
    dict
        ``{param_name: {round(ratio, 6): float(loss)}}`` with points sorted by ratio.

    Raises
    ------
    InvalidParameterError
        If a name is not a string, a ratio is not in (0, 1) or a loss is not finite.
    """
    try:
        return validate_table(sensitivities, owner)
    except SensitivityFileError as exc:
        raise InvalidParameterError(str(exc)) from None
