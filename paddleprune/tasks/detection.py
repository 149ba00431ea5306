"""Object detection task with the PaddleX 1.x name and signature: ``YOLOv3``.

The network (:class:`paddleprune.models.YOLOv3Net`) takes the image only and returns the three
raw head maps; the loss (``yolo_loss``), the decoding (``yolo_box``) and the multi-class NMS
are Paddle's ops (:mod:`paddleprune.models.yolo_ops`). The whole network — backbone, neck and
head — is prunable; the three output convs keep ``len(mask) * (5 + num_classes)`` channels
because they are network outputs.

A batch (:meth:`YOLOv3.collate_fn`) is a dict of tensors: ``image`` ``[N, 3, H, W]``,
``im_size`` (original ``[height, width]``, int32), the training targets ``gt_box``
(``cx, cy, w, h`` divided by the input size), ``gt_label``, ``gt_score``, and for the metric
``gt_bbox`` (boxes in original image coordinates), ``gt_class``, ``difficult`` and ``gt_num``
(boxes per image; the rest is padding).
"""
import copy
import logging
import numbers

import cv2
import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics import VOCMetric
from paddleprune.models import get_model
from paddleprune.models.yolo_ops import YOLOv3Inference, yolov3_decode, yolov3_loss
from paddleprune.tasks.base import BaseTask
from paddleprune.tasks.registry import register_task
from paddleprune.transforms import det as T
from paddleprune.transforms.base import to_chw
from paddleprune.utils.checks import check_int, check_interval

logger = logging.getLogger(__name__)

__all__ = ["YOLOv3", "collate_detection"]

#: PaddleX 1.x YOLOv3 multi-scale training sizes
DEFAULT_RANDOM_SHAPES = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)


def _resize_sample(sample, size):
    """Resize a transformed sample's image (and boxes) to ``size`` x ``size``."""
    image = sample["image"]
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return sample
    sample = dict(sample)
    sample["image"] = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    if len(sample.get("gt_bbox", ())):
        sample["gt_bbox"] = sample["gt_bbox"] * np.array([size / w, size / h, size / w, size / h], np.float32)
    return sample


def collate_detection(samples, random_shapes=None):
    """Turn transformed detection samples into one batch (a dict of numpy arrays).

    Parameters
    ----------
    samples : list of dict
        Samples of :class:`paddleprune.datasets.VOCDetection` after the transforms.
    random_shapes : sequence of int, optional
        Resize the whole batch to one size drawn from these (PaddleX's multi-scale training);
        the draw is seeded by the batch's image ids, so a resumed run repeats it.

    Raises
    ------
    InvalidParameterError
        Images of different sizes in one batch (the transforms must end with a ``Resize``).
    """
    if random_shapes:
        rng = np.random.default_rng([int(s.get("im_id", 0)) for s in samples])
        size = int(random_shapes[int(rng.integers(len(random_shapes)))])
        samples = [_resize_sample(s, size) for s in samples]
    shapes = sorted({tuple(s["image"].shape[:2]) for s in samples})
    if len(shapes) > 1:
        raise InvalidParameterError(
            f"detection batch: images of different sizes {shapes} (e.g. {samples[0].get('im_path')}); the "
            "transforms must give one size, e.g. end with Resize(target_size=608) before Normalize.")
    height, width = shapes[0]
    n = len(samples)
    nmax = max([1] + [len(s.get("gt_bbox", ())) for s in samples])
    batch = {"image": np.stack([to_chw(s["image"]) for s in samples]),
             "im_size": np.array([list(s["origin_shape"]) for s in samples], np.int32),
             "gt_box": np.zeros([n, nmax, 4], np.float32), "gt_label": np.zeros([n, nmax], np.int32),
             "gt_score": np.zeros([n, nmax], np.float32), "gt_bbox": np.zeros([n, nmax, 4], np.float32),
             "gt_class": np.zeros([n, nmax], np.int32), "difficult": np.zeros([n, nmax], np.int32),
             "gt_num": np.zeros([n], np.int32)}
    for i, s in enumerate(samples):
        boxes = np.asarray(s.get("gt_bbox", np.zeros([0, 4])), np.float32).reshape(-1, 4)
        k = len(boxes)
        if not k:
            continue
        oh, ow = (float(v) for v in s["origin_shape"])
        batch["gt_box"][i, :k] = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / width,
                                           (boxes[:, 1] + boxes[:, 3]) / 2 / height,
                                           (boxes[:, 2] - boxes[:, 0]) / width,
                                           (boxes[:, 3] - boxes[:, 1]) / height], axis=1)
        batch["gt_label"][i, :k] = s["gt_class"]
        batch["gt_score"][i, :k] = s.get("gt_score", np.ones([k], np.float32))
        batch["gt_bbox"][i, :k] = boxes * np.array([ow / width, oh / height, ow / width, oh / height], np.float32)
        batch["gt_class"][i, :k] = s["gt_class"]
        batch["difficult"][i, :k] = s.get("difficult", np.zeros([k], np.int32))
        batch["gt_num"][i] = k
    return batch


