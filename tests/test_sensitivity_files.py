"""Sensitivities files: JSON round trip, atomic writes, legacy pickles, safety, merging."""
import importlib
import json
import os
import pickle
import struct

import numpy as np
import pytest

from paddleprune.errors import DataNotFoundError, InvalidParameterError, SensitivityFileError
from paddleprune.prune.sensitivity_files import (FORMAT, VERSION, check_compatible, load_sensitivities,
                                                 merge_sensitive, save_sensitivities)
from paddleprune.prune.sensitivity_table import canonical_ratio, normalize_sensitivities, ratio_to_str

NOISY = [float(r) for r in np.arange(0.1, 1, 0.1)]  # 0.30000000000000004, 0.7000000000000001, ...
CLEAN = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
META = {"metric": "acc1", "baseline": 0.71, "criterion": "l1_norm", "model": "MobileNetV2",
        "ratios": NOISY}


def table(names=("conv1.weight", "features.0.conv.weight"), ratios=NOISY):
    return {name: {np.float64(r): 0.01 * (i + 1) * r for r in ratios} for i, name in enumerate(names)}


def test_module_all_entries_exist():
    for mod in ("paddleprune.prune.sensitivity_files", "paddleprune.prune.sensitivity_table",
                "paddleprune.prune.ratios", "paddleprune.slim", "paddleprune.utils.safe_pickle"):
        module = importlib.import_module(mod)
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert module.__all__ and missing == [], mod


def test_ratio_keys_are_canonical():
    assert NOISY[2] != 0.3 and canonical_ratio(NOISY[2]) == 0.3
    assert [ratio_to_str(r) for r in (NOISY[2], NOISY[6], 0.125, 1e-6, 0.5)] == \
        ["0.3", "0.7", "0.125", "0.000001", "0.5"]


def test_json_round_trip_with_metadata(tmp_path):
    path = tmp_path / "sens.json"
    assert save_sensitivities(path, table(), dict(META, dataset="flowers")) == str(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["version"] == VERSION
    assert list(doc["sensitivities"]["conv1.weight"]) == [ratio_to_str(r) for r in CLEAN]
    assert doc["meta"]["ratios"] == CLEAN and doc["meta"]["dataset"] == "flowers"

    sens, meta = load_sensitivities(path, return_meta=True)
    assert list(sens) == ["conv1.weight", "features.0.conv.weight"]
    assert list(sens["conv1.weight"]) == CLEAN
    assert sens["features.0.conv.weight"][0.3] == pytest.approx(0.02 * NOISY[2])
    assert {k: meta[k] for k in ("metric", "baseline", "criterion", "model")} == \
        {"metric": "acc1", "baseline": 0.71, "criterion": "l1_norm", "model": "MobileNetV2"}
    assert load_sensitivities(path) == sens


def test_save_fills_missing_meta_keys(tmp_path):
    path = tmp_path / "sens.json"
    save_sensitivities(path, {"a.weight": {0.2: 0.1, 0.1: 0.0}})
    meta = json.loads(path.read_text())["meta"]
    assert meta == {"metric": None, "baseline": None, "criterion": None, "model": None, "ratios": [0.1, 0.2]}


def test_atomic_write_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sens.json"
    for loss in (0.1, 0.2):  # create, then replace
        save_sensitivities(path, {"a.weight": {0.5: loss}}, META)
    assert os.listdir(tmp_path) == ["sens.json"]
    assert load_sensitivities(path) == {"a.weight": {0.5: 0.2}}


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "sens.json"
    save_sensitivities(path, {"a.weight": {0.5: 0.1}}, META)
    before = path.read_bytes()

    def disk_full(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr("paddleprune.utils.atomic.os.replace", disk_full)
    with pytest.raises(OSError, match="disk full"):
        save_sensitivities(path, {"a.weight": {0.5: 0.9}}, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["sens.json"]


def test_invalid_table_is_not_written(tmp_path):
    path = tmp_path / "sens.json"
    with pytest.raises(InvalidParameterError,
                       match=r"save_sensitivities: ratio key '1.5' for 'conv1.weight' must be in \(0, 1\)"):
        save_sensitivities(path, {"conv1.weight": {1.5: 0.1}})
    with pytest.raises(InvalidParameterError, match=r"loss nan for 'conv1.weight' at ratio 0.1 must be a finite"):
        save_sensitivities(path, {"conv1.weight": {0.1: float("nan")}})
    with pytest.raises(InvalidParameterError, match="meta 'baseline' must be a finite number"):
        save_sensitivities(path, {"conv1.weight": {0.1: 0.0}}, {"baseline": "high"})
    assert not path.exists()


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_legacy_pickle_with_noisy_numpy_keys(tmp_path, protocol):
    path = tmp_path / "model.sensi.data"
    legacy = {"conv2d_1.w_0": {np.float64(r): np.float64(0.1 * r) for r in np.arange(0.1, 1, 0.1)},
              "conv2d_2.w_0": {0.30000000000000004: -0.01}}
    path.write_bytes(pickle.dumps(legacy, protocol=protocol))
    sens, meta = load_sensitivities(path, return_meta=True)
    assert list(sens["conv2d_1.w_0"]) == CLEAN
    assert all(type(k) is float and type(v) is float for k, v in sens["conv2d_1.w_0"].items())
    assert sens["conv2d_1.w_0"][0.7] == pytest.approx(0.07)
    assert sens["conv2d_2.w_0"] == {0.3: -0.01}
    assert meta == {"source_format": "pickle"}


def _python2_pickle(name_bytes, ratio, loss):
    """Bytes that cPickle.dump(obj, f, 2) writes on Python 2 with numpy 1.x (str name, np.float64 key)."""
    return (b"\x80\x02}q\x00U" + bytes([len(name_bytes)]) + name_bytes
            + b"q\x01}q\x02cnumpy.core.multiarray\nscalar\nq\x03cnumpy\ndtype\nq\x04U\x02f8q\x05K\x00K\x01"
            b"\x87q\x06Rq\x07(K\x03U\x01<q\x08NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\tbU\x08"
            + struct.pack("<d", ratio) + b"q\n\x86q\x0bRq\x0cG" + struct.pack(">d", loss) + b"ss.")


def test_python2_pickle_with_bytes_names(tmp_path):
    path = tmp_path / "mobilenetv2.sensitivities"
    path.write_bytes(_python2_pickle("conv1_权重".encode("utf-8"), 0.30000000000000004, 0.25))
    assert load_sensitivities(path) == {"conv1_权重": {0.3: 0.25}}


class _Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make, refused", [
    (lambda target: _Evil(open, (str(target), "w")), "io.open"),
    (lambda target: _Evil(os.system, (f"touch {target}",)), f"{os.system.__module__}.system"),
    (lambda target: _Evil(eval, (f"open({str(target)!r}, 'w')",)), "__builtin__.eval"),  # protocol 2 name
])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, make, refused):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.data"
    path.write_bytes(pickle.dumps({"conv1.weight": {0.1: make(target)}}, protocol=2))
    with pytest.raises(SensitivityFileError, match=rf"evil\.data: refused to unpickle global '{refused}'"):
        load_sensitivities(path)
    assert not target.exists()


