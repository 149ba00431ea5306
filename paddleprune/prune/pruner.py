"""Dygraph filter pruners with the PaddleSlim 2.x API (seed 003 names)."""
import logging
import warnings

import numpy as np

from paddleprune.errors import InvalidParameterError, PruningWarning, UnprunableError
from paddleprune.prune import criteria
from paddleprune.prune.analysis import Analysis
from paddleprune.prune.flops import count_flops, pruned_shapes
from paddleprune.prune.graph import resolve_name, trace
from paddleprune.prune.groups import ChannelGroup, GroupView
from paddleprune.prune.handlers import handler_for
from paddleprune.prune.plan import PruningMask, PruningPlan
from paddleprune.utils.checks import check_interval

logger = logging.getLogger(__name__)

_APPLY_MODES = {"impretive": "physical", "imperative": "physical", "lazy": "lazy", None: None}


class FilterPruner:
    """Prune filters of a dygraph model, physically and in place.

    Parameters
    ----------
    model : paddle.nn.Layer
    inputs : list of int, list of shapes, or tensors
        The input shape(s) used to trace the model, batch included, e.g. ``[1, 3, 224, 224]``.
    sen_file : str, optional
        Sensitivities file used by :meth:`sensitive` and :meth:`sensitive_prune`.
    opt : paddle.optimizer.Optimizer, optional
        An optimizer created before pruning; its state is cut with the same masks.
    round_to : int, optional
        Keep a multiple of this many channels in every pruned group.

    Subclasses choose ``criterion`` and ``idx_selector`` (registered names) or
    override :meth:`cal_mask` as in seed 003.
    """
    criterion = "l1_norm"
    idx_selector = "default"

    def __init__(self, model, inputs, sen_file=None, opt=None, skip_leaves=True, round_to=None):
        owner = type(self).__name__
        if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
            raise InvalidParameterError(f"{owner}: 'round_to' must be a positive int or None; got {round_to!r}.")
        self.model = model
        self.inputs = inputs
        self.sen_file = sen_file
        self.opt = opt
        self.skip_leaves = skip_leaves
        self.round_to = round_to
        self.plan = PruningPlan()
        self._warned = set()
        self._analysis = None
        self._analyse()

    # -- analysis ------------------------------------------------------------------
    def _analyse(self):
        traced = trace(self.model, self.inputs, owner=type(self).__name__)
        analysis = Analysis(traced)
        analysis.groups = [self._check_handlers(g, traced) for g in analysis.groups]
        for g in analysis.groups:
            if g.producers and g.reason and ("unsupported" in g.reason or "handler" in g.reason) \
                    and g.reason not in self._warned:
                self._warned.add(g.reason)
                msg = f"channel group of {g.root} ({g.n} channels, {len(g.members)} members) left unpruned: {g.reason}"
                logger.warning(msg)
                warnings.warn(msg, PruningWarning, stacklevel=3)
        self._analysis = analysis
        return analysis

    @staticmethod
    def _check_handlers(group, traced):
        if not group.prunable:
            return group
        for m in group.members:
            layer = traced.owner[m.param]
            if handler_for(layer) is None:
                reason = (f"parameter {m.param} belongs to {type(layer).__name__}, "
                          "which has no pruning handler")
                return ChannelGroup(group.root, group.root_axis, group.members, group.n, False, reason,
                                    group.producers, group.norm_scales)
        return group

    @property
    def analysis(self):
        if self._analysis is None:
            self._analyse()
        return self._analysis

    @property
    def groups(self):
        """All channel groups (prunable or not) of the model as it is now."""
        return self.analysis.groups

    def prunable_groups(self):
        return [g for g in self.groups if g.prunable]

    def structural_name(self, name):
        return resolve_name(self.analysis.traced, name, type(self).__name__)

    def find_group(self, var_name, axis=0):
        """The group in which ``var_name``'s axis ``axis`` is a member."""
        owner = type(self).__name__
        name = self.structural_name(var_name)
        ndim = len(self.analysis.traced.params[name].shape)
        if not isinstance(axis, int) or not 0 <= axis < ndim:
            raise InvalidParameterError(f"{owner}: axis {axis!r} is not an axis of {name} (ndim {ndim}).")
        found = [g for g in self.groups if g.member(name, axis) is not None]
        if not found:
            raise UnprunableError(
                f"{owner}: {name} axis {axis} is in no channel group (only output-channel axes of convs and "
                f"linear layers and the axes tied to them can be pruned).")
        if len(found) > 1:
            roots = ", ".join(g.root for g in found)
            raise InvalidParameterError(
                f"{owner}: {name} axis {axis} spans {len(found)} channel groups (its input is a concat of "
                f"{roots}); name one of those instead.")
        return found[0]

    def group_dict(self, group, var_name=None, axis=0):
        """The seed-003 ``group`` dict for ``group`` (values are the current weights)."""
        traced = self.analysis.traced
        entries = {}
        for m in group.members:
            if m.param not in entries:
                entries[m.param] = {"pruned_dims": [m.axis], "layer": traced.owner[m.param],
                                    "var": traced.params[m.param],
                                    "value": np.array(traced.params[m.param].value().get_tensor())}
        if var_name is not None:
            entries[var_name]["pruned_dims"] = [axis]
        aliases = {traced.params[p].name: p for p in entries}
        return GroupView(entries, group, aliases)

    # -- masks -----------------------------------------------------------------------
    def cal_mask(self, var_name, pruned_ratio, group):
        """Keep-mask (int32, 1 = keep) over ``var_name``'s pruned axis; override to customise."""
        channel_group = group.channel_group
        axis = group[var_name]["pruned_dims"][0]
        scores = criteria.get_criterion(self.criterion)(group, var_name, axis)
        member = channel_group.member(self.structural_name(var_name), axis)
        e = member.expand
        units = np.array([scores[member.offset + u * e: member.offset + (u + 1) * e].mean()
                          for u in range(channel_group.n)])
        pruned = criteria.get_selector(self.idx_selector)(units, pruned_ratio, round_to=self.round_to)
        mask = np.ones(len(scores), dtype="int32")
        for u in pruned:
            mask[member.offset + u * e: member.offset + (u + 1) * e] = 0
        return mask

    def _unit_mask(self, group, name, axis, ratio):
        view = self.group_dict(group, name, axis)
        mask = np.asarray(self.cal_mask(name, ratio, view)).reshape(-1)
        length = int(self.analysis.traced.params[name].shape[axis])
        if len(mask) != length:
            raise InvalidParameterError(
                f"{type(self).__name__}.cal_mask returned a mask of length {len(mask)} for {name} "
                f"axis {axis}; expected {length}.")
        member = group.member(name, axis)
        e = member.expand
        keep = np.array([mask[member.offset + u * e: member.offset + (u + 1) * e].mean() >= 0.5
                         for u in range(group.n)])
        if not keep.any():
            raise InvalidParameterError(
                f"{type(self).__name__}.cal_mask would remove every channel of {name}; keep at least one.")
        return keep

    def plan_for_units(self, group, pruned_units, ratio):
        """A :class:`PruningPlan` removing units ``pruned_units`` of ``group`` from every member."""
        plan = PruningPlan()
        params = self.analysis.traced.params
        pruned_units = sorted(int(u) for u in pruned_units)
        for m in group.members:
            mask = np.ones(int(params[m.param].shape[m.axis]), dtype="int32")
            for u in pruned_units:
                mask[m.offset + u * m.expand: m.offset + (u + 1) * m.expand] = 0
            plan.add(m.param, PruningMask([m.axis], mask, ratio, group.root))
        plan.records.append([{"group": group.root, "axis": group.root_axis, "units": group.n,
                              "pruned": pruned_units}])
        return plan

    def _plan_var(self, var_name, axis, ratio):
        owner = type(self).__name__
        check_interval(owner, "pruned_ratio", ratio, 0, 1, closed="left")
        name = self.structural_name(var_name)
        group = self.find_group(name, axis)
        if not group.prunable:
            raise UnprunableError(f"{owner}: {name} cannot be pruned: {group.reason}.")
        keep = self._unit_mask(group, name, axis, ratio)
        return group, self.plan_for_units(group, np.flatnonzero(~keep), ratio)

    # -- pruning ---------------------------------------------------------------------
    def prune_var(self, var_name, pruned_dims, pruned_ratio, apply="impretive"):
        """Prune ``pruned_ratio`` of the channels of ``var_name``'s group.

        ``apply``: ``'impretive'``/``'imperative'`` removes channels, ``'lazy'``
        zeroes them, ``None`` only returns the plan.
        """
        axis = self._axis(pruned_dims)
        _, plan = self._plan_var(var_name, axis, pruned_ratio)
        return self._apply(plan, apply)

    def prune_vars(self, ratios, axis=0, apply="impretive"):
        """Prune several groups at once: ``ratios`` maps parameter names to ratios."""
        owner = type(self).__name__
        if not isinstance(ratios, dict):
            raise InvalidParameterError(f"{owner}.prune_vars: 'ratios' must be a dict {{name: ratio}}; got {type(ratios).__name__}.")
        axis = self._axis(axis)
        plan, chosen = PruningPlan(), {}
        for name, ratio in ratios.items():
            group, sub = self._plan_var(name, axis, ratio)
            if group.root in chosen:
                first_name, first_ratio = chosen[group.root]
                if abs(first_ratio - ratio) > 1e-9:
                    logger.warning("%s is in the same channel group as %s; that group is pruned at %s, "
                                   "the ratio %s given for %s is not used", name, first_name, first_ratio, ratio, name)
                continue
            chosen[group.root] = (name, ratio)
            plan.extend(sub, same_step=True)
        return self._apply(plan, apply)

    def _axis(self, dims):
        if isinstance(dims, (list, tuple)):
            if len(dims) != 1:
                raise InvalidParameterError(f"{type(self).__name__}: exactly one pruned axis is supported; got {list(dims)}.")
            dims = dims[0]
        if not isinstance(dims, (int, np.integer)):
            raise InvalidParameterError(f"{type(self).__name__}: the pruned axis must be an int; got {dims!r}.")
        return int(dims)

    def _apply(self, plan, apply):
        if apply not in _APPLY_MODES:
            raise InvalidParameterError(
                f"{type(self).__name__}: 'apply' must be 'impretive', 'imperative', 'lazy' or None; got {apply!r}.")
        mode = _APPLY_MODES[apply]
        if mode is None:
            return plan
        plan._pruned_flops = self.pruned_flops_of(plan)
        plan.apply(self.model, lazy=(mode == "lazy"), opt=self.opt)
        self.plan.extend(plan)
        self.plan._backup.update({k: v for k, v in plan._backup.items() if k not in self.plan._backup})
        self.plan._opt_backup.update({k: v for k, v in plan._opt_backup.items() if k not in self.plan._opt_backup})
        if mode == "physical":
            self._analysis = None
        return plan

    def restore(self):
        """Undo every prune applied through this pruner."""
        self.plan.restore(self.model, self.opt)
        self.plan = PruningPlan()
        self._analysis = None

    # -- sensitivities ----------------------------------------------------------------
    def sensitive(self, eval_func=None, sen_file=None, target_vars=None, skip_vars=None, ratios=None,
                  method="fast", eval_batches=None, score_fn=None, metric="metric", overwrite=False,
                  cache_mb=1024, meta=None):
        """Measure, for each group and ratio, the relative metric loss ``(base - pruned) / base``.

        Parameters
        ----------
        eval_func : callable, optional
            ``eval_func() -> float``: the metric of ``self.model`` as it is now.
        sen_file : str, optional
            JSON file rewritten after every point; an existing file made for the
            same model, metric, criterion and ratios is resumed.
        target_vars, skip_vars : list of str, optional
            Parameters to analyse (default: the root of every prunable group) / to leave out.
        ratios : list of float, optional
            Default 0.1 ... 0.9.
        method : {'fast', 'runtime', 'dygraph', 'naive'}
            'naive' physically prunes, evaluates and restores every point. The others zero
            the group's channels instead (same values): 'runtime' evaluates ``eval_batches``
            on ONNX Runtime (exported once, the zeroed weights fed per point), 'dygraph' in
            dygraph; 'fast' is 'runtime' when it can be used, else 'dygraph' (logged).
        eval_batches, score_fn : optional
            Fixed evaluation inputs (one entry per batch: a tensor, or a tuple of the
            network's inputs) and ``score_fn(outputs) -> float``, where ``outputs`` yields
            each batch's model outputs in order as they are computed (score them batch by
            batch; none is kept); given instead of ``eval_func``, the points run on ONNX
            Runtime, or in dygraph reusing the activations before each group.
        metric : str
            Name of the metric, stored in the file.
        overwrite : bool
            Recompute instead of refusing a file made for another setup.
        meta : dict, optional
            More of what the file was made for (``model_params``, ``input_shape``,
            ``num_classes``), stored in it and checked when it is used for pruning.

        Returns
        -------
        dict
            ``{param: {ratio: loss}}``; also kept as ``self.sensitivities``.

        Under ``python -m paddle.distributed.launch --nproc_per_node N`` every rank must call
        it (same weights, same full evaluation data): each rank measures every N-th group,
        writing ``<sen_file>.rank<r>-of-<N>``, and all return the merged table that rank 0
        writes to ``sen_file``.
        """
        from paddleprune.prune.sensitive import compute_sensitivities
        sen_file = sen_file if sen_file is not None else self.sen_file
        self.sensitivities = compute_sensitivities(
            self, eval_func=eval_func, sen_file=sen_file, target_vars=target_vars, skip_vars=skip_vars,
            ratios=ratios, method=method, eval_batches=eval_batches, score_fn=score_fn, metric=metric,
            overwrite=overwrite, cache_mb=cache_mb, meta=meta)
        return self.sensitivities

    def plan_for_ratios(self, ratios, round_to=None):
        """A plan (not applied) for ``{param: ratio}``; zero ratios and repeated groups are skipped."""
        saved, self.round_to = self.round_to, round_to if round_to is not None else self.round_to
        try:
            plan, seen = PruningPlan(), set()
            for name, ratio in ratios.items():
                if ratio <= 0:
                    continue
                group, sub = self._plan_var(name, 0, ratio)
                if group.root not in seen:
                    seen.add(group.root)
                    plan.extend(sub, same_step=True)
            return plan
        finally:
            self.round_to = saved

    def sensitive_prune(self, pruned_flops, skip_vars=None, align=None, sensitivities=None):
        """Prune to remove ``pruned_flops`` of the FLOPs using the sensitivities: one loss
        threshold for all layers, found by bisection. Returns the applied plan; its
        ``pruned_flops`` is the share actually removed."""
        from paddleprune.prune.ratios import search_loss_threshold
        from paddleprune.prune.sensitivity_files import load_sensitivities
        owner = type(self).__name__ + ".sensitive_prune"
        check_interval(owner, "pruned_flops", pruned_flops, 0, 1)
        table = sensitivities or getattr(self, "sensitivities", None)
        if table is None:
            if self.sen_file is None:
                raise InvalidParameterError(f"{owner}: no sensitivities: run sensitive() or give sen_file.")
            table = load_sensitivities(self.sen_file)
        skip = {self.structural_name(n) for n in (skip_vars or ())}
        table = {self.structural_name(n): pts for n, pts in table.items()}
        table = {n: pts for n, pts in table.items() if n not in skip and self.find_group(n, 0).prunable}
        result = search_loss_threshold(
            table, pruned_flops, lambda r: self.pruned_flops_of(self.plan_for_ratios(r, align)))
        plan = self.plan_for_ratios(result.ratios, align)
        self._apply(plan, "impretive")
        logger.info("sensitive_prune: loss threshold %.4f removes %.1f%% of FLOPs (target %.1f%%)",
                    result.threshold, 100 * plan.pruned_flops, 100 * pruned_flops)
        return plan

    # -- counting --------------------------------------------------------------------
    def flops(self, plan=None):
        """FLOPs (2 x multiply-accumulates of conv and linear layers) of the model
        as it is, or as it would be after ``plan``, without touching it."""
        traced = self.analysis.traced
        shapes = {n: [int(d) for d in p.shape] for n, p in traced.params.items()}
        if plan is not None:
            shapes = pruned_shapes(shapes, plan)
        return count_flops(self.analysis.flop_sites, shapes)

    def params(self, plan=None):
        """Parameter elements of the model as it is, or after ``plan``."""
        shapes = {n: [int(d) for d in p.shape] for n, p in self.analysis.traced.params.items()}
        if plan is not None:
            shapes = pruned_shapes(shapes, plan)
        return sum(int(np.prod(s)) for s in shapes.values())

    def cost_of(self, ratios):
        """``{"flops": share removed, "params": share removed}`` if ``ratios`` were applied."""
        plan = self.plan_for_ratios(ratios)
        return {"flops": self.pruned_flops_of(plan), "params": 1.0 - self.params(plan) / self.params()}

    def pruned_flops_of(self, plan):
        base = self.flops()
        return 0.0 if base == 0 else 1.0 - self.flops(plan) / base

    def uniform_plan(self, ratio):
        """A plan pruning every prunable group at ``ratio`` (not applied)."""
        plan = PruningPlan()
        for g in self.prunable_groups():
            plan.extend(self._plan_var(g.root, g.root_axis, ratio)[1], same_step=True)
        return plan

    def uniform_ratio_for_flops(self, target, tol=1e-3):
        """The uniform ratio whose plan removes ``target`` of the FLOPs (bisection)."""
        check_interval(type(self).__name__, "target", target, 0, 1)
        lo, hi = 0.0, 0.99
        for _ in range(30):
            mid = (lo + hi) / 2
            if self.pruned_flops_of(self.uniform_plan(mid)) < target:
                lo = mid
            else:
                hi = mid
            if hi - lo < tol:
                break
        return hi


