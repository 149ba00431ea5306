"""Each criterion removes the channels it should on hand-made weights."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest

from paddleprune.prune import (BNScaleFilterPruner, FPGMFilterPruner, L1NormFilterPruner,
                               L2NormFilterPruner, OptSlimFilterPruner)
from paddleprune.prune.criteria import count_to_prune, optimal_threshold


def net_with(weight, gamma=None):
    model = nn.Sequential(nn.Conv2D(2, len(weight), 1, bias_attr=False), nn.BatchNorm2D(len(weight)),
                          nn.Conv2D(len(weight), 3, 1))
    model[0].weight.set_value(np.asarray(weight, "float32").reshape(len(weight), 2, 1, 1))
    if gamma is not None:
        model[1].weight.set_value(np.asarray(gamma, "float32"))
    return model


def pruned_channels(pruner_cls, weight, ratio, gamma=None):
    model = net_with(weight, gamma)
    plan = pruner_cls(model, [1, 2, 4, 4]).prune_var("0.weight", 0, ratio, apply=None)
    return sorted(np.flatnonzero(plan.masks["0.weight"][0].mask == 0).tolist())


def test_l1_and_l2_differ_where_they_should():
    # filter 0: one large entry (L1 3, L2 3); filter 1: two medium entries (L1 4, L2 2.83)
    weight = [[3, 0], [2, 2], [5, 5], [6, 6]]
    assert pruned_channels(L1NormFilterPruner, weight, 0.25) == [0]
    assert pruned_channels(L2NormFilterPruner, weight, 0.25) == [1]


def test_fpgm_removes_the_filters_nearest_the_median():
    weight = [[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [9, 9]]
    # [0, 0] is the centre of the cluster: the smallest distance sum (16.7), so it goes first,
    # although its L1 norm is the smallest too; the far filter [9, 9] always stays
    assert pruned_channels(FPGMFilterPruner, weight, 1 / 6) == [0]
    assert 5 not in pruned_channels(FPGMFilterPruner, weight, 0.5)
    assert pruned_channels(L1NormFilterPruner, [[0.5, 0.5], [1, 0], [-1, 0], [0, 1], [0, -1], [9, 9]], 1 / 6) == [0]
    assert pruned_channels(FPGMFilterPruner, [[0.5, 0.5], [1, 0], [-1, 0], [0, 1], [0, -1], [9, 9]], 1 / 6) != [5]


def test_bn_scale_uses_the_following_norm():
    weight = np.ones((4, 2))            # identical filters: only gamma can decide
    assert pruned_channels(BNScaleFilterPruner, weight, 0.5, gamma=[0.9, -0.1, 0.5, 0.05]) == [1, 3]


def test_optimal_threshold_prunes_by_energy_share():
    gamma = [1.0, 0.01, 0.02, 0.9, 0.03]
    # the three tiny scales hold < 0.1 % of the squared energy; ratio 0.01 removes exactly them
    assert pruned_channels(OptSlimFilterPruner, np.ones((5, 2)), 0.01, gamma=gamma) == [1, 2, 4]
    assert optimal_threshold(np.array([3.0, 1.0, 2.0]), 0.9999).tolist() == [1, 2]   # the largest stays
    assert optimal_threshold(np.array([1.0, 1.0]), 0.9).size == 0       # equal scales: no threshold


@pytest.mark.parametrize("n,ratio,expected", [(5, 0.5, 2), (7, 0.5, 4), (8, 0.99, 7), (10, 0.0, 0), (3, 0.2, 1)])
def test_count_to_prune_rounds_half_even_and_keeps_one(n, ratio, expected):
    assert count_to_prune(n, ratio) == expected


def test_custom_criterion_by_subclass():
    class KeepLast(L1NormFilterPruner):
        def cal_mask(self, var_name, pruned_ratio, group):
            n = group[var_name]["value"].shape[0]
            mask = np.zeros(n, dtype="int32")
            mask[-1] = 1
            return mask

    model = net_with(np.random.rand(4, 2))
    KeepLast(model, [1, 2, 4, 4]).prune_var("0.weight", 0, 0.5)
    assert list(model[0].weight.shape) == [1, 2, 1, 1]


def test_unknown_criterion_lists_known():
    class Bad(L1NormFilterPruner):
        criterion = "l3_norm"

    with pytest.raises(ValueError, match=r"unknown criterion 'l3_norm'; known: \['bn_scale', 'geometry_median', 'l1_norm', 'l2_norm'\]"):
        Bad(net_with(np.ones((4, 2))), [1, 2, 4, 4]).prune_var("0.weight", 0, 0.5)
