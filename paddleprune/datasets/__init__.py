"""Data set readers in PaddleX formats and the embedded demo data builders."""
from paddleprune.datasets import demo
from paddleprune.datasets.imagenet import ImageNet
from paddleprune.datasets.seg import SegDataset
from paddleprune.datasets.voc import VOCDetection

__all__ = ["ImageNet", "SegDataset", "VOCDetection", "demo"]
