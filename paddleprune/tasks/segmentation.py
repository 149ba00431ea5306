"""Semantic segmentation task with the PaddleX 1.x name and signature: ``UNet``.

The network (:class:`paddleprune.models.UNetNet`) maps an image ``[N, 3, H, W]`` to logits
``[N, C, H, W]`` (``C = 1`` with ``use_bce_loss`` / ``use_dice_loss``, PaddleX's two-class
form). A batch (:func:`collate_segmentation`) is a dict: ``image`` and ``label`` (int64
``[N, H, W]``, 255 = ignore), both padded to the batch's largest size rounded up to a
multiple of 16. Evaluation compares label maps at the transformed size (PaddleX does the
same); :meth:`UNet.predict` undoes the resize and padding transforms and returns maps at
the input image's size.
"""
import copy
import logging
import numbers

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics import SegMetric
from paddleprune.models import get_model
from paddleprune.tasks.base import BaseTask
from paddleprune.tasks.registry import register_task
from paddleprune.transforms import seg as T
from paddleprune.transforms.base import to_chw
from paddleprune.utils.checks import check_int

logger = logging.getLogger(__name__)

__all__ = ["UNet", "collate_segmentation"]

#: the network needs H and W divisible by this (four 2x poolings)
SIZE_MULTIPLE = 16


