"""Numerical check of an exported model against the dygraph network it came from."""
import logging

import numpy as np

from paddleprune.deploy.common import check_net
from paddleprune.deploy.runners import DygraphRunner, ModelSource, check_backends, open_runner, sample_input
from paddleprune.errors import InvalidParameterError

logger = logging.getLogger(__name__)


def check_exported(net, save_dir, input_shape, backends=("paddle_inference", "onnxruntime"), threads=2,
                   onednn=True, seed=0):
    """Largest absolute difference between each backend's output and ``net``'s dygraph output.

    Parameters
    ----------
    net : paddle.nn.Layer
        The network that was exported (run in eval mode under ``paddle.no_grad``; its
        training flags are restored afterwards).
    save_dir : str or os.PathLike
        Its export (``model.json`` + ``model.pdiparams``). For ONNX Runtime,
        ``save_dir/model.onnx`` is used when it is up to date, else the model is converted
        into a temporary folder.
    input_shape : sequence of int
        Concrete input shape; the input is fixed random data in [0, 1) drawn with ``seed``.
    backends : sequence of str, default ('paddle_inference', 'onnxruntime')
        Backends to check (``'dygraph'`` is the reference and not accepted here).
    threads : int, default 2
    onednn : bool, default True
        Paddle Inference with oneDNN (as :func:`~paddleprune.deploy.measure_latency`).
    seed : int, default 0

    Returns
    -------
    dict
        ``{backend: max_abs_diff}`` over all outputs.

    Raises
    ------
    InvalidParameterError
        On a malformed argument, or when a backend returns outputs of other shapes.
    DataNotFoundError
        If ``save_dir`` or one of its files is missing.
    ImportError
        If a requested backend's package is not installed.
    """
    owner = "check_exported"
    check_net(owner, net)
    backends = check_backends(owner, backends)
    if "dygraph" in backends:
        raise InvalidParameterError(f"{owner}: 'dygraph' is the reference; 'backends' may hold "
                                    f"'paddle_inference' and 'onnxruntime'; got {list(backends)}.")
    source = ModelSource(owner, save_dir, input_shape)
    try:
        x = sample_input(source.input_shape, seed)
        ref_runner = DygraphRunner(net)
        try:
            reference = ref_runner(x)
        finally:
            ref_runner.close()
        diffs = {}
        for backend in backends:
            runner = open_runner(backend, source, threads=threads, onednn=onednn)
            try:
                outputs = runner(x)
            finally:
                runner.close()
            shapes = [o.shape for o in outputs]
            if shapes != [r.shape for r in reference]:
                raise InvalidParameterError(
                    f"{owner}: {backend} outputs have shapes {shapes} but the network gives "
                    f"{[r.shape for r in reference]}; was {source.save_dir!r} exported from this network?")
            diffs[backend] = max(float(np.max(np.abs(o.astype(np.float64) - r))) if o.size else 0.0
                                 for o, r in zip(outputs, reference))
            logger.debug("%s: %s max |diff| %.3g", owner, backend, diffs[backend])
        return diffs
    finally:
        source.close()
