"""YOLOv3 task end to end on a small subset of the embedded VOC set: collate, train, save,
load, evaluate, predict, sensitivities, pruned retrain, export (Paddle Inference, ONNX)."""
import os

import numpy as np
import paddle
import pytest
import yaml

import paddleprune
from paddleprune import det
from paddleprune.datasets import VOCDetection, demo
from paddleprune.det import transforms as T
from paddleprune.errors import InvalidParameterError
from paddleprune.prune import count_params, dygraph_flops
from paddleprune.slim import cal_params_sensitivities
from paddleprune.tasks.detection import collate_detection

SIZE = 96
ANCHORS = [[3, 4], [4, 8], [8, 6], [8, 16], [16, 12], [15, 30], [30, 23], [40, 50], [90, 80]]
MODEL = dict(num_classes=5, anchors=ANCHORS, train_random_shapes=[64, 96], backbone_scale=0.25,
             nms_score_threshold=0.001)


def _subset(folder, name, n):
    root = demo.detection()
    lines = open(os.path.join(root, f"{name}_list.txt"), encoding="utf-8").read().splitlines()[:n]
    path = os.path.join(folder, f"{name}_{n}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return root, path


def _dataset(lists, name):
    root, path = lists[name]
    tf = (T.Compose([T.RandomExpand(ratio=1.5), T.Resize(target_size=SIZE, interp="RANDOM"), T.Normalize()])
          if name == "train" else T.Compose([T.Resize(target_size=SIZE, interp="CUBIC"), T.Normalize()]))
    return VOCDetection(root, path, os.path.join(root, "labels.txt"), transforms=tf)


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("det_lists"))
    return {"train": _subset(folder, "train", 64), "val": _subset(folder, "val", 24)}


@pytest.fixture(scope="module")
def trained(lists, tmp_path_factory):
    paddle.seed(0)
    np.random.seed(0)
    save_dir = str(tmp_path_factory.mktemp("det_stage1"))
    model = det.YOLOv3(**MODEL)
    # Adam with a small step: a few steps keep the batch-norm statistics and the scores in a sane range
    model.train(4, _dataset(lists, "train"), train_batch_size=8, eval_dataset=_dataset(lists, "val"),
                save_dir=save_dir, optimizer=lambda params: paddle.optimizer.Adam(1e-4, parameters=params),
                log_interval_steps=2)
    return model, save_dir


def test_collate_pads_normalises_and_maps_back_to_the_original_image():
    samples = [{"image": np.zeros([50, 100, 3], np.float32), "im_id": 0, "origin_shape": np.array([100, 400]),
                "gt_bbox": np.array([[10, 5, 30, 25], [0, 0, 100, 50]], np.float32),
                "gt_class": np.array([2, 0], np.int32), "gt_score": np.array([1.0, 0.5], np.float32),
                "difficult": np.array([0, 1], np.int32)},
               {"image": np.ones([50, 100, 3], np.float32), "im_id": 1, "origin_shape": np.array([50, 100]),
                "gt_bbox": np.array([[20, 10, 40, 30]], np.float32), "gt_class": np.array([4], np.int32),
                "gt_score": np.array([1.0], np.float32), "difficult": np.array([0], np.int32)}]
    batch = collate_detection(samples)
    assert batch["image"].shape == (2, 3, 50, 100) and batch["gt_num"].tolist() == [2, 1]
    np.testing.assert_allclose(batch["gt_box"][0, 0], [0.2, 0.3, 0.2, 0.4])          # cx, cy, w, h / (100, 50)
    np.testing.assert_allclose(batch["gt_bbox"][0, 0], [40, 10, 120, 50])            # x4 wide, x2 high
    assert batch["gt_box"][1, 1].tolist() == [0, 0, 0, 0] and batch["gt_score"][0].tolist() == [1.0, 0.5]
    assert batch["difficult"][0].tolist() == [0, 1] and batch["im_size"].tolist() == [[100, 400], [50, 100]]
    assert batch["gt_label"][1].tolist() == [4, 0] and batch["gt_label"].dtype == np.int32
    # multi-scale: one size per batch, boxes scaled with it, the draw repeatable
    a, b = collate_detection(samples, [64, 96]), collate_detection(samples, [64, 96])
    assert a["image"].shape[2] == a["image"].shape[3] in (64, 96) and np.array_equal(a["image"], b["image"])
    np.testing.assert_allclose(a["gt_box"], batch["gt_box"], atol=1e-6)             # normalised: unchanged
    samples[1]["image"] = np.ones([60, 100, 3], np.float32)
    with pytest.raises(InvalidParameterError, match=r"images of different sizes \[\(50, 100\), \(60, 100\)\]"):
        collate_detection(samples)


