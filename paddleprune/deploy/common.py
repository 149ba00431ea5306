"""Shared checks for the deploy modules: input shapes, exported-model files, optional packages."""
import importlib
import numbers
import os

from paddleprune.errors import DataNotFoundError, InvalidParameterError

MODEL_FILENAME = "model.json"
PARAMS_FILENAME = "model.pdiparams"
ONNX_FILENAME = "model.onnx"
INSTALL_HINT = "pip install paddle2onnx onnxruntime"

# optional package -> what to install
_PACKAGES = {
    "paddle2onnx": INSTALL_HINT,
    "onnxruntime": INSTALL_HINT,
}


def check_input_shape(owner, shape, allow_dynamic=False):
    """Return ``shape`` as a list; raise unless it is a sequence of positive ints.

    With ``allow_dynamic`` an entry may also be ``None`` or ``-1`` (exported as ``None``).
    """
    what = "positive ints (None or -1 for a dynamic dimension)" if allow_dynamic else "positive ints"
    ok = isinstance(shape, (list, tuple)) and len(shape) > 0
    dims = []
    for d in (shape if ok else ()):
        if allow_dynamic and (d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                            and int(d) == -1)):
            dims.append(None)
        elif isinstance(d, numbers.Integral) and not isinstance(d, bool) and int(d) > 0:
            dims.append(int(d))
        else:
            ok = False
    if not ok:
        raise InvalidParameterError(f"{owner}: 'input_shape' must be a non-empty list of {what}; got {shape!r}.")
    return dims


def check_net(owner, net):
    """Raise unless ``net`` is a ``paddle.nn.Layer``."""
    import paddle.nn as nn

    if not isinstance(net, nn.Layer):
        raise InvalidParameterError(f"{owner}: 'net' must be a paddle.nn.Layer; got {type(net).__name__}.")
    return net


def inference_files(owner, save_dir):
    """``(model_file, params_file)`` of an exported model directory; raise if either is missing."""
    if not isinstance(save_dir, (str, os.PathLike)):
        raise InvalidParameterError(f"{owner}: 'save_dir' must be a path; got {type(save_dir).__name__}.")
    save_dir = os.fspath(save_dir)
    if not os.path.isdir(save_dir):
        raise DataNotFoundError(f"{owner}: exported model directory {save_dir!r} does not exist.")
    files = []
    for name in (MODEL_FILENAME, PARAMS_FILENAME):
        path = os.path.join(save_dir, name)
        if not os.path.isfile(path):
            raise DataNotFoundError(
                f"{owner}: {path!r} not found; {save_dir!r} must hold {MODEL_FILENAME} and {PARAMS_FILENAME} "
                "as written by export_inference_model (Paddle 3 PIR format).")
        files.append(path)
    return tuple(files)


def fresh_onnx_file(save_dir):
    """``save_dir/model.onnx`` if it exists and is not older than the params file, else None."""
    onnx_path = os.path.join(os.fspath(save_dir), ONNX_FILENAME)
    params = os.path.join(os.fspath(save_dir), PARAMS_FILENAME)
    if os.path.isfile(onnx_path) and os.path.getmtime(onnx_path) >= os.path.getmtime(params):
        return onnx_path
    return None


def require(module, owner):
    """Import an optional package, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{owner}: the {module!r} package is not installed ({e}); "
                          f"install it with: {_PACKAGES.get(module, 'pip install ' + module)}") from e
