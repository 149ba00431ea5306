"""Transform protocol shared by every task: ``Transform``, ``Compose``, config helpers.

A transform is a callable mapping a sample dict to a sample dict. The sample holds
``'image'`` (an ``H x W x C`` ``uint8`` or ``float32`` array; readers give RGB) and
task-specific keys such as ``'label'``. Constructors only validate and store their
arguments, so ``to_config()`` can write them to ``model.yml`` and
:func:`build_from_config` can rebuild the same pipeline.

Random transforms draw from a :class:`numpy.random.Generator`. ``Compose.seed(s)`` gives
all of them one seeded generator (call it in a DataLoader ``worker_init_fn`` with
``base_seed + worker_id`` so workers do not repeat each other); without a seed each
transform lazily creates an unseeded generator.
"""
import abc
import copy
import inspect
import logging
import numbers

import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.utils.checks import check_int
from paddleprune.utils.plain import to_plain

logger = logging.getLogger(__name__)

__all__ = ["Transform", "RandomTransform", "Compose", "build_from_config", "to_chw"]


def _check_size(owner, name, value):
    """Raise unless ``value`` is a positive int or a pair of positive ints ``[w, h]``."""
    if isinstance(value, (list, tuple)):
        ok = len(value) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value)
        if not ok:
            raise InvalidParameterError(
                f"{owner}: {name!r} must be an int >= 1 or a pair [width, height] of such ints; "
                f"got {value!r}.")
        return [int(v) for v in value]
    return check_int(owner, name, value)


def _check_triple(owner, name, value, positive=False):
    """Raise unless ``value`` is a sequence of 3 real numbers (all > 0 if ``positive``)."""
    ok = isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    if ok and positive:
        ok = all(v > 0 for v in value)
    if not ok:
        what = "3 positive numbers" if positive else "3 numbers"
        raise InvalidParameterError(f"{owner}: {name!r} must be a list of {what}; got {value!r}.")
    return [float(v) for v in value]


