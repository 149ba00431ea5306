"""Task API argument checks, optimizer rules, schedules, early stop, registry, DEFAULT files."""
import json
import logging
import os
import re
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import paddleprune
from paddleprune import cls
from paddleprune.errors import DataNotFoundError, InvalidParameterError
from paddleprune.metrics import topk_keys
from paddleprune.prune import save_sensitivities
from paddleprune.tasks import get_task_class, list_tasks, register_task
from paddleprune.tasks.early_stop import EarlyStop
from paddleprune.tasks.optim import WarmupPiecewiseDecay, default_optimizer, resolve_optimizer
from paddleprune.tasks.pruning import BUILTIN_DIR, resolve_sensitivities_file
from task_data import dataset, write_subsets

MODEL = dict(num_classes=10, scale=0.25)


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    return write_subsets(str(tmp_path_factory.mktemp("lists")), n_train=64, n_val=32)


@pytest.fixture(scope="module")
def saved(lists, tmp_path_factory):
    """An untrained MobileNetV2 x0.25 (10 classes) saved without optimizer state."""
    model = cls.MobileNetV2(**MODEL)
    model.net = model.build_net()
    model.labels = [str(i) for i in range(10)]
    model.input_shape = [1, 3, 32, 32]
    return model.save_model(str(tmp_path_factory.mktemp("saved") / "best_model"))


@pytest.mark.parametrize("kwargs, message", [
    ({"eval_metric_loss": 1.5}, r"MobileNetV2.train: 'eval_metric_loss' must be a number in \(0, 1\); got 1.5\."),
    ({"eval_metric_loss": 0}, r"MobileNetV2.train: 'eval_metric_loss' must be a number in \(0, 1\); got 0\."),
    ({"prune_round_to": 0}, r"MobileNetV2.train: 'prune_round_to' must be an int >= 1; got 0\."),
    ({"num_epochs": 0}, r"MobileNetV2.train: 'num_epochs' must be an int >= 1; got 0\."),
    ({"train_batch_size": 65}, r"'train_batch_size' must be at most the number of training samples \(64\)"),
    ({"learning_rate": -0.1}, r"'learning_rate' must be a number in \(0, inf\); got -0.1\."),
    ({"lr_decay_epochs": [3, 2]}, r"'lr_decay_epochs' must be a list of strictly increasing ints >= 1"),
    ({"use_vdl": "yes"}, r"'use_vdl' must be True or False; got 'yes'\."),
    ({"early_stop_patience": 0}, r"'early_stop_patience' must be an int >= 1; got 0\."),
    ({"sensitivities_file": 3}, r"'sensitivities_file' must be None or a path; got 3\."),
    ({"train_dataset": object()}, r"'train_dataset' must be a data set \(e.g. paddleprune.datasets.ImageNet\)"),
    ({"optimizer": 3}, r"'optimizer' must be None, a paddle.optimizer.Optimizer or a function"),
])
def test_bad_train_arguments(lists, tmp_path, kwargs, message):
    args = dict(num_epochs=1, train_dataset=dataset(lists, "train"), train_batch_size=32, save_dir=str(tmp_path))
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=message):
        cls.MobileNetV2(**MODEL).train(**args)
    assert not os.listdir(tmp_path)


def _train(model, lists, tmp_path, **kwargs):
    model.train(1, dataset(lists, "train"), train_batch_size=32, save_dir=str(tmp_path / "out"), **kwargs)


def test_pretrain_weights_errors(lists, saved, tmp_path):
    with pytest.raises(InvalidParameterError, match="Paddle publishes no ImageNet weights for MobileNetV2 with "
                                                    "scale=0.25. Supported: MobileNetV1 and MobileNetV2 with scale=1.0"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, pretrain_weights="IMAGENET")
    with pytest.raises(DataNotFoundError, match="'pretrain_weights' not found: .*missing_dir"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, pretrain_weights=str(tmp_path / "missing_dir"))
    with pytest.raises(InvalidParameterError, match=r"does not fit this MobileNetV2: fc.weight has shape \[1280, 10\] "
                                                    r"in the file but \[1280, 12\] in the model.*num_classes=10 vs 12"):
        _train(cls.MobileNetV2(num_classes=12, scale=0.25), lists, tmp_path, pretrain_weights=saved)
    with pytest.raises(InvalidParameterError, match="holds a MobileNetV2, not a ResNet18"):
        _train(cls.ResNet18(num_classes=10), lists, tmp_path, pretrain_weights=saved)
    with pytest.raises(InvalidParameterError, match="the training set has 10 classes but the model was made with "
                                                    r"num_classes=5; use MobileNetV2\(num_classes=10\)"):
        _train(cls.MobileNetV2(num_classes=5), lists, tmp_path)


def test_pretrain_from_a_pdparams_file(saved):
    from paddleprune.tasks.checkpoint import load_pretrain
    model = cls.MobileNetV2(**MODEL)
    net = model.build_net()
    assert load_pretrain(model, net, os.path.join(saved, "model.pdparams"), "T.train") is None
    ref = paddle.load(os.path.join(saved, "model.pdparams"))
    assert all(np.array_equal(v.numpy(), ref[k].numpy()) for k, v in net.state_dict().items())


