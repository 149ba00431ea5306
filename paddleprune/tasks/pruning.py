"""The pruning step of ``train()``: ``sensitivities_file`` + ``eval_metric_loss`` -> pruned network.

``sensitivities_file`` is None (no pruning), a file written by
``paddleprune.slim.cal_params_sensitivities`` (or a PaddleX / PaddleSlim pickle), or
``'DEFAULT'``: the bundled file listed in ``paddleprune/builtin_sensitivities/manifest.json``
under the model's key (class name, plus ``_<backbone>`` when the model has one).
"""
import json
import logging
import os
import warnings

from paddleprune.errors import (DataNotFoundError, InvalidParameterError, UnknownParameterNameError,
                                UnprunableError)

logger = logging.getLogger(__name__)

__all__ = ["BUILTIN_DIR", "read_manifest", "model_params", "resolve_sensitivities_file", "prune_by_sensitivities"]

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "builtin_sensitivities")


def read_manifest(builtin_dir=None):
    """``{key: entry}`` from ``builtin_sensitivities/manifest.json`` ({} if it is absent)."""
    path = os.path.join(builtin_dir or BUILTIN_DIR, "manifest.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        files = json.load(f).get("files", {})
    return files if isinstance(files, dict) else {}


def model_params(task):
    """The task model's constructor arguments other than ``num_classes``, as plain values:
    what a bundled sensitivities file records it was computed for."""
    from paddleprune.tasks.checkpoint import to_plain
    return {k: v for k, v in to_plain(task.get_params()).items() if k != "num_classes"}


def resolve_sensitivities_file(owner, value, key, builtin_dir=None, model_params=None, input_shape=None):
    """The file ``value`` stands for: a path as is, or ``'DEFAULT'`` looked up by ``key``.

    For ``'DEFAULT'`` the manifest entry's ``model_params`` and ``input_shape`` (what the
    file was computed for) are compared with the given ones; a difference is logged.

    Raises
    ------
    InvalidParameterError
        ``'DEFAULT'`` with no bundled file for ``key`` (lists the available keys), or a folder.
    DataNotFoundError
        A path that does not exist (also a manifest entry whose file is missing).
    """
    if value is None:
        return None
    if value == "DEFAULT":
        builtin_dir = builtin_dir or BUILTIN_DIR
        files = read_manifest(builtin_dir)
        if key not in files:
            raise InvalidParameterError(
                f"{owner}: sensitivities_file='DEFAULT' has no bundled file for {key!r}; available: "
                f"{sorted(files) or 'none'}. Compute one with paddleprune.slim.cal_params_sensitivities.")
        entry = files[key]
        path = os.path.join(builtin_dir, entry["file"])
        if not os.path.isfile(path):
            raise DataNotFoundError(f"{owner}: the bundled sensitivities file for {key!r} is missing: {path}")
        logger.warning("%s: sensitivities_file='DEFAULT' uses %s, computed on %s (metric %s, weights %s, "
                       "%s) by `%s`; sensitivities of your own trained model and data are usually better",
                       owner, entry["file"], entry.get("dataset", "?"), entry.get("metric", "?"),
                       entry.get("weights", "?"), entry.get("date", "?"), entry.get("command", "?"))
        _warn_if_made_for_other(owner, key, entry, model_params, input_shape)
        return path
    if os.path.isdir(value):
        raise InvalidParameterError(f"{owner}: 'sensitivities_file' must be a file, 'DEFAULT' or None; "
                                    f"{value} is a folder.")
    if not os.path.isfile(value):
        raise DataNotFoundError(f"{owner}: 'sensitivities_file' not found: {value}; expected a file written "
                                "by paddleprune.slim.cal_params_sensitivities, 'DEFAULT' or None.")
    return value


def _warn_if_made_for_other(owner, key, entry, model_params, input_shape):
    """Log how this model differs from the one the bundled file was computed for."""
    diffs = []
    for name, made_for in (entry.get("model_params") or {}).items():
        if model_params is not None and name in model_params and model_params[name] != made_for:
            diffs.append(f"{name}={model_params[name]!r} (file: {made_for!r})")
    made_shape = entry.get("input_shape")
    if made_shape and input_shape and list(made_shape[1:]) != list(input_shape[1:]):
        diffs.append(f"input shape {list(input_shape[1:])} (file: {list(made_shape[1:])})")
    if diffs:
        logger.warning("%s: the DEFAULT sensitivities for %r were computed for another configuration: %s; "
                       "the per-layer ratios may not suit this model", owner, key, ", ".join(diffs))


def prune_by_sensitivities(owner, net, input_shape, sen_file, eval_metric_loss, round_to=None):
    """Prune ``net`` in place with the per-layer ratios ``eval_metric_loss`` allows
    (with ``round_to``, every pruned group keeps a multiple of that many channels).

    Names the network does not have or cannot prune are skipped with one warning;
    layers whose ratio is 0 are left alone.

    Returns
    -------
    dict
        ``{"records", "ratios", "flops_before", "flops_after", "params_before", "params_after"}``;
        ``records`` is empty when nothing was pruned.

    Raises
    ------
    InvalidParameterError
        No name of the file is a parameter of ``net`` (a file made for another model).
    """
    from paddleprune.prune import L1NormFilterPruner, count_params, get_ratios_by_loss, load_sensitivities
    table = load_sensitivities(sen_file)
    ratios = get_ratios_by_loss(table, eval_metric_loss)
    pruner = L1NormFilterPruner(net, list(input_shape), round_to=round_to)
    usable, skipped = {}, []
    for name, ratio in ratios.items():
        try:
            group = pruner.find_group(name, 0)
        except (UnknownParameterNameError, UnprunableError) as exc:
            skipped.append((name, type(exc).__name__))
            continue
        if not group.prunable:
            skipped.append((name, group.reason))
        elif ratio > 0:
            usable[name] = ratio
    if skipped:
        unknown = sum(1 for _, why in skipped if why == "UnknownParameterNameError")
        if unknown == len(ratios):
            raise InvalidParameterError(
                f"{owner}: none of the {len(ratios)} parameters in {sen_file} belongs to this "
                f"{type(net).__name__} (e.g. {sorted(ratios)[:3]}); was the file made for another model?")
        msg = (f"{owner}: {len(skipped)} of {len(ratios)} layers in {sen_file} were skipped (unknown to the "
               f"model or unprunable): " + ", ".join(f"{n} ({why})" for n, why in skipped[:10])
               + (" ..." if len(skipped) > 10 else ""))
        logger.warning(msg)
        warnings.warn(msg, stacklevel=3)
    flops_before, params_before = pruner.flops(), count_params(net)
    result = {"ratios": usable, "records": [], "flops_before": flops_before, "flops_after": flops_before,
              "params_before": params_before, "params_after": params_before}
    if not usable:
        logger.warning("%s: eval_metric_loss=%s allows no pruning with %s; the model is trained unpruned",
                       owner, eval_metric_loss, sen_file)
        return result
    plan = pruner.prune_vars(usable)
    result["records"] = plan.records
    result["flops_after"] = round(flops_before * (1 - plan.pruned_flops))
    result["params_after"] = count_params(net)
    logger.info("%s: pruned %d layer groups (eval_metric_loss=%s, %s): FLOPs %.4gM -> %.4gM (%.1f%% removed), "
                "params %.4gM -> %.4gM", owner, len(usable), eval_metric_loss, os.path.basename(sen_file),
                flops_before / 1e6, result["flops_after"] / 1e6, 100 * plan.pruned_flops,
                params_before / 1e6, result["params_after"] / 1e6)
    return result
