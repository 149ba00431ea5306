"""Export to Paddle Inference / ONNX, numerical agreement with dygraph, size and latency reports."""
import copy
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import paddleprune.deploy as deploy
from paddleprune.deploy import (check_exported, compare_latency, export_inference_model, export_onnx,
                                measure_latency, model_size_mb)
from paddleprune.errors import DataNotFoundError, InvalidParameterError, UnsupportedOpError
from paddleprune.prune import L1NormFilterPruner

SHAPE = [1, 3, 32, 32]
FAST = dict(warmup=2, repeats=5)


def _calibrated_mobilenet():
    """mobilenet_v2 x0.25 whose outputs are O(1): at random init they are ~1e-7, which would
    make any tolerance check vacuous. BN statistics come from one batch, logits are rescaled."""
    net = paddle.vision.models.mobilenet_v2(scale=0.25, num_classes=10)
    for layer in net.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            layer._momentum = 0.0
    net.train()
    with paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BN notes that training mode tracks global statistics
        net(paddle.rand([8] + SHAPE[1:]))
        net.eval()
        scale = float(np.abs(net(paddle.rand(SHAPE)).numpy()).max())
        fc = net.classifier[1]
        fc.weight.set_value(fc.weight.numpy() / scale)
        fc.bias.set_value(fc.bias.numpy() / scale)
    for layer in net.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            layer._momentum = 0.9
    return net


@pytest.fixture(scope="module")
def nets():
    paddle.seed(1)
    net = _calibrated_mobilenet()
    pruned = copy.deepcopy(net)
    pruner = L1NormFilterPruner(pruned, SHAPE)
    flops_before = pruner.flops()
    pruner.prune_vars({g.root: 0.5 for g in pruner.prunable_groups()})
    flops_after = L1NormFilterPruner(pruned, SHAPE).flops()
    return {"net": net, "pruned": pruned, "flops_ratio": flops_after / flops_before}


