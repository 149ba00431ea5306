"""Filter pruning of legacy-IR static Programs with PaddleSlim's ``Pruner`` API (seed 002).

``Pruner().prune(program, scope, params, ratios)`` clones ``program``, finds
the channel group of every named parameter (:mod:`~paddleprune.prune.static.walker`),
scores the named parameter's own filters with the criterion, and removes (or,
with ``lazy``, zeroes) the selected channels from every member of the group:

- the parameter tensors in ``scope`` (unless ``only_graph``) and the optimizer
  accumulators of the same shape (Momentum ``velocity``, Adam ``moment1``/``moment2``, ...),
- the var descs of those parameters and accumulators,
- the ``groups`` attribute of grouped/depthwise convs and channel counts in
  ``reshape2`` ``shape`` attributes, on forward and grad ops,
- then every op's compile-time shape inference runs, so activations and
  gradients get their new shapes.

Programs are legacy IR: build them under ``with paddle.pir_utils.OldIrGuard():``.
"""
import difflib
import logging
import numbers
import re
import warnings

import numpy as np
import paddle

from paddleprune.errors import InvalidParameterError, PruningWarning, UnknownParameterNameError, UnprunableError
from paddleprune.prune import criteria
from paddleprune.prune.groups import GroupView
from paddleprune.prune.static.walker import StaticAnalysis
from paddleprune.prune.tensors import write_dense
from paddleprune.utils.checks import check_interval

logger = logging.getLogger(__name__)

__all__ = ["Pruner", "check_program", "restore_scope"]

_NOT_ACCUMULATOR_SLOTS = {"Param", "Grad", "LearningRate", "MasterParam", "SkipUpdate"}
#: ``<param>_<name>_<n>``: accumulator names of Paddle's optimizers (Momentum, Adam(W), Lamb,
#: Adagrad, Adamax, RMSProp, Adadelta, Ftrl, Lars).
_ACCUMULATOR_SUFFIX = (r"_(velocity|moment1|moment2|moment2_max|moment|momentum|mean_square|mean_grad|inf_norm"
                       r"|squared|linear|_?avg_squared_grad|_?avg_squared_update)_\d+")


def check_program(program, owner):
    """Raise unless ``program`` is a legacy-IR ``paddle.base.framework.Program``."""
    if isinstance(program, paddle.base.framework.Program):
        return
    pir_program = getattr(getattr(paddle, "pir", None), "Program", None)
    if pir_program is not None and isinstance(program, pir_program):
        raise InvalidParameterError(
            f"{owner}: 'program' is a PIR program (paddle.pir.Program); the static pruner edits legacy-IR "
            f"programs. Build it under `with paddle.pir_utils.OldIrGuard():` (or run with "
            f"FLAGS_enable_pir_api=0), or prune the dygraph model with L1NormFilterPruner.")
    raise InvalidParameterError(
        f"{owner}: 'program' must be a legacy-IR paddle.static.Program; got {type(program).__name__}. "
        f"(For a paddle.nn.Layer use L1NormFilterPruner and the other dygraph pruners.)")


