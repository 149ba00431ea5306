"""Task API end to end on a tiny demo subset: train, save, load, predict, prune, resume."""
import os
from collections import OrderedDict

import numpy as np
import paddle
import pytest
import yaml

import paddleprune
from paddleprune import cls
from paddleprune.errors import (DataFormatError, DataNotFoundError, InvalidParameterError, NotTrainedError,
                               SensitivityFileError)
from paddleprune.prune import count_params, dygraph_flops
from paddleprune.slim import cal_params_sensitivities
from task_data import dataset, write_subsets

SHAPE = [1, 3, 32, 32]
MODEL = dict(num_classes=10, scale=0.25)


def _yml(folder):
    with open(os.path.join(folder, "model.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _batch(lists, n=8):
    ds = dataset(lists, "val")
    return paddle.to_tensor(np.stack([ds[i][0] for i in range(n)]))


def _outputs(net, x):
    net.eval()
    with paddle.no_grad():
        return net(x).numpy()


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    return write_subsets(str(tmp_path_factory.mktemp("lists")))


@pytest.fixture(scope="module")
def trained(lists, tmp_path_factory):
    np.random.seed(0)
    paddle.seed(0)
    save_dir = str(tmp_path_factory.mktemp("stage1"))
    model = cls.MobileNetV2(**MODEL)
    model.train(2, dataset(lists, "train"), train_batch_size=32, eval_dataset=dataset(lists, "val"),
                save_dir=save_dir, log_interval_steps=1, learning_rate=0.05, use_vdl=True)
    return model, save_dir


@pytest.fixture(scope="module")
def pruned(lists, trained, tmp_path_factory):
    _, stage1 = trained
    folder = str(tmp_path_factory.mktemp("stage3"))
    sen_file = os.path.join(folder, "mbv2.sensi.json")
    base = paddleprune.load_model(os.path.join(stage1, "best_model"))
    sens = cal_params_sensitivities(base, sen_file, dataset(lists, "sens"), batch_size=16, ratios=[0.3, 0.6])
    model = cls.MobileNetV2(**MODEL)
    save_dir = os.path.join(folder, "out")
    model.train(1, dataset(lists, "train"), train_batch_size=32, eval_dataset=dataset(lists, "val"),
                save_dir=save_dir, pretrain_weights=os.path.join(stage1, "best_model"),
                sensitivities_file=sen_file, eval_metric_loss=0.9)
    return model, save_dir, sen_file, sens


def test_train_saves_epochs_best_model_and_yml(trained):
    model, save_dir = trained
    assert model.completed_epochs == 2 and model.status == "Normal"
    assert sorted(os.listdir(save_dir)) == ["best_model", "epoch_1", "epoch_2", "vdl_log"]  # no temp dirs left
    for name in ("best_model", "epoch_1", "epoch_2"):
        assert sorted(os.listdir(os.path.join(save_dir, name))) == ["model.pdopt", "model.pdparams", "model.yml"]
    accs = {}
    for epoch in (1, 2):
        info = _yml(os.path.join(save_dir, f"epoch_{epoch}"))
        assert info["Model"] == "MobileNetV2" and info["version"] == paddleprune.__version__
        assert info["_init_params"] == {"num_classes": 10, "scale": 0.25, "small_input": False}
        attrs = info["_Attributes"]
        assert attrs["num_classes"] == 10 and attrs["labels"][:3] == ["zero", "one", "two"]
        assert attrs["input_shape"] == SHAPE and attrs["model_type"] == "classifier"
        assert list(attrs["eval_metrics"]) == ["acc1", "acc5"]
        assert 0.0 <= attrs["eval_metrics"]["acc1"] <= attrs["eval_metrics"]["acc5"] <= 1.0
        assert info["completed_epochs"] == epoch and info["status"] == "Normal" and "prune" not in info
        assert info["Transforms"] == [{"Normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}]
        assert list(info["TrainTransforms"][0]) == ["RandomCrop"]
        accs[epoch] = attrs["eval_metrics"]["acc1"]
    best = _yml(os.path.join(save_dir, "best_model"))
    assert best["_Attributes"]["eval_metrics"]["acc1"] == max(accs.values())
    assert model.eval_metrics["acc1"] == accs[2]


def test_evaluate_returns_ordered_metrics_and_details(lists, trained):
    model, _ = trained
    metrics = model.evaluate(dataset(lists, "val"), batch_size=8)
    assert isinstance(metrics, OrderedDict) and list(metrics) == ["acc1", "acc5"]
    assert metrics["acc1"] == pytest.approx(model.eval_metrics["acc1"])
    metrics2, details = model.evaluate(dataset(lists, "val"), batch_size=16, return_details=True)
    assert metrics2 == metrics
    assert len(details["true_labels"]) == len(details["pred_scores"]) == 32
    assert np.allclose(np.sum(details["pred_scores"], axis=1), 1.0, atol=1e-5)


def test_predict_format(lists, trained):
    model, _ = trained
    ds = dataset(lists, "val")
    path = ds.file_list[0][0]
    result = model.predict(path, topk=3)
    assert [sorted(r) for r in result] == [["category", "category_id", "score"]] * 3
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert all(r["category"] == model.labels[r["category_id"]] for r in result)
    from paddleprune.datasets.imagenet import read_image
    assert model.predict(read_image(path), topk=3) == result
    both = model.predict([path, path])
    assert len(both) == 2 and both[0] == result[:1]
    with pytest.raises(InvalidParameterError, match=r"'topk' must be at most num_classes \(10\); got 11"):
        model.predict(path, topk=11)
    with pytest.raises(InvalidParameterError, match="'topk' must be an int >= 1; got 0"):
        model.predict(path, topk=0)
    with pytest.raises(InvalidParameterError, match="an image must be a file path or an H x W x 3 RGB array"):
        model.predict(np.zeros((4, 4)))
    with pytest.raises(DataNotFoundError, match="image file not found"):
        model.predict(path + ".missing")


def test_load_model_gives_identical_outputs(lists, trained):
    model, save_dir = trained
    x = _batch(lists)
    loaded = paddleprune.load_model(os.path.join(save_dir, "epoch_2"))
    assert isinstance(loaded, cls.MobileNetV2) and loaded.get_params() == model.get_params()
    assert loaded.status == "Normal" and loaded.completed_epochs == 2 and loaded.labels == model.labels
    np.testing.assert_allclose(_outputs(loaded.net, x), _outputs(model.net, x), rtol=1e-5, atol=1e-6)
    path = dataset(lists, "val").file_list[3][0]
    assert loaded.predict(path, topk=2) == model.predict(path, topk=2)


def test_load_model_checks_every_tensor(trained, tmp_path):
    _, save_dir = trained
    with pytest.raises(DataNotFoundError, match="model folder not found"):
        paddleprune.load_model(tmp_path / "nope")
    bad = tmp_path / "bad"
    os.makedirs(bad)
    with pytest.raises(DataNotFoundError, match="holds no model.pdparams"):
        paddleprune.load_model(bad)
    src = os.path.join(save_dir, "epoch_1")
    state = paddle.load(os.path.join(src, "model.pdparams"))
    state["fc.weight"] = paddle.zeros([state["fc.weight"].shape[0], 5])
    del state["fc.bias"]
    paddle.save(state, str(bad / "model.pdparams"))
    with open(os.path.join(src, "model.yml"), encoding="utf-8") as f:
        (bad / "model.yml").write_text(f.read())
    with pytest.raises(DataFormatError, match=r"fc.weight has shape \[1280, 5\] in the file but \[1280, 10\].*"
                                              r"missing from the file: \['fc.bias'\]"):
        paddleprune.load_model(bad)
    (bad / "model.yml").write_text("Model: [unclosed\n")
    with pytest.raises(DataFormatError, match="not valid YAML"):
        paddleprune.load_model(bad)


def test_unloaded_model_refuses_to_evaluate(lists):
    with pytest.raises(NotTrainedError, match="no network yet"):
        cls.MobileNetV2(**MODEL).evaluate(dataset(lists, "val"))


def test_sensitivities_file_is_resumable_and_refuses_pruned_models(lists, pruned, trained, tmp_path):
    model, _, sen_file, sens = pruned
    assert len(sens) > 10 and all(sorted(points) == [0.3, 0.6] for points in sens.values())
    base = paddleprune.load_model(os.path.join(trained[1], "best_model"))
    again = cal_params_sensitivities(base, sen_file, dataset(lists, "sens"), batch_size=16, ratios=[0.3, 0.6])
    assert again == sens  # everything was in the file: nothing recomputed
    other_ratios = tmp_path / "copy.sensi.json"
    other_ratios.write_bytes(open(sen_file, "rb").read())
    with pytest.raises(SensitivityFileError, match="ratios"):
        cal_params_sensitivities(base, other_ratios, dataset(lists, "sens"), batch_size=16, ratios=[0.5])
    fresh = cal_params_sensitivities(base, other_ratios, dataset(lists, "sens"), batch_size=16, ratios=[0.5],
                                     overwrite=True)
    assert set(fresh) == set(sens) and all(list(points) == [0.5] for points in fresh.values())
    with pytest.raises(InvalidParameterError, match="status is 'Prune'; sensitivities can only be computed"):
        cal_params_sensitivities(model, sen_file, dataset(lists, "sens"))
    with pytest.raises(InvalidParameterError, match="'model' must be a trained model"):
        cal_params_sensitivities(cls.MobileNetV2(**MODEL), sen_file, dataset(lists, "sens"))


def test_pruned_train_removes_flops_and_round_trips(lists, pruned):
    model, save_dir, sen_file, _ = pruned
    info = _yml(os.path.join(save_dir, "best_model"))
    assert model.status == info["status"] == "Prune"
    prune = info["prune"]
    assert prune["input_shape"] == SHAPE and prune["records"] and prune["eval_metric_loss"] == 0.9
    assert prune["sensitivities_file"] == os.path.abspath(sen_file)
    assert prune["flops_after"] == dygraph_flops(model.net, SHAPE) < 0.9 * prune["flops_before"]
    assert count_params(model.net) < 0.9 * count_params(cls.MobileNetV2(**MODEL).build_net())
    x = _batch(lists)
    loaded = paddleprune.load_model(os.path.join(save_dir, "best_model"))
    assert loaded.status == "Prune"
    np.testing.assert_allclose(_outputs(loaded.net, x), _outputs(model.net, x), rtol=1e-5, atol=1e-6)


def test_pruned_dir_as_pretrain_and_resume(lists, pruned, tmp_path):
    model, save_dir, sen_file, _ = pruned
    shapes = {k: list(v.shape) for k, v in model.net.state_dict().items()}
    again = cls.MobileNetV2(**MODEL)
    again.train(2, dataset(lists, "train"), train_batch_size=32, save_dir=save_dir,
                resume_checkpoint=os.path.join(save_dir, "epoch_1"))
    assert again.completed_epochs == 2 and again.status == "Prune"
    assert {k: list(v.shape) for k, v in again.net.state_dict().items()} == shapes
    assert _yml(os.path.join(save_dir, "epoch_2"))["completed_epochs"] == 2
    # a pruned folder as pretrain_weights: its record is replayed first, then it is pruned further
    follow = cls.MobileNetV2(**MODEL)
    follow.train(1, dataset(lists, "train"), train_batch_size=48, save_dir=str(tmp_path),
                 pretrain_weights=os.path.join(save_dir, "epoch_2"), learning_rate=1e-9,
                 sensitivities_file=sen_file, eval_metric_loss=0.3)
    records = follow.prune_info["records"]
    assert follow.status == "Prune" and records[:len(again.prune_info["records"])] == again.prune_info["records"]
    assert len(records) > len(again.prune_info["records"])
    assert count_params(follow.net) < count_params(again.net)
    reloaded = paddleprune.load_model(tmp_path / "epoch_1")
    assert ({k: list(v.shape) for k, v in reloaded.net.state_dict().items()}
            == {k: list(v.shape) for k, v in follow.net.state_dict().items()})


def _train_weights(model):
    return {k: v.numpy() for k, v in model.net.state_dict().items()}


def test_killed_training_resumes_exactly(lists, tmp_path):
    args = dict(train_batch_size=32, learning_rate=0.05, warmup_steps=2, lr_decay_epochs=[2])
    np.random.seed(7)
    paddle.seed(7)
    full = cls.MobileNetV2(**MODEL)
    full.train(2, dataset(lists, "train"), save_dir=str(tmp_path / "full"), **args)
    np.random.seed(7)
    paddle.seed(7)
    killed = cls.MobileNetV2(**MODEL)
    calls = {"n": 0}
    real = killed.compute_loss

    def dying(outputs, labels):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, step 2
            raise KeyboardInterrupt
        return real(outputs, labels)

    killed.compute_loss = dying
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        killed.train(2, dataset(lists, "train"), save_dir=str(out), **args)
    assert sorted(os.listdir(out)) == ["epoch_1"]
    state = paddle.load(str(out / "epoch_1" / "model.pdopt"), return_numpy=True)
    velocity = state["accumulators"]["velocity"]
    assert state["global_step"] == 3 and np.abs(velocity["features.0.0.weight"]).sum() > 0

    resumed = cls.MobileNetV2(**MODEL)
    resumed.train(2, dataset(lists, "train"), save_dir=str(out), resume_checkpoint=str(out / "epoch_1"), **args)
    assert resumed.completed_epochs == 2 and _yml(out / "epoch_2")["completed_epochs"] == 2
    ours, theirs = _train_weights(resumed), _train_weights(full)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, atol=1e-6, err_msg=name)
    a = paddle.load(str(out / "epoch_2" / "model.pdopt"), return_numpy=True)
    b = paddle.load(str(tmp_path / "full" / "epoch_2" / "model.pdopt"), return_numpy=True)
    assert a["global_step"] == b["global_step"] == 6 and a["lr_scheduler"] == b["lr_scheduler"]
    np.testing.assert_allclose(a["accumulators"]["velocity"]["fc.weight"],
                               b["accumulators"]["velocity"]["fc.weight"], rtol=1e-4, atol=1e-7)
    # nothing left to do
    done = cls.MobileNetV2(**MODEL)
    done.train(2, dataset(lists, "train"), save_dir=str(out), resume_checkpoint=str(out / "epoch_2"), **args)
    assert done.completed_epochs == 2


def test_vdl_log_has_paddlex_tags(trained):
    from visualdl import LogReader
    _, save_dir = trained
    logdir = os.path.join(save_dir, "vdl_log")
    reader = LogReader(logdir=logdir)
    files = [f for f in os.listdir(logdir) if "vdlrecords" in f]
    assert len(files) == 1
    reader = LogReader(file_path=os.path.join(logdir, files[0]))
    tags = reader.get_tags()["scalar"]
    train_tags = [f"Metrics/Training(Step): {k}" for k in ("loss", "acc1", "acc5", "lr")]
    eval_tags = [f"Metrics/Eval(Epoch): {k}" for k in ("acc1", "acc5")]
    assert sorted(tags) == sorted(train_tags + eval_tags)
    assert [r.id for r in reader.get_data("scalar", "Metrics/Training(Step): loss")] == [1, 2, 3, 4, 5, 6]
    evals = reader.get_data("scalar", "Metrics/Eval(Epoch): acc1")
    assert [r.id for r in evals] == [1, 2]
    assert evals[1].value == pytest.approx(_yml(os.path.join(save_dir, "epoch_2"))["_Attributes"]["eval_metrics"]["acc1"])
    assert {round(r.value, 6) for r in reader.get_data("scalar", "Metrics/Training(Step): lr")} == {0.05}


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    import json
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read().decode())


def test_visualdl_server_serves_the_scalars(trained):
    import subprocess
    import sys
    import time
    import urllib.parse
    _, save_dir = trained
    logdir = os.path.join(save_dir, "vdl_log")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/app/api"
    proc = subprocess.Popen([sys.executable, "-m", "visualdl.server.app", "--logdir", logdir, "--host", "127.0.0.1",
                             "--port", str(port), "--language", "en", "--disable-telemetry"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, runs = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            assert proc.poll() is None, "visualdl exited early"
            try:
                runs = _get_json(f"{base}/runs")["data"]
                if runs:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert runs == [logdir]
        tags = _get_json(f"{base}/scalar/tags")["data"]
        assert tags["runs"] == [logdir] and "Metrics/Eval(Epoch): acc1" in tags["tags"][0]
        assert "Metrics/Training(Step): loss" in tags["tags"][0]
        query = urllib.parse.urlencode({"run": logdir, "tag": "Metrics/Eval(Epoch): acc1"})
        points = _get_json(f"{base}/scalar/list?{query}")["data"]
        assert [p[1] for p in points] == [1, 2] and all(0.0 <= p[2] <= 1.0 for p in points)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_visualize_paddlex_form(pruned, trained, tmp_path):
    import json
    from paddleprune.slim import visualize
    _, _, sen_file, _ = pruned
    base = paddleprune.load_model(os.path.join(trained[1], "best_model"))
    png = visualize(base, sen_file, save_dir=str(tmp_path))
    assert png == os.path.join(str(tmp_path), "sensitivities.png") and os.path.getsize(png) > 10_000
    xy = json.loads((tmp_path / "sensitivities_xy.json").read_text())
    assert xy["model"] == "MobileNetV2" and len(xy["pruned_flops"]) == 19
    assert 0.0 < xy["pruned_flops"][-1] < 1.0 and xy["pruned_flops"] == sorted(xy["pruned_flops"])
    with pytest.raises(InvalidParameterError, match="'model' must be a trained paddleprune model"):
        visualize(cls.MobileNetV2(**MODEL), sen_file, str(tmp_path))


def test_export_pruned_model(pruned, tmp_path):
    model, _, _, _ = pruned
    out = model.export_inference_model(str(tmp_path / "infer"), fixed_input_shape=[32, 32])
    assert sorted(os.listdir(out)) == ["model.json", "model.pdiparams", "model.yml"]
    info = _yml(out)
    assert info["status"] == "Infer" and "prune" not in info and info["_Attributes"]["fixed_input_shape"] == [32, 32]
    with pytest.raises(InvalidParameterError, match=r"'fixed_input_shape' must be \[width, height\]; got \[32\]"):
        model.export_inference_model(str(tmp_path / "x"), fixed_input_shape=[32])


def test_prune_round_to_keeps_multiples_of_eight(pruned, trained):
    from paddleprune.tasks.pruning import prune_by_sensitivities
    _, _, sen_file, _ = pruned
    widths = {}
    for round_to in (None, 8):
        net = paddleprune.load_model(os.path.join(trained[1], "best_model")).net
        before = {n: layer.weight.shape[0] for n, layer in net.named_sublayers() if isinstance(layer, paddle.nn.Conv2D)}
        result = prune_by_sensitivities("t", net, SHAPE, sen_file, 0.9, round_to=round_to)
        assert result["records"] and result["flops_after"] == dygraph_flops(net, SHAPE) < result["flops_before"]
        widths[round_to] = {n: layer.weight.shape[0] for n, layer in net.named_sublayers()
                            if isinstance(layer, paddle.nn.Conv2D) and layer.weight.shape[0] != before[n]}
    assert any(w % 8 for w in widths[None].values())        # without alignment, odd widths appear
    assert widths[8] and all(w % 8 == 0 for w in widths[8].values())
