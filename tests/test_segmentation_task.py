"""UNet task end to end on a small subset of the embedded segmentation set: collate, loss,
train, save, load, evaluate, predict, sensitivities, pruned retrain, export (Paddle Inference
with oneDNN, ONNX Runtime)."""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml

import paddleprune
from paddleprune import seg
from paddleprune.datasets import SegDataset, demo
from paddleprune.errors import InvalidParameterError
from paddleprune.prune import count_params, dygraph_flops
from paddleprune.seg import transforms as T
from paddleprune.slim import cal_params_sensitivities
from paddleprune.tasks.segmentation import collate_segmentation

SIZE = 64
MODEL = dict(scale=0.125)


def _subset(folder, name, n):
    root = demo.segmentation()
    lines = open(os.path.join(root, f"{name}_list.txt"), encoding="utf-8").read().splitlines()[:n]
    path = os.path.join(folder, f"{name}_{n}.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return root, path


def _dataset(lists, name):
    root, path = lists[name]
    tf = (T.Compose([T.ResizeByLong(long_size=SIZE), T.RandomPaddingCrop(crop_size=SIZE), T.Normalize()])
          if name == "train" else T.Compose([T.ResizeByLong(long_size=SIZE), T.Padding(target_size=SIZE),
                                             T.Normalize()]))
    return SegDataset(root, path, os.path.join(root, "labels.txt"), transforms=tf)


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("seg_lists"))
    return {"train": _subset(folder, "train", 48), "val": _subset(folder, "val", 16)}


@pytest.fixture(scope="module")
def trained(lists, tmp_path_factory):
    paddle.seed(0)
    np.random.seed(0)
    save_dir = str(tmp_path_factory.mktemp("seg_stage1"))
    train = _dataset(lists, "train")
    model = seg.UNet(num_classes=len(train.labels), **MODEL)
    model.train(3, train, train_batch_size=8, eval_dataset=_dataset(lists, "val"), save_dir=save_dir,
                learning_rate=0.05, log_interval_steps=2)
    return model, save_dir


def test_collate_pads_image_with_zero_and_label_with_ignore():
    samples = [{"image": np.ones([20, 30, 3], np.float32), "label": np.full([20, 30], 2, np.uint8)},
               {"image": np.ones([40, 10, 3], np.float32), "label": np.ones([40, 10], np.uint8)}]
    batch = collate_segmentation(samples)
    assert batch["image"].shape == (2, 3, 48, 32) and batch["label"].shape == (2, 48, 32)
    assert batch["label"].dtype == np.int64 and batch["image"].dtype == np.float32
    assert (batch["label"][0, :20, :30] == 2).all() and (batch["label"][0, 20:] == 255).all()
    assert (batch["label"][0, :, 30:] == 255).all() and batch["image"][0, :, 20:].sum() == 0
    assert (batch["label"][1, :40, :10] == 1).all() and (batch["label"][1, :, 10:] == 255).all()
    assert "label" not in collate_segmentation([{"image": np.ones([16, 16, 3], np.float32)}])
    samples[1]["label"] = np.ones([39, 10], np.uint8)
    with pytest.raises(InvalidParameterError, match=r"label \(39, 10\) and image \(40, 10\) sizes differ"):
        collate_segmentation(samples)


def test_losses_skip_ignored_pixels_and_weigh_classes():
    rng = np.random.default_rng(0)
    logits = paddle.to_tensor(rng.normal(size=[2, 3, 4, 5]).astype("float32"))
    label = rng.integers(0, 3, [2, 4, 5])
    label[0, 0] = 255
    model = seg.UNet(num_classes=3, class_weight=[1.0, 2.0, 0.5])
    loss = model.compute_loss(logits, paddle.to_tensor(label)).item()
    logp = F.log_softmax(logits, axis=1).numpy()
    keep = label != 255
    w = np.array([1.0, 2.0, 0.5])[label[keep]]
    picked = np.take_along_axis(logp, np.where(keep, label, 0)[:, None], axis=1)[:, 0][keep]
    assert loss == pytest.approx(-(w * picked).sum() / w.sum(), rel=1e-5)
    binary = seg.UNet(num_classes=2, use_bce_loss=True, use_dice_loss=True)
    one = paddle.to_tensor(rng.normal(size=[2, 1, 4, 5]).astype("float32"))
    lab = np.where(label > 0, 1, label)
    lab[lab == 255] = 255
    p = 1 / (1 + np.exp(-one.numpy()[:, 0]))
    valid = lab != 255
    t = np.where(valid, lab, 0)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p))[valid].mean()
    inter = (p * t * valid).sum(axis=(1, 2))
    dice = (1 - 2 * inter / ((p * valid).sum(axis=(1, 2)) + (t * valid).sum(axis=(1, 2)) + 1e-5)).mean()
    assert binary.compute_loss(one, paddle.to_tensor(lab)).item() == pytest.approx(bce + dice, rel=1e-4)
    assert binary.build_net()(paddle.zeros([1, 3, 16, 16])).shape == [1, 1, 16, 16]


