"""Stage 1 train the original, stage 2 compute sensitivities, stage 3 retrain the
pruned model, then measure both. Each stage writes a ``.done`` marker when it
has finished; a re-run skips finished stages and resumes a stopped one.

Under ``paddle.distributed.launch`` (``paddleprune pipeline --nproc N``) every rank runs
the stages: training is data-parallel, stage 2 splits the layer groups between the ranks,
rank 0 alone writes the markers and measures both models."""
import dataclasses
import json
import logging
import os
import time

from paddleprune.pipeline.report import measure, write_report
from paddleprune.pipeline.tasks import get_task
from paddleprune.tasks.checkpoint import load_model
from paddleprune.tasks.params import check_int
from paddleprune.tasks.pruning import model_params, resolve_sensitivities_file
from paddleprune.utils import dist
from paddleprune.utils.atomic import atomic_write_text
from paddleprune.utils.checks import check_interval

logger = logging.getLogger(__name__)


def _done(stage_dir):
    return os.path.isfile(os.path.join(stage_dir, ".done"))


def _mark_done(stage_dir, info):
    if dist.is_main():
        atomic_write_text(os.path.join(stage_dir, ".done"), json.dumps(info) + "\n")
    dist.barrier()


def _latest_epoch(save_dir):
    epochs = [int(d.split("_")[1]) for d in os.listdir(save_dir)
              if d.startswith("epoch_") and d.split("_")[1].isdigit()] if os.path.isdir(save_dir) else []
    return os.path.join(save_dir, f"epoch_{max(epochs)}") if epochs else None


def run_pipeline(task="classification", data_dir=None, save_dir="output/pipeline", eval_metric_loss=0.05,
                 pruned_flops=None, sensitivities_file=None, quick=False, use_vdl=True, latency=True, round_to=None):
    """Run the three stages and write ``save_dir/report.json`` and ``report.md``.

    Parameters
    ----------
    task : str
        'classification' (detection and segmentation plug in the same way).
    data_dir : str, optional
        A data set in PaddleX format; default: the embedded demo set.
    eval_metric_loss : float
        Tolerated relative metric loss per layer (PaddleX 1.x), in (0, 1).
    pruned_flops : float, optional
        Instead of ``eval_metric_loss``: the share of FLOPs to remove.
    sensitivities_file : str, optional
        Skip stage 2 and use this file ('DEFAULT' for the bundled one).
    quick : bool
        Fewer epochs and a smaller sensitivity set (the CI form).
    round_to : int, optional
        Pruned groups keep a multiple of this many channels (default: the task's
        setting, 8; 1 turns alignment off).

    Returns
    -------
    dict or None
        The report (None on the ranks other than 0 of a distributed run).
    """
    spec = get_task(task)
    check_interval("run_pipeline", "eval_metric_loss", eval_metric_loss, 0, 1)
    if pruned_flops is not None:
        check_interval("run_pipeline", "pruned_flops", pruned_flops, 0, 1)
    settings = spec.quick if quick else spec.full
    if round_to is not None:
        settings = dataclasses.replace(settings, round_to=check_int("run_pipeline", "round_to", round_to, 1))
    data_dir = data_dir or spec.demo_data()
    train_ds, val_ds = load_datasets(spec, settings, data_dir)
    os.makedirs(save_dir, exist_ok=True)
    stage1, stage2, stage3 = (os.path.join(save_dir, d) for d in ("stage1_train", "stage2_sensitivities",
                                                                  "stage3_pruned"))
    t0 = time.perf_counter()
    backbone = train_backbone(spec, settings, os.path.join(save_dir, "stage0_backbone"))
    best1 = train_original(spec, settings, train_ds, val_ds, stage1, use_vdl, pretrain_weights=backbone)
    original = load_model(best1)
    shape = list(original.input_shape)
    if sensitivities_file is not None:
        sen_file = resolve_sensitivities_file("run_pipeline", sensitivities_file, original.sensitivity_key(),
                                              model_params=model_params(original), input_shape=shape)
    else:
        sen_file = compute_sensitivities(spec, settings, val_ds, best1, stage2)
    if pruned_flops is not None and not _done(stage3):
        eval_metric_loss = _threshold_for_flops(original, sen_file, pruned_flops, shape, settings.round_to)
    best3 = retrain_pruned(spec, settings, train_ds, val_ds, best1, sen_file, eval_metric_loss, stage3, use_vdl)
    if not dist.is_main():
        return None
    # -- measure both (rank 0 alone) ------------------------------------------------------------
    with dist.local_evaluation():
        results = measure({"original": original, "pruned": load_model(best3)}, val_ds, shape, save_dir,
                          batch_size=settings.eval_batch_size, latency=latency,
                          latency_batches=spec.latency_batches)
    report = {"task": task, "model": spec.model, "model_params": model_params(original), "dataset": data_dir,
              "eval_metric_loss": eval_metric_loss, "pruned_flops_target": pruned_flops,
              "sensitivities_file": sen_file, "round_to": settings.round_to, "quick": quick,
              "original": results["original"], "pruned": results["pruned"], "latency": results.get("latency"),
              "seconds": round(time.perf_counter() - t0, 1)}
    write_report(save_dir, report)
    return report


