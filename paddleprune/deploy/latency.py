"""CPU latency of exported models: Paddle Inference (oneDNN on/off), ONNX Runtime, dygraph.

This machine is noisy (about +-30 % between runs), so compare models with
:func:`compare_latency`, which times them interleaved in the same rounds, and read the
ratios rather than the absolute figures.
"""
import logging
import time

import numpy as np

from paddleprune.utils.checks import check_int
from paddleprune.deploy.runners import ModelSource, check_backends, open_runner, sample_input
from paddleprune.errors import DataNotFoundError, InvalidParameterError

logger = logging.getLogger(__name__)

_USER_ERRORS = (InvalidParameterError, DataNotFoundError)


def summarize(times_s):
    """``{"median_ms", "p90_ms", "mean_ms", "min_ms", "runs"}`` of per-run times in seconds."""
    ms = np.asarray(times_s, dtype=np.float64) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "runs": int(ms.size)}


def _time_interleaved(runners, x, warmup, repeats):
    """Per-run seconds of each runner, timed in rounds A,B,..; B,A,.. (order flips every round
    so neither model always runs right after the other)."""
    keys = list(runners)
    times = {k: [] for k in keys}
    for i in range(warmup + repeats):
        for k in (keys if i % 2 == 0 else keys[::-1]):
            t0 = time.perf_counter()
            runners[k](x)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[k].append(dt)
    return times


def _check_common(owner, threads, warmup, repeats):
    return (check_int(owner, "threads", threads), check_int(owner, "warmup", warmup, 0),
            check_int(owner, "repeats", repeats))


def _run_backend(owner, backend, sources, x, threads, onednn, warmup, repeats):
    """``(times, None)`` with per-run seconds of every source on one backend, or ``(None, message)``."""
    runners = {}
    name = None
    try:
        for name, source in sources.items():
            runners[name] = open_runner(backend, source, threads=threads, onednn=onednn)
            runners[name](x)  # fail here, with the model's name, rather than in the timing loop
        name = None
        return _time_interleaved(runners, x, warmup, repeats), None
    except _USER_ERRORS:
        raise
    except Exception as e:  # a missing package or a model the backend cannot load/run
        where = f"model {name!r}: " if name is not None and len(sources) > 1 else ""
        message = f"{where}{type(e).__name__}: {str(e).strip()}"
        if backend == "paddle_inference" and onednn:
            message += " (oneDNN under PIR cannot run some ops, e.g. interpolate; onednn=False avoids it)"
        logger.warning("%s: backend %s skipped: %s", owner, backend, message)
        return None, message
    finally:
        for runner in runners.values():
            runner.close()


def _open_sources(owner, models, input_shape, backends):
    sources = {}
    try:
        for name, model in models.items():
            sources[name] = ModelSource(owner, model, input_shape)
            if "dygraph" in backends and sources[name].net is None:
                which = f" (model {name!r})" if len(models) > 1 else ""
                raise InvalidParameterError(f"{owner}: the 'dygraph' backend needs a paddle.nn.Layer, not the "
                                            f"directory {sources[name].save_dir!r}{which}.")
    except BaseException:
        for s in sources.values():
            s.close()
        raise
    return sources


