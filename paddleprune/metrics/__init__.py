"""Evaluation metrics; each returns an ordered dict whose first key is the primary metric."""
from paddleprune.metrics.accuracy import TopkAccuracy, topk_keys
from paddleprune.metrics.voc_map import VOCMetric
from paddleprune.metrics.seg_metrics import SegMetric

__all__ = ["TopkAccuracy", "topk_keys", "VOCMetric", "SegMetric"]
