"""Export a dygraph network for deployment: Paddle Inference (PIR ``model.json``) and ONNX."""
import contextlib
import io
import logging
import os
import re
import warnings

from paddleprune.deploy.common import (MODEL_FILENAME, ONNX_FILENAME, PARAMS_FILENAME, check_input_shape,
                                       check_net, inference_files, require)
from paddleprune.errors import InvalidParameterError, UnsupportedOpError
from paddleprune.utils.atomic import atomic_open, replace_dir, staging_dir

logger = logging.getLogger(__name__)

_PREFIX = os.path.splitext(MODEL_FILENAME)[0]  # "model": jit.save writes model.json + model.pdiparams
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[[A-Z]+\]\s*")


def preserved_layer_state(net):
    """Eval mode; afterwards every sublayer's flag and ``net.forward`` are what they were
    (:func:`paddleprune.prune.graph.preserved_layer_state`, imported on use: importing the
    engine loads ``paddle.inference``)."""
    from paddleprune.prune.graph import preserved_layer_state as preserved
    return preserved(net)


def _move_into(tmp, save_dir):
    """Move the files of ``tmp`` into ``save_dir``: a rename of the whole folder when ``save_dir``
    does not exist yet, else one ``os.replace`` per file (other files in ``save_dir`` stay)."""
    if not os.path.exists(save_dir):
        replace_dir(tmp, save_dir)
        return
    if not os.path.isdir(save_dir):
        raise InvalidParameterError(f"export_inference_model: 'save_dir' {save_dir!r} exists and is not a directory.")
    for name in sorted(os.listdir(tmp)):  # model.json before model.pdiparams
        os.replace(os.path.join(tmp, name), os.path.join(save_dir, name))
    os.rmdir(tmp)


def export_inference_model(net, save_dir, input_shape=None, input_name="image", inputs=None):
    """Save ``net`` for Paddle Inference as ``save_dir/model.json`` + ``model.pdiparams``.

    The network is traced in eval mode with ``paddle.jit.save`` into a temporary folder next
    to ``save_dir``, which is then renamed into place, so an interrupted export never leaves
    half-written files. Afterwards every sublayer's training flag is what it was and
    ``net.forward`` is the original bound method (no ``StaticFunction`` left on the instance).

    Parameters
    ----------
    net : paddle.nn.Layer
        The dygraph network (pruned or not).
    save_dir : str or os.PathLike
        Output directory; created if missing. Other files in it are kept, an older
        ``model.json`` / ``model.pdiparams`` are replaced.
    input_shape : sequence of int
        Input shape, e.g. ``[1, 3, 224, 224]``; ``None`` or ``-1`` marks a dynamic dimension.
    input_name : str, default 'image'
        Name of the input tensor in the exported program.
    inputs : list of (name, shape, dtype), optional
        Instead of ``input_shape`` / ``input_name``: every input of a network whose
        ``forward`` takes several (e.g. a detector's image and image size).

    Returns
    -------
    str
        ``save_dir``.

    Raises
    ------
    InvalidParameterError
        If ``net`` is not a Layer, ``input_shape`` is malformed, ``input_name`` is not an
        identifier or ``save_dir`` is an existing file.
    """
    owner = "export_inference_model"
    check_net(owner, net)
    what = "each input name in 'inputs'" if inputs is not None else "'input_name'"
    if inputs is None:
        inputs = [(input_name, input_shape, "float32")]
    if not isinstance(inputs, (list, tuple)) or not inputs or any(
            not isinstance(i, (list, tuple)) or len(i) != 3 for i in inputs):
        raise InvalidParameterError(f"{owner}: 'inputs' must be a list of (name, shape, dtype); got {inputs!r}.")
    specs = []
    for name, shape, dtype in inputs:
        if not isinstance(name, str) or not name.isidentifier():
            raise InvalidParameterError(f"{owner}: {what} must be an identifier string; got {name!r}.")
        specs.append((name, check_input_shape(owner, shape, allow_dynamic=True), dtype))
    if not isinstance(save_dir, (str, os.PathLike)):
        raise InvalidParameterError(f"{owner}: 'save_dir' must be a path; got {type(save_dir).__name__}.")
    save_dir = os.path.abspath(os.fspath(save_dir))
    if os.path.exists(save_dir) and not os.path.isdir(save_dir):
        raise InvalidParameterError(f"{owner}: 'save_dir' {save_dir!r} exists and is not a directory.")

    import paddle
    from paddle.static import InputSpec

    with staging_dir(save_dir) as tmp:
        with preserved_layer_state(net):
            paddle.jit.save(net, os.path.join(tmp, _PREFIX),
                            input_spec=[InputSpec(shape, dtype, name) for name, shape, dtype in specs])
        inference_files(owner, tmp)  # jit.save must have written both files
        _move_into(tmp, save_dir)
    logger.info("exported %s (inputs %s) to %s", type(net).__name__,
                ", ".join(f"{name} {shape}" for name, shape, _ in specs), save_dir)
    return save_dir


