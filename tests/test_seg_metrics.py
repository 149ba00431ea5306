"""Streaming segmentation metric: hand-computed confusion-matrix metrics (PaddleX 1.x semantics),
ignore_index, streaming, logits vs label maps, errors and speed."""
import time

import numpy as np
import paddle
import pytest

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics import SegMetric
from paddleprune.metrics.seg_metrics import KEYS

# One image 2 x 5. Rows = label, columns = prediction:
#   label 0 (4 px): predicted 0, 0, 0, 1   -> cm[0] = [3, 1]
#   label 1 (6 px): predicted 0, 0, 1 x 4  -> cm[1] = [2, 4]
LABEL = np.array([[[0, 0, 0, 0, 1], [1, 1, 1, 1, 1]]], dtype=np.int64)
PRED = np.array([[[0, 0, 0, 1, 0], [0, 1, 1, 1, 1]]], dtype=np.int64)


def _metric(pred=PRED, label=LABEL, **kwargs):
    m = SegMetric(kwargs.pop("num_classes", 2), **kwargs)
    m.update(pred, label)
    return m


def test_two_class_hand_computed():
    m = _metric()
    r = m.accumulate()
    assert list(r) == list(KEYS) == ["miou", "category_iou", "oacc", "category_acc", "kappa", "category_F1-score"]
    # tp = [3, 4], label_area = [4, 6], pred_area = [5, 5], total = 10
    # iou0 = 3 / (4 + 5 - 3) = 1/2 ; iou1 = 4 / (6 + 5 - 4) = 4/7 ; miou = (1/2 + 4/7) / 2 = 15/28
    assert r["category_iou"] == pytest.approx([0.5, 4 / 7], abs=1e-15)
    assert r["miou"] == pytest.approx(15 / 28, abs=1e-15)
    assert r["oacc"] == pytest.approx(0.7, abs=1e-15)                      # (3 + 4) / 10
    assert r["category_acc"] == pytest.approx([3 / 5, 4 / 5], abs=1e-15)   # precision tp / pred_area
    # po = 0.7, pe = (4*5 + 6*5) / 10**2 = 0.5 -> kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert r["kappa"] == pytest.approx(0.4, abs=1e-12)
    # F1 = 2 p r / (p + r) = 2 tp / (label_area + pred_area): 6/9 = 2/3 and 8/11
    assert r["category_F1-score"] == pytest.approx([2 / 3, 8 / 11], abs=1e-15)
    assert type(r["miou"]) is float and type(r["kappa"]) is float and type(r["oacc"]) is float
    assert all(type(v) is float for k in ("category_iou", "category_acc", "category_F1-score") for v in r[k])
    d = m.details()
    assert d["confusion_matrix"] == [[3, 1], [2, 4]] and d["class_names"] is None
    assert d["category_iou"] == r["category_iou"] and d["category_F1-score"] == r["category_F1-score"]


def test_absent_class_counts_as_zero_iou():
    # same pixels, 3 classes: class 2 neither labelled nor predicted -> IoU 0 (PaddleX), not skipped
    r = _metric(num_classes=3).accumulate()
    assert r["category_iou"] == pytest.approx([0.5, 4 / 7, 0.0], abs=1e-15)
    assert r["miou"] == pytest.approx((0.5 + 4 / 7) / 3, abs=1e-15)      # 5/14
    assert r["category_acc"][2] == 0.0 and r["category_F1-score"][2] == 0.0
    assert r["kappa"] == pytest.approx(0.4, abs=1e-12)


def test_perfect_prediction():
    r = _metric(pred=LABEL).accumulate()
    assert r["miou"] == 1.0 and r["oacc"] == 1.0 and r["kappa"] == 1.0
    assert r["category_iou"] == [1.0, 1.0] and r["category_acc"] == [1.0, 1.0]
    assert r["category_F1-score"] == [1.0, 1.0]
    # one class only, perfect: pe = po = 1 -> kappa 1.0 (PaddleX: 0/0); class 1 absent -> miou 1/2
    ones = np.zeros((2, 3, 3), np.int64)
    r = _metric(pred=ones, label=ones).accumulate()
    assert r["kappa"] == 1.0 and r["oacc"] == 1.0 and r["miou"] == 0.5


def test_empty_and_reset():
    m = SegMetric(2)
    r = m.accumulate()
    assert r["miou"] == 0.0 and r["oacc"] == 0.0 and r["kappa"] == 0.0 and r["category_iou"] == [0.0, 0.0]
    m.update(PRED, LABEL)
    m.reset()
    assert m.details()["confusion_matrix"] == [[0, 0], [0, 0]]


def test_all_wrong_kappa_negative():
    # label [0, 1], pred [1, 0]: po = 0, pe = (1*1 + 1*1) / 4 = 1/2 -> kappa = -1; every iou 0
    r = _metric(pred=np.array([[[1, 0]]]), label=np.array([[[0, 1]]])).accumulate()
    assert r["kappa"] == pytest.approx(-1.0, abs=1e-15) and r["miou"] == 0.0 and r["oacc"] == 0.0


def test_ignore_index_pixels_skipped():
    # append a column of ignored pixels with arbitrary (valid) predictions: nothing changes
    label = np.concatenate([LABEL, np.full((1, 2, 1), 255)], axis=2)
    pred = np.concatenate([PRED, np.array([[[1], [0]]])], axis=2)
    m = _metric(pred, label)
    assert m.details()["confusion_matrix"] == [[3, 1], [2, 4]]
    assert m.accumulate() == _metric().accumulate()
    # another ignore value
    label7 = np.where(label == 255, 7, label)
    assert _metric(pred, label7, ignore_index=7).details()["confusion_matrix"] == [[3, 1], [2, 4]]
    # ignore_index=None: 255 is then an invalid label
    with pytest.raises(InvalidParameterError, match="'label'.*255"):
        _metric(pred, label, ignore_index=None)