def _numpy(value):
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


class _BoxMetric:
    """Streaming VOC mAP over batches of ``(bbox, bbox_num)`` predictions and collated targets."""

    def __init__(self, num_classes, class_names=None):
        self.voc = VOCMetric(num_classes, map_type="11point", class_names=class_names)

    def update(self, predictions, targets):
        bbox, bbox_num = (_numpy(t) for t in predictions)
        gt = {k: _numpy(targets[k]) for k in ("gt_num", "gt_bbox", "gt_class", "difficult")}
        starts = np.concatenate([[0], np.cumsum(bbox_num)])
        for i, k in enumerate(gt["gt_num"]):      # padded ground truth: the first gt_num rows are real
            self.voc.update_image(bbox[starts[i]:starts[i + 1]], gt["gt_bbox"][i, :k], gt["gt_class"][i, :k],
                                  gt["difficult"][i, :k])

    def accumulate(self):
        return self.voc.accumulate()

    def details(self):
        return self.voc.details()


@register_task
class YOLOv3(BaseTask):
    """YOLOv3 detector (PaddleX 1.x signature).

    Parameters
    ----------
    num_classes : int
        Object classes (without background).
    backbone : {'MobileNetV1'}
    anchors : list of [w, h], optional
        Anchor sizes in input pixels (default: PaddleX's nine COCO anchors for 608 inputs;
        scale them for smaller inputs).
    anchor_masks : list of list of int, optional
        Anchors of each output level, stride 32 first (default ``[[6, 7, 8], [3, 4, 5], [0, 1, 2]]``).
    ignore_threshold : float
        Predictions overlapping a ground truth above this IoU get no objectness loss.
    nms_score_threshold, nms_topk, nms_keep_topk, nms_iou_threshold
        Multi-class NMS: score floor, candidates per class, boxes kept per image, IoU.
    label_smooth : bool
        Smooth the class targets.
    train_random_shapes : list of int
        Each training batch is resized to a size drawn from these (multi-scale training);
        an empty list keeps the size the transforms give.
    backbone_scale : float
        paddleprune extension: width multiplier of the MobileNetV1 backbone and of the head
        (1.0 is PaddleX's model; 0.25 trains on a CPU in minutes).
    """

    model_type = "detector"
    weight_decay = 5e-4
    #: ``pretrain_weights`` may be a MobileNetV1 classifier folder, or ``'IMAGENET'`` (Paddle's
    #: mobilenetv1_1.0 weights, backbone_scale 1.0): its weights start the backbone, the head is random
    backbone_prefix = "backbone."
    export_outputs = ("bbox", "bbox_num")

    def __init__(self, num_classes=80, backbone="MobileNetV1", anchors=None, anchor_masks=None,
                 ignore_threshold=0.7, nms_score_threshold=0.01, nms_topk=1000, nms_keep_topk=100,
                 nms_iou_threshold=0.45, label_smooth=False, train_random_shapes=DEFAULT_RANDOM_SHAPES,
                 backbone_scale=1.0):
        owner = "YOLOv3"
        if backbone != "MobileNetV1":
            raise InvalidParameterError(f"{owner}: 'backbone' must be 'MobileNetV1'; got {backbone!r}.")
        check_interval(owner, "ignore_threshold", ignore_threshold, 0, 1)
        check_interval(owner, "nms_score_threshold", nms_score_threshold, 0, 1, closed="left")
        check_interval(owner, "nms_iou_threshold", nms_iou_threshold, 0, 1)
        for name, value in (("nms_topk", nms_topk), ("nms_keep_topk", nms_keep_topk)):
            check_int(owner, name, value, allow=(-1,), what="an int >= 1 or -1 (all)")
        if not isinstance(label_smooth, bool):
            raise InvalidParameterError(f"{owner}: 'label_smooth' must be True or False; got {label_smooth!r}.")
        shapes = list(train_random_shapes or [])
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 32 or v % 32 for v in shapes):
            raise InvalidParameterError(f"{owner}: 'train_random_shapes' must be a list of multiples of 32; "
                                        f"got {train_random_shapes!r}.")
        super().__init__(num_classes)
        self.backbone = backbone
        self.anchors = copy.deepcopy(anchors)
        self.anchor_masks = copy.deepcopy(anchor_masks)
        self.ignore_threshold = ignore_threshold
        self.nms_score_threshold = nms_score_threshold
        self.nms_topk = int(nms_topk)
        self.nms_keep_topk = int(nms_keep_topk)
        self.nms_iou_threshold = nms_iou_threshold
        self.label_smooth = label_smooth
        self.train_random_shapes = [int(v) for v in shapes]
        self.backbone_scale = backbone_scale
        get_model("YOLOv3", **self._net_args())             # validates num_classes, anchors, scale

    def _net_args(self):
        return {"num_classes": self.num_classes, "backbone": self.backbone, "backbone_scale": self.backbone_scale,
                "anchors": self.anchors, "anchor_masks": self.anchor_masks}

    def _nms(self):
        return {"nms_score_threshold": self.nms_score_threshold, "nms_topk": self.nms_topk,
                "nms_keep_topk": self.nms_keep_topk, "nms_iou_threshold": self.nms_iou_threshold}

    # -- hooks ------------------------------------------------------------------------
    def build_net(self):
        return get_model("YOLOv3", **self._net_args())

    def collate_fn(self, mode):
        shapes = self.train_random_shapes if mode == "train" else None
        return lambda samples: collate_detection(samples, shapes)

    def split_batch(self, batch):
        return (batch["image"],), batch

    def compute_loss(self, outputs, targets):
        net = self.net
        return yolov3_loss(outputs, targets["gt_box"], targets["gt_label"], targets["gt_score"], net.anchors,
                           net.anchor_masks, self.num_classes, self.ignore_threshold, self.label_smooth)

    def postprocess(self, outputs, targets):
        net = self.net
        return yolov3_decode(outputs, targets["im_size"], net.anchors, net.anchor_masks, self.num_classes,
                             **self._nms())

    def make_metric(self, keep_details=False):   # noqa: ARG002 - the VOC metric always keeps its per-class counts
        names = self.labels if self.labels and len(self.labels) == self.num_classes else None
        return _BoxMetric(self.num_classes, class_names=names)

    def input_shape_of(self, dataset):
        return [1] + [int(d) for d in to_chw(dataset[0]["image"]).shape]

    def default_transforms(self, mode):
        if mode == "train":
            return T.Compose([T.MixupImage(mixup_epoch=250), T.RandomDistort(), T.RandomExpand(), T.RandomCrop(),
                              T.Resize(target_size=608, interp="RANDOM"), T.RandomHorizontalFlip(), T.Normalize()])
        return T.Compose([T.Resize(target_size=608, interp="CUBIC"), T.Normalize()])

    def eval_transforms_from(self, train_transforms):
        """``Resize`` (with a fixed interpolation) and ``Normalize`` of ``train_transforms``;
        the random augmentations are dropped."""
        ops = []
        for op in getattr(train_transforms, "transforms", None) or []:
            if isinstance(op, T.Resize):
                ops.append(T.Resize(target_size=copy.deepcopy(op.target_size),
                                    interp="CUBIC" if op.interp == "RANDOM" else op.interp))
            elif isinstance(op, T.Normalize):
                ops.append(copy.deepcopy(op))
        if not any(isinstance(op, T.Resize) for op in ops):
            return self.default_transforms("eval")
        return T.Compose(ops)

    def build_transforms(self, config_list):
        return T.build_transforms(config_list)

    def export_layer(self):
        return YOLOv3Inference(self.net, **self._nms())

    def export_inputs(self, image_shape):
        return [("image", list(image_shape), "float32"), ("im_size", [image_shape[0], 2], "int32")]

    def sample_feeds(self, image_shape, seed=0):
        image = np.random.default_rng(seed).random(image_shape, dtype=np.float32)
        return [image, np.tile(np.array([image_shape[2:]], np.int32), [image_shape[0], 1])]

    # -- training ---------------------------------------------------------------------
    def train(self, num_epochs, train_dataset, train_batch_size=8, eval_dataset=None, save_interval_epochs=20,
              log_interval_steps=2, save_dir="output", pretrain_weights=None, optimizer=None,
              learning_rate=1.0 / 8000, warmup_steps=1000, warmup_start_lr=0.0, lr_decay_epochs=(213, 240),
              lr_decay_gamma=0.1, metric=None, use_vdl=False, sensitivities_file=None, eval_metric_loss=0.05,
              early_stop=False, early_stop_patience=5, resume_checkpoint=None, *, prune_round_to=None):
        """Train the detector, optionally pruning it first (PaddleX 1.3 YOLOv3 signature).

        As :meth:`BaseTask.train`, with PaddleX's detection defaults; ``metric`` may be None
        or ``'VOC'`` (VOC mAP, reported as ``bbox_map``, a fraction). ``pretrain_weights='IMAGENET'``
        starts the backbone from Paddle's MobileNetV1 ImageNet weights (``backbone_scale=1.0``
        only); ``'COCO'`` is refused.
        """
        if metric not in (None, "VOC"):
            raise InvalidParameterError(f"YOLOv3.train: 'metric' must be None or 'VOC'; got {metric!r} (COCO "
                                        "evaluation is not supported).")
        super().train(num_epochs, train_dataset, train_batch_size, eval_dataset, save_interval_epochs,
                      log_interval_steps, save_dir, pretrain_weights, optimizer, learning_rate, warmup_steps,
                      warmup_start_lr, lr_decay_epochs, lr_decay_gamma, use_vdl, sensitivities_file,
                      eval_metric_loss, early_stop, early_stop_patience, resume_checkpoint,
                      prune_round_to=prune_round_to)

    # -- prediction -------------------------------------------------------------------
    onnx_batch = False

    def batch_predict(self, img_file_list, transforms=None):
        """Detect objects in several images; one :meth:`predict` result per image."""
        owner = f"{type(self).__name__}.predict"
        self._check_net(owner)
        feeds, context = self.predict_inputs(owner, img_file_list, transforms)
        return self.predict_results(self.run_export_layer(feeds), context)

    def _predict_inputs(self, owner, images, transforms):
        samples = []
        for i, item in enumerate(images):
            image = self.read_input_image(owner, item)
            samples.append(transforms({"image": image, "im_id": i,
                                       "origin_shape": np.array(image.shape[:2], np.int32)}))
        batch = collate_detection(samples)
        return [batch["image"], batch["im_size"]], None

    def predict_results(self, outputs, context):
        bbox, counts = outputs[0], outputs[1].reshape(-1)
        results, start = [], 0
        for k in counts:
            rows = bbox[start:start + int(k)]
            start += int(k)
            results.append([{"category_id": int(c),
                             "category": self.labels[int(c)] if self.labels and int(c) < len(self.labels) else str(int(c)),
                             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)}
                            for c, score, x1, y1, x2, y2 in rows])
        return results

    def predict(self, img_file, transforms=None):
        """Detect objects in one image (a path or an ``H x W x 3`` RGB array), or a list of them.

        Returns
        -------
        list of dict
            ``[{'category_id', 'category', 'bbox': [x, y, w, h], 'score'}, ...]`` in the
            original image's pixels, best score first (``w = x2 - x1``); a list of such
            lists for a list of images.
        """
        if isinstance(img_file, (list, tuple)):
            return self.batch_predict(img_file, transforms)
        return self.batch_predict([img_file], transforms)[0]
