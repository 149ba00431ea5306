"""``BaseTask``: the PaddleX 1.x model API (``train``, ``evaluate``, save/load) for every task.

A task supplies hooks only: ``build_net``, ``compute_loss``, ``make_metric`` (primary key
first), ``default_transforms``, ``input_shape_of``; the train loop (``tasks/trainer.py``)
never checks which task it runs.

**Task I/O contract.** Everything that runs a network goes through these hooks (the train
loop, ``evaluate``, sensitivity scoring with the activation cache, export and latency):

- ``collate_fn(mode)`` — DataLoader collation for 'train' or 'eval' (None: Paddle's default);
- ``split_batch(batch) -> (inputs, targets)`` — ``inputs`` is the tuple of network inputs,
  ``targets`` the rest of the batch (labels, ground truth, original image sizes);
- ``run_net(inputs)`` — the one call convention, ``self.net(*inputs)``;
- ``postprocess(outputs, targets)`` — network outputs to what the metric takes (logits for
  classifiers, boxes in original image coordinates for detectors);
- ``make_metric()`` — a streaming metric: ``update(predictions, targets)`` per batch;
- ``export_layer()``, ``export_inputs(image_shape)``, ``export_outputs`` — what is exported
  (network plus post-processing), its named inputs and outputs;
- ``sample_feeds(image_shape)`` — one input array per exported input, for latency runs.
"""
import abc
import inspect
import logging

import paddle

from paddleprune.errors import InvalidParameterError, NotTrainedError
from paddleprune.tasks.params import check_train_args

logger = logging.getLogger(__name__)

__all__ = ["BaseTask", "scalar_metrics"]


def scalar_metrics(metrics):
    """The scalar entries of a metrics dict as plain floats, whatever their numpy type (lists
    and arrays such as per-class values are left out)."""
    import numbers
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


