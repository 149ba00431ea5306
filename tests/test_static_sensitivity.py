"""Static sensitivity (seed 002): resumable, same JSON format as the dygraph side."""
import json

import numpy as np
import paddle
import pytest

from static_nets import legacy_static, seed_residual
from paddleprune.errors import InvalidParameterError, SensitivityFileError, UnprunableError
from paddleprune.prune import get_ratios_by_loss, load_sensitivities, merge_sensitive, sensitivity

PARAMS = ["conv1_weights", "conv3_weights", "conv5_weights"]
RATIOS = [0.25, 0.5, 0.75]


class Killed(Exception):
    pass


@pytest.fixture
def net():
    with legacy_static():
        b = seed_residual(optimizer="momentum")
        b.run(b.main, [b.loss.name])                       # one training step first
        ref = b.run(b.test)[0]
        b.calls = 0

        def eval_func(program, kill_at=None):
            b.calls += 1
            if kill_at is not None and b.calls == kill_at:
                raise Killed()
            out = b.run(program)[0]
            return 1.0 / (1.0 + float(np.mean((out - ref) ** 2)))
        b.eval_func = eval_func
        b.ref = ref
        yield b
    assert paddle.in_dynamic_mode()


def test_killed_run_resumes_and_writes_the_dygraph_format(net, tmp_path):
    path = str(tmp_path / "sens.json")
    full = sensitivity(net.test, net.place, PARAMS, net.eval_func, pruned_ratios=RATIOS, scope=net.scope)
    assert set(full) == set(PARAMS) and all(set(v) == set(RATIOS) for v in full.values())
    assert all(full[n][0.25] <= full[n][0.75] + 1e-9 for n in PARAMS) and full["conv1_weights"][0.75] > 0
    np.testing.assert_array_equal(net.run(net.test)[0], net.ref)          # the scope was restored
    net.calls = 0
    with pytest.raises(Killed):
        sensitivity(net.test, net.place, PARAMS, lambda p: net.eval_func(p, kill_at=5), sensitivities_file=path,
                    pruned_ratios=RATIOS, scope=net.scope)
    partial = load_sensitivities(path)
    assert sum(len(v) for v in partial.values()) == 3                      # baseline + 3 points, then killed
    np.testing.assert_array_equal(net.run(net.test)[0], net.ref)          # restored even when eval raised
    net.calls = 0
    resumed = sensitivity(net.test, net.place, PARAMS, net.eval_func, sensitivities_file=path,
                          pruned_ratios=RATIOS, scope=net.scope)
    assert net.calls == 1 + 9 - 3
    assert resumed == full
    table, meta = load_sensitivities(path, return_meta=True)
    assert table == full
    assert meta["model"] == "Program" and meta["metric"] == "metric" and meta["criterion"] == "l1_norm"
    assert meta["ratios"] == RATIOS and meta["baseline"] == pytest.approx(1.0)
    doc = json.loads(open(path).read())
    assert doc["format"] == "paddleprune.sensitivities" and set(doc["sensitivities"]["conv1_weights"]) == \
        {"0.25", "0.5", "0.75"}
    net.calls = 0
    assert sensitivity(net.test, net.place, PARAMS, net.eval_func, sensitivities_file=path,
                       pruned_ratios=RATIOS, scope=net.scope) == full and net.calls == 0
    ratios = get_ratios_by_loss(table, 0.5)
    assert set(ratios) == set(PARAMS) and all(0 <= r < 1 for r in ratios.values())


def test_merge_of_two_runs_equals_one_run(net, tmp_path):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    sensitivity(net.test, None, PARAMS[:2], net.eval_func, sensitivities_file=a, pruned_ratios=RATIOS,
                scope=net.scope)
    sensitivity(net.test, None, PARAMS[2:], lambda p: np.array([net.eval_func(p)]),    # a 1-element array
                sensitivities_file=b, pruned_ratios=RATIOS, scope=net.scope)
    full = sensitivity(net.test, None, PARAMS, net.eval_func, pruned_ratios=RATIOS, scope=net.scope)
    assert merge_sensitive([a, b]) == full


def test_incompatible_files_and_bad_names_are_refused(net, tmp_path):
    path = str(tmp_path / "s.json")
    sensitivity(net.test, None, PARAMS[:1], net.eval_func, sensitivities_file=path, pruned_ratios=[0.5],
                scope=net.scope)
    with pytest.raises(SensitivityFileError, match="criterion is 'l1_norm' in the file but 'l2_norm' now"):
        sensitivity(net.test, None, PARAMS[:1], net.eval_func, sensitivities_file=path, pruned_ratios=[0.5],
                    criterion="l2_norm", scope=net.scope)
    again = sensitivity(net.test, None, PARAMS[:1], net.eval_func, sensitivities_file=path, pruned_ratios=[0.5],
                        criterion="l2_norm", scope=net.scope, overwrite=True)
    assert set(again) == {"conv1_weights"}
    with pytest.raises(UnprunableError, match=r"fc_0.b_0 cannot be pruned: network output \(consumed by softmax_w"):
        sensitivity(net.test, None, ["conv1_weights", "fc_0.b_0"], net.eval_func, scope=net.scope)
    with pytest.raises(InvalidParameterError, match=r"'pruned_ratios' must be numbers in \(0, 1\)"):
        sensitivity(net.test, None, PARAMS, net.eval_func, pruned_ratios=[0.5, 1.0], scope=net.scope)
    with pytest.raises(InvalidParameterError, match="eval_func"):
        sensitivity(net.test, None, PARAMS, None, scope=net.scope)


def test_static_api_is_exported():
    import paddleprune.prune as P
    from paddleprune.prune.flops import dygraph_flops
    assert callable(P.sensitivity) and callable(P.flops) and P.dygraph_flops is dygraph_flops
    assert {"Pruner", "sensitivity", "flops", "merge_sensitive", "load_sensitivities",
            "get_ratios_by_loss"} <= set(P.__all__)
    assert all(hasattr(P, name) for name in P.__all__)
