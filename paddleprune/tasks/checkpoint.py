"""Saved model folders: ``model.pdparams``, ``model.pdopt``, ``model.yml``.

A folder is written to a temp folder beside it, then renamed into place, so a killed
run never leaves a half-written ``epoch_N`` or ``best_model``. ``model.yml`` (YAML,
``safe_dump``) holds what :func:`load_model` needs to rebuild the task and the network:
class, constructor arguments, labels, transforms, completed epochs, ``status``
(``Normal`` or ``Prune``) and, for a pruned model, the pruning record, which is
replayed on the fresh network **before** the weights are loaded. Every tensor is
checked (``set_state_dict`` alone only warns about a wrong shape and keeps random
weights).
"""
import logging
import os
import shutil

import numpy as np
import paddle
import yaml

from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError
from paddleprune.utils.atomic import atomic_write_text, replace_dir, staging_dir
from paddleprune.utils.plain import to_plain

logger = logging.getLogger(__name__)

__all__ = ["MODEL_FILES", "PADDLEX_WEIGHTS", "save_model_dir", "copy_model_dir", "read_model_info", "read_params",
           "state_problems", "parse_model_yml", "task_from_info", "load_model", "load_pretrain", "load_backbone_state",
           "set_state_checked", "apply_prune_info", "to_plain"]

MODEL_FILES = ("model.pdparams", "model.yml")
#: PaddleX 1.x names of downloadable weights; only 'IMAGENET' is served (from paddle.vision's files).
PADDLEX_WEIGHTS = ("IMAGENET", "COCO", "CITYSCAPES", "BAIDU10W", "BAIDU2W", "PASCALVOC")


def save_model_dir(task, path, optimizer=None, global_step=0, eval_metrics=None, train_seed=None):
    """Write ``task``'s network (and ``optimizer``'s state) to folder ``path`` atomically.

    ``model.pdopt`` holds the optimizer state by structural parameter name, the global
    step and ``train_seed`` (the run's shuffling seed, so a resumed run repeats it).

    Returns
    -------
    str
        ``path``.
    """
    from paddleprune.tasks.optim import optimizer_state
    path = os.path.abspath(os.fspath(path))
    with staging_dir(path) as tmp:
        paddle.save(task.net.state_dict(), os.path.join(tmp, "model.pdparams"))
        if optimizer is not None:
            state = optimizer_state(optimizer, task.net, global_step)
            state["train_seed"] = train_seed
            paddle.save(state, os.path.join(tmp, "model.pdopt"))
        info = to_plain(task.model_info(eval_metrics))
        atomic_write_text(os.path.join(tmp, "model.yml"), yaml.safe_dump(info, sort_keys=False))
        replace_dir(tmp, path)
    return path


def copy_model_dir(src, dst):
    """Copy saved model folder ``src`` to ``dst`` atomically (e.g. ``epoch_3`` -> ``best_model``)."""
    dst = os.path.abspath(os.fspath(dst))
    with staging_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        replace_dir(tmp, dst)
    return dst


def parse_model_yml(path):
    """The ``model.yml`` mapping at ``path``, checked to hold ``Model``, ``_init_params``
    and ``status`` (raises DataFormatError naming the file otherwise)."""
    try:
        with open(path, encoding="utf-8") as f:
            info = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise DataFormatError(f"not valid YAML ({exc})", path) from None
    if not isinstance(info, dict):
        raise DataFormatError("expected a mapping of model fields", path)
    for key in ("Model", "_init_params", "status"):
        if key not in info:
            raise DataFormatError(f"missing field {key!r}", path)
    return info


def task_from_info(info):
    """The task ``model.yml``'s ``info`` describes, its labels and transforms restored (no network yet)."""
    from paddleprune.tasks.registry import get_task_class
    try:
        task = get_task_class(info["Model"])(**info["_init_params"])
    except (InvalidParameterError, TypeError) as exc:
        raise DataFormatError(f"cannot rebuild the model: {exc}", os.path.join(info["_dir"], "model.yml")) from None
    task.restore_info(info)
    return task


