"""Plain values for ``model.yml`` and the like: what ``yaml.safe_dump`` accepts."""
import copy

import numpy as np

__all__ = ["to_plain"]


def to_plain(obj):
    """``obj`` as YAML-safe Python values: dict keys as str, tuples and arrays as lists,
    numpy scalars as Python numbers; anything else is deep-copied, so the result shares no
    mutable object with ``obj``."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return copy.deepcopy(obj)
