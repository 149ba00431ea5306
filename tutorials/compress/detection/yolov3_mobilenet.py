"""Stage 3 of the PaddleX 1.x pruning tutorial: prune YOLOv3-MobileNetV1 and retrain it.

Builds the stage-1 detector again, loads its weights (``--model_dir``), prunes every layer
group of backbone, neck and head as far as ``--eval_metric_loss`` allows according to
``--sensitivities_file`` and retrains the smaller network. ``--sensitivities_file DEFAULT``
uses the file bundled with paddleprune for ``YOLOv3_MobileNetV1`` (method 2) instead of your
own (method 1). The three output convs keep ``3 x (5 + classes)`` channels. The result is
saved to ``--save_dir`` with ``status: Prune`` in its ``model.yml``.
"""
import argparse
import logging
import os
import sys
import time

from train import INPUT_SIZE, add_schedule_args, default_decay_epochs, load_datasets, make_optimizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 3: prune the stage-1 detector with a sensitivities file and retrain it.")
    p.add_argument("--model_dir", default="output/yolov3_mobilenet/best_model",
                   help="trained, unpruned model from train.py, used as pretrain weights (default: %(default)s)")
    p.add_argument("--sensitivities_file", default="./yolov3.sensi.json",
                   help="file from cal_sensitivities_file.py (method 1), or DEFAULT for the bundled file "
                        "(method 2) (default: %(default)s)")
    p.add_argument("--eval_metric_loss", type=float, default=0.05,
                   help="tolerated relative mAP loss per layer, in (0, 1); larger prunes more (default: %(default)s)")
    p.add_argument("--data_dir", default=None,
                   help="data in PaddleX VOC format (default: the embedded demo data)")
    p.add_argument("--save_dir", default="output/yolov3_mobilenet_prune",
                   help="output folder: epoch_N/, best_model/, vdl_log/ (default: %(default)s)")
    p.add_argument("--num_epochs", type=int, default=24, help="epochs to retrain (default: %(default)s)")
    p.add_argument("--optimizer", choices=["adam", "momentum"], default="adam",
                   help="adam or PaddleX's Momentum 0.9 (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=0.0005,
                   help="base learning rate, no warm-up (default: %(default)s)")
    add_schedule_args(p)
    return p.parse_args(argv)


def describe(model, dataset, batch_size=32):
    """``(params, FLOPs, val bbox_map)`` of a loaded model."""
    from paddleprune.prune import count_params, dygraph_flops
    score = model.evaluate(dataset, batch_size=batch_size)["bbox_map"]
    return count_params(model.net), dygraph_flops(model.net, [1, 3, INPUT_SIZE, INPUT_SIZE]), score


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune
    from paddleprune.errors import DataNotFoundError, PaddlePruneError

    t0 = time.perf_counter()
    try:
        if not os.path.isfile(os.path.join(args.model_dir, "model.yml")):
            raise DataNotFoundError(f"no model in {args.model_dir} (model.yml missing); run train.py first "
                                    "or pass --model_dir")
        if args.sensitivities_file != "DEFAULT" and not os.path.isfile(args.sensitivities_file):
            raise DataNotFoundError(f"sensitivities file not found: {args.sensitivities_file}; run "
                                    "cal_sensitivities_file.py first (method 1) or pass --sensitivities_file "
                                    "DEFAULT (method 2)")
        original = paddleprune.load_model(args.model_dir)
        data_dir, train, val = load_datasets(args.data_dir, args.train_subset, args.eval_subset)
        decay = args.lr_decay_epochs if args.lr_decay_epochs is not None else default_decay_epochs(args.num_epochs)
        # the same class and constructor arguments as the stage-1 model
        model = type(original)(**original.get_params())
        model.train(num_epochs=args.num_epochs, train_dataset=train, train_batch_size=args.batch_size,
                    eval_dataset=val, save_dir=args.save_dir, pretrain_weights=args.model_dir,
                    optimizer=make_optimizer(args.optimizer, args.learning_rate, len(train) // args.batch_size, decay),
                    learning_rate=args.learning_rate, warmup_steps=0, lr_decay_epochs=decay,
                    save_interval_epochs=3, use_vdl=True, log_interval_steps=10,
                    sensitivities_file=args.sensitivities_file, eval_metric_loss=args.eval_metric_loss)
    except PaddlePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best_dir = os.path.join(args.save_dir, "best_model")
    pruned = paddleprune.load_model(best_dir)
    before, after = describe(original, val), describe(pruned, val)
    print()
    print("== stage 3 done: pruned model retrained ==")
    print(f"pruned with    : {args.sensitivities_file}, eval_metric_loss={args.eval_metric_loss} "
          f"(status {pruned.status})")
    print(f"best model     : {best_dir} (epoch {pruned.completed_epochs} of {args.num_epochs})")
    print(f"{'':15}  {'original':>10}  {'pruned':>10}")
    for name, i, fmt in (("params (M)", 0, "10.4f"), ("FLOPs (M)", 1, "10.2f")):
        print(f"{name:15}  {before[i] / 1e6:{fmt}}  {after[i] / 1e6:{fmt}}  "
              f"({100 * (1 - after[i] / before[i]):.1f} % removed)")
    print(f"{'val bbox_map':15}  {before[2]:10.4f}  {after[2]:10.4f}  ({len(val)} images of {data_dir})")
    print(f"VisualDL       : visualdl --logdir {os.path.join(args.save_dir, 'vdl_log')} --host 127.0.0.1 "
          "--port 8040 --language en")
    print(f"time           : {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
