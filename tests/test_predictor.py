"""`paddleprune export`, `paddleprune.deploy.Predictor` and `paddleprune benchmark`: exported
models, the Predictor (Paddle Inference, ONNX Runtime) and dygraph predict() agree."""
import json
import os
import warnings

import numpy as np
import paddle
import paddle.nn as nn
import pytest
import yaml

from paddleprune import cls, det, seg
from paddleprune.cli import build_parser, main
from paddleprune.deploy import Predictor
from paddleprune.deploy.benchmark import benchmark
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError

SIZE = 64
ANCHORS = [[3, 4], [4, 8], [8, 6], [8, 16], [16, 12], [15, 30], [30, 23], [40, 50], [90, 80]]


def _calibrate(net, shape):
    """BN statistics from one random batch, so outputs are O(1) (at random init they are tiny
    and every class or box ties)."""
    bns = [m for m in net.sublayers() if isinstance(m, nn.BatchNorm2D)]
    for m in bns:
        m._momentum = 0.0
    net.train()
    with paddle.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net(paddle.randn([4] + shape[1:]))   # like normalized images
    for m in bns:
        m._momentum = 0.9
    net.eval()


def _make(kind, scale=0.25):
    if kind == "cls":
        task = cls.MobileNetV2(num_classes=4, scale=scale, small_input=True)
        tf = cls.transforms.Compose([cls.transforms.ResizeByShort(short_size=SIZE),
                                     cls.transforms.CenterCrop(crop_size=SIZE), cls.transforms.Normalize()])
    elif kind == "det":
        task = det.YOLOv3(num_classes=3, anchors=ANCHORS, backbone_scale=0.25, nms_score_threshold=0.01,
                          train_random_shapes=[64])
        tf = det.transforms.Compose([det.transforms.Resize(target_size=SIZE, interp="CUBIC"),
                                     det.transforms.Normalize()])
    else:
        task = seg.UNet(num_classes=3, scale=0.125)
        tf = seg.transforms.Compose([seg.transforms.ResizeByLong(long_size=SIZE),
                                     seg.transforms.Padding(target_size=SIZE), seg.transforms.Normalize()])
    paddle.seed(0)
    task.net = task.build_net()
    task.input_shape = [1, 3, SIZE, SIZE]
    _calibrate(task.net, task.input_shape)
    task.labels = [f"c{i}" for i in range(task.num_classes)]
    task.eval_transforms = tf
    return task


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("predictor")
    out = {}
    for kind in ("cls", "det", "seg"):
        task = _make(kind)
        saved = task.save_model(str(root / kind / "best_model"))
        exported = str(root / kind / "inference")
        assert main(["export", "--model-dir", saved, "--save-dir", exported, "--format", "both",
                     "--fixed-input-shape", f"{SIZE},{SIZE}"]) == 0
        out[kind] = (task, saved, exported)
    return out


def _images(n=3):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(48 + 16 * i, 80 - 8 * i, 3), dtype=np.uint8) for i in range(n)]


def test_export_writes_inference_files_and_model_yml(models):
    task, _, exported = models["cls"]
    assert {"model.json", "model.pdiparams", "model.onnx", "model.yml"} <= set(os.listdir(exported))
    info = yaml.safe_load(open(os.path.join(exported, "model.yml")))
    assert info["status"] == "Infer" and info["Model"] == "MobileNetV2"
    assert info["_Attributes"]["labels"] == task.labels and info["Transforms"]
    assert info["_Attributes"]["fixed_input_shape"] == [SIZE, SIZE]
    assert info["_Attributes"]["params"] > 0 and info["_Attributes"]["flops"] > 0


