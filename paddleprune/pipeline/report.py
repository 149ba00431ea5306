"""Measure models (params, FLOPs, metric, exported size, latency) and write the report."""
import json
import logging
import os

from paddleprune.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

#: Threads per timed model. One: at the pipeline's small inputs a second thread saves less than
#: it costs to synchronise (MobileNetV2 x0.25, 32 x 32, batch 1 on Paddle Inference: 2.5 ms with
#: one thread, 5.5 ms with two on this shared 2-core machine; benchmarks/paddle_inference_overhead.py).
LATENCY_THREADS = 1


def measure(models, eval_dataset, input_shape, save_dir, batch_size=64, latency=True, latency_batches=(1, 32)):
    """``{name: {params, flops, metric_name, metric, size_mb, latency_ms_cpu}}`` for task models,
    plus ``"latency"``: ``{backend: {batch: {name: median ms, ..., "ratio": paired ratio}}}``.

    Models are exported as a user exports them (``export_inference_model``, dynamic batch,
    the task's inputs and post-processing) and timed interleaved, at each of
    ``latency_batches``, on Paddle Inference and ONNX Runtime with the task's sample
    inputs; ``latency_ms_cpu`` is Paddle Inference at batch 1 (None if it could not run).
    """
    from paddleprune.deploy import model_size_mb
    from paddleprune.prune import count_params, dygraph_flops
    out, dirs = {}, {}
    height, width = input_shape[2:]
    for name, model in models.items():
        metrics = model.evaluate(eval_dataset, batch_size=batch_size)
        metric_name = next(iter(metrics))
        dirs[name] = model.export_inference_model(os.path.join(save_dir, "inference", name),
                                                  fixed_input_shape=[width, height])
        out[name] = {"params": int(count_params(model.net)), "flops": int(dygraph_flops(model.net, input_shape)),
                     "metric_name": metric_name, "metric": float(metrics[metric_name]),
                     "size_mb": round(model_size_mb(dirs[name]), 3), "latency_ms_cpu": None}
    if latency:
        first = next(iter(models.values()))
        out["latency"] = time_models(dirs, input_shape, latency_batches, first.sample_feeds)
        paddle_inference = next((rows for label, rows in out["latency"].items()
                                 if label.startswith("Paddle Inference")), {})
        if "1" in paddle_inference:
            for name in models:
                out[name]["latency_ms_cpu"] = paddle_inference["1"][name]
    return out


def time_models(dirs, input_shape, batches, sample_feeds=None):
    """Median latency (ms) of exported models, interleaved, per backend and batch size
    (:func:`paddleprune.deploy.benchmark.time_exported`, as ``paddleprune benchmark``);
    ``sample_feeds(shape)`` gives the inputs for an image batch of ``shape`` (default: the
    image alone)."""
    from paddleprune.deploy.benchmark import time_exported
    from paddleprune.deploy.runners import sample_input

    def feeds_for(batch):
        shape = [batch] + list(input_shape[1:])
        return sample_feeds(shape) if sample_feeds is not None else [sample_input(shape)]

    table = {}
    for label, by_batch in time_exported(dirs, feeds_for, batches, threads=LATENCY_THREADS).items():
        for batch, timing in by_batch.items():
            row = {name: round(s["median_ms"], 3) for name, s in timing["models"].items()}
            row["ratio"] = {name: round(r, 3) for name, r in timing["paired_ratio"].items()}
            table.setdefault(label, {})[batch] = row
    return table


def _row(label, o, p, fmt, points=False):
    if o is None or p is None:
        return f"| {label} | {o} | {p} | |"
    if points:                          # a metric: the change in points, as seed 004 reports it
        return f"| {label} | {fmt(o)} | {fmt(p)} | {100 * (p - o):+.2f} points |"
    change = (p / o - 1) if o else 0.0
    return f"| {label} | {fmt(o)} | {fmt(p)} | {change:+.1%} |"


def to_markdown(report):
    o, p = report["original"], report["pruned"]
    params = ", ".join(f"{k}={v}" for k, v in (report.get("model_params") or {}).items()
                       if not isinstance(v, (list, tuple)) or len(v) <= 4)    # anchors stay in report.json
    lines = [f"# Pruning report: {report['model']}" + (f" ({params})" if params else "") + f", {report['task']}", "",
             f"Data: `{report['dataset']}`; sensitivities: `{report['sensitivities_file']}`; "
             f"eval_metric_loss={report['eval_metric_loss']}"
             + (f"; channels kept in multiples of {report['round_to']}" if (report.get("round_to") or 1) > 1 else "")
             + (f"; FLOPs target {report['pruned_flops_target']}" if report.get("pruned_flops_target") else ""), "",
             "| | original | pruned | change |", "|---|---|---|---|",
             _row("params", o["params"], p["params"], lambda v: f"{v:,}"),
             _row("FLOPs", o["flops"], p["flops"], lambda v: f"{v / 1e6:,.1f} M"),
             _row(o["metric_name"] + " (%)", o["metric"], p["metric"], lambda v: f"{100 * v:.2f}", points=True),
             _row("exported size (MB)", o["size_mb"], p["size_mb"], lambda v: f"{v:.2f}"),
             ""]
    latency = report.get("latency") or {}
    if latency:
        lines += ["| latency (median ms, interleaved runs) | original | pruned | pruned / original |",
                  "|---|---|---|---|"]
        for backend, by_batch in latency.items():
            for batch, row in by_batch.items():
                lines.append(f"| {backend}, batch {batch} | {row['original']:.2f} | {row['pruned']:.2f} | "
                             f"{row['ratio']['pruned']:.2f} |")
        lines += ["", "The ratio is the median over rounds of pruned time / original time in the same round.", ""]
    lines.append(f"Total time: {report['seconds']} s.")
    return "\n".join(lines) + "\n"


def write_report(save_dir, report):
    atomic_write_text(os.path.join(save_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    text = to_markdown(report)
    atomic_write_text(os.path.join(save_dir, "report.md"), text)
    logger.info("report written to %s", os.path.join(save_dir, "report.md"))
    return text
