"""Bad input gives a clear error from paddleprune.errors and leaves the model unchanged."""
import paddle
import paddle.nn as nn
import pytest

import nets
from paddleprune.errors import InvalidParameterError, UnknownParameterNameError, UnprunableError
from paddleprune.prune import FilterPruner


@pytest.fixture
def model_and_pruner():
    model = nets.ResidualChain()
    return model, FilterPruner(model, [1, 3, 16, 16])


def snapshot(model):
    return {n: p.numpy().copy() for n, p in model.named_parameters()}


def unchanged(model, before):
    return all((p.numpy().shape == before[n].shape) and (p.numpy() == before[n]).all()
               for n, p in model.named_parameters())


def test_unknown_name_suggests_close_matches(model_and_pruner):
    model, pruner = model_and_pruner
    before = snapshot(model)
    with pytest.raises(UnknownParameterNameError, match=r"no parameter named 'conv3.weight'.*Did you mean .*'conv3\.0\.weight'"):
        pruner.prune_vars({"conv3.weight": 0.5})
    assert unchanged(model, before)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, "0.5", None])
def test_ratio_outside_range(model_and_pruner, ratio):
    model, pruner = model_and_pruner
    before = snapshot(model)
    with pytest.raises(InvalidParameterError, match=r"'pruned_ratio' must be a number in \[0, 1\); got"):
        pruner.prune_vars({"conv3.0.weight": 0.5, "conv5.0.weight": ratio})
    assert unchanged(model, before)


def test_parameter_in_no_prunable_group(model_and_pruner):
    model, pruner = model_and_pruner
    with pytest.raises(UnprunableError, match=r"conv6\.0\.weight cannot be pruned: network output"):
        pruner.prune_var("conv6.0.weight", 0, 0.5)


def test_unsupported_axis(model_and_pruner):
    model, pruner = model_and_pruner
    with pytest.raises(InvalidParameterError, match=r"axis 4 is not an axis of conv3\.0\.weight \(ndim 4\)"):
        pruner.prune_var("conv3.0.weight", 4, 0.5)
    with pytest.raises(UnprunableError, match=r"conv3\.0\.weight axis 2 is in no channel group"):
        pruner.prune_var("conv3.0.weight", 2, 0.5)
    with pytest.raises(InvalidParameterError, match=r"exactly one pruned axis"):
        pruner.prune_var("conv3.0.weight", [0, 1], 0.5)


def test_input_shape_the_model_rejects():
    model = nn.Sequential(nn.Conv2D(3, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 2))
    before = snapshot(model)
    forward = model.forward
    with pytest.raises(InvalidParameterError, match=r"could not trace Sequential with input shape\(s\) \[\(1, 3, 16, 16\)\]"):
        FilterPruner(model, [1, 3, 16, 16])
    with pytest.raises(InvalidParameterError, match=r"'inputs' must be a shape such as \[1, 3, 224, 224\]"):
        FilterPruner(model, "1x3x32x32")
    assert unchanged(model, before) and model.forward == forward and model.training
    assert model(paddle.rand([1, 3, 32, 32])).shape == [1, 2]


def test_bad_apply_and_round_to(model_and_pruner):
    model, pruner = model_and_pruner
    with pytest.raises(InvalidParameterError, match=r"'apply' must be 'impretive', 'imperative', 'lazy' or None; got 'now'"):
        pruner.prune_var("conv3.0.weight", 0, 0.5, apply="now")
    with pytest.raises(InvalidParameterError, match=r"'round_to' must be a positive int"):
        FilterPruner(model, [1, 3, 16, 16], round_to=0)


def test_lazy_keeps_shapes(model_and_pruner):
    model, pruner = model_and_pruner
    plan = pruner.prune_var("conv3.0.weight", 0, 0.5, apply="lazy")
    assert list(model.conv3[0].weight.shape) == [8, 8, 3, 3]
    assert (abs(model.conv3[0].weight.numpy()).sum(axis=(1, 2, 3)) == 0).sum() == 4
    assert plan.pruned_flops > 0
