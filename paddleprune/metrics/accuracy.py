"""Top-k classification accuracy (PaddleX 1.x ``acc1`` / ``acc5``)."""
from collections import OrderedDict

import numpy as np

from paddleprune.metrics.common import as_numpy

__all__ = ["TopkAccuracy", "topk_keys"]


def topk_keys(num_classes):
    """The k values PaddleX reports: ``(1, min(5, num_classes))`` without repeats.

    Parameters
    ----------
    num_classes : int

    Returns
    -------
    tuple of int
        ``(1, 5)`` for more than 5 classes, ``(1, num_classes)`` otherwise, ``(1,)`` for 1.
    """
    k = min(5, int(num_classes))
    return (1,) if k == 1 else (1, k)


class TopkAccuracy:
    """Accumulates top-k accuracy over batches of logits (or scores) and labels.

    Parameters
    ----------
    num_classes : int
        Number of classes; picks the reported k values (see :func:`topk_keys`).
    keep_details : bool
        Keep every label and score row for :meth:`details` (``return_details``).
    logits : bool
        The scores are logits; :meth:`details` reports their softmax.
    """

    def __init__(self, num_classes, keep_details=False, logits=True):
        self.num_classes = num_classes
        self.keep_details = keep_details
        self.logits = logits
        self.reset()

    def reset(self):
        """Forget every batch seen so far."""
        self._ks = topk_keys(self.num_classes)
        self._hits = dict.fromkeys(self._ks, 0)
        self._count = 0
        self._labels, self._scores = [], []

    @staticmethod
    def batch_hits(scores, labels, ks):
        """``{k: number of rows whose label is among the k best scores}``."""
        scores, labels = as_numpy(scores), as_numpy(labels).reshape(-1)
        order = np.argsort(-scores, axis=1, kind="stable")
        return {k: int((order[:, :k] == labels[:, None]).any(axis=1).sum()) for k in ks}

    def update(self, scores, labels):
        """Add one batch: ``scores`` ``[N, num_classes]``, ``labels`` ``[N]`` (tensors or arrays)."""
        scores, labels = as_numpy(scores), as_numpy(labels).reshape(-1)
        for k, n in self.batch_hits(scores, labels, self._ks).items():
            self._hits[k] += n
        self._count += len(labels)
        if self.keep_details:
            self._labels.append(labels.copy())
            if self.logits:
                e = np.exp(scores - scores.max(axis=1, keepdims=True))
                scores = e / e.sum(axis=1, keepdims=True)
            self._scores.append(np.array(scores, dtype=np.float32))

    def accumulate(self):
        """Return ``OrderedDict(acc1=..., acc5=...)`` (``acc{k}`` with k = min(5, num_classes))."""
        return OrderedDict((f"acc{k}", self._hits[k] / self._count if self._count else 0.0) for k in self._ks)

    def details(self):
        """``{'true_labels': [...], 'pred_scores': [[...], ...]}`` (PaddleX ``return_details``)."""
        labels = np.concatenate(self._labels) if self._labels else np.zeros([0], "int64")
        scores = np.concatenate(self._scores) if self._scores else np.zeros([0, self.num_classes], "float32")
        return {"true_labels": labels.tolist(), "pred_scores": scores.tolist()}
