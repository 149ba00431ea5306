"""Streaming semantic-segmentation metrics (PaddleX 1.x ``ConfusionMatrix``, ``seg_eval.py``).

The confusion matrix ``cm`` is ``num_classes x num_classes`` int64, rows = label, columns =
prediction. With ``tp = diag(cm)``, ``label_area = cm.sum(1)``, ``pred_area = cm.sum(0)`` and
``total = cm.sum()``, :meth:`SegMetric.accumulate` reports, as PaddleX 1.x does:

* ``miou``: mean over **all** ``num_classes`` classes of ``iou = tp / (label_area + pred_area - tp)``;
  a class that is neither labelled nor predicted has a zero denominator and counts as IoU **0**
  (it is not skipped), so it lowers ``miou``.
* ``category_iou``: those per-class IoUs.
* ``oacc``: ``sum(tp) / total`` (0 when nothing was counted).
* ``category_acc``: per-class *precision* ``tp / pred_area`` (0 when the class is never predicted).
* ``kappa``: Cohen's kappa ``(po - pe) / (1 - pe)``, ``po = sum(tp) / total``,
  ``pe = sum(label_area * pred_area) / total**2`` (computed in float64; PaddleX scales by 1e4 to
  the same end). Where PaddleX divides by zero: no pixel counted gives 0.0; every label and
  prediction in one single class (``pe = po = 1``) gives 1.0 (PaddleX: NaN).
* ``category_F1-score``: ``2 p r / (p + r)`` with ``p = tp / label_area``, ``r = tp / pred_area``
  (each 0 on a zero denominator), and 0 when ``p + r <= 1e-6``.

Pixels whose label equals ``ignore_index`` are skipped. Scalars are plain floats, per-class values
lists of floats.
"""
from collections import OrderedDict
import numbers

import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics.common import as_numpy, check_class_names

__all__ = ["SegMetric"]

