"""PaddleX-style model-compression helpers (``paddleprune.slim``).

Kept light: importing it loads neither paddle nor matplotlib.
"""
from paddleprune.slim.visualize import visualize

__all__ = ["visualize"]
