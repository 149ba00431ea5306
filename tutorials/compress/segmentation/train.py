"""Stage 1 of the PaddleX 1.x pruning tutorial: train the original UNet.

Trains ``paddleprune.seg.UNet(scale=0.25)`` on 128x128 inputs with Adam and PaddleX's polynomial
decay (``--optimizer momentum``: PaddleX's Momentum) and saves to ``--save_dir``
(``epoch_N/``, ``best_model/``, ``vdl_log/``). Without ``--data_dir`` it uses the embedded
segmentation demo set (discs, squares, triangles and digits on photo backgrounds, built
offline on first use). PaddleX's UNet tutorial starts from COCO weights; nothing can be
downloaded here, so the network starts from random weights. Next step::

    python cal_sensitivities_file.py --model_dir output/unet/best_model
"""
import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np

INPUT_SIZE = 128
#: what ``--optimizer`` trains with, for the summaries
OPTIMIZERS = {"adam": "Adam", "momentum": "Momentum 0.9, L2 4e-5"}


def add_schedule_args(p):
    """Options train.py and unet.py share."""
    p.add_argument("--optimizer", choices=("adam", "momentum"), default="adam",
                   help="adam: Adam with the polynomial decay below (the pipeline's choice); momentum: PaddleX's "
                        "default, Momentum 0.9 with L2 4e-5 and the same decay, which needs a higher "
                        "--learning_rate such as 0.05 and more epochs (in 3 epochs at lr 0.05 it learnt only "
                        "the background) (default: %(default)s)")
    p.add_argument("--batch_size", type=int, default=8, help="training batch size (default: %(default)s)")
    p.add_argument("--lr_decay_power", type=float, default=0.9,
                   help="PaddleX's polynomial decay: lr x (1 - step / total_steps) ** power (default: %(default)s)")
    p.add_argument("--save_interval_epochs", type=int, default=2,
                   help="evaluate and save every this many epochs, and after the last (default: %(default)s)")
    p.add_argument("--train_subset", type=int, default=0,
                   help="train on a fixed random sample of N training images (0 = all); for quick trials")
    p.add_argument("--eval_subset", type=int, default=0,
                   help="evaluate on a fixed random sample of N validation images (0 = all); for quick trials")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 1: train UNet (x0.25, 128x128 input) before pruning it. Offline: without --data_dir "
                    "the embedded segmentation demo data is used.")
    p.add_argument("--data_dir", default=None,
                   help="data in PaddleX segmentation format (train_list.txt, val_list.txt, labels.txt, images, "
                        "single-channel PNG masks); default: the embedded demo data")
    p.add_argument("--save_dir", default="output/unet",
                   help="output folder: epoch_N/, best_model/, vdl_log/ (default: %(default)s)")
    p.add_argument("--scale", type=float, default=0.25,
                   help="width multiplier of every layer (paddleprune extension; 1.0 is PaddleX's UNet with "
                        "64..512 channels, 0.125 gives 8..64) (default: %(default)s)")
    p.add_argument("--num_epochs", type=int, default=12, help="epochs to train (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=0.002,
                   help="base learning rate (default: %(default)s, for Adam; Momentum needs about 0.05)")
    add_schedule_args(p)
    return p.parse_args(argv)


def schedule(args, steps_per_epoch):
    """``train()`` keywords of the learning-rate schedule, as the pipeline's (``SegmentationSpec.schedule``):
    PaddleX's polynomial decay over ``args.num_epochs`` epochs, with Adam or train()'s default Momentum."""
    kwargs = {"learning_rate": args.learning_rate, "lr_decay_power": args.lr_decay_power}
    if args.optimizer == "adam":
        from paddleprune.tasks.optim import adam_poly_factory
        kwargs["optimizer"] = adam_poly_factory(args.learning_rate, args.num_epochs * steps_per_epoch,
                                                args.lr_decay_power)
    return kwargs


