"""paddleprune: structured filter pruning for PaddlePaddle 3 vision models.

``import paddleprune`` stays light; ``paddleprune.load_model`` (and the sub-packages
``cls``, ``slim``, ``prune`` ...) load PaddlePaddle when first used.
"""
import os

__version__ = "0.1.0"


#: OMP_NUM_THREADS as the user set it, read before paddle (which sets it to 1) is imported.
USER_OMP_NUM_THREADS = os.environ.get("OMP_NUM_THREADS")


#: sub-packages reachable as attributes after a bare ``import paddleprune as pdx`` (PaddleX habit:
#: ``pdx.datasets.ImageNet``, ``pdx.cls.MobileNetV2``, ``pdx.det.YOLOv3``, ``pdx.seg.UNet``, ``pdx.slim...``); each is
#: imported on first use, so ``import paddleprune`` stays light
SUBPACKAGES = ("cls", "datasets", "deploy", "det", "metrics", "models", "pipeline", "prune", "seg", "slim",
               "transforms")

__all__ = ["load_model", "__version__", *SUBPACKAGES]


def __getattr__(name):
    if name == "load_model":
        from paddleprune.tasks.checkpoint import load_model
        return load_model
    if name in SUBPACKAGES:
        import importlib
        return importlib.import_module(f"paddleprune.{name}")
    raise AttributeError(f"module 'paddleprune' has no attribute {name!r}")
