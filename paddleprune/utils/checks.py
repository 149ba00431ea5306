"""Argument validation with one message shape:
``"Owner.method: 'name' must be <what>; got <value>."``"""
import numbers

from paddleprune.errors import InvalidParameterError


def check_int(owner, name, value, low=1, *, allow=(), what=None):
    """Raise unless ``value`` is an int (not bool) ``>= low`` or one of ``allow``; returns ``int(value)``.

    The message says ``'name' must be <what>``; ``what`` defaults to ``an int >= <low>``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (value < low and value not in allow):
        raise InvalidParameterError(f"{owner}: {name!r} must be {what or f'an int >= {low}'}; got {value!r}.")
    return int(value)


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
