"""Wall time of training and of sensitivity analysis in 1 process and in N data-parallel processes
(paddle.distributed.launch, gloo on CPU), side by side in one run, on the pipeline's classification
setting: MobileNetV2 x0.5 (small input) on the embedded 32 x 32 set.

Run: python benchmarks/distributed.py [--nproc 2] [--epochs 3] [--batch 32] [--images 359]

Three configurations, each a fresh process tree: one process as a user runs it (Paddle trains with one
math thread, the sensitivity analysis uses every core), one process with OMP_NUM_THREADS=N (both with N
threads), and N processes (the launcher gives each one thread). Each trains
--epochs epochs, then computes the sensitivities of what it trained (9 ratios, every prunable group) on
--images validation images. Times are measured inside the processes (rank 0's) and printed with the
speed-up over the first configuration.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def worker(out, epochs, batch, images):
    import paddle

    from paddleprune import cls, slim
    from paddleprune.datasets import ImageNet, demo
    from paddleprune.pipeline.run import _subset
    from paddleprune.utils import dist

    root = demo.classification()
    train_tf = cls.transforms.Compose([cls.transforms.RandomCrop(crop_size=32, lower_scale=0.7),
                                       cls.transforms.RandomHorizontalFlip(), cls.transforms.Normalize()])
    train = ImageNet(root, os.path.join(root, "train_list.txt"), os.path.join(root, "labels.txt"), transforms=train_tf)
    val = ImageNet(root, os.path.join(root, "val_list.txt"), os.path.join(root, "labels.txt"),
                   transforms=cls.transforms.Compose([cls.transforms.Normalize()]))
    paddle.seed(0)
    model = cls.MobileNetV2(num_classes=len(train.labels), scale=0.5, small_input=True)
    t0 = time.perf_counter()
    model.train(epochs, train, train_batch_size=batch, eval_dataset=val, save_dir=os.path.join(out, "train"),
                learning_rate=0.02, warmup_steps=len(train) // batch, lr_decay_epochs=[epochs + 1],
                save_interval_epochs=epochs, log_interval_steps=1000)   # the pipeline's schedule
    t1 = time.perf_counter()
    slim.cal_params_sensitivities(model, os.path.join(out, "sens.json"), _subset(val, images), batch_size=64)
    t2 = time.perf_counter()
    if dist.is_main():
        with open(os.path.join(out, "times.json"), "w") as f:
            json.dump({"train_s": t1 - t0, "sensitivity_s": t2 - t1, "acc1": float(model.eval_metrics["acc1"])}, f)


def run(config, nproc, args, folder):
    out = os.path.join(folder, config)
    os.makedirs(out)
    me = os.path.abspath(__file__)
    worker_args = [me, "--worker", out, "--epochs", str(args.epochs), "--batch", str(args.batch),
                   "--images", str(args.images)]
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if config == "1 process, OMP_NUM_THREADS=N":
        env["OMP_NUM_THREADS"] = str(nproc)
    if config == "N processes":
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
               "--log_dir", os.path.join(out, "log")] + worker_args
    else:
        cmd = [sys.executable] + worker_args
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{config} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "times.json")) as f:
        times = json.load(f)
    times["wall_s"] = time.perf_counter() - t0
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=359)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.batch, args.images)
    configs = ["1 process, defaults", "1 process, OMP_NUM_THREADS=N", "N processes"]
    with tempfile.TemporaryDirectory() as folder:
        results = {c: run(c, args.nproc, args, folder) for c in configs}
    base = results[configs[0]]
    print(f"MobileNetV2 x0.5, 32 x 32, {args.epochs} epochs at batch {args.batch}, sensitivities on {args.images} "
          f"images x 9 ratios; N = {args.nproc}; {os.cpu_count()} cores")
    print("| configuration | training s | speed-up | sensitivities s | speed-up | top-1 after training |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name.replace('N', str(args.nproc))} | {r['train_s']:.1f} | {base['train_s'] / r['train_s']:.2f}x | "
              f"{r['sensitivity_s']:.1f} | {base['sensitivity_s'] / r['sensitivity_s']:.2f}x | {r['acc1']:.4f} |")


if __name__ == "__main__":
    main()
