"""The pruning step of ``train()``: ``sensitivities_file`` + ``eval_metric_loss`` -> pruned network.

``sensitivities_file`` is None (no pruning), a file written by
``paddleprune.slim.cal_params_sensitivities`` (or a PaddleX / PaddleSlim pickle), or
``'DEFAULT'``: the bundled file listed in ``paddleprune/builtin_sensitivities/manifest.json``
under the model's key (class name, plus ``_<backbone>`` when the model has one).

Whatever file is used, what it records it was made for (its metadata, plus the manifest
entry for ``'DEFAULT'``) is compared with the model: each difference is warned about.
"""
import json
import logging
import os
import warnings

from paddleprune.errors import (DataNotFoundError, InvalidParameterError, UnknownParameterNameError,
                                UnprunableError)

logger = logging.getLogger(__name__)

__all__ = ["BUILTIN_DIR", "MADE_FOR_KEYS", "read_manifest", "model_params", "resolve_sensitivities_file",
           "check_made_for", "prune_by_sensitivities"]

BUILTIN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "builtin_sensitivities")
#: What a sensitivities file (metadata or manifest entry) may record about the model it was made for:
#: the network class, the task's constructor arguments, the input shape and the class count.
MADE_FOR_KEYS = ("model", "model_params", "input_shape", "num_classes")


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
    from paddleprune.utils.plain import to_plain
    return {k: v for k, v in to_plain(task.get_params()).items() if k != "num_classes"}


def resolve_sensitivities_file(owner, value, key, builtin_dir=None, model_params=None, input_shape=None,
                               num_classes=None, net_class=None):
    """The file ``value`` stands for: a path as is, or ``'DEFAULT'`` looked up by ``key``.

    The file is then checked with :func:`check_made_for` against the given ``model_params``,
    ``input_shape``, ``num_classes`` and ``net_class`` (the network's class name); for
    ``'DEFAULT'`` the manifest entry's ``model_params`` and ``input_shape`` count too.

    Raises
    ------
    InvalidParameterError
        ``'DEFAULT'`` with no bundled file for ``key`` (lists the available keys), or a folder.
    DataNotFoundError
        A path that does not exist (also a manifest entry whose file is missing).
    SensitivityFileError
        An unreadable file.
    """
    if value is None:
        return None
    current = {"model": net_class, "model_params": model_params, "input_shape": input_shape,
               "num_classes": num_classes}
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
        check_made_for(owner, path, current, entry=entry,
                       label=f"the DEFAULT sensitivities file for {key!r} ({entry['file']})")
        return path
    if os.path.isdir(value):
        raise InvalidParameterError(f"{owner}: 'sensitivities_file' must be a file, 'DEFAULT' or None; "
                                    f"{value} is a folder.")
    if not os.path.isfile(value):
        raise DataNotFoundError(f"{owner}: 'sensitivities_file' not found: {value}; expected a file written "
                                "by paddleprune.slim.cal_params_sensitivities, 'DEFAULT' or None.")
    check_made_for(owner, value, current)
    return value


def _made_for(path, entry):
    """``{key: value}`` of :data:`MADE_FOR_KEYS` the file's metadata records, the manifest
    ``entry`` (if any) taking precedence (``model_params`` merged name by name)."""
    from paddleprune.prune import load_sensitivities
    _, meta = load_sensitivities(path, return_meta=True)
    made = {}
    for source in (meta, entry or {}):
        for k in MADE_FOR_KEYS:
            if source.get(k) is None:
                continue
            if k == "model_params":
                made[k] = {**made.get(k, {}), **(source[k] if isinstance(source[k], dict) else {})}
            else:
                made[k] = source[k]
    return made


def check_made_for(owner, path, current, entry=None, label=None):
    """Warn (log and ``warnings.warn``) naming each way the model ``current`` differs from
    what the sensitivities file ``path`` was made for.

    ``current`` maps :data:`MADE_FOR_KEYS` to this model's values (None: not compared);
    what the file does not record is not compared. Input shapes are compared without
    the batch size. Returns the list of differences, e.g. ``["scale=0.5 (file: 0.25)"]``.
    """
    made, label = _made_for(path, entry), label or path
    if not made:
        logger.info("%s: %s records neither the model nor its parameters, input shape or class count "
                    "(a legacy file?); whether it suits this model cannot be checked", owner, label)
        return []
    diffs = []
    if current.get("model") is not None and made.get("model", current["model"]) != current["model"]:
        diffs.append(f"model {current['model']} (file: {made['model']})")
    params = current.get("model_params") or {}
    for name, was in made.get("model_params", {}).items():
        if name in params and params[name] != was:
            diffs.append(f"{name}={params[name]!r} (file: {was!r})")
    shape, was = current.get("input_shape"), made.get("input_shape")
    if shape and was and list(shape[1:]) != list(was[1:]):
        diffs.append(f"input shape {list(shape[1:])} (file: {list(was[1:])})")
    classes = current.get("num_classes")
    if classes is not None and made.get("num_classes", classes) != classes:
        diffs.append(f"num_classes={classes} (file: {made['num_classes']})")
    if diffs:
        msg = (f"{owner}: {label} was computed for another configuration: {', '.join(diffs)}; "
               "the per-layer ratios may not suit this model")
        logger.warning(msg)
        warnings.warn(msg, stacklevel=3)
    return diffs


def prune_by_sensitivities(owner, net, input_shape, sen_file, eval_metric_loss, round_to=None):
    """Prune ``net`` in place with the per-layer ratios ``eval_metric_loss`` allows
    (with ``round_to``, every pruned group keeps a multiple of that many channels).

    Names the network does not have (up to half of them) or cannot prune are skipped with
    one warning; layers whose ratio is 0 are left alone.

    Returns
    -------
    dict
        ``{"records", "ratios", "flops_before", "flops_after", "params_before", "params_after"}``;
        ``records`` is empty when nothing was pruned.

    Raises
    ------
    InvalidParameterError
        More than half of the file's names are not parameters of ``net`` (a file made
        for another model or configuration).
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
        unknown = [name for name, why in skipped if why == "UnknownParameterNameError"]
        if 2 * len(unknown) > len(ratios):
            raise InvalidParameterError(
                f"{owner}: {len(unknown)} of the {len(ratios)} parameter names in {sen_file} are not parameters "
                f"of this {type(net).__name__} (e.g. {sorted(unknown)[:3]}); the file was likely made for "
                "another model or configuration (class, depth, backbone). Compute sensitivities for this model "
                "with paddleprune.slim.cal_params_sensitivities.")
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
