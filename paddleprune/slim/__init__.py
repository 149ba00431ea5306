"""PaddleX-style model-compression helpers (``paddleprune.slim``).

- ``cal_params_sensitivities(model, save_file, eval_dataset, batch_size=8)`` and its
  alias ``slim.prune.analysis(model, dataset, batch_size=8, save_file=...)``;
- ``visualize(model, sensitivities_file, save_dir='./')`` (PaddleX form) or
  ``visualize(sensitivities_file_or_dict, save_dir, cost_fn=None, ...)``.

Importing this package loads neither matplotlib nor the task code (the engine, and so paddle,
is loaded); they load when used.
"""
import os
from collections.abc import Mapping

from paddleprune.slim.visualize import visualize as _visualize_table

__all__ = ["visualize", "cal_params_sensitivities", "loss_summary", "prune"]


def _model_cost_fn(model):
    from paddleprune.prune import L1NormFilterPruner
    from paddleprune.tasks.base import BaseTask
    if not isinstance(model, BaseTask) or model.net is None or model.input_shape is None:
        return None
    pruner = L1NormFilterPruner(model.net, list(model.input_shape))
    known = {n for n, _ in model.net.named_parameters()}

    def cost_fn(ratios):
        return pruner.cost_of({k: v for k, v in ratios.items() if k in known})
    return cost_fn


def loss_summary(model, sensitivities, losses=(0.05, 0.10, 0.20, 0.30)):
    """What each ``eval_metric_loss`` would do to a trained task model.

    Returns
    -------
    list of dict
        ``{"eval_metric_loss", "flops", "params", "layers"}`` per loss: the shares of FLOPs and
        parameters removed and the number of layer groups pruned.
    """
    from paddleprune.prune import get_ratios_by_loss, load_sensitivities
    table = load_sensitivities(sensitivities) if isinstance(sensitivities, (str, os.PathLike)) else sensitivities
    cost_fn = _model_cost_fn(model)
    rows = []
    for loss in losses:
        ratios = get_ratios_by_loss(table, loss)
        cost = cost_fn(ratios)
        rows.append({"eval_metric_loss": loss, "flops": cost["flops"], "params": cost["params"],
                     "layers": sum(1 for v in ratios.values() if v > 0)})
    return rows


def visualize(*args, **kwargs):
    """Plot a sensitivities table and the model-level prune curve.

    Two call forms:

    - PaddleX: ``visualize(model, sensitivities_file, save_dir='./')`` with a trained
      task model; the curve then shows the share of FLOPs and parameters each
      ``eval_metric_loss`` removes from that model.
    - ``visualize(sensitivities_file_or_dict, save_dir, cost_fn=None, model_name=None,
      vdl_logdir=None)``; see :func:`paddleprune.slim.visualize.visualize`.

    Returns
    -------
    str
        Path of ``save_dir/sensitivities.png``.
    """
    first = args[0] if args else kwargs.get("model", kwargs.get("sensitivities_file_or_dict"))
    if first is not None and not isinstance(first, (str, os.PathLike, Mapping)):
        from paddleprune.errors import InvalidParameterError
        model = first
        rest = list(args[1:])
        kwargs.pop("model", None)
        sens = rest.pop(0) if rest else kwargs.pop("sensitivities_file", None)
        save_dir = rest.pop(0) if rest else kwargs.pop("save_dir", "./")
        cost_fn = _model_cost_fn(model)
        if cost_fn is None:
            raise InvalidParameterError(f"visualize: 'model' must be a trained paddleprune model (after train() "
                                        f"or load_model) or a sensitivities file/table; got {model!r}.")
        kwargs.setdefault("model_name", type(model).__name__)
        return _visualize_table(sens, save_dir, cost_fn=cost_fn, **kwargs)
    return _visualize_table(*args, **kwargs)


def __getattr__(name):
    if name == "cal_params_sensitivities":
        from paddleprune.slim.prune import cal_params_sensitivities
        return cal_params_sensitivities
    if name == "prune":
        import importlib
        return importlib.import_module("paddleprune.slim.prune")
    raise AttributeError(f"module 'paddleprune.slim' has no attribute {name!r}")
