"""Streaming VOC detection mAP (PaddleX 1.x / PaddleDetection ``DetectionMAP``, ``bbox_map``).

Conventions, as in PaddleDetection's ``ppdet/utils/map_utils.py`` and PaddleX 1.x's
``paddlex/cv/models/utils/detection_eval.py`` (``bbox_area``, ``jaccard_overlap``,
``DetectionMAP``):

* Boxes are ``(x1, y1, x2, y2)``. With ``is_bbox_normalized=False`` (pixel coordinates, what
  YOLOv3 uses) a box is ``x2 - x1 + 1`` wide and ``y2 - y1 + 1`` high, the VOC pixel
  convention; with ``True`` it is ``x2 - x1`` wide. The intersection gets the same ``+ 1``, but
  two boxes only intersect when ``x1 < other.x2 and x2 > other.x1`` (same for y), so boxes
  that merely touch have IoU 0.
* A detection is compared with the ground-truth boxes of its class in its image; it takes the
  one of highest IoU (the first on ties, visited or not). It is a true positive when that IoU is
  **strictly greater** than ``overlap_thresh`` and the box was not matched before, a false
  positive otherwise. A detection whose best box is ``difficult`` is dropped (neither TP nor
  FP) unless ``evaluate_difficult``; difficult boxes only count as positives when
  ``evaluate_difficult``.
* Within an image, detections are matched in descending score order (stable), as the VOC
  devkit does; PaddleDetection matches them in the order given, which is the same for
  score-sorted NMS output.
* ``'11point'``: mean over ``t = 0, 0.1, ..., 1.0`` of the highest precision at recall ``>= t``
  (0 where recall never reaches ``t``). ``'integral'``: sum, over the detections where recall
  grows, of precision there times the recall step (no precision envelope).
* Records are sorted by descending score, stably, so tied scores keep their arrival order.
* mAP is the mean AP over the classes with at least one positive; such a class without any
  detection has AP 0. No such class at all gives 0.0.

Only what the VOC evaluation needs is kept: per detection its class, score and TP flag, and per
class the number of positives.
"""
from collections import OrderedDict

import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics.common import as_numpy, check_class_names
from paddleprune.utils.checks import check_choice, check_int, check_interval

__all__ = ["VOCMetric", "pairwise_iou", "average_precision", "MAP_TYPES"]

MAP_TYPES = ("11point", "integral")


def pairwise_iou(boxes, gts, is_bbox_normalized=False):
    """IoU of every box of ``boxes`` [M, 4] with every box of ``gts`` [N, 4] -> [M, N].

    Parameters
    ----------
    boxes, gts : array-like
        ``(x1, y1, x2, y2)`` rows.
    is_bbox_normalized : bool
        False: pixel boxes, width ``x2 - x1 + 1``; True: width ``x2 - x1``.

    Returns
    -------
    np.ndarray
        float64 [M, N]; 0 where the boxes do not overlap or the union is not positive.
    """
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(gts, dtype=np.float64).reshape(-1, 4)[None, :, :]
    norm = 0.0 if is_bbox_normalized else 1.0
    overlap = ((a[..., 0] < b[..., 2]) & (a[..., 2] > b[..., 0])
               & (a[..., 1] < b[..., 3]) & (a[..., 3] > b[..., 1]))
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + norm
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + norm
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + norm) * (a[..., 3] - a[..., 1] + norm)
    area_b = (b[..., 2] - b[..., 0] + norm) * (b[..., 3] - b[..., 1] + norm)
    union = area_a + area_b - inter
    ok = overlap & (union > 0)
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def average_precision(tp, num_positives, map_type="11point"):
    """AP of score-sorted detections.

    Parameters
    ----------
    tp : array-like of 0/1
        TP flag of each detection, in descending score order.
    num_positives : int
        Number of ground-truth positives (> 0).
    map_type : {'11point', 'integral'}

    Returns
    -------
    float
    """
    tp = np.asarray(tp, dtype=np.int64).reshape(-1)
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, tp.size + 1)
    recall = ctp / float(num_positives)
    if map_type == "integral":
        step = np.diff(recall, prepend=0.0)
        hit = tp == 1
        return float(np.sum(precision[hit] * step[hit]))
    # highest precision at recall >= t: a suffix max, read at the first index reaching t
    suffix_max = np.maximum.accumulate(precision[::-1])[::-1]
    total = 0.0
    for j in range(11):
        i = np.searchsorted(recall, j / 10.0, side="left")
        total += suffix_max[i] if i < recall.size else 0.0
    return float(total / 11.0)


