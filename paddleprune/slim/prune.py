"""Sensitivity analysis of a trained task model (PaddleX ``slim.cal_params_sensitivities``).

Unlike PaddleX 1.x, an existing file made for the same model, metric and ratios is
resumed, not deleted: a killed analysis continues where it stopped.
"""
import logging
import os

import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError

logger = logging.getLogger(__name__)

__all__ = ["cal_params_sensitivities", "analysis", "EVAL_BATCH_BUDGET_MB"]

#: Evaluation sets up to this size (as float32 tensors) are kept in memory as fixed
#: batches, so the engine can reuse the activations before each pruned layer; larger
#: sets are evaluated through ``model.evaluate`` for every point.
EVAL_BATCH_BUDGET_MB = 512


def _check_model(owner, model):
    from paddleprune.tasks.base import BaseTask
    if not isinstance(model, BaseTask) or model.net is None:
        raise InvalidParameterError(f"{owner}: 'model' must be a trained model (after train() or "
                                    f"paddleprune.load_model); got {model!r}.")
    if model.status != "Normal":
        raise InvalidParameterError(
            f"{owner}: the model's status is {model.status!r}; sensitivities can only be computed for an "
            "unpruned ('Normal') model. Load the model saved before pruning (stage 1's best_model).")


def cal_params_sensitivities(model, save_file, eval_dataset, batch_size=8, *, ratios=None, overwrite=False):
    """Relative metric loss of every prunable layer group at pruning ratios 0.1 ... 0.9.

    Parameters
    ----------
    model : BaseTask
        A trained, unpruned model (``paddleprune.load_model(best_model_dir)``).
    save_file : str
        JSON file written after every point; an existing file for the same model is resumed.
    eval_dataset : Dataset
        Evaluation data; without transforms, the model's ``eval_transforms`` are used.
    batch_size : int
    ratios : list of float, optional
        Pruning ratios to measure (default 0.1 ... 0.9); fewer points are faster.
    overwrite : bool
        Start afresh even if ``save_file`` holds points of another model, metric, ratio
        set or baseline (otherwise such a file is refused, naming the differing field).

    Returns
    -------
    dict
        ``{parameter name: {ratio: (base - pruned) / base}}`` of the primary metric.

    Raises
    ------
    InvalidParameterError
        An untrained or pruned model, or bad arguments.

    Under ``python -m paddle.distributed.launch`` every rank must call it with the same model
    and dataset: the layer groups are shared out between the ranks and every rank returns
    the merged table, which rank 0 writes to ``save_file``.
    """
    from paddleprune.prune import L1NormFilterPruner
    from paddleprune.prune.graph import eval_mode
    from paddleprune.tasks.params import check_dataset, check_int
    from paddleprune.tasks.pruning import model_params
    owner = "cal_params_sensitivities"
    _check_model(owner, model)
    check_dataset(owner, "eval_dataset", eval_dataset)
    check_int(owner, "batch_size", batch_size, 1)
    if not isinstance(save_file, (str, os.PathLike)):
        raise InvalidParameterError(f"{owner}: 'save_file' must be a file path; got {save_file!r}.")
    if hasattr(eval_dataset, "transforms") and eval_dataset.transforms is None:
        eval_dataset.transforms = model.eval_transforms
    shape = model.input_shape or model.input_shape_of(eval_dataset)
    metric_name = next(iter(model.make_metric().accumulate()))
    pruner = L1NormFilterPruner(model.net, list(shape))
    size_mb = len(eval_dataset) * int(np.prod(shape[1:])) * 4 / 2**20
    meta = {"model_params": model_params(model), "input_shape": list(shape), "num_classes": model.num_classes}
    with eval_mode(model.net):
        if size_mb <= EVAL_BATCH_BUDGET_MB:
            loader = paddle.io.DataLoader(eval_dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                                          collate_fn=model.collate_fn("eval"))
            batches = [model.split_batch(batch) for batch in loader]     # (network inputs, targets)

            def score_fn(outputs):                  # streams: one batch's outputs at a time
                metric = model.make_metric()
                for out, (_, targets) in zip(outputs, batches):
                    metric.update(model.postprocess(out, targets), targets)
                return next(iter(metric.accumulate().values()))

            return pruner.sensitive(eval_batches=[inputs for inputs, _ in batches], score_fn=score_fn,
                                    sen_file=os.fspath(save_file), metric=metric_name, ratios=ratios,
                                    overwrite=overwrite, meta=meta)
        return pruner.sensitive(
            eval_func=lambda: next(iter(model.evaluate(eval_dataset, batch_size=batch_size).values())),
            sen_file=os.fspath(save_file), metric=metric_name, ratios=ratios, overwrite=overwrite, meta=meta)


def analysis(model, dataset, batch_size=8, save_file="./model.sensi.data"):
    """PaddleX 1.3 alias: ``cal_params_sensitivities(model, save_file, dataset, batch_size)``."""
    return cal_params_sensitivities(model, save_file, dataset, batch_size=batch_size)
