"""``paddleprune.cls.transforms``: the classification transforms, PaddleX 1.x names.

Re-exports :mod:`paddleprune.transforms.cls` so ``from paddleprune.cls import transforms as T``
works as ``paddlex.cls.transforms`` did.
"""
from paddleprune.transforms.cls import (CenterCrop, Compose, Normalize, RandomCrop, RandomDistort,
                                        RandomHorizontalFlip, Resize, ResizeByShort,
                                        build_transforms)

__all__ = ["Compose", "Resize", "ResizeByShort", "CenterCrop", "RandomCrop",
           "RandomHorizontalFlip", "RandomDistort", "Normalize", "build_transforms"]
