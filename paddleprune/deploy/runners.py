"""Run one model on one backend: Paddle Inference, ONNX Runtime or dygraph.

A runner is a callable ``runner(x) -> list[np.ndarray]`` (``x`` one float32 array, or a list
with one array per model input in the exported order; every output copied back to the host)
with a ``close()``. Heavy packages are imported when a runner is
built, never at import time.
"""
import contextlib
import logging
import os
import shutil
import tempfile

import numpy as np

from paddleprune.deploy.common import check_input_shape, fresh_onnx_file, inference_files, require
from paddleprune.deploy.export import convert_to_onnx_bytes, export_inference_model, preserved_layer_state
from paddleprune.errors import InvalidParameterError

logger = logging.getLogger(__name__)

BACKENDS = ("paddle_inference", "onnxruntime", "dygraph")

# oneDNN/PIR segfaults building the FusedConv2dOp of conv(+BN)+leaky_relu (reference/
# paddle3_feasibility.md section 5). Deleting the activation fuse pass avoids it and keeps the BN
# folds: deleting "conv2d_bn_onednn_fuse_pass" / "conv2d_bias_bn_onednn_fuse_pass" instead (as
# before issue #14) left every BN unfolded and made MobileNetV2 2.2x slower at batch 1
# (benchmarks/paddle_inference_overhead.py). Deleted only for programs holding leaky_relu.
ONEDNN_DELETED_PASSES = ("conv_activation_onednn_fuse_pass",)


def onednn_deleted_passes(model_file):
    """The oneDNN passes to delete for ``model_file``: :data:`ONEDNN_DELETED_PASSES` when the
    program holds a leaky_relu, else none."""
    with open(model_file, encoding="utf-8") as f:
        return ONEDNN_DELETED_PASSES if '.leaky_relu"' in f.read() else ()


def check_backends(owner, backends):
    """Return ``backends`` as a tuple of known names, without duplicates."""
    if isinstance(backends, str):
        backends = (backends,)
    if not isinstance(backends, (list, tuple)) or not backends:
        raise InvalidParameterError(f"{owner}: 'backends' must be a non-empty list drawn from {list(BACKENDS)}; "
                                    f"got {backends!r}.")
    for b in backends:
        if b not in BACKENDS:
            raise InvalidParameterError(f"{owner}: unknown backend {b!r}; 'backends' must be drawn from "
                                        f"{list(BACKENDS)}.")
    return tuple(dict.fromkeys(backends))


def as_feeds(x):
    """``x`` as a list of arrays, one per model input."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def sample_input(shape, seed=0):
    """A fixed float32 input in [0, 1) of ``shape`` (same for every backend and model)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


class ModelSource:
    """A dygraph network or an exported directory; exports and converts on demand into a
    private temporary folder (removed by :meth:`close`), never into the user's directory."""

    def __init__(self, owner, model, input_shape):
        import paddle.nn as nn

        self.owner = owner
        self.input_shape = check_input_shape(owner, input_shape)
        self._tmp = None
        if isinstance(model, nn.Layer):
            self.net, self.save_dir = model, None
        elif isinstance(model, (str, os.PathLike)):
            inference_files(owner, model)
            self.net, self.save_dir = None, os.fspath(model)
        else:
            raise InvalidParameterError(f"{owner}: a model must be a paddle.nn.Layer or an exported model "
                                        f"directory; got {type(model).__name__}.")

    def _tmpdir(self):
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="paddleprune-deploy-")
        return self._tmp

    def paddle_files(self):
        """``(model.json, model.pdiparams)``, exporting the network first if needed."""
        if self.save_dir is None:
            self.save_dir = export_inference_model(self.net, os.path.join(self._tmpdir(), "inference"),
                                                   self.input_shape)
        return inference_files(self.owner, self.save_dir)

    def onnx_file(self):
        """An ONNX file of the model: ``save_dir/model.onnx`` when it is up to date, else a
        conversion into the temporary folder."""
        model_file, params_file = self.paddle_files()
        existing = fresh_onnx_file(self.save_dir)
        if existing is not None:
            return existing
        path = os.path.join(self._tmpdir(), "model.onnx")
        if not os.path.isfile(path):
            with open(path, "wb") as f:
                f.write(convert_to_onnx_bytes(model_file, params_file, owner=self.owner))
        return path

    def close(self):
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class PaddleInferenceRunner:
    """A Paddle Inference predictor on CPU with ``threads`` math threads, oneDNN on or off."""

    def __init__(self, model_file, params_file, threads=2, onednn=True):
        from paddle import inference

        config = inference.Config(model_file, params_file)
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if onednn:
            config.enable_mkldnn()
            for name in onednn_deleted_passes(model_file):
                config.delete_pass(name)
        else:
            config.disable_mkldnn()  # Paddle 3.3 CPU builds turn oneDNN on by default
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)
        self._inputs = [self.predictor.get_input_handle(n) for n in self.predictor.get_input_names()]
        self._outputs = [self.predictor.get_output_handle(n) for n in self.predictor.get_output_names()]

    def __call__(self, x):
        feeds = as_feeds(x)
        if len(feeds) != len(self._inputs):
            raise InvalidParameterError(f"the model has {len(self._inputs)} inputs; got {len(feeds)} arrays.")
        for handle, array in zip(self._inputs, feeds):
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        self.predictor.run()
        return [h.copy_to_cpu() for h in self._outputs]

    def close(self):
        self.predictor = self._inputs = self._outputs = None


class OnnxRuntimeRunner:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (1 inter-op thread)."""

    def __init__(self, onnx_file, threads=2, owner="onnxruntime"):
        ort = require("onnxruntime", owner)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: paddle2onnx leaves unused initializers behind
        self.session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self.session.get_inputs()]

    def __call__(self, x):
        feeds = as_feeds(x)
        if len(feeds) != len(self._names):
            raise InvalidParameterError(f"the model has inputs {self._names}; got {len(feeds)} arrays.")
        return list(self.session.run(None, dict(zip(self._names, feeds))))

    def close(self):
        self.session = None


class DygraphRunner:
    """The network itself under ``paddle.no_grad`` in eval mode (restored by :meth:`close`)."""

    def __init__(self, net):
        import paddle

        self._paddle = paddle
        self.net = net
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(preserved_layer_state(net))

    def __call__(self, x):
        paddle = self._paddle
        with paddle.no_grad():
            out = self.net(*[paddle.to_tensor(a) for a in as_feeds(x)])
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.numpy() for o in outs]

    def close(self):
        self._stack.close()


def open_runner(backend, source, threads=2, onednn=True):
    """Build the runner of ``backend`` for a :class:`ModelSource`.

    Raises ImportError when the backend's package is missing, and whatever the backend
    raises when it cannot load the model.
    """
    if backend == "paddle_inference":
        return PaddleInferenceRunner(*source.paddle_files(), threads=threads, onednn=onednn)
    if backend == "onnxruntime":
        require("onnxruntime", source.owner)  # before paying for a conversion
        return OnnxRuntimeRunner(source.onnx_file(), threads=threads, owner=source.owner)
    if backend == "dygraph":
        if source.net is None:
            raise InvalidParameterError(f"{source.owner}: the 'dygraph' backend needs a paddle.nn.Layer, "
                                        f"not the exported directory {source.save_dir!r}.")
        return DygraphRunner(source.net)
    raise InvalidParameterError(f"{source.owner}: unknown backend {backend!r}; expected one of {list(BACKENDS)}.")