def test_paddleslim_status_pickle_is_refused(tmp_path):
    # pickle.dumps(Status(...), protocol=2) as PaddleSlim's dygraph FilterPruner writes it
    status = (b"\x80\x02cpaddleslim.dygraph.prune.filter_pruner\nStatus\nq\x00)\x81q\x01}q\x02("
              b"X\x0b\x00\x00\x00sensitiviesq\x03}q\x04X\x06\x00\x00\x00is_ckpq\x05\x88ub.")
    path = tmp_path / "sen.pickle"
    path.write_bytes(status)
    with pytest.raises(SensitivityFileError, match=r"PaddleSlim Status object.*Recompute.*or convert"):
        load_sensitivities(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(DataNotFoundError, match=r"nope\.json: sensitivities file not found") as info:
        load_sensitivities(path)
    assert isinstance(info.value, FileNotFoundError)
    assert load_sensitivities(path, missing_ok=True) == {}
    assert load_sensitivities(path, return_meta=True, missing_ok=True) == ({}, {})


def test_truncated_json_names_line_and_column(tmp_path):
    path = tmp_path / "sens.json"
    save_sensitivities(path, table(), META)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(SensitivityFileError, match=r"sens\.json:\d+:\d+: invalid JSON .*truncated"):
        load_sensitivities(path)


def _write_doc(path, sensitivities, **top):
    doc = {"format": FORMAT, "version": VERSION, "meta": {}, "sensitivities": sensitivities}
    doc.update(top)
    path.write_text(json.dumps(doc, indent=2))


@pytest.mark.parametrize("sensitivities, top, message", [
    ({"conv1.weight": {"0.1": 0.0, "1.5": 0.2}}, {},
     r"sens\.json:\d+: ratio key '1\.5' for 'conv1\.weight' must be in \(0, 1\)"),
    ({"conv1.weight": {"0": 0.2}}, {}, r"ratio key '0' for 'conv1\.weight' must be in \(0, 1\)"),
    ({"conv1.weight": {"abc": 0.2}}, {}, r"ratio key 'abc' for 'conv1\.weight' is not a number"),
    ({"conv1.weight": {"0.1": "high"}}, {},
     r"loss 'high' for 'conv1\.weight' at ratio 0\.1 must be a finite number"),
    ({"conv1.weight": [0.1, 0.2]}, {}, r"entry for 'conv1\.weight' must be a dict of ratio -> loss; got list"),
    ({}, {"format": "something.else"}, r"'format' is 'something\.else', expected 'paddleprune\.sensitivities'"),
    ({}, {"version": 2}, r"format version 2 is not supported"),
])
def test_malformed_json_structure(tmp_path, sensitivities, top, message):
    path = tmp_path / "sens.json"
    _write_doc(path, sensitivities, **top)
    with pytest.raises(SensitivityFileError, match=message):
        load_sensitivities(path)


def test_structure_error_points_at_the_layer_line(tmp_path):
    path = tmp_path / "sens.json"
    _write_doc(path, {"a.weight": {"0.1": 0.0}, "conv1.weight": {"1.5": 0.2}})
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if '"conv1.weight"' in text)
    with pytest.raises(SensitivityFileError, match=rf"sens\.json:{line}: ratio key '1\.5'"):
        load_sensitivities(path)


