"""The one train loop behind every task's ``train()``.

Order: data and transforms -> build the network -> load ``pretrain_weights`` -> prune
with ``sensitivities_file`` -> (or, when resuming, replay the checkpoint's pruning
record and load its weights) -> a fresh optimizer (restored from ``model.pdopt`` when
resuming) -> epochs. Each epoch shuffles with a generator seeded by (run seed, epoch),
and seeds the random transforms the same way, so a resumed run repeats exactly what
the interrupted one would have done.
"""
import logging
import math
import os
import time

import numpy as np
import paddle

from paddleprune.errors import DataNotFoundError, InvalidParameterError
from paddleprune.tasks import checkpoint as ckpt
from paddleprune.tasks.base import scalar_metrics
from paddleprune.tasks.early_stop import EarlyStop
from paddleprune.tasks.optim import resolve_optimizer, restore_optimizer
from paddleprune.tasks.progress import format_eta, progress_bar
from paddleprune.tasks.pruning import model_params, prune_by_sensitivities, resolve_sensitivities_file
from paddleprune.tasks.vdl import VdlLogger
from paddleprune.utils import dist
from paddleprune.utils.plain import to_plain

logger = logging.getLogger(__name__)

__all__ = ["fit", "EpochBatches"]


class EpochBatches:
    """Batch sampler: a fresh permutation per epoch from ``default_rng([seed, epoch])``;
    the last partial batch is dropped. With ``nranks`` > 1 each batch of ``batch_size`` is
    split between the ranks and this rank gets its ``batch_size / nranks`` part (the
    distributed batch sampler: together the ranks see what one process sees)."""

    def __init__(self, num_samples, batch_size, seed, rank=0, nranks=1):
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 1
        self.rank, self.nranks = rank, nranks

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        part = self.batch_size // self.nranks
        for i in range(len(self)):
            start = i * self.batch_size + self.rank * part
            yield order[start:start + part].tolist()

    def __len__(self):
        return self.num_samples // self.batch_size


def _prepare_data(task, owner, train_ds, eval_ds):
    """Transforms: a data set's own, else the task's defaults (only data sets that have a
    ``transforms`` attribute, like ImageNet, can be given some)."""
    if hasattr(train_ds, "transforms") and train_ds.transforms is None:
        train_ds.transforms = task.default_transforms("train")
        logger.info("%s: train_dataset has no transforms; using %r", owner, train_ds.transforms)
    task.train_transforms = getattr(train_ds, "transforms", None)
    derived = task.eval_transforms_from(task.train_transforms) if task.train_transforms is not None else None
    if eval_ds is not None and hasattr(eval_ds, "transforms"):
        if eval_ds.transforms is None:
            eval_ds.transforms = derived
        task.eval_transforms = eval_ds.transforms
    else:
        task.eval_transforms = derived
    labels = getattr(train_ds, "labels", None)
    task.labels = list(labels) if labels is not None else None
    task.check_labels(owner, task.labels)
    task.input_shape = task.input_shape_of(eval_ds if eval_ds is not None else train_ds)


def _read_resume(owner, task, path):
    info = ckpt.read_model_info(path)
    if info["Model"] != type(task).__name__:
        raise InvalidParameterError(f"{owner}: 'resume_checkpoint' {path} holds a {info['Model']}, "
                                    f"not a {type(task).__name__}.")
    if info["_init_params"] != to_plain(task.get_params()):
        raise InvalidParameterError(f"{owner}: 'resume_checkpoint' {path} was made with {info['_init_params']}, "
                                    f"this model has {task.get_params()}.")
    if not os.path.isfile(os.path.join(path, "model.pdopt")):
        raise DataNotFoundError(f"{owner}: 'resume_checkpoint' {path} holds no model.pdopt (optimizer state); "
                                "only epoch_N folders written by train() can be resumed.")
    return info


