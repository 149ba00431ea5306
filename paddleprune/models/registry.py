"""Model registry: ``@register_model(name)``, ``get_model(name, **kwargs)``, ``list_models(pattern)``.

Registered networks subclass :class:`Net`, which stores the constructor arguments so
``get_params()`` can write them to ``model.yml`` and ``get_model`` rebuild the network.
"""
import copy
import fnmatch
import inspect

import paddle.nn as nn

from paddleprune.errors import InvalidParameterError

__all__ = ["Net", "register_model", "get_model", "list_models"]

_MODELS = {}


class Net(nn.Layer):
    """Base of registered networks: records its constructor arguments.

    Subclasses store every ``__init__`` argument under its own name (plain Python
    values); :meth:`get_params` reads them back through the signature.
    """

    #: the name the class was registered under (set by :func:`register_model`)
    registered_name = None

    def get_params(self):
        """Return ``{argument: value}`` for every constructor argument.

        Returns
        -------
        dict
            A copy; ``get_model(self.registered_name, **net.get_params())`` rebuilds the
            same architecture.
        """
        sig = inspect.signature(type(self).__init__)
        return {name: copy.deepcopy(getattr(self, name)) for name in sig.parameters if name != "self"}

    def get_config(self):
        """Return ``{'name': registered name, 'params': get_params()}``, from which
        ``get_model(config['name'], **config['params'])`` rebuilds the same architecture."""
        return {"name": self.registered_name, "params": self.get_params()}


def register_model(name):
    """Class decorator: register a network class under ``name``.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``'MobileNetV2'``.

    Returns
    -------
    callable
        The decorator; it returns the class unchanged apart from ``registered_name``.

    Raises
    ------
    InvalidParameterError
        If ``name`` is already registered or is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"register_model: 'name' must be a non-empty str; got {name!r}.")

    def decorator(cls):
        if name in _MODELS:
            raise InvalidParameterError(
                f"register_model: model {name!r} is already registered (by {_MODELS[name].__module__}."
                f"{_MODELS[name].__qualname__}).")
        cls.registered_name = name
        _MODELS[name] = cls
        return cls

    return decorator


def list_models(pattern=None):
    """Return the sorted registered names, optionally filtered by a glob ``pattern``.

    Parameters
    ----------
    pattern : str, optional
        ``fnmatch`` pattern, case-sensitive, e.g. ``'ResNet*'``.

    Returns
    -------
    list of str
    """
    names = sorted(_MODELS)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_model(name, **kwargs):
    """Build the registered network ``name`` with ``kwargs``.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    **kwargs
        Constructor arguments (e.g. ``num_classes=10, scale=0.5``).

    Returns
    -------
    Net

    Raises
    ------
    InvalidParameterError
        Unknown name (the message lists the known names) or bad arguments.
    """
    if name not in _MODELS:
        raise InvalidParameterError(f"get_model: unknown model {name!r}; known models: {list_models()}.")
    cls = _MODELS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as exc:
        raise InvalidParameterError(f"get_model: bad arguments for {name}: {exc}.") from None
    return cls(**kwargs)
