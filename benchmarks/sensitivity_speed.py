"""Sensitivity analysis speed: naive, dygraph (masks + activation reuse) and runtime (ONNX Runtime)
methods on the same layers, ratios and fixed eval set, side by side in one run.

Run: python benchmarks/sensitivity_speed.py [--models mobilenet_v2_x0.5@32,resnet18@32,mobilenet_v2_x1.0@224]
     [--groups N] [--images N] [--ratios N] [--methods runtime,dygraph,naive]

For each model it prints each method's time, its speed-up over naive, the largest |difference| of its
values from naive's and the share of equal points; then one unpruned evaluation of the same batches on
dygraph, Paddle Inference (oneDNN) and ONNX Runtime (why the runtime method uses ONNX Runtime).
Defaults per model (groups, images, ratios) keep the naive run of the 224 x 224 model short.
"""
import argparse
import logging
import os
import tempfile
import time

import numpy as np
import paddle
import paddle.vision.models as models

from paddleprune.prune import L1NormFilterPruner

#: name -> (builder, default groups (0 = all), default images, default number of ratios)
MODELS = {
    "mobilenet_v2_x0.5": (lambda: models.mobilenet_v2(scale=0.5, num_classes=10), 0, 256, 9),
    "resnet18": (lambda: models.resnet18(num_classes=10), 0, 256, 9),
    "mobilenet_v2_x1.0": (lambda: models.mobilenet_v2(scale=1.0, num_classes=10), 4, 64, 3),
}
ALL_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _fixed_eval(model, images, size, batch=64):
    batches = [paddle.uniform([min(batch, images - i), 3, size, size], min=-1, max=1)
               for i in range(0, images, batch)]
    with paddle.no_grad():
        labels = [paddle.argmax(o + 0.3 * o.std() * paddle.randn(o.shape), axis=1)
                  for o in (model(b) for b in batches)]

    def score(outputs):
        return float(np.mean([(paddle.argmax(o, axis=1) == l).astype("float32").mean().item()
                              for o, l in zip(outputs, labels)]))

    def eval_func():
        with paddle.no_grad():
            return score([model(b) for b in batches])
    return batches, score, eval_func


def _one_evaluation(model, batches, size):
    """ms of one unpruned evaluation of ``batches`` per backend (median of 3)."""
    from paddleprune.deploy.export import convert_to_onnx_bytes, export_inference_model
    from paddleprune.deploy.runners import OnnxRuntimeRunner, PaddleInferenceRunner
    from paddleprune.prune.runtime_eval import cpu_threads
    arrays = [b.numpy() for b in batches]
    with tempfile.TemporaryDirectory() as tmp:
        d = export_inference_model(model, os.path.join(tmp, "m"), [None, 3, size, size])
        files = (os.path.join(d, "model.json"), os.path.join(d, "model.pdiparams"))
        onnx_file = os.path.join(tmp, "m.onnx")
        with open(onnx_file, "wb") as f:
            f.write(convert_to_onnx_bytes(*files))
        threads = cpu_threads()
        runners = {"paddle_inference": PaddleInferenceRunner(*files, threads=threads),
                   "onnxruntime": OnnxRuntimeRunner(onnx_file, threads=threads)}

        def dygraph(a):
            with paddle.no_grad():
                return model(paddle.to_tensor(a))
        times = {}
        for name, run in [("dygraph", dygraph)] + list(runners.items()):
            run(arrays[0])
            spent = []
            for _ in range(3):
                t0 = time.perf_counter()
                for a in arrays:
                    run(a)
                spent.append(time.perf_counter() - t0)
            times[name] = 1000 * float(np.median(spent))
    return times


def bench(name, size, groups, images, n_ratios, methods):
    make, d_groups, d_images, d_ratios = MODELS[name]
    groups = d_groups if groups is None else groups
    images = images or d_images
    ratios = list(ALL_RATIOS) if (n_ratios or d_ratios) == 9 else \
        list(np.round(np.linspace(0.1, 0.9, n_ratios or d_ratios), 2))
    paddle.seed(0)
    model = make()
    model.eval()
    batches, score, eval_func = _fixed_eval(model, images, size)
    pruner = L1NormFilterPruner(model, [1, 3, size, size])
    targets = [g.root for g in pruner.prunable_groups()]
    targets = targets[:groups] if groups else targets
    results, times = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "naive":
            results[method] = pruner.sensitive(eval_func=eval_func, target_vars=targets, ratios=ratios, method="naive")
        else:
            results[method] = pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=targets,
                                               ratios=ratios, method=method)
        times[method] = time.perf_counter() - t0
    points = len(targets) * len(ratios)
    print(f"\n{name} {size}x{size}, {images} images, {len(targets)} groups x {len(ratios)} ratios = {points} points")
    ref = results.get("naive")
    for method in methods:
        line = f"  {method:8s} {times[method]:8.1f} s  ({1000 * times[method] / points:7.1f} ms/point)"
        if ref is not None and method != "naive":
            diffs = np.array([abs(results[method][n][r] - ref[n][r]) for n in ref for r in ref[n]])
            line += (f"  speed-up {times['naive'] / times[method]:6.2f}x  max |diff| {diffs.max():.5f}  "
                     f"equal points {100 * (diffs == 0).mean():.1f}%")
        print(line, flush=True)
    evals = _one_evaluation(model, batches, size)
    print("  one unpruned evaluation: " + ", ".join(f"{k} {v:.1f} ms" for k, v in evals.items()), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet_v2_x0.5@32,resnet18@32,mobilenet_v2_x1.0@224",
                    help=f"comma-separated name@size; names: {', '.join(MODELS)}")
    ap.add_argument("--groups", type=int, default=None, help="analyse only the first N groups (0 = all)")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--ratios", type=int, default=None, help="number of ratios (9 = 0.1 ... 0.9)")
    ap.add_argument("--methods", default="runtime,dygraph,naive")
    args = ap.parse_args()
    logging.getLogger("paddleprune").setLevel(logging.WARNING)   # no per-point progress lines
    methods = args.methods.split(",")
    for spec in args.models.split(","):
        name, _, size = spec.partition("@")
        bench(name, int(size or 32), args.groups, args.images, args.ratios, methods)


if __name__ == "__main__":
    main()
