"""The ``paddleprune`` command line."""
import argparse
import logging
import shlex
import sys


def _cmd_prune(args):
    from paddleprune.prune import FilterPruner, FPGMFilterPruner, L1NormFilterPruner, L2NormFilterPruner, count_params

    pruners = {"l1_norm": L1NormFilterPruner, "l2_norm": L2NormFilterPruner, "fpgm": FPGMFilterPruner}
    model = _build_net(args.model, args.num_classes)
    shape = [1, 3, args.input_size, args.input_size]
    pruner = pruners[args.criterion](model, shape)
    flops0, params0 = pruner.flops(), count_params(model)
    if args.pruned_flops is not None:
        ratio = pruner.uniform_ratio_for_flops(args.pruned_flops)
    else:
        ratio = args.ratio
    groups = pruner.prunable_groups()
    pruner.prune_vars({g.root: ratio for g in groups})
    after = FilterPruner(model, shape)
    flops1, params1 = after.flops(), count_params(model)
    skipped = [g for g in pruner.groups if not g.prunable and g.producers]
    print(f"{args.model} at {args.input_size}x{args.input_size}: {len(groups)} channel groups pruned at "
          f"ratio {ratio:.3f} ({args.criterion}); {len(skipped)} left unpruned")
    print(f"{'':10}{'before':>16}{'after':>16}{'change':>10}")
    print(f"{'params':10}{params0:>16,}{params1:>16,}{params1 / params0 - 1:>+10.1%}")
    print(f"{'FLOPs':10}{flops0:>16,}{flops1:>16,}{flops1 / flops0 - 1:>+10.1%}")
    if args.save:
        import paddle
        paddle.save(model.state_dict(), args.save)
        print(f"pruned weights saved to {args.save}")
    return 0


