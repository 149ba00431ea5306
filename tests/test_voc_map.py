"""VOC mAP (streaming): hand-computed APs, PaddleDetection's IoU/threshold conventions, streaming
equivalence and a cross-check against an independent loop implementation."""
from collections import OrderedDict

import numpy as np
import paddle
import pytest

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics import VOCMetric
from paddleprune.metrics.voc_map import average_precision, pairwise_iou

A = [10, 10, 49, 49]      # two pixel boxes far apart (40 x 40 with the +1 convention)
B = [100, 100, 139, 139]
FAR = [200, 200, 239, 239]


def _det(cls, score, box):
    return [cls, score] + list(box)


def _one_image(dets, gt_boxes, gt_classes, difficult=None, **kwargs):
    m = VOCMetric(kwargs.pop("num_classes", 1), **kwargs)
    m.update_image(np.array(dets, dtype=np.float32).reshape(-1, 6), np.array(gt_boxes, np.float32),
                   np.array(gt_classes, np.int32), difficult)
    return m


# ------------------------------------------------------------------ IoU conventions
def test_iou_pixel_convention_plus_one():
    # [0,0,9,9] is 10 x 10 = 100 px; [5,5,14,14] too; intersection [5,5,9,9] is 5 x 5 = 25
    # -> 25 / (100 + 100 - 25) = 1/7. Without +1: 4 x 4 = 16 / (81 + 81 - 16) = 16/146.
    assert pairwise_iou([[0, 0, 9, 9]], [[5, 5, 14, 14]])[0, 0] == pytest.approx(1 / 7, abs=1e-15)
    assert pairwise_iou([[0, 0, 9, 9]], [[5, 5, 14, 14]], True)[0, 0] == pytest.approx(16 / 146, abs=1e-15)
    # touching boxes share the pixel column x=9 under +1, but PaddleDetection's jaccard_overlap
    # returns 0 when pred.x1 >= gt.x2 (here 9 >= 9); so do we
    assert pairwise_iou([[0, 0, 9, 9]], [[9, 0, 18, 9]])[0, 0] == 0.0
    assert pairwise_iou([[9, 0, 18, 9]], [[0, 0, 9, 9]])[0, 0] == 0.0
    assert pairwise_iou([[0, 9, 9, 18]], [[0, 0, 9, 9]])[0, 0] == 0.0
    assert pairwise_iou([[0, 0, 9, 9], [0, 0, 9, 9]], [[0, 0, 9, 9], [20, 20, 30, 30], [0, 0, 9, 4]]).shape == (2, 3)


def test_iou_exactly_half_is_not_a_match():
    # gt [0,0,9,9]: 10 x 10 = 100; pred [0,0,9,4]: 10 x 5 = 50, inside the gt -> IoU 50/100 = 0.5
    # exactly. PaddleDetection: `if max_overlap > self.overlap_thresh` (strict) -> FP, AP 0.
    assert pairwise_iou([[0, 0, 9, 4]], [[0, 0, 9, 9]])[0, 0] == 0.5
    m = _one_image([_det(0, 0.9, [0, 0, 9, 4])], [[0, 0, 9, 9]], [0])
    assert m.accumulate()["bbox_map"] == 0.0
    assert m.details()["per_class"][0]["fp"] == 1
    # pred [0,0,9,5]: 10 x 6 = 60 -> IoU 0.6 > 0.5 -> TP, AP 1
    assert _one_image([_det(0, 0.9, [0, 0, 9, 5])], [[0, 0, 9, 9]], [0]).accumulate()["bbox_map"] == 1.0
    # a lower threshold makes the 0.5 box a TP
    m = _one_image([_det(0, 0.9, [0, 0, 9, 4])], [[0, 0, 9, 9]], [0], overlap_thresh=0.49)
    assert m.accumulate()["bbox_map"] == 1.0
    # normalized: gt [0,0,1,1] area 1, pred [0,0,1,0.5] area 0.5 -> IoU 0.5 exactly -> FP
    m = _one_image([_det(0, 0.9, [0, 0, 1, 0.5])], [[0, 0, 1, 1]], [0], is_bbox_normalized=True)
    assert m.accumulate()["bbox_map"] == 0.0


