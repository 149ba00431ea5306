"""Measure models (params, FLOPs, metric, exported size, latency) and write the report."""
import json
import logging
import os

from paddleprune.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)


def measure(models, eval_dataset, input_shape, save_dir, batch_size=64, latency=True):
    """``{name: {params, flops, metric_name, metric, size_mb, latency_ms_cpu}}`` for task models."""
    from paddleprune.deploy import compare_latency, export_inference_model, model_size_mb
    from paddleprune.prune import count_params, dygraph_flops
    out, dirs = {}, {}
    for name, model in models.items():
        metrics = model.evaluate(eval_dataset, batch_size=batch_size)
        metric_name = next(iter(metrics))
        export_dir = os.path.join(save_dir, "inference", name)
        export_inference_model(model.net, export_dir, input_shape)
        dirs[name] = export_dir
        out[name] = {"params": int(count_params(model.net)), "flops": int(dygraph_flops(model.net, input_shape)),
                     "metric_name": metric_name, "metric": float(metrics[metric_name]),
                     "size_mb": round(model_size_mb(export_dir), 3), "latency_ms_cpu": None}
    if latency:
        backend = "paddle_inference (oneDNN, 2 threads)"
        timing = compare_latency(dirs, input_shape, backends=("paddle_inference",))["paddle_inference"]
        if "error" in timing:          # oneDNN under PIR cannot run some ops (interpolate)
            logger.warning("oneDNN latency failed (%s); measuring without oneDNN", timing["error"])
            backend = "paddle_inference (no oneDNN, 2 threads)"
            timing = compare_latency(dirs, input_shape, backends=("paddle_inference",),
                                     onednn=False)["paddle_inference"]
        for name in models:
            out[name]["latency_ms_cpu"] = round(timing["models"][name]["median_ms"], 3)
        out["backend"] = backend + ", batch 1, median of interleaved runs"
    return out


def _row(label, o, p, fmt, points=False):
    if o is None or p is None:
        return f"| {label} | {o} | {p} | |"
    if points:                          # a metric: the change in points, as seed 004 reports it
        return f"| {label} | {fmt(o)} | {fmt(p)} | {100 * (p - o):+.2f} points |"
    change = (p / o - 1) if o else 0.0
    return f"| {label} | {fmt(o)} | {fmt(p)} | {change:+.1%} |"


def to_markdown(report):
    o, p = report["original"], report["pruned"]
    lines = [f"# Pruning report: {report['model']} ({report['task']})", "",
             f"Data: `{report['dataset']}`; sensitivities: `{report['sensitivities_file']}`; "
             f"eval_metric_loss={report['eval_metric_loss']}"
             + (f"; FLOPs target {report['pruned_flops_target']}" if report.get("pruned_flops_target") else ""), "",
             "| | original | pruned | change |", "|---|---|---|---|",
             _row("params", o["params"], p["params"], lambda v: f"{v:,}"),
             _row("FLOPs", o["flops"], p["flops"], lambda v: f"{v / 1e6:,.1f} M"),
             _row(o["metric_name"] + " (%)", o["metric"], p["metric"], lambda v: f"{100 * v:.2f}", points=True),
             _row("exported size (MB)", o["size_mb"], p["size_mb"], lambda v: f"{v:.2f}"),
             _row("CPU latency (ms)", o["latency_ms_cpu"], p["latency_ms_cpu"], lambda v: f"{v:.2f}"), ""]
    if report.get("latency_backend"):
        lines.append(f"Latency: {report['latency_backend']}.")
    lines.append(f"Total time: {report['seconds']} s.")
    return "\n".join(lines) + "\n"


def write_report(save_dir, report):
    atomic_write_text(os.path.join(save_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    text = to_markdown(report)
    atomic_write_text(os.path.join(save_dir, "report.md"), text)
    logger.info("report written to %s", os.path.join(save_dir, "report.md"))
    return text
