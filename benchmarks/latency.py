"""CPU speed-up of engine-pruned ResNet50 and MobileNetV2 at 224x224 (issue #14, part 5).

Run: python benchmarks/latency.py [--size 224] [--flops 0.5] [--round-to 8] [--batch 1 8] [--threads 2]
Each network is pruned uniformly (L1 norm) by the ratio that removes ``--flops`` of its FLOPs,
keeping multiples of ``--round-to`` channels; a width-scaled MobileNetV2 with the FLOPs of the
pruned one is added. All models are exported once and timed interleaved in the same rounds on
Paddle Inference (oneDNN) and ONNX Runtime at each batch size (the machine is noisy: read the
speed-ups, which come from one run, not the absolute figures).
"""
import argparse
import copy
import logging
import os
import tempfile

import paddle
import paddle.vision.models as models

from paddleprune.deploy import compare_latency, export_inference_model
from paddleprune.prune import L1NormFilterPruner


def prune_to(net, shape, flops, round_to):
    net = copy.deepcopy(net)
    pruner = L1NormFilterPruner(net, shape, round_to=round_to)
    ratio = pruner.uniform_ratio_for_flops(flops)
    pruner.prune_vars({g.root: ratio for g in pruner.prunable_groups()})
    return net


def width_scaled_mobilenet(target_flops, shape):
    """mobilenet_v2(scale=s) with about ``target_flops`` (bisection on s)."""
    lo, hi = 0.2, 1.0
    for _ in range(10):
        mid = (lo + hi) / 2
        if L1NormFilterPruner(models.mobilenet_v2(scale=mid), shape).flops() > target_flops:
            hi = mid
        else:
            lo = mid
    net = models.mobilenet_v2(scale=lo)
    net.eval()
    return net, lo


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--flops", type=float, default=0.5, help="share of FLOPs to remove (default 0.5)")
    ap.add_argument("--round-to", type=int, default=8, help="pruned layers keep multiples of this (default 8)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    logging.getLogger("paddleprune").setLevel(logging.WARNING)
    shape = [1, 3, args.size, args.size]
    paddle.seed(0)
    nets, flops = {}, {}
    for name, factory in (("ResNet50", models.resnet50), ("MobileNetV2", models.mobilenet_v2)):
        net = factory()
        net.eval()
        nets[name], nets[name + " pruned"] = net, prune_to(net, shape, args.flops, args.round_to)
    for name, net in nets.items():
        flops[name] = L1NormFilterPruner(net, shape).flops()
    nets["MobileNetV2 width-scaled"], scale = width_scaled_mobilenet(flops["MobileNetV2 pruned"], shape)
    flops["MobileNetV2 width-scaled"] = L1NormFilterPruner(nets["MobileNetV2 width-scaled"], shape).flops()
    for name, f in flops.items():
        base = flops[name.split()[0]]
        print(f"{name:26} {f / 1e6:9.1f} MFLOPs ({f / base:.3f} of the original)"
              + (f", scale {scale:.3f}" if "width" in name else ""))
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {n: export_inference_model(net, os.path.join(tmp, n.replace(" ", "_")), [None] + shape[1:])
                for n, net in nets.items()}
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, threads {args.threads}")
        print(f"{'backend':18} {'batch':>5} {'model':26} {'median ms':>10} {'speed-up':>9} {'FLOPs cut':>9}")
        for backend in ("paddle_inference", "onnxruntime"):
            for batch in args.batch:
                rep = compare_latency(dirs, [batch] + shape[1:], backends=[backend], threads=args.threads,
                                      warmup=args.warmup, repeats=args.repeats)[backend]
                if "error" in rep:
                    print(f"{backend:18} {batch:5} error: {rep['error']}")
                    continue
                for name, s in rep["models"].items():
                    ref = name.split()[0]
                    speed = rep["models"][ref]["median_ms"] / s["median_ms"]
                    print(f"{backend:18} {batch:5} {name:26} {s['median_ms']:10.2f} {speed:8.2f}x "
                          f"{flops[ref] / flops[name]:8.2f}x")
    print("(speed-up and FLOPs cut: original / model; target: speed-up >= 0.9 x FLOPs cut)")


if __name__ == "__main__":
    main()