def _build_network(task, owner, a):
    """Returns (net, resume info or None, prune info or None)."""
    net = task.build_net()
    if a.resume_checkpoint is not None:
        info = _read_resume(owner, task, a.resume_checkpoint)
        if a.pretrain_weights is not None or a.sensitivities_file is not None:
            logger.info("%s: resuming from %s; its weights and pruning record replace 'pretrain_weights' "
                        "and 'sensitivities_file'", owner, a.resume_checkpoint)
        ckpt.apply_prune_info(net, info)
        state = ckpt.read_params(os.path.join(a.resume_checkpoint, "model.pdparams"))
        problems = ckpt.state_problems(state, net)
        if problems:
            raise InvalidParameterError(f"{owner}: 'resume_checkpoint' weights do not fit: " + "; ".join(problems))
        net.set_state_dict(state)
        return net, info, info.get("prune")
    prune_info, pre = None, None
    if a.pretrain_weights is not None:
        pre = ckpt.load_pretrain(task, net, a.pretrain_weights, owner)
        if pre is not None and pre["status"] == "Prune":
            prune_info = dict(pre["prune"])
    else:
        logger.info("%s: pretrain_weights=None, the network starts from random weights (PaddleX's default is "
                    "'IMAGENET'; pass it for Paddle's published ImageNet weights)", owner)
    dist.broadcast_params(net)      # the same start on every rank, so every rank prunes the same channels
    sen_file = resolve_sensitivities_file(owner, a.sensitivities_file, task.sensitivity_key(),
                                          model_params=model_params(task), input_shape=task.input_shape,
                                          num_classes=task.num_classes, net_class=type(net).__name__)
    if sen_file is not None:
        if a.pretrain_weights is None:
            logger.warning("%s: pruning a network without 'pretrain_weights': the L1 norms of random weights "
                           "say nothing about which filters matter", owner)
        if pre is not None and pre["status"] == "Prune" and list(pre["prune"]["input_shape"]) != task.input_shape:
            raise InvalidParameterError(
                f"{owner}: the pruned 'pretrain_weights' were traced at {pre['prune']['input_shape']} but this "
                f"data gives {task.input_shape}; use transforms with the same output size.")
        result = prune_by_sensitivities(owner, net, task.input_shape, sen_file, a.eval_metric_loss,
                                        round_to=a.prune_round_to)
        if result["records"]:
            prune_info = {"input_shape": list(task.input_shape),
                          "records": (prune_info or {}).get("records", []) + result["records"],
                          "sensitivities_file": os.path.abspath(sen_file),
                          "eval_metric_loss": a.eval_metric_loss, "round_to": a.prune_round_to,
                          "flops_before": result["flops_before"], "flops_after": result["flops_after"]}
    return net, None, prune_info


def _check_same_network(owner, net):
    """Every rank must train the same (pruned) network: DataParallel cannot check it."""
    shapes = dist.all_gather([tuple(p.shape) for p in net.parameters()])
    for rank, other in enumerate(shapes[1:], start=1):
        if other != shapes[0]:
            raise InvalidParameterError(f"{owner}: rank {rank} built another network than rank 0 (its pruned "
                                        "shapes differ); give every rank the same pretrain_weights and "
                                        "sensitivities_file.")


def _evaluate(task, eval_ds, batch_size, epoch, vdl):
    t0 = time.perf_counter()
    metrics = task.evaluate(eval_ds, batch_size=batch_size)
    logger.info("[EVAL] Finished, Epoch=%d, %s (%.1f s)", epoch,
                ", ".join(f"{k}={v:.6f}" for k, v in scalar_metrics(metrics).items()),
                time.perf_counter() - t0)
    vdl.eval_epoch(metrics, epoch)
    return metrics, time.perf_counter() - t0