def train_transforms():
    """The pipeline's training augmentation (``paddleprune pipeline --task segmentation``): PaddleX's
    UNet recipe at 128 px, without the horizontal flip (a mirrored digit is another shape)."""
    from paddleprune.seg import transforms as T
    return T.Compose([T.ResizeByLong(long_size=INPUT_SIZE), T.ResizeStepScaling(0.75, 1.25, 0.25),
                      T.RandomPaddingCrop(crop_size=INPUT_SIZE), T.Normalize()])


def eval_transforms():
    from paddleprune.seg import transforms as T
    return T.Compose([T.ResizeByLong(long_size=INPUT_SIZE), T.Padding(target_size=INPUT_SIZE), T.Normalize()])


def open_dataset(data_dir, list_name, transforms=None, subset=0, shuffle=False):
    """``SegDataset`` of ``data_dir/list_name``; with ``subset`` > 0, a fixed random sample of that many
    lines (written to a temporary list file: the data set reads and checks its list when opened)."""
    import paddleprune as pdx
    list_path = os.path.join(data_dir, list_name)
    labels = os.path.join(data_dir, "labels.txt")
    labels = labels if os.path.isfile(labels) else None
    if subset and os.path.isfile(list_path):
        with open(list_path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if subset < len(lines):
            keep = np.sort(np.random.RandomState(0).choice(len(lines), subset, replace=False))
            with tempfile.TemporaryDirectory() as tmp:
                sub_path = os.path.join(tmp, list_name)
                with open(sub_path, "w", encoding="utf-8") as f:
                    f.write("".join(lines[i] + "\n" for i in keep))
                return pdx.datasets.SegDataset(data_dir, sub_path, labels, transforms=transforms, shuffle=shuffle)
    return pdx.datasets.SegDataset(data_dir, list_path, labels, transforms=transforms, shuffle=shuffle)


def load_datasets(data_dir, train_subset=0, eval_subset=0):
    import paddleprune as pdx
    data_dir = data_dir or pdx.datasets.demo.segmentation()
    train = open_dataset(data_dir, "train_list.txt", train_transforms(), train_subset, shuffle=True)
    val = open_dataset(data_dir, "val_list.txt", eval_transforms(), eval_subset)
    return data_dir, train, val


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune as pdx
    from paddleprune.errors import PaddlePruneError
    from paddleprune.prune import count_params, dygraph_flops

    t0 = time.perf_counter()
    try:
        data_dir, train, val = load_datasets(args.data_dir, args.train_subset, args.eval_subset)
        model = pdx.seg.UNet(num_classes=train.num_classes, scale=args.scale)
        model.train(num_epochs=args.num_epochs, train_dataset=train, train_batch_size=args.batch_size,
                    eval_dataset=val, save_dir=args.save_dir, save_interval_epochs=args.save_interval_epochs,
                    use_vdl=True, log_interval_steps=10, **schedule(args, len(train) // args.batch_size))
    except PaddlePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best_dir = os.path.join(args.save_dir, "best_model")
    best = pdx.load_model(best_dir)
    shape = [1, 3, INPUT_SIZE, INPUT_SIZE]
    score = (best.eval_metrics or {}).get("miou", float("nan"))
    print()
    print("== stage 1 done: original model trained ==")
    print(f"data           : {data_dir} ({len(train)} train / {len(val)} val images, {train.num_classes} classes)")
    print(f"epochs         : {args.num_epochs} ({OPTIMIZERS[args.optimizer]}, batch {args.batch_size}, "
          f"lr {args.learning_rate}, polynomial decay power {args.lr_decay_power}; UNet scale {args.scale}, "
          "random start)")
    print(f"best model     : {best_dir} (epoch {best.completed_epochs}, val miou {score:.4f})")
    print(f"params / FLOPs : {count_params(best.net) / 1e6:.4f} M / {dygraph_flops(best.net, shape) / 1e6:.2f} M")
    print(f"VisualDL       : visualdl --logdir {os.path.join(args.save_dir, 'vdl_log')} --host 127.0.0.1 "
          "--port 8040 --language en")
    print(f"time           : {time.perf_counter() - t0:.1f} s")
    print(f"next           : python cal_sensitivities_file.py --model_dir {best_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
