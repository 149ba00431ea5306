"""Sensitivity analysis: fast == naive, resumable files, FLOPs-target pruning."""
import json

import numpy as np
import paddle.vision.models as M
import paddle
import pytest

import nets
from engine_checks import fixed_eval
from paddleprune.errors import SensitivityFileError
from paddleprune.prune import L1NormFilterPruner, dygraph_flops
from paddleprune.prune.sensitivity_files import load_sensitivities

RATIOS = [0.2, 0.5, 0.8]




@pytest.mark.parametrize("make", [lambda: nets.TwoBranchConcat(), lambda: M.mobilenet_v2(scale=0.25, num_classes=10)],
                         ids=["two_branch", "mobilenet_v2"])
def test_fast_agrees_with_naive(make):
    model = make()
    batches, score, eval_func = fixed_eval(model)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    targets = [g.root for g in pruner.prunable_groups()][:12]
    naive = pruner.sensitive(eval_func=eval_func, target_vars=targets, ratios=RATIOS, method="naive")
    fast = pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=targets, ratios=RATIOS)
    masked_only = pruner.sensitive(eval_func=eval_func, target_vars=targets, ratios=RATIOS)
    points = [(n, r) for n in naive for r in RATIOS]
    assert len(points) == len(targets) * len(RATIOS)
    for other in (fast, masked_only):
        diffs = np.array([abs(other[n][r] - naive[n][r]) for n, r in points])
        assert (diffs == 0).mean() >= 0.95 and diffs.max() <= 0.005
    assert any(naive[n][r] != 0 for n, r in points)       # the metric really moved
    # the model is as it was
    assert {tuple(p.shape) for p in model.parameters()} == {tuple(p.shape) for p in make().parameters()}


class Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_file(tmp_path):
    model = nets.TwoBranchConcat()
    batches, score, eval_func = fixed_eval(model)
    full = tmp_path / "full.json"
    L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=eval_func, sen_file=str(full), ratios=RATIOS)

    calls = {"n": 0}

    def dying():
        calls["n"] += 1
        if calls["n"] == 5:          # baseline + 3 points, then the "kill"
            raise Killed()
        return eval_func()

    part = tmp_path / "part.json"
    with pytest.raises(Killed):
        L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=dying, sen_file=str(part), ratios=RATIOS)
    done = load_sensitivities(str(part))
    assert sum(len(v) for v in done.values()) == 3          # three points were saved before the kill
    calls["n"] = -100
    counted = {"n": 0}

    def counting():
        counted["n"] += 1
        return eval_func()

    L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=counting, sen_file=str(part), ratios=RATIOS)
    total = sum(len(v) for v in load_sensitivities(str(full)).values())
    assert counted["n"] == 1 + total - 3                    # baseline + only the missing points
    assert json.loads(part.read_text()) == json.loads(full.read_text())


def test_file_for_another_setup_is_refused(tmp_path):
    model = nets.TwoBranchConcat()
    _, _, eval_func = fixed_eval(model)
    path = str(tmp_path / "sen.json")
    L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=eval_func, sen_file=path, ratios=RATIOS)
    with pytest.raises(SensitivityFileError, match=r"ratios is \[0.2, 0.5, 0.8\] in the file but \[0.1, 0.2"):
        L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=eval_func, sen_file=path)
    with pytest.raises(SensitivityFileError, match="metric is 'metric' in the file but 'acc1' now"):
        L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=eval_func, sen_file=path, ratios=RATIOS, metric="acc1")
    other = M.mobilenet_v2(scale=0.25, num_classes=5)
    _, _, other_eval = fixed_eval(other)
    with pytest.raises(SensitivityFileError, match="model is 'TwoBranchConcat' in the file but 'MobileNetV2' now"):
        L1NormFilterPruner(other, [1, 3, 16, 16]).sensitive(eval_func=other_eval, sen_file=path, ratios=RATIOS)
    table = L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_func=eval_func, sen_file=path, overwrite=True)
    assert all(len(v) == 9 for v in table.values())


def test_sensitive_prune_reaches_the_flops_target():
    model = M.mobilenet_v2(scale=0.5, num_classes=10)
    batches, score, _ = fixed_eval(model, n_batches=1)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    table = pruner.sensitive(eval_batches=batches, score_fn=score, ratios=[0.1, 0.3, 0.5, 0.7, 0.9])
    flops0 = dygraph_flops(model, [1, 3, 16, 16])
    plan = pruner.sensitive_prune(0.4, align=None, sensitivities=table)
    reached = 1 - dygraph_flops(model, [1, 3, 16, 16]) / flops0
    assert abs(reached - plan.pruned_flops) < 1e-9
    assert 0.4 <= reached < 0.45


def test_zero_baseline_warns_and_uses_absolute_losses(caplog):
    model = nets.TwoBranchConcat()
    batches, _, _ = fixed_eval(model)
    with paddle.no_grad():
        wrong = [(paddle.argmax(model(b), axis=1) + 1) % 5 for b in batches]    # labels the model never predicts

    def score(outputs):
        return float(np.mean([(paddle.argmax(o, axis=1) == w).astype("float32").mean().item()
                              for o, w in zip(outputs, wrong)]))

    with caplog.at_level("WARNING"):
        table = L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_batches=batches, score_fn=score,
                                                                   ratios=RATIOS, metric="acc1")
    assert "baseline acc1 is 0" in caplog.text and "every layer will look insensitive" in caplog.text
    losses = [loss for points in table.values() for loss in points.values()]
    assert all(np.isfinite(losses)) and max(losses) <= 0
    assert min(losses) < 0                   # some pruned model hits a label: loss is -accuracy, not 0/0
