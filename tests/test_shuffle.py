"""Channel shuffles and equal channel splits: tracked as index maps, pruned shuffle-consistently."""
import numpy as np
import paddle.vision.models as M
import pytest

import nets
from engine_checks import check_pruned_model, random_ratios, uniform
from paddleprune.errors import UnprunableError
from paddleprune.prune import FilterPruner, PruningWarning

SHAPE = [1, 3, 8, 8]


@pytest.mark.parametrize("cls", [nets.DoubleShuffle, nets.ShuffleUnits, nets.ChunkThenAdd])
@pytest.mark.parametrize("ratios", ["uniform", "random"])
def test_shuffled_nets_masked_equals_shrunk(cls, ratios):
    choose = uniform(0.5) if ratios == "uniform" else random_ratios(seed=1)
    check_pruned_model(cls(), SHAPE, choose)


def test_double_shuffle_index_map():
    pruner = FilterPruner(nets.DoubleShuffle(), SHAPE)
    group = pruner.find_group("a.0.weight")
    # shuffle(2) ties a[i] with b[i]; shuffle(4) then ties a[i], a[i+2], a[i+4], a[i+6]
    assert group.prunable and group.n == 2
    assert [m.offset for m in group.members if m.param == "a.0.weight"] == [0, 2, 4, 6]
    assert group.member("b.0.weight", 0) is not None
    # after both shuffles one unit is 8 consecutive channels of the head's input
    head = group.member("head.weight", 1)
    assert (head.offset, head.expand) == (0, 8)
    assert group.member("dw.0.weight", 0).expand == 8


def test_double_shuffle_removes_consistent_indices():
    model = nets.DoubleShuffle()
    pruner, plan = check_pruned_model(model, SHAPE, lambda p: {"a.0.weight": 0.5})
    keep_a = plan.masks["a.0.weight"][0].mask
    keep_b = plan.masks["b.0.weight"][0].mask
    np.testing.assert_array_equal(keep_a, keep_b)
    assert keep_a.sum() == 4 and (keep_a[0::2] == keep_a[0]).all() and (keep_a[1::2] == keep_a[1]).all()
    assert list(model.head.weight.shape) == [6, 8, 1, 1] and model.dw[0]._groups == 8


def test_chunked_units_tie_both_halves():
    pruner = FilterPruner(nets.ShuffleUnits(), SHAPE)
    group = pruner.find_group("stem_a.0.weight")
    assert group.prunable and group.n == 4
    # u1 transforms the second half of the shuffled stem: units 2, 3 of the first half
    assert [(m.offset, m.expand) for m in group.members if m.param == "u1.0.0.weight"] == [(0, 2), (8, 2)]
    assert group.member("side.0.weight", 0).expand == 4


def test_add_to_split_channels_ties_matching_halves():
    group = FilterPruner(nets.ChunkThenAdd(), SHAPE).find_group("c.0.weight")
    assert group.prunable and group.n == 4
    for param in ("a.0.weight", "b.0.weight", "c.0.weight"):
        assert [(m.offset, m.expand) for m in group.members if m.param == param and m.axis == 0] == [(0, 1), (4, 1)]


def test_shuffle_that_cuts_channels_stays_unprunable():
    with pytest.warns(PruningWarning, match=r"unsupported op pd_op\.reshape \(a channel shuffle into 2 groups"):
        pruner = FilterPruner(nets.UnevenShuffle(), SHAPE)
    with pytest.raises(UnprunableError, match=r"a\.0\.weight cannot be pruned: unsupported op pd_op\.reshape"):
        pruner.prune_var("a.0.weight", [0], 0.5)


@pytest.mark.parametrize("name, units", [("shufflenet_v2_x0_5", 12), ("shufflenet_v2_x1_0", 29)])
def test_shufflenet_shuffle_group_prunes_and_runs(name, units):
    root = "4_1._conv_linear_1.0.weight"
    pruner = FilterPruner(getattr(M, name)(num_classes=10), [1, 3, 32, 32])
    group = pruner.find_group(root)
    # both branches of stage 4's down-sampling block and every block after it share one group;
    # each of the 3 splits halves the units (branch width 96 -> 12, 232 -> 29 units)
    assert group.prunable and group.n == units
    for param in ("4_1._conv_linear_2.0.weight", "4_2._conv_linear.0.weight", "4_4._conv_linear.0.weight"):
        assert group.member(param, 0) is not None
    assert group.member("_last_conv.0.weight", 1) is not None
    model = getattr(M, name)(num_classes=10)
    width = dict(model.named_parameters())[root].shape[0]
    check_pruned_model(model, [1, 3, 32, 32], lambda p: {root: 0.5})
    kept = units - int(round(units * 0.5))
    assert dict(model.named_parameters())[root].shape[0] == kept * (width // units)


def test_reshape_to_a_fixed_channel_count_stays_unprunable():
    with pytest.warns(PruningWarning, match=r"unsupported op pd_op\.reshape \(reshape to the fixed shape "
                                            r"\[1, 8, 64\]\) consumes the output of a\.0"):
        pruner = FilterPruner(nets.FixedReshape(), SHAPE)
    assert not pruner.find_group("a.0.weight").prunable