@pytest.fixture(scope="module")
def exported(nets, tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    dirs = {}
    for name in ("net", "pruned"):
        dirs[name] = export_inference_model(nets[name], root / name, SHAPE)
        export_onnx(dirs[name])
    return dirs


def test_all_names_exist():
    assert deploy.__all__ and all(hasattr(deploy, name) for name in deploy.__all__)


def test_import_does_not_load_inference_packages():
    code = ("import sys, paddleprune.deploy; "
            "print([m for m in ('paddle.inference', 'onnxruntime', 'paddle2onnx') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_export_writes_files_and_leaves_net_as_it_was(tmp_path):
    net = _calibrated_mobilenet()
    net.train()
    net.features[0].eval()  # a sublayer whose flag differs from its parent's
    x = paddle.rand(SHAPE)
    with paddle.no_grad():
        before = net.eval()(x).numpy()
    net.train()
    net.features[0].eval()
    original_forward = type(net).forward

    out = export_inference_model(net, tmp_path / "m", SHAPE)

    assert out == str(tmp_path / "m")
    assert sorted(os.listdir(out)) == ["model.json", "model.pdiparams"]
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0o700
    assert os.listdir(tmp_path) == ["m"]  # no temporary folder left behind
    assert "forward" not in net.__dict__
    assert net.forward.__func__ is original_forward
    assert net.training and not net.features[0].training and net.features[1].training
    with paddle.no_grad():
        assert np.array_equal(net.eval()(x).numpy(), before)


def test_export_keeps_an_instance_forward(tmp_path):
    net = nn.Sequential(nn.Conv2D(3, 4, 3), nn.BatchNorm2D(4), nn.ReLU())
    static = paddle.jit.to_static(net, full_graph=True)
    instance_forward = net.__dict__["forward"]
    export_inference_model(static, tmp_path / "m", [1, 3, 8, 8])
    assert net.__dict__["forward"] is instance_forward
    assert check_exported(net, tmp_path / "m", [1, 3, 8, 8], backends=["paddle_inference"])["paddle_inference"] < 1e-5


def test_export_into_existing_dir_keeps_other_files(exported, nets, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.yml").write_text("status: Normal\n")
    (target / "model.pdiparams").write_bytes(b"old")
    export_inference_model(nets["net"], target, SHAPE)
    assert (target / "model.yml").read_text() == "status: Normal\n"
    assert (target / "model.pdiparams").stat().st_size > 1000
    assert sorted(os.listdir(tmp_path)) == ["m"]


@pytest.mark.parametrize("name", ["net", "pruned"])
def test_exported_outputs_match_dygraph(nets, exported, name):
    diffs = check_exported(nets[name], exported[name], SHAPE)
    assert set(diffs) == {"paddle_inference", "onnxruntime"}
    assert all(d < 1e-4 for d in diffs.values()), diffs
    with paddle.no_grad():  # the check is not vacuous: outputs are O(1)
        assert np.abs(nets[name].eval()(paddle.rand(SHAPE)).numpy()).max() > 0.1


def test_check_without_onednn(nets, exported):
    diffs = check_exported(nets["pruned"], exported["pruned"], SHAPE, backends=["paddle_inference"], onednn=False)
    assert diffs["paddle_inference"] < 1e-4


def test_stale_onnx_file_is_ignored(nets, exported, tmp_path):
    target = export_inference_model(nets["pruned"], tmp_path / "m", SHAPE)
    stale = os.path.join(target, "model.onnx")
    with open(stale, "wb") as f:
        f.write(b"not an onnx model")
    os.utime(stale, (1, 1))
    assert check_exported(nets["pruned"], target, SHAPE, backends=["onnxruntime"])["onnxruntime"] < 1e-4


def test_check_refuses_a_different_network(nets, exported):
    with pytest.raises(InvalidParameterError, match=r"outputs have shapes .* exported from this network"):
        check_exported(paddle.vision.models.mobilenet_v2(scale=0.25, num_classes=7), exported["net"], SHAPE,
                       backends=["paddle_inference"])


def test_export_onnx_to_custom_path(exported, tmp_path):
    path = export_onnx(exported["pruned"], tmp_path / "sub" / "p.onnx", opset=13)
    assert path == str(tmp_path / "sub" / "p.onnx")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    assert os.path.getsize(path) > 1000
    assert sorted(os.listdir(tmp_path / "sub")) == ["p.onnx"]


def test_pruned_params_file_is_smaller(nets, exported):
    assert nets["flops_ratio"] < 0.6
    size, pruned = model_size_mb(exported["net"]), model_size_mb(exported["pruned"])
    assert 0 < pruned < size
    assert size == pytest.approx(os.path.getsize(os.path.join(exported["net"], "model.pdiparams")) / 2 ** 20)


def _assert_stats(stats, runs):
    assert set(stats) == {"median_ms", "p90_ms", "mean_ms", "min_ms", "runs"}
    assert stats["runs"] == runs
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"]
    assert stats["mean_ms"] > 0


def test_measure_latency_of_a_net(nets):
    report = measure_latency(nets["pruned"], SHAPE, backends=("paddle_inference", "onnxruntime", "dygraph"), **FAST)
    assert list(report) == ["paddle_inference", "onnxruntime", "dygraph"]
    for stats in report.values():
        _assert_stats(stats, 5)
    assert "forward" not in nets["pruned"].__dict__


def test_measure_latency_of_a_dir_without_onednn(exported):
    report = measure_latency(exported["net"], SHAPE, onednn=False, threads=1, **FAST)
    assert list(report) == ["paddle_inference", "onnxruntime"]
    for stats in report.values():
        _assert_stats(stats, 5)


def test_compare_latency_gives_ratios(nets, exported):
    report = compare_latency({"original": exported["net"], "pruned": nets["pruned"]}, SHAPE, **FAST)
    assert list(report) == ["paddle_inference", "onnxruntime"]
    for backend in report.values():
        assert list(backend["models"]) == ["original", "pruned"]
        for stats in backend["models"].values():
            _assert_stats(stats, 5)
        for key in ("ratio", "paired_ratio"):
            assert backend[key]["original"] == 1.0
            assert math.isfinite(backend[key]["pruned"]) and backend[key]["pruned"] > 0
        assert backend["ratio"]["pruned"] == pytest.approx(
            backend["models"]["pruned"]["median_ms"] / backend["models"]["original"]["median_ms"])


def test_missing_package_is_reported_not_raised(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    report = measure_latency(exported["net"], SHAPE, **FAST)
    _assert_stats(report["paddle_inference"], 5)
    assert set(report["onnxruntime"]) == {"error"}
    assert "pip install paddle2onnx onnxruntime" in report["onnxruntime"]["error"]
    cmp = compare_latency({"a": exported["net"], "b": exported["pruned"]}, SHAPE, backends=["onnxruntime"], **FAST)
    assert set(cmp["onnxruntime"]) == {"error"}


def test_missing_paddle2onnx_is_a_clear_error(exported, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)
    with pytest.raises(ImportError, match=r"export_onnx: the 'paddle2onnx' package is not installed.*"
                                          r"pip install paddle2onnx onnxruntime"):
        export_onnx(exported["net"], tmp_path / "x.onnx")
    assert not os.path.exists(tmp_path / "x.onnx")


class _ScaleUp(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 4, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2.0)


def test_unconvertible_op_is_a_clear_error(tmp_path):
    target = export_inference_model(_ScaleUp(), tmp_path / "up", [1, 3, 8, 8])
    with pytest.raises(UnsupportedOpError, match=r"could not convert .*model\.json.*FloatAttribute.*size=\[H, W\]"):
        export_onnx(target)
    assert not os.path.exists(os.path.join(target, "model.onnx"))


@pytest.mark.parametrize("call", [
    lambda p: model_size_mb(p),
    lambda p: export_onnx(p),
    lambda p: measure_latency(p, SHAPE, **FAST),
    lambda p: compare_latency({"a": p}, SHAPE, **FAST),
    lambda p: check_exported(nn.Linear(2, 2), p, SHAPE),
])
def test_missing_dir_names_the_path(call, tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataNotFoundError, match=r"directory '.*nowhere' does not exist"):
        call(missing)


def test_dir_without_params_names_the_file(tmp_path):
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(DataNotFoundError, match=r"model\.pdiparams' not found"):
        measure_latency(tmp_path, SHAPE)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=[1, 3, 0, 32]), r"'input_shape' must be a non-empty list of positive ints; got \[1, 3, 0, 32\]"),
    (dict(input_shape=[1, 3, None, 32]), r"'input_shape' must be a non-empty list of positive ints"),
    (dict(backends=["tensorrt"]), r"unknown backend 'tensorrt'"),
    (dict(backends=["dygraph"]), r"the 'dygraph' backend needs a paddle.nn.Layer, not the directory '.*net'\."),
    (dict(repeats=0), r"'repeats' must be an int >= 1; got 0"),
    (dict(threads=1.5), r"'threads' must be an int >= 1; got 1.5"),
])
def test_bad_latency_arguments(exported, kwargs, match):
    args = dict(input_shape=SHAPE, **FAST)
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=r"measure_latency: " + match):
        measure_latency(exported["net"], **args)


