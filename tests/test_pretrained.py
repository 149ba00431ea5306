"""``pretrain_weights='IMAGENET'``: Paddle's published weights, from a temporary weights cache.

No test touches the network: the cache is a temporary folder, and Paddle's downloader is
replaced by one that fails as on an offline machine. The "published" files are seeded
paddle.vision models saved under the file name Paddle's helper uses.
"""
import hashlib
import json
import logging
import os
import re
import types

import cv2
import numpy as np
import paddle
import paddle.utils.download as download
import paddle.vision.models as vision
import pytest

from paddleprune import cls, det, seg
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError
from paddleprune.models.pretrained import key_map
from paddleprune.tasks.checkpoint import load_pretrain

#: paddleprune name -> (paddle.vision module, model_urls key, constructor)
VISION = {"MobileNetV1": ("mobilenetv1", "mobilenetv1_1.0", vision.mobilenet_v1),
          "MobileNetV2": ("mobilenetv2", "mobilenetv2_1.0", vision.mobilenet_v2),
          "ResNet18": ("resnet", "resnet18", vision.resnet18),
          "ResNet50": ("resnet", "resnet50", vision.resnet50)}


def _url(name):
    import importlib
    module, key, _ = VISION[name]
    return importlib.import_module(f"paddle.vision.models.{module}").model_urls[key]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    """Paddle's weights cache in ``tmp_path/weights``; every download attempt fails at once."""
    home = tmp_path / "weights"
    monkeypatch.setattr(download, "WEIGHTS_HOME", str(home))
    attempts = []

    def offline(url, fullname):   # what _get_download does when the host cannot be resolved
        attempts.append(url)
        return False

    monkeypatch.setitem(download._download_methods, "get", offline)
    monkeypatch.setattr(download, "time", types.SimpleNamespace(sleep=lambda s: None))
    return types.SimpleNamespace(home=home, attempts=attempts)


def publish(name, seed=1):
    """A seeded paddle.vision model (BN statistics randomised too), saved where Paddle's helper
    keeps its weights; returns (model in eval mode, file path)."""
    paddle.seed(seed)
    ref = VISION[name][2]()
    ref.set_state_dict({k: paddle.rand(v.shape) + 0.5 if k.endswith(("_mean", "_variance")) else v
                        for k, v in ref.state_dict().items()})
    ref.eval()
    path = download._map_path(_url(name)[0], download.WEIGHTS_HOME)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    paddle.save(ref.state_dict(), path)
    return ref, path


def _load(task):
    net = task.build_net()
    assert load_pretrain(task, net, "IMAGENET", "t") is None
    net.eval()
    return net


@pytest.mark.parametrize("name", list(VISION))
def test_cached_weights_give_paddle_vision_outputs(name, caplog, offline_cache):
    ref, path = publish(name)
    assert set(key_map(name)) == set(getattr(cls, name)().build_net().state_dict())
    with caplog.at_level(logging.INFO):
        net = _load(getattr(cls, name)(num_classes=1000))
    x = paddle.rand([2, 3, 64, 64])
    with paddle.no_grad():
        np.testing.assert_allclose(net(x).numpy(), ref(x).numpy(), atol=1e-5, rtol=0)
    assert not offline_cache.attempts                       # used from the cache, no download
    assert re.search(rf"{re.escape(path)} has md5 \w+, not the published {_url(name)[1]}.*using it as is",
                     caplog.text)
    assert "0 left at their initialisation" in caplog.text


@pytest.mark.parametrize("name, kwargs, fresh, message", [
    ("MobileNetV1", {"num_classes": 10}, {"fc.weight", "fc.bias"},
     r"num_classes=10 differs from ImageNet's 1000: the classifier head \(fc.weight, fc.bias\) starts from scratch"),
    ("MobileNetV2", {"num_classes": 1000, "small_input": True}, set(),
     r"small_input=True: the stem differs from the ImageNet model"),
    ("ResNet18", {"num_classes": 10, "small_input": True}, {"fc.weight", "fc.bias", "conv1.weight"},
     r"small_input=True: the stem differs .*; conv1.weight \(another kernel size\) starts from scratch"),
], ids=["MobileNetV1-head", "MobileNetV2-small_input", "ResNet18-small_input-head"])
def test_head_and_stem_start_from_scratch(name, kwargs, fresh, message, caplog):
    _, path = publish(name)
    task = getattr(cls, name)(**kwargs)
    paddle.seed(7)
    before = {k: v.numpy().copy() for k, v in task.build_net().state_dict().items()}
    paddle.seed(7)
    with caplog.at_level(logging.INFO):
        net = _load(task)
    assert re.search(message, caplog.text)
    published = paddle.load(path)
    mapping = key_map(name)
    for k, v in net.state_dict().items():
        expected = before[k] if k in fresh else published[mapping[k]].numpy()
        np.testing.assert_array_equal(v.numpy(), expected, err_msg=k)


