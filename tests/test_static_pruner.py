"""Static (legacy-IR Program) Pruner: seed 002 flow and PaddleSlim oracles A, B and E."""
import warnings
from collections import Counter

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import nets
from static_nets import ConcatGrouped, MobileLike, conv_bn_layer, layer_program, legacy_static, oracle_e, \
    seed_residual, Upsample
from paddleprune.errors import InvalidParameterError, UnknownParameterNameError, UnprunableError
from paddleprune.prune import L1NormFilterPruner, Pruner, PruningWarning, dygraph_flops, flops, restore_scope
from paddleprune.prune.static.walker import StaticAnalysis

ORACLE_A = {"conv1_weights": (4, 3, 3, 3), "conv2_weights": (4, 4, 3, 3), "conv3_weights": (8, 4, 3, 3),
            "conv4_weights": (4, 8, 3, 3), "conv5_weights": (8, 4, 3, 3), "conv6_weights": (8, 8, 3, 3)}


@pytest.fixture
def static():
    with legacy_static():
        yield
    assert paddle.in_dynamic_mode()


@pytest.mark.parametrize("criterion", ["l1_norm", "l2_norm", "geometry_median", "bn_scale"])
def test_seed_flow_oracle_a(static, criterion):
    b = seed_residual("momentum")
    for _ in range(2):
        b.run(b.main, [b.loss.name])
    before = {n: b.value(n) for n in ("conv4_weights", "conv1_weights", "conv5_weights", "conv4_bn_scale",
                                      "conv1_weights_velocity_0")}
    pruned, _, _ = Pruner(criterion).prune(b.main, b.scope, ["conv4_weights"], [0.5], place=b.place)
    assert b.shapes(pruned) == ORACLE_A
    for i in (1, 2, 4):
        assert all(tuple(pruned.global_block().var(f"conv{i}_bn_{s}").shape) == (4,)
                   for s in ("scale", "offset", "mean", "variance"))
    assert tuple(b.shapes(b.main)["conv4_weights"]) == (8, 8, 3, 3)      # the input program is untouched
    # the mask comes from conv4's own weights and is applied to the whole group
    w = before["conv4_weights"].reshape(8, -1).astype("float64")
    scores = {"l1_norm": np.abs(w).mean(1), "l2_norm": np.sqrt((w ** 2).sum(1)),
              "geometry_median": np.sqrt(((w[:, None] - w[None]) ** 2).sum(-1)).sum(1),
              "bn_scale": np.abs(before["conv4_bn_scale"])}[criterion]
    keep = np.sort(np.argsort(scores, kind="stable")[4:])
    np.testing.assert_array_equal(b.value("conv1_weights"), before["conv1_weights"][keep])
    np.testing.assert_array_equal(b.value("conv5_weights"), before["conv5_weights"][:, keep])
    np.testing.assert_array_equal(b.value("conv1_weights_velocity_0"), before["conv1_weights_velocity_0"][keep])
    losses = [b.run(pruned, [b.loss.name])[0].item() for _ in range(3)]      # training goes on
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    test, _, _ = Pruner(criterion).prune(b.test, b.scope, ["conv4_weights"], [0.5], only_graph=True)
    assert b.shapes(test) == ORACLE_A
    assert b.run(test)[0].shape == (4, 10)


def test_oracle_b_groups(static):
    b = seed_residual(classifier=False, optimizer=None)
    groups = StaticAnalysis(b.main).groups
    convs = [sorted(f"{m.param.split('_')[0]}:{m.axis}" for m in g.members if "weights" in m.param)
             for g in groups if g.prunable]
    assert convs[0] == sorted(["conv1:0", "conv2:1", "conv2:0", "conv3:1", "conv4:0", "conv5:1"])
    assert convs[1] == ["conv3:0", "conv4:1"]
    assert not [g for g in groups if g.root == "conv6_weights"][0].prunable      # a leaf: network output