def _reference_cm(pred, label, n, ignore=255):
    cm = np.zeros((n, n), np.int64)
    for p, t in zip(pred.reshape(-1), label.reshape(-1)):
        if t != ignore:
            cm[t, p] += 1
    return cm


def test_streaming_equals_one_batch_and_reference():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (6, 9, 7))
    label[rng.random(label.shape) < 0.1] = 255
    pred = rng.integers(0, 4, (6, 9, 7))
    whole = _metric(pred, label, num_classes=4)
    parts = SegMetric(4)
    for i in range(0, 6, 2):
        parts.update(paddle.to_tensor(pred[i:i + 2]), paddle.to_tensor(label[i:i + 2][:, None]))
    assert parts.details()["confusion_matrix"] == whole.details()["confusion_matrix"]
    assert parts.accumulate() == whole.accumulate()
    cm = _reference_cm(pred, label, 4).astype(np.float64)
    assert whole.details()["confusion_matrix"] == cm.astype(np.int64).tolist()
    r, tp, la, pa, t = whole.accumulate(), np.diag(cm), cm.sum(1), cm.sum(0), cm.sum()
    assert r["category_iou"] == pytest.approx(tp / (la + pa - tp), abs=1e-12)
    pe = (la * pa).sum() / t ** 2
    assert r["kappa"] == pytest.approx((tp.sum() / t - pe) / (1 - pe), abs=1e-12)
    assert r["category_F1-score"] == pytest.approx(2 * tp / (la + pa), abs=1e-12)


def test_logits_equal_argmax_and_input_layouts():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 5, 6, 4)).astype(np.float32)
    label = rng.integers(0, 5, (3, 6, 4))
    ids = logits.argmax(axis=1)
    ref = _metric(ids, label, num_classes=5).details()["confusion_matrix"]
    assert np.asarray(ref).sum() == label.size and np.trace(ref) > 0
    for pred in (logits, paddle.to_tensor(logits), ids[:, None], paddle.to_tensor(ids), ids.astype(np.float32)):
        for lab in (label, label[:, None], paddle.to_tensor(label.astype(np.int32))):
            assert _metric(pred, lab, num_classes=5).details()["confusion_matrix"] == ref


def test_update_errors_name_method_argument_and_value():
    m = SegMetric(3)
    bad = LABEL.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(InvalidParameterError, match=r"SegMetric\.update.*'label'.*num_classes=3.*got 3"):
        m.update(PRED, bad)
    with pytest.raises(InvalidParameterError, match=r"SegMetric\.update.*'label'.*got -1"):
        m.update(PRED, -np.ones_like(LABEL))
    with pytest.raises(InvalidParameterError, match=r"SegMetric\.update.*'pred'.*got 5"):
        m.update(np.full_like(PRED, 5), LABEL)
    with pytest.raises(InvalidParameterError, match=r"'pred' and 'label'.*\(1, 2, 5\) and \(1, 5, 2\)"):
        m.update(PRED, LABEL.reshape(1, 5, 2))
    with pytest.raises(InvalidParameterError, match=r"'pred'.*\[N, 3, H, W\].*\(1, 4, 2, 5\)"):
        m.update(np.zeros((1, 4, 2, 5), np.float32), LABEL)
    with pytest.raises(InvalidParameterError, match=r"'label' must be \[N, H, W\].*\(2, 5\)"):
        m.update(PRED[0], LABEL[0])
    with pytest.raises(InvalidParameterError, match=r"'pred' must hold whole class ids; got 0.5"):
        m.update(PRED + 0.5, LABEL)
    assert m.details()["confusion_matrix"] == [[0] * 3] * 3     # nothing added by a bad batch


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 0}, "'num_classes'.*got 0"),
    ({"num_classes": True}, "'num_classes'.*got True"),
    ({"num_classes": 2, "ignore_index": "255"}, "'ignore_index'.*got '255'"),
    ({"num_classes": 2, "keep_details": 1}, "'keep_details'.*got 1"),
    ({"num_classes": 2, "class_names": ["a"]}, "'class_names'.*2 distinct.*got \\['a'\\]"),
    ({"num_classes": 2, "class_names": "ab"}, "'class_names'"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(InvalidParameterError, match="SegMetric: " + match):
        SegMetric(**kwargs)


def test_class_names_in_details():
    m = SegMetric(2, keep_details=True, class_names=("bg", "fg"))
    m.update(PRED, LABEL)
    assert m.details()["class_names"] == ["bg", "fg"]


def test_update_is_fast():
    rng = np.random.default_rng(2)
    label = rng.integers(0, 19, (16, 128, 128)).astype(np.int64)
    label[:, :8] = 255
    pred = rng.integers(0, 19, (16, 128, 128)).astype(np.int64)
    m = SegMetric(19)
    m.update(pred, label)
    start = time.perf_counter()
    for _ in range(10):
        m.update(pred, label)
    per_batch = (time.perf_counter() - start) / 10
    assert per_batch < 0.02, f"{per_batch * 1e3:.1f} ms per 16 x 128 x 128 batch"
    assert int(np.sum(m.details()["confusion_matrix"])) == 11 * 16 * 120 * 128
