"""Validation of ``train()`` arguments, with one message shape:
``"MobileNetV2.train: 'eval_metric_loss' must be a number in (0, 1); got 1.5."``"""
import math
import numbers
import os

from paddleprune.errors import InvalidParameterError
from paddleprune.utils.checks import check_interval

__all__ = ["check_int", "check_bool", "check_epochs_list", "check_dataset", "check_train_args"]


def check_int(owner, name, value, low):
    """Raise unless ``value`` is an int (not bool) ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InvalidParameterError(f"{owner}: {name!r} must be an int >= {low}; got {value!r}.")
    return int(value)


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


def check_train_args(owner, args):
    """Validate the common ``train()`` arguments in ``args`` (a dict); returns a cleaned copy.

    Raises
    ------
    InvalidParameterError
        Naming the first argument that is out of range, with the value received.
    """
    out = dict(args)
    out["num_epochs"] = check_int(owner, "num_epochs", args["num_epochs"], 1)
    check_dataset(owner, "train_dataset", args["train_dataset"])
    check_dataset(owner, "eval_dataset", args["eval_dataset"], required=False)
    out["train_batch_size"] = check_int(owner, "train_batch_size", args["train_batch_size"], 1)
    if out["train_batch_size"] > len(args["train_dataset"]):
        raise InvalidParameterError(
            f"{owner}: 'train_batch_size' must be at most the number of training samples "
            f"({len(args['train_dataset'])}), since the last partial batch is dropped; "
            f"got {args['train_batch_size']!r}.")
    out["save_interval_epochs"] = check_int(owner, "save_interval_epochs", args["save_interval_epochs"], 1)
    out["log_interval_steps"] = check_int(owner, "log_interval_steps", args["log_interval_steps"], 1)
    if not isinstance(args["save_dir"], (str, os.PathLike)) or not os.fspath(args["save_dir"]):
        raise InvalidParameterError(f"{owner}: 'save_dir' must be a folder path; got {args['save_dir']!r}.")
    out["save_dir"] = os.fspath(args["save_dir"])
    check_interval(owner, "learning_rate", args["learning_rate"], 0, math.inf)
    out["warmup_steps"] = check_int(owner, "warmup_steps", args["warmup_steps"], 0)
    check_interval(owner, "warmup_start_lr", args["warmup_start_lr"], 0, math.inf, closed="left")
    out["lr_decay_epochs"] = check_epochs_list(owner, "lr_decay_epochs", args["lr_decay_epochs"])
    check_interval(owner, "lr_decay_gamma", args["lr_decay_gamma"], 0, math.inf)
    check_bool(owner, "use_vdl", args["use_vdl"])
    check_interval(owner, "eval_metric_loss", args["eval_metric_loss"], 0, 1)
    check_bool(owner, "early_stop", args["early_stop"])
    out["early_stop_patience"] = check_int(owner, "early_stop_patience", args["early_stop_patience"], 1)
    if args["prune_round_to"] is not None:
        out["prune_round_to"] = check_int(owner, "prune_round_to", args["prune_round_to"], 1)
    for name in ("pretrain_weights", "resume_checkpoint", "sensitivities_file"):
        value = args[name]
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise InvalidParameterError(f"{owner}: {name!r} must be None or a path; got {value!r}.")
        out[name] = None if value is None else os.fspath(value)
    return out