def test_offline_without_cached_file_names_url_and_cache_path(offline_cache):
    url, md5 = _url("MobileNetV2")
    path = os.path.join(str(offline_cache.home), "mobilenet_v2_x1.0.pdparams")
    with pytest.raises(DataNotFoundError, match=re.escape(url) + rf" \(md5 {md5}\); it is not in Paddle's weights "
                       r"cache and could not be downloaded \(RuntimeError: Download from .* failed.*put it at "
                       + re.escape(path) + r" \(this exact path; it is then used as is\)\. Supported: MobileNetV1"):
        load_pretrain(cls.MobileNetV2(num_classes=10), cls.MobileNetV2(num_classes=10).build_net(), "IMAGENET", "t")
    assert offline_cache.attempts and set(offline_cache.attempts) == {url}      # Paddle's helper was asked
    assert not os.path.exists(path)


@pytest.mark.parametrize("task, what", [
    (lambda: cls.MobileNetV2(num_classes=10, scale=0.5), "MobileNetV2 with scale=0.5"),
    (lambda: seg.UNet(num_classes=2, scale=0.125), "UNet"),
    (lambda: det.YOLOv3(num_classes=3, backbone_scale=0.25), "YOLOv3 with backbone='MobileNetV1', backbone_scale=0.25"),
], ids=["MobileNetV2-0.5", "UNet", "YOLOv3-0.25"])
def test_models_without_published_weights_are_refused(task, what, offline_cache):
    model = task()
    with pytest.raises(InvalidParameterError, match=re.escape(f"t: pretrain_weights='IMAGENET': Paddle publishes no "
                                                              f"ImageNet weights for {what}. Supported: MobileNetV1 "
                                                              "and MobileNetV2 with scale=1.0, ResNet18 and ResNet50")):
        load_pretrain(model, model.build_net(), "IMAGENET", "t")
    assert not offline_cache.attempts


def test_other_paddlex_names_keep_their_refusal():
    model = cls.MobileNetV1(num_classes=10)
    with pytest.raises(InvalidParameterError, match="'COCO' names PaddleX's downloadable weights, which paddleprune "
                                                    "cannot provide"):
        load_pretrain(model, model.build_net(), "COCO", "t")


def test_a_file_of_another_network_is_refused_naming_the_tensors():
    _, path = publish("MobileNetV1")
    state = paddle.load(path)
    del state["conv1.0.weight"]
    paddle.save(state, path)
    with pytest.raises(DataFormatError, match=r"not paddle.vision's mobilenet_v1 weights: 1 tensor\(s\) missing "
                                              r"\['conv1.0.weight'\]"):
        _load(cls.MobileNetV1())


def test_yolov3_backbone_starts_from_mobilenetv1_weights(caplog):
    ref, _ = publish("MobileNetV1")
    model = det.YOLOv3(num_classes=3, backbone_scale=1.0)
    paddle.seed(3)
    head = model.build_net().yolo_output[0].weight.numpy()
    paddle.seed(3)
    with caplog.at_level(logging.INFO):
        net = _load(model)
    assert re.search(r"loaded the 135 backbone tensors \('pretrain_weights' 'IMAGENET' \(.*mobilenetv1_1.0.pdparams\) "
                     r"holds a MobileNetV1\); the head \(\d+ tensors\) starts from scratch", caplog.text)
    np.testing.assert_array_equal(net.yolo_output[0].weight.numpy(), head)
    x = paddle.rand([1, 3, 64, 64])
    with paddle.no_grad():
        expected, y = [], ref.conv1(x)
        for i, block in enumerate(ref.dwsl, 1):
            y = block(y)
            if i in (5, 11, 13):
                expected.append(y.numpy())
        for ours, theirs in zip(net.backbone(x), expected[::-1]):
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5, rtol=0)