def test_resume_and_sensitivities_file_errors(lists, saved, tmp_path):
    with pytest.raises(DataNotFoundError, match="holds no model.pdopt"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, resume_checkpoint=saved)
    with pytest.raises(InvalidParameterError, match=r"was made with \{'num_classes': 10, 'scale': 0.25"):
        _train(cls.MobileNetV2(num_classes=10, scale=0.5), lists, tmp_path, resume_checkpoint=saved)
    with pytest.raises(DataNotFoundError, match="'sensitivities_file' not found: .*nope.json"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, sensitivities_file=str(tmp_path / "nope.json"))
    with pytest.raises(InvalidParameterError, match="'sensitivities_file' must be a file, 'DEFAULT' or None; .* is a folder"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, sensitivities_file=str(tmp_path))
    with open(os.path.join(BUILTIN_DIR, "manifest.json"), encoding="utf-8") as f:
        bundled = sorted(json.load(f)["files"])
    assert "ShuffleNetV2" not in bundled and "MobileNetV2" in bundled
    with pytest.raises(InvalidParameterError, match=re.escape(
            f"sensitivities_file='DEFAULT' has no bundled file for 'ShuffleNetV2'; available: {bundled}")):
        resolve_sensitivities_file("ShuffleNetV2.train", "DEFAULT", "ShuffleNetV2")


def test_default_sensitivities_manifest(tmp_path, caplog):
    with open(os.path.join(BUILTIN_DIR, "manifest.json"), encoding="utf-8") as f:
        assert isinstance(json.load(f)["files"], dict)
    save_sensitivities(tmp_path / "mbv2.json", {"conv1.weight": {0.5: 0.1}})   # read for its metadata
    entry = {"file": "mbv2.json", "metric": "acc1", "dataset": "embedded demo digits (359 val images)",
             "weights": "demo stage-1", "date": "2026-11-23", "command": "paddleprune build-default"}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"MobileNetV2": entry}}))
    with caplog.at_level(logging.WARNING, logger="paddleprune.tasks.pruning"):
        path = resolve_sensitivities_file("M.train", "DEFAULT", "MobileNetV2", builtin_dir=str(tmp_path))
    assert path == str(tmp_path / "mbv2.json")
    assert "computed on embedded demo digits (359 val images)" in caplog.text
    with pytest.raises(InvalidParameterError, match=r"no bundled file for 'YOLOv3_MobileNetV1'; available: \['MobileNetV2'\]"):
        resolve_sensitivities_file("M.train", "DEFAULT", "YOLOv3_MobileNetV1", builtin_dir=str(tmp_path))
    assert cls.MobileNetV2().sensitivity_key() == "MobileNetV2"
    entry.update(model_params={"scale": 0.25, "small_input": True}, input_shape=[1, 3, 32, 32])
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"MobileNetV2": entry}}))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="paddleprune.tasks.pruning"):
        resolve_sensitivities_file("M.train", "DEFAULT", "MobileNetV2", builtin_dir=str(tmp_path),
                                   model_params={"scale": 1.0, "small_input": True}, input_shape=[1, 3, 224, 224])
    assert ("computed for another configuration: scale=1.0 (file: 0.25), input shape [3, 224, 224] "
            "(file: [3, 32, 32])") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="paddleprune.tasks.pruning"):
        resolve_sensitivities_file("M.train", "DEFAULT", "MobileNetV2", builtin_dir=str(tmp_path),
                                   model_params={"scale": 0.25, "small_input": True}, input_shape=[1, 3, 32, 32])
    assert "another configuration" not in caplog.text


def _tiny():
    return nn.Sequential(nn.Conv2D(3, 8, 3, padding=1), nn.BatchNorm2D(8), nn.ReLU(), nn.Conv2D(8, 4, 3))


def test_optimizer_rules():
    from paddleprune.prune import L1NormFilterPruner
    net, other = _tiny(), _tiny()
    stale = paddle.optimizer.Momentum(0.1, parameters=other.parameters())
    with pytest.raises(InvalidParameterError, match="'optimizer' was created on parameters that are not those"):
        resolve_optimizer("T.train", stale, net)
    early = paddle.optimizer.Momentum(0.1, parameters=net.parameters())
    net(paddle.rand([2, 3, 8, 8])).mean().backward()
    early.step()
    L1NormFilterPruner(net, [1, 3, 8, 8]).prune_vars({"0.weight": 0.5})
    with pytest.raises(InvalidParameterError, match=r"created before pruning: its state for 0.weight has shape "
                                                    r"\[8, 3, 3, 3\] but the parameter now has \[4, 3, 3, 3\]"):
        resolve_optimizer("T.train", early, net)
    with pytest.raises(InvalidParameterError, match="the 'optimizer' function must return a paddle.optimizer.Optimizer"):
        resolve_optimizer("T.train", lambda params: None, net)
    built = resolve_optimizer("T.train", lambda params: paddle.optimizer.Adam(parameters=params), net)
    assert isinstance(built, paddle.optimizer.Adam)
    assert {id(p) for p in built._parameter_list} == {id(p) for p in net.parameters() if not p.stop_gradient}
    assert resolve_optimizer("T.train", None, net) is None


