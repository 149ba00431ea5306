"""paddleprune: structured filter pruning for PaddlePaddle 3 vision models.

``import paddleprune`` stays light; ``paddleprune.load_model`` (and the sub-packages
``cls``, ``slim``, ``prune`` ...) load PaddlePaddle when first used.
"""
import importlib.metadata
import importlib.util
import os
import warnings

__version__ = "0.1.0"

#: the PaddlePaddle releases paddleprune is built and tested on (>= first, < second)
SUPPORTED_PADDLE = ((3, 3), (3, 4))
#: the wheels that provide ``import paddle``; the CPU one comes with ``pip install paddleprune[cpu]``
PADDLE_DISTRIBUTIONS = ("paddlepaddle", "paddlepaddle-gpu", "paddlepaddle-xpu", "paddlepaddle-npu")
INSTALL_HINT = ("install PaddlePaddle 3.3: `pip install \"paddleprune[cpu]\"` (or `pip install \"paddlepaddle>=3.3,<3.4\"`) "
                "for the CPU wheel; on a GPU keep or install `paddlepaddle-gpu==3.3.*` from "
                "https://www.paddlepaddle.org.cn/install/quick instead (both wheels provide `import paddle` "
                "and must not be installed together)")


def check_paddle():
    """Raise ImportError when no PaddlePaddle is installed; warn when its version is not 3.3.

    Reads the installed wheels' metadata only: ``paddle`` itself is not imported here.
    """
    if importlib.util.find_spec("paddle") is None:
        raise ImportError(f"paddleprune needs PaddlePaddle, and none is installed: {INSTALL_HINT}.")
    for dist in PADDLE_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if not SUPPORTED_PADDLE[0] <= parts < SUPPORTED_PADDLE[1]:
            warnings.warn(f"paddleprune is tested with PaddlePaddle 3.3; {dist} {version} is installed and may "
                          f"not work: {INSTALL_HINT}.", stacklevel=3)
        return version
    return None


check_paddle()


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
