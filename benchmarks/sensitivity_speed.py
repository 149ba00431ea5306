"""Sensitivity analysis of mobilenet_v2: fast method vs the naive one on the same layers and ratios.

Run: python benchmarks/sensitivity_speed.py [--groups N] [--images N] [--size S]
Prints both times, their ratio, the largest absolute difference of the values and the share
of equal points. Both run in this process, one after the other, on the same fixed eval set.
"""
import argparse
import time

import numpy as np
import paddle
import paddle.vision.models as models

from paddleprune.prune import L1NormFilterPruner


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--groups", type=int, default=0, help="analyse only the first N groups (0 = all)")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--scale", type=float, default=1.0)
    args = ap.parse_args()
    paddle.seed(0)
    model = models.mobilenet_v2(scale=args.scale, num_classes=10)
    model.eval()
    batches = [paddle.uniform([64, 3, args.size, args.size], min=-1, max=1) for _ in range(args.images // 64)]
    with paddle.no_grad():
        labels = [paddle.argmax(o + 0.3 * o.std() * paddle.randn(o.shape), axis=1)
                  for o in (model(b) for b in batches)]

    def score(outputs):
        return float(np.mean([(paddle.argmax(o, axis=1) == l).astype("float32").mean().item()
                              for o, l in zip(outputs, labels)]))

    def eval_func():
        with paddle.no_grad():
            return score([model(b) for b in batches])

    pruner = L1NormFilterPruner(model, [1, 3, args.size, args.size])
    targets = [g.root for g in pruner.prunable_groups()]
    targets = targets[:args.groups] if args.groups else targets
    t0 = time.perf_counter()
    fast = pruner.sensitive(eval_batches=batches, score_fn=score, target_vars=targets)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive = pruner.sensitive(eval_func=eval_func, target_vars=targets, method="naive")
    t_naive = time.perf_counter() - t0
    diffs = np.array([abs(fast[n][r] - naive[n][r]) for n in naive for r in naive[n]])
    print(f"mobilenet_v2 x{args.scale} {args.size}x{args.size}, {len(batches) * 64} images, "
          f"{len(targets)} groups x 9 ratios = {len(diffs)} points")
    print(f"naive {t_naive:.1f} s | fast {t_fast:.1f} s | speed-up {t_naive / t_fast:.2f}x | "
          f"max |diff| {diffs.max():.5f} | equal points {100 * (diffs == 0).mean():.1f}%")


if __name__ == "__main__":
    main()