def test_pixel_convention_changes_the_decision():
    # pred [0,0,9,4.4] vs gt [0,0,9,9]: +1 -> 10 x 5.4 / 100 = 0.54 (TP);
    # normalized -> 9 x 4.4 / 81 = 0.489 (FP)
    dets, gt = [_det(0, 0.9, [0, 0, 9, 4.4])], [[0, 0, 9, 9]]
    assert _one_image(dets, gt, [0]).accumulate()["bbox_map"] == 1.0
    assert _one_image(dets, gt, [0], is_bbox_normalized=True).accumulate()["bbox_map"] == 0.0


# ------------------------------------------------------------------ hand-computed APs
def test_perfect_detections():
    rng = np.random.default_rng(1)
    for map_type in ("11point", "integral"):
        m = VOCMetric(3, map_type=map_type)
        for _ in range(5):
            boxes = np.array([A, B, FAR], np.float32)
            classes = rng.integers(0, 3, size=3)
            pred = np.c_[classes, rng.random(3), boxes]
            m.update_image(pred, boxes, classes)
        assert m.accumulate() == OrderedDict(bbox_map=1.0)
        assert isinstance(m.accumulate()["bbox_map"], float)


def test_tp_fp_tp():
    # one class, 2 GT (A, B); detections by descending score: 0.9 on A (TP), 0.8 on FAR (FP),
    # 0.7 on B (TP).  cumulative TP 1,1,2  FP 0,1,1
    #   precision = 1/1, 1/2, 2/3      recall = 1/2, 1/2, 2/2
    # 11point: t = 0, .1, .2, .3, .4, .5 -> max precision at recall >= t = max(1, 1/2, 2/3) = 1
    #          t = .6, .7, .8, .9, 1.0  -> only recall 1.0 qualifies -> 2/3
    #          AP = (6 * 1 + 5 * 2/3) / 11 = (28/3) / 11 = 28/33 = 0.848485
    # integral: recall grows at detections 1 and 3: 1 * 1/2 + 2/3 * 1/2 = 5/6 = 0.833333
    dets = [_det(0, 0.9, A), _det(0, 0.8, FAR), _det(0, 0.7, B)]
    m = _one_image(dets, [A, B], [0, 0])
    assert m.accumulate()["bbox_map"] == pytest.approx(28 / 33, abs=1e-12)
    assert _one_image(dets, [A, B], [0, 0], map_type="integral").accumulate()["bbox_map"] == \
        pytest.approx(5 / 6, abs=1e-12)
    d = m.details()["per_class"][0]
    assert (d["tp"], d["fp"], d["positives"], d["ignored"]) == (2, 1, 2, 0)
    # the AP helper alone, on the same TP flags
    assert average_precision([1, 0, 1], 2, "11point") == pytest.approx(28 / 33, abs=1e-12)
    assert average_precision([1, 0, 1], 2, "integral") == pytest.approx(5 / 6, abs=1e-12)


def test_duplicate_detection_is_fp():
    # 0.9 on A (TP), 0.8 on A again (A already matched -> FP), 0.7 on B (TP): the same
    # TP, FP, TP sequence as above -> 28/33 and 5/6. Were the duplicate a TP, AP would be 1.
    dets = [_det(0, 0.9, A), _det(0, 0.8, [10, 10, 49, 48]), _det(0, 0.7, B)]
    m = _one_image(dets, [A, B], [0, 0])
    assert m.accumulate()["bbox_map"] == pytest.approx(28 / 33, abs=1e-12)
    d = m.details()["per_class"][0]
    assert (d["tp"], d["fp"]) == (2, 1)
    assert _one_image(dets, [A, B], [0, 0], map_type="integral").accumulate()["bbox_map"] == \
        pytest.approx(5 / 6, abs=1e-12)


def test_matching_follows_score_not_input_order():
    # given as 0.6 on A, 0.9 on A, 0.7 on B. Matched by score: 0.9 A TP, 0.7 B TP, 0.6 A FP
    # -> precision 1, 1, 2/3 at recall .5, 1, 1 -> AP 1 (both types: 1*.5 + 1*.5 = 1).
    # (In input order 0.6 would take A and 0.9 would be FP: AP 28/33.)
    dets = [_det(0, 0.6, A), _det(0, 0.9, A), _det(0, 0.7, B)]
    for map_type in ("11point", "integral"):
        assert _one_image(dets, [A, B], [0, 0], map_type=map_type).accumulate()["bbox_map"] == 1.0