def test_train_evaluate_save_load_predict(trained, lists):
    model, save_dir = trained
    best = os.path.join(save_dir, "best_model")
    info = yaml.safe_load(open(os.path.join(best, "model.yml")))
    assert info["Model"] == "UNet" and info["_Attributes"]["model_type"] == "segmenter"
    assert info["_Attributes"]["input_shape"] == [1, 3, SIZE, SIZE]
    assert list(info["_Attributes"]["eval_metrics"]) == ["miou", "oacc", "kappa"]
    loaded = paddleprune.load_model(best)
    metrics = loaded.evaluate(_dataset(lists, "val"), batch_size=8)
    assert list(metrics)[:2] == ["miou", "category_iou"] and isinstance(metrics["miou"], float)
    assert metrics["miou"] == pytest.approx(info["_Attributes"]["eval_metrics"]["miou"], abs=1e-6)
    assert metrics["miou"] > 1 / len(loaded.labels) / 2            # three epochs learn the background at least
    root, path = lists["val"]
    image = os.path.join(root, open(path).readline().split()[0])
    result = loaded.predict(image)
    h, w = __import__("cv2").imread(image).shape[:2]
    assert result["label_map"].shape == (h, w) and result["score_map"].shape == (h, w, len(loaded.labels))
    np.testing.assert_allclose(result["score_map"].sum(axis=2), 1.0, rtol=1e-5)
    assert set(np.unique(result["label_map"])) <= set(range(len(loaded.labels)))
    np.testing.assert_array_equal(loaded.predict([image, image])[1]["label_map"], result["label_map"])


def test_sensitivities_prune_and_export(trained, lists, tmp_path):
    _, save_dir = trained
    base = paddleprune.load_model(os.path.join(save_dir, "best_model"))
    sen_file = str(tmp_path / "unet.sensi.json")
    shape = [1, 3, SIZE, SIZE]
    from paddleprune.prune import L1NormFilterPruner
    groups = [g.root for g in L1NormFilterPruner(base.net, shape).prunable_groups()]
    assert any(n.startswith("encode.block1") for n in groups) and not any(n.startswith("logit") for n in groups)
    table = cal_params_sensitivities(base, sen_file, _dataset(lists, "val"), batch_size=8, ratios=[0.5])
    assert set(table) == set(groups) and len({round(v[0.5], 6) for v in table.values()}) > 1
    pruned = seg.UNet(num_classes=len(base.labels), **MODEL)
    out = str(tmp_path / "pruned")
    pruned.train(1, _dataset(lists, "train"), train_batch_size=8, eval_dataset=_dataset(lists, "val"),
                 save_dir=out, pretrain_weights=os.path.join(save_dir, "best_model"), learning_rate=0.01,
                 sensitivities_file=sen_file, eval_metric_loss=0.9)
    assert pruned.status == "Prune" and count_params(pruned.net) < count_params(base.net)
    assert dygraph_flops(pruned.net, shape) < dygraph_flops(base.net, shape)
    loaded = paddleprune.load_model(os.path.join(out, "best_model"))
    x = paddle.to_tensor(np.random.default_rng(0).random([2, 3, SIZE, SIZE], dtype=np.float32))
    loaded.net.eval()
    pruned.net.eval()
    np.testing.assert_allclose(loaded.net(x).numpy(), pruned.net(x).numpy(), rtol=1e-5, atol=1e-5)
    _check_export(loaded, lists, tmp_path)


def _check_export(model, lists, tmp_path):
    from paddleprune.deploy.export import export_onnx
    from paddleprune.deploy.runners import OnnxRuntimeRunner, PaddleInferenceRunner
    target = model.export_inference_model(str(tmp_path / "infer"))
    info = yaml.safe_load(open(os.path.join(target, "model.yml")))
    assert info["status"] == "Infer" and info["_ModelInputsOutputs"]["outputs"] == ["label_map", "score_map"]
    ds = _dataset(lists, "val")
    image = collate_segmentation([ds[i] for i in range(4)])["image"]
    layer = model.export_layer()
    layer.eval()
    with paddle.no_grad():
        ref_labels, ref_scores = (t.numpy() for t in layer(paddle.to_tensor(image)))
    for runner in (PaddleInferenceRunner(os.path.join(target, "model.json"),
                                         os.path.join(target, "model.pdiparams")),
                   OnnxRuntimeRunner(export_onnx(target))):
        labels, scores = runner([image])
        runner.close()
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
        # label maps equal wherever the two best scores are not (numerically) tied
        top2 = np.sort(ref_scores, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-4
        assert clear.mean() > 0.99 and np.array_equal(labels[clear], ref_labels[clear])


def test_bad_segmenter_arguments():
    with pytest.raises(InvalidParameterError, match=r"use_bce_loss / use_dice_loss need num_classes=2"):
        seg.UNet(num_classes=3, use_dice_loss=True)
    with pytest.raises(InvalidParameterError, match=r"'class_weight' must be None or 3 numbers >= 0"):
        seg.UNet(num_classes=3, class_weight=[1, 2])
    with pytest.raises(InvalidParameterError, match=r"'num_classes' must be an int >= 2"):
        seg.UNet(num_classes=1)
    with pytest.raises(InvalidParameterError, match=r"upsample_mode"):
        seg.UNet(num_classes=3, upsample_mode="nearest")
    with pytest.raises(InvalidParameterError, match=r"'lr_decay_power' must be a number > 0; got 0"):
        seg.UNet(num_classes=3).train(1, [0], lr_decay_power=0)