def _tiny_imagenet(root, classes, images=4):
    os.makedirs(root / "val")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(images):
        cv2.imwrite(str(root / "val" / f"{i}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        lines.append(f"val/{i}.png 0")
    (root / "val_list.txt").write_text("\n".join(lines) + "\n")
    (root / "labels.txt").write_text("".join(f"n{i:08d}\n" for i in range(classes)))
    return root


def test_build_default_skip_train_measures_the_published_weights(tmp_path):
    from paddleprune.cli import main
    from paddleprune.datasets import ImageNet
    from paddleprune.pipeline.tasks import get_task
    from paddleprune.prune import load_sensitivities
    ref, path = publish("MobileNetV1")
    data = _tiny_imagenet(tmp_path / "data", 1000)
    spec = get_task("classification").with_model("MobileNetV1", None, 32)
    ds = ImageNet(str(data), str(data / "val_list.txt"), str(data / "labels.txt"), transforms=spec.transforms("eval"))
    with paddle.no_grad():      # label each image with the class the weights predict: baseline acc1 = 1
        preds = ref(paddle.to_tensor(np.stack([ds[i][0] for i in range(len(ds))]))).numpy().argmax(1)
    (data / "val_list.txt").write_text("".join(f"val/{i}.png {p}\n" for i, p in enumerate(preds)))
    builtin = tmp_path / "builtin"
    builtin.mkdir()
    argv = ["build-default", "--data", str(data), "--save-dir", str(tmp_path / "work"), "--builtin-dir", str(builtin),
            "--model", "MobileNetV1", "--input-size", "32", "--pretrain-weights", "IMAGENET", "--skip-train",
            "--quick"]
    assert main(argv) == 0
    entry = json.loads((builtin / "manifest.json").read_text())["files"]["MobileNetV1"]
    url, md5 = _url("MobileNetV1")
    with open(path, "rb") as f:
        file_md5 = hashlib.md5(f.read()).hexdigest()
    assert entry["weights"] == (f"ImageNet weights from {url} (md5 {file_md5}), not retrained "
                                f"(the published md5 is {md5})")
    assert entry["baseline"] == 1.0 and entry["metric"] == "acc1"
    assert entry["input_shape"] == [1, 3, 32, 32] and entry["model_params"] == {"scale": 1.0, "small_input": False}
    assert entry["dataset"] == f"{data}: sensitivities on 4 validation images (no training)"
    assert len(load_sensitivities(str(builtin / "MobileNetV1.json"))) >= 10      # one entry per prunable group


def test_build_default_skip_train_refuses_a_data_set_without_1000_classes(tmp_path):
    from paddleprune.pipeline.default import build_default
    data = _tiny_imagenet(tmp_path / "data", 10)
    with pytest.raises(InvalidParameterError, match=r"the data set has 10 classes, the ImageNet head 1000; untrained, "
                                                    r"a fresh head makes the metric meaningless\. PaddleX computed"):
        build_default(data_dir=str(data), save_dir=str(tmp_path / "work"), builtin_dir=str(tmp_path),
                      model="MobileNetV1", pretrain_weights="IMAGENET", skip_train=True)
    with pytest.raises(InvalidParameterError, match="skip_train=True measures Paddle's published ImageNet weights"):
        build_default(data_dir=str(data), save_dir=str(tmp_path / "work"), skip_train=True)


def test_train_starts_from_imagenet_weights(tmp_path, caplog):
    from paddleprune.cls import transforms as T
    from paddleprune.datasets import ImageNet
    _, path = publish("MobileNetV1")
    data = _tiny_imagenet(tmp_path / "data", 10)
    ds = ImageNet(str(data), str(data / "val_list.txt"), str(data / "labels.txt"),
                  transforms=T.Compose([T.Resize(target_size=32), T.Normalize()]))
    model = cls.MobileNetV1(num_classes=10)
    with caplog.at_level(logging.INFO):
        model.train(1, ds, train_batch_size=2, save_dir=str(tmp_path / "out"), pretrain_weights="IMAGENET",
                    learning_rate=1e-9)
    assert "loaded the ImageNet MobileNetV1 weights" in caplog.text and "classifier head" in caplog.text
    published = paddle.load(path)["conv2_1._pointwise_conv.0.weight"].numpy()
    trained = model.net.state_dict()["features.1.1.0.weight"].numpy()   # one step at lr 1e-9 (plus BN) moves it little
    np.testing.assert_allclose(trained, published, atol=1e-3, rtol=0)
    assert np.abs(published).mean() > 0.05                                # so atol 1e-3 is a tight check