def test_difficult_match_is_ignored():
    # GT A normal, B difficult. Detections: 0.9 on B (difficult -> dropped), 0.85 on FAR (FP),
    # 0.8 on A (TP). Positives: 1 (B not counted). Records: FP, TP
    #   precision 0, 1/2   recall 0, 1 -> 11point: every t has max precision 1/2 -> 0.5;
    #   integral: 1/2 * 1 = 0.5. (Were the difficult match an FP: precision 1/3 -> 1/3.)
    dets = [_det(0, 0.9, B), _det(0, 0.85, FAR), _det(0, 0.8, A)]
    for map_type in ("11point", "integral"):
        m = _one_image(dets, [A, B], [0, 0], [0, 1], map_type=map_type)
        assert m.accumulate()["bbox_map"] == pytest.approx(0.5, abs=1e-12)
        d = m.details()["per_class"][0]
        assert (d["tp"], d["fp"], d["positives"], d["ignored"]) == (1, 1, 1, 1)
    # evaluate_difficult: 2 positives, 0.9 on B is a TP -> TP, FP, TP -> 28/33 and 5/6
    m = _one_image(dets, [A, B], [0, 0], [0, 1], evaluate_difficult=True)
    assert m.accumulate()["bbox_map"] == pytest.approx(28 / 33, abs=1e-12)
    m = _one_image(dets, [A, B], [0, 0], [0, 1], evaluate_difficult=True, map_type="integral")
    assert m.accumulate()["bbox_map"] == pytest.approx(5 / 6, abs=1e-12)


def test_class_without_gt_is_not_averaged():
    # class 0: perfect (AP 1); class 1: an FP but no GT -> left out; class 2: no GT, no det.
    m = _one_image([_det(0, 0.9, A), _det(1, 0.95, B)], [A], [0], num_classes=3,
                   class_names=["cat", "dog", "cow"])
    assert m.accumulate()["bbox_map"] == 1.0
    assert m.per_class_ap() == {"cat": 1.0}
    det = {d["name"]: d for d in m.details()["per_class"]}
    assert det["dog"]["ap"] is None and det["dog"]["fp"] == 1 and det["dog"]["positives"] == 0
    # a class with GT but no detection has AP 0 and is averaged: (1 + 0) / 2
    m = _one_image([_det(0, 0.9, A)], [A, B], [0, 2], num_classes=3)
    assert m.accumulate()["bbox_map"] == 0.5
    assert m.per_class_ap() == {0: 1.0, 2: 0.0}


def test_wrong_class_is_fp():
    # a detection on A with class 1 while A is class 0: FP for class 1 (no GT -> not averaged),
    # class 0 has 1 positive and no detection -> AP 0 -> mAP 0
    m = _one_image([_det(1, 0.9, A)], [A], [0], num_classes=2)
    assert m.accumulate()["bbox_map"] == 0.0


def test_empty_predictions_give_zero():
    for map_type in ("11point", "integral"):
        m = VOCMetric(2, map_type=map_type)
        m.update_image(np.zeros((0, 6)), [A, B], [0, 1])
        m.update([np.zeros((0, 6)), []], [([A], [1], [0]), ([B], [0])])
        assert m.accumulate()["bbox_map"] == 0.0
        assert m.per_class_ap() == {0: 0.0, 1: 0.0}
    assert VOCMetric(2).accumulate()["bbox_map"] == 0.0  # nothing seen at all


def test_reset_and_tensor_inputs():
    m = VOCMetric(1)
    m.update_image(np.array([_det(0, 0.9, FAR)]), [A], [0])
    assert m.accumulate()["bbox_map"] == 0.0
    m.reset()
    assert m.num_images == 0
    m.update_image(paddle.to_tensor([_det(0, 0.9, A)], dtype="float32"), paddle.to_tensor([A], dtype="float32"),
                   paddle.to_tensor([[0]], dtype="int32"), paddle.to_tensor([[0]], dtype="int32"))
    assert m.accumulate()["bbox_map"] == 1.0 and m.num_images == 1


