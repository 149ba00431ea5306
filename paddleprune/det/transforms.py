"""``paddleprune.det.transforms``: the detection transforms, PaddleX 1.x names.

Re-exports :mod:`paddleprune.transforms.det` so ``from paddleprune.det import transforms as T``
works as ``paddlex.det.transforms`` did.
"""
from paddleprune.transforms.det import (Compose, MixupImage, Normalize, RandomCrop, RandomDistort,
                                        RandomExpand, RandomHorizontalFlip, Resize, build_transforms)

__all__ = ["Compose", "MixupImage", "RandomDistort", "RandomExpand", "RandomCrop", "Resize",
           "RandomHorizontalFlip", "Normalize", "build_transforms"]
