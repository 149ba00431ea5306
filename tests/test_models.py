"""Network registry and definitions: build, forward, recorded arguments, errors."""
import paddle
import paddle.nn as nn
import pytest

import paddleprune.models as models
from paddleprune.errors import InvalidParameterError
from paddleprune.models import Net, get_model, list_models, register_model
from paddleprune.models import registry

EXPECTED = ["MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50"]
# the layer kinds the pruning engine is promised (plus containers)
ALLOWED = (nn.Conv2D, nn.BatchNorm2D, nn.ReLU, nn.ReLU6, nn.AdaptiveAvgPool2D, nn.MaxPool2D, nn.Linear,
           nn.Sequential)


def _count(net):
    return sum(int(p.size) for p in net.parameters())


def test_registered_names():
    assert list_models() == EXPECTED + ["UNet", "YOLOv3"]   # tested in test_unet.py and test_yolov3.py
    assert list_models("ResNet*") == ["ResNet18", "ResNet50"]
    assert list_models("*V2") == ["MobileNetV2"]
    assert list_models("resnet*") == []  # case-sensitive like the names


@pytest.mark.parametrize("small_input", [False, True])
@pytest.mark.parametrize("name", EXPECTED)
def test_build_and_forward(name, small_input):
    net = get_model(name, num_classes=7, small_input=small_input)
    assert isinstance(net, Net) and net.registered_name == name
    net.eval()
    with paddle.no_grad():
        out = net(paddle.rand([2, 3, 32, 32]))
    assert out.shape == [2, 7]
    for layer in net.sublayers():
        assert isinstance(layer, ALLOWED) or type(layer).__module__.startswith("paddleprune.models"), type(layer)


@pytest.mark.parametrize("name", EXPECTED)
def test_params_round_trip(name):
    net = get_model(name, num_classes=5, small_input=True)
    config = net.get_config()
    assert config["name"] == name and config["params"]["num_classes"] == 5
    again = get_model(config["name"], **config["params"])
    assert [(k, p.shape) for k, p in again.named_parameters()] == [(k, p.shape) for k, p in net.named_parameters()]


def test_small_input_changes_resolution_not_parameters():
    for name in ("MobileNetV1", "MobileNetV2"):
        assert _count(get_model(name, num_classes=10)) == _count(get_model(name, num_classes=10, small_input=True))
    big, small = get_model("ResNet18", num_classes=10), get_model("ResNet18", num_classes=10, small_input=True)
    assert big.maxpool is not None and small.maxpool is None
    assert big.conv1.weight.shape == [64, 3, 7, 7] and small.conv1.weight.shape == [64, 3, 3, 3]


@pytest.mark.parametrize("name", ["MobileNetV1", "MobileNetV2"])
def test_scale_changes_parameter_count(name):
    counts = [_count(get_model(name, num_classes=10, scale=s)) for s in (0.25, 0.5, 1.0, 1.5)]
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_structural_names():
    v2 = dict(get_model("MobileNetV2", num_classes=10).named_parameters())
    assert v2["features.0.0.weight"].shape == [32, 3, 3, 3]
    assert v2["features.1.conv.0.0.weight"].shape == [32, 1, 3, 3]  # depthwise
    assert v2["fc.weight"].shape == [1280, 10]
    r18 = dict(get_model("ResNet18", num_classes=10).named_parameters())
    assert r18["layer2.0.downsample.0.weight"].shape == [128, 64, 1, 1]
    r50 = dict(get_model("ResNet50", num_classes=10).named_parameters())
    assert r50["layer1.0.conv3.weight"].shape == [256, 64, 1, 1] and r50["fc.weight"].shape == [2048, 10]
    assert dict(get_model("MobileNetV1", num_classes=10, scale=0.5).named_parameters())["fc.weight"].shape == [512, 10]


def test_unknown_model():
    with pytest.raises(InvalidParameterError, match=r"get_model: unknown model 'MobileNetV3'; known models: "
                                                    r"\['MobileNetV1', 'MobileNetV2', 'ResNet18', 'ResNet50', 'UNet', 'YOLOv3'\]"):
        get_model("MobileNetV3", num_classes=10)


@pytest.mark.parametrize("name, kwargs, message", [
    ("MobileNetV2", {"num_classes": 0}, r"MobileNetV2: 'num_classes' must be an int >= 1; got 0"),
    ("MobileNetV1", {"num_classes": 10, "scale": 0}, r"MobileNetV1: 'scale' must be a number in \(0, 4\]; got 0"),
    ("ResNet18", {"num_classes": True}, r"ResNet18: 'num_classes' must be an int >= 1; got True"),
    ("ResNet50", {"num_classes": 10, "small_input": "yes"}, r"ResNet50: 'small_input' must be True or False"),
    ("ResNet18", {"num_classes": 10, "scale": 0.5}, r"get_model: bad arguments for ResNet18: .*'scale'"),
])
def test_bad_arguments(name, kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        get_model(name, **kwargs)


def test_duplicate_registration(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    with pytest.raises(InvalidParameterError, match=r"register_model: model 'ResNet18' is already registered "
                                                    r"\(by paddleprune.models.resnet.ResNet18\)"):
        register_model("ResNet18")(type("Other", (Net,), {}))
    with pytest.raises(InvalidParameterError, match=r"register_model: 'name' must be a non-empty str; got ''"):
        register_model("")

    @register_model("Tiny")
    class Tiny(Net):
        def __init__(self, num_classes=3):
            super().__init__()
            self.num_classes = num_classes
            self.fc = nn.Linear(4, num_classes)

    assert "Tiny" in list_models() and get_model("Tiny", num_classes=2).get_params() == {"num_classes": 2}


def test_all_exports():
    for name in models.__all__:
        assert hasattr(models, name), f"paddleprune.models.__all__ names missing {name!r}"
