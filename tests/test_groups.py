"""Group discovery: residual chains, unsupported ops, seed-002 / PaddleSlim oracles."""
import paddle
import paddle.nn as nn
import pytest

import nets
from paddleprune.prune import FilterPruner, L1NormFilterPruner, PruningWarning


def shapes(model):
    return {n: list(p.shape) for n, p in model.named_parameters() if n.endswith("0.weight")}


def test_seed002_residual_chain_oracle():
    """PaddleSlim oracle A: pruning conv4 at 0.5 prunes conv1, conv2 and conv4 (one chain)."""
    model = nets.ResidualChain()
    L1NormFilterPruner(model, [1, 3, 16, 16]).prune_vars({"conv4.0.weight": 0.5}, axis=0)
    assert shapes(model) == {
        "conv1.0.weight": [4, 3, 3, 3], "conv2.0.weight": [4, 4, 3, 3], "conv3.0.weight": [8, 4, 3, 3],
        "conv4.0.weight": [4, 8, 3, 3], "conv5.0.weight": [8, 4, 3, 3], "conv6.0.weight": [8, 8, 3, 3]}
    for i in (1, 2, 4):
        assert list(getattr(model, f"conv{i}")[1].weight.shape) == [4]
        assert getattr(model, f"conv{i}")[1]._num_features == 4


@pytest.mark.parametrize("name", ["conv1.0.weight", "conv2.0.weight", "conv4.0.weight", "conv4.1.weight"])
def test_any_member_prunes_the_whole_chain(name):
    model = nets.ResidualChain()
    pruner = FilterPruner(model, [1, 3, 16, 16])
    group = pruner.find_group(name, 0)
    assert group.root == "conv1.0.weight"
    assert {p for p, _ in group.producers} == {"conv1.0.weight", "conv2.0.weight", "conv4.0.weight"}
    pruner.prune_var(name, [0], 0.25)
    assert [model.conv1[0].weight.shape[0], model.conv2[0].weight.shape[0], model.conv4[0].weight.shape[0]] == [6, 6, 6]


def test_flatten_linear_oracle_c():
    """PaddleSlim oracle C: Conv2D(3,8,3) on 32x32 -> flatten -> Linear(7200, 5); prune 0.2."""
    model = nn.Sequential(nn.Conv2D(3, 8, 3), nn.Flatten(), nn.Linear(7200, 5))
    FilterPruner(model, [1, 3, 32, 32]).prune_vars({"0.weight": 0.2})
    assert list(model[0].weight.shape) == [6, 3, 3, 3]
    assert list(model[2].weight.shape) == [5400, 5]


def test_unsupported_op_keeps_group_and_warns():
    model = nets.RollNet()
    with pytest.warns(PruningWarning, match=r"unsupported op pd_op\.roll .*a\.0"):
        pruner = FilterPruner(model, [1, 3, 8, 8])
    group = pruner.find_group("a.0.weight", 0)
    assert not group.prunable and "pd_op.roll" in group.reason
    with pytest.raises(ValueError, match=r"a\.0\.weight cannot be pruned: unsupported op pd_op\.roll"):
        pruner.prune_var("a.0.weight", 0, 0.5)
    assert list(model.a[0].weight.shape) == [8, 3, 3, 3]
    # the group after the roll is still prunable
    pruner.prune_var("b.0.weight", 0, 0.5)
    assert list(model.c.weight.shape) == [4, 4, 1, 1]


def test_layer_without_handler_is_unprunable():
    class Scale(nn.Layer):          # a custom per-channel layer the engine has no handler for
        def __init__(self, c):
            super().__init__()
            self.gain = self.create_parameter([c], default_initializer=nn.initializer.Constant(1.0))

        def forward(self, x):
            return x * self.gain.reshape([1, -1, 1, 1])

    model = nn.Sequential(nn.Conv2D(3, 8, 3), Scale(8), nn.Conv2D(8, 4, 3))
    with pytest.warns(PruningWarning, match="Scale, which has no pruning handler"):
        pruner = FilterPruner(model, [1, 3, 8, 8])
    assert not pruner.find_group("0.weight").prunable


def test_network_input_and_output_are_not_prunable():
    model = nets.ResidualChain()
    pruner = FilterPruner(model, [1, 3, 16, 16])
    reasons = {g.root: g.reason for g in pruner.groups if not g.prunable}
    assert reasons["conv6.0.weight"] == "network output"
    assert "network input" in reasons.values()


def test_paddle_names_and_structural_names_are_equivalent():
    model = nets.ResidualChain()
    pruner = FilterPruner(model, [1, 3, 16, 16])
    paddle_name = model.conv3[0].weight.name
    assert pruner.find_group(paddle_name) is pruner.find_group("conv3.0.weight")
    plan = pruner.prune_var(paddle_name, 0, 0.5)
    assert plan.contains("conv3.0.weight", [0]) and plan.contains("conv4.0.weight", [1])


def test_no_backup_copies_in_the_model():
    model = nets.ResidualChain()
    keys = set(model.state_dict())
    FilterPruner(model, [1, 3, 16, 16]).prune_vars({"conv3.0.weight": 0.5})
    assert set(model.state_dict()) == keys
    assert list(model.state_dict()["conv3.0.weight"].shape) == [4, 8, 3, 3]


def test_restore_gives_back_the_original():
    model = nets.ResidualChain()
    model.eval()
    x = paddle.rand([1, 3, 16, 16])
    y0 = model(x).numpy()
    pruner = FilterPruner(model, [1, 3, 16, 16])
    pruner.prune_vars({"conv1.0.weight": 0.5, "conv3.0.weight": 0.3})
    pruner.restore()
    assert shapes(model)["conv1.0.weight"] == [8, 3, 3, 3]
    assert (model(x).numpy() == y0).all()


def test_round_to_and_min_one_channel():
    model = nets.ResidualChain()
    FilterPruner(model, [1, 3, 16, 16], round_to=4).prune_vars({"conv3.0.weight": 0.3})
    assert model.conv3[0].weight.shape[0] == 4           # 8 * 0.7 = 5.6 -> multiple of 4
    FilterPruner(model, [1, 3, 16, 16]).prune_vars({"conv5.0.weight": 0.99})
    assert model.conv5[0].weight.shape[0] == 1           # never zero channels
