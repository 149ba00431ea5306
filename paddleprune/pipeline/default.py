"""Build the bundled ``'DEFAULT'`` sensitivities (``paddleprune build-default``).

Stage 1 and stage 2 of the pipeline on a data set (or, with ``skip_train``, stage 2 alone on
Paddle's published ImageNet weights, as PaddleX made its own DEFAULT files), then the file is copied into
``builtin_sensitivities/`` and listed in its ``manifest.json`` with what produced it
(data, weights, model parameters, input shape, date, command), so that
``sensitivities_file='DEFAULT'`` can say where its numbers come from.
"""
import dataclasses
import datetime
import logging
import os
import shutil

from paddleprune.errors import DataNotFoundError, InvalidParameterError
from paddleprune.pipeline.run import compute_sensitivities, load_datasets, train_backbone, train_original
from paddleprune.pipeline.tasks import get_task
from paddleprune.tasks.pruning import BUILTIN_DIR, read_manifest
from paddleprune.tasks.checkpoint import load_model
from paddleprune.tasks.pruning import model_params as task_model_params
from paddleprune.utils.atomic import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["build_default", "install_default", "imagenet_model"]


def install_default(sen_file, key, entry, builtin_dir=None):
    """Copy ``sen_file`` to ``builtin_dir/<key>.json`` and list it under ``key`` in the manifest.

    ``entry`` describes the file (``metric``, ``dataset``, ``weights``, ``command``,
    ``model_params``, ``input_shape`` ...); ``file`` and ``date`` are filled in. Both
    files are written atomically. Returns the installed path.
    """
    builtin_dir = builtin_dir or BUILTIN_DIR
    name = f"{key}.json"
    target = os.path.join(builtin_dir, name)
    with open(sen_file, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    files = read_manifest(builtin_dir)
    files[key] = {"file": name, "date": datetime.date.today().isoformat(), **entry}
    atomic_write_json(os.path.join(builtin_dir, "manifest.json"), {"files": dict(sorted(files.items()))})
    logger.info("installed %s as the DEFAULT sensitivities for %r (%s)", sen_file, key, target)
    return target


def build_default(task="classification", data_dir=None, save_dir="output/build_default", builtin_dir=None,
                  quick=False, command=None, model=None, model_params=None, input_size=None,
                  pretrain_weights=None, skip_train=False, epochs=None):
    """Train the task's model on ``data_dir`` (default: the embedded demo set), compute its
    sensitivities and install them as the ``'DEFAULT'`` file for the model's key.

    ``model`` names another model of the task's package (e.g. ``'ResNet50'``), built with
    ``model_params`` (constructor keywords) at ``input_size``; default: the pipeline's model.
    ``pretrain_weights`` (e.g. ``'IMAGENET'``) starts stage 1 instead of stage 0's backbone.
    ``epochs`` trains stage 1 that long instead (its learning-rate decay epochs scaled alike).
    ``skip_train=True`` (with ``pretrain_weights='IMAGENET'``) trains nothing: the
    sensitivities are those of Paddle's published weights on the validation set, as
    PaddleX made its DEFAULT files (see :func:`imagenet_model`); without ``input_size`` the
    model's own eval transforms are used (for classifiers: short side 256, centre crop 224).

    A re-run skips the finished stages (and resumes a stopped one), like the pipeline.
    Returns the installed path.
    """
    from paddleprune.prune import load_sensitivities
    spec = get_task(task)
    if skip_train:
        return _build_untrained(spec, data_dir, save_dir, builtin_dir, quick, command, model, model_params,
                                input_size, pretrain_weights)
    if model is not None:
        spec = spec.with_model(model, model_params, input_size)
    settings = spec.quick if quick else spec.full
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=epochs, lr_decay_epochs=tuple(
            max(1, round(e * epochs / settings.epochs)) for e in settings.lr_decay_epochs))
    demo = data_dir is None
    data_dir = data_dir or spec.demo_data()
    train_ds, val_ds = load_datasets(spec, settings, data_dir)
    backbone = pretrain_weights or train_backbone(spec, settings, os.path.join(save_dir, "stage0_backbone"))
    best = train_original(spec, settings, train_ds, val_ds, os.path.join(save_dir, "stage1_train"),
                          pretrain_weights=backbone)
    sen_file = compute_sensitivities(spec, settings, val_ds, best, os.path.join(save_dir, "stage2_sensitivities"))
    trained = load_model(best)
    _, meta = load_sensitivities(sen_file, return_meta=True)
    images = min(settings.sensitivity_images or len(val_ds), len(val_ds))
    source = f"the paddleprune embedded {task} demo set (built from scikit-learn's digits and photos)" if demo \
        else data_dir
    if pretrain_weights:
        start = f", starting from pretrain_weights {pretrain_weights!r}"
    elif backbone:
        start = ", its backbone first trained as a classifier on the embedded classification set"
    else:
        start = ""
    entry = {
        "metric": meta.get("metric"), "baseline": meta.get("baseline"), "ratios": meta.get("ratios"),
        "dataset": f"{source}: {len(train_ds)} training images, sensitivities on {images} validation images",
        "weights": f"trained here for {settings.epochs} epochs by stage 1 ({meta.get('metric')} "
                   f"{meta.get('baseline', 0):.4f} on those {images} validation images){start}"
                   + ("" if str(pretrain_weights).upper() == "IMAGENET" else "; not ImageNet weights"),
        "model_params": task_model_params(trained),
        "input_shape": list(trained.input_shape),
        "command": command or f"paddleprune build-default --task {task}" + ("" if demo else f" --data {data_dir}")
                   + (" --quick" if quick else ""),
    }
    return install_default(sen_file, trained.sensitivity_key(), entry, builtin_dir)


