"""Argument validation with one message shape:
``"Owner.method: 'name' must be <what>; got <value>."``"""
import numbers

from paddleprune.errors import InvalidParameterError


def check_interval(owner, name, value, low, high, closed="neither"):
    """Raise unless ``low < value < high`` (ends included per ``closed``:
    'neither', 'left', 'right' or 'both')."""
    left = closed in ("left", "both")
    right = closed in ("right", "both")
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if left else value > low) and (value <= high if right else value < high)
    if not ok:
        interval = f"{'[' if left else '('}{low}, {high}{']' if right else ')'}"
        raise InvalidParameterError(f"{owner}: {name!r} must be a number in {interval}; got {value!r}.")
    return value


def check_choice(owner, name, value, choices):
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidParameterError(
            f"{owner}: {name!r} must be one of {sorted(map(str, choices))}; got {value!r}.")
    return value