def to_chw(image):
    """Return ``image`` (``H x W x C`` or ``H x W``) as a contiguous ``C x H x W`` float32 array.

    Parameters
    ----------
    image : numpy.ndarray
        Image in channel-last layout.

    Returns
    -------
    numpy.ndarray
        ``float32`` array in channel-first layout (a 2-D input gets one channel).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


class Transform(abc.ABC):
    """Base class: ``__call__(sample) -> sample`` and ``to_config() -> {ClassName: {args}}``.

    Subclasses validate and store each constructor argument under its own name;
    :meth:`get_params` reads them back through the constructor signature.
    """

    @abc.abstractmethod
    def __call__(self, sample):
        """Transform ``sample`` (a dict with at least ``'image'``) and return it."""

    def get_params(self):
        """Return the constructor arguments as a dict (copies, YAML-friendly).

        Returns
        -------
        dict
            ``{argument name: value}`` for every argument of ``__init__``.
        """
        sig = inspect.signature(type(self).__init__)
        return {name: to_plain(getattr(self, name)) for name in sig.parameters
                if name != "self" and sig.parameters[name].kind is not inspect.Parameter.VAR_KEYWORD}

    def to_config(self):
        """Return ``{ClassName: {argument: value}}`` for ``model.yml``.

        Returns
        -------
        dict
            One-key dict mapping the class name to :meth:`get_params`.
        """
        return {type(self).__name__: self.get_params()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class RandomTransform(Transform):
    """A transform that draws random numbers from ``self.rng``."""

    _rng = None

    @property
    def rng(self):
        """The :class:`numpy.random.Generator` in use (created unseeded on first use)."""
        if self._rng is None:
            self._rng = np.random.default_rng()
        return self._rng

    def set_rng(self, rng):
        """Use ``rng`` (a :class:`numpy.random.Generator`) for every later draw.

        Parameters
        ----------
        rng : numpy.random.Generator
            The generator to draw from.

        Raises
        ------
        InvalidParameterError
            If ``rng`` is not a Generator.
        """
        if not isinstance(rng, np.random.Generator):
            raise InvalidParameterError(
                f"{type(self).__name__}.set_rng: 'rng' must be a numpy.random.Generator; got {rng!r}.")
        self._rng = rng


class Compose(Transform):
    """Apply a list of transforms in order (PaddleX ``Compose(transforms)``).

    Parameters
    ----------
    transforms : list
        Non-empty list of callables, each mapping a sample dict to a sample dict.

    Raises
    ------
    InvalidParameterError
        If ``transforms`` is not a non-empty list or an item is not callable.
    """

    def __init__(self, transforms):
        if not isinstance(transforms, (list, tuple)):
            raise InvalidParameterError(
                f"Compose: 'transforms' must be a list of transforms; got {type(transforms).__name__}.")
        if len(transforms) == 0:
            raise InvalidParameterError("Compose: 'transforms' must hold at least one transform; got [].")
        for i, op in enumerate(transforms):
            if isinstance(op, type) or not callable(op):
                hint = " (a class, not an instance: add '()')" if isinstance(op, type) else ""
                raise InvalidParameterError(
                    f"Compose: 'transforms[{i}]' must be a callable transform instance; "
                    f"got {op!r}{hint}.")
        self.transforms = list(transforms)

    def __call__(self, sample):
        """Run every transform on ``sample``.

        Parameters
        ----------
        sample : dict or numpy.ndarray
            A sample dict with ``'image'``; a bare array is wrapped as ``{'image': array}``.

        Returns
        -------
        dict
            The transformed sample.

        Raises
        ------
        InvalidParameterError
            If the sample has no 3-D ``'image'`` array, or a transform does not return a dict.
        """
        if isinstance(sample, np.ndarray):
            sample = {"image": sample}
        if not isinstance(sample, dict) or not isinstance(sample.get("image"), np.ndarray):
            raise InvalidParameterError(
                f"Compose: a sample must be a dict with an 'image' numpy array; got {type(sample).__name__}.")
        if sample["image"].ndim != 3:
            raise InvalidParameterError(
                f"Compose: 'image' must be a 3-D H x W x C array; got shape {sample['image'].shape}.")
        for op in self.transforms:
            sample = op(sample)
            if not isinstance(sample, dict):
                raise InvalidParameterError(
                    f"Compose: transform {op!r} must return the sample dict; got {type(sample).__name__}.")
        return sample

    def seed(self, seed):
        """Give every random transform one generator seeded with ``seed``.

        Parameters
        ----------
        seed : int or numpy.random.SeedSequence
            Seed for :func:`numpy.random.default_rng`.

        Returns
        -------
        Compose
            ``self``, for chaining.
        """
        rng = np.random.default_rng(seed)
        for op in self.transforms:
            if hasattr(op, "set_rng"):
                op.set_rng(rng)
            elif isinstance(op, Compose):
                op.seed(rng.integers(2**63))
        return self

    def set_epoch(self, epoch):
        """Tell epoch-dependent transforms (those with ``set_epoch``, e.g. ``MixupImage``)
        which training epoch (from 1) is running; the train loop calls it every epoch."""
        for op in self.transforms:
            if hasattr(op, "set_epoch"):
                op.set_epoch(epoch)
        return self

    def get_params(self):
        """Return ``{'transforms': [config of each transform]}``."""
        return {"transforms": self.to_config_list()}

    def to_config_list(self):
        """Return the list ``[{ClassName: {args}}, ...]`` stored in ``model.yml``.

        Raises
        ------
        InvalidParameterError
            If an item has no ``to_config()`` (e.g. a plain function).
        """
        out = []
        for i, op in enumerate(self.transforms):
            if not hasattr(op, "to_config"):
                raise InvalidParameterError(
                    f"Compose.to_config_list: 'transforms[{i}]' ({op!r}) has no to_config(); "
                    "only paddleprune transforms can be saved.")
            out.append(op.to_config())
        return out

    def __repr__(self):
        inner = ",\n  ".join(repr(op) for op in self.transforms)
        return f"Compose([\n  {inner}])"


def build_from_config(config_list, classes):
    """Rebuild a :class:`Compose` from ``[{ClassName: {args}}, ...]``.

    Parameters
    ----------
    config_list : list of dict
        As returned by :meth:`Compose.to_config_list`.
    classes : dict
        ``{ClassName: class}`` of the transforms allowed (one task's namespace).

    Returns
    -------
    Compose

    Raises
    ------
    InvalidParameterError
        If the list is malformed, a name is unknown (the message lists the known
        names) or the arguments do not fit the class.
    """
    if not isinstance(config_list, (list, tuple)):
        raise InvalidParameterError(
            f"build_transforms: 'config_list' must be a list of {{Name: {{args}}}} dicts; "
            f"got {type(config_list).__name__}.")
    ops = []
    for i, item in enumerate(config_list):
        if not isinstance(item, dict) or len(item) != 1:
            raise InvalidParameterError(
                f"build_transforms: item {i} must be a one-key dict {{Name: {{args}}}}; got {item!r}.")
        (name, args), = item.items()
        if name not in classes:
            raise InvalidParameterError(
                f"build_transforms: unknown transform {name!r} at item {i}; known: {sorted(classes)}.")
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise InvalidParameterError(
                f"build_transforms: arguments of {name} (item {i}) must be a dict; got {args!r}.")
        try:
            inspect.signature(classes[name]).bind(**args)
        except TypeError as exc:
            raise InvalidParameterError(f"build_transforms: bad arguments for {name} (item {i}): {exc}.") from None
        ops.append(classes[name](**copy.deepcopy(args)))
    return Compose(ops)
