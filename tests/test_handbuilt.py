"""Hand-built nets with concat, depthwise / grouped conv, SE, YOLO-style neck and UNet skips."""
import pytest

from engine_checks import check_pruned_model, random_ratios, uniform
import nets

CASES = {
    "two_branch_concat": (nets.TwoBranchConcat, [1, 3, 16, 16]),
    "depthwise_grouped": (nets.DepthwiseGrouped, [1, 3, 12, 12]),
    "squeeze_excite": (nets.SqueezeExcite, [1, 3, 12, 12]),
    "yolo_neck": (nets.YoloNeck, [1, 3, 32, 32]),
    "unet_skip": (nets.UNetSkip, [1, 3, 16, 16]),
    "residual_chain": (nets.ResidualChain, [1, 3, 16, 16]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("ratios", ["uniform", "random"])
def test_handbuilt(case, ratios):
    cls, shape = CASES[case]
    choose = uniform(0.5) if ratios == "uniform" else random_ratios(seed=len(case))
    check_pruned_model(cls(), shape, choose)


def test_concat_offsets():
    pruner, plan = check_pruned_model(nets.TwoBranchConcat(), [1, 3, 16, 16],
                                      lambda p: {"a.0.weight": 0.5, "b.0.weight": 0.5})
    # c sees a's 4 kept channels at offset 0 and b's 3 kept at offset 4
    assert list(pruner.model.c[0].weight.shape) == [12, 7, 3, 3]
    groups = {g.root: g for g in pruner.groups}
    member = groups["b.0.weight"].member("c.0.weight", 1)
    assert (member.offset, member.expand) == (4, 1)


def test_flatten_to_linear_expands_channels():
    model = nets.TwoBranchConcat()
    pruner, _ = check_pruned_model(model, [1, 3, 16, 16], lambda p: {"c.0.weight": 0.25})
    assert list(model.fc.weight.shape) == [9 * 16, 5]     # 12 -> 9 channels, 4x4 features each


def test_grouped_conv_prunes_whole_groups():
    model = nets.DepthwiseGrouped()
    check_pruned_model(model, [1, 3, 12, 12], lambda p: {"pw.0.weight": 0.5})
    # the 4-group conv couples pw / dw (16 ch) with its own 24 outputs at group granularity
    assert model.gc[0]._groups == 2
    assert list(model.gc[0].weight.shape) == [12, 4, 3, 3]
    assert list(model.pw[0].weight.shape) == [8, 3, 1, 1]
    assert model.dw[0]._groups == 8
    assert list(model.dw2.weight.shape) == [24, 1, 3, 3] and model.dw2._groups == 12