def read_model_info(model_dir):
    """Read and check ``model_dir/model.yml``.

    Raises
    ------
    DataNotFoundError
        The folder, ``model.yml`` or ``model.pdparams`` is missing.
    DataFormatError
        ``model.yml`` is not YAML or lacks a required field.
    """
    model_dir = os.fspath(model_dir)
    if not os.path.isdir(model_dir):
        raise DataNotFoundError(f"model folder not found: {model_dir}")
    for name in MODEL_FILES:
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise DataNotFoundError(f"{model_dir} holds no {name}; expected a folder saved by train() "
                                    "(best_model or epoch_N)")
    path = os.path.join(model_dir, "model.yml")
    info = parse_model_yml(path)
    if info["status"] not in ("Normal", "Prune"):
        raise DataFormatError(f"status {info['status']!r} cannot be loaded for training or evaluation; "
                              "expected 'Normal' or 'Prune'", path)
    if info["status"] == "Prune":
        prune = info.get("prune")
        if not isinstance(prune, dict) or "records" not in prune or "input_shape" not in prune:
            raise DataFormatError("status is 'Prune' but the 'prune' field with 'input_shape' and "
                                  "'records' is missing", path)
    if not isinstance(info["_init_params"], dict):
        raise DataFormatError("'_init_params' must be a mapping", path)
    info["_dir"] = model_dir
    return info


def apply_prune_info(net, info):
    """Replay the pruning record of a ``Prune`` model on a freshly built ``net``."""
    from paddleprune.prune import apply_records
    if info.get("status") == "Prune":
        apply_records(net, list(info["prune"]["input_shape"]), info["prune"]["records"])
    return net


