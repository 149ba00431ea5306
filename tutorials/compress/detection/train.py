"""Stage 1 of the PaddleX 1.x pruning tutorial: train the original YOLOv3-MobileNetV1.

Trains ``paddleprune.det.YOLOv3(backbone='MobileNetV1', backbone_scale=0.5)`` on 128x128
inputs and saves to ``--save_dir`` (``epoch_N/``, ``best_model/``, ``vdl_log/``). Without
``--data_dir`` it uses the embedded VOC-format demo set (handwritten digits 0-4 on photo
backgrounds, built offline on first use). The backbone starts from a MobileNetV1 classifier,
as PaddleX starts from ImageNet weights: ``--pretrain_weights DIR``, or by default one that
is first trained on the embedded classification set (``--backbone_epochs``). Next step::

    python cal_sensitivities_file.py --model_dir output/yolov3_mobilenet/best_model
"""
import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np

INPUT_SIZE = 128
#: PaddleX's nine YOLOv3 anchors scaled from 608 to 128 pixels (x1.6: digits fill their boxes)
ANCHORS = [[3, 4], [5, 10], [11, 8], [10, 21], [21, 15], [20, 40], [39, 30], [53, 67], [126, 110]]
MODEL_KWARGS = {"backbone": "MobileNetV1", "anchors": ANCHORS, "train_random_shapes": []}


def add_schedule_args(p):
    """Options train.py and yolov3_mobilenet.py share."""
    p.add_argument("--batch_size", type=int, default=16, help="training batch size (default: %(default)s)")
    p.add_argument("--lr_decay_epochs", type=int, nargs="+", default=None,
                   help="epochs after which the learning rate is multiplied by 0.1 (default: at 3/4 of the run)")
    p.add_argument("--train_subset", type=int, default=0,
                   help="train on a fixed random sample of N training images (0 = all); for quick trials")
    p.add_argument("--eval_subset", type=int, default=0,
                   help="evaluate on a fixed random sample of N validation images (0 = all); for quick trials")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 1: train YOLOv3-MobileNetV1 (x0.5, 128x128 input) before pruning it. Offline: "
                    "without --data_dir the embedded VOC-format demo data is used.")
    p.add_argument("--data_dir", default=None,
                   help="data in PaddleX VOC format (train_list.txt, val_list.txt, labels.txt, JPEG images, "
                        "XML annotations); default: the embedded demo data")
    p.add_argument("--save_dir", default="output/yolov3_mobilenet",
                   help="output folder: epoch_N/, best_model/, vdl_log/ (default: %(default)s)")
    p.add_argument("--pretrain_weights", default=None,
                   help="a MobileNetV1 classifier folder (of --backbone_scale) whose weights start the backbone, or a "
                        "YOLOv3 folder; default: the classifier --backbone_epochs trains")
    p.add_argument("--backbone_scale", type=float, default=0.5,
                   help="width of the MobileNetV1 backbone and the head (PaddleX's model is 1.0; 0.5 is the "
                        "pipeline's, 0.25 trains about 3x faster but names the digits worse) (default: %(default)s)")
    p.add_argument("--backbone_epochs", type=int, default=20,
                   help="without --pretrain_weights: first train the MobileNetV1 backbone as a classifier on "
                        "the embedded classification set for this many epochs (paddleprune's stand-in for "
                        "PaddleX's ImageNet weights; 0 = random start) (default: %(default)s)")
    p.add_argument("--num_epochs", type=int, default=36, help="epochs to train (default: %(default)s)")
    p.add_argument("--nms_score_threshold", type=float, default=0.01,
                   help="boxes scoring below this are dropped (PaddleX's 0.01); a few epochs into training most "
                        "scores are still near the 0.002 prior, so short trials use 0.001 (default: %(default)s)")
    p.add_argument("--optimizer", choices=["adam", "momentum"], default="adam",
                   help="adam (trains this small detector several times faster here) or PaddleX's Momentum 0.9 "
                        "(default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=0.001,
                   help="base learning rate (default: %(default)s; 0.004 suits Momentum)")
    p.add_argument("--warmup_epochs", type=int, default=1,
                   help="linear warm-up from 0, in epochs (default: %(default)s)")
    add_schedule_args(p)
    return p.parse_args(argv)


def make_optimizer(name, learning_rate, steps_per_epoch, decay_epochs, warmup_epochs=0):
    """None (train()'s default: Momentum 0.9 with this schedule) or a function making Adam with it."""
    if name == "momentum":
        return None
    from paddleprune.tasks.optim import adam_factory
    return adam_factory(learning_rate, steps_per_epoch, decay_epochs, warmup_epochs * steps_per_epoch)


def train_backbone(epochs, save_dir, scale):
    """The pipeline's stage 0: MobileNetV1 at ``scale`` trained as a classifier; returns its best_model folder."""
    import dataclasses

    from paddleprune.pipeline.run import train_backbone as stage0
    from paddleprune.pipeline.tasks import get_task
    spec = get_task("detection")
    return stage0(spec, dataclasses.replace(spec.full, backbone_epochs=epochs,
                                            model_kwargs={"backbone_scale": scale}), save_dir)


