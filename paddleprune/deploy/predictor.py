"""``Predictor``: an exported model folder (``model.yml`` with ``status: Infer``) run on Paddle
Inference or ONNX Runtime with the task's own pre- and post-processing (PaddleX 1.x
``paddlex.deploy.Predictor``). No dygraph weights are needed."""
import inspect
import logging
import os

import numpy as np

from paddleprune.deploy.common import MODEL_FILENAME, ONNX_FILENAME, PARAMS_FILENAME
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError

logger = logging.getLogger(__name__)

__all__ = ["Predictor", "read_infer_info"]

PREDICTOR_BACKENDS = ("paddle", "onnxruntime")


def read_infer_info(model_dir, owner="Predictor"):
    """The ``model.yml`` dict of an exported folder (``status: Infer``), with ``_dir`` set."""
    from paddleprune.tasks.checkpoint import parse_model_yml

    if not isinstance(model_dir, (str, os.PathLike)) or not os.path.isdir(model_dir):
        raise DataNotFoundError(f"{owner}: exported model folder not found: {model_dir!r}")
    path = os.path.join(os.fspath(model_dir), "model.yml")
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{owner}: {path!r} not found; export the model with `paddleprune export` "
                                "or model.export_inference_model(dir).")
    info = parse_model_yml(path)
    if info["status"] != "Infer":
        raise DataFormatError(f"status {info['status']!r}: a Predictor needs an exported model (status 'Infer'); "
                              f"run `paddleprune export --model-dir {model_dir} --save-dir OUT` first", path)
    info["_dir"] = os.fspath(model_dir)
    return info


class Predictor:
    """Predict with an exported model folder.

    Parameters
    ----------
    model_dir : str or os.PathLike
        A folder written by ``paddleprune export`` / ``model.export_inference_model``:
        ``model.yml`` plus ``model.json`` + ``model.pdiparams`` (backend 'paddle') or
        ``model.onnx`` (backend 'onnxruntime').
    backend : {'paddle', 'onnxruntime'}
    threads : int, default 2
        Math-library / intra-op threads.
    onednn : bool or None, default None
        Paddle Inference with oneDNN; None tries oneDNN on a sample input and falls back
        to the plain CPU kernels when oneDNN cannot run the program (e.g. interpolate).

    Raises
    ------
    DataNotFoundError
        The folder, ``model.yml`` or the backend's model file is missing.
    DataFormatError
        ``model.yml`` is malformed or not ``status: Infer``.
    InvalidParameterError
        An unknown backend or a bad ``threads``.
    """

    def __init__(self, model_dir, backend="paddle", threads=2, onednn=None):
        from paddleprune.utils.checks import check_int

        owner = "Predictor"
        if backend not in PREDICTOR_BACKENDS:
            raise InvalidParameterError(f"{owner}: 'backend' must be one of {list(PREDICTOR_BACKENDS)}; "
                                        f"got {backend!r}.")
        self.threads = check_int(owner, "threads", threads, 1)
        self.info = read_infer_info(model_dir, owner)
        self.model_dir, self.backend = os.fspath(model_dir), backend
        from paddleprune.tasks.checkpoint import task_from_info
        self.task = task_from_info(self.info)
        self.onednn = None
        self._runner = self._open(owner, onednn)

    def _file(self, owner, name):
        path = os.path.join(self.model_dir, name)
        if not os.path.isfile(path):
            hint = "--format onnx or both" if name == ONNX_FILENAME else "--format paddle or both"
            raise DataNotFoundError(f"{owner}: {path!r} not found; backend {self.backend!r} needs it "
                                    f"(export with `paddleprune export ... {hint}`).")
        return path

    def _open(self, owner, onednn):
        from paddleprune.deploy.runners import OnnxRuntimeRunner, PaddleInferenceRunner

        if self.backend == "onnxruntime":
            return OnnxRuntimeRunner(self._file(owner, ONNX_FILENAME), self.threads, owner)
        files = self._file(owner, MODEL_FILENAME), self._file(owner, PARAMS_FILENAME)
        if onednn is not None:
            self.onednn = bool(onednn)
            return PaddleInferenceRunner(*files, threads=self.threads, onednn=self.onednn)
        try:
            runner = PaddleInferenceRunner(*files, threads=self.threads, onednn=True)
            runner(self.task.sample_feeds(self._sample_shape()))
            self.onednn = True
            return runner
        except Exception as exc:  # oneDNN under PIR cannot run some programs
            logger.info("%s: oneDNN cannot run %s (%s: %s); using the plain CPU kernels", owner, self.model_dir,
                        type(exc).__name__, str(exc).strip()[:200])
            self.onednn = False
            return PaddleInferenceRunner(*files, threads=self.threads, onednn=False)

    def _sample_shape(self):
        attrs = self.info.get("_Attributes") or {}
        shape = attrs.get("flops_input_shape") or attrs.get("input_shape") or [1, 3, 224, 224]
        return [1] + [int(d) for d in shape[1:]]

    def _run(self, feeds):
        if self.backend == "onnxruntime" and not self.task.onnx_batch and len(feeds[0]) > 1:
            parts = [self._runner([f[i:i + 1] for f in feeds]) for i in range(len(feeds[0]))]
            return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(parts[0]))]
        return self._runner(feeds)

    def batch_predict(self, img_file_list, transforms=None, **options):
        """One result per image, as the task's ``batch_predict`` (``topk=`` for classifiers)."""
        owner = f"Predictor({self.info['Model']}).batch_predict"
        if not isinstance(img_file_list, (list, tuple)) or not img_file_list:
            raise InvalidParameterError(f"{owner}: 'img_file_list' must be a non-empty list of paths or arrays; "
                                        f"got {type(img_file_list).__name__}.")
        accepted = [n for n in inspect.signature(self.task.predict_results).parameters if n not in ("outputs", "context")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise InvalidParameterError(f"{owner}: unknown option(s) {unknown}; a {self.info['Model']} takes "
                                        f"{accepted or 'none'}.")
        if "topk" in options:
            self.task.check_topk(owner, options["topk"])
        feeds, context = self.task.predict_inputs(owner, list(img_file_list), transforms)
        return self.task.predict_results(self._run(feeds), context, **options)

    def predict(self, img_file, transforms=None, **options):
        """Predict one image (a path or an ``H x W x 3`` RGB array), or a list of them: the
        same result as the task's ``predict`` (classes; boxes; label and score maps)."""
        if isinstance(img_file, (list, tuple)):
            return self.batch_predict(img_file, transforms, **options)
        return self.batch_predict([img_file], transforms, **options)[0]

    def close(self):
        if self._runner is not None:
            self._runner.close()
            self._runner = None
