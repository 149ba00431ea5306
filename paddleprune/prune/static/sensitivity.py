"""Sensitivities of a static Program (PaddleSlim's ``sensitivity``, seed 002).

For every parameter and ratio: prune a clone of the program (channels removed,
values backed up), evaluate it with ``eval_func(pruned_program)``, and put the
scope tensors back. The relative loss ``(base - pruned) / base`` goes into the
same JSON file format as the dygraph ``FilterPruner.sensitive``
(:func:`~paddleprune.prune.save_sensitivities`), written atomically after
every point, so a killed run resumes where it stopped; a file made for another
setup (metric, criterion, ratios, model name, baseline) is refused unless
``overwrite``.
"""
import logging
import os

import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError, SensitivityFileError, UnprunableError
from paddleprune.prune.sensitivity_files import check_compatible, load_sensitivities, save_sensitivities
from paddleprune.prune.sensitivity_table import DEFAULT_RATIOS, canonical_ratio, relative_loss, warn_if_zero_baseline
from paddleprune.prune.static.pruner import (Pruner, check_names, check_program, locate, restore_scope,
                                              warn_unsupported)
from paddleprune.prune.static.walker import StaticAnalysis
from paddleprune.utils.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = ["sensitivity"]


def _check_targets(program, param_names, owner):
    if isinstance(param_names, str) or not isinstance(param_names, (list, tuple)) \
            or not all(isinstance(n, str) for n in param_names):
        raise InvalidParameterError(f"{owner}: 'param_names' must be a list of parameter names; "
                                    f"got {param_names!r}.")
    with paddle.pir_utils.OldIrGuard():
        analysis = StaticAnalysis(program)
    check_names(analysis, param_names, owner)
    blocked = []
    for name in param_names:
        try:
            locate(analysis, name, owner)
        except UnprunableError as exc:
            blocked.append(str(exc).split(": ", 1)[1])
    if blocked:
        raise UnprunableError(f"{owner}: {' '.join(blocked)} Leave them out of 'param_names'.")
    warn_unsupported(analysis, stacklevel=3)
    return list(dict.fromkeys(param_names))


def _metric(value, owner):
    """The float of ``eval_func``'s result (a number, a numpy scalar or a one-element array)."""
    try:
        arr = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size != 1 or not np.isfinite(arr).all():
        raise InvalidParameterError(f"{owner}: 'eval_func' must return one finite number; got {value!r}.")
    return float(arr.reshape(-1)[0])


def sensitivity(program, place, param_names, eval_func, sensitivities_file=None, pruned_ratios=None,
                criterion="l1_norm", scope=None, overwrite=False, metric="metric", model="Program"):
    """Relative metric loss of pruning each parameter's channel group at each ratio.

    Parameters
    ----------
    program : paddle.static.Program
        A legacy-IR program to evaluate (usually the test program); left unchanged.
    place : paddle.Place or None
        Where pruned and restored tensors are put (default: each tensor's own place).
    param_names : list of str
        Parameters to analyse (conv weights, typically).
    eval_func : callable
        ``eval_func(program) -> float``: the metric of ``program`` run in ``scope``.
    sensitivities_file : str, optional
        JSON file rewritten atomically after every point; an existing file made
        for the same setup is resumed (legacy pickles are read, then rewritten as JSON).
    pruned_ratios : list of float, optional
        Ratios in (0, 1); default 0.1 ... 0.9.
    criterion : str or callable
        Channel criterion (see :class:`Pruner`).
    scope : paddle.static.Scope, optional
        Holds the values (default: the global scope).
    overwrite : bool
        Recompute instead of refusing a file made for another setup.
    metric, model : str
        Names stored in the file's metadata.

    Returns
    -------
    dict
        ``{param: {ratio: (base - pruned) / base}}``, including points of other
        parameters already in the file.

    Raises
    ------
    InvalidParameterError, UnknownParameterNameError, UnprunableError, SensitivityFileError
    """
    owner = "sensitivity"
    check_program(program, owner)
    if not callable(eval_func):
        raise InvalidParameterError(f"{owner}: 'eval_func' must be a callable eval_func(program) -> float; "
                                    f"got {eval_func!r}.")
    ratios = sorted({canonical_ratio(r) for r in (DEFAULT_RATIOS if pruned_ratios is None else pruned_ratios)})
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise InvalidParameterError(f"{owner}: 'pruned_ratios' must be numbers in (0, 1); got {pruned_ratios}.")
    targets = _check_targets(program, param_names, owner)
    pruner = Pruner(criterion)
    scope = scope if scope is not None else paddle.static.global_scope()
    crit_name = criterion if isinstance(criterion, str) else getattr(criterion, "__name__", "custom")
    expected = {"model": model, "metric": metric, "criterion": crit_name, "ratios": ratios}
    table, file_meta = {}, {}
    if sensitivities_file is not None and os.path.exists(sensitivities_file):
        table, file_meta = load_sensitivities(sensitivities_file, return_meta=True)
        if check_compatible(file_meta, expected, path=sensitivities_file, overwrite=overwrite):
            table, file_meta = {}, {}
    todo = [(name, r) for name in targets for r in ratios if r not in table.get(name, {})]
    if not todo:
        return {n: dict(points) for n, points in table.items()}
    base = _metric(eval_func(program), owner)
    stored = file_meta.get("baseline")
    if stored is not None and table and not np.isclose(stored, base, rtol=1e-6, atol=1e-9):
        if not overwrite:
            raise SensitivityFileError(
                f"{sensitivities_file}: baseline {metric} is {stored} in the file but {base} now (other weights "
                f"or data?); pass overwrite=True to recompute.")
        table = {}
        todo = [(name, r) for name in targets for r in ratios]
    logger.info("sensitivity: baseline %s = %.6f; %d evaluations to go", metric, base, len(todo))
    warn_if_zero_baseline(base, metric)
    meta = dict(expected, baseline=base, method="naive")
    bar = progress_bar(len(todo), "sensitivity", unit="eval")
    try:
        for name, ratio in todo:
            pruned, backup, _ = pruner._prune(program, scope, [name], [ratio], place, lazy=False,
                                              only_graph=False, param_backup=True, param_shape_backup=False,
                                              warn=False)
            try:
                value = _metric(eval_func(pruned), owner)
            finally:
                restore_scope(scope, backup, place)
            table.setdefault(name, {})[ratio] = relative_loss(base, value)
            if sensitivities_file is not None:
                save_sensitivities(sensitivities_file, table, meta)
            bar.update(1)
            bar.set_postfix_str(f"{name} {ratio:.2f}: {table[name][ratio]:+.4f}")
    finally:
        bar.close()
    return {n: dict(points) for n, points in table.items()}