def _assert_same(kind, got, want):
    if kind == "cls":
        assert [r["category_id"] for r in got] == [r["category_id"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-4)
    elif kind == "det":   # NMS may order near-tied boxes differently: match each box to one of the other
        assert len(want) > 0 and len(got) == len(want)
        left = list(got)
        for w in want:
            match = next((g for g in left if g["category_id"] == w["category_id"]
                          and abs(g["score"] - w["score"]) < 1e-3
                          and np.allclose(g["bbox"], w["bbox"], atol=1e-2)), None)
            assert match is not None, f"no box matches {w}"
            left.remove(match)
    else:
        np.testing.assert_allclose(got["score_map"], want["score_map"], atol=1e-4)
        assert np.mean(got["label_map"] == want["label_map"]) > 0.999


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime"])
@pytest.mark.parametrize("kind", ["cls", "det", "seg"])
def test_predictor_matches_dygraph_predict(models, kind, backend):
    task, _, exported = models[kind]
    images = _images()
    want = task.predict(images)
    predictor = Predictor(exported, backend=backend, threads=1)
    try:
        got = predictor.batch_predict(images)
        one = predictor.predict(images[0])
    finally:
        predictor.close()
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        _assert_same(kind, g, w)
    _assert_same(kind, one, want[0])


def test_predictor_topk_for_classifiers(models):
    task, _, exported = models["cls"]
    predictor = Predictor(exported, backend="onnxruntime")
    got = predictor.predict(_images(1)[0], topk=3)
    assert [r["category_id"] for r in got] == [r["category_id"] for r in task.predict(_images(1)[0], topk=3)]
    with pytest.raises(InvalidParameterError, match="'topk' must be at most num_classes"):
        predictor.predict(_images(1)[0], topk=9)


def test_predictor_with_and_without_onednn(models):
    task, _, exported = models["cls"]
    auto, plain = Predictor(exported), Predictor(exported, onednn=False)
    assert auto.onednn is True and plain.onednn is False
    _assert_same("cls", plain.predict(_images(1)[0]), task.predict(_images(1)[0]))


def test_predictor_refuses_a_training_folder(models):
    with pytest.raises(DataFormatError, match="status 'Normal'.*paddleprune export"):
        Predictor(models["cls"][1])


def test_predictor_errors(models, tmp_path):
    with pytest.raises(InvalidParameterError, match="'backend' must be one of"):
        Predictor(models["cls"][2], backend="tensorrt")
    with pytest.raises(DataNotFoundError, match="model.yml"):
        Predictor(str(tmp_path))
    with pytest.raises(InvalidParameterError, match="'img_file_list' must be a non-empty list"):
        Predictor(models["cls"][2]).batch_predict([])
    with pytest.raises(InvalidParameterError, match=r"unknown option\(s\) \['topk'\]; a YOLOv3 takes none"):
        Predictor(models["det"][2], backend="onnxruntime").predict(_images(1)[0], topk=3)


def test_export_onnx_only(models, tmp_path):
    out = str(tmp_path / "onnx_only")
    assert main(["export", "--model-dir", models["cls"][1], "--save-dir", out, "--format", "onnx"]) == 0
    assert sorted(os.listdir(out)) == ["model.onnx", "model.yml"]
    assert Predictor(out, backend="onnxruntime").predict(_images(1)[0])
    with pytest.raises(DataNotFoundError, match="model.json.*--format paddle or both"):
        Predictor(out, backend="paddle")


def test_export_bad_input_shape_is_a_usage_error(models, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--model-dir", models["cls"][1], "--save-dir", "x", "--fixed-input-shape", "64"])
    assert "expected W,H" in capsys.readouterr().err


def test_benchmark_cli_table_and_json(models, tmp_path, capsys):
    bigger = _make("cls", scale=0.5)
    saved = bigger.save_model(str(tmp_path / "big" / "best_model"))
    big = str(tmp_path / "big_inference")
    main(["export", "--model-dir", saved, "--save-dir", big, "--fixed-input-shape", f"{SIZE},{SIZE}"])
    small = models["cls"][2]
    capsys.readouterr()
    assert main(["benchmark", big, small, "--batch", "1", "2", "--threads", "1", "--warmup", "1",
                 "--repeats", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["models"]) == ["big_inference", "inference"]
    assert result["models"]["big_inference"]["flops"] > result["models"]["inference"]["flops"]
    assert set(result["latency"]) == {"Paddle Inference (oneDNN, 1 thread)", "ONNX Runtime (1 thread)"}
    for by_batch in result["latency"].values():
        assert list(by_batch) == ["1", "2"]
        for timing in by_batch.values():
            assert all(s["median_ms"] > 0 and s["p90_ms"] >= s["median_ms"] for s in timing["models"].values())
    assert main(["benchmark", small, "--repeats", "2", "--warmup", "0", "--backends", "onnxruntime"]) == 0
    table = capsys.readouterr().out
    assert "median ms" in table and "p90 ms" in table and "MFLOPs" in table


def test_benchmark_refuses_models_of_different_inputs(models):
    with pytest.raises(InvalidParameterError, match="different inputs"):
        benchmark([models["cls"][2], models["det"][2]])


@pytest.mark.parametrize("command", ["export", "benchmark"])
def test_help_documents_every_option(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    undocumented = [a.dest for a in sub._actions if not a.help]
    assert undocumented == []


class _ConvBNLeaky(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2D(3, 8, 3, padding=1, bias_attr=False), nn.BatchNorm2D(8), nn.LeakyReLU(0.1)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


def test_onednn_keeps_bn_folds_and_survives_leaky_relu(models, tmp_path):
    from paddleprune.deploy import check_exported, export_inference_model
    from paddleprune.deploy.runners import ONEDNN_DELETED_PASSES, onednn_deleted_passes

    assert onednn_deleted_passes(os.path.join(models["cls"][2], "model.json")) == ()
    net = _ConvBNLeaky()
    net.eval()
    out = export_inference_model(net, tmp_path / "leaky", [None, 3, 8, 8])
    assert onednn_deleted_passes(os.path.join(out, "model.json")) == ONEDNN_DELETED_PASSES
    # with every pass kept this program segfaults in FusedConv2dOp::Build (Paddle 3.3)
    assert check_exported(net, out, [1, 3, 8, 8], backends=["paddle_inference"])["paddle_inference"] < 1e-5


def test_pipeline_report_times_with_the_benchmark_code(models):
    from paddleprune.pipeline.report import time_models

    dirs = {"original": models["cls"][2], "pruned": models["cls"][2]}
    table = time_models(dirs, [1, 3, SIZE, SIZE], (1, 2))
    assert list(table) == ["Paddle Inference (oneDNN, 1 thread)", "ONNX Runtime (1 thread)"]
    for by_batch in table.values():
        assert list(by_batch) == ["1", "2"]
        for row in by_batch.values():
            assert row["original"] > 0 and set(row["ratio"]) == {"original", "pruned"}
