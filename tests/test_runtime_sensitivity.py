"""Sensitivities on ONNX Runtime: masked runtime outputs equal physically pruned dygraph outputs,
values equal the naive method's, every fallback is logged."""
import copy
import json
import logging
import subprocess
import sys

import numpy as np
import paddle
import paddle.vision.models as M
import pytest

import nets
from engine_checks import fixed_eval, randomize_norm_stats
from paddleprune.errors import InvalidParameterError, UnsupportedOpError
from paddleprune.models.registry import get_model
from paddleprune.prune import FilterPruner, L1NormFilterPruner
from paddleprune.prune.plan import PruningPlan
from paddleprune.prune.runtime_eval import RuntimeEvaluator
from paddleprune.prune.sensitivity_files import load_sensitivities

pytest.importorskip("onnxruntime")
pytest.importorskip("paddle2onnx")

LOGGER = "paddleprune.prune.sensitive"
RATIOS = [0.2, 0.5, 0.8]
ANCHORS = [[3, 4], [4, 8], [8, 6], [8, 16], [16, 12], [15, 30], [30, 23], [40, 50], [90, 80]]
ZOO = {
    "residual": (nets.ResidualChain, 16),
    "depthwise_grouped": (nets.DepthwiseGrouped, 16),
    "concat_flatten_linear": (nets.TwoBranchConcat, 16),
    "squeeze_excite": (nets.SqueezeExcite, 16),
    "transposed_conv_skip": (nets.UNetSkip, 16),
    "mobilenet_v2": (lambda: M.mobilenet_v2(scale=0.25, num_classes=10), 32),
    "resnet18": (lambda: M.resnet18(num_classes=10), 32),
    "yolov3": (lambda: get_model("YOLOv3", num_classes=5, backbone="MobileNetV1", backbone_scale=0.25,
                                 anchors=ANCHORS, anchor_masks=None), 64),
    "unet_bilinear": (lambda: get_model("UNet", num_classes=3, upsample_mode="bilinear", scale=0.125), 64),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_masked_runtime_outputs_equal_physically_pruned_outputs(name):
    make, size = ZOO[name]
    model = make()
    model.eval()
    randomize_norm_stats(model)
    shape = [1, 3, size, size]
    x = paddle.uniform([2, 3, size, size], min=-1, max=1)
    pruner = FilterPruner(model, shape)
    runtime = RuntimeEvaluator(model, [x], dict(pruner.analysis.traced.params))
    groups = pruner.prunable_groups()
    assert groups and all(runtime.covers(m.param for m in g.members) for g in groups)
    assert runtime.difference(model(x), next(runtime.raw_outputs())) < 1e-5     # unpruned: equal
    rng = np.random.default_rng(0)
    reused = 0
    for g in groups[:: max(1, len(groups) // 12)]:            # about 12 groups per network
        ratio = float(rng.uniform(0.2, 0.8))
        _, plan = pruner._plan_var(g.root, 0, ratio)
        overrides = {n: PruningPlan._cut(runtime.values[n], masks, lazy=True) for n, masks in plan.masks.items()}
        masked = next(runtime.raw_outputs(overrides))
        reused += set(runtime._group[1][0]) != set(runtime.base_inputs)   # the rest starts after the input
        shrunk = copy.deepcopy(model)
        FilterPruner(shrunk, shape).prune_var(g.root, 0, ratio)
        assert sum(int(np.prod(p.shape)) for p in shrunk.parameters()) < \
            sum(int(np.prod(p.shape)) for p in model.parameters())
        with paddle.no_grad():
            physical = shrunk(x)
        assert runtime.difference(physical, masked) < 1e-4, g.root
    assert reused or len(groups) < 3




def _agree(a, b):
    diffs = np.array([abs(a[n][r] - b[n][r]) for n in b for r in b[n]])
    return diffs.max() <= 0.005 and (diffs == 0).mean() >= 0.95


@pytest.mark.parametrize("make", [nets.TwoBranchConcat, lambda: M.mobilenet_v2(scale=0.25, num_classes=10)],
                         ids=["two_branch", "mobilenet_v2"])
def test_runtime_values_equal_naive(make, tmp_path):
    model = make()
    batches, score, eval_func = fixed_eval(model)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    targets = [g.root for g in pruner.prunable_groups()][:10]
    naive = pruner.sensitive(eval_func=eval_func, target_vars=targets, ratios=RATIOS, method="naive")
    sen_file = str(tmp_path / "rt.json")
    runtime = pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=targets, ratios=RATIOS,
                               sen_file=sen_file)
    assert _agree(runtime, naive) and any(naive[n][r] != 0 for n in naive for r in RATIOS)
    _, meta = load_sensitivities(sen_file, return_meta=True)
    assert meta["method"] == "runtime-onnxruntime"
    assert {tuple(p.shape) for p in model.parameters()} == {tuple(p.shape) for p in make().parameters()}


def test_unconvertible_model_falls_back_to_dygraph_and_says_why(caplog, tmp_path):
    model = nets.YoloNeck()          # interpolate(scale_factor=...): paddle2onnx cannot convert it
    batches, _, _ = fixed_eval(model)

    def score(outputs):
        return float(np.mean([o.mean().item() for o in outputs]))
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    sen_file = str(tmp_path / "neck.json")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        table = pruner.sensitive(eval_batches=batches, score_fn=score, ratios=[0.5], sen_file=sen_file)
    assert table and "evaluating in dygraph: onnxruntime cannot be used (export failed" in caplog.text
    assert load_sensitivities(sen_file, return_meta=True)[1]["method"] == "dygraph"
    with pytest.raises(UnsupportedOpError, match="method='runtime' cannot evaluate YoloNeck: export failed"):
        pruner.sensitive(eval_batches=batches, score_fn=score, ratios=[0.5], method="runtime")


def test_opaque_eval_func_runs_in_dygraph(caplog):
    model = nets.ResidualChain()
    batches, score, eval_func = fixed_eval(model)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        pruner.sensitive(eval_func=eval_func, ratios=[0.5])
    assert "evaluating in dygraph: an eval_func is opaque" in caplog.text
    with pytest.raises(InvalidParameterError, match="method='runtime' needs 'eval_batches' and 'score_fn'"):
        pruner.sensitive(eval_func=eval_func, ratios=[0.5], method="runtime")
    with pytest.raises(InvalidParameterError, match=r"'method' must be one of \['fast', 'runtime'"):
        pruner.sensitive(eval_func=eval_func, ratios=[0.5], method="onnx")


def test_group_missing_from_the_export_is_evaluated_in_dygraph(monkeypatch, caplog):
    model = nets.TwoBranchConcat()
    batches, score, eval_func = fixed_eval(model)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    export = RuntimeEvaluator._export

    def lossy_export(self, net, params):
        proto, names = export(self, net, params)
        names.pop("a.0.weight")
        return proto, names
    monkeypatch.setattr(RuntimeEvaluator, "_export", lossy_export)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        runtime = pruner.sensitive(eval_batches=batches, score_fn=score, ratios=RATIOS)
    assert "group a.0.weight evaluated in dygraph: onnxruntime holds no copy of a.0.weight" in caplog.text
    assert _agree(runtime, pruner.sensitive(eval_func=eval_func, ratios=RATIOS, method="naive"))


def test_dygraph_file_resumes_on_the_runtime(tmp_path):
    model = nets.TwoBranchConcat()
    batches, score, _ = fixed_eval(model)
    pruner = L1NormFilterPruner(model, [1, 3, 16, 16])
    sen_file = tmp_path / "part.json"
    targets = [g.root for g in pruner.prunable_groups()]
    first = pruner.sensitive(eval_batches=batches, score_fn=score, ratios=RATIOS, target_vars=targets[:1],
                             sen_file=str(sen_file), method="dygraph")
    full = pruner.sensitive(eval_batches=batches, score_fn=score, ratios=RATIOS, sen_file=str(sen_file))
    assert set(full) == set(targets) and full[targets[0]] == first[targets[0]]
    assert json.loads(sen_file.read_text())["meta"]["method"] == "runtime-onnxruntime"


def test_task_sensitivities_run_on_the_runtime_and_equal_naive(tmp_path, caplog):
    from paddleprune import seg, slim
    from paddleprune.datasets import SegDataset, demo
    from paddleprune.seg import transforms as T
    root = demo.segmentation()
    lines = open(f"{root}/val_list.txt", encoding="utf-8").read().splitlines()[:8]
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = SegDataset(root, str(tmp_path / "val.txt"), f"{root}/labels.txt",
                    transforms=T.Compose([T.ResizeByLong(long_size=32), T.Padding(target_size=32), T.Normalize()]))
    model = seg.UNet(num_classes=len(ds.labels), scale=0.125)
    model.net = model.build_net()
    randomize_norm_stats(model.net)
    sen_file = str(tmp_path / "unet.json")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        table = slim.cal_params_sensitivities(model, sen_file, ds, batch_size=4, ratios=[0.3, 0.7])
    assert "runtime-onnxruntime method" in caplog.text
    pruner = L1NormFilterPruner(model.net, [1, 3, 32, 32])
    naive = pruner.sensitive(eval_func=lambda: model.evaluate(ds, batch_size=4)["miou"], ratios=[0.3, 0.7],
                             method="naive")
    assert set(table) == set(naive) and _agree(table, naive)
    assert any(v != 0 for pts in naive.values() for v in pts.values())      # the metric really moved


def test_importing_the_engine_loads_no_runtime():
    code = ("import sys, paddleprune.prune, paddleprune.prune.sensitive, paddleprune.deploy; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'paddle2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_analysis_gives_the_thread_setting_back(monkeypatch):
    import os
    calls = []
    monkeypatch.setattr(paddle.base.core, "set_num_threads", calls.append)
    monkeypatch.setenv("PADDLEPRUNE_THREADS", "3")
    model = nets.ResidualChain()
    batches, score, _ = fixed_eval(model)
    L1NormFilterPruner(model, [1, 3, 16, 16]).sensitive(eval_batches=batches, score_fn=score, ratios=[0.5])
    assert calls[0] == 3 and calls[-1] == int(os.environ.get("OMP_NUM_THREADS") or 1)