def load_datasets(spec, settings, data_dir):
    """``(train, val)`` of ``data_dir`` for the task; the quick forms may train on fewer images."""
    train_ds, val_ds = spec.datasets(data_dir)
    return (_subset(train_ds, settings.train_images) if settings.train_images else train_ds), val_ds


def train_backbone(spec, settings, stage_dir):
    """Stage 0: the backbone trained as a classifier (``spec.backbone_classifier``); returns its
    ``best_model`` dir, or None for a task without this stage."""
    job = spec.backbone_classifier(settings)
    if job is None:
        return None
    if not _done(stage_dir):
        t0 = time.perf_counter()
        model, train_ds, val_ds = job
        logger.info("stage 0: training the %s backbone as a classifier (%d epochs) into %s", type(model).__name__,
                    settings.backbone_epochs, stage_dir)
        steps = len(train_ds) // 32
        model.train(num_epochs=settings.backbone_epochs, train_dataset=train_ds, train_batch_size=32,
                    eval_dataset=val_ds, save_dir=stage_dir, learning_rate=0.05, warmup_steps=steps,
                    lr_decay_epochs=[max(1, settings.backbone_epochs * 3 // 4)], log_interval_steps=20,
                    save_interval_epochs=max(1, settings.backbone_epochs // 2),
                    resume_checkpoint=_latest_epoch(stage_dir))
        _mark_done(stage_dir, {"seconds": round(time.perf_counter() - t0, 1)})
    return os.path.join(stage_dir, "best_model")


def train_original(spec, settings, train_ds, val_ds, stage_dir, use_vdl=True, pretrain_weights=None):
    """Stage 1: train the unpruned model into ``stage_dir`` (from ``pretrain_weights``, e.g.
    stage 0's backbone); returns its ``best_model`` dir."""
    if not _done(stage_dir):
        t0 = time.perf_counter()
        logger.info("stage 1/3: training %s (%d epochs) into %s", spec.model, settings.epochs, stage_dir)
        model = spec.build_model(len(train_ds.labels), settings)
        steps = len(train_ds) // settings.batch_size
        model.train(num_epochs=settings.epochs, train_dataset=train_ds, train_batch_size=settings.batch_size,
                    eval_dataset=val_ds, save_dir=stage_dir, pretrain_weights=pretrain_weights,
                    use_vdl=use_vdl, log_interval_steps=10, save_interval_epochs=settings.save_interval,
                    resume_checkpoint=_latest_epoch(stage_dir),
                    **spec.schedule(settings, settings.learning_rate, steps, settings.epochs, settings.lr_decay_epochs,
                                   warmup=True))
        _mark_done(stage_dir, {"seconds": round(time.perf_counter() - t0, 1)})
    else:
        logger.info("stage 1/3: done before, skipped (%s)", stage_dir)
    return os.path.join(stage_dir, "best_model")


def compute_sensitivities(spec, settings, val_ds, best_model_dir, stage_dir):
    """Stage 2: the sensitivities of the trained model (resumed if stopped); returns the file."""
    from paddleprune import slim
    sen_file = os.path.join(stage_dir, "model.sensi.json")
    if not _done(stage_dir):
        t0 = time.perf_counter()
        logger.info("stage 2/3: sensitivities of %s", best_model_dir)
        trained = load_model(best_model_dir)
        sub = val_ds if not settings.sensitivity_images else _subset(val_ds, settings.sensitivity_images)
        table = slim.cal_params_sensitivities(trained, sen_file, sub, batch_size=settings.eval_batch_size,
                                              ratios=list(settings.ratios))
        if dist.is_main():
            slim.visualize(trained, sen_file, save_dir=stage_dir)
        _mark_done(stage_dir, {"seconds": round(time.perf_counter() - t0, 1), "layers": len(table),
                               "images": len(sub)})
    else:
        logger.info("stage 2/3: done before, skipped (%s)", stage_dir)
    return sen_file


def retrain_pruned(spec, settings, train_ds, val_ds, best_model_dir, sen_file, eval_metric_loss, stage_dir,
                   use_vdl=True):
    """Stage 3: prune the trained model by ``sen_file`` and retrain it; returns its ``best_model`` dir."""
    if not _done(stage_dir):
        t0 = time.perf_counter()
        logger.info("stage 3/3: retraining %s pruned with %s (eval_metric_loss=%s)", spec.model, sen_file,
                    eval_metric_loss)
        model = spec.build_model(len(train_ds.labels), settings)
        decay = settings.prune_lr_decay_epochs or settings.lr_decay_epochs
        model.train(num_epochs=settings.prune_epochs, train_dataset=train_ds, train_batch_size=settings.batch_size,
                    eval_dataset=val_ds, save_dir=stage_dir, pretrain_weights=best_model_dir,
                    use_vdl=use_vdl, log_interval_steps=10, sensitivities_file=sen_file,
                    save_interval_epochs=settings.save_interval,
                    resume_checkpoint=_latest_epoch(stage_dir), eval_metric_loss=eval_metric_loss,
                    prune_round_to=settings.round_to,
                    **spec.schedule(settings, settings.learning_rate / 2, len(train_ds) // settings.batch_size,
                                    settings.prune_epochs, decay))
        _mark_done(stage_dir, {"seconds": round(time.perf_counter() - t0, 1)})
    else:
        logger.info("stage 3/3: done before, skipped (%s)", stage_dir)
    return os.path.join(stage_dir, "best_model")


def _threshold_for_flops(model, sen_file, pruned_flops, shape, round_to=None):
    """The one loss threshold whose ratios remove ``pruned_flops`` of the FLOPs."""
    from paddleprune.prune import L1NormFilterPruner, load_sensitivities, search_loss_threshold
    pruner = L1NormFilterPruner(model.net, shape, round_to=round_to)
    table = load_sensitivities(sen_file)
    result = search_loss_threshold(table, pruned_flops, lambda r: pruner.cost_of(r)["flops"])
    logger.info("pruned_flops=%.2f -> eval_metric_loss=%.4f (reached=%s)", pruned_flops, result.threshold,
                result.reached)
    return min(max(result.threshold, 1e-6), 0.999999)


def _subset(dataset, n):
    """The first ``n`` samples (a fixed, class-mixed slice: list files are shuffled by the builder)."""
    import paddle
    if n >= len(dataset):
        return dataset
    sub = paddle.io.Subset(dataset, list(range(n)))
    sub.labels, sub.transforms = dataset.labels, dataset.transforms
    return sub