def read_params(path, return_numpy=False):
    """``paddle.load(path)``; any failure becomes a DataFormatError naming the file."""
    try:
        state = paddle.load(path, return_numpy=return_numpy)
    except Exception as exc:  # paddle raises assorted errors on a corrupt file
        raise DataFormatError(f"cannot read weights ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(state, dict):
        raise DataFormatError("expected a dict", path)
    return state


def state_problems(state, net):
    """Every way ``state`` (name -> tensor) fails to fit ``net``: missing, extra, mismatched."""
    expected = {k: list(v.shape) for k, v in net.state_dict().items()}
    problems = []
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    for k in expected:
        if k in state and list(np.shape(state[k])) != expected[k]:
            problems.append(f"{k} has shape {list(np.shape(state[k]))} in the file but "
                            f"{expected[k]} in the model")
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing from the file: {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) in the file unknown to the model: {extra[:5]}")
    return problems


def _set_state(net, state):
    net.set_state_dict(state)
    for k, v in net.state_dict().items():  # set_state_dict only warns; make sure it took
        if list(v.shape) != list(np.shape(state[k])):
            raise DataFormatError(f"{k} was not loaded (shape {list(v.shape)})")


def load_model(model_dir):
    """Load a model saved by ``train()`` (``best_model`` or ``epoch_N``).

    The task and its network are rebuilt from ``model.yml``; a pruned model gets its
    pruning record replayed before the weights are loaded; every tensor is checked.

    Parameters
    ----------
    model_dir : str or os.PathLike

    Returns
    -------
    BaseTask
        Ready for ``evaluate``, ``predict``, export, or as ``pretrain_weights``.

    Raises
    ------
    DataNotFoundError
        The folder or one of its files is missing.
    DataFormatError
        ``model.yml`` is malformed, or the weights do not fit the rebuilt network
        (the message names the missing, extra or mismatched tensors).
    """
    info = read_model_info(model_dir)
    task = task_from_info(info)
    net = apply_prune_info(task.build_net(), info)
    path = os.path.join(info["_dir"], "model.pdparams")
    state = read_params(path)
    problems = state_problems(state, net)
    if problems:
        raise DataFormatError(f"the weights do not fit the {info['Model']} described by model.yml: "
                              + "; ".join(problems), path)
    _set_state(net, state)
    net.eval()
    task.net = net
    logger.info("loaded %s (%s) from %s", info["Model"], info["status"], info["_dir"])
    return task


def load_backbone_state(owner, net, prefix, state, source, path):
    """Load classifier weights ``state`` into the ``prefix`` sub-network of ``net`` (a detector's
    backbone): every ``prefix + name`` tensor must be the classifier's ``name`` tensor, same
    shape; the rest of ``net`` (the head) keeps its initialisation. ``source`` says where
    ``state`` comes from ("<dir> holds a MobileNetV1"), ``path`` is its file. Returns the
    names of the tensors left at their initialisation."""
    own = {k: list(v.shape) for k, v in net.state_dict().items() if k.startswith(prefix)}
    problems = [f"{k[len(prefix):]} missing" for k in own if k[len(prefix):] not in state]
    problems += [f"{k[len(prefix):]} has shape {list(np.shape(state[k[len(prefix):]]))}, the backbone {shape}"
                 for k, shape in own.items() if k[len(prefix):] in state
                 and list(np.shape(state[k[len(prefix):]])) != shape]
    if not own or problems:
        raise InvalidParameterError(
            f"{owner}: 'pretrain_weights' {source} whose weights do not fit this model's backbone ({len(problems)} "
            f"problem(s): {'; '.join(problems[:5])}); use a classifier of the same network and scale (e.g. "
            "MobileNetV1 with the detector's backbone_scale).")
    set_state_checked(net, {k: state[k[len(prefix):]] for k in own}, path)
    fresh = [k for k in net.state_dict() if k not in own]
    logger.info("%s: loaded the %d backbone tensors ('pretrain_weights' %s); the head (%d tensors) starts "
                "from scratch", owner, len(own), source, len(fresh))
    return fresh


def set_state_checked(net, state, path):
    """``set_state_dict(state)``, then check that every tensor of ``state`` took (it only warns).
    Tensors ``state`` lacks keep their values (without Paddle's "Skip loading" warning each)."""
    net.set_state_dict({k: state.get(k, v) for k, v in net.state_dict().items()})
    for k, v in net.state_dict().items():
        if k in state and not np.array_equal(v.numpy(), np.asarray(state[k])):
            raise DataFormatError(f"{k} was not loaded", path)


def load_pretrain(task, net, pretrain_weights, owner):
    """Load ``pretrain_weights`` (a saved model folder or a ``.pdparams`` file) into ``net``.

    A pruned folder has its record replayed first. For a task with a ``backbone_prefix``
    (a detector), the folder of an unpruned classifier of the backbone's network gives the
    backbone's weights (PaddleX starts detectors from ImageNet classifiers the same way).
    ``'IMAGENET'`` loads Paddle's published weights (:func:`paddleprune.tasks.imagenet.load_imagenet`). Returns the
    folder's ``model.yml`` info (None for a bare file or ``'IMAGENET'``).

    Raises
    ------
    InvalidParameterError
        Another PaddleX download name (``'COCO'`` ...); ``'IMAGENET'`` for a model without
        published weights; a folder holding another model class; weights that do not fit
        (naming each tensor).
    DataNotFoundError
        The path does not exist; ImageNet weights neither cached nor downloadable.
    """
    path = os.fspath(pretrain_weights)
    if not os.path.exists(path):
        if path.upper() == "IMAGENET":
            from paddleprune.tasks.imagenet import load_imagenet
            load_imagenet(task, net, owner)
            return None
        if path.upper() in PADDLEX_WEIGHTS:
            raise InvalidParameterError(
                f"{owner}: 'pretrain_weights' {path!r} names PaddleX's downloadable weights, which "
                "paddleprune cannot provide (Paddle publishes only ImageNet classifier weights; use "
                "'IMAGENET'). Pass None to start from random weights, or the folder of a model saved by train().")
        raise DataNotFoundError(f"{owner}: 'pretrain_weights' not found: {path}; expected None, a model "
                                "folder saved by train() (best_model or epoch_N) or a .pdparams file.")
    info = None
    if os.path.isdir(path):
        info = read_model_info(path)
        prefix = getattr(task, "backbone_prefix", None)
        if info["Model"] != type(task).__name__ and prefix and info["status"] == "Normal":
            params = os.path.join(info["_dir"], "model.pdparams")
            load_backbone_state(owner, net, prefix, read_params(params),
                                f"{info['_dir']} holds a {info['Model']}", params)
            return None
        if info["Model"] != type(task).__name__:
            raise InvalidParameterError(
                f"{owner}: 'pretrain_weights' {path} holds a {info['Model']}, not a {type(task).__name__}.")
        apply_prune_info(net, info)
        path = os.path.join(path, "model.pdparams")
    state = read_params(path)
    problems = state_problems(state, net)
    if problems:
        hint = ""
        if info is not None:
            ours = task.get_params()
            diff = {k: (info["_init_params"].get(k), v) for k, v in ours.items()
                    if info["_init_params"].get(k) != v}
            if diff:
                hint = " Constructor arguments differ (there, here): " + ", ".join(
                    f"{k}={a!r} vs {b!r}" for k, (a, b) in diff.items()) + "."
        raise InvalidParameterError(f"{owner}: 'pretrain_weights' {path} does not fit this "
                                    f"{type(task).__name__}: " + "; ".join(problems) + "." + hint)
    _set_state(net, state)
    logger.info("%s: loaded pretrain weights from %s", owner, path)
    return info