def test_oracle_e_fc_rows(static):
    b = oracle_e()
    w = b.value("fc_0.w_0")
    pruned, _, _ = Pruner().prune(b.main, b.scope, ["conv1_weights"], [0.5])
    shapes = b.shapes(pruned, ".w_0") | b.shapes(pruned)
    assert shapes["conv1_weights"] == (4, 3, 3, 3)
    assert shapes["fc_0.w_0"] == (1024, 10) and shapes["fc_1.w_0"] == (10, 10)
    rows = b.value("fc_0.w_0").reshape(4, 256, 10)
    blocks = w.reshape(8, 256, 10)
    kept = [next(c for c in range(8) if np.array_equal(blocks[c], r)) for r in rows]
    assert kept == sorted(kept) and len(set(kept)) == 4
    assert b.run(pruned)[0].shape == (4, 10)


def test_lazy_zeroes_and_keeps_shapes(static):
    b = seed_residual()
    before = b.value("conv1_weights")
    pruned, backup, shapes = Pruner().prune(b.main, b.scope, ["conv4_weights"], [0.5], lazy=True,
                                            param_backup=True, param_shape_backup=True)
    assert b.shapes(pruned) == b.shapes(b.main) and shapes == {}
    after = b.value("conv1_weights")
    zero = np.flatnonzero(np.abs(after).reshape(8, -1).sum(1) == 0)
    assert len(zero) == 4
    np.testing.assert_array_equal(np.delete(after, zero, 0), np.delete(before, zero, 0))
    assert not b.value("conv5_weights")[:, zero].any() and not b.value("conv4_bn_scale")[zero].any()
    np.testing.assert_array_equal(backup["conv1_weights"], before)
    assert np.isfinite(b.run(pruned, [b.loss.name])[0]).all()


def test_only_graph_leaves_the_scope(static):
    b = seed_residual()
    values = {n: b.value(n) for n in ORACLE_A}
    pruned, _, _ = Pruner().prune(b.main, b.scope, ["conv4_weights"], [0.5], only_graph=True)
    assert b.shapes(pruned) == ORACLE_A
    for n, v in values.items():
        np.testing.assert_array_equal(b.value(n), v)


def test_restore_from_backups_gives_the_original_outputs(static):
    b = seed_residual()
    ref = b.run(b.test)[0]
    pruned, backup, shapes = Pruner().prune(b.main, b.scope, ["conv4_weights", "conv3_weights"], [0.5, 0.25],
                                            param_backup=True, param_shape_backup=True)
    test, _, _ = Pruner().prune(b.test, b.scope, ["conv4_weights", "conv3_weights"], [0.5, 0.25], only_graph=True)
    assert not np.allclose(b.run(test)[0], ref)
    assert {"conv1_weights", "conv1_weights_velocity_0", "conv3_bn_mean"} <= set(backup)
    assert shapes["conv3_weights"] == (8, 8, 3, 3) and shapes["conv4_weights"] == (8, 8, 3, 3)
    restore_scope(b.scope, backup)
    np.testing.assert_array_equal(b.run(b.test)[0], ref)
    for name, shape in shapes.items():
        pruned.global_block().var(name).desc.set_shape(shape)
    assert b.shapes(pruned) == b.shapes(b.main)