@pytest.mark.parametrize("data, message", [
    (b"", r"the file is empty"),
    (pickle.dumps({"a": {0.1: 0.0}}, protocol=2)[:-9], r"not a readable pickle .*corrupt or truncated"),
    (b"\x00\x01garbage", r"not a readable pickle"),
    (pickle.dumps([0.1, 0.2], protocol=2), r"the pickle holds a list, expected a dict"),
])
def test_bad_pickles(tmp_path, data, message):
    path = tmp_path / "bad.data"
    path.write_bytes(data)
    with pytest.raises(SensitivityFileError, match=message):
        load_sensitivities(path)


def test_check_compatible_names_the_differing_field():
    meta = {"model": "ResNet18", "metric": "acc1", "ratios": [0.1, 0.2]}
    with pytest.raises(SensitivityFileError,
                       match=r"old\.json: made for a different setup: model is 'ResNet18' in the file but "
                             r"'MobileNetV2' now\. .*overwrite=True"):
        check_compatible(meta, {"model": "MobileNetV2", "metric": "acc1"}, "old.json")
    with pytest.raises(SensitivityFileError, match=r"ratios is \[0\.1, 0\.2\] in the file but \[0\.1, 0\.2, 0\.3\] now"):
        check_compatible(meta, {"ratios": NOISY[:3]}, "old.json")
    with pytest.raises(SensitivityFileError, match=r"metric is 'acc1' in the file but 'miou' now"):
        check_compatible(meta, {"metric": "miou"}, "old.json")
    diffs = check_compatible(meta, {"model": "MobileNetV2", "metric": "acc1"}, "old.json", overwrite=True)
    assert diffs == [("model", "ResNet18", "MobileNetV2")]


def test_check_compatible_accepts_matching_and_unrecorded_fields():
    meta = {"model": "MobileNetV2", "ratios": CLEAN, "baseline": 0.7}
    assert check_compatible(meta, {"model": "MobileNetV2", "ratios": NOISY, "baseline": 0.7 + 1e-9,
                                   "criterion": None}) == []
    assert check_compatible({"source_format": "pickle"}, {"model": "MobileNetV2", "metric": "acc1"}) == []


def test_merge_two_ratio_halves_equals_full_table(tmp_path):
    full = normalize_sensitivities(table(ratios=NOISY[:4]))
    low, high = tmp_path / "low.json", tmp_path / "high.json"
    save_sensitivities(low, {n: {r: full[n][r] for r in (0.1, 0.2)} for n in full}, dict(META, ratios=[0.1, 0.2]))
    save_sensitivities(high, {n: {r: full[n][r] for r in (0.3, 0.4)} for n in full}, dict(META, ratios=[0.3, 0.4]))
    assert merge_sensitive([low, str(high)]) == full
    assert merge_sensitive([]) == {}


def test_merge_later_entries_win_and_mixes_dicts_and_files(tmp_path):
    path = tmp_path / "a.json"
    save_sensitivities(path, {"a.weight": {0.1: 0.5, 0.2: 0.6}}, META)
    merged = merge_sensitive([path, {"a.weight": {NOISY[0]: 0.0}, "b.weight": {0.3: 0.1}}])
    assert merged == {"a.weight": {0.1: 0.0, 0.2: 0.6}, "b.weight": {0.3: 0.1}}


def test_merge_refuses_other_model_and_bad_arguments(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    save_sensitivities(a, {"x.weight": {0.1: 0.0}}, META)
    save_sensitivities(b, {"x.weight": {0.2: 0.0}}, dict(META, model="ResNet18"))
    with pytest.raises(SensitivityFileError, match=r"cannot merge .*b\.json into .*a\.json: .*model is 'ResNet18'"):
        merge_sensitive([a, b])
    assert merge_sensitive([a, b], check_meta=False) == {"x.weight": {0.1: 0.0, 0.2: 0.0}}
    with pytest.raises(InvalidParameterError, match="must be a list of dicts or paths; got str"):
        merge_sensitive(str(a))
    with pytest.raises(InvalidParameterError, match=r"merge_sensitive: item 0: ratio key '2' for 'x' must be in"):
        merge_sensitive([{"x": {2: 0.1}}])