# ------------------------------------------------------------------ random data
def _random_images(rng, n_images, num_classes, normalized=False):
    scale = 1.0 if normalized else 300.0
    images = []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 0.7, size=(n, 2)) * scale
        wh = rng.uniform(0.05, 0.3, size=(n, 2)) * scale
        gt = np.c_[xy, xy + wh].astype(np.float32)
        cls = rng.integers(0, num_classes - 1, size=n).astype(np.int32)  # last class: never a GT
        diff = (rng.random(n) < 0.2).astype(np.int32)
        rows = []
        for box, c in zip(gt, cls):
            w, h = box[2] - box[0], box[3] - box[1]
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 (a duplicate) detections
                jit = rng.normal(0, 0.15, size=4) * np.array([w, h, w, h])
                c2 = c if rng.random() < 0.9 else rng.integers(0, num_classes)
                rows.append([c2, 0.0, *(box + jit)])
        for _ in range(int(rng.integers(0, 4))):  # background detections
            p = rng.uniform(0, 0.7, 2) * scale
            rows.append([rng.integers(0, num_classes), 0.0, *p, *(p + rng.uniform(0.05, 0.3, 2) * scale)])
        pred = np.array(rows, np.float64).reshape(-1, 6)
        pred[:, 1] = rng.random(len(pred))
        images.append((pred, gt, cls, diff))
    return images


def _ref_iou(a, b, normalized):
    one = 0.0 if normalized else 1.0
    if a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1]:
        return 0.0
    inter = (min(a[2], b[2]) - max(a[0], b[0]) + one) * (min(a[3], b[3]) - max(a[1], b[1]) + one)
    area = lambda r: (r[2] - r[0] + one) * (r[3] - r[1] + one)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _ref_map(images, num_classes, thresh, map_type, normalized, with_difficult):
    """Straightforward VOC eval: all detections of a class sorted globally by score."""
    aps = []
    for c in range(num_classes):
        npos = sum(int(((cls == c) & ((diff == 0) | with_difficult)).sum()) for _, _, cls, diff in images)
        if npos == 0:
            continue
        dets = sorted(((row[1], k, row[2:6]) for k, (pred, *_) in enumerate(images) for row in pred
                       if int(row[0]) == c), key=lambda d: -d[0])
        used, flags = set(), []
        for _, k, box in dets:
            _, gt, cls, diff = images[k]
            best, best_j = -1.0, -1
            for j in range(len(gt)):
                if cls[j] == c:
                    o = _ref_iou(box, gt[j], normalized)
                    if o > best:
                        best, best_j = o, j
            if best > thresh:
                if diff[best_j] and not with_difficult:
                    continue
                flags.append(0 if (k, best_j) in used else 1)
                used.add((k, best_j))
            else:
                flags.append(0)
        tp = np.array(flags, dtype=float)
        ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
        rec = ctp / npos
        prec = ctp / np.maximum(ctp + cfp, 1)
        if map_type == "11point":
            ap = np.mean([prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(11) / 10])
        else:
            ap = np.sum(prec * np.diff(np.r_[0.0, rec]))
        aps.append(ap)
    return float(np.mean(aps)) if aps else 0.0


@pytest.mark.parametrize("map_type", ["11point", "integral"])
@pytest.mark.parametrize("normalized,with_difficult,thresh", [(False, False, 0.5), (False, True, 0.5),
                                                              (True, False, 0.3), (False, False, 0.7)])
def test_matches_independent_implementation(map_type, normalized, with_difficult, thresh):
    for seed in range(3):
        images = _random_images(np.random.default_rng(seed), 25, 5, normalized)
        m = VOCMetric(5, thresh, map_type, normalized, with_difficult)
        for pred, gt, cls, diff in images:
            m.update_image(pred, gt, cls, diff)
        got = m.accumulate()["bbox_map"]
        assert got == pytest.approx(_ref_map(images, 5, thresh, map_type, normalized, with_difficult), abs=1e-12)
        assert 0.0 < got < 1.0  # the data exercise TPs and FPs
        assert got == pytest.approx(np.mean(list(m.per_class_ap().values())), abs=1e-15)
        assert 4 not in m.per_class_ap()  # the class without GT
        counts = m.details()["per_class"]
        n_dets = sum(len(p) for p, *_ in images)
        assert sum(d["tp"] + d["fp"] + d["ignored"] for d in counts) == n_dets


