"""Helpers the metrics share."""
import numpy as np

from paddleprune.errors import InvalidParameterError

__all__ = ["as_numpy", "check_class_names"]


def as_numpy(x):
    """A Paddle tensor or array-like as a numpy array."""
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def check_class_names(owner, class_names, num_classes):
    """None, or ``class_names`` as a tuple of ``num_classes`` distinct strings (else an error)."""
    if class_names is None:
        return None
    names = None if isinstance(class_names, str) else list(class_names)
    if names is None or len(names) != num_classes or not all(isinstance(n, str) for n in names) \
            or len(set(names)) != len(names):
        raise InvalidParameterError(
            f"{owner}: 'class_names' must be {num_classes} distinct strings (num_classes); got {class_names!r}.")
    return tuple(names)