def check_names(analysis, names, owner):
    """Raise UnknownParameterNameError (with suggestions) for a name that is not a parameter."""
    for name in names:
        if name not in analysis.params:
            close = difflib.get_close_matches(str(name), list(analysis.params), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownParameterNameError(
                f"{owner}: the program has no parameter named {name!r}.{hint} "
                f"(List them with [p.name for p in program.global_block().all_parameters()].)")


def _check_lists(params, ratios, owner):
    if isinstance(params, str) or not isinstance(params, (list, tuple)) \
            or not all(isinstance(p, str) for p in params):
        raise InvalidParameterError(f"{owner}: 'params' must be a list of parameter names; got {params!r}.")
    if isinstance(ratios, numbers.Real) or not isinstance(ratios, (list, tuple)):
        raise InvalidParameterError(f"{owner}: 'ratios' must be a list of numbers, one per name in "
                                    f"'params'; got {ratios!r}.")
    if len(params) != len(ratios):
        raise InvalidParameterError(f"{owner}: 'params' and 'ratios' must have the same length; got "
                                    f"{len(params)} names and {len(ratios)} ratios.")
    for i, r in enumerate(ratios):
        check_interval(owner, f"ratios[{i}]", r, 0, 1, closed="left")
    return list(params), [float(r) for r in ratios]


def warn_unsupported(analysis, stacklevel=3):
    """One warning per distinct reason a conv/fc group is blocked by an unsupported op."""
    seen = set()
    for group, reason in analysis.unsupported_reasons():
        if reason in seen:
            continue
        seen.add(reason)
        msg = f"channel group of {group.root} ({group.n} channels, {len(group.members)} members) left " \
              f"unpruned: {reason}"
        logger.warning(msg)
        warnings.warn(msg, PruningWarning, stacklevel=stacklevel + 1)


def locate(analysis, name, owner):
    """Index of the prunable group that pruning ``name`` (its axis 0) prunes; raises otherwise."""
    found = analysis.find_groups(name)
    if not found:
        raise UnprunableError(f"{owner}: {name} is in no channel group (only conv and fc weights and the "
                              f"parameters tied to their channels can be pruned).")
    if len(found) > 1:
        roots = ", ".join(analysis.groups[gi].root for gi in found)
        raise UnprunableError(f"{owner}: axis 0 of {name} spans {len(found)} channel groups (its input is a "
                              f"concat of the outputs of {roots}); name one of those instead.")
    group = analysis.groups[found[0]]
    if not group.prunable:
        raise UnprunableError(f"{owner}: {name} cannot be pruned: {group.reason}.")
    return found[0]


def _read(scope, name):
    var = scope.find_var(name)
    if var is None:
        return None
    tensor = var.get_tensor()
    return np.array(tensor) if tensor._is_initialized() else None


class _Entry(dict):
    """Seed-003 group entry whose ``value`` is read from the scope on first use."""

    def __init__(self, scope, name, **fields):
        super().__init__(**fields)
        self._scope, self._name = scope, name

    def __missing__(self, key):
        if key != "value":
            raise KeyError(key)
        self["value"] = value = _read(self._scope, self._name)
        return value


def restore_scope(scope, param_backup, place=None):
    """Put the tensors of ``param_backup`` (from :meth:`Pruner.prune`) back into ``scope``,
    on ``place`` (default: each tensor's own place)."""
    for name, value in param_backup.items():
        write_dense(scope.find_var(name).get_tensor(), value, place)


class Pruner:
    """Prune channels of convs (and fc layers) of a static Program.

    Parameters
    ----------
    criterion : str or callable
        ``'l1_norm'``, ``'l2_norm'``, ``'geometry_median'``, ``'bn_scale'``, or
        ``fn(group, var_name, axis) -> scores`` (one per element of the axis,
        higher = more important; see :mod:`paddleprune.prune.criteria`).
    idx_selector : str or callable
        ``'default'`` (alias ``'default_idx_selector'``): prune the
        ``min(n-1, round_half_even(n*ratio))`` lowest-scoring channels;
        ``'optimal_threshold'``: ``ratio`` is the share of squared-score energy
        removed; or ``fn(unit_scores, ratio, round_to=None) -> pruned unit indices``.
    """

    def __init__(self, criterion="l1_norm", idx_selector="default"):
        criteria.get_criterion(criterion)
        criteria.get_selector(idx_selector)
        self.criterion = criterion
        self.idx_selector = idx_selector

    def prune(self, program, scope, params, ratios, place=None, lazy=False, only_graph=False,
              param_backup=False, param_shape_backup=False):
        """Prune the channel groups of ``params`` at ``ratios``.

        Parameters
        ----------
        program : paddle.static.Program
            A legacy-IR Program; it is cloned, the clone is pruned and returned.
        scope : paddle.static.Scope or None
            Holds the parameter values (``None``: the global scope); pruned in place.
        params : list of str
            Parameter names, each pruned on its axis 0 as in PaddleSlim: a conv
            weight loses output channels, a BN parameter channels, an fc (or
            transposed-conv) weight input rows, i.e. the channels of the layer
            before it. Every member of that channel group is pruned with it;
            when two names fall in one group, the first name's ratio is used.
        ratios : list of float
            One ratio in [0, 1) per name.
        place : paddle.Place, optional
            Where the pruned tensors are put (default: each tensor's own place).
        lazy : bool
            Zero the channels instead of removing them; shapes stay.
        only_graph : bool
            Change the Program only (var descs and attributes), not ``scope``:
            for a second Program (e.g. the eval program) sharing a scope that
            the first prune already cut. The channel count then follows the
            scope tensor's shape when it was already pruned.
        param_backup : bool
            Return ``{name: original value}`` of every scope tensor changed
            (parameters and optimizer accumulators), for :func:`restore_scope`.
        param_shape_backup : bool
            Return ``{name: original shape}`` of every var desc changed.

        Returns
        -------
        (Program, dict or None, dict or None)
            The pruned Program, the value backup and the shape backup.

        Raises
        ------
        InvalidParameterError
            A bad argument (PIR program, lengths differ, ratio out of [0, 1)).
        UnknownParameterNameError
            A name that is not a parameter of the program (with suggestions).
        UnprunableError
            A parameter whose group cannot be pruned (the reason names the op).
        """
        return self._prune(program, scope, params, ratios, place, lazy, only_graph, param_backup,
                           param_shape_backup, warn=True)

    def _prune(self, program, scope, params, ratios, place, lazy, only_graph, param_backup,
               param_shape_backup, warn):
        owner = "Pruner.prune"
        check_program(program, owner)
        names, ratios = _check_lists(params, ratios, owner)
        scope = scope if scope is not None else paddle.static.global_scope()
        with paddle.pir_utils.OldIrGuard():
            pruned = program.clone()
            analysis = StaticAnalysis(pruned)
            check_names(analysis, names, owner)
            if warn:
                warn_unsupported(analysis, stacklevel=3)
            plan = self._plan(analysis, scope, names, ratios, only_graph, owner)
            backup, shapes = {}, {}
            if plan:
                _Applier(analysis, plan, scope, place, lazy, only_graph, backup, shapes).run()
        return pruned, (backup if param_backup else None), (shapes if param_shape_backup else None)

    # -- choosing channels -----------------------------------------------------------
    def _plan(self, analysis, scope, names, ratios, only_graph, owner):
        chosen, plan = {}, {}
        located = []
        for name in names:
            located.append(locate(analysis, name, owner))
        for name, ratio, gi in zip(names, ratios, located):
            if ratio == 0:
                continue
            if gi in chosen:
                first, first_ratio = chosen[gi]
                if first_ratio != ratio:
                    logger.warning("%s is in the same channel group as %s; that group is pruned at %s, the ratio "
                                   "%s given for %s is not used", name, first, first_ratio, ratio, name)
                continue
            chosen[gi] = (name, ratio)
            units = self._units(analysis, analysis.groups[gi], name, 0, ratio, scope, only_graph, owner)
            if len(units):
                plan[gi] = units
        return plan

    def _units(self, analysis, group, name, axis, ratio, scope, only_graph, owner):
        member = group.member(name, axis)
        e = member.expand
        length = analysis.shape(name)[axis]
        value = _read(scope, name)
        if value is None and not only_graph:
            raise InvalidParameterError(f"{owner}: parameter {name} has no value in the scope; run the startup "
                                        f"program in this scope first.")
        if only_graph and value is not None and value.shape[axis] != length:
            removed = length - value.shape[axis]        # the scope was pruned through another program
            if removed < 0 or removed % e:
                raise InvalidParameterError(f"{owner}: {name} has shape {list(value.shape)} in the scope, which "
                                            f"no pruning of its program shape {analysis.shape(name)} gives.")
            return np.arange(removed // e)
        if value is None:
            if self.idx_selector not in ("default", "default_idx_selector"):
                raise InvalidParameterError(f"{owner}: only_graph with selector {self.idx_selector!r} needs the "
                                            f"value of {name} in the scope.")
            return np.arange(criteria.count_to_prune(group.n, ratio))
        entries = {}
        for m in group.members:
            if m.param not in entries:
                entries[m.param] = _Entry(scope, m.param, pruned_dims=[m.axis], layer=None,
                                          var=analysis.params[m.param])
        entries[name].update(pruned_dims=[axis], value=value)
        view = GroupView(entries, group, {})
        scores = np.asarray(criteria.get_criterion(self.criterion)(view, name, axis), dtype="float64")
        if scores.shape != (length,):
            raise InvalidParameterError(f"{owner}: criterion {self.criterion!r} returned {scores.shape[0]} scores "
                                        f"for {name} axis {axis}; expected {length}.")
        unit_scores = np.array([scores[member.offset + u * e: member.offset + (u + 1) * e].mean()
                                for u in range(group.n)])
        pruned = np.unique(np.asarray(criteria.get_selector(self.idx_selector)(unit_scores, ratio), dtype=int))
        if len(pruned) >= group.n:
            raise InvalidParameterError(f"{owner}: the selector would remove every channel of {name}; keep "
                                        f"at least one.")
        return pruned


class _Applier:
    """Apply ``plan`` ({group index: pruned units}) to the analysed Program and the scope."""

    def __init__(self, analysis, plan, scope, place, lazy, only_graph, backup, shapes):
        self.a = analysis
        self.block = analysis.block
        self.plan = plan
        self.scope, self.place = scope, place
        self.lazy, self.only_graph = lazy, only_graph
        self.backup, self.shapes = backup, shapes
        self.orig = {name: analysis.shape(name) for name in analysis.params}

    def run(self):
        cuts = self._cuts()
        by_param = {}
        for (param, axis), idx in cuts.items():
            by_param.setdefault(param, []).append((axis, idx))
        for param, axes in by_param.items():
            for name in [param] + self._accumulators(param):
                if not self.only_graph:
                    self._cut_tensor(name, param, axes)
                if not self.lazy:
                    self._cut_desc(name, param, axes)
        if self.lazy:
            return
        self.new_len = {key: self.orig[key[0]][key[1]] - len(idx) for key, idx in cuts.items()}
        self._fix_attrs()
        self._infer_shapes()

    def _cuts(self):
        cuts = {}
        for gi, units in self.plan.items():
            units = np.asarray(units, dtype=int)
            for m in self.a.groups[gi].members:
                idx = (m.offset + units[:, None] * m.expand + np.arange(m.expand)[None, :]).reshape(-1)
                cuts.setdefault((m.param, m.axis), []).append(idx)
        return {key: np.unique(np.concatenate(parts)) for key, parts in cuts.items()}

    def _accumulators(self, param):
        """Optimizer state shaped like ``param``: inputs of its optimizer ops, and
        persistable vars (program or scope) named ``<param>_<acc>_<n>``."""
        shape = self.orig[param]
        names = []
        for op in self.block.ops:
            if "Param" in op.input_names and op.input("Param") == [param]:
                for slot in op.input_names:
                    if slot not in _NOT_ACCUMULATOR_SLOTS:
                        names.extend(op.input(slot))
        pattern = re.compile(re.escape(param) + _ACCUMULATOR_SUFFIX)
        candidates = [v.name for v in self.block.vars.values() if v.persistable]
        if not self.only_graph:
            candidates += list(self.scope.local_var_names())
        names += [n for n in candidates if pattern.fullmatch(n)]
        out = []
        for name in dict.fromkeys(names):
            var = self.block._find_var_recursive(name)
            if var is not None:
                same = [int(d) for d in var.shape] == shape
            else:
                value = _read(self.scope, name)
                same = value is not None and list(value.shape) == shape
            if same and name != param and name not in self.a.params:
                out.append(name)
        return out

    def _cut_tensor(self, name, param, axes):
        var = self.scope.find_var(name)
        if var is None or not var.get_tensor()._is_initialized():
            return
        tensor = var.get_tensor()
        arr = np.array(tensor)
        if list(arr.shape) != self.orig[param]:
            raise InvalidParameterError(
                f"Pruner.prune: {name} has shape {list(arr.shape)} in the scope but {self.orig[param]} in the "
                f"program; the scope was already pruned through another program (use only_graph=True).")
        self.backup.setdefault(name, arr.copy())
        for axis, idx in axes:
            if self.lazy:
                index = [slice(None)] * arr.ndim
                index[axis] = idx
                arr[tuple(index)] = 0
            else:
                arr = np.delete(arr, idx, axis=axis)
        write_dense(tensor, arr, self.place)

    def _cut_desc(self, name, param, axes):
        var = self.block._find_var_recursive(name)
        if var is None:
            return
        shape = list(self.orig[param])
        self.shapes.setdefault(name, tuple(shape))
        for axis, idx in axes:
            shape[axis] -= len(idx)
        var.desc.set_shape(shape)

    def _fix_attrs(self):
        for site in self.a.attr_sites:
            op = self.block.ops[site.op_index]
            if site.spaces:
                new = site.scale * sum(self.a.kept(s, self.plan) for s in site.spaces)
            else:
                param, axis = site.param
                old_len = self.orig[param][axis]
                new_len = self.new_len.get((param, axis), old_len)
                old = op.attr(site.attr) if site.position is None else op.attr(site.attr)[site.position]
                if (old * new_len) % old_len:
                    raise InvalidParameterError(
                        f"Pruner.prune: {op.type} attribute {site.attr}={old} cannot follow {param} from "
                        f"{old_len} to {new_len} channels.")
                new = old * new_len // old_len
            for target in [op] + self._grad_ops(op):
                if not target.has_attr(site.attr):
                    continue
                if site.position is None:
                    target._set_attr(site.attr, int(new))
                else:
                    value = list(target.attr(site.attr))
                    value[site.position] = int(new)
                    target._set_attr(site.attr, value)

    def _grad_ops(self, op):
        own = set(op.input_arg_names) | set(op.output_arg_names)
        found = []
        for g in self.block.ops:
            if g.type == op.type + "_grad":
                plain = {n for n in g.input_arg_names if "@GRAD" not in n}
                if plain and plain <= own:
                    found.append(g)
        return found

    def _infer_shapes(self):
        for op in self.block.ops:
            try:
                op.desc.infer_shape(self.block.desc)
            except Exception as exc:  # paddle raises many types; shapes are also fixed below
                logger.debug("infer_shape of %s failed: %s", op.type, str(exc).splitlines()[0] if str(exc) else exc)
        for name, lay in self.a.layout.items():
            var = self.block._find_var_recursive(name)
            if var is None or var.persistable:
                continue
            expected = lay.scale * sum(self.a.kept(s, self.plan) for s in lay.spaces)
            for v in (var, self.block._find_var_recursive(name + "@GRAD")):
                shape = [int(d) for d in v.shape] if v is not None else []
                if len(shape) >= 2 and shape[1] > 0 and shape[1] != expected:
                    shape[1] = expected
                    v.desc.set_shape(shape)