def test_streaming_equivalence_and_order():
    images = _random_images(np.random.default_rng(7), 30, 4)
    preds = [im[0] for im in images]
    gts = [im[1:] for im in images]
    for map_type in ("11point", "integral"):
        one_by_one = VOCMetric(4, map_type=map_type)
        for pred, gt in zip(preds, gts):
            one_by_one.update_image(pred, *gt)
        batched = VOCMetric(4, map_type=map_type)
        for i in range(0, 30, 8):
            batched.update(preds[i:i + 8], gts[i:i + 8])
        whole = VOCMetric(4, map_type=map_type)
        whole.update(preds, gts)
        perm = np.random.default_rng(3).permutation(30)
        shuffled = VOCMetric(4, map_type=map_type)
        shuffled.update([preds[i] for i in perm], [gts[i] for i in perm])
        ref = one_by_one.details()
        for m in (batched, whole, shuffled):
            assert m.details() == ref and m.accumulate() == one_by_one.accumulate()
        assert ref["num_images"] == 30 and 0.0 < ref["bbox_map"] < 1.0


# ------------------------------------------------------------------ argument checks
def test_constructor_validation():
    with pytest.raises(InvalidParameterError, match=r"'map_type' must be one of \['11point', 'integral'\]; got 'voc07'"):
        VOCMetric(2, map_type="voc07")
    with pytest.raises(InvalidParameterError, match="'num_classes' must be an int >= 1; got 0"):
        VOCMetric(0)
    with pytest.raises(InvalidParameterError, match=r"'overlap_thresh' must be a number in \[0, 1\); got 1.5"):
        VOCMetric(2, overlap_thresh=1.5)
    with pytest.raises(InvalidParameterError, match="'evaluate_difficult' must be True or False; got 'yes'"):
        VOCMetric(2, evaluate_difficult="yes")
    with pytest.raises(InvalidParameterError, match="'class_names' must be 2 distinct strings"):
        VOCMetric(2, class_names=["cat"])


def test_input_validation_names_the_image():
    m = VOCMetric(2)
    m.update_image(np.zeros((0, 6)), [A], [0])
    with pytest.raises(InvalidParameterError, match=r"'pred' of image 1 must be an array \[M, 6\].*got shape \(1, 5\)"):
        m.update_image(np.zeros((1, 5)), [A], [0])
    with pytest.raises(InvalidParameterError, match=r"'pred' of image 2 \(batch index 1\) must be an array \[M, 6\]"):
        m.update([np.zeros((0, 6)), np.zeros((2, 4))], [([A], [0]), ([A], [0])])
    assert m.num_images == 1  # an invalid batch adds nothing
    with pytest.raises(InvalidParameterError, match=r"column 0 of 'pred' of image 1 must hold class ids in \[0, 1\]"):
        m.update_image([_det(2, 0.5, A)], [A], [0])
    with pytest.raises(InvalidParameterError, match=r"'gt_class' of image 1 must hold class ids in \[0, 1\].*got -1"):
        m.update_image([], [A], [-1])
    with pytest.raises(InvalidParameterError, match=r"'gt_class' of image 1 must have one id per box \(2\); got 1"):
        m.update_image([], [A, B], [0])
    with pytest.raises(InvalidParameterError, match=r"'difficult' of image 1 must be 1 flags 0/1"):
        m.update_image([], [A], [0], [2])
    with pytest.raises(InvalidParameterError, match="'pred' of image 1 must be finite"):
        m.update_image([_det(0, np.nan, A)], [A], [0])
    with pytest.raises(InvalidParameterError, match=r"'gt_bbox' of image 1 must be a finite array \[N, 4\]"):
        m.update_image([], [[1, 2, 3]], [0])
    with pytest.raises(InvalidParameterError, match="'preds' and 'gts' must have one entry per image; got 1 and 2"):
        m.update([[]], [([A], [0]), ([A], [0])])
    with pytest.raises(InvalidParameterError, match=r"'gts' entry of image 1 \(batch index 0\) must be a tuple"):
        m.update([[]], [np.array(A)])
    assert m.num_images == 1
