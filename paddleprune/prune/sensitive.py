"""Sensitivity analysis: how much the metric drops when one group is pruned.

``method='naive'`` is PaddleSlim's: physically prune, evaluate, restore, for
every (layer, ratio). The other methods give the same values without
re-tracing or rebuilding: the group's channels are zeroed (equal to removing
them, which the engine's tests prove).

- ``'runtime'``: fixed batches on ONNX Runtime, the model exported once and the
  zeroed parameters fed per point (:mod:`paddleprune.prune.runtime_eval`);
- ``'dygraph'``: zeroed in place in dygraph; with fixed batches the activations
  before the group's first layer are computed once and reused;
- ``'fast'`` (default): ``'runtime'`` when it can be used (fixed batches, a CPU
  model, onnxruntime installed, an export whose outputs equal dygraph's), else
  ``'dygraph'``; the log says which and why.

The table is written atomically after every point; a re-run skips what is done.
Under ``paddle.distributed.launch`` the groups are shared out between the ranks
(:mod:`paddleprune.prune.sensitivity_shards`).
"""
import contextlib
import logging
import os
import sys
import time

import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError, SensitivityFileError, UnprunableError, UnsupportedOpError
from paddleprune.prune.graph import eval_mode
from paddleprune.prune.plan import PruningPlan
from paddleprune.prune.prefix_cache import PrefixCache
from paddleprune.prune.runtime_eval import OUTPUT_TOLERANCE, RuntimeUnavailable, cpu_threads
from paddleprune.prune.sensitivity_files import check_compatible, load_sensitivities, save_sensitivities
from paddleprune.prune.sensitivity_shards import Shards
from paddleprune.prune.sensitivity_table import DEFAULT_RATIOS, canonical_ratio, relative_loss, warn_if_zero_baseline
from paddleprune.utils import dist

logger = logging.getLogger(__name__)

METHODS = ("fast", "runtime", "dygraph", "naive")


def progress_bar(total, desc):
    """A tqdm bar, silent when not on a terminal or under CI."""
    from tqdm import tqdm
    disable = bool(os.environ.get("CI")) or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=disable, unit="eval")


@contextlib.contextmanager
def use_all_cores():
    """Paddle sets OMP_NUM_THREADS=1 on import unless the user set it; unless they did
    (seen before paddle was imported, or PADDLEPRUNE_THREADS), use all cores for CPU math
    within the block. Afterwards Paddle's own setting is back, so training after an analysis
    runs as in a fresh process (with 2 threads a training step was 1.65x slower on a shared
    2-core machine, and its numbers depended on whether the analysis ran first)."""
    paddle.base.core.set_num_threads(cpu_threads())
    try:
        yield
    finally:
        paddle.base.core.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))


def _score(score_fn, outputs):
    """``score_fn`` over the batches' outputs as they are computed (none is kept here);
    whatever it leaves unread is still run (so an activation cache is complete)."""
    try:
        return float(score_fn(outputs))
    finally:
        for _ in outputs:
            pass


def _call(model, batch):
    with paddle.no_grad():
        return model(*batch) if isinstance(batch, (tuple, list)) else model(batch)


class _Evaluator:
    """Evaluates in dygraph, from ``eval_func()`` or from fixed batches + ``score_fn``
    (reusing the activations before the pruned group)."""

    def __init__(self, model, eval_func, eval_batches, score_fn, cache_mb, naive=False):
        self.eval_func = eval_func
        self.score_fn = score_fn
        self.cache = PrefixCache(model, eval_batches, budget_mb=cache_mb) if eval_func is None else None
        self.model = model
        self.naive = naive
        self.method = "naive" if naive else "dygraph"

    def baseline(self):
        if self.cache is None:
            return float(self.eval_func())
        with eval_mode(self.model):
            return _score(self.score_fn, self.cache.iter_record())

    def evaluate(self, owners=None):
        if self.cache is None:
            return float(self.eval_func())
        position = self.cache.first_position(owners) if owners is not None and not self.naive else 0
        return _score(self.score_fn, self.cache.iter_run(position))

    def point(self, pruner, name, ratio):
        if self.naive:
            pruner.prune_var(name, 0, ratio)
            try:
                return self.evaluate()
            finally:
                pruner.restore()
        group, plan = pruner._plan_var(name, 0, ratio)
        owners = {id(pruner.analysis.traced.owner[m.param]): pruner.analysis.traced.owner[m.param]
                  for m in group.members}
        plan.apply(pruner.model, lazy=True)
        try:
            return self.evaluate(list(owners.values()))
        finally:
            plan.restore(pruner.model)


