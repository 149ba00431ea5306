"""Validation of ``train()`` arguments, with one message shape:
``"MobileNetV2.train: 'eval_metric_loss' must be a number in (0, 1); got 1.5."``"""
import dataclasses
import math
import numbers
import os
from typing import Any, List, Optional

from paddleprune.errors import InvalidParameterError
from paddleprune.utils import dist
from paddleprune.utils.checks import check_int, check_interval

__all__ = ["TrainOptions", "check_int", "check_bool", "check_epochs_list", "check_dataset", "check_train_args"]


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The ``train()`` arguments the train loop (``tasks/trainer.py``) runs with, as
    :func:`check_train_args` returns them (ints as ``int``, paths as ``str``)."""
    num_epochs: int
    train_dataset: Any
    train_batch_size: int
    eval_dataset: Any
    save_interval_epochs: int
    log_interval_steps: int
    save_dir: str
    pretrain_weights: Optional[str]
    optimizer: Any
    learning_rate: float
    warmup_steps: int
    warmup_start_lr: float
    lr_decay_epochs: List[int]
    lr_decay_gamma: float
    use_vdl: bool
    sensitivities_file: Optional[str]
    eval_metric_loss: float
    early_stop: bool
    early_stop_patience: int
    resume_checkpoint: Optional[str]
    prune_round_to: Optional[int]


def check_bool(owner, name, value):
    """Raise unless ``value`` is True or False."""
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{owner}: {name!r} must be True or False; got {value!r}.")
    return value


def check_epochs_list(owner, name, value):
    """Raise unless ``value`` is a list/tuple of strictly increasing ints >= 1."""
    ok = isinstance(value, (list, tuple)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value)
    if ok:
        ok = all(b > a for a, b in zip(value, value[1:]))
    if not ok:
        raise InvalidParameterError(
            f"{owner}: {name!r} must be a list of strictly increasing ints >= 1; got {value!r}.")
    return [int(v) for v in value]


def check_dataset(owner, name, dataset, required=True):
    """Raise unless ``dataset`` has ``__len__``/``__getitem__`` and at least one sample."""
    if dataset is None and not required:
        return None
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise InvalidParameterError(
            f"{owner}: {name!r} must be a data set (e.g. paddleprune.datasets.ImageNet); got {dataset!r}.")
    if len(dataset) == 0:
        raise InvalidParameterError(f"{owner}: {name!r} holds no samples.")
    return dataset


def _check_path(owner, name, value):
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise InvalidParameterError(f"{owner}: {name!r} must be None or a path; got {value!r}.")
    return None if value is None else os.fspath(value)


def check_train_args(owner, args):
    """Validate the common ``train()`` arguments ``args`` (a dict of every
    :class:`TrainOptions` field, or a ``TrainOptions``); returns a checked ``TrainOptions``.

    Raises
    ------
    InvalidParameterError
        Naming the first argument that is out of range, with the value received.
    """
    a = args if isinstance(args, TrainOptions) else TrainOptions(**args)
    num_epochs = check_int(owner, "num_epochs", a.num_epochs, 1)
    check_dataset(owner, "train_dataset", a.train_dataset)
    check_dataset(owner, "eval_dataset", a.eval_dataset, required=False)
    train_batch_size = check_int(owner, "train_batch_size", a.train_batch_size, 1)
    if train_batch_size > len(a.train_dataset):
        raise InvalidParameterError(
            f"{owner}: 'train_batch_size' must be at most the number of training samples "
            f"({len(a.train_dataset)}), since the last partial batch is dropped; "
            f"got {a.train_batch_size!r}.")
    nranks = dist.world()[1]
    if train_batch_size % nranks:
        raise InvalidParameterError(
            f"{owner}: 'train_batch_size' is the batch of all {nranks} processes together (as in PaddleX) and "
            f"must be a multiple of {nranks}; got {train_batch_size}.")
    save_interval_epochs = check_int(owner, "save_interval_epochs", a.save_interval_epochs, 1)
    log_interval_steps = check_int(owner, "log_interval_steps", a.log_interval_steps, 1)
    if not isinstance(a.save_dir, (str, os.PathLike)) or not os.fspath(a.save_dir):
        raise InvalidParameterError(f"{owner}: 'save_dir' must be a folder path; got {a.save_dir!r}.")
    check_interval(owner, "learning_rate", a.learning_rate, 0, math.inf)
    warmup_steps = check_int(owner, "warmup_steps", a.warmup_steps, 0)
    check_interval(owner, "warmup_start_lr", a.warmup_start_lr, 0, math.inf, closed="left")
    lr_decay_epochs = check_epochs_list(owner, "lr_decay_epochs", a.lr_decay_epochs)
    check_interval(owner, "lr_decay_gamma", a.lr_decay_gamma, 0, math.inf)
    check_bool(owner, "use_vdl", a.use_vdl)
    check_interval(owner, "eval_metric_loss", a.eval_metric_loss, 0, 1)
    check_bool(owner, "early_stop", a.early_stop)
    early_stop_patience = check_int(owner, "early_stop_patience", a.early_stop_patience, 1)
    prune_round_to = None if a.prune_round_to is None else check_int(owner, "prune_round_to", a.prune_round_to, 1)
    return dataclasses.replace(
        a, num_epochs=num_epochs, train_batch_size=train_batch_size, save_interval_epochs=save_interval_epochs,
        log_interval_steps=log_interval_steps, save_dir=os.fspath(a.save_dir), warmup_steps=warmup_steps,
        lr_decay_epochs=lr_decay_epochs, early_stop_patience=early_stop_patience, prune_round_to=prune_round_to,
        pretrain_weights=_check_path(owner, "pretrain_weights", a.pretrain_weights),
        resume_checkpoint=_check_path(owner, "resume_checkpoint", a.resume_checkpoint),
        sensitivities_file=_check_path(owner, "sensitivities_file", a.sensitivities_file))