def imagenet_model(spec, settings, val_ds, model_dir):
    """The task model with Paddle's ImageNet weights, unchanged, saved to ``model_dir`` for stage 2.

    Every tensor must come from the published file: the data set must have ImageNet's 1000
    classes (``labels.txt`` in ImageNet's standard class order, as the published head
    was trained), and the model must be a classifier with published weights. Returns the
    :func:`paddleprune.tasks.imagenet.load_imagenet` report (``url``, ``md5``, ``file_md5`` ...).

    Raises
    ------
    InvalidParameterError
        Another class count, or a model part that would start from scratch (a detector's
        head, a ResNet ``small_input`` stem): its sensitivities would be meaningless.
    """
    from paddleprune.tasks.imagenet import load_imagenet
    owner = "build_default(skip_train=True)"
    model = spec.build_model(len(val_ds.labels), settings)
    why = ("PaddleX computed its DEFAULT files on ImageNet's validation set with the 1000-class head: use a data "
           "dir whose labels.txt lists ImageNet's 1000 classes in the standard order, or train (no skip_train).")
    if len(val_ds.labels) != 1000:
        raise InvalidParameterError(f"{owner}: the data set has {len(val_ds.labels)} classes, the ImageNet head "
                                    f"1000; untrained, a fresh head makes the metric meaningless. {why}")
    net = model.build_net()
    report = load_imagenet(model, net, owner)
    if report["fresh"]:
        raise InvalidParameterError(f"{owner}: {len(report['fresh'])} tensor(s) of {type(model).__name__} have no "
                                    f"ImageNet weights ({', '.join(report['fresh'][:3])} ...); untrained, they make "
                                    f"the metric meaningless. {why}")
    net.eval()
    model.net, model.labels = net, list(val_ds.labels)
    model.eval_transforms = val_ds.transforms
    model.input_shape = model.input_shape_of(val_ds)
    model.save_model(model_dir)
    return report


def _val_dataset(spec, data_dir, transforms):
    """The validation set of ``data_dir`` alone (the training list is not needed)."""
    import paddleprune.datasets as datasets
    val_list, labels = (os.path.join(data_dir, name) for name in spec.lists[1:3])
    for path in (val_list, labels):
        if not os.path.isfile(path):
            raise DataNotFoundError(f"build_default: {path} does not exist; a {spec.name} data dir holds "
                                    f"{', '.join(spec.lists[1:3])} ({spec.reader} layout).")
    return getattr(datasets, spec.reader)(data_dir, val_list, labels, transforms=transforms)


def _build_untrained(spec, data_dir, save_dir, builtin_dir, quick, command, model, model_params, input_size,
                     pretrain_weights):
    """``build_default(skip_train=True)``: sensitivities of the published ImageNet weights."""
    from paddleprune.prune import load_sensitivities
    if str(pretrain_weights).upper() != "IMAGENET":
        raise InvalidParameterError(f"build_default: skip_train=True measures Paddle's published ImageNet weights "
                                    f"as they are; pass pretrain_weights='IMAGENET' (got {pretrain_weights!r}).")
    if data_dir is None:
        raise InvalidParameterError("build_default: skip_train=True needs 'data_dir', an ImageNet-style data set "
                                    "with ImageNet's 1000 classes (the embedded demo set has 10).")
    spec = spec.with_model(model or spec.model, model_params, input_size or 224)
    settings = spec.quick if quick else spec.full
    # at the default size, the task's own eval transforms: PaddleX's ImageNet protocol (short side 256, centre 224)
    transforms = spec.transforms("eval") if input_size else spec.build_model(1, settings).default_transforms("eval")
    val_ds = _val_dataset(spec, data_dir, transforms)
    model_dir = os.path.join(save_dir, "stage1_imagenet")
    src = imagenet_model(spec, settings, val_ds, model_dir)
    sen_file = compute_sensitivities(spec, settings, val_ds, model_dir, os.path.join(save_dir, "stage2_sensitivities"))
    trained = load_model(model_dir)
    _, meta = load_sensitivities(sen_file, return_meta=True)
    if (meta.get("baseline") or 0) < 0.05:
        logger.warning("build_default: baseline %s = %s with ImageNet weights: is labels.txt in ImageNet's standard "
                       "class order, and are the images ImageNet's?", meta.get("metric"), meta.get("baseline"))
    images = min(settings.sensitivity_images or len(val_ds), len(val_ds))
    weights = f"ImageNet weights from {src['url']} (md5 {src['file_md5']}), not retrained"
    if src["file_md5"] != src["md5"]:
        weights += f" (the published md5 is {src['md5']})"
    entry = {
        "metric": meta.get("metric"), "baseline": meta.get("baseline"), "ratios": meta.get("ratios"),
        "dataset": f"{data_dir}: sensitivities on {images} validation images (no training)",
        "weights": weights,
        "model_params": task_model_params(trained),
        "input_shape": list(trained.input_shape),
        "command": command or f"paddleprune build-default --task {spec.name} --data {data_dir} --model {spec.model} "
                              f"--pretrain-weights IMAGENET --skip-train" + (" --quick" if quick else ""),
    }
    return install_default(sen_file, trained.sensitivity_key(), entry, builtin_dir)
