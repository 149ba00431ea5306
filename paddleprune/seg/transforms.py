"""``paddleprune.seg.transforms``: the segmentation transforms, PaddleX 1.x names.

Re-exports :mod:`paddleprune.transforms.seg` so ``from paddleprune.seg import transforms as T``
works as ``paddlex.seg.transforms`` did.
"""
from paddleprune.transforms.seg import (Compose, Normalize, Padding, RandomBlur, RandomDistort,
                                        RandomHorizontalFlip, RandomPaddingCrop, RandomRotate,
                                        RandomScaleAspect, RandomVerticalFlip, Resize, ResizeByLong,
                                        ResizeByShort, ResizeRangeScaling, ResizeStepScaling,
                                        build_transforms, restore_label_map)

__all__ = ["Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "Resize", "ResizeByLong",
           "ResizeByShort", "ResizeRangeScaling", "ResizeStepScaling", "Padding", "RandomPaddingCrop",
           "RandomBlur", "RandomRotate", "RandomScaleAspect", "RandomDistort", "Normalize",
           "build_transforms", "restore_label_map"]
