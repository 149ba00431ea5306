"""paddleprune: structured filter pruning for PaddlePaddle 3 vision models.

``import paddleprune`` stays light; ``paddleprune.load_model`` (and the sub-packages
``cls``, ``slim``, ``prune`` ...) load PaddlePaddle when first used.
"""
import os

__version__ = "0.1.0"

__all__ = ["load_model", "__version__"]

#: OMP_NUM_THREADS as the user set it, read before paddle (which sets it to 1) is imported.
USER_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")


def __getattr__(name):
    if name == "load_model":
        from paddleprune.tasks.checkpoint import load_model
        return load_model
    raise AttributeError(f"module 'paddleprune' has no attribute {name!r}")
