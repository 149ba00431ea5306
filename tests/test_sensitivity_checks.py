"""Sensitivities files checked when used: made-for metadata compared, mostly-unknown names refused."""
import json
import logging
import pickle
import warnings

import pytest

from paddleprune import cls
from paddleprune.errors import InvalidParameterError
from paddleprune.prune import L1NormFilterPruner, save_sensitivities
from paddleprune.tasks.pruning import prune_by_sensitivities, resolve_sensitivities_file
from task_data import dataset, write_subsets

SHAPE = [1, 3, 32, 32]
MADE_FOR = {"model": "MobileNetV2", "model_params": {"scale": 0.25, "small_input": True},
            "input_shape": SHAPE, "num_classes": 10}
LOGGER = "paddleprune.tasks.pruning"


def _mbv2(scale=0.25):
    return cls.MobileNetV2(num_classes=10, scale=scale, small_input=True)


@pytest.fixture(scope="module")
def names():
    """The prunable layer groups of MobileNetV2 x0.25 (the same names at x0.5)."""
    return [g.root for g in L1NormFilterPruner(_mbv2().build_net(), SHAPE).prunable_groups()]


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    return write_subsets(str(tmp_path_factory.mktemp("lists")), n_train=32, n_val=8, n_sens=8)


def _table(names):
    return {n: {0.3: 0.01, 0.6: 0.05} for n in names}


def _write(path, names, **made_for):
    meta = {"metric": "acc1", "baseline": 0.5, "criterion": "l1_norm", **made_for}
    return save_sensitivities(path, _table(names), meta)


def _train(model, lists, tmp_path, sen_file):
    model.train(1, dataset(lists, "train"), train_batch_size=32, save_dir=str(tmp_path / "out"),
                sensitivities_file=sen_file, eval_metric_loss=0.03)


def test_file_for_other_scale_warns_in_train(lists, names, tmp_path):
    sen_file = _write(tmp_path / "x025.json", names, **MADE_FOR)
    model = _mbv2(scale=0.5)
    with pytest.warns(UserWarning, match=r"x025.json was computed for another configuration: scale=0.5 "
                                         r"\(file: 0.25\); the per-layer ratios may not suit this model"):
        _train(model, lists, tmp_path, sen_file)
    assert model.status == "Prune" and model.prune_info["records"]


def test_legacy_pickle_gives_no_false_warning(lists, names, tmp_path, caplog):
    sen_file = tmp_path / "legacy.data"
    sen_file.write_bytes(pickle.dumps(_table(names)))
    model = _mbv2()
    with caplog.at_level(logging.INFO, logger=LOGGER), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _train(model, lists, tmp_path, str(sen_file))
    assert "legacy.data records neither the model nor its parameters" in caplog.text
    assert "another configuration" not in caplog.text + " ".join(str(w.message) for w in seen)
    assert model.status == "Prune"


@pytest.mark.parametrize("made_for, current, expected", [
    ({"input_shape": [1, 3, 64, 64]}, {}, "input shape [3, 32, 32] (file: [3, 64, 64])"),
    ({"num_classes": 5}, {}, "num_classes=10 (file: 5)"),
    ({"model": "ResNet18"}, {}, "model MobileNetV2 (file: ResNet18)"),
    ({}, {"model_params": {"scale": 1.0, "small_input": False}, "input_shape": [8, 3, 224, 224],
          "num_classes": 100},
     "scale=1.0 (file: 0.25), small_input=False (file: True), input shape [3, 224, 224] (file: [3, 32, 32]), "
     "num_classes=100 (file: 10)"),
])
def test_each_difference_is_named(names, tmp_path, caplog, made_for, current, expected):
    sen_file = _write(tmp_path / "s.json", names, **dict(MADE_FOR, **made_for))
    now = dict(model_params={"scale": 0.25, "small_input": True}, input_shape=SHAPE, num_classes=10,
               net_class="MobileNetV2")
    now.update(current)
    with caplog.at_level(logging.WARNING, logger=LOGGER), \
            pytest.warns(UserWarning, match="computed for another configuration") as seen:
        assert resolve_sensitivities_file("M.train", sen_file, "MobileNetV2", **now) == sen_file
    assert f"s.json was computed for another configuration: {expected}; the per-layer" in str(seen[0].message)
    assert expected in caplog.text