class VOCMetric:
    """Accumulates VOC mAP image by image (see the module docstring for the conventions).

    Parameters
    ----------
    num_classes : int
        Number of classes; class ids are ``0 .. num_classes - 1``.
    overlap_thresh : float
        A match needs IoU strictly greater than this, in [0, 1).
    map_type : {'11point', 'integral'}
    is_bbox_normalized : bool
        Boxes are in [0, 1] (no ``+ 1`` on widths).
    evaluate_difficult : bool
        Count difficult ground truths like the others.
    class_names : sequence of str, optional
        ``num_classes`` names used as keys by :meth:`per_class_ap` and :meth:`details`.

    Raises
    ------
    InvalidParameterError
        An argument is out of range or of the wrong type.
    """

    def __init__(self, num_classes, overlap_thresh=0.5, map_type="11point", is_bbox_normalized=False,
                 evaluate_difficult=False, class_names=None):
        owner = "VOCMetric"
        check_int(owner, "num_classes", num_classes)
        check_interval(owner, "overlap_thresh", overlap_thresh, 0, 1, closed="left")
        check_choice(owner, "map_type", map_type, MAP_TYPES)
        for name, value in (("is_bbox_normalized", is_bbox_normalized),
                            ("evaluate_difficult", evaluate_difficult)):
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidParameterError(f"{owner}: {name!r} must be True or False; got {value!r}.")
        class_names = check_class_names(owner, class_names, num_classes)
        self.num_classes = int(num_classes)
        self.overlap_thresh = float(overlap_thresh)
        self.map_type = map_type
        self.is_bbox_normalized = bool(is_bbox_normalized)
        self.evaluate_difficult = bool(evaluate_difficult)
        self.class_names = class_names
        self.reset()

    def reset(self):
        """Forget every image seen so far."""
        self._scores = [[] for _ in range(self.num_classes)]
        self._tps = [[] for _ in range(self.num_classes)]
        self._positives = np.zeros(self.num_classes, dtype=np.int64)
        self._ignored = np.zeros(self.num_classes, dtype=np.int64)
        self.num_images = 0

    # ---------------------------------------------------------------- input checks
    def _class_ids(self, owner, what, values):
        bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < 0) | (values >= self.num_classes)
        if bad.any():
            raise InvalidParameterError(
                f"{owner}: {what} must hold class ids in [0, {self.num_classes - 1}] (num_classes="
                f"{self.num_classes}); got {values[bad][0].item():g}.")
        return values.astype(np.int64)

    def _check_image(self, owner, where, pred, gt_bbox, gt_class, difficult):
        pred = np.asarray(as_numpy(pred), dtype=np.float64)
        if pred.size == 0:
            pred = pred.reshape(0, 6)
        if pred.ndim != 2 or pred.shape[1] != 6:
            raise InvalidParameterError(
                f"{owner}: 'pred' of {where} must be an array [M, 6] of (class_id, score, x1, y1, x2, y2); "
                f"got shape {pred.shape}.")
        if not np.isfinite(pred).all():
            raise InvalidParameterError(f"{owner}: 'pred' of {where} must be finite; got NaN or inf.")
        gt_bbox = np.asarray(as_numpy(gt_bbox), dtype=np.float64)
        if gt_bbox.size == 0:
            gt_bbox = gt_bbox.reshape(0, 4)
        if gt_bbox.ndim != 2 or gt_bbox.shape[1] != 4 or not np.isfinite(gt_bbox).all():
            raise InvalidParameterError(
                f"{owner}: 'gt_bbox' of {where} must be a finite array [N, 4] of (x1, y1, x2, y2); "
                f"got shape {gt_bbox.shape}.")
        n = gt_bbox.shape[0]
        gt_class = np.asarray(as_numpy(gt_class), dtype=np.float64).reshape(-1)
        if gt_class.size != n:
            raise InvalidParameterError(
                f"{owner}: 'gt_class' of {where} must have one id per box ({n}); got {gt_class.size}.")
        if difficult is None:
            difficult = np.zeros(n, dtype=bool)
        else:
            difficult = np.asarray(as_numpy(difficult)).reshape(-1)
            if difficult.size != n or not np.isin(difficult, (0, 1)).all():
                raise InvalidParameterError(
                    f"{owner}: 'difficult' of {where} must be {n} flags 0/1 (one per box); "
                    f"got {difficult.tolist()!r}.")
            difficult = difficult.astype(bool)
        gt_class = self._class_ids(owner, f"'gt_class' of {where}", gt_class)
        pred_class = self._class_ids(owner, f"column 0 of 'pred' of {where}", pred[:, 0])
        return pred, pred_class, gt_bbox, gt_class, difficult

    # ---------------------------------------------------------------- matching
    def _match(self, pred, pred_class, gt_bbox, gt_class, difficult):
        """Per-class ``(class, scores, tp flags, ignored count)`` of one image."""
        order = np.argsort(-pred[:, 1], kind="stable")
        pred, pred_class = pred[order], pred_class[order]
        out = []
        for c in np.unique(pred_class):
            dets = pred[pred_class == c]
            tp = np.zeros(len(dets), dtype=bool)
            keep = np.ones(len(dets), dtype=bool)
            gi = np.flatnonzero(gt_class == c)
            if gi.size:
                iou = pairwise_iou(dets[:, 2:6], gt_bbox[gi], self.is_bbox_normalized)
                best = iou.argmax(axis=1)
                hit = iou[np.arange(len(dets)), best] > self.overlap_thresh
                if not self.evaluate_difficult:
                    keep = ~(hit & difficult[gi][best])
                    hit &= keep
                # each ground truth goes to its first (highest-score) hitting detection
                hit_idx = np.flatnonzero(hit)
                _, first = np.unique(best[hit_idx], return_index=True)
                tp[hit_idx[first]] = True
            out.append((int(c), dets[keep, 1], tp[keep], int((~keep).sum())))
        return out

    def _add(self, matched, gt_class, difficult):
        counted = gt_class if self.evaluate_difficult else gt_class[~difficult]
        self._positives += np.bincount(counted, minlength=self.num_classes)
        for c, scores, tp, ignored in matched:
            self._scores[c].append(scores)
            self._tps[c].append(tp)
            self._ignored[c] += ignored
        self.num_images += 1

    def update_image(self, pred, gt_bbox, gt_class, difficult=None):
        """Add one image.

        Parameters
        ----------
        pred : array-like [M, 6]
            ``(class_id, score, x1, y1, x2, y2)`` rows, in the coordinates of ``gt_bbox``;
            an empty array means no detection.
        gt_bbox : array-like [N, 4]
            Ground-truth ``(x1, y1, x2, y2)``.
        gt_class : array-like [N]
            Ground-truth class ids.
        difficult : array-like [N] of 0/1, optional
            VOC difficult flags (none difficult when omitted).

        Raises
        ------
        InvalidParameterError
            A wrong shape, a non-finite value or a class id out of range (naming the image,
            counted from 0 since the last :meth:`reset`).
        """
        args = self._check_image("VOCMetric.update_image", f"image {self.num_images}",
                                 pred, gt_bbox, gt_class, difficult)
        self._add(self._match(*args), args[3], args[4])

    def update(self, preds, gts):
        """Add a batch of images; nothing is added if any of them is invalid.

        Parameters
        ----------
        preds : sequence of array-like [M_i, 6]
            Detections of each image (see :meth:`update_image`).
        gts : sequence of tuples
            ``(gt_bbox, gt_class, difficult)`` of each image; ``difficult`` may be None or left out.
        """
        owner = "VOCMetric.update"
        preds, gts = list(preds), list(gts)
        if len(preds) != len(gts):
            raise InvalidParameterError(
                f"{owner}: 'preds' and 'gts' must have one entry per image; got {len(preds)} and {len(gts)}.")
        checked = []
        for i, (pred, gt) in enumerate(zip(preds, gts)):
            where = f"image {self.num_images + i} (batch index {i})"
            if not isinstance(gt, (tuple, list)) or len(gt) not in (2, 3):
                raise InvalidParameterError(
                    f"{owner}: 'gts' entry of {where} must be a tuple (gt_bbox, gt_class, difficult); "
                    f"got {type(gt).__name__}.")
            gt_bbox, gt_class, difficult = (tuple(gt) + (None,))[:3]
            checked.append(self._check_image(owner, where, pred, gt_bbox, gt_class, difficult))
        for args in checked:
            self._add(self._match(*args), args[3], args[4])

    # ---------------------------------------------------------------- results
    def _key(self, c):
        return self.class_names[c] if self.class_names is not None else c

    def _class_stats(self):
        stats = []
        for c in range(self.num_classes):
            scores = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            tp = np.concatenate(self._tps[c]) if self._tps[c] else np.zeros(0, dtype=bool)
            tp = tp[np.argsort(-scores, kind="stable")]
            npos = int(self._positives[c])
            ap = average_precision(tp, npos, self.map_type) if npos > 0 else None
            stats.append((c, ap, int(tp.sum()), int(tp.size - tp.sum()), npos, int(self._ignored[c])))
        return stats

    def per_class_ap(self):
        """``{class id (or name): AP}`` for the classes with at least one positive."""
        return {self._key(c): ap for c, ap, *_ in self._class_stats() if ap is not None}

    def accumulate(self):
        """Return ``OrderedDict(bbox_map=...)``: mean AP (a fraction) over classes with positives."""
        aps = list(self.per_class_ap().values())
        return OrderedDict(bbox_map=float(np.mean(aps)) if aps else 0.0)

    def details(self):
        """Per-class results (for ``return_details``).

        Returns
        -------
        dict
            ``bbox_map``, ``map_type``, ``overlap_thresh``, ``num_images`` and ``per_class``: one
            dict per class with ``class_id``, ``name`` (or None), ``ap`` (None without positives),
            ``tp``, ``fp``, ``positives`` and ``ignored`` (detections matched to difficult boxes).
        """
        per_class = []
        for c, ap, tp, fp, npos, ignored in self._class_stats():
            per_class.append({"class_id": c, "name": self.class_names[c] if self.class_names else None,
                              "ap": ap, "tp": tp, "fp": fp, "positives": npos, "ignored": ignored})
        aps = [d["ap"] for d in per_class if d["ap"] is not None]
        return {"bbox_map": float(np.mean(aps)) if aps else 0.0, "map_type": self.map_type,
                "overlap_thresh": self.overlap_thresh, "num_images": self.num_images, "per_class": per_class}