def test_train_evaluate_save_load_predict(trained, lists):
    model, save_dir = trained
    best = os.path.join(save_dir, "best_model")
    info = yaml.safe_load(open(os.path.join(best, "model.yml")))
    assert info["Model"] == "YOLOv3" and info["_Attributes"]["model_type"] == "detector"
    assert info["_init_params"]["anchors"] == ANCHORS and info["_Attributes"]["input_shape"] == [1, 3, SIZE, SIZE]
    assert list(info["_Attributes"]["eval_metrics"]) == ["bbox_map"]
    loaded = paddleprune.load_model(best)
    metrics = loaded.evaluate(_dataset(lists, "val"), batch_size=8)
    assert list(metrics) == ["bbox_map"] and isinstance(metrics["bbox_map"], float)
    assert 0.0 <= metrics["bbox_map"] <= 1.0
    assert metrics["bbox_map"] == pytest.approx(info["_Attributes"]["eval_metrics"]["bbox_map"], abs=1e-6)
    metrics, details = loaded.evaluate(_dataset(lists, "val"), batch_size=8, return_details=True)
    assert details["num_images"] == 24
    image = os.path.join(lists["val"][0], open(lists["val"][1]).readline().split()[0])
    result = loaded.predict(image)
    assert result and set(result[0]) == {"category_id", "category", "bbox", "score"}
    h, w = __import__("cv2").imread(image).shape[:2]
    for r in result:
        x, y, bw, bh = r["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw >= 0 and bh >= 0
        assert r["category"] == loaded.labels[r["category_id"]] and 0.001 <= r["score"] <= 1
    assert [r["score"] for r in result] == sorted((r["score"] for r in result), reverse=True)
    assert loaded.predict([image, image])[1] == result


def test_sensitivities_prune_and_export(trained, lists, tmp_path):
    _, save_dir = trained
    base = paddleprune.load_model(os.path.join(save_dir, "best_model"))
    sen_file = str(tmp_path / "yolov3.sensi.json")
    shape = [1, 3, SIZE, SIZE]
    from paddleprune.prune import L1NormFilterPruner
    groups = [g.root for g in L1NormFilterPruner(base.net, shape).prunable_groups()]
    # backbone, neck (transition, concat consumers) and head are all prunable
    assert any(n.startswith("backbone.") for n in groups) and any("yolo_transition" in n for n in groups)
    assert any("yolo_block" in n for n in groups) and not any("yolo_output" in n for n in groups)
    table = cal_params_sensitivities(base, sen_file, _dataset(lists, "val"), batch_size=12, ratios=[0.5])
    assert set(table) == set(groups) and all(set(v) == {0.5} for v in table.values())
    assert len({round(v[0.5], 6) for v in table.values()}) > 1         # the metric really moved
    pruned = det.YOLOv3(**MODEL)
    out = str(tmp_path / "pruned")
    pruned.train(1, _dataset(lists, "train"), train_batch_size=16, eval_dataset=_dataset(lists, "val"),
                 save_dir=out, pretrain_weights=os.path.join(save_dir, "best_model"), learning_rate=0.002,
                 warmup_steps=0, lr_decay_epochs=[5], sensitivities_file=sen_file, eval_metric_loss=0.9)
    assert pruned.status == "Prune" and count_params(pruned.net) < count_params(base.net)
    assert dygraph_flops(pruned.net, shape) < dygraph_flops(base.net, shape)
    outs = [p.shape[0] for n, p in pruned.net.named_parameters() if "yolo_output" in n and n.endswith("weight")]
    assert outs == [3 * (5 + 5)] * 3
    loaded = paddleprune.load_model(os.path.join(out, "best_model"))
    x = paddle.to_tensor(np.random.default_rng(0).random([2, 3, SIZE, SIZE], dtype=np.float32))
    loaded.net.eval()
    pruned.net.eval()
    for a, b in zip(loaded.net(x), pruned.net(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    _check_export(loaded, lists, tmp_path)


def _rows(bbox):
    """Rows sorted by every column, rounded: the same boxes whatever the order of tied scores."""
    rows = np.round(np.asarray(bbox, np.float64), 2)
    return rows[np.lexsort(rows.T[::-1])]


def _check_export(model, lists, tmp_path):
    from paddleprune.deploy.runners import OnnxRuntimeRunner, PaddleInferenceRunner
    from paddleprune.deploy.export import export_onnx
    target = model.export_inference_model(str(tmp_path / "infer"), fixed_input_shape=[SIZE, SIZE])
    info = yaml.safe_load(open(os.path.join(target, "model.yml")))
    assert info["status"] == "Infer" and info["_ModelInputsOutputs"] == {
        "inputs": [["image", [-1, 3, SIZE, SIZE]], ["im_size", [-1, 2]]], "outputs": ["bbox", "bbox_num"]}
    ds = _dataset(lists, "val")
    batch = {k: paddle.to_tensor(v) for k, v in collate_detection([ds[i] for i in range(4)]).items()}
    layer = model.export_layer()
    layer.eval()
    with paddle.no_grad():
        ref_bbox, ref_num = (t.numpy() for t in layer(batch["image"], batch["im_size"]))
    assert ref_num.sum() == len(ref_bbox) > 0
    feeds = [batch["image"].numpy(), batch["im_size"].numpy()]
    runner = PaddleInferenceRunner(os.path.join(target, "model.json"), os.path.join(target, "model.pdiparams"))
    bbox, num = runner(feeds)                          # a batch of 4 at once
    runner.close()
    assert num.tolist() == ref_num.tolist()
    np.testing.assert_allclose(_rows(bbox), _rows(ref_bbox), atol=0.02)
    # ONNX Runtime one image at a time: paddle2onnx 2.1.0's multiclass NMS is right only at batch 1
    runner = OnnxRuntimeRunner(export_onnx(target))
    starts = np.concatenate([[0], np.cumsum(ref_num)])
    for i in range(4):
        bbox, num = runner([feeds[0][i:i + 1], feeds[1][i:i + 1]])
        assert num.tolist() == [ref_num[i]]
        np.testing.assert_allclose(_rows(bbox), _rows(ref_bbox[starts[i]:starts[i + 1]]), atol=0.02)
    runner.close()


def test_bad_detector_arguments():
    with pytest.raises(InvalidParameterError, match=r"'backbone' must be 'MobileNetV1'; got 'DarkNet53'"):
        det.YOLOv3(num_classes=5, backbone="DarkNet53")
    with pytest.raises(InvalidParameterError, match=r"'train_random_shapes' must be a list of multiples of 32"):
        det.YOLOv3(num_classes=5, train_random_shapes=[100])
    with pytest.raises(InvalidParameterError, match=r"'nms_keep_topk' must be an int >= 1 or -1"):
        det.YOLOv3(num_classes=5, nms_keep_topk=0)
    with pytest.raises(InvalidParameterError, match=r"'metric' must be None or 'VOC'; got 'COCO'"):
        det.YOLOv3(num_classes=5).train(1, [0], metric="COCO")


def test_classifier_folder_starts_the_backbone(lists, tmp_path):
    from paddleprune import cls
    from paddleprune.tasks.checkpoint import load_pretrain
    classifier = cls.MobileNetV1(num_classes=10, scale=0.25)
    classifier.net = classifier.build_net()
    folder = classifier.save_model(str(tmp_path / "mbv1"))
    model = det.YOLOv3(**MODEL)
    net = model.build_net()
    head_before = net.yolo_output[0].weight.numpy().copy()
    assert load_pretrain(model, net, folder, "t") is None
    ours = net.state_dict()
    for name, value in classifier.net.state_dict().items():
        if not name.startswith("fc."):
            np.testing.assert_array_equal(ours["backbone." + name].numpy(), value.numpy())
    np.testing.assert_array_equal(net.yolo_output[0].weight.numpy(), head_before)     # the head is untouched
    wider = cls.MobileNetV1(num_classes=10, scale=0.5)
    wider.net = wider.build_net()
    with pytest.raises(InvalidParameterError, match=r"holds a MobileNetV1 whose weights do not fit this model's "
                                                    r"backbone .*features.0.0.weight has shape \[16, 3, 3, 3\]"):
        load_pretrain(model, model.build_net(), wider.save_model(str(tmp_path / "wide")), "t")


def test_metric_values_are_stored_as_plain_floats():
    from paddleprune.tasks.base import scalar_metrics
    out = scalar_metrics({"bbox_map": np.float32(0.5), "acc1": np.float64(0.25), "n": np.int64(3),
                          "category_iou": [0.1, 0.2], "flag": True})
    assert out == {"bbox_map": 0.5, "acc1": 0.25, "n": 3.0} and all(type(v) is float for v in out.values())
