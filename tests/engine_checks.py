"""Shared checks for pruned models: masked == shrunk, smaller, trainable, replayable."""
import copy

import numpy as np
import paddle
import paddle.nn as nn

from paddleprune.prune import FilterPruner, apply_records, count_params

_STATS = ("_mean", "_variance")


def randomize_norm_stats(model, seed=0):
    """Give every BN non-trivial running statistics so that masking errors show."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        if name.endswith("_mean"):
            p.set_value(rng.normal(0, 0.5, p.shape).astype("float32"))
        elif name.endswith("_variance"):
            p.set_value(rng.uniform(0.5, 2.0, p.shape).astype("float32"))


def first_output(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def produced_mask(model, plan):
    """Zero pruned channels where they are produced (filters, biases, norm scale/shift);
    consumers' input weights are left as they are. Independent of the engine's lazy mode."""
    params = dict(model.named_parameters())
    layers = dict(model.named_sublayers(include_self=True))
    for name, masks in plan.masks.items():
        prefix, _, attr = name.rpartition(".")
        layer = layers.get(prefix, model)
        arr = params[name].numpy()
        for m in masks:
            axis = m.dims[0]
            out_axis = {nn.Linear: 1}.get(type(layer), 0)
            if isinstance(layer, (nn.Conv2DTranspose,)):
                out_axis = 1
            produced = (arr.ndim == 1 and attr not in _STATS) or (arr.ndim > 1 and axis == out_axis)
            if isinstance(layer, nn.Conv2D) and layer._groups > 1 and axis == 0:
                produced = True
            if produced:
                shape = [1] * arr.ndim
                shape[axis] = -1
                arr = arr * m.mask.reshape(shape)
        params[name].set_value(arr.astype("float32"))


def check_pruned_model(model, input_shape, ratios_for, pruner_cls=FilterPruner, atol=1e-4):
    """Prune ``model`` with ``ratios_for(pruner) -> {param: ratio}`` and check (a)-(d) and replay.

    Returns the pruner and plan.
    """
    model.eval()
    randomize_norm_stats(model)
    x = paddle.uniform([2] + list(input_shape[1:]), min=-1, max=1)
    pristine = copy.deepcopy(model)
    pruner = pruner_cls(model, input_shape)
    flops0, params0 = pruner.flops(), count_params(model)
    ratios = ratios_for(pruner)
    plan = pruner.prune_vars(ratios, axis=0)
    assert not plan.is_empty(), "nothing was pruned"
    y_pruned = first_output(model(x)).numpy()
    # (b) reference: the unpruned model with the same channels zeroed where produced
    reference = copy.deepcopy(pristine)
    produced_mask(reference, plan)
    y_masked = first_output(reference(x)).numpy()
    assert y_pruned.shape == y_masked.shape == first_output(pristine(x)).shape   # (a)
    scale = max(1.0, float(np.abs(y_masked).max()))
    np.testing.assert_allclose(y_pruned, y_masked, rtol=1e-4, atol=atol * scale)
    # (c) smaller
    assert count_params(model) < params0
    assert FilterPruner(model, input_shape).flops() < flops0
    # replay on a fresh copy rebuilds the same shapes
    replayed = apply_records(copy.deepcopy(pristine), input_shape, plan.records)
    assert {n: list(p.shape) for n, p in replayed.named_parameters()} == \
           {n: list(p.shape) for n, p in model.named_parameters()}
    # (d) one training step with a fresh optimizer
    model.train()
    opt = paddle.optimizer.Momentum(learning_rate=0.01, parameters=model.parameters())
    loss = first_output(model(x)).mean()
    loss.backward()
    opt.step()
    opt.clear_grad()
    assert np.isfinite(loss.item())
    return pruner, plan


def uniform(ratio):
    return lambda pruner: {g.root: ratio for g in pruner.prunable_groups()}


def random_ratios(seed):
    def make(pruner):
        rng = np.random.default_rng(seed)
        return {g.root: float(rng.uniform(0.05, 0.9)) for g in pruner.prunable_groups()}
    return make


def fixed_eval(model, n_batches=3, batch=16, size=16, classes=None):
    """Fixed batches, noisy pseudo-labels, and an accuracy score: a real argmax metric."""
    paddle.seed(7)
    model.eval()
    batches = [paddle.uniform([batch, 3, size, size], min=-1, max=1) for _ in range(n_batches)]
    with paddle.no_grad():
        outs = [model(b) for b in batches]
        labels = [paddle.argmax(o + 0.3 * o.std() * paddle.randn(o.shape), axis=1) for o in outs]

    def score(outputs):
        return float(np.mean([(paddle.argmax(o, axis=1) == l).astype("float32").mean().item()
                              for o, l in zip(outputs, labels)]))

    def eval_func():
        with paddle.no_grad():
            return score([model(b) for b in batches])
    return batches, score, eval_func