def test_adam_moments_and_bias_reshape_follow(static):
    b, names = layer_program(ConcatGrouped, optimizer=lambda parameters: paddle.optimizer.Adam(0.01))
    b.run(b.main, [b.loss.name])
    bias = names["c.bias"]
    m1 = {n: b.value(n + "_moment1_0") for n in (names["c.weight"], bias)}
    pruned, backup, _ = Pruner().prune(b.main, b.scope, [names["c.weight"]], [0.5], param_backup=True)
    wc = b.value(names["c.weight"])
    kept = [next(c for c in range(8) if np.array_equal(row, backup[names["c.weight"]][c])) for row in wc]
    assert kept == sorted(set(kept)) and len(kept) == 4
    for n in (names["c.weight"], bias):
        np.testing.assert_array_equal(b.value(n + "_moment1_0"), m1[n][kept])
        assert b.value(n + "_moment2_0").shape[0] == 4
    bias_reshapes = Counter(tuple(op.attr("shape")) for op in pruned.global_block().ops
                            if op.type in ("reshape2", "reshape2_grad") and len(op.attr("shape")) == 4)
    # biases of a (8), b (6), and of c and g (same group: 8 -> 4), forward and grad ops
    assert bias_reshapes == {(1, 8, 1, 1): 2, (1, 6, 1, 1): 2, (1, 4, 1, 1): 4}
    groups = [op.attr("groups") for op in pruned.global_block().ops if op.type in ("conv2d", "conv2d_grad")
              and names["g.weight"] in op.input_arg_names]
    assert groups == [2, 2]                        # grouped conv: whole groups of 2 channels went
    assert b.shapes(pruned, "w_0")[names["g.weight"]] == (4, 2, 3, 3)
    assert b.shapes(pruned, "w_0")[names["fc.weight"]] == (64, 5)     # reshape2([-1, 128]) -> 64 rows
    assert np.isfinite([b.run(pruned, [b.loss.name])[0] for _ in range(2)]).all()


def test_concat_offsets(static):
    b, names = layer_program(ConcatGrouped)
    wb0, c0 = b.value(names["b.weight"]), b.value(names["c.weight"])
    pruned, _, _ = Pruner().prune(b.main, b.scope, [names["b.weight"]], [0.5])
    wb, c = b.value(names["b.weight"]), b.value(names["c.weight"])
    assert wb.shape == (3, 3, 1, 1) and c.shape == (8, 11, 3, 3)
    kept = [next(i for i in range(6) if np.array_equal(wb0[i], row)) for row in wb]
    assert kept == sorted(np.argsort(np.abs(wb0).reshape(6, -1).mean(1), kind="stable")[3:].tolist())
    np.testing.assert_array_equal(c[:, :8], c0[:, :8])                 # branch a's slice is untouched
    np.testing.assert_array_equal(c[:, 8:], c0[:, 8 + np.array(kept)])  # branch b's slice starts at 8
    assert b.run(pruned)[0].shape == (4, 5)


def test_static_and_dygraph_agree_on_mobilenet_like():
    ratios = {"stem.0.weight": 0.5, "pw1.0.weight": 0.25, "pw2.0.weight": 0.5, "head.0.weight": 0.3}
    model = MobileLike()
    dy_before = dygraph_flops(model, [1, 3, 32, 32])
    L1NormFilterPruner(model, [1, 3, 32, 32]).prune_vars(ratios)
    dy_shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    dy_after = dygraph_flops(model, [1, 3, 32, 32])
    with legacy_static():
        b, names = layer_program(MobileLike, size=32)
        assert flops(b.main) == dy_before
        pruned, _, _ = Pruner().prune(b.main, b.scope, [names[n] for n in ratios], list(ratios.values()))
        st_shapes = {p.name: tuple(p.shape) for p in pruned.global_block().all_parameters()}
        assert {n: st_shapes[names[n]] for n in dy_shapes} == dy_shapes
        assert flops(pruned) == dy_after < dy_before
        dw = [op.attr("groups") for op in pruned.global_block().ops if op.type == "depthwise_conv2d"]
        assert dw == [dy_shapes["dw1.0.weight"][0], dy_shapes["dw2.0.weight"][0], dy_shapes["dw3.0.weight"][0]]
        assert b.run(pruned)[0].shape == (4, 10)
    assert paddle.in_dynamic_mode()


@pytest.mark.parametrize("make", [nets.TwoBranchConcat, nets.DepthwiseGrouped, nets.SqueezeExcite, nets.YoloNeck,
                                  Upsample])
