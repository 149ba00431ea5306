"""The train loop's optimizer: the PaddleX 1.x default, checks on a user optimizer, and
its state saved under structural parameter names (``model.pdopt``).

Paddle names optimizer state after ``Parameter.name`` (``conv2d_7.w_0_velocity_0``),
which changes with every network built in a process, so ``Optimizer.set_state_dict``
cannot restore a checkpoint into a rebuilt network. ``optimizer_state`` keys each
accumulator by the parameter's structural name (``features.0.0.weight``) instead, and
``restore_optimizer`` creates the accumulators and fills them.
"""
import logging

import numpy as np
import paddle
from paddle.base import framework
from paddle.optimizer.lr import LRScheduler

from paddleprune.errors import DataFormatError, InvalidParameterError

logger = logging.getLogger(__name__)

__all__ = ["WarmupPiecewiseDecay", "default_optimizer", "poly_optimizer", "adam_factory", "adam_poly_factory",
           "resolve_optimizer", "optimizer_state",
           "restore_optimizer", "OPT_FORMAT"]

OPT_FORMAT = "paddleprune.optimizer"


class WarmupPiecewiseDecay(LRScheduler):
    """Piecewise-constant decay with an optional linear warmup (PaddleX 1.x classifier).

    The rate at global step ``s`` is ``warmup_start_lr + (learning_rate -
    warmup_start_lr) * s / warmup_steps`` while ``s < warmup_steps``, then
    ``learning_rate * gamma ** (number of boundaries <= s)``. Boundaries count from
    step 0, not from the end of the warmup.

    Parameters
    ----------
    learning_rate : float
    boundaries : list of int
        Global steps at which the rate is multiplied by ``gamma``.
    gamma : float
    warmup_steps : int
    warmup_start_lr : float
    last_epoch : int
        As for every Paddle scheduler (-1 = not started).
    """

    def __init__(self, learning_rate, boundaries, gamma, warmup_steps=0, warmup_start_lr=0.0, last_epoch=-1):
        self.boundaries = list(boundaries)
        self.gamma = gamma
        self.warmup_steps = warmup_steps
        self.warmup_start_lr = warmup_start_lr
        super().__init__(learning_rate, last_epoch)

    def get_lr(self):
        step = self.last_epoch
        if step < self.warmup_steps:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * step / self.warmup_steps
        return self.base_lr * self.gamma ** sum(step >= b for b in self.boundaries)


def _trainable(net):
    return [p for p in net.parameters() if not p.stop_gradient]


def default_optimizer(owner, net, learning_rate, steps_per_epoch, lr_decay_epochs, lr_decay_gamma,
                      warmup_steps=0, warmup_start_lr=0.0, weight_decay=1e-4):
    """Momentum 0.9, L2 decay ``weight_decay``, piecewise decay at ``lr_decay_epochs`` x ``steps_per_epoch``.

    Raises
    ------
    InvalidParameterError
        If the warmup would run past the first decay boundary (PaddleX's rule).
    """
    boundaries = [e * steps_per_epoch for e in lr_decay_epochs]
    if boundaries and warmup_steps > boundaries[0]:
        raise InvalidParameterError(
            f"{owner}: 'warmup_steps' must be at most lr_decay_epochs[0] x steps per epoch "
            f"({lr_decay_epochs[0]} x {steps_per_epoch} = {boundaries[0]}); got {warmup_steps!r}.")
    scheduler = WarmupPiecewiseDecay(learning_rate, boundaries, lr_decay_gamma, warmup_steps, warmup_start_lr)
    return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, parameters=_trainable(net),
                                     weight_decay=paddle.regularizer.L2Decay(weight_decay))


def poly_optimizer(net, learning_rate, total_steps, power=0.9, weight_decay=4e-5):
    """PaddleX 1.x's segmenter optimizer: Momentum 0.9, L2 ``weight_decay``, and a polynomial decay
    ``learning_rate * (1 - step / total_steps) ** power`` down to 0 over the whole run."""
    scheduler = paddle.optimizer.lr.PolynomialDecay(learning_rate, decay_steps=max(1, total_steps), end_lr=0.0,
                                                    power=power)
    return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=0.9, parameters=_trainable(net),
                                     weight_decay=paddle.regularizer.L2Decay(weight_decay))


def adam_poly_factory(learning_rate, total_steps, power=0.9):
    """An ``optimizer`` for ``train()``: Adam with the segmenters' polynomial decay to 0 over
    ``total_steps``."""
    return lambda parameters: paddle.optimizer.Adam(
        learning_rate=paddle.optimizer.lr.PolynomialDecay(learning_rate, max(1, total_steps), 0.0, power),
        parameters=parameters)


def adam_factory(learning_rate, steps_per_epoch, lr_decay_epochs, warmup_steps=0, lr_decay_gamma=0.1):
    """An ``optimizer`` for ``train()``: a function of the parameters making Adam with the default
    optimizer's schedule (linear warmup, then x``lr_decay_gamma`` at each of ``lr_decay_epochs``)."""
    boundaries = [e * steps_per_epoch for e in lr_decay_epochs]
    return lambda parameters: paddle.optimizer.Adam(
        learning_rate=WarmupPiecewiseDecay(learning_rate, boundaries, lr_decay_gamma, warmup_steps, 0.0),
        parameters=parameters)


