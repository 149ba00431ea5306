"""CPU latency of mobilenet_v2 x1.0 before and after uniform L1 pruning to ~50 % of its FLOPs.

Run: python benchmarks/latency.py [--size 224] [--flops 0.5] [--threads 2] [--repeats 100] [--align 8 16]
The pruned copy uses the uniform ratio that removes that share of FLOPs; further copies are
pruned the same way with ``round_to`` channel alignment (``--align``). All models are exported
once, then timed interleaved (A, B, C, C, B, A, ...) on Paddle Inference with oneDNN, Paddle
Inference without oneDNN and ONNX Runtime. The machine is noisy, so read the ratios
(model / original, below 1 = faster) from one run, not the absolute figures.
"""
import argparse
import copy
import logging
import os
import tempfile

import paddle
import paddle.vision.models as models

from paddleprune.deploy import compare_latency, export_inference_model, model_size_mb
from paddleprune.prune import L1NormFilterPruner


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--flops", type=float, default=0.5, help="share of FLOPs to remove")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--align", type=int, nargs="*", default=[8, 16],
                    help="also prune with round_to=N (channel counts multiple of N) for each N given")
    args = ap.parse_args()
    logging.getLogger("paddleprune").setLevel(logging.WARNING)
    shape = [1, 3, args.size, args.size]

    paddle.seed(0)
    original = models.mobilenet_v2(scale=1.0, num_classes=1000)
    original.eval()
    nets = {"original": original}
    base = L1NormFilterPruner(original, shape)
    flops0, params0 = base.flops(), base.params()
    print(f"mobilenet_v2 x1.0 @ {args.size}: {flops0 / 1e6:.1f} MFLOPs, {params0 / 1e6:.2f} M params, "
          f"{len(base.prunable_groups())} prunable groups; target: remove {args.flops:.0%} of FLOPs")
    for align in [None] + args.align:
        name = "pruned" if align is None else f"pruned_align{align}"
        net = copy.deepcopy(original)
        pruner = L1NormFilterPruner(net, shape, round_to=align)
        ratio = pruner.uniform_ratio_for_flops(args.flops)
        pruner.prune_vars({g.root: ratio for g in pruner.prunable_groups()})
        after = L1NormFilterPruner(net, shape)
        nets[name] = net
        print(f"  {name:16} uniform ratio {ratio:.3f}, round_to={align}: FLOPs ratio {after.flops() / flops0:.3f}, "
              f"params ratio {after.params() / params0:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: export_inference_model(net, os.path.join(tmp, name), shape) for name, net in nets.items()}
        sizes = {name: model_size_mb(d) for name, d in dirs.items()}
        print("model.pdiparams MB: " + ", ".join(f"{n} {s:.2f}" for n, s in sizes.items()))
        print(f"load average before timing: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"({os.cpu_count()} CPUs); threads={args.threads}, warmup={args.warmup}, repeats={args.repeats}")
        runs = [("paddle_inference + oneDNN", "paddle_inference", True),
                ("paddle_inference, no oneDNN", "paddle_inference", False),
                ("onnxruntime", "onnxruntime", True)]
        print(f"{'backend':28} {'model':18} {'median ms':>10} {'p90 ms':>8} {'ratio':>7} {'paired':>7}")
        for label, backend, onednn in runs:
            rep = compare_latency(dirs, shape, backends=[backend], threads=args.threads, warmup=args.warmup,
                                  repeats=args.repeats, onednn=onednn)[backend]
            if "error" in rep:
                print(f"{label:28} error: {rep['error']}")
                continue
            for name, stats in rep["models"].items():
                print(f"{label:28} {name:18} {stats['median_ms']:10.2f} {stats['p90_ms']:8.2f} "
                      f"{rep['ratio'][name]:7.3f} {rep['paired_ratio'][name]:7.3f}")
        print(f"load average after timing: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print("(ms = median per run; ratio = model / original medians; paired = median of per-round ratios)")


if __name__ == "__main__":
    main()
