"""Time trace + groups + shrink at uniform 50 % on mobilenet_v2 and resnet50, and peak extra memory.

Run: python benchmarks/prune_speed.py
Figures are measured in this run; the machine is noisy, so compare ratios within one run.
"""
import gc
import resource
import time

import paddle
import paddle.vision.models as models

from paddleprune.prune import FilterPruner, count_params, dygraph_flops


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def bench(name, size=224):
    model = getattr(models, name)(num_classes=1000)
    model.eval()
    param_mb = count_params(model) * 4 / 2 ** 20
    gc.collect()
    base = rss_mb()
    reset_peak()
    t0 = time.perf_counter()
    pruner = FilterPruner(model, [1, 3, size, size])
    t1 = time.perf_counter()
    ratios = {g.root: 0.5 for g in pruner.prunable_groups()}
    plan = pruner.prune_vars(ratios, apply=None)
    t2 = time.perf_counter()
    plan.apply(model, backup=False)
    t3 = time.perf_counter()
    peak = peak_mb()
    x = paddle.rand([1, 3, size, size])
    model(x)
    flops = dygraph_flops(model, [1, 3, size, size])
    print(f"{name:14} trace+groups {t1 - t0:6.2f} s | masks {t2 - t1:5.2f} s | shrink {t3 - t2:5.2f} s | "
          f"total {t3 - t0:6.2f} s | groups {len(ratios):3d} | peak extra memory {peak - base:7.1f} MB "
          f"(model {param_mb:.1f} MB) | FLOPs after {flops / 1e9:.3f} G")


if __name__ == "__main__":
    paddle.set_device("cpu")
    for name in ("mobilenet_v2", "resnet50"):
        bench(name)
