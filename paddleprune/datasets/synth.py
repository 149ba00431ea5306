"""Helpers shared by the embedded demo-set builders (``demo``, ``demo_det``)."""
import numpy as np

__all__ = ["luma", "stratified_split"]


def luma(rgb):
    """Mean ITU-R 601 luma of an ``... x 3`` RGB array."""
    return float(rgb[..., 0].mean() * 0.299 + rgb[..., 1].mean() * 0.587 + rgb[..., 2].mean() * 0.114)


def stratified_split(rng, targets, val_fraction):
    """Per class, ``val_fraction`` of the indices (drawn with ``rng``) to val, the rest to train;
    returns the sorted train and val index lists."""
    train, val = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)