def default_decay_epochs(num_epochs):
    """One decay at 3/4 of the run (36 epochs -> [27])."""
    return [max(1, int(round(0.75 * num_epochs)))] if num_epochs > 1 else [1]


def open_voc(data_dir, list_name, transforms=None, subset=0, shuffle=False):
    """``VOCDetection`` of ``data_dir/list_name``; with ``subset`` > 0, a fixed random sample of that many
    lines (written to a temporary list file: the data set reads and checks its list when opened)."""
    from paddleprune.datasets import VOCDetection
    list_path, labels = os.path.join(data_dir, list_name), os.path.join(data_dir, "labels.txt")
    if subset and os.path.isfile(list_path):
        with open(list_path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        if subset < len(lines):
            keep = np.sort(np.random.RandomState(0).choice(len(lines), subset, replace=False))
            with tempfile.TemporaryDirectory() as tmp:
                sub_path = os.path.join(tmp, list_name)
                with open(sub_path, "w", encoding="utf-8") as f:
                    f.write("".join(lines[i] + "\n" for i in keep))
                return VOCDetection(data_dir, sub_path, labels, transforms=transforms, shuffle=shuffle)
    return VOCDetection(data_dir, list_path, labels, transforms=transforms, shuffle=shuffle)


def eval_transforms():
    from paddleprune.det import transforms as T
    return T.Compose([T.Resize(target_size=INPUT_SIZE, interp="CUBIC"), T.Normalize()])


def load_datasets(data_dir, train_subset=0, eval_subset=0):
    from paddleprune.datasets import demo
    from paddleprune.det import transforms as T
    data_dir = data_dir or demo.detection()
    # PaddleX's YOLOv3 augmentation without MixupImage and without the horizontal flip (a mirrored digit
    # is another shape)
    train_tf = T.Compose([T.RandomDistort(), T.RandomExpand(ratio=2.0), T.RandomCrop(),
                          T.Resize(target_size=INPUT_SIZE, interp="RANDOM"), T.Normalize()])
    train = open_voc(data_dir, "train_list.txt", train_tf, train_subset, shuffle=True)
    return data_dir, train, open_voc(data_dir, "val_list.txt", eval_transforms(), eval_subset)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune
    from paddleprune import det
    from paddleprune.errors import PaddlePruneError
    from paddleprune.prune import count_params, dygraph_flops

    t0 = time.perf_counter()
    try:
        data_dir, train, val = load_datasets(args.data_dir, args.train_subset, args.eval_subset)
        steps = len(train) // args.batch_size
        decay = args.lr_decay_epochs if args.lr_decay_epochs is not None else default_decay_epochs(args.num_epochs)
        pretrain = args.pretrain_weights
        if pretrain is None and args.backbone_epochs > 0:
            pretrain = train_backbone(args.backbone_epochs, args.save_dir.rstrip("/\\") + "_backbone",
                                      args.backbone_scale)
        model = det.YOLOv3(num_classes=len(train.labels), nms_score_threshold=args.nms_score_threshold,
                           backbone_scale=args.backbone_scale, **MODEL_KWARGS)
        model.train(num_epochs=args.num_epochs, train_dataset=train, train_batch_size=args.batch_size,
                    eval_dataset=val, save_dir=args.save_dir, pretrain_weights=pretrain,
                    optimizer=make_optimizer(args.optimizer, args.learning_rate, steps, decay, args.warmup_epochs),
                    learning_rate=args.learning_rate, warmup_steps=args.warmup_epochs * steps,
                    lr_decay_epochs=decay, save_interval_epochs=3, use_vdl=True, log_interval_steps=10)
    except PaddlePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best_dir = os.path.join(args.save_dir, "best_model")
    best = paddleprune.load_model(best_dir)
    shape = [1, 3, INPUT_SIZE, INPUT_SIZE]
    score = (best.eval_metrics or {}).get("bbox_map", float("nan"))
    print()
    print("== stage 1 done: original model trained ==")
    print(f"data           : {data_dir} ({len(train)} train / {len(val)} val images)")
    print(f"epochs         : {args.num_epochs} ({args.optimizer}, batch {args.batch_size}, lr {args.learning_rate}, "
          f"decay at {decay}; backbone from {pretrain or 'random weights'})")
    print(f"best model     : {best_dir} (epoch {best.completed_epochs}, val bbox_map {score:.4f})")
    print(f"params / FLOPs : {count_params(best.net) / 1e6:.4f} M / {dygraph_flops(best.net, shape) / 1e6:.2f} M")
    print(f"VisualDL       : visualdl --logdir {os.path.join(args.save_dir, 'vdl_log')} --host 127.0.0.1 "
          "--port 8040 --language en")
    print(f"time           : {time.perf_counter() - t0:.1f} s")
    print(f"next           : python cal_sensitivities_file.py --model_dir {best_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