class _RuntimeEvaluator:
    """Evaluates fixed batches + ``score_fn`` on a runtime (model exported once, the zeroed
    parameters fed per point); a group whose parameters the export does not hold is
    evaluated in dygraph (logged)."""

    def __init__(self, pruner, eval_batches, score_fn, backend="onnxruntime"):
        from paddleprune.prune.runtime_eval import RuntimeEvaluator
        model = pruner.model
        if any(not p.place.is_cpu_place() for p in model.parameters()):
            raise RuntimeUnavailable("the model is not on the CPU")
        self.model, self.batches, self.score_fn = model, list(eval_batches), score_fn
        with eval_mode(model):
            self.runtime = RuntimeEvaluator(model, self.batches, dict(pruner.analysis.traced.params))
        self.method = f"runtime-{self.runtime.backend}"
        self.like = None
        self._fallback_logged = set()

    def baseline(self):
        """The dygraph metric (as the naive method's); the runtime's outputs must equal
        dygraph's, batch by batch, or :class:`RuntimeUnavailable` is raised."""
        worst = [0.0]
        raw = self.runtime.raw_outputs()

        def outputs():
            for batch in self.batches:
                out = _call(self.model, batch)
                if self.like is None:
                    self.like = out
                worst[0] = max(worst[0], self.runtime.difference(out, next(raw)))
                yield out
        with eval_mode(self.model):
            base = _score(self.score_fn, outputs())
        if not worst[0] <= OUTPUT_TOLERANCE:
            raise RuntimeUnavailable(f"its outputs differ from dygraph's by {worst[0]:.3g} (relative)")
        on_runtime = _score(self.score_fn, self.runtime.outputs(self.like))
        if on_runtime != base:
            logger.info("sensitivity: the unpruned metric is %.6f on %s and %.6f in dygraph (outputs equal to "
                        "%.2g); the dygraph value is the baseline", on_runtime, self.runtime.backend, base, worst[0])
        return base

    def point(self, pruner, name, ratio):
        group, plan = pruner._plan_var(name, 0, ratio)
        missing = self.runtime.missing(plan.masks)
        if missing:
            if group.root not in self._fallback_logged:
                self._fallback_logged.add(group.root)
                logger.info("sensitivity: group %s evaluated in dygraph: %s holds no copy of %s",
                            group.root, self.runtime.backend, ", ".join(missing[:3]))
            plan.apply(pruner.model, lazy=True)
            try:
                return _score(self.score_fn, (_call(self.model, b) for b in self.batches))
            finally:
                plan.restore(pruner.model)
        overrides = {n: PruningPlan._cut(self.runtime.values[n], masks, lazy=True) for n, masks in plan.masks.items()}
        return _score(self.score_fn, self.runtime.outputs(self.like, overrides))


def _make_evaluator(pruner, method, eval_func, eval_batches, score_fn, cache_mb, owner):
    """The evaluator of ``method`` and its baseline metric."""
    model = pruner.model
    if method in ("fast", "runtime"):
        if eval_func is not None:
            if method == "runtime":
                raise InvalidParameterError(f"{owner}: method='runtime' needs 'eval_batches' and 'score_fn' "
                                            "(an eval_func is opaque: it can only run the dygraph model).")
            logger.info("sensitivity: evaluating in dygraph: an eval_func is opaque (give eval_batches and "
                        "score_fn to evaluate on onnxruntime)")
        else:
            try:
                evaluator = _RuntimeEvaluator(pruner, eval_batches, score_fn)
                return evaluator, evaluator.baseline()
            except RuntimeUnavailable as exc:
                if method == "runtime":
                    raise UnsupportedOpError(f"{owner}: method='runtime' cannot evaluate "
                                             f"{type(model).__name__}: {exc}.") from exc
                logger.info("sensitivity: evaluating in dygraph: onnxruntime cannot be used (%s)", exc)
    evaluator = _Evaluator(model, eval_func, eval_batches, score_fn, cache_mb, naive=(method == "naive"))
    return evaluator, evaluator.baseline()


