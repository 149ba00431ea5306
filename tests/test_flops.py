"""FLOPs counting convention and the seed-001 MobileNetV1 baseline."""
import pytest
import paddle.nn as nn
from paddle.vision.models import mobilenet_v1

import nets
from paddleprune.prune import FilterPruner, count_params, dygraph_flops


def test_conv_and_linear_flops_by_hand():
    model = nn.Sequential(nn.Conv2D(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    # conv: 8*3*3*3 MACs at 16 positions; linear: 128*10 MACs; FLOPs = 2 x MACs
    assert dygraph_flops(model, [1, 3, 4, 4]) == 2 * (8 * 27 * 16 + 128 * 10)
    assert dygraph_flops(model, [4, 3, 4, 4]) == dygraph_flops(model, [1, 3, 4, 4])     # per sample


def test_depthwise_flops():
    model = nn.Sequential(nn.Conv2D(4, 4, 3, padding=1, groups=4), nn.Conv2D(4, 2, 1))
    assert dygraph_flops(model, [1, 4, 5, 5]) == 2 * (4 * 9 * 25 + 8 * 25)


def test_mobilenet_v1_baseline_and_uniform_half():
    model = mobilenet_v1()
    flops = dygraph_flops(model, [1, 3, 224, 224])
    assert abs(flops / 1.11e9 - 1) < 0.03            # seed 001: 1.11 GFLOPs
    pruner = FilterPruner(model, [1, 3, 224, 224])
    ratio = pruner.uniform_ratio_for_flops(0.5)
    cut = pruner.pruned_flops_of(pruner.uniform_plan(ratio))
    assert 0.49 <= cut <= 0.53 and 0.25 < ratio < 0.35
    params = count_params(model)
    pruner.prune_vars({g.root: ratio for g in pruner.prunable_groups()})
    assert abs(dygraph_flops(model, [1, 3, 224, 224]) / flops - (1 - cut)) < 1e-9   # analytic == traced
    assert count_params(model) < params


def test_plan_flops_match_after_apply():
    model = nets.TwoBranchConcat()
    pruner = FilterPruner(model, [1, 3, 16, 16])
    plan = pruner.prune_vars({"a.0.weight": 0.5, "c.0.weight": 0.25}, apply=None)
    predicted = pruner.flops(plan)
    plan.apply(model)
    assert dygraph_flops(model, [1, 3, 16, 16]) == predicted