KEYS = ("miou", "category_iou", "oacc", "category_acc", "kappa", "category_F1-score")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _ratio(num, den):
    """``num / den`` element-wise, 0 where ``den == 0``."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


class SegMetric:
    """Streaming confusion matrix and the PaddleX 1.x segmentation metrics (see module docstring).

    Parameters
    ----------
    num_classes : int
        Number of classes (>= 1); class ids are ``0 .. num_classes - 1``.
    ignore_index : int or None
        Label value whose pixels are skipped (255 as in PaddleX); None skips nothing.
    keep_details : bool
        Accepted for the task interface; :meth:`details` always works (the matrix is all it needs).
    class_names : sequence of str, optional
        ``num_classes`` distinct names, reported by :meth:`details`.

    Raises
    ------
    InvalidParameterError
        An argument is out of range or of the wrong type.
    """

    def __init__(self, num_classes, ignore_index=255, keep_details=False, class_names=None):
        owner = "SegMetric"
        if not _is_int(num_classes) or num_classes < 1:
            raise InvalidParameterError(f"{owner}: 'num_classes' must be an int >= 1; got {num_classes!r}.")
        if ignore_index is not None and not _is_int(ignore_index):
            raise InvalidParameterError(f"{owner}: 'ignore_index' must be an int or None; got {ignore_index!r}.")
        if not isinstance(keep_details, (bool, np.bool_)):
            raise InvalidParameterError(f"{owner}: 'keep_details' must be True or False; got {keep_details!r}.")
        class_names = check_class_names(owner, class_names, num_classes)
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.keep_details = bool(keep_details)
        self.class_names = class_names
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self.confusion_matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    # ---------------------------------------------------------------- input checks
    @staticmethod
    def _ids(owner, name, values):
        """Integer-valued array -> int64 (floats must hold whole numbers)."""
        if values.dtype.kind in "iub":
            return values.astype(np.int64, copy=False)
        if values.dtype.kind != "f":
            raise InvalidParameterError(f"{owner}: {name!r} must hold numbers; got dtype {values.dtype}.")
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            raise InvalidParameterError(
                f"{owner}: {name!r} must hold whole class ids; got {values[bad].reshape(-1)[0].item()!r}.")
        return values.astype(np.int64)

    def _maps(self, owner, pred, label):
        pred, label = as_numpy(pred), as_numpy(label)
        if label.ndim == 4 and label.shape[1] == 1:
            label = label[:, 0]
        if label.ndim != 3:
            raise InvalidParameterError(
                f"{owner}: 'label' must be [N, H, W] or [N, 1, H, W]; got shape {tuple(label.shape)}.")
        if pred.ndim == 4 and pred.shape[1] == 1:
            pred = pred[:, 0]
        elif pred.ndim == 4 and pred.shape[1] == self.num_classes:
            pred = pred.argmax(axis=1)
        elif pred.ndim != 3:
            raise InvalidParameterError(
                f"{owner}: 'pred' must be a label map [N, H, W] / [N, 1, H, W] or scores "
                f"[N, {self.num_classes}, H, W] (num_classes={self.num_classes}); got shape {tuple(pred.shape)}.")
        if pred.shape != label.shape:
            raise InvalidParameterError(
                f"{owner}: 'pred' and 'label' must cover the same [N, H, W] pixels; got "
                f"{tuple(pred.shape)} and {tuple(label.shape)}.")
        pred, label = self._ids(owner, "pred", pred), self._ids(owner, "label", label)
        keep = None if self.ignore_index is None else label != self.ignore_index
        lab = label if keep is None else label[keep]
        n = self.num_classes
        if lab.size and (lab.min() < 0 or lab.max() >= n):
            bad = lab[(lab < 0) | (lab >= n)][0]
            raise InvalidParameterError(
                f"{owner}: 'label' must hold class ids in [0, {n - 1}] (num_classes={n}) or "
                f"ignore_index={self.ignore_index}; got {int(bad)}.")
        if pred.size and (pred.min() < 0 or pred.max() >= n):
            bad = pred[(pred < 0) | (pred >= n)][0]
            raise InvalidParameterError(
                f"{owner}: 'pred' must hold class ids in [0, {n - 1}] (num_classes={n}); got {int(bad)}.")
        return (pred if keep is None else pred[keep]), lab

    # ---------------------------------------------------------------- streaming
    def update(self, pred, label):
        """Add one batch; nothing is added if it is invalid.

        Parameters
        ----------
        pred : array-like or paddle.Tensor
            Label map ``[N, H, W]`` / ``[N, 1, H, W]``, or scores/logits ``[N, num_classes, H, W]``
            (arg-maxed over the class axis). Every value must be a class id.
        label : array-like or paddle.Tensor
            ``[N, H, W]`` or ``[N, 1, H, W]``; class ids or ``ignore_index``.

        Raises
        ------
        InvalidParameterError
            A wrong shape, a non-whole value or a class id out of range.
        """
        pred, label = self._maps("SegMetric.update", pred, label)
        n = self.num_classes
        self.confusion_matrix += np.bincount(label * n + pred, minlength=n * n).reshape(n, n)

    # ---------------------------------------------------------------- results
    def _per_class(self):
        cm = self.confusion_matrix
        tp, label_area, pred_area = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
        iou = _ratio(tp, label_area + pred_area - tp)
        acc = _ratio(tp, pred_area)
        p, r = _ratio(tp, label_area), _ratio(tp, pred_area)
        f1 = np.where(p + r <= 1e-6, 0.0, 2 * p * r / np.where(p + r <= 1e-6, 1.0, p + r))
        return iou, acc, f1

    def kappa(self):
        """Cohen's kappa of the matrix so far (see module docstring for the degenerate cases)."""
        cm = self.confusion_matrix
        total = int(cm.sum())
        if total == 0:
            return 0.0
        if int(np.diag(cm).max()) == total:     # one class holds every label and prediction: pe = po = 1
            return 1.0
        t = float(total)
        po = float(np.trace(cm)) / t
        pe = float(np.dot(cm.sum(axis=1).astype(np.float64), cm.sum(axis=0).astype(np.float64))) / (t * t)
        return (po - pe) / (1.0 - pe)

    def accumulate(self):
        """Return ``OrderedDict`` with keys ``miou`` (primary), ``category_iou``, ``oacc``,
        ``category_acc``, ``kappa``, ``category_F1-score``."""
        iou, acc, f1 = self._per_class()
        total = int(self.confusion_matrix.sum())
        oacc = float(np.trace(self.confusion_matrix)) / total if total else 0.0
        values = (float(iou.mean()), iou.tolist(), oacc, acc.tolist(), self.kappa(), f1.tolist())
        return OrderedDict(zip(KEYS, values))

    def details(self):
        """``{'confusion_matrix': [[...]] (rows = label, columns = prediction), 'class_names',
        'category_iou', 'category_acc', 'category_F1-score'}``."""
        iou, acc, f1 = self._per_class()
        return {"confusion_matrix": self.confusion_matrix.tolist(),
                "class_names": list(self.class_names) if self.class_names is not None else None,
                "category_iou": iou.tolist(), "category_acc": acc.tolist(), "category_F1-score": f1.tolist()}