class BaseTask(abc.ABC):
    """Base of the task models (``paddleprune.cls.MobileNetV2`` ...).

    The constructor only validates and stores its arguments; the network is built by
    ``train()`` or :func:`paddleprune.load_model`. After that, ``net`` holds it.

    Attributes
    ----------
    net : paddle.nn.Layer or None
    labels : list of str or None
        Class names, from the training set.
    status : {'Normal', 'Prune'}
    completed_epochs : int
    train_transforms, eval_transforms : Compose or None
    input_shape : list of int or None
        ``[1, C, H, W]`` of one transformed sample (used to trace the network).
    prune_info : dict or None
        For a pruned model: ``input_shape``, ``records``, ``sensitivities_file``, ``eval_metric_loss``.
    eval_metrics : OrderedDict or None
        The last evaluation during ``train()``.
    """

    #: PaddleX ``model_type`` written to model.yml
    model_type = None
    net = None
    labels = None
    status = "Normal"
    completed_epochs = 0
    train_transforms = None
    eval_transforms = None
    input_shape = None
    prune_info = None
    eval_metrics = None

    def __init__(self, num_classes=1000):
        self.num_classes = num_classes

    # -- parameters -------------------------------------------------------------------
    def get_params(self):
        """``{argument: value}`` for every constructor argument (written to ``model.yml``)."""
        sig = inspect.signature(type(self).__init__)
        return {name: getattr(self, name) for name, p in sig.parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    # -- hooks ------------------------------------------------------------------------
    @abc.abstractmethod
    def build_net(self):
        """Return a new network (``paddle.nn.Layer``) for the constructor arguments."""

    @abc.abstractmethod
    def compute_loss(self, outputs, labels):
        """Return the scalar training loss (a Tensor) of one batch."""

    @abc.abstractmethod
    def make_metric(self, keep_details=False):
        """Return a metric with ``update(outputs, labels)``, ``accumulate()`` -> OrderedDict
        (primary key first) and ``details()``."""

    @abc.abstractmethod
    def default_transforms(self, mode):
        """Transforms used when a data set has none; ``mode`` is 'train' or 'eval'."""

    def eval_transforms_from(self, train_transforms):
        """Deterministic transforms matching ``train_transforms`` (when there is no eval set)."""
        return self.default_transforms("eval")

    @abc.abstractmethod
    def build_transforms(self, config_list):
        """Rebuild transforms from their ``model.yml`` config."""

    def input_shape_of(self, dataset):
        """``[1, C, H, W]`` of one transformed sample of ``dataset``."""
        image = dataset[0][0]
        return [1] + [int(d) for d in image.shape]

    # -- task I/O contract (see the module docstring) ---------------------------------
    #: names of the exported model's outputs
    export_outputs = ("logits",)
    #: L2 weight decay of the default optimizer
    weight_decay = 1e-4

    def default_optimizer(self, owner, net, args, steps_per_epoch):
        """The optimizer ``train()`` makes when none is given (``args``: its checked arguments):
        PaddleX's Momentum 0.9 with warmup and piecewise decay."""
        from paddleprune.tasks.optim import default_optimizer
        return default_optimizer(owner, net, args.learning_rate, steps_per_epoch, args.lr_decay_epochs,
                                 args.lr_decay_gamma, args.warmup_steps, args.warmup_start_lr,
                                 weight_decay=self.weight_decay)

    def collate_fn(self, mode):
        """DataLoader ``collate_fn`` for ``mode`` 'train' or 'eval' (None: Paddle's default)."""
        return None

    def split_batch(self, batch):
        """``(tuple of network inputs, targets)`` from one DataLoader batch."""
        return (batch[0],), batch[1]

    def run_net(self, inputs, net=None):
        """Call the network (``self.net`` unless ``net``) on the inputs from :meth:`split_batch`."""
        return (net or self.net)(*inputs)

    def postprocess(self, outputs, targets):
        """Network outputs -> what the metric's ``update`` takes (default: unchanged)."""
        return outputs

    def export_layer(self):
        """The Layer exported for deployment (default: the network itself)."""
        return self.net

    def export_inputs(self, image_shape):
        """``[(name, shape, dtype)]`` of the exported model; ``image_shape`` is ``[N, C, H, W]``
        with None for dynamic sizes."""
        return [("image", list(image_shape), "float32")]

    def sample_feeds(self, image_shape, seed=0):
        """One fixed array per exported input, for an image batch of ``image_shape``."""
        import numpy as np
        return [np.random.default_rng(seed).random(image_shape, dtype=np.float32)]

    #: False when the exported model's ONNX form runs one image at a time (detection: paddle2onnx
    #: converts multi-class NMS correctly at batch 1 only)
    onnx_batch = True

    def predict_inputs(self, owner, images, transforms=None):
        """``(feeds, context)`` for ``predict``: one array per exported input (the images read
        and transformed with ``transforms`` or ``eval_transforms``) and what
        :meth:`predict_results` needs to undo the transforms."""
        transforms = transforms if transforms is not None else self.eval_transforms
        if transforms is None:
            raise InvalidParameterError(f"{owner}: the model has no eval_transforms; pass 'transforms'.")
        return self._predict_inputs(owner, images, transforms)

    def _predict_inputs(self, owner, images, transforms):
        """Task hook behind :meth:`predict_inputs` (every task defines it)."""
        raise NotImplementedError(f"{type(self).__name__} defines no _predict_inputs: it cannot predict.")

    def predict_results(self, outputs, context, **options):
        """One ``predict`` result per image from the exported outputs (numpy arrays, in
        ``export_outputs`` order) of :meth:`predict_inputs`' feeds."""
        raise NotImplementedError(f"{type(self).__name__} defines no predict_results: it cannot predict.")

    def run_export_layer(self, feeds):
        """The exported layer's outputs (numpy) for ``feeds``, run in dygraph (eval, no grad)."""
        from paddleprune.prune.graph import eval_mode
        with eval_mode(self.net), paddle.no_grad():
            outs = self.export_layer()(*[paddle.to_tensor(f) for f in feeds])
        return [o.numpy() for o in (outs if isinstance(outs, (list, tuple)) else [outs])]

    def step_metrics(self, outputs, labels):
        """Extra scalars logged with the loss during training (e.g. ``acc1``)."""
        return {}

    def check_labels(self, owner, labels):
        """Check the training set's class names against ``num_classes``: more classes than
        outputs is an error, fewer a warning."""
        if labels is None:
            return
        if len(labels) > self.num_classes:
            raise InvalidParameterError(
                f"{owner}: the training set has {len(labels)} classes but the model was made with "
                f"num_classes={self.num_classes}; use {type(self).__name__}(num_classes={len(labels)}).")
        if len(labels) < self.num_classes:
            logger.warning("%s: the training set has %d classes, the model %d outputs", owner, len(labels),
                           self.num_classes)

    @staticmethod
    def read_input_image(owner, item):
        """An image given to ``predict``: a file path (decoded to RGB) or an ``H x W x 3`` array."""
        import os

        import numpy as np

        from paddleprune.datasets.imagenet import read_image
        if isinstance(item, (str, os.PathLike)):
            return read_image(os.fspath(item))
        if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[2] in (1, 3):
            return item
        raise InvalidParameterError(f"{owner}: an image must be a file path or an H x W x 3 RGB array; "
                                    f"got {type(item).__name__} {getattr(item, 'shape', '')}.")

    def sensitivity_key(self):
        """Key of the bundled ``'DEFAULT'`` sensitivities: class name, plus ``_<backbone>``."""
        backbone = getattr(self, "backbone", None)
        return type(self).__name__ + (f"_{backbone}" if backbone else "")

    # -- training ---------------------------------------------------------------------
    def train(self, num_epochs, train_dataset, train_batch_size=64, eval_dataset=None, save_interval_epochs=1,
              log_interval_steps=2, save_dir="output", pretrain_weights=None, optimizer=None,
              learning_rate=0.025, warmup_steps=0, warmup_start_lr=0.0, lr_decay_epochs=(30, 60, 90),
              lr_decay_gamma=0.1, use_vdl=False, sensitivities_file=None, eval_metric_loss=0.05,
              early_stop=False, early_stop_patience=5, resume_checkpoint=None, *, prune_round_to=None):
        """Train the model, optionally pruning it first (PaddleX 1.3 signature).

        Order: build the network, load ``pretrain_weights``, prune with
        ``sensitivities_file`` / ``eval_metric_loss`` (FLOPs are logged before and
        after), or instead restore ``resume_checkpoint``, then make a fresh optimizer
        and run the epochs. Every ``save_interval_epochs`` and at the last epoch the
        model is evaluated (if ``eval_dataset``) and saved to ``save_dir/epoch_N``;
        the best by the primary metric is copied to ``save_dir/best_model``.

        Parameters
        ----------
        num_epochs : int
            Epochs to train (in total, counting those of ``resume_checkpoint``).
        train_dataset : Dataset
            E.g. :class:`paddleprune.datasets.ImageNet`; its ``transforms`` are used (the
            task's defaults when None) and its ``labels`` are stored with the model.
        train_batch_size : int
            Batch size; the last partial batch of an epoch is dropped.
        eval_dataset : Dataset, optional
            Evaluated at each save; its transforms are saved for ``predict``.
        save_interval_epochs : int
            Evaluate and save every this many epochs.
        log_interval_steps : int
            Log loss, metrics, learning rate, speed and ETA every this many steps.
        save_dir : str
            Output folder (``epoch_N``, ``best_model``, ``vdl_log``).
        pretrain_weights : str, optional
            None (random init; the default, so nothing is downloaded unless asked for,
            whereas PaddleX's default is ``'IMAGENET'``), a model folder saved by
            ``train()`` (a pruned one has its record replayed first), or a ``.pdparams``
            file; for a detector also the folder of a classifier of its backbone network
            (the backbone starts from it). ``'IMAGENET'``: Paddle's published ImageNet
            weights (``paddle.vision.models``) for MobileNetV1 / MobileNetV2 at scale 1.0,
            ResNet18 and ResNet50, and YOLOv3's MobileNetV1 backbone at backbone_scale
            1.0, taken from Paddle's weights cache (``paddle.utils.download.WEIGHTS_HOME``)
            or downloaded into it; the head is dropped (logged) when ``num_classes`` is
            not 1000. Other PaddleX names (``'COCO'``, ``'CITYSCAPES'`` ...) are refused.
        optimizer : paddle.optimizer.Optimizer or callable, optional
            Default: Momentum 0.9, L2 1e-4, piecewise decay. A callable gets the
            trainable parameters after pruning and returns an optimizer; an instance must
            be over this network's current parameters. An LR scheduler it holds is
            stepped every iteration.
        learning_rate : float
        warmup_steps : int
            Linear warmup from ``warmup_start_lr`` over this many steps.
        warmup_start_lr : float
        lr_decay_epochs : list of int
            Epochs at which the learning rate is multiplied by ``lr_decay_gamma``.
        lr_decay_gamma : float
        use_vdl : bool
            Write VisualDL scalars to ``save_dir/vdl_log``.
        sensitivities_file : str, optional
            None (no pruning), a file from :func:`paddleprune.slim.cal_params_sensitivities`,
            or ``'DEFAULT'`` (the bundled file for this model, if any).
        eval_metric_loss : float
            Tolerated relative metric loss per layer, in (0, 1); picks the ratios.
        early_stop : bool
            Stop when the primary metric has not improved by 1e-4 for
            ``early_stop_patience`` evaluations.
        early_stop_patience : int
        resume_checkpoint : str, optional
            An ``epoch_N`` folder: its pruning record, weights and optimizer state are
            restored and training continues at epoch N+1.
        prune_round_to : int, optional
            paddleprune extension: keep a multiple of this many channels in every pruned
            group (e.g. 8), so the pruned convolutions stay SIMD-friendly; without it,
            odd channel counts can make a pruned model slower on ONNX Runtime.

        Raises
        ------
        InvalidParameterError
            An argument out of range (``"MobileNetV2.train: 'eval_metric_loss' must be a
            number in (0, 1); got 1.5."``), weights that do not fit, a refused optimizer.
        DataNotFoundError
            A path that does not exist; ``'IMAGENET'`` weights neither cached nor
            downloadable (the message names the URL and the cache path).
        """
        owner = f"{type(self).__name__}.train"
        args = check_train_args(owner, {
            "num_epochs": num_epochs, "train_dataset": train_dataset, "train_batch_size": train_batch_size,
            "eval_dataset": eval_dataset, "save_interval_epochs": save_interval_epochs,
            "log_interval_steps": log_interval_steps, "save_dir": save_dir, "pretrain_weights": pretrain_weights,
            "optimizer": optimizer, "learning_rate": learning_rate, "warmup_steps": warmup_steps,
            "warmup_start_lr": warmup_start_lr, "lr_decay_epochs": lr_decay_epochs,
            "lr_decay_gamma": lr_decay_gamma, "use_vdl": use_vdl, "sensitivities_file": sensitivities_file,
            "eval_metric_loss": eval_metric_loss, "early_stop": early_stop,
            "early_stop_patience": early_stop_patience, "resume_checkpoint": resume_checkpoint,
            "prune_round_to": prune_round_to})
        from paddleprune.tasks.trainer import fit
        fit(self, args)

    # -- evaluation -------------------------------------------------------------------
    def _check_net(self, owner):
        if self.net is None:
            raise NotTrainedError(f"{owner}: the model has no network yet; call train() or use "
                                  "paddleprune.load_model(dir).")

    def evaluate(self, eval_dataset, batch_size=1, return_details=False):
        """Evaluate on ``eval_dataset``.

        Parameters
        ----------
        eval_dataset : Dataset
            Its transforms are used (the model's ``eval_transforms`` when None). Under
            ``paddle.distributed.launch`` every rank must call this: each evaluates a share of
            the samples and every rank gets the metrics of the whole set.
        batch_size : int
        return_details : bool
            Also return the per-sample details (task specific).

        Returns
        -------
        OrderedDict or (OrderedDict, dict)
            Metrics, primary first (``acc1`` for classifiers).

        Raises
        ------
        NotTrainedError
            Before ``train()`` or ``load_model``.
        """
        from paddleprune.tasks.params import check_dataset, check_int
        owner = f"{type(self).__name__}.evaluate"
        self._check_net(owner)
        check_dataset(owner, "eval_dataset", eval_dataset)
        check_int(owner, "batch_size", batch_size, 1)
        if hasattr(eval_dataset, "transforms") and eval_dataset.transforms is None:
            if self.eval_transforms is None:
                raise InvalidParameterError(f"{owner}: 'eval_dataset' has no transforms and the model has "
                                            "no eval_transforms; give the data set transforms.")
            eval_dataset.transforms = self.eval_transforms
        from paddleprune.tasks.evaluation import run_evaluation
        metric = run_evaluation(self, eval_dataset, batch_size, self.make_metric(keep_details=return_details))
        result = metric.accumulate()
        return (result, metric.details()) if return_details else result

    # -- saving -----------------------------------------------------------------------
    def model_info(self, eval_metrics=None):
        """The ``model.yml`` content for the current state."""
        from paddleprune import __version__
        info = {
            "version": __version__,
            "Model": type(self).__name__,
            "_init_params": self.get_params(),
            "_Attributes": {"model_type": self.model_type, "num_classes": self.num_classes,
                            "labels": self.labels, "input_shape": self.input_shape,
                            "eval_metrics": scalar_metrics(eval_metrics)},
            "Transforms": self.eval_transforms.to_config_list() if self.eval_transforms is not None else None,
            "TrainTransforms": (self.train_transforms.to_config_list()
                                if hasattr(self.train_transforms, "to_config_list") else None),
            "completed_epochs": self.completed_epochs,
            "status": self.status,
        }
        if self.status == "Prune":
            info["prune"] = self.prune_info
        return info

    def restore_info(self, info):
        """Set labels, transforms, status ... from a ``model.yml`` dict (used by ``load_model``)."""
        attrs = info.get("_Attributes") or {}
        self.labels = attrs.get("labels")
        self.input_shape = attrs.get("input_shape")
        self.eval_metrics = attrs.get("eval_metrics")
        self.status = info["status"]
        self.completed_epochs = info.get("completed_epochs", 0)
        self.prune_info = info.get("prune")
        if info.get("Transforms"):
            self.eval_transforms = self.build_transforms(info["Transforms"])
        if info.get("TrainTransforms"):
            self.train_transforms = self.build_transforms(info["TrainTransforms"])

    def save_model(self, save_dir):
        """Save the network and ``model.yml`` to ``save_dir`` (atomically; no optimizer state).

        Raises
        ------
        NotTrainedError
            Before ``train()`` or ``load_model``.
        """
        from paddleprune.tasks.checkpoint import save_model_dir
        self._check_net(f"{type(self).__name__}.save_model")
        return save_model_dir(self, save_dir, eval_metrics=self.eval_metrics)

    def export_inference_model(self, save_dir, fixed_input_shape=None):
        """Export for Paddle Inference (``model.json``, ``model.pdiparams``) plus ``model.yml``
        with ``status: Infer`` (pruned shapes are baked into the program).

        Parameters
        ----------
        save_dir : str
        fixed_input_shape : list of int, optional
            ``[width, height]`` (PaddleX order); default: dynamic batch, height and width.

        Returns
        -------
        str
            ``save_dir``.

        Raises
        ------
        NotTrainedError
            Before ``train()`` or ``load_model``.
        InvalidParameterError
            A malformed ``fixed_input_shape``.
        """
        import os

        import yaml

        from paddleprune.deploy import export_inference_model
        from paddleprune.tasks.checkpoint import to_plain
        from paddleprune.tasks.params import check_int
        from paddleprune.utils.atomic import atomic_write_text
        owner = f"{type(self).__name__}.export_inference_model"
        self._check_net(owner)
        channels = self.input_shape[1] if self.input_shape else 3
        if fixed_input_shape is None:
            shape = [-1, channels, -1, -1]
        else:
            if not isinstance(fixed_input_shape, (list, tuple)) or len(fixed_input_shape) != 2:
                raise InvalidParameterError(f"{owner}: 'fixed_input_shape' must be [width, height]; "
                                            f"got {fixed_input_shape!r}.")
            w, h = (check_int(owner, "fixed_input_shape", v, 1) for v in fixed_input_shape)
            shape = [-1, channels, h, w]
        inputs = self.export_inputs([None if d == -1 else d for d in shape])
        export_inference_model(self.export_layer(), save_dir, inputs=inputs)
        info = self.model_info(self.eval_metrics)
        info["status"] = "Infer"
        info.pop("prune", None)
        info["_Attributes"]["fixed_input_shape"] = list(fixed_input_shape) if fixed_input_shape else None
        if self.input_shape:   # read by `paddleprune benchmark`: the exported program has no dygraph net
            from paddleprune.prune import count_params, dygraph_flops
            flops_shape = [1, channels] + (shape[2:] if fixed_input_shape else list(self.input_shape[2:]))
            info["_Attributes"].update(params=int(count_params(self.net)),
                                       flops=int(dygraph_flops(self.net, flops_shape)), flops_input_shape=flops_shape)
        info["_ModelInputsOutputs"] = {"inputs": [[name, [-1 if d is None else d for d in dims]]
                                                  for name, dims, _ in inputs],
                                       "outputs": list(self.export_outputs)}
        atomic_write_text(os.path.join(os.fspath(save_dir), "model.yml"),
                          yaml.safe_dump(to_plain(info), sort_keys=False))
        return os.fspath(save_dir)