def test_bad_export_arguments(nets, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"export_inference_model: 'net' must be a paddle.nn.Layer"):
        export_inference_model("model", tmp_path / "m", SHAPE)
    with pytest.raises(InvalidParameterError, match=r"'input_shape' must be .*; got \(3, 32\.0\)"):
        export_inference_model(nets["net"], tmp_path / "m", (3, 32.0))
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidParameterError, match=r"'save_dir' '.*file' exists and is not a directory"):
        export_inference_model(nets["net"], tmp_path / "file", SHAPE)
    with pytest.raises(InvalidParameterError, match=r"'input_name' must be an identifier"):
        export_inference_model(nets["net"], tmp_path / "m", SHAPE, input_name="a b")
    with pytest.raises(InvalidParameterError, match=r"compare_latency: 'models' must be a non-empty dict"):
        compare_latency({}, SHAPE)
    with pytest.raises(InvalidParameterError, match=r"export_onnx: 'opset' must be an int in \[7, 21\]; got 5"):
        export_onnx(export_inference_model(nets["pruned"], tmp_path / "ok", SHAPE), opset=5)
    assert not os.path.exists(tmp_path / "m")
    assert not os.path.exists(tmp_path / "ok" / "model.onnx")


def test_dynamic_batch_export(nets, tmp_path):
    target = export_inference_model(nets["pruned"], tmp_path / "dyn", [None, 3, 32, 32])
    assert check_exported(nets["pruned"], target, [3, 3, 32, 32], backends=["paddle_inference"])[
        "paddle_inference"] < 1e-4


def test_a_model_a_backend_cannot_take_is_reported_by_name():
    models = {"plain": nn.Sequential(nn.Conv2D(3, 4, 3, padding=1)), "up": _ScaleUp()}
    report = compare_latency(models, [1, 3, 8, 8], onednn=False, **FAST)
    assert report["paddle_inference"]["ratio"]["plain"] == 1.0
    assert report["paddle_inference"]["ratio"]["up"] > 0
    assert report["onnxruntime"]["error"].startswith("model 'up': UnsupportedOpError: compare_latency: paddle2onnx")
