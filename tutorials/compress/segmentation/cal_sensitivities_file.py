"""Stage 2 of the PaddleX 1.x pruning tutorial: compute the parameter sensitivities of UNet.

Loads the stage-1 model, prunes each layer group of the encoder and decoder in turn at
ratios 0.1 ... 0.9 and records the relative loss of validation ``miou`` (on ``val_list.txt``
of ``--dataset``) in a JSON file, then draws ``sensitivities.png`` with
``pdx.slim.visualize``, as PaddleX's segmentation tutorial does. The file is written after
every point: an interrupted run resumes where it stopped. Next step::

    python unet.py --model_dir output/unet/best_model --sensitivities_file ./unet.sensi.json \
        --eval_metric_loss 0.05
"""
import argparse
import logging
import os
import sys
import time

from train import open_dataset

#: eval_metric_loss values shown in the summary
LOSSES = (0.05, 0.10, 0.20, 0.30)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 2: compute the sensitivities of a trained (unpruned) UNet and plot them.")
    p.add_argument("--model_dir", default="output/unet/best_model",
                   help="model saved by train.py (default: %(default)s)")
    p.add_argument("--dataset", default=None,
                   help="data folder in PaddleX segmentation format; its val_list.txt is evaluated "
                        "(default: the embedded demo data)")
    p.add_argument("--save_file", default="./unet.sensi.json",
                   help="sensitivities file to write (JSON; default: %(default)s)")
    p.add_argument("--vis_dir", default=None,
                   help="folder for sensitivities.png and sensitivities_xy.json (default: the folder of "
                        "--save_file)")
    p.add_argument("--batch_size", type=int, default=16, help="evaluation batch size (default: %(default)s)")
    p.add_argument("--ratios", type=float, nargs="+", default=None,
                   help="pruning ratios to measure (default: 0.1 0.2 ... 0.9); fewer points are faster")
    p.add_argument("--eval_subset", type=int, default=64,
                   help="use a fixed random sample of N validation images (0 = all); faster, noisier")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing --save_file first (by default a file made for the same model, "
                        "weights and ratios is resumed)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune as pdx
    from paddleprune.errors import DataNotFoundError, PaddlePruneError, SensitivityFileError
    from paddleprune.prune import load_sensitivities

    t0 = time.perf_counter()
    vis_dir = args.vis_dir or os.path.dirname(os.path.abspath(args.save_file))
    try:
        if not os.path.isfile(os.path.join(args.model_dir, "model.yml")):
            raise DataNotFoundError(f"no model in {args.model_dir} (model.yml missing); run train.py first "
                                    "or pass --model_dir")
        model = pdx.load_model(args.model_dir)
        data_dir = args.dataset or pdx.datasets.demo.segmentation()
        # no transforms: cal_params_sensitivities uses the model's eval transforms (from model.yml)
        val = open_dataset(data_dir, "val_list.txt", subset=args.eval_subset)
        if args.overwrite and os.path.exists(args.save_file):
            os.remove(args.save_file)
        os.makedirs(os.path.dirname(os.path.abspath(args.save_file)), exist_ok=True)
        table = pdx.slim.cal_params_sensitivities(model, args.save_file, val, batch_size=args.batch_size,
                                                  ratios=args.ratios)
        png = pdx.slim.visualize(model, args.save_file, vis_dir)
    except SensitivityFileError as exc:
        print(f"error: {exc}\nhint: {args.save_file} was made for other weights or settings; pass --overwrite "
              "to recompute it, or choose another --save_file.", file=sys.stderr)
        return 2
    except PaddlePruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _, meta = load_sensitivities(args.save_file, return_meta=True)
    print()
    print("== stage 2 done: sensitivities computed ==")
    print(f"model       : {args.model_dir}")
    print(f"evaluated on: {os.path.join(data_dir, 'val_list.txt')} ({len(val)} images), "
          f"baseline {meta.get('metric')} = {meta.get('baseline', float('nan')):.4f}")
    print(f"layers      : {len(table)} prunable groups, ratios {meta.get('ratios')}")
    print(f"file        : {args.save_file}")
    print(f"plot        : {png}")
    print("eval_metric_loss -> FLOPs removed / params removed / layers pruned (no channel alignment):")
    for row in pdx.slim.loss_summary(model, table, LOSSES):
        print(f"  {row['eval_metric_loss']:4.2f}  ->  {100 * row['flops']:5.1f} %  /  {100 * row['params']:5.1f} %"
              f"  /  {row['layers']}")
    print(f"time        : {time.perf_counter() - t0:.1f} s")
    print(f"next        : python unet.py --model_dir {args.model_dir} --sensitivities_file {args.save_file} "
          "--eval_metric_loss 0.05")
    return 0


if __name__ == "__main__":
    sys.exit(main())