def compare_latency(models, input_shape, backends=("paddle_inference", "onnxruntime"), threads=2,
                    warmup=10, repeats=50, onednn=True, feeds=None):
    """Time several models interleaved (A, B, B, A, ...) on each backend and compare them to the first.

    Parameters
    ----------
    models : dict
        ``{name: paddle.nn.Layer or exported model directory}``; the first entry is the
        reference for the ratios. Layers are exported (and converted to ONNX) into a
        temporary folder; a directory's ``model.onnx`` is used when it is up to date.
    input_shape : sequence of int
        Concrete input shape, e.g. ``[1, 3, 224, 224]``. The same fixed random input is fed
        to every model.
    backends : sequence of str, default ('paddle_inference', 'onnxruntime')
        Any of ``'paddle_inference'``, ``'onnxruntime'``, ``'dygraph'`` (Layers only).
    threads : int, default 2
        Paddle Inference math-library threads / ONNX Runtime intra-op threads.
    warmup, repeats : int, default 10, 50
        Untimed and timed runs per model (rounds are interleaved in both phases).
    onednn : bool, default True
        Paddle Inference with oneDNN (minus the two conv+BN fuse passes that crash on
        conv+BN+LeakyReLU) or with the plain CPU kernels.
    feeds : list of numpy.ndarray, optional
        The inputs to feed, one array per model input (e.g. a detector's image and image
        size); default: fixed random data of ``input_shape``.

    Returns
    -------
    dict
        ``{backend: {"models": {name: {"median_ms", "p90_ms", "mean_ms", "min_ms", "runs"}},
        "ratio": {name: median / median of the first}, "paired_ratio": {name: median over
        rounds of (time / time of the first in the same round)}}}``, or
        ``{backend: {"error": message}}`` for a backend whose package is missing or which
        cannot load or run one of the models. A ratio below 1 means faster than the first.

    Raises
    ------
    InvalidParameterError
        On a malformed argument, an unknown backend, or ``'dygraph'`` with a directory.
    DataNotFoundError
        If a model directory or its ``model.json`` / ``model.pdiparams`` is missing.
    """
    owner = "compare_latency"
    if not isinstance(models, dict) or not models or not all(isinstance(k, str) for k in models):
        raise InvalidParameterError(f"{owner}: 'models' must be a non-empty dict {{name: Layer or directory}}; "
                                    f"got {models!r}.")
    backends = check_backends(owner, backends)
    threads, warmup, repeats = _check_common(owner, threads, warmup, repeats)
    sources = _open_sources(owner, models, input_shape, backends)
    try:
        x = feeds if feeds is not None else sample_input(next(iter(sources.values())).input_shape)
        report = {}
        for backend in backends:
            times, error = _run_backend(owner, backend, sources, x, threads, bool(onednn), warmup, repeats)
            if error is not None:
                report[backend] = {"error": error}
                continue
            first = next(iter(times.values()))
            stats = {name: summarize(t) for name, t in times.items()}
            base = stats[next(iter(stats))]["median_ms"]
            report[backend] = {
                "models": stats,
                "ratio": {name: s["median_ms"] / base for name, s in stats.items()},
                "paired_ratio": {name: float(np.median(np.asarray(t) / np.asarray(first)))
                                 for name, t in times.items()},
            }
        return report
    finally:
        for s in sources.values():
            s.close()


def measure_latency(model, input_shape, backends=("paddle_inference", "onnxruntime"), threads=2, warmup=10,
                    repeats=50, onednn=True):
    """Latency of one model on each backend.

    Parameters
    ----------
    model : paddle.nn.Layer or str or os.PathLike
        A dygraph network (exported to a temporary folder for the inference backends) or a
        directory written by :func:`~paddleprune.deploy.export_inference_model`.
    input_shape, backends, threads, warmup, repeats, onednn
        As in :func:`compare_latency`.

    Returns
    -------
    dict
        ``{backend: {"median_ms", "p90_ms", "mean_ms", "min_ms", "runs"}}``, or
        ``{backend: {"error": message}}`` for a backend that is not installed or cannot run
        the model.

    Raises
    ------
    InvalidParameterError, DataNotFoundError
        As in :func:`compare_latency`.
    """
    owner = "measure_latency"
    backends = check_backends(owner, backends)
    threads, warmup, repeats = _check_common(owner, threads, warmup, repeats)
    sources = _open_sources(owner, {"model": model}, input_shape, backends)
    try:
        x = sample_input(sources["model"].input_shape)
        report = {}
        for backend in backends:
            times, error = _run_backend(owner, backend, sources, x, threads, bool(onednn), warmup, repeats)
            report[backend] = {"error": error} if error is not None else summarize(times["model"])
        return report
    finally:
        sources["model"].close()