def test_static_and_dygraph_agree_on_test_nets(make):
    """Every group the dygraph pruner finds, pruned at 0.3, gives the same shapes and FLOPs statically."""
    model = make()
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    ratios = {g.root: 0.3 for g in pruner.prunable_groups()}
    pruner.prune_vars(ratios)
    dy_shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    dy_flops = dygraph_flops(model, [1, 3, 16, 16])
    with legacy_static():
        b, names = layer_program(make)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PruningWarning)      # YoloNeck's strided_slice heads
            pruned, _, _ = Pruner().prune(b.main, b.scope, [names[n] for n in ratios], list(ratios.values()))
        assert {n: tuple(pruned.global_block().var(names[n]).shape) for n in dy_shapes} == dy_shapes
        assert flops(pruned) == dy_flops
        assert np.isfinite(b.run(pruned)[0]).all()


def test_bias_add_axis_and_pass_through_ops(static):
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("image", [None, 3, 8, 8])
        y = paddle.static.nn.conv2d(x, 8, 3, padding=1, param_attr=paddle.ParamAttr(name="c1_w"),
                                    bias_attr=paddle.ParamAttr(name="c1_b"))       # elementwise_add axis=1
        y = F.hardswish(F.hardsigmoid(F.leaky_relu(F.relu6(y))))
        y = F.elu(F.silu(F.swish(paddle.nn.PReLU(8)(y))))
        y = paddle.scale(F.dropout(F.avg_pool2d(F.pad(y, [1, 1, 1, 1]), 3, stride=1), 0.1), 2.0)
        y = F.interpolate(F.interpolate(y, scale_factor=2, mode="nearest"), scale_factor=0.5, mode="bilinear")
        out = paddle.static.nn.conv2d(y, 4, 1, param_attr=paddle.ParamAttr(name="c2_w"))
    ops = {op.type for op in main.global_block().ops}
    assert {"elementwise_add", "relu6", "leaky_relu", "hard_sigmoid", "hard_swish", "prelu", "swish", "silu",
            "elu", "unsqueeze2", "pad3d", "squeeze2", "pool2d", "dropout", "scale", "nearest_interp_v2",
            "bilinear_interp_v2"} <= ops
    scope, exe = paddle.static.Scope(), paddle.static.Executor(paddle.CPUPlace())
    exe.run(startup, scope=scope)
    pruned, _, _ = Pruner().prune(main, scope, ["c1_w"], [0.5])
    block = pruned.global_block()
    assert tuple(block.var("c1_b").shape) == (4,) and tuple(block.var("c2_w").shape) == (4, 4, 1, 1)
    alpha = [op.input("Alpha")[0] for op in block.ops if op.type == "prelu"][0]
    assert tuple(block.var(alpha).shape) == (4,)
    feed = {"image": np.ones((2, 3, 8, 8), "float32")}
    assert exe.run(pruned, feed=feed, fetch_list=[out.name], scope=scope)[0].shape == (2, 4, 8, 8)


def test_optimal_threshold_prunes_by_energy(static):
    b = seed_residual(optimizer=None)
    b.scope.find_var("conv4_bn_scale").get_tensor().set(np.arange(1, 9, dtype="float32") / 10, b.place)
    # squared-gamma energy: the first share above 0.5 is at 0.7, threshold (0.6 + 0.7) / 2: six channels go
    pruned, _, _ = Pruner("bn_scale", "optimal_threshold").prune(b.main, b.scope, ["conv4_weights"], [0.5])
    assert b.shapes(pruned)["conv1_weights"] == (2, 3, 3, 3)
    np.testing.assert_allclose(b.value("conv4_bn_scale"), [0.7, 0.8])


def test_flops_of_the_residual_chain(static):
    b = seed_residual(classifier=False, optimizer=None)
    assert flops(b.main) == 2 * 792576                  # PaddleSlim test_flops: 792576 MACs
    total, detail = flops(b.main, detail=True)
    assert total == sum(detail.values()) and detail["conv1_weights"] == 2 * 8 * 27 * 256


