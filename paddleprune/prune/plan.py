"""Pruning plans: which elements of which parameter axes go, and applying them.

``apply`` shrinks tensors physically and in place (or, ``lazy=True``, zeroes
the pruned entries). Originals needed by ``restore`` live in the plan, never
in the model, so ``state_dict`` holds exactly the pruned weights.
"""
import logging
from dataclasses import dataclass

import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.prune.handlers import handler_for
from paddleprune.prune.tensors import write_dense

logger = logging.getLogger(__name__)


@dataclass
class PruningMask:
    """Keep-mask (1 keep, 0 prune) over one axis of a parameter."""
    dims: list
    mask: np.ndarray
    ratio: float
    group: str = None

    def __str__(self):
        return f"{self.ratio}\t{self.dims}"


def _tensor(param):
    return np.array(param.value().get_tensor())


def set_tensor(param, array):
    """Replace ``param``'s data in place (shape may change) on the device it is on;
    the Parameter object stays."""
    write_dense(param.value().get_tensor(), array)


def _accumulators(opt, param):
    """(holder dict, key) pairs of ``opt``'s state tensors for ``param``."""
    found = []
    for store in getattr(opt, "_accumulators", {}).values():
        if param.name in store:
            found.append((store, param.name))
    masters = getattr(opt, "_master_weights", None) or {}
    if param.name in masters:
        found.append((masters, param.name))
    return found


class PruningPlan:
    """Masks per parameter plus the record needed to replay them.

    ``records`` is a list of steps, one per applied prune; a step is a list of
    ``{"group", "axis", "units", "pruned"}`` dicts (the group's root parameter
    and axis, its unit count, the pruned unit indices).
    :func:`paddleprune.prune.apply_records` replays them on a fresh model.
    """

    def __init__(self, name=None):
        self.name = name
        self._masks = {}
        self.records = []
        self._pruned_flops = None
        self._backup = {}
        self._opt_backup = {}

    @property
    def pruned_flops(self):
        return self._pruned_flops

    @property
    def masks(self):
        return self._masks

    def add(self, param, mask):
        """Add a :class:`PruningMask`; masks on the same dims are ANDed."""
        for old in self._masks.setdefault(param, []):
            if old.dims == mask.dims:
                old.mask = (old.mask.astype(bool) & mask.mask.astype(bool)).astype("int32")
                return
        self._masks[param].append(mask)

    def extend(self, plan, same_step=False):
        """Merge another plan's masks and records into this one; with ``same_step``
        its records join this plan's last step (both computed on the same model state)."""
        for param, masks in plan._masks.items():
            for m in masks:
                self.add(param, PruningMask(list(m.dims), m.mask.copy(), m.ratio, m.group))
        if same_step and self.records:
            for step in plan.records:
                self.records[-1].extend(step)
        else:
            self.records.extend([list(step) for step in plan.records])
        return self

    def contains(self, name, dims=None):
        if name not in self._masks:
            return False
        return dims is None or any(m.dims == list(dims) for m in self._masks[name])

    def is_empty(self):
        return all(m.mask.all() for masks in self._masks.values() for m in masks)

    def __str__(self):
        lines = ["variable name\tpruned ratio\tpruned dims"]
        for name, masks in self._masks.items():
            for m in masks:
                lines.append(f"{name}:\t{round(1 - m.mask.mean(), 4)}\t{m.dims}")
        lines.append(f"pruned FLOPs: {self._pruned_flops}")
        return "\n".join(lines)

    # -- applying ----------------------------------------------------------------
    def apply(self, model, lazy=False, opt=None, backup=True):
        """Apply to ``model``: shrink (or zero, when ``lazy``) every masked axis.

        ``opt``: an optimizer created before pruning; its state tensors for the
        pruned parameters are cut with the same masks (an optimizer state of
        any other shape raises). ``backup=False`` keeps nothing for ``restore``.
        """
        params = dict(model.named_parameters())
        layers = dict(model.named_sublayers(include_self=True))
        missing = [n for n in self._masks if n not in params]
        if missing:
            raise InvalidParameterError(f"PruningPlan.apply: the model has no parameter(s) {missing[:5]}.")
        self._check_shapes(params)
        touched = {}
        for name, masks in self._masks.items():
            param = params[name]
            old_shape = [int(d) for d in param.shape]
            arr = _tensor(param)
            if backup and name not in self._backup:
                self._backup[name] = arr.copy()
            new = self._cut(arr, masks, lazy)
            if opt is not None and not lazy:
                self._cut_optimizer(opt, param, old_shape, masks, backup)
            set_tensor(param, new)
            param.clear_gradient(False)
            prefix, _, attr = name.rpartition(".")
            touched.setdefault(prefix, {})[attr] = old_shape
        if not lazy:
            for prefix, old_shapes in touched.items():
                layer = layers.get(prefix, model)
                handler = handler_for(layer)
                if handler is not None:
                    handler(layer, old_shapes)
        return self

    def _check_shapes(self, params):
        for name, masks in self._masks.items():
            shape = params[name].shape
            for m in masks:
                if len(m.mask) != shape[m.dims[0]]:
                    raise InvalidParameterError(
                        f"PruningPlan.apply: mask for {name} axis {m.dims[0]} has length {len(m.mask)}, "
                        f"but the parameter has {shape[m.dims[0]]} there (was the model pruned since?).")

    @staticmethod
    def _cut(arr, masks, lazy):
        for m in masks:
            axis = m.dims[0]
            if lazy:
                shape = [1] * arr.ndim
                shape[axis] = -1
                arr = arr * m.mask.reshape(shape).astype(arr.dtype)
            else:
                arr = np.take(arr, np.flatnonzero(m.mask), axis=axis)
        return arr

    def _cut_optimizer(self, opt, param, old_shape, masks, backup):
        for store, key in _accumulators(opt, param):
            acc = store[key]
            shape = [int(d) for d in acc.shape]
            if shape == old_shape:
                arr = _tensor(acc)
                if backup:
                    self._opt_backup.setdefault((id(store), key), (store, key, arr.copy()))
                set_tensor(acc, self._cut(arr, masks, lazy=False))
            elif int(np.prod(shape)) > 1:
                raise InvalidParameterError(
                    f"PruningPlan.apply: optimizer state of {param.name} has shape {shape}, not the "
                    f"parameter's {old_shape}; rebuild the optimizer after pruning instead.")

    def restore(self, model, opt=None):
        """Put back every tensor this plan changed (and the layers' attributes)."""
        params = dict(model.named_parameters())
        layers = dict(model.named_sublayers(include_self=True))
        for name, arr in self._backup.items():
            param = params[name]
            old_shape = [int(d) for d in param.shape]
            set_tensor(param, arr)
            param.clear_gradient(False)
            prefix, _, attr = name.rpartition(".")
            layer = layers.get(prefix, model)
            handler = handler_for(layer)
            if handler is not None:
                handler(layer, {attr: old_shape})
        for store, key, arr in self._opt_backup.values():
            set_tensor(store[key], arr)
        self._backup.clear()
        self._opt_backup.clear()
