"""Task registry: ``model.yml`` names a task class (``Model: MobileNetV2``); ``load_model``
finds it here. Task modules register their classes with :func:`register_task`."""
import importlib
import importlib.util

from paddleprune.errors import InvalidParameterError

__all__ = ["register_task", "get_task_class", "list_tasks", "TASK_MODULES"]

_TASKS = {}
#: Modules imported on a lookup miss (a module that does not exist yet is skipped).
TASK_MODULES = ("paddleprune.tasks.classification", "paddleprune.tasks.detection",
                "paddleprune.tasks.segmentation")


def register_task(cls):
    """Class decorator: make ``cls`` loadable by its class name.

    Raises
    ------
    InvalidParameterError
        If another class already has that name.
    """
    name = cls.__name__
    if name in _TASKS and _TASKS[name] is not cls:
        raise InvalidParameterError(
            f"register_task: a task named {name!r} is already registered "
            f"({_TASKS[name].__module__}.{_TASKS[name].__qualname__}).")
    _TASKS[name] = cls
    return cls


def _import_all():
    for module in TASK_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def list_tasks():
    """Sorted names of every registered task class."""
    _import_all()
    return sorted(_TASKS)


def get_task_class(name):
    """The task class registered as ``name``.

    Raises
    ------
    InvalidParameterError
        Unknown name; the message lists the known ones.
    """
    if name not in _TASKS:
        _import_all()
    if name not in _TASKS:
        raise InvalidParameterError(f"unknown model class {name!r}; known: {sorted(_TASKS)}.")
    return _TASKS[name]