def _param_list(opt):
    params = []
    for item in opt._parameter_list or []:
        params.extend(item["params"] if isinstance(item, dict) else [item])
    return params


def _check_bound(owner, opt, net):
    names = {id(p): n for n, p in net.named_parameters()}
    foreign = [p.name for p in _param_list(opt) if id(p) not in names]
    if foreign or not _param_list(opt):
        raise InvalidParameterError(
            f"{owner}: 'optimizer' was created on parameters that are not those of the network train() "
            f"trains ({len(foreign)} foreign, e.g. {foreign[:3]}). train() builds the network, loads "
            "'pretrain_weights' and prunes it before making the optimizer, so an optimizer made earlier "
            "would update stale tensors. Pass a function instead, e.g. "
            "optimizer=lambda params: paddle.optimizer.Adam(learning_rate=1e-3, parameters=params).")
    by_name = {p.name: p for p in _param_list(opt)}
    for store in opt._accumulators.values():
        for pname, acc in store.items():
            param = by_name.get(pname)
            if param is not None and int(np.prod(acc.shape)) > 1 and list(acc.shape) != list(param.shape):
                raise InvalidParameterError(
                    f"{owner}: 'optimizer' was created before pruning: its state for "
                    f"{names[id(param)]} has shape {list(acc.shape)} but the parameter now has "
                    f"{list(param.shape)}. Pass a function that builds the optimizer instead.")
    return opt


def resolve_optimizer(owner, optimizer, net):
    """A user ``optimizer`` checked against ``net`` (already pruned), or None.

    Parameters
    ----------
    optimizer : paddle.optimizer.Optimizer, callable or None
        An optimizer over ``net``'s current parameters, or ``f(parameters) -> Optimizer``
        (called with the trainable parameters after pruning).

    Raises
    ------
    InvalidParameterError
        If it is neither, if it holds parameters of another network (e.g. one built before
        ``train()``), or state whose shape predates pruning.
    """
    if optimizer is None:
        return None
    if not isinstance(optimizer, paddle.optimizer.Optimizer):
        if not callable(optimizer):
            raise InvalidParameterError(
                f"{owner}: 'optimizer' must be None, a paddle.optimizer.Optimizer or a function "
                f"parameters -> Optimizer; got {optimizer!r}.")
        built = optimizer(_trainable(net))
        if not isinstance(built, paddle.optimizer.Optimizer):
            raise InvalidParameterError(
                f"{owner}: the 'optimizer' function must return a paddle.optimizer.Optimizer; got {built!r}.")
        optimizer = built
    return _check_bound(owner, optimizer, net)


def optimizer_state(opt, net, global_step):
    """The optimizer's state keyed by structural parameter names (for ``model.pdopt``)."""
    names = {p.name: n for n, p in net.named_parameters()}
    accumulators = {acc: {names[pn]: np.array(t.numpy()) for pn, t in store.items() if pn in names}
                    for acc, store in opt._accumulators.items()}
    lr = opt._learning_rate
    return {"format": OPT_FORMAT, "version": 1, "optimizer": type(opt).__name__,
            "accumulators": accumulators, "global_step": int(global_step),
            "lr_scheduler": lr.state_dict() if isinstance(lr, LRScheduler) else None}


def restore_optimizer(opt, net, state, path):
    """Fill ``opt`` (fresh, over ``net``) from ``optimizer_state`` output read from ``path``.

    Raises
    ------
    DataFormatError
        If the file is not such a state, was written by another optimizer class, or
        does not fit the network.
    """
    if not isinstance(state, dict) or state.get("format") != OPT_FORMAT:
        raise DataFormatError("not an optimizer state written by paddleprune", path)
    if state["optimizer"] != type(opt).__name__:
        raise DataFormatError(f"holds the state of a {state['optimizer']} optimizer; cannot restore it "
                              f"into a {type(opt).__name__}", path)
    params = dict(net.named_parameters())
    opt._create_accumulators(framework.default_main_program().global_block(), _param_list(opt))
    for acc, values in state["accumulators"].items():
        store = opt._accumulators.get(acc)
        if store is None:
            raise DataFormatError(f"state {acc!r} is unknown to {type(opt).__name__}", path)
        for name, arr in values.items():
            param = params.get(name)
            if param is None or param.name not in store:
                raise DataFormatError(f"{acc} of {name}: the network has no such trainable parameter", path)
            target = store[param.name]
            if list(target.shape) != list(np.shape(arr)):
                raise DataFormatError(f"{acc} of {name} has shape {list(np.shape(arr))}; the network needs "
                                      f"{list(target.shape)}", path)
            target.set_value(np.asarray(arr))
    if state.get("lr_scheduler") is not None and isinstance(opt._learning_rate, LRScheduler):
        opt._learning_rate.set_state_dict(state["lr_scheduler"])
    return int(state.get("global_step", 0))
