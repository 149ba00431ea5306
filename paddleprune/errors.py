"""Exceptions raised by paddleprune.

Every user-facing error is one of these classes. Each subclasses the matching
built-in (``ValueError`` / ``FileNotFoundError``) so ordinary ``except`` clauses
keep working, and each message names the parameter, file, line or value at
fault and what was expected.
"""


class PaddlePruneError(Exception):
    """Base class of every paddleprune error."""


class InvalidParameterError(PaddlePruneError, ValueError):
    """An argument has a wrong value or type."""


class UnknownParameterNameError(InvalidParameterError, KeyError):
    """A model parameter name that the model does not have."""

    def __str__(self):  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class UnprunableError(InvalidParameterError):
    """A parameter was asked to be pruned but belongs to no prunable channel group."""


class PruningWarning(UserWarning):
    """A channel group was left unpruned because of an op or layer we do not understand."""


class UnsupportedOpError(PaddlePruneError, ValueError):
    """An operator the channel analysis does not understand."""


class DataFormatError(PaddlePruneError, ValueError):
    """A data file is malformed; the message names the file and line."""

    def __init__(self, message, path=None, line=None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class DataNotFoundError(PaddlePruneError, FileNotFoundError):
    """A data directory, list file or image that does not exist."""


class SensitivityFileError(PaddlePruneError, ValueError):
    """A sensitivities file is unreadable, unsafe or made for something else."""


class NotTrainedError(PaddlePruneError, ValueError):
    """A model was used before it was trained or loaded."""