def compute_sensitivities(pruner, eval_func=None, sen_file=None, target_vars=None, skip_vars=None,
                          ratios=None, method="fast", eval_batches=None, score_fn=None, metric="metric",
                          overwrite=False, cache_mb=1024, meta=None):
    """Sensitivities of ``pruner.model``: ``{param: {ratio: (base - pruned) / base}}``.

    See :meth:`paddleprune.prune.FilterPruner.sensitive` for the parameters. Under
    ``python -m paddle.distributed.launch`` every rank must call it with the same model and
    data: the groups are shared out between the ranks, each writes ``<sen_file>.rank<r>-of-<N>``,
    and every rank returns the merged table, rank 0 having written it to ``sen_file``
    (:mod:`paddleprune.prune.sensitivity_shards`).
    """
    owner = f"{type(pruner).__name__}.sensitive"
    if method not in METHODS:
        raise InvalidParameterError(f"{owner}: 'method' must be one of {list(METHODS)}; got {method!r}.")
    if eval_func is None and (eval_batches is None or score_fn is None):
        raise InvalidParameterError(
            f"{owner}: give 'eval_func' (returns the metric) or both 'eval_batches' and 'score_fn'.")
    ratios = sorted({canonical_ratio(r) for r in (DEFAULT_RATIOS if ratios is None else ratios)})
    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise InvalidParameterError(f"{owner}: 'ratios' must be numbers in (0, 1); got {ratios}.")
    targets = _targets(pruner, target_vars, skip_vars, owner)
    model = pruner.model
    expected = {"model": type(model).__name__, "metric": metric, "criterion": _criterion_name(pruner),
                "ratios": ratios}
    shards = None
    if dist.world()[1] > 1:
        shards = Shards(sen_file, targets)
    table, file_meta = {}, {}
    if sen_file is not None and os.path.exists(sen_file):
        table, file_meta = load_sensitivities(sen_file, return_meta=True)
        if check_compatible(file_meta, expected, path=sen_file, overwrite=overwrite):
            table, file_meta = {}, {}
    # one process adds its points to the file's table; a rank to its part file's
    points, part_meta = (table, file_meta) if shards is None else shards.load_part(expected, overwrite)
    mine = targets if shards is None else shards.mine
    todo = _todo(mine, ratios, table, points)
    if not (todo if shards is None else shards.anything_to_do(todo)):    # every rank takes part
        return {n: dict(table[n]) for n in table}
    out_file = sen_file if shards is None else shards.part
    # the ranks measure different points: an evaluate() inside runs all its data on this rank
    with use_all_cores(), dist.local_evaluation():
        t0 = time.perf_counter()
        evaluator, base = _make_evaluator(pruner, method, eval_func, eval_batches, score_fn, cache_mb, owner)
        method_used, problem = evaluator.method, None
        try:
            if _stale(sen_file, file_meta, table, base, metric, overwrite):
                table = {}
            if shards is not None and _stale(out_file, part_meta, points, base, metric, overwrite):
                points = {}
        except SensitivityFileError as exc:
            if shards is None:
                raise
            problem = exc
        if shards is not None:
            method_used = shards.agree(base, evaluator.method, metric, problem)
        else:
            points = table
        todo = _todo(mine, ratios, table, points)
        logger.info("sensitivity: baseline %s = %.6f (%.1f s); %d evaluations to go (%s method)",
                    metric, base, time.perf_counter() - t0, len(todo), evaluator.method)
        warn_if_zero_baseline(base, metric)
        full_meta = dict(meta or {}, **expected, baseline=base, method=method_used)
        bar = progress_bar(len(todo), "sensitivity")
        try:
            with eval_mode(model):
                start = time.perf_counter()
                for i, (name, ratio) in enumerate(todo, start=1):
                    value = evaluator.point(pruner, name, ratio)
                    points.setdefault(name, {})[ratio] = relative_loss(base, value)
                    if out_file is not None:
                        save_sensitivities(out_file, points, full_meta)
                    bar.update(1)
                    if bar.disable and (i % 10 == 0 or i == len(todo)):   # no bar in logs: say where we are
                        spent = time.perf_counter() - start
                        logger.info("sensitivity: %d/%d evaluations, %.0f s, about %.0f s to go", i, len(todo),
                                    spent, spent / i * (len(todo) - i))
                    bar.set_postfix_str(f"{name} {ratio:.1f}: {points[name][ratio]:+.4f}")
        finally:
            bar.close()
    if shards is not None:
        return shards.finish(table, points, full_meta)
    return {n: dict(points[n]) for n in points}


def _todo(names, ratios, *done):
    return [(n, r) for n in names for r in ratios if not any(r in table.get(n, {}) for table in done)]


def _stale(path, file_meta, table, base, metric, overwrite):
    """True when ``table`` (read from ``path``) was measured against another baseline and
    ``overwrite`` asks to recompute it; without ``overwrite`` that is an error."""
    stored = file_meta.get("baseline")
    if stored is None or not table or np.isclose(stored, base, rtol=1e-6, atol=1e-9):
        return False
    if not overwrite:
        raise SensitivityFileError(
            f"{path}: baseline {metric} is {stored} in the file but {base} now (other weights or "
            "data?); pass overwrite=True to recompute.")
    return True


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
