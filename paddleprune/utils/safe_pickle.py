"""Read pickles that may only hold plain data.

``pickle.load`` imports and calls whatever global a file names, so a pickle
from elsewhere can run arbitrary code. ``restricted_loads`` resolves globals
only from an allow-list (plain containers, numbers, numpy scalars by default)
and refuses everything else before anything is called.
"""
import builtins
import codecs
import io
import pickle

import numpy as np

from paddleprune.errors import DataFormatError

__all__ = ["PLAIN_DATA_GLOBALS", "RestrictedUnpickler", "restricted_loads"]


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for ``_codecs.encode``, which Python 3 protocol-2 pickles use for bytes."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed on str with the latin-1 codec")
    return obj.encode("latin-1", errors)


#: ``(module, name) -> object`` admitted by default: what a dict of dicts of
#: floats needs, as written by Python 2 or 3 with numpy 1.x or 2.x keys.
PLAIN_DATA_GLOBALS = {
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): dict,
    # plain containers and numbers; "__builtin__" is the Python 2 spelling
    **{(module, name): getattr(builtins, name)
       for module in ("builtins", "__builtin__")
       for name in ("dict", "list", "tuple", "set", "frozenset", "float", "int")},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals.

    Parameters
    ----------
    file : binary file
        The pickle stream.
    path : str
        File name used in messages.
    allowed : dict, optional
        ``(module, name) -> object``; defaults to ``PLAIN_DATA_GLOBALS``.
    error : type, optional
        Exception class raised for a refused global (default DataFormatError).

    Notes
    -----
    Strings written by Python 2 come back as ``bytes`` (``encoding="bytes"``,
    as PaddleSlim read them). Subclasses may override ``refuse`` to explain
    particular globals.
    """

    def __init__(self, file, path, allowed=None, error=None):
        super().__init__(file, encoding="bytes")
        self.path = path
        self.allowed = PLAIN_DATA_GLOBALS if allowed is None else allowed
        self.error = DataFormatError if error is None else error

    def refuse(self, module, name):
        """Return the exception raised for a global that is not allowed."""
        return self.error(
            f"{self.path}: refused to unpickle global '{module}.{name}'; only plain containers, numbers "
            f"and numpy scalars are allowed. Nothing from the file was run.")

    def find_class(self, module, name):
        found = self.allowed.get((module, name))
        if found is None:
            raise self.refuse(module, name)
        return found


def restricted_loads(data, path, allowed=None, error=None, unpickler=RestrictedUnpickler):
    """Unpickle ``data`` with ``unpickler``; any malformed stream raises ``error``.

    Parameters
    ----------
    data : bytes
        The pickle.
    path : str
        File name used in messages.
    allowed, error
        As for ``RestrictedUnpickler``.
    unpickler : type
        A ``RestrictedUnpickler`` subclass.

    Returns
    -------
    object
        The unpickled plain data.

    Raises
    ------
    DataFormatError (or ``error``)
        If a global is refused or the stream is corrupt or truncated.
    """
    error = DataFormatError if error is None else error
    try:
        return unpickler(io.BytesIO(data), path, allowed=allowed, error=error).load()
    except error:
        raise
    except Exception as exc:  # EOFError, UnpicklingError, ValueError, ... from a bad byte stream
        raise error(f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); the file is corrupt "
                    f"or truncated.") from None
