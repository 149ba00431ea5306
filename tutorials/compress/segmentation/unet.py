"""Stage 3 of the PaddleX 1.x pruning tutorial: prune UNet and retrain it.

Builds the stage-1 UNet again (same class and constructor arguments, ``scale`` included,
read from its ``model.yml``), loads its weights (``--model_dir``), prunes every layer group
of encoder and decoder as far as ``--eval_metric_loss`` allows according to
``--sensitivities_file`` and retrains the smaller network: Adam with PaddleX's polynomial
decay at half stage 1's learning rate, as the pipeline does (``--optimizer momentum``: PaddleX's
Momentum). ``--sensitivities_file DEFAULT`` uses the file bundled with paddleprune for ``UNet``
(method 2) instead of your own (method 1). The logit conv keeps one channel per class. The
result is saved to ``--save_dir`` with ``status: Prune`` in its ``model.yml``.
"""
import argparse
import logging
import os
import sys
import time

from train import INPUT_SIZE, OPTIMIZERS, add_schedule_args, load_datasets, schedule


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Stage 3: prune the stage-1 UNet with a sensitivities file and retrain it.")
    p.add_argument("--model_dir", default="output/unet/best_model",
                   help="trained, unpruned model from train.py, used as pretrain weights (default: %(default)s)")
    p.add_argument("--sensitivities_file", default="./unet.sensi.json",
                   help="file from cal_sensitivities_file.py (method 1), or DEFAULT for the bundled file "
                        "(method 2) (default: %(default)s)")
    p.add_argument("--eval_metric_loss", type=float, default=0.05,
                   help="tolerated relative miou loss per layer, in (0, 1); larger prunes more (default: %(default)s)")
    p.add_argument("--data_dir", default=None,
                   help="data in PaddleX segmentation format (default: the embedded demo data)")
    p.add_argument("--save_dir", default="output/unet_prune",
                   help="output folder: epoch_N/, best_model/, vdl_log/ (default: %(default)s)")
    p.add_argument("--num_epochs", type=int, default=8, help="epochs to retrain (default: %(default)s)")
    p.add_argument("--learning_rate", type=float, default=0.001,
                   help="base learning rate (default: %(default)s, half of stage 1's, for Adam; Momentum needs "
                        "about 0.025)")
    p.add_argument("--round_to", type=int, default=8,
                   help="every pruned layer group keeps a multiple of this many channels, as the pipeline does "
                        "(paddleprune extension; 1 = no alignment, PaddleX's behaviour) (default: %(default)s)")
    add_schedule_args(p)
    return p.parse_args(argv)


def describe(model, dataset, batch_size=16):
    """``(params, FLOPs, val miou)`` of a loaded model."""
    from paddleprune.prune import count_params, dygraph_flops
    score = model.evaluate(dataset, batch_size=batch_size)["miou"]
    return count_params(model.net), dygraph_flops(model.net, [1, 3, INPUT_SIZE, INPUT_SIZE]), score


def default_hint(key):
    """Why ``DEFAULT`` failed, if it is because no file is bundled for ``key``."""
    from paddleprune.tasks.pruning import read_manifest
    if key in read_manifest():
        return ""
    return (f"\nhint: paddleprune has no bundled DEFAULT sensitivities for {key} yet. Install them with "
            "`paddleprune build-default --task segmentation` (trains UNet on the demo data and computes its "
            "sensitivities, like stages 1-2 here), or use your own file (method 1): "
            "python cal_sensitivities_file.py, then --sensitivities_file ./unet.sensi.json")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import paddleprune as pdx
    from paddleprune.errors import DataNotFoundError, InvalidParameterError, PaddlePruneError

    t0 = time.perf_counter()
    model = None
    try:
        if not os.path.isfile(os.path.join(args.model_dir, "model.yml")):
            raise DataNotFoundError(f"no model in {args.model_dir} (model.yml missing); run train.py first "
                                    "or pass --model_dir")
        if args.sensitivities_file != "DEFAULT" and not os.path.isfile(args.sensitivities_file):
            raise DataNotFoundError(f"sensitivities file not found: {args.sensitivities_file}; run "
                                    "cal_sensitivities_file.py first (method 1) or pass --sensitivities_file "
                                    "DEFAULT (method 2)")
        original = pdx.load_model(args.model_dir)
        data_dir, train, val = load_datasets(args.data_dir, args.train_subset, args.eval_subset)
        # the same class and constructor arguments (num_classes, scale, ...) as the stage-1 model
        model = type(original)(**original.get_params())
        model.train(num_epochs=args.num_epochs, train_dataset=train, train_batch_size=args.batch_size,
                    eval_dataset=val, save_dir=args.save_dir, pretrain_weights=args.model_dir,
                    save_interval_epochs=args.save_interval_epochs, use_vdl=True, log_interval_steps=10,
                    **schedule(args, len(train) // args.batch_size),
                    sensitivities_file=args.sensitivities_file, eval_metric_loss=args.eval_metric_loss,
                    prune_round_to=args.round_to)
    except PaddlePruneError as exc:
        hint = ""
        if args.sensitivities_file == "DEFAULT" and isinstance(exc, InvalidParameterError) and model is not None:
            hint = default_hint(model.sensitivity_key())
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    best_dir = os.path.join(args.save_dir, "best_model")
    pruned = pdx.load_model(best_dir)
    if pruned.status != "Prune":
        print(f"note: eval_metric_loss={args.eval_metric_loss} pruned no layer group (every layer loses more "
              "than that at the smallest ratio); the model was only retrained. Try a larger --eval_metric_loss.")
    before, after = describe(original, val), describe(pruned, val)
    print()
    print("== stage 3 done: pruned model retrained ==")
    print(f"pruned with    : {args.sensitivities_file}, eval_metric_loss={args.eval_metric_loss}, "
          f"round_to={args.round_to} (status {pruned.status})")
    print(f"best model     : {best_dir} (epoch {pruned.completed_epochs} of {args.num_epochs}, "
          f"{OPTIMIZERS[args.optimizer]}, lr {args.learning_rate})")
    print(f"{'':15}  {'original':>10}  {'pruned':>10}")
    for name, i, fmt in (("params (M)", 0, "10.4f"), ("FLOPs (M)", 1, "10.2f")):
        print(f"{name:15}  {before[i] / 1e6:{fmt}}  {after[i] / 1e6:{fmt}}  "
              f"({100 * (1 - after[i] / before[i]):.1f} % removed)")
    print(f"{'val miou':15}  {before[2]:10.4f}  {after[2]:10.4f}  ({len(val)} images of {data_dir})")
    print(f"VisualDL       : visualdl --logdir {os.path.join(args.save_dir, 'vdl_log')} --host 127.0.0.1 "
          "--port 8040 --language en")
    print(f"time           : {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
