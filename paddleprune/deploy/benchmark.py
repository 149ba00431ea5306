"""``paddleprune benchmark``: latency (median, p90) of exported models, interleaved across the
models, per backend and batch size, with size, params and FLOPs. The pipeline report times
its models with :func:`time_exported` too."""
import logging
import os

from paddleprune.deploy.latency import compare_latency
from paddleprune.deploy.size import model_size_mb
from paddleprune.errors import InvalidParameterError
from paddleprune.utils.checks import check_int

logger = logging.getLogger(__name__)

__all__ = ["benchmark", "time_exported", "to_table"]

BENCH_BACKENDS = ("paddle_inference", "onnxruntime")


def _label(backend, onednn, threads):
    n = f"{threads} thread" + ("s" if threads > 1 else "")
    if backend == "onnxruntime":
        return f"ONNX Runtime ({n})"
    return f"Paddle Inference ({'oneDNN' if onednn else 'no oneDNN'}, {n})"


def time_exported(dirs, feeds_for, batches, backends=BENCH_BACKENDS, threads=2, warmup=10, repeats=50,
                  onnx_batch=True):
    """``{label: {str(batch): compare_latency's report of one backend}}`` for exported folders.

    ``feeds_for(batch)`` gives the input arrays of a batch. Paddle Inference runs with oneDNN
    and, when oneDNN cannot run a model, without it (the label says which). With
    ``onnx_batch=False`` ONNX Runtime is timed at batch 1 only (detection: paddle2onnx's NMS
    is correct at batch 1 only).
    """
    table = {}
    for backend in backends:
        onednn = True
        for batch in batches:
            if backend == "onnxruntime" and not onnx_batch and batch > 1:
                logger.warning("ONNX Runtime at batch %d skipped: this model's ONNX form runs one image at a time",
                               batch)
                continue
            feeds = feeds_for(batch)
            shape = list(feeds[0].shape)
            options = dict(backends=(backend,), threads=threads, warmup=warmup, repeats=repeats, feeds=feeds)
            timing = compare_latency(dirs, shape, onednn=onednn, **options)[backend]
            if "error" in timing and backend == "paddle_inference" and onednn:
                logger.warning("oneDNN latency failed (%s); measuring without oneDNN", timing["error"])
                onednn = False
                timing = compare_latency(dirs, shape, onednn=False, **options)[backend]
            if "error" in timing:
                logger.warning("%s latency at batch %d failed: %s", backend, batch, timing["error"])
                continue
            table.setdefault(_label(backend, onednn, threads), {})[str(batch)] = timing
    return table


def benchmark(model_dirs, batches=(1,), threads=2, backends=BENCH_BACKENDS, warmup=10, repeats=50):
    """Benchmark exported model folders side by side (``paddleprune benchmark``).

    Parameters
    ----------
    model_dirs : list of str
        Folders written by ``paddleprune export`` (``model.yml`` with ``status: Infer``),
        all with the same input size; the first is the reference of the ratios.
    batches : sequence of int, default (1,)
    threads : int, default 2
    backends : sequence of {'paddle_inference', 'onnxruntime'}
    warmup, repeats : int, default 10, 50

    Returns
    -------
    dict
        ``{"models": {name: {"dir", "size_mb", "params", "flops"}}, "latency": {label: {batch:
        {"models": {name: {"median_ms", "p90_ms", ...}}, "ratio": ..., "paired_ratio": ...}}}}``.

    Raises
    ------
    InvalidParameterError
        No folder, a bad batch / threads, or folders of different input sizes.
    DataNotFoundError, DataFormatError
        A folder that is not an exported model.
    """
    from paddleprune.deploy.predictor import read_infer_info
    from paddleprune.tasks.checkpoint import task_from_info

    owner = "benchmark"
    if not isinstance(model_dirs, (list, tuple)) or not model_dirs:
        raise InvalidParameterError(f"{owner}: 'model_dirs' must be a non-empty list of exported folders; "
                                    f"got {model_dirs!r}.")
    batches = [check_int(owner, "batches", b, 1) for b in batches]
    threads = check_int(owner, "threads", threads, 1)
    bad = [b for b in backends if b not in BENCH_BACKENDS]
    if bad or not backends:
        raise InvalidParameterError(f"{owner}: 'backends' must be drawn from {list(BENCH_BACKENDS)}; got {backends!r}.")
    models, dirs, tasks, shapes = {}, {}, [], {}
    for d in model_dirs:
        info = read_infer_info(d, owner)
        name = os.path.basename(os.path.normpath(os.fspath(d)))
        name = name if name not in dirs else f"{name}_{len(dirs)}"
        attrs = info.get("_Attributes") or {}
        shapes[name] = list((attrs.get("flops_input_shape") or attrs.get("input_shape") or [1, 3, 224, 224])[1:])
        inputs = [i[0] for i in (info.get("_ModelInputsOutputs") or {}).get("inputs", [])]
        dirs[name], task = os.fspath(d), task_from_info(info)
        tasks.append(task)
        models[name] = {"dir": dirs[name], "size_mb": round(model_size_mb(d), 3), "params": attrs.get("params"),
                        "flops": attrs.get("flops"), "input_shape": [1] + shapes[name]}
        shapes[name] = (inputs, shapes[name])
    if len({repr(s) for s in shapes.values()}) > 1:
        raise InvalidParameterError(f"{owner}: the models take different inputs {shapes} (names, [C, H, W]); "
                                    "benchmark models of one task and input size together (export them with "
                                    "the same --fixed-input-shape).")
    first, shape = tasks[0], next(iter(shapes.values()))[1]
    latency = time_exported(dirs, lambda b: first.sample_feeds([b] + shape), batches, backends, threads, warmup,
                            repeats, onnx_batch=all(t.onnx_batch for t in tasks))
    return {"models": models, "latency": latency}


def _num(v, scale, fmt):
    return f"{'-':>9}" if v is None else format(v / scale, fmt)


def to_table(result):
    """Plain-text table of :func:`benchmark`'s result."""
    models = result["models"]
    width = max(12, *(len(n) for n in models))
    lines = [f"{'model':{width}} {'size MB':>8} {'params M':>9} {'MFLOPs':>9}"]
    for name, m in models.items():
        lines.append(f"{name:{width}} {m['size_mb']:8.2f} {_num(m['params'], 1e6, '9.3f')} "
                     f"{_num(m['flops'], 1e6, '9.1f')}")
    lines += ["", f"{'backend':36} {'batch':>5} {'model':{width}} {'median ms':>10} {'p90 ms':>8} {'vs first':>8}"]
    for label, by_batch in result["latency"].items():
        for batch, timing in by_batch.items():
            for name, s in timing["models"].items():
                lines.append(f"{label:36} {batch:>5} {name:{width}} {s['median_ms']:10.3f} {s['p90_ms']:8.3f} "
                             f"{timing['paired_ratio'][name]:8.3f}")
    lines.append("(vs first: median over interleaved rounds of time / time of the first model)")
    return "\n".join(lines)
