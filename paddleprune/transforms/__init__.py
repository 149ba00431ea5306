"""Per-task transforms (OpenCV based); ``base`` holds the shared protocol and ``Compose``."""
from paddleprune.transforms import base, cls
from paddleprune.transforms.base import Compose, Transform

__all__ = ["base", "cls", "Compose", "Transform"]