def test_matching_or_unrecorded_metadata_gives_no_warning(names, tmp_path, caplog):
    full = _write(tmp_path / "full.json", names, **MADE_FOR)
    bare = _write(tmp_path / "bare.json", names)          # records no model: nothing to compare
    with caplog.at_level(logging.INFO, logger=LOGGER), warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in (full, bare):
            resolve_sensitivities_file("M.train", path, "MobileNetV2", model_params=MADE_FOR["model_params"],
                                       input_shape=[4, 3, 32, 32], num_classes=10, net_class="MobileNetV2")
    assert "another configuration" not in caplog.text
    assert "bare.json records neither the model" in caplog.text and "full.json records" not in caplog.text


def test_default_merges_manifest_entry_with_file_metadata(names, tmp_path):
    _write(tmp_path / "mbv2.json", names, model="MobileNetV2", num_classes=5,
           model_params={"scale": 0.5, "small_input": True})
    entry = {"file": "mbv2.json", "model_params": {"scale": 0.75}, "input_shape": [1, 3, 64, 64]}
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {"MobileNetV2": entry}}))
    with pytest.warns(UserWarning) as seen:
        resolve_sensitivities_file("M.train", "DEFAULT", "MobileNetV2", builtin_dir=str(tmp_path),
                                   model_params={"scale": 0.25, "small_input": False}, input_shape=SHAPE,
                                   num_classes=10, net_class="MobileNetV2")
    messages = [str(w.message) for w in seen if "another configuration" in str(w.message)]
    assert messages == ["M.train: the DEFAULT sensitivities file for 'MobileNetV2' (mbv2.json) was computed "
                        "for another configuration: scale=0.25 (file: 0.75), small_input=False (file: True), "
                        "input shape [3, 32, 32] (file: [3, 64, 64]), num_classes=10 (file: 5); the per-layer "
                        "ratios may not suit this model"]


def test_mostly_unknown_names_are_refused(names, tmp_path):
    fake = [f"backbone.stage{i}.conv.weight" for i in range(len(names) // 2 + 1)]
    sen_file = _write(tmp_path / "other.json", names[:len(names) // 2] + fake)
    total = len(names) // 2 + len(fake)
    with pytest.raises(InvalidParameterError, match=(
            rf"t: {len(fake)} of the {total} parameter names in .*other.json are not parameters of this "
            r"MobileNetV2 \(e.g. \['backbone.stage0.conv.weight', .*\]\); the file was likely made for another "
            r"model or configuration")):
        prune_by_sensitivities("t", _mbv2().build_net(), SHAPE, sen_file, 0.03)


@pytest.mark.parametrize("half", [False, True])     # a few, or exactly half (not more)
def test_some_unknown_names_are_skipped(names, tmp_path, half):
    n_fake = len(names) // 2 if half else 2
    fake = [f"head.extra{i}.weight" for i in range(n_fake)]
    sen_file = _write(tmp_path / "few.json", names[:len(names) - n_fake] + fake)
    with pytest.warns(UserWarning, match=rf"t: {n_fake} of {len(names)} layers in .*few.json were skipped \(unknown to "
                                         r"the model or unprunable\): head.extra0.weight"):
        result = prune_by_sensitivities("t", _mbv2().build_net(), SHAPE, sen_file, 0.03)
    assert result["records"] and result["flops_after"] < result["flops_before"]


def test_cal_params_sensitivities_records_what_it_was_made_for(lists, tmp_path):
    from paddleprune import slim
    from paddleprune.prune import load_sensitivities
    model = _mbv2()
    model.train(3, dataset(lists, "train"), train_batch_size=8, save_dir=str(tmp_path / "base"))
    sen_file = str(tmp_path / "made.json")
    # scored on its own 32 training images: a baseline above 0 after 3 short epochs
    slim.cal_params_sensitivities(model, sen_file, dataset(lists, "train"), batch_size=8, ratios=[0.5])
    _, meta = load_sensitivities(sen_file, return_meta=True)
    assert meta["model_params"] == {"scale": 0.25, "small_input": True}
    assert meta["input_shape"] == SHAPE and meta["num_classes"] == 10 and meta["model"] == "MobileNetV2"
    with pytest.warns(UserWarning, match=r"made.json was computed for another configuration: scale=0.5 \(file: 0.25\)"):
        resolve_sensitivities_file("M.train", sen_file, "MobileNetV2", model_params={"scale": 0.5, "small_input": True},
                                   input_shape=SHAPE, num_classes=10, net_class="MobileNetV2")
