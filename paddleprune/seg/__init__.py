"""Segmentation API (``paddleprune.seg``), PaddleX 1.x style.

>>> from paddleprune import seg
>>> from paddleprune.seg import transforms as T
>>> model = seg.UNet(num_classes=4, scale=0.125)
>>> model.train(num_epochs=20, train_dataset=train, eval_dataset=val, save_dir='output/unet')
"""
from paddleprune.seg import transforms
from paddleprune.tasks.segmentation import UNet

__all__ = ["transforms", "UNet"]