def sensitive(model, inputs, eval_func=None, sen_file=None, criterion="l1_norm", **kwargs):
    """Functional form of :meth:`FilterPruner.sensitive` for ``model`` traced at ``inputs``."""
    pruner = type("Pruner", (FilterPruner,), {"criterion": criterion})(model, inputs)
    return pruner.sensitive(eval_func=eval_func, sen_file=sen_file, **kwargs)


def apply_records(model, inputs, records):
    """Replay a pruning record (``PruningPlan.records``) on a freshly built model."""
    for step in records:
        pruner = FilterPruner(model, inputs)
        groups = {(g.root, g.root_axis): g for g in pruner.groups}
        plan = PruningPlan()
        for rec in step:
            group = groups.get((rec["group"], rec["axis"]))
            if group is None or group.n != rec["units"]:
                raise InvalidParameterError(
                    f"apply_records: the model has no channel group rooted at {rec['group']} with "
                    f"{rec['units']} channels; it is not the architecture the record was made for.")
            plan.extend(pruner.plan_for_units(group, rec["pruned"], None), same_step=True)
        plan.apply(model, backup=False)
    return model


class L1NormFilterPruner(FilterPruner):
    """Prune the filters with the smallest mean absolute weight."""
    criterion = "l1_norm"


class L2NormFilterPruner(FilterPruner):
    """Prune the filters with the smallest L2 norm."""
    criterion = "l2_norm"


class FPGMFilterPruner(FilterPruner):
    """Prune the filters closest to the geometric median (FPGM)."""
    criterion = "geometry_median"


class BNScaleFilterPruner(FilterPruner):
    """Prune the channels with the smallest |gamma| of the following batch norm (network slimming)."""
    criterion = "bn_scale"


SlimFilterPruner = BNScaleFilterPruner


class OptSlimFilterPruner(FilterPruner):
    """BN-scale scores with the optimal-threshold selector: ``ratio`` is the share of
    squared-gamma energy removed."""
    criterion = "bn_scale"
    idx_selector = "optimal_threshold"
