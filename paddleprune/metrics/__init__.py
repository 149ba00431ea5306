"""Evaluation metrics; each returns an ordered dict whose first key is the primary metric."""
from paddleprune.metrics.accuracy import TopkAccuracy, topk_keys

__all__ = ["TopkAccuracy", "topk_keys"]