def test_lr_schedule_and_default_optimizer():
    sched = WarmupPiecewiseDecay(0.1, [4, 8], 0.1, warmup_steps=2, warmup_start_lr=0.0)
    lrs = []
    for _ in range(10):
        lrs.append(sched())
        sched.step()
    assert np.allclose(lrs, [0.0, 0.05, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001])
    opt = default_optimizer("T.train", _tiny(), 0.025, 10, [3, 6], 0.1)
    assert isinstance(opt, paddle.optimizer.Momentum) and opt._momentum == 0.9
    assert opt._learning_rate.boundaries == [30, 60]
    with pytest.raises(InvalidParameterError, match=r"'warmup_steps' must be at most lr_decay_epochs\[0\] x steps "
                                                    r"per epoch \(3 x 10 = 30\); got 31"):
        default_optimizer("T.train", _tiny(), 0.025, 10, [3, 6], 0.1, warmup_steps=31)


def test_early_stop_rule():
    stop = EarlyStop(patience=2)
    assert [stop(s) for s in (0.5, 0.6, 0.60005, 0.59, 0.7, 0.7)] == [False, False, False, True, False, False]
    assert stop.best == 0.7 and stop.counter == 1


def test_early_stop_in_train_with_optimizer_function(lists, tmp_path):
    model = cls.MobileNetV2(**MODEL)
    model.evaluate = lambda ds, batch_size=1: OrderedDict(acc1=0.5, acc5=0.9)
    seen = []

    def sgd(params):
        seen.append(len(params))
        return paddle.optimizer.SGD(learning_rate=0.01, parameters=params)

    model.train(4, dataset(lists, "train"), train_batch_size=32, eval_dataset=dataset(lists, "val"),
                save_dir=str(tmp_path), optimizer=sgd, early_stop=True, early_stop_patience=1)
    assert sorted(os.listdir(tmp_path)) == ["best_model", "epoch_1", "epoch_2"]
    assert model.completed_epochs == 2 and seen == [len([p for p in model.net.parameters() if not p.stop_gradient])]
    state = paddle.load(str(tmp_path / "epoch_2" / "model.pdopt"), return_numpy=True)
    assert state["optimizer"] == "SGD" and state["global_step"] == 4


def test_optimizer_instance_of_other_network_is_refused(lists, tmp_path):
    other = cls.MobileNetV2(**MODEL).build_net()
    opt = paddle.optimizer.Momentum(0.1, parameters=other.parameters())
    with pytest.raises(InvalidParameterError, match="Pass a function instead"):
        _train(cls.MobileNetV2(**MODEL), lists, tmp_path, optimizer=opt)


def test_constructor_validation_and_params():
    with pytest.raises(InvalidParameterError, match=r"MobileNetV2: 'scale' must be a number in \(0, 4\]; got 0\."):
        cls.MobileNetV2(scale=0)
    with pytest.raises(InvalidParameterError, match="ResNet18: 'num_classes' must be an int >= 1; got 0."):
        cls.ResNet18(num_classes=0)
    assert cls.ResNet50(num_classes=3).get_params() == {"num_classes": 3, "small_input": False}
    assert cls.MobileNetV1().get_params() == {"num_classes": 1000, "scale": 1.0, "small_input": False}
    assert cls.MobileNetV2().net is None and cls.MobileNetV2().status == "Normal"


def slim_module():
    import paddleprune.slim
    return paddleprune.slim


def test_registry_and_exports():
    assert {"MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50"} <= set(list_tasks())
    assert get_task_class("ResNet18") is cls.ResNet18
    with pytest.raises(InvalidParameterError, match=r"unknown model class 'AlexNet'; known: \["):
        get_task_class("AlexNet")

    class MobileNetV2(cls.ResNet18):
        pass
    with pytest.raises(InvalidParameterError, match="a task named 'MobileNetV2' is already registered"):
        register_task(MobileNetV2)
    import paddleprune.metrics
    import paddleprune.tasks
    for module in (cls, paddleprune.tasks, paddleprune.metrics, slim_module()):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)
    assert cls.transforms.Normalize is not None
    assert paddleprune.load_model is paddleprune.tasks.load_model
    from paddleprune import slim
    assert slim.cal_params_sensitivities is slim.prune.cal_params_sensitivities
    assert callable(slim.prune.analysis) and callable(slim.visualize)
    assert topk_keys(10) == (1, 5) and topk_keys(3) == (1, 3) and topk_keys(1) == (1,)


def test_import_paddleprune_stays_light():
    code = "import sys, paddleprune; assert 'paddle' not in sys.modules; print(paddleprune.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == paddleprune.__version__