def test_unknown_op_makes_its_group_unprunable(static):
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("image", [None, 3, 16, 16])
        y = conv_bn_layer(x, 8, 3, "conv1")
        y = F.pixel_shuffle(y, 2)
        y = conv_bn_layer(y, 4, 3, "conv2")
        conv_bn_layer(y, 4, 3, "conv3")
    scope = paddle.static.Scope()
    paddle.static.Executor(paddle.CPUPlace()).run(startup, scope=scope)
    with pytest.warns(PruningWarning, match="unsupported op pixel_shuffle consumes the output of conv1_weights"):
        pruned, _, _ = Pruner().prune(main, scope, ["conv2_weights"], [0.5])
    assert tuple(pruned.global_block().var("conv2_weights").shape) == (2, 2, 3, 3)
    with pytest.raises(UnprunableError, match="conv1_weights cannot be pruned: unsupported op pixel_shuffle"):
        Pruner().prune(main, scope, ["conv1_weights"], [0.5])


def test_a_name_spanning_a_concat_is_refused(static):
    main, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main, startup):
        x = paddle.static.data("image", [None, 3, 8, 8])
        y = paddle.concat([conv_bn_layer(x, 4, 3, "a"), conv_bn_layer(x, 6, 1, "b")], axis=1)
        paddle.static.nn.fc(y, 5)
    scope = paddle.static.Scope()
    paddle.static.Executor(paddle.CPUPlace()).run(startup, scope=scope)
    groups = StaticAnalysis(main).groups
    fc_rows = [m for g in groups for m in g.members if m.param == "fc_0.w_0" and m.axis == 0]
    assert [(m.offset, m.expand) for m in fc_rows] == [(0, 64), (256, 64)]     # 64 rows per channel, b at 4*64
    with pytest.raises(UnprunableError, match="axis 0 of fc_0.w_0 spans 2 channel groups.*a_weights, b_weights"):
        Pruner().prune(main, scope, ["fc_0.w_0"], [0.5])
    pruned, _, _ = Pruner().prune(main, scope, ["b_weights"], [0.5])
    assert tuple(pruned.global_block().var("fc_0.w_0").shape) == (7 * 64, 5)


def test_bad_inputs(static):
    b = seed_residual(classifier=False, optimizer=None)
    with pytest.raises(UnknownParameterNameError, match="no parameter named 'conv4_weight'.*'conv4_weights'"):
        Pruner().prune(b.main, b.scope, ["conv4_weight"], [0.5])
    with pytest.raises(InvalidParameterError, match=r"'ratios\[0\]' must be a number in \[0, 1\); got 1.0"):
        Pruner().prune(b.main, b.scope, ["conv4_weights"], [1.0])
    with pytest.raises(InvalidParameterError, match="same length; got 2 names and 1 ratios"):
        Pruner().prune(b.main, b.scope, ["conv4_weights", "conv3_weights"], [0.5])
    with pytest.raises(InvalidParameterError, match="unknown criterion 'l3_norm'"):
        Pruner("l3_norm")
    with pytest.raises(InvalidParameterError, match="must be a legacy-IR paddle.static.Program"):
        Pruner().prune(object(), b.scope, ["conv4_weights"], [0.5])
    with pytest.raises(InvalidParameterError, match="must be a list of parameter names"):
        Pruner().prune(b.main, b.scope, "conv4_weights", [0.5])


def test_pir_program_is_refused():
    paddle.enable_static()
    try:
        main, startup = paddle.static.Program(), paddle.static.Program()
        with paddle.static.program_guard(main, startup):
            x = paddle.static.data("image", [None, 3, 8, 8])
            paddle.nn.Conv2D(3, 4, 3)(x)
        with pytest.raises(InvalidParameterError, match="PIR program.*OldIrGuard"):
            Pruner().prune(main, paddle.static.global_scope(), ["conv2d_0.w_0"], [0.5])
        with pytest.raises(InvalidParameterError, match="PIR program"):
            flops(main)
    finally:
        paddle.disable_static()
