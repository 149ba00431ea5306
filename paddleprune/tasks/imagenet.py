"""``pretrain_weights='IMAGENET'``: Paddle's published ImageNet weights loaded into a task's network.

The files, their cache and the name mapping are in :mod:`paddleprune.models.pretrained`; this
module decides, per task, what is loaded and what starts from scratch (a head for another
class count, a stem of another shape, a detector's head), and checks that everything else took.
"""
import logging

import numpy as np

from paddleprune.errors import DataFormatError
from paddleprune.models import pretrained
from paddleprune.tasks.checkpoint import load_backbone_state, read_params, set_state_checked

logger = logging.getLogger(__name__)

__all__ = ["load_imagenet"]


def load_imagenet(task, net, owner):
    """Load Paddle's published ImageNet weights (``pretrain_weights='IMAGENET'``) into ``net``.

    Classifiers (MobileNetV1/V2 at scale 1.0, ResNet18, ResNet50) load everything; the head is
    dropped when ``num_classes`` != 1000, and with ``small_input=True`` a stem whose shape
    differs (ResNet's 3x3 ``conv1``) starts from scratch; both are logged. A detector with a
    ``backbone_prefix`` loads its backbone from the backbone network's weights.

    Returns
    -------
    dict
        ``path``, ``url``, ``md5`` (published), ``file_md5``, and ``fresh``: the tensors
        left at their initialisation.

    Raises
    ------
    InvalidParameterError
        A model or scale with no published weights (listing the supported ones).
    DataNotFoundError
        Not cached and not downloadable (naming the URL and the cache path).
    DataFormatError
        The file does not hold paddle.vision's tensors.
    """
    prefix = getattr(task, "backbone_prefix", None)
    if prefix:
        name, scale = getattr(task, "backbone", None), getattr(task, "backbone_scale", 1.0)
        what = f"{type(task).__name__} with backbone={name!r}, backbone_scale={scale}"
    else:
        name, scale = getattr(task, "net_name", None), getattr(task, "scale", 1.0)
        what = type(task).__name__ + (f" with scale={scale}" if name in pretrained.IMAGENET else "")
    src = pretrained.fetch_imagenet(owner, name, scale, what)
    state = pretrained.to_paddleprune_names(name, read_params(src["path"], return_numpy=True), src["path"])
    source = f"'IMAGENET' ({src['path']}) holds a {name}"
    if prefix:
        src["fresh"] = load_backbone_state(owner, net, prefix, state, source, src["path"])
        return src
    own = {k: list(v.shape) for k, v in net.state_dict().items()}
    fresh = []
    head = [k for k in own if k.startswith(pretrained.HEAD)]
    if any(own[k] != list(np.shape(state[k])) for k in head):
        fresh += head
        logger.info("%s: num_classes=%s differs from ImageNet's 1000: the classifier head (%s) starts from "
                    "scratch", owner, task.num_classes, ", ".join(head))
    if getattr(task, "small_input", False):
        stem = [k for k in own if k.startswith(pretrained.STEM[name]) and own[k] != list(np.shape(state[k]))]
        fresh += stem
        logger.warning("%s: small_input=True: the stem differs from the ImageNet model (stride 1, no max-pool for "
                       "ResNets), so the ImageNet filters see the image at another scale%s", owner,
                       f"; {', '.join(stem)} (another kernel size) starts from scratch" if stem else "")
    load = {k: v for k, v in state.items() if k not in fresh}
    bad = [f"{k}: {list(np.shape(load[k])) if k in load else 'missing'} in the file, {own[k]} in the model"
           for k in own if k not in fresh and (k not in load or own[k] != list(np.shape(load[k])))]
    if bad:
        raise DataFormatError(f"the ImageNet {name} weights do not fit this {type(task).__name__}: "
                              + "; ".join(bad[:5]), src["path"])
    set_state_checked(net, load, src["path"])
    logger.info("%s: loaded the ImageNet %s weights %s (%d tensors; %d left at their initialisation)", owner,
                name, src["path"], len(load), len(fresh))
    src["fresh"] = fresh
    return src
