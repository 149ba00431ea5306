"""Stage 1 of the PaddleX 1.x pruning tutorial: train the original MobileNetV2.

Trains ``paddleprune.cls.MobileNetV2(scale=0.25, small_input=True)`` on 32x32 images
and saves every epoch to ``--save_dir`` (``epoch_N/``, ``best_model/``, ``vdl_log/``).
Without ``--data_dir`` it uses the embedded demo data (handwritten digits on photo
backgrounds, built offline on first use). Next step::

    python cal_sensitivities_file.py --model_dir output/mobilenetv2/best_model
"""
import argparse
import logging
import os
import sys
import time

import numpy as np

MODEL_KWARGS = {"scale": 0.25, "small_input": True}
INPUT_SIZE = 32


def add_schedule_args(p):
    """Options train.py and mobilenetv2.py share: batch size, decay epochs, quick-trial subsets."""
    p.add_argument("--batch_size", type=int, default=32, help="training batch size (default: %(default)s)")
    p.add_argument("--lr_decay_epochs", type=int, nargs="+", default=None,
                   help="epochs after which the learning rate is multiplied by 0.1; "
                        "default: about 3/4 of the way and one epoch before the end")
    p.add_argument("--train_subset", type=int, default=0,
                   help="train on a fixed random sample of N training images (0 = all); for quick trials")
    p.add_argument("--eval_subset", type=int, default=0,
                   help="evaluate on a fixed random sample of N validation images (0 = all); for quick trials")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 1: train MobileNetV2 (x0.25, 32x32 input) before pruning it. Offline: "
                    "without --data_dir the embedded demo data is used.")
    p.add_argument("--data_dir", default=None,
                   help="data in PaddleX ImageNet-list format (train_list.txt, val_list.txt, labels.txt); "
                        "default: the embedded demo data")
    p.add_argument("--save_dir", default="output/mobilenetv2",
                   help="output folder: epoch_N/, best_model/, vdl_log/ (default: %(default)s)")
    p.add_argument("--num_epochs", type=int, default=10, help="epochs to train (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=0.02,
                   help="base learning rate, Momentum 0.9 (default: %(default)s)")
    p.add_argument("--warmup_epochs", type=int, default=1,
                   help="linear warm-up from 0, in epochs (default: %(default)s)")
    add_schedule_args(p)
    return p.parse_args(argv)


def default_decay_epochs(num_epochs, warmup_epochs=0):
    """Decay near the end: at round(3/4 x epochs) and epochs - 1 (12 epochs -> [9, 11])."""
    cands = {int(round(0.75 * num_epochs)), num_epochs - 1}
    return sorted(e for e in cands if max(1, warmup_epochs) <= e < num_epochs)


def take_subset(dataset, n):
    """Keep a fixed random sample of ``n`` images (ImageNet's public ``file_list``); 0 keeps all."""
    if n and n < len(dataset):
        keep = np.sort(np.random.RandomState(0).choice(len(dataset), n, replace=False))
        dataset.file_list = [dataset.file_list[i] for i in keep]
        dataset.num_samples = len(dataset.file_list)
    return dataset


def load_datasets(data_dir, train_subset=0, eval_subset=0):
    from paddleprune.cls import transforms as T
    from paddleprune.datasets import ImageNet, demo
    data_dir = data_dir or demo.classification()
    # digits: no horizontal flip; the demo images already vary in size, angle, colour and background
    tf = T.Compose([T.Resize(target_size=INPUT_SIZE), T.Normalize()])
    labels = os.path.join(data_dir, "labels.txt")
    train = ImageNet(data_dir, os.path.join(data_dir, "train_list.txt"), labels, transforms=tf, shuffle=True)
    val = ImageNet(data_dir, os.path.join(data_dir, "val_list.txt"), labels,
                   transforms=T.Compose([T.Resize(target_size=INPUT_SIZE), T.Normalize()]))
    return data_dir, take_subset(train, train_subset), take_subset(val, eval_subset)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune
    from paddleprune import cls
    from paddleprune.errors import PaddlePruneError
    from paddleprune.prune import count_params, dygraph_flops

    t0 = time.perf_counter()
    try:
        data_dir, train, val = load_datasets(args.data_dir, args.train_subset, args.eval_subset)
        steps = len(train) // args.batch_size
        decay = (args.lr_decay_epochs if args.lr_decay_epochs is not None
                 else default_decay_epochs(args.num_epochs, args.warmup_epochs))
        model = cls.MobileNetV2(num_classes=len(train.labels), **MODEL_KWARGS)
        model.train(num_epochs=args.num_epochs, train_dataset=train, train_batch_size=args.batch_size,
                    eval_dataset=val, save_dir=args.save_dir, learning_rate=args.learning_rate,
                    warmup_steps=args.warmup_epochs * steps, lr_decay_epochs=decay, use_vdl=True,
                    log_interval_steps=10)
    except PaddlePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best_dir = os.path.join(args.save_dir, "best_model")
    best = paddleprune.load_model(best_dir)
    shape = [1, 3, INPUT_SIZE, INPUT_SIZE]
    acc = (best.eval_metrics or {}).get("acc1", float("nan"))
    print()
    print("== stage 1 done: original model trained ==")
    print(f"data           : {data_dir} ({len(train)} train / {len(val)} val images)")
    print(f"epochs         : {args.num_epochs} (batch {args.batch_size}, lr {args.learning_rate}, "
          f"warm-up {args.warmup_epochs} epoch(s), decay at {decay})")
    print(f"best model     : {best_dir} (epoch {best.completed_epochs}, val acc1 {acc:.4f})")
    print(f"params / FLOPs : {count_params(best.net) / 1e6:.4f} M / {dygraph_flops(best.net, shape) / 1e6:.3f} M")
    print(f"VisualDL       : visualdl --logdir {os.path.join(args.save_dir, 'vdl_log')} --host 127.0.0.1 "
          "--port 8040 --language en")
    print(f"time           : {time.perf_counter() - t0:.1f} s")
    print(f"next           : python cal_sensitivities_file.py --model_dir {best_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