def fit(task, a):
    """Run training for ``task`` with the checked ``train()`` arguments ``a`` (a
    :class:`~paddleprune.tasks.params.TrainOptions`)."""
    owner = f"{type(task).__name__}.train"
    train_ds, eval_ds = a.train_dataset, a.eval_dataset
    _prepare_data(task, owner, train_ds, eval_ds)
    rank, nranks = dist.world()[0], dist.init()
    net, resume, prune_info = _build_network(task, owner, a)
    _check_same_network(owner, net)
    task.net, task.prune_info = net, prune_info
    task.status = "Prune" if prune_info else "Normal"
    seed = dist.broadcast(int(np.random.randint(0, 2**31 - 1)))
    sampler = EpochBatches(len(train_ds), a.train_batch_size, seed, rank, nranks)
    loader = paddle.io.DataLoader(train_ds, batch_sampler=sampler, num_workers=0,
                                  collate_fn=task.collate_fn("train"))
    steps = len(sampler)
    opt = resolve_optimizer(owner, a.optimizer, net) or task.default_optimizer(owner, net, a, steps)
    start, global_step, best = 1, 0, None
    if resume is not None:
        path = os.path.join(a.resume_checkpoint, "model.pdopt")
        state = ckpt.read_params(path, return_numpy=True)
        global_step = restore_optimizer(opt, net, state, path)
        seed = sampler.seed = int(state.get("train_seed", seed))     # the same file on every rank
        start = int(resume.get("completed_epochs", 0)) + 1
        best_dir = os.path.join(a.save_dir, "best_model")
        if os.path.isfile(os.path.join(best_dir, "model.yml")):
            best = next(iter((ckpt.read_model_info(best_dir)["_Attributes"].get("eval_metrics") or {}).values()), None)
        logger.info("%s: resumed from %s after epoch %d (global step %d)", owner, a.resume_checkpoint,
                    start - 1, global_step)
    if start > a.num_epochs:
        logger.warning("%s: the checkpoint already completed %d epochs (num_epochs=%d); nothing to train",
                       owner, start - 1, a.num_epochs)
        task.completed_epochs = start - 1
        return
    scheduler = opt._learning_rate if isinstance(opt._learning_rate, paddle.optimizer.lr.LRScheduler) else None
    stopper = EarlyStop(a.early_stop_patience, 1e-4, best) if a.early_stop else None
    vdl_dir = os.path.join(a.save_dir, "vdl_log") if a.use_vdl and dist.is_main() else None
    model = paddle.DataParallel(net) if nranks > 1 else net     # averages the gradients of the ranks
    total = (a.num_epochs - start + 1) * steps
    done, t_start, eval_time, n_evals = 0, time.perf_counter(), 0.0, 0
    with VdlLogger(vdl_dir) as vdl:
        for epoch in range(start, a.num_epochs + 1):
            sampler.epoch = epoch
            if hasattr(task.train_transforms, "seed"):
                task.train_transforms.seed([seed, epoch] + ([rank] if nranks > 1 else []))
            if hasattr(task.train_transforms, "set_epoch"):
                task.train_transforms.set_epoch(epoch)
            net.train()
            bar = progress_bar(steps, f"epoch {epoch}/{a.num_epochs}")
            t_epoch = time.perf_counter()
            try:
                for step, batch in enumerate(loader, 1):
                    inputs, targets = task.split_batch(batch)
                    outputs = task.run_net(inputs, model)
                    loss = task.compute_loss(outputs, targets)
                    loss.backward()
                    opt.step()
                    opt.clear_grad()
                    lr = opt.get_lr()
                    if scheduler is not None:
                        scheduler.step()
                    global_step += 1
                    done += 1
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise InvalidParameterError(
                            f"{owner}: the loss became {loss_value} at epoch {epoch} step {step}; lower "
                            f"'learning_rate' ({a.learning_rate}) or check the data.")
                    bar.update(1)
                    if step % a.log_interval_steps == 0 or step == steps:
                        values = {"loss": loss_value, **task.step_metrics(outputs, targets), "lr": lr}
                        vdl.train_step(values, global_step)
                        per_step = (time.perf_counter() - t_start - eval_time) / done
                        evals_left = sum(1 for e in range(epoch, a.num_epochs + 1)
                                         if e % a.save_interval_epochs == 0 or e == a.num_epochs)
                        eta = per_step * (total - done) + (eval_time / max(n_evals, 1)) * evals_left
                        logger.info("[TRAIN] Epoch=%d/%d, Step=%d/%d, %s, time_each_step=%.2fs, eta=%s",
                                    epoch, a.num_epochs, step, steps,
                                    ", ".join(f"{k}={v:.6g}" for k, v in values.items()), per_step,
                                    format_eta(eta))
                        bar.set_postfix_str(f"loss={loss_value:.4f}")
            finally:
                bar.close()
            logger.info("[TRAIN] Epoch %d finished in %.1f s", epoch, time.perf_counter() - t_epoch)
            task.completed_epochs = epoch
            if epoch % a.save_interval_epochs != 0 and epoch != a.num_epochs:
                continue
            dist.average_statistics(net)
            metrics = None
            if eval_ds is not None:
                metrics, seconds = _evaluate(task, eval_ds, a.train_batch_size, epoch, vdl)
                eval_time, n_evals = eval_time + seconds, n_evals + 1
                task.eval_metrics = metrics
            epoch_dir = os.path.join(a.save_dir, f"epoch_{epoch}")
            if dist.is_main():          # one writer; every rank holds the same weights and metrics
                ckpt.save_model_dir(task, epoch_dir, opt, global_step, metrics, train_seed=seed)
            if metrics is not None:
                primary, score = next(iter(metrics.items()))
                if best is None or score > best:
                    best = score
                    if dist.is_main():
                        ckpt.copy_model_dir(epoch_dir, os.path.join(a.save_dir, "best_model"))
                        logger.info("[EVAL] best %s so far: %.6f (epoch %d), saved to best_model", primary, score,
                                    epoch)
            dist.barrier()
            if metrics is not None and stopper is not None and stopper(score):
                logger.info("%s: early stop at epoch %d (%s did not improve for %d evaluations)", owner,
                            epoch, primary, a.early_stop_patience)
                break