def _import_paddle2onnx(owner):
    with warnings.catch_warnings():  # paddle2onnx imports paddle.utils.cpp_extension, which warns about ccache
        warnings.simplefilter("ignore")
        return require("paddle2onnx", owner)


def convert_to_onnx_bytes(model_file, params_file, opset=13, owner="export_onnx"):
    """Run paddle2onnx in this process and return the serialized ONNX model.

    paddle2onnx reports a failed conversion by printing and calling ``sys.exit``; that is
    turned into an :class:`UnsupportedOpError` carrying its message. Its optimisation step
    is skipped: the polygraphy one sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1`` in the environment
    and pip-installs packages, and ONNX Runtime folds constants itself.
    """
    p2o = _import_paddle2onnx(owner)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            data = p2o.export(model_file, params_file, save_file=None, opset_version=opset,
                              auto_upgrade_opset=True, enable_onnx_checker=True)
    except SystemExit:
        data = None
    text = _ANSI.sub("", log.getvalue()).strip()
    if text:
        logger.debug("paddle2onnx: %s", text)
    if not data:
        errors = [line for line in text.splitlines() if "[ERROR]" in line or "Hint" in line] or [text]
        raise UnsupportedOpError(
            f"{owner}: paddle2onnx {getattr(p2o, '__version__', '?')} could not convert {model_file!r}: "
            + " ".join(_STAMP.sub("", e.strip()) for e in errors if e.strip())
            + " (interpolate with scale_factor is a known cause; use size=[H, W] instead).")
    return data


def export_onnx(save_dir, onnx_path=None, opset=13):
    """Convert an exported model (``model.json`` + ``model.pdiparams``) to ONNX with paddle2onnx.

    Parameters
    ----------
    save_dir : str or os.PathLike
        A directory written by :func:`export_inference_model`.
    onnx_path : str or os.PathLike, optional
        Output file; default ``save_dir/model.onnx``. Written atomically.
    opset : int, default 13
        ONNX opset; paddle2onnx raises it by itself when an operator needs a newer one.

    Returns
    -------
    str
        The path of the ONNX file.

    Raises
    ------
    DataNotFoundError
        If ``save_dir`` or one of its two files is missing.
    InvalidParameterError
        If ``opset`` is not an int in [7, 21].
    ImportError
        If paddle2onnx is not installed (``pip install paddle2onnx onnxruntime``).
    UnsupportedOpError
        If paddle2onnx cannot convert the program; the message carries its error.
    """
    owner = "export_onnx"
    model_file, params_file = inference_files(owner, save_dir)
    if not isinstance(opset, int) or isinstance(opset, bool) or not 7 <= opset <= 21:
        raise InvalidParameterError(f"{owner}: 'opset' must be an int in [7, 21]; got {opset!r}.")
    onnx_path = os.path.join(os.fspath(save_dir), ONNX_FILENAME) if onnx_path is None else os.fspath(onnx_path)
    data = convert_to_onnx_bytes(model_file, params_file, opset, owner)
    with atomic_open(onnx_path, "wb") as f:
        f.write(data)
    logger.info("wrote %s (%.2f MB)", onnx_path, len(data) / 2 ** 20)
    return onnx_path


EXPORT_FORMATS = ("paddle", "onnx", "both")


def export_model(model_dir, save_dir, fmt="paddle", fixed_input_shape=None):
    """Export a model saved by ``train()`` for deployment (``paddleprune export``; PaddleX's
    ``paddlex --export_inference``): the task's ``export_inference_model`` (``model.json``,
    ``model.pdiparams``, ``model.yml`` with ``status: Infer``), converted to ``model.onnx`` for
    ``fmt`` 'onnx' or 'both' ('onnx' then removes the Paddle files).

    Parameters
    ----------
    model_dir : str or os.PathLike
        ``best_model`` or ``epoch_N`` folder.
    save_dir : str or os.PathLike
    fmt : {'paddle', 'onnx', 'both'}
    fixed_input_shape : [width, height], optional
        Default: dynamic batch, height and width.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    InvalidParameterError, DataNotFoundError, DataFormatError, UnsupportedOpError
        A bad argument, a missing or malformed model folder, an unconvertible program.
    """
    from paddleprune.tasks.checkpoint import load_model

    if fmt not in EXPORT_FORMATS:
        raise InvalidParameterError(f"export_model: 'fmt' must be one of {list(EXPORT_FORMATS)}; got {fmt!r}.")
    task = load_model(model_dir)
    save_dir = task.export_inference_model(save_dir, fixed_input_shape=fixed_input_shape)
    files = [os.path.join(save_dir, n) for n in (MODEL_FILENAME, PARAMS_FILENAME, "model.yml")]
    if fmt in ("onnx", "both"):
        files.append(export_onnx(save_dir))
    elif os.path.exists(os.path.join(save_dir, ONNX_FILENAME)):   # would no longer match the Paddle files
        os.remove(os.path.join(save_dir, ONNX_FILENAME))
    if fmt == "onnx":
        for path in files[:2]:
            os.remove(path)
        files = files[2:]
    return files


__all__ = ["EXPORT_FORMATS", "export_inference_model", "export_model", "export_onnx", "preserved_layer_state"]
