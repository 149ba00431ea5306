"""Sensitivity analysis: how much the metric drops when one group is pruned.

``method='naive'`` is PaddleSlim's: physically prune, evaluate, restore, for
every (layer, ratio). ``method='fast'`` (default) gives the same values
without re-tracing or rebuilding: the group's channels are zeroed in place
(equal to removing them, which the engine's tests prove) and, when the
evaluation data are given as fixed batches, the activations before the
group's first layer are computed once and reused.

The table is written atomically after every point; a re-run skips what is done.
"""
import logging
import os
import sys
import time

import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError, SensitivityFileError, UnprunableError
from paddleprune.prune.graph import eval_mode
from paddleprune.prune.prefix_cache import PrefixCache
from paddleprune.prune.sensitivity_files import check_compatible, load_sensitivities, save_sensitivities
from paddleprune.prune.sensitivity_table import canonical_ratio

logger = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def progress_bar(total, desc):
    """A tqdm bar, silent when not on a terminal or under CI."""
    from tqdm import tqdm
    disable = bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=disable, unit="eval")


def use_all_cores():
    """Paddle sets OMP_NUM_THREADS=1 on import unless the user set it; unless they did
    (seen before paddle was imported, or PADDLEPRUNE_THREADS), use all cores for CPU math."""
    import paddleprune
    wanted = os.environ.get("PADDLEPRUNE_THREADS") or paddleprune.USER_OMP_NUM_THREADS
    paddle.base.core.set_num_threads(int(wanted) if wanted else (os.cpu_count() or 1))


def relative_loss(base, value):
    """(base - value) / base; may be negative."""
    if base == 0:
        raise InvalidParameterError("sensitivity: the baseline metric is 0; a relative loss is undefined.")
    return (base - value) / base


class _Evaluator:
    """Evaluates the model as it is, from ``eval_func()`` or from fixed batches + ``score_fn``."""

    def __init__(self, model, eval_func, eval_batches, score_fn, cache_mb):
        if eval_func is None and (eval_batches is None or score_fn is None):
            raise InvalidParameterError(
                "sensitive: give 'eval_func' (returns the metric) or both 'eval_batches' and 'score_fn'.")
        self.eval_func = eval_func
        self.score_fn = score_fn
        self.cache = PrefixCache(model, eval_batches, budget_mb=cache_mb) if eval_func is None else None
        self.model = model

    def baseline(self):
        if self.cache is None:
            return float(self.eval_func())
        with eval_mode(self.model):
            return self._score(self.cache.iter_record())

    def evaluate(self, owners=None):
        if self.cache is None:
            return float(self.eval_func())
        position = self.cache.first_position(owners) if owners is not None else 0
        return self._score(self.cache.iter_run(position))

    def _score(self, outputs):
        """``score_fn`` over the batches' outputs as they are computed (none is kept here);
        whatever it leaves unread is still run, so the activation cache is complete."""
        try:
            return float(self.score_fn(outputs))
        finally:
            for _ in outputs:
                pass


def compute_sensitivities(pruner, eval_func=None, sen_file=None, target_vars=None, skip_vars=None,
                          ratios=None, method="fast", eval_batches=None, score_fn=None, metric="metric",
                          overwrite=False, cache_mb=1024, meta=None):
    """Sensitivities of ``pruner.model``: ``{param: {ratio: (base - pruned) / base}}``.

    See :meth:`paddleprune.prune.FilterPruner.sensitive` for the parameters.
    """
    owner = f"{type(pruner).__name__}.sensitive"
    if method not in ("fast", "naive"):
        raise InvalidParameterError(f"{owner}: 'method' must be 'fast' or 'naive'; got {method!r}.")
    ratios = sorted({canonical_ratio(r) for r in (DEFAULT_RATIOS if ratios is None else ratios)})
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise InvalidParameterError(f"{owner}: 'ratios' must be numbers in (0, 1); got {ratios}.")
    targets = _targets(pruner, target_vars, skip_vars, owner)
    model = pruner.model
    expected = {"model": type(model).__name__, "metric": metric, "criterion": _criterion_name(pruner),
                "ratios": ratios}
    table, file_meta = {}, {}
    if sen_file is not None and os.path.exists(sen_file):
        table, file_meta = load_sensitivities(sen_file, return_meta=True)
        if check_compatible(file_meta, expected, path=sen_file, overwrite=overwrite):
            table, file_meta = {}, {}
    evaluator = _Evaluator(model, eval_func, eval_batches, score_fn, cache_mb)
    todo = [(name, r) for name in targets for r in ratios if r not in table.get(name, {})]
    if not todo:
        return {n: dict(table[n]) for n in table}
    use_all_cores()
    t0 = time.perf_counter()
    base = evaluator.baseline()
    stored = file_meta.get("baseline")
    if stored is not None and table and not np.isclose(stored, base, rtol=1e-6, atol=1e-9):
        if not overwrite:
            raise SensitivityFileError(
                f"{sen_file}: baseline {metric} is {stored} in the file but {base} now (other weights or "
                "data?); pass overwrite=True to recompute.")
        table = {}
        todo = [(name, r) for name in targets for r in ratios]
    logger.info("sensitivity: baseline %s = %.6f (%.1f s); %d evaluations to go (%s method)",
                metric, base, time.perf_counter() - t0, len(todo), method)
    full_meta = dict(meta or {}, **expected, baseline=base, method=method)
    bar = progress_bar(len(todo), "sensitivity")
    try:
        with eval_mode(model):
            start = time.perf_counter()
            for i, (name, ratio) in enumerate(todo, start=1):
                value = _evaluate_point(pruner, evaluator, name, ratio, method)
                table.setdefault(name, {})[ratio] = relative_loss(base, value)
                if sen_file is not None:
                    save_sensitivities(sen_file, table, full_meta)
                bar.update(1)
                if bar.disable and (i % 10 == 0 or i == len(todo)):   # no bar in logs: say where we are
                    spent = time.perf_counter() - start
                    logger.info("sensitivity: %d/%d evaluations, %.0f s, about %.0f s to go", i, len(todo),
                                spent, spent / i * (len(todo) - i))
                bar.set_postfix_str(f"{name} {ratio:.1f}: {table[name][ratio]:+.4f}")
    finally:
        bar.close()
    return {n: dict(table[n]) for n in table}


def _criterion_name(pruner):
    crit = pruner.criterion
    return crit if isinstance(crit, str) else getattr(crit, "__name__", type(pruner).__name__)


def _targets(pruner, target_vars, skip_vars, owner):
    skip = {pruner.structural_name(n) for n in (skip_vars or ())}
    if target_vars is None:
        names = [g.root for g in pruner.prunable_groups()]
    else:
        names = []
        for n in target_vars:
            name = pruner.structural_name(n)
            group = pruner.find_group(name, 0)
            if not group.prunable:
                raise UnprunableError(f"{owner}: {name} cannot be pruned: {group.reason}.")
            names.append(name)
    return [n for n in dict.fromkeys(names) if n not in skip]


def _evaluate_point(pruner, evaluator, name, ratio, method):
    if method == "naive":
        pruner.prune_var(name, 0, ratio)
        try:
            return evaluator.evaluate()
        finally:
            pruner.restore()
    group, plan = pruner._plan_var(name, 0, ratio)
    owners = {id(pruner.analysis.traced.owner[m.param]): pruner.analysis.traced.owner[m.param]
              for m in group.members}
    plan.apply(pruner.model, lazy=True)
    try:
        return evaluator.evaluate(list(owners.values()))
    finally:
        plan.restore(pruner.model)