def collate_segmentation(samples, ignore_index=255, multiple=SIZE_MULTIPLE):
    """Stack transformed samples into ``{'image': float32 [N, 3, H, W], 'label': int64 [N, H, W]}``
    (``label`` only if every sample has one); smaller images are padded at the bottom and right
    (image 0, label ``ignore_index``) to the largest size rounded up to ``multiple``."""
    shapes = [s["image"].shape[:2] for s in samples]
    height = -(-max(h for h, _ in shapes) // multiple) * multiple
    width = -(-max(w for _, w in shapes) // multiple) * multiple
    image = np.zeros([len(samples), samples[0]["image"].shape[2], height, width], np.float32)
    has_label = all(s.get("label") is not None for s in samples)
    label = np.full([len(samples), height, width], ignore_index, np.int64) if has_label else None
    for i, s in enumerate(samples):
        h, w = s["image"].shape[:2]
        image[i, :, :h, :w] = to_chw(s["image"])
        if has_label:
            if tuple(s["label"].shape[:2]) != (h, w):
                raise InvalidParameterError(
                    f"segmentation batch: label {tuple(s['label'].shape)} and image {(h, w)} sizes differ "
                    f"({s.get('im_path', f'sample {i}')}); the transforms must change both together.")
            label[i, :h, :w] = s["label"].reshape(h, w)
    batch = {"image": image}
    if has_label:
        batch["label"] = label
    return batch


class SegmentationExport(nn.Layer):
    """Network plus post-processing for deployment: image -> (label_map int64 [N, H, W],
    score_map float32 [N, C, H, W])."""

    def __init__(self, net, binary):
        super().__init__()
        self.net = net
        self.binary = binary

    def forward(self, image):
        return scores_and_labels(self.net(image), self.binary)


def scores_and_labels(logits, binary):
    """``(label_map, score_map)`` of network logits; a one-channel (binary) output becomes the
    two-class probabilities ``[1 - p, p]`` as in PaddleX."""
    if binary:
        p = F.sigmoid(logits)
        scores = paddle.concat([1 - p, p], axis=1)
    else:
        scores = F.softmax(logits, axis=1)
    return paddle.argmax(scores, axis=1), scores


def _dice_loss(logits, label, valid, eps=1e-5):
    """PaddleX's dice loss of a one-channel logit map (per image, then averaged)."""
    p = F.sigmoid(logits[:, 0]) * valid
    t = label.astype("float32") * valid
    inter = (p * t).sum(axis=[1, 2])
    return (1 - 2 * inter / (p.sum(axis=[1, 2]) + t.sum(axis=[1, 2]) + eps)).mean()


def _bce_loss(logits, label, valid):
    """Sigmoid cross-entropy of a one-channel logit map over the valid pixels."""
    loss = F.binary_cross_entropy_with_logits(logits[:, 0], label.astype("float32"), reduction="none")
    return (loss * valid).sum() / valid.sum().clip(min=1.0)


@register_task
class UNet(BaseTask):
    """UNet semantic segmenter (PaddleX 1.x signature).

    Parameters
    ----------
    num_classes : int
        Classes including the background (>= 2).
    upsample_mode : {'bilinear', 'deconv'}
        How the decoder upsamples: bilinear interpolation or a transposed convolution.
    use_bce_loss, use_dice_loss : bool
        Two-class only: the network outputs one channel and is trained with binary
        cross-entropy and / or dice loss (instead of softmax cross-entropy).
    class_weight : list of float, optional
        Per-class weights of the softmax cross-entropy (``num_classes`` positive numbers).
    ignore_index : int
        Label value that is skipped by the loss and the metric.
    scale : float
        paddleprune extension: width multiplier of every layer (1.0 is PaddleX's UNet with
        64..512 channels; 0.125 trains on a CPU in minutes).
    """

    model_type = "segmenter"
    weight_decay = 4e-5
    export_outputs = ("label_map", "score_map")

    def __init__(self, num_classes=2, upsample_mode="bilinear", use_bce_loss=False, use_dice_loss=False,
                 class_weight=None, ignore_index=255, scale=1.0):
        owner = "UNet"
        for name, value in (("use_bce_loss", use_bce_loss), ("use_dice_loss", use_dice_loss)):
            if not isinstance(value, bool):
                raise InvalidParameterError(f"{owner}: {name!r} must be True or False; got {value!r}.")
        check_int(owner, "num_classes", num_classes, 2, what="an int >= 2 (background included)")
        if (use_bce_loss or use_dice_loss) and num_classes != 2:
            raise InvalidParameterError(f"{owner}: use_bce_loss / use_dice_loss need num_classes=2 (binary "
                                        f"segmentation); got num_classes={num_classes}.")
        if class_weight is not None:
            ok = isinstance(class_weight, (list, tuple)) and len(class_weight) == num_classes and all(
                isinstance(w, numbers.Real) and not isinstance(w, bool) and w >= 0 for w in class_weight)
            if not ok:
                raise InvalidParameterError(f"{owner}: 'class_weight' must be None or {num_classes} numbers >= 0; "
                                            f"got {class_weight!r}.")
            class_weight = [float(w) for w in class_weight]
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral) or not (
                0 <= ignore_index <= 255):
            raise InvalidParameterError(f"{owner}: 'ignore_index' must be an int in [0, 255]; got {ignore_index!r}.")
        super().__init__(num_classes)
        self.upsample_mode = upsample_mode
        self.use_bce_loss = use_bce_loss
        self.use_dice_loss = use_dice_loss
        self.class_weight = class_weight
        self.ignore_index = int(ignore_index)
        self.scale = scale
        self._lr_decay_power = 0.9
        get_model("UNet", **self._net_args())       # validates upsample_mode and scale

    @property
    def binary(self):
        """True when the network has one output channel (bce / dice loss)."""
        return self.use_bce_loss or self.use_dice_loss

    def _net_args(self):
        return {"num_classes": 1 if self.binary else self.num_classes, "upsample_mode": self.upsample_mode,
                "scale": self.scale}

    # -- hooks ------------------------------------------------------------------------
    def build_net(self):
        return get_model("UNet", **self._net_args())

    def collate_fn(self, mode):  # noqa: ARG002 - same collation for training and evaluation
        return lambda samples: collate_segmentation(samples, self.ignore_index)

    def split_batch(self, batch):
        return (batch["image"],), batch.get("label")

    def compute_loss(self, outputs, labels):
        valid = (labels != self.ignore_index).astype("float32")
        if self.binary:
            target = paddle.where(labels == self.ignore_index, paddle.zeros_like(labels), labels)
            loss = 0
            if self.use_dice_loss:
                loss = loss + _dice_loss(outputs, target, valid)
            if self.use_bce_loss:
                loss = loss + _bce_loss(outputs, target, valid)
            return loss
        logits = outputs.transpose([0, 2, 3, 1])
        weight = paddle.to_tensor(self.class_weight, "float32") if self.class_weight else None
        return F.cross_entropy(logits, labels.unsqueeze(-1), weight=weight, ignore_index=self.ignore_index,
                               axis=-1, reduction="mean")

    def postprocess(self, outputs, targets):   # noqa: ARG002 - label maps are compared at the network's size
        return scores_and_labels(outputs, self.binary)[0]

    def make_metric(self, keep_details=False):
        names = self.labels if self.labels and len(self.labels) == self.num_classes else None
        return SegMetric(self.num_classes, ignore_index=self.ignore_index, keep_details=keep_details,
                         class_names=names)

    def input_shape_of(self, dataset):
        image = to_chw(dataset[0]["image"])
        return [1, int(image.shape[0])] + [-(-int(d) // SIZE_MULTIPLE) * SIZE_MULTIPLE for d in image.shape[1:]]

    def default_transforms(self, mode):
        if mode == "train":
            return T.Compose([T.RandomHorizontalFlip(), T.ResizeRangeScaling(), T.RandomPaddingCrop(crop_size=512),
                              T.Normalize()])
        return T.Compose([T.ResizeByLong(long_size=512), T.Padding(target_size=512), T.Normalize()])

    def eval_transforms_from(self, train_transforms):
        """Deterministic counterpart of ``train_transforms``: ``Resize`` / ``ResizeByLong`` /
        ``Padding`` / ``Normalize`` are kept, ``RandomPaddingCrop(c)`` becomes
        ``ResizeByLong(c) + Padding(c)`` (PaddleX's tutorial pairing), random ops are dropped."""
        ops = []
        for op in getattr(train_transforms, "transforms", None) or []:
            if isinstance(op, T.RandomPaddingCrop) and not any(isinstance(o, (T.Resize, T.ResizeByLong)) for o in ops):
                size = op.crop_size if isinstance(op.crop_size, numbers.Integral) else max(op.crop_size)
                ops += [T.ResizeByLong(long_size=size), T.Padding(target_size=copy.deepcopy(op.crop_size))]
            elif isinstance(op, T.Resize):
                ops.append(T.Resize(target_size=copy.deepcopy(op.target_size),
                                    interp="LINEAR" if op.interp == "RANDOM" else op.interp))
            elif isinstance(op, (T.ResizeByLong, T.Padding, T.Normalize)):
                ops.append(copy.deepcopy(op))
        if not any(isinstance(op, T.Normalize) for op in ops):
            return self.default_transforms("eval")
        return T.Compose(ops)

    def build_transforms(self, config_list):
        return T.build_transforms(config_list)

    def export_layer(self):
        return SegmentationExport(self.net, self.binary)

    # -- training ---------------------------------------------------------------------
    def default_optimizer(self, owner, net, args, steps_per_epoch):
        """PaddleX's segmenter optimizer: Momentum 0.9, L2 4e-5, polynomial decay over the run."""
        from paddleprune.tasks.optim import poly_optimizer
        return poly_optimizer(net, args.learning_rate, args.num_epochs * steps_per_epoch,
                              self._lr_decay_power, self.weight_decay)

    def train(self, num_epochs, train_dataset, train_batch_size=2, eval_dataset=None, save_interval_epochs=1,
              log_interval_steps=2, save_dir="output", pretrain_weights=None, optimizer=None, learning_rate=0.01,
              lr_decay_power=0.9, use_vdl=False, sensitivities_file=None, eval_metric_loss=0.05, early_stop=False,
              early_stop_patience=5, resume_checkpoint=None, *, prune_round_to=None):
        """Train the segmenter, optionally pruning it first (PaddleX 1.3 segmenter signature).

        As :meth:`BaseTask.train`, with PaddleX's segmentation schedule: without ``optimizer``,
        Momentum 0.9 whose rate falls from ``learning_rate`` to 0 as
        ``(1 - step / total_steps) ** lr_decay_power``. ``pretrain_weights`` is None or a
        saved model folder (Paddle publishes no UNet weights: ``'IMAGENET'``, ``'COCO'`` and
        ``'CITYSCAPES'`` are refused).
        """
        if isinstance(lr_decay_power, bool) or not isinstance(lr_decay_power, numbers.Real) or lr_decay_power <= 0:
            raise InvalidParameterError(f"{type(self).__name__}.train: 'lr_decay_power' must be a number > 0; "
                                        f"got {lr_decay_power!r}.")
        self._lr_decay_power = float(lr_decay_power)
        super().train(num_epochs, train_dataset, train_batch_size, eval_dataset, save_interval_epochs,
                      log_interval_steps, save_dir, pretrain_weights, optimizer, learning_rate, 0, 0.0, (), 0.1,
                      use_vdl, sensitivities_file, eval_metric_loss, early_stop, early_stop_patience,
                      resume_checkpoint, prune_round_to=prune_round_to)

    # -- prediction -------------------------------------------------------------------
    def batch_predict(self, img_file_list, transforms=None):
        """Segment several images; one :meth:`predict` result per image."""
        owner = f"{type(self).__name__}.predict"
        self._check_net(owner)
        feeds, samples = self.predict_inputs(owner, img_file_list, transforms)
        return self.predict_results(self.run_export_layer(feeds), samples)

    def _predict_inputs(self, owner, images, transforms):
        samples = []
        for item in images:
            image = self.read_input_image(owner, item)
            samples.append(transforms({"image": image, "origin_shape": np.array(image.shape[:2], np.int32)}))
        return [collate_segmentation(samples, self.ignore_index)["image"]], samples

    def predict_results(self, outputs, context):
        results = []
        for s, sample in zip(outputs[1], context):
            h, w = sample["image"].shape[:2]
            score_map = T.restore_label_map(s[:, :h, :w].transpose(1, 2, 0), sample.get("im_info", []))
            results.append({"label_map": np.argmax(score_map, axis=2).astype(np.int32),
                            "score_map": score_map.astype(np.float32)})
        return results

    def predict(self, img_file, transforms=None):
        """Segment one image (a path or an ``H x W x 3`` RGB array), or a list of them.

        Returns
        -------
        dict
            ``{'label_map': int32 [H, W], 'score_map': float32 [H, W, C]}`` at the input
            image's size (PaddleX 1.x); a list of such dicts for a list of images.
        """
        if isinstance(img_file, (list, tuple)):
            return self.batch_predict(img_file, transforms)
        return self.batch_predict([img_file], transforms)[0]
