"""Where Paddle Inference spends its time on a small model at batch 1 (issue #14, part 1).

Run: python benchmarks/paddle_inference_overhead.py [--size 32] [--scale 0.5] [--batch 1] [--repeats 200]
Exports paddleprune's MobileNetV2 (the pipeline's classifier) with a dynamic batch axis, then
times predictor configurations interleaved in the same rounds (the machine is noisy: read the
ratios to the first row, not the absolute figures), with ONNX Runtime as the reference.
"""
import argparse
import os
import tempfile
import time

import numpy as np
import paddle

from paddleprune.deploy import export_inference_model, export_onnx
from paddleprune.deploy.runners import ONEDNN_DELETED_PASSES, OnnxRuntimeRunner
from paddleprune.models import get_model


def make_predictor(model_dir, onednn=True, delete=(), ir_optim=True, threads=2, cache=None):
    from paddle import inference
    config = inference.Config(os.path.join(model_dir, "model.json"), os.path.join(model_dir, "model.pdiparams"))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if onednn:
        config.enable_mkldnn()
        if cache is not None:
            config.set_mkldnn_cache_capacity(cache)
        for name in delete:
            config.delete_pass(name)
    else:
        config.disable_mkldnn()
    config.switch_ir_optim(ir_optim)
    config.disable_glog_info()
    return inference.create_predictor(config)


def handles_runner(predictor, reshape=True, copy_out=True):
    ins = [predictor.get_input_handle(n) for n in predictor.get_input_names()]
    outs = [predictor.get_output_handle(n) for n in predictor.get_output_names()]

    def run(x):
        if reshape:
            ins[0].reshape(list(x.shape))
        ins[0].copy_from_cpu(x)
        predictor.run()
        return [h.copy_to_cpu() for h in outs] if copy_out else None
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--model", default="MobileNetV2")
    ap.add_argument("--model-dir", default=None, help="instead: an exported folder (model.json, batch axis dynamic)")
    args = ap.parse_args()
    paddle.seed(0)
    kwargs = {"num_classes": 10}
    if args.model.startswith("MobileNet"):
        kwargs.update(scale=args.scale, small_input=args.size < 64)
    net = get_model(args.model, **kwargs)
    net.eval()
    x = np.random.default_rng(0).random([args.batch, 3, args.size, args.size], dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        dyn = args.model_dir or export_inference_model(net, os.path.join(tmp, "dyn"), [None, 3, args.size, args.size])
        fixed = export_inference_model(net, os.path.join(tmp, "fixed"), [args.batch, 3, args.size, args.size])
        bn = ("conv2d_bn_onednn_fuse_pass", "conv2d_bias_bn_onednn_fuse_pass")
        runners = {
            "oneDNN, BN fuse passes deleted (before #14)": handles_runner(make_predictor(dyn, delete=bn)),
            "oneDNN, all passes (after #14)": handles_runner(make_predictor(dyn)),
            "oneDNN, activation fuse pass deleted": handles_runner(
                make_predictor(dyn, delete=ONEDNN_DELETED_PASSES)),
            "oneDNN, all passes, no reshape per call": handles_runner(make_predictor(dyn), reshape=False),
            "oneDNN, all passes, cache capacity 1": handles_runner(make_predictor(dyn, cache=1)),
            "oneDNN, all passes, ir_optim off": handles_runner(make_predictor(dyn, ir_optim=False)),
            "oneDNN, all passes, 1 thread": handles_runner(make_predictor(dyn, threads=1)),
            "oneDNN, BN passes deleted, 1 thread": handles_runner(make_predictor(dyn, delete=bn, threads=1)),
            "no oneDNN": handles_runner(make_predictor(dyn, onednn=False)),
            "no oneDNN, 1 thread": handles_runner(make_predictor(dyn, onednn=False, threads=1)),
        }
        if not args.model_dir:
            runners["oneDNN, all passes, fixed batch export"] = handles_runner(make_predictor(fixed))
        onnx = export_onnx(dyn, os.path.join(tmp, "model.onnx"))
        runners["ONNX Runtime, 2 threads"] = OnnxRuntimeRunner(onnx, 2)
        runners["ONNX Runtime, 1 thread"] = OnnxRuntimeRunner(onnx, 1)
        ref = runners["ONNX Runtime, 2 threads"](x)[0]
        for name, run in runners.items():
            out = run(x)
            if out is not None:
                diff = float(np.abs(out[0] - ref).max())
                assert diff < 1e-3, f"{name}: output differs from ONNX Runtime by {diff}"
        keys = list(runners)
        times = {k: [] for k in keys}
        for i in range(args.warmup + args.repeats):
            for k in (keys if i % 2 == 0 else keys[::-1]):
                t0 = time.perf_counter()
                runners[k](x)
                if i >= args.warmup:
                    times[k].append(time.perf_counter() - t0)
    base = np.median(times[keys[0]])
    ort = np.median(times["ONNX Runtime, 2 threads"])
    print(f"{args.model_dir or f'{args.model} x{args.scale}'} at {args.size}x{args.size}, batch {args.batch}, {args.repeats} interleaved "
          f"rounds; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'configuration':48} {'median ms':>10} {'p90 ms':>8} {'vs first':>8} {'vs ORT':>7}")
    for k in keys:
        t = np.asarray(times[k]) * 1000
        print(f"{k:48} {np.median(t):10.3f} {np.percentile(t, 90):8.3f} {np.median(t) / base / 1000:8.2f} "
              f"{np.median(t) / ort / 1000:7.2f}")


if __name__ == "__main__":
    main()
