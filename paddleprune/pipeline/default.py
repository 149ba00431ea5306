"""Build the bundled ``'DEFAULT'`` sensitivities (``paddleprune build-default``).

Stage 1 and stage 2 of the pipeline on a data set, then the file is copied into
``builtin_sensitivities/`` and listed in its ``manifest.json`` with what produced it
(data, weights, model parameters, input shape, date, command), so that
``sensitivities_file='DEFAULT'`` can say where its numbers come from.
"""
import datetime
import logging
import os
import shutil

from paddleprune.pipeline.run import compute_sensitivities, load_datasets, train_backbone, train_original
from paddleprune.pipeline.tasks import get_task
from paddleprune.tasks.pruning import BUILTIN_DIR, read_manifest
from paddleprune.tasks.pruning import model_params as task_model_params
from paddleprune.utils.atomic import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

__all__ = ["build_default", "install_default"]


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
                  quick=False, command=None, model=None, model_params=None, input_size=None):
    """Train the task's model on ``data_dir`` (default: the embedded demo set), compute its
    sensitivities and install them as the ``'DEFAULT'`` file for the model's key.

    ``model`` names another model of the task's package (e.g. ``'ResNet50'``), built with
    ``model_params`` (constructor keywords) at ``input_size``; default: the pipeline's model.

    A re-run skips the finished stages (and resumes a stopped one), like the pipeline.
    Returns the installed path.
    """
    from paddleprune import load_model
    from paddleprune.prune import load_sensitivities
    spec = get_task(task)
    if model is not None:
        spec = spec.with_model(model, model_params, input_size)
    settings = spec.quick if quick else spec.full
    demo = data_dir is None
    data_dir = data_dir or spec.demo_data()
    train_ds, val_ds = load_datasets(spec, settings, data_dir)
    backbone = train_backbone(spec, settings, os.path.join(save_dir, "stage0_backbone"))
    best = train_original(spec, settings, train_ds, val_ds, os.path.join(save_dir, "stage1_train"),
                          pretrain_weights=backbone)
    sen_file = compute_sensitivities(spec, settings, val_ds, best, os.path.join(save_dir, "stage2_sensitivities"))
    trained = load_model(best)
    _, meta = load_sensitivities(sen_file, return_meta=True)
    images = min(settings.sensitivity_images or len(val_ds), len(val_ds))
    source = f"the paddleprune embedded {task} demo set (built from scikit-learn's digits and photos)" if demo \
        else data_dir
    entry = {
        "metric": meta.get("metric"), "baseline": meta.get("baseline"), "ratios": meta.get("ratios"),
        "dataset": f"{source}: {len(train_ds)} training images, sensitivities on {images} validation images",
        "weights": f"trained here for {settings.epochs} epochs by stage 1 ({meta.get('metric')} "
                   f"{meta.get('baseline', 0):.4f} on the sensitivity images)"
                   + (", its backbone first trained as a classifier on the embedded classification set"
                      if backbone else "") + "; not ImageNet weights",
        "model_params": task_model_params(trained),
        "input_shape": list(trained.input_shape),
        "command": command or f"paddleprune build-default --task {task}" + ("" if demo else f" --data {data_dir}")
                   + (" --quick" if quick else ""),
    }
    return install_default(sen_file, trained.sensitivity_key(), entry, builtin_dir)