def _without_launch_options(argv):
    """``argv`` without ``--nproc`` / ``--ips`` (and their values)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--nproc", "--ips"):
            skip = True
        elif not arg.startswith(("--nproc=", "--ips=")):
            out.append(arg)
    return out


def _launch(args):
    """Run this command as ``--nproc`` ranks under ``paddle.distributed.launch``; its exit code."""
    import os
    import subprocess

    from paddleprune.utils import dist
    log_dir = os.path.join(args.save_dir, "log")
    cmd = dist.launch_command(args.nproc, _without_launch_options(args.argv), ips=args.ips, log_dir=log_dir)
    print(f"paddleprune {args.command}: starting {args.nproc} processes (logs in {log_dir}/workerlog.N): "
          + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def _needs_launch(args):
    from paddleprune.utils import dist
    return (args.nproc > 1 or args.ips) and dist.world()[1] == 1


def _cmd_pipeline(args):
    from paddleprune.pipeline import run_pipeline
    from paddleprune.pipeline.report import to_markdown
    if _needs_launch(args):
        return _launch(args)
    report = run_pipeline(task=args.task, data_dir=args.data, save_dir=args.save_dir,
                          eval_metric_loss=args.eval_metric_loss, pruned_flops=args.pruned_flops,
                          sensitivities_file=args.sensitivities_file, quick=args.quick,
                          latency=not args.no_latency, round_to=args.round_to)
    if report is not None:      # rank 0 (or a single process)
        print(to_markdown(report))
    return 0


def _cmd_demo(args):
    import os

    from paddleprune.pipeline.tasks import TASKS
    if _needs_launch(args):
        return _launch(args)
    tasks = [args.task] if args.task else list(TASKS)
    root, args.data, args.sensitivities_file = args.save_dir, None, None
    for task in tasks:
        args.task, args.save_dir = task, os.path.join(root, task) if len(tasks) > 1 else root
        _cmd_pipeline(args)
    return 0


def _cmd_build_default(args):
    from paddleprune.pipeline.default import build_default
    path = build_default(task=args.task, data_dir=args.data, save_dir=args.save_dir, builtin_dir=args.builtin_dir,
                         quick=args.quick, command="paddleprune " + shlex.join(args.argv), model=args.model,
                         model_params=args.model_params, input_size=args.input_size, epochs=args.epochs,
                         pretrain_weights=args.pretrain_weights, skip_train=args.skip_train)
    print(f"installed {path}; sensitivities_file='DEFAULT' now uses it")
    return 0


def _json_object(text):
    import json
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"scale\": 0.5}}', got {text!r}")
    return value


def _build_net(name, num_classes):
    """A registered paddleprune network or a paddle.vision.models constructor."""
    from paddleprune.models import get_model, list_models
    if name in list_models():
        return get_model(name, num_classes=num_classes)
    import paddle.vision.models as models
    factory = getattr(models, name, None)
    if factory is None or not callable(factory) or name[0].isupper():
        names = sorted(n for n in models.__all__ if n[0].islower())
        raise SystemExit(f"paddleprune: unknown model {name!r}; choose from {', '.join(list_models() + names)}")
    return factory(num_classes=num_classes)


def _cmd_visualize(args):
    from paddleprune.slim import visualize
    cost_fn = None
    if args.model:
        from paddleprune.prune import L1NormFilterPruner
        net = _build_net(args.model, args.num_classes)
        cost_fn = L1NormFilterPruner(net, [1, 3, args.input_size, args.input_size]).cost_of
    png = visualize(args.sensitivities_file, args.save_dir, cost_fn=cost_fn, model_name=args.model,
                    vdl_logdir=args.vdl_logdir)
    print(f"wrote {png}")
    return 0


def _input_size(text):
    try:
        w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected W,H such as 224,224; got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"W and H must be positive; got {text!r}")
    return [w, h]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _cmd_export(args):
    from paddleprune.deploy.export import export_model
    files = export_model(args.model_dir, args.save_dir, args.format, args.fixed_input_shape)
    print("wrote " + ", ".join(files))
    return 0


def _cmd_benchmark(args):
    import json

    from paddleprune.deploy.benchmark import benchmark, to_table
    result = benchmark(args.model_dirs, batches=args.batch, threads=args.threads, backends=args.backends,
                       warmup=args.warmup, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else to_table(result))
    return 0


def _add_deploy_parsers(sub):
    e = sub.add_parser("export", help="export a trained model for deployment (PaddleX's --export_inference)",
                       description="Write Paddle Inference files (model.json, model.pdiparams) and/or model.onnx, "
                                   "plus a model.yml (status: Infer, transforms, labels) that "
                                   "paddleprune.deploy.Predictor reads alone.")
    e.add_argument("--model-dir", required=True, help="a folder saved by train(): best_model or epoch_N")
    e.add_argument("--save-dir", required=True, help="output folder (created; other files in it are kept)")
    e.add_argument("--format", default="paddle", choices=["paddle", "onnx", "both"],
                   help="paddle: model.json + model.pdiparams; onnx: model.onnx (paddle2onnx); both (default paddle)")
    e.add_argument("--fixed-input-shape", type=_input_size, default=None, metavar="W,H",
                   help="fixed input width,height, e.g. 224,224 (default: dynamic batch, height and width)")
    e.set_defaults(func=_cmd_export)

    b = sub.add_parser("benchmark", help="latency (median, p90), size, params and FLOPs of exported models",
                       description="Time exported model folders (paddleprune export) interleaved, per backend "
                                   "and batch size; the first folder is the reference of the ratios.")
    b.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="exported folders with the same input size")
    b.add_argument("--batch", type=int, nargs="+", default=[1], metavar="N", help="batch sizes (default 1)")
    b.add_argument("--threads", type=int, default=2, help="math / intra-op threads per backend (default 2)")
    b.add_argument("--backends", nargs="+", default=["paddle_inference", "onnxruntime"],
                   choices=["paddle_inference", "onnxruntime"], help="backends to time (default both)")
    b.add_argument("--warmup", type=int, default=10, help="untimed runs per model (default 10)")
    b.add_argument("--repeats", type=int, default=50, help="timed runs per model (default 50)")
    b.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")
    b.set_defaults(func=_cmd_benchmark)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="paddleprune",
        description="Structured filter pruning for PaddlePaddle 3 vision models (PaddleX 1.x style).")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    task_names = ["classification", "detection", "segmentation"]   # pipeline.tasks.TASKS, listed here so --help stays light
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("prune", help="prune a paddle.vision model uniformly and print params and FLOPs before/after")
    p.add_argument("--model", default="mobilenet_v2", help="a paddle.vision.models constructor (default mobilenet_v2)")
    p.add_argument("--ratio", type=float, default=0.5, help="share of channels removed from every group (default 0.5)")
    p.add_argument("--pruned-flops", type=float, default=None,
                   help="instead of --ratio: the share of FLOPs to remove (uniform ratio found by search)")
    p.add_argument("--criterion", default="l1_norm", choices=["l1_norm", "l2_norm", "fpgm"])
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--save", default=None, help="write the pruned state_dict here (.pdparams)")
    p.set_defaults(func=_cmd_prune)

    def pipeline_options(p, save_dir):
        p.add_argument("--save-dir", default=save_dir, help=f"output folder (default {save_dir})")
        p.add_argument("--eval-metric-loss", type=float, default=0.05,
                       help="tolerated relative metric loss per layer, PaddleX 1.x (default 0.05)")
        p.add_argument("--pruned-flops", type=float, default=None,
                       help="instead: the share of FLOPs to remove, e.g. 0.5")
        p.add_argument("--quick", action="store_true", help="few epochs and a small sensitivity set (minutes)")
        p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
        p.add_argument("--round-to", type=int, default=None,
                       help="pruned layers keep a multiple of this many channels (default 8; 1 = no alignment)")
        p.add_argument("--nproc", type=_positive_int, default=1,
                       help="data-parallel processes on this machine, started with paddle.distributed.launch "
                            "(one per GPU; on a CPU at most one per core). Logs: SAVE_DIR/log/workerlog.N")
        p.add_argument("--ips", default=None,
                       help="several machines: the comma-separated IPs of all of them, the first one leading; "
                            "run the same command on each")

    pl = sub.add_parser("pipeline", help="train, compute sensitivities, retrain pruned, and report before/after")
    pl.add_argument("--task", default="classification", choices=task_names)
    pl.add_argument("--data", default=None, help="data dir in PaddleX format (default: the embedded demo set)")
    pl.add_argument("--sensitivities-file", default=None, help="skip stage 2: a sensitivities file or DEFAULT")
    pipeline_options(pl, "output/pipeline")
    pl.set_defaults(func=_cmd_pipeline)

    dm = sub.add_parser("demo", help="the pipeline on the embedded data of every task (or --task), offline")
    dm.add_argument("--task", default=None, choices=task_names,
                    help="run one task only (default: all, each into SAVE_DIR/<task>)")
    pipeline_options(dm, "output/demo")
    dm.set_defaults(func=_cmd_demo)

    bd = sub.add_parser("build-default", help="train on a data set (or --skip-train), compute sensitivities and "
                                              "install them as the 'DEFAULT' file of the task's model")
    bd.add_argument("--task", default="classification", choices=task_names)
    bd.add_argument("--data", default=None, help="data dir in PaddleX format (default: the embedded demo set)")
    bd.add_argument("--save-dir", default="output/build_default", help="work folder (default output/build_default)")
    bd.add_argument("--builtin-dir", default=None,
                    help="where to install the file and manifest.json (default: the package's builtin_sensitivities)")
    bd.add_argument("--quick", action="store_true", help="few epochs and a small sensitivity set (minutes)")
    bd.add_argument("--model", default=None,
                    help="another model of the task's package, e.g. ResNet50 (default: the pipeline's model)")
    bd.add_argument("--model-params", type=_json_object, default=None, metavar="JSON",
                    help="keyword arguments of --model, e.g. '{\"scale\": 0.5}' (default: the model's own defaults)")
    bd.add_argument("--epochs", type=int, default=None,
                    help="stage-1 epochs (default: the task's; its learning-rate decay epochs are scaled alike)")
    bd.add_argument("--input-size", type=int, default=None,
                    help="input size for --model (default: the task's; with --skip-train, the model's own eval "
                         "transforms, for classifiers PaddleX's ImageNet ones: short side 256, centre crop 224)")
    bd.add_argument("--pretrain-weights", default=None,
                    help="weights stage 1 starts from: IMAGENET (Paddle's published weights, from Paddle's cache "
                         "or downloaded) or a model folder (default: none, or stage 0's backbone)")
    bd.add_argument("--skip-train", action="store_true",
                    help="with --pretrain-weights IMAGENET: no training, the sensitivities of the published "
                         "weights on --data's validation set, which must have ImageNet's 1000 classes in "
                         "ImageNet's order (how PaddleX made its DEFAULT files)")
    bd.set_defaults(func=_cmd_build_default)

    v = sub.add_parser("visualize", help="plot a sensitivities file (PNG)")
    v.add_argument("sensitivities_file")
    v.add_argument("--save-dir", default=".")
    v.add_argument("--vdl-logdir", default=None, help="also write the curves as VisualDL scalars here")
    v.add_argument("--model", default=None,
                   help="the network the file was made for (registered name or paddle.vision constructor); "
                        "adds the FLOPs- and params-removed curves")
    v.add_argument("--num-classes", type=int, default=1000)
    v.add_argument("--input-size", type=int, default=224)
    v.set_defaults(func=_cmd_visualize)
    _add_deploy_parsers(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ValueError as exc:   # paddleprune errors subclass ValueError / FileNotFoundError
        print(f"paddleprune {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"paddleprune {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
