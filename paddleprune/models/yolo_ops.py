"""YOLOv3 loss, decoding + NMS, and the two-input export wrapper.

Built on ``paddle.vision.ops.yolo_loss`` / ``yolo_box`` and ``paddle._C_ops.multiclass_nms3``
(Paddle 3.3 has no public ``multiclass_nms``; its argument order is
``(bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
normalized, nms_eta, background_label)``, as PaddleDetection calls it). Everything here also
runs under ``paddle.jit.to_static`` (PIR), so :class:`YOLOv3Inference` exports with
``paddle.jit.save`` and converts with paddle2onnx.

ONNX limitation (paddle2onnx 2.1.0): its ``multiclass_nms3`` mapper supports batch 1 only
(batch 2 fails in ONNX Runtime in a ``Concat``), and it gathers the score of (class, box) at
``class * M + box`` with ``M`` the *static* number of candidate boxes, which is -1 when the
input size is dynamic: every row of a class > 0 then has a wrong score or box. Export
:class:`YOLOv3Inference` for ONNX with a fixed input size (``[1 or None, 3, H, W]``) and run it
one image at a time; Paddle Inference has neither limitation.
"""

import paddle
import paddle.nn as nn
from paddle.vision.ops import yolo_box, yolo_loss

from paddleprune.errors import InvalidParameterError
from paddleprune.utils.checks import check_int, check_interval

__all__ = ["yolov3_loss", "yolov3_decode", "YOLOv3Inference", "NMS_DEFAULTS"]

#: default keyword arguments of :func:`yolov3_decode` (PaddleX 1.x YOLOv3 values)
NMS_DEFAULTS = {"nms_score_threshold": 0.01, "nms_topk": 1000, "nms_keep_topk": 100, "nms_iou_threshold": 0.45}


def _check_levels(owner, outputs, anchor_masks, downsample_ratios):
    if not isinstance(outputs, (list, tuple)) or not (len(outputs) == len(anchor_masks) == len(downsample_ratios)):
        n = len(outputs) if isinstance(outputs, (list, tuple)) else type(outputs).__name__
        raise InvalidParameterError(
            f"{owner}: 'outputs' ({n}), 'anchor_masks' ({len(anchor_masks)}) and 'downsample_ratios' "
            f"({len(downsample_ratios)}) must have one entry per level, stride 32 first.")


def _check_number(owner, name, value, lo, hi):
    return float(check_interval(owner, name, value, lo, hi, closed="both"))


def _check_topk(owner, name, value):
    return check_int(owner, name, value, allow=(-1,), what="a positive int (or -1 for no limit)")


def yolov3_loss(outputs, gt_box, gt_label, gt_score, anchors, anchor_masks, num_classes,
                ignore_threshold=0.7, label_smooth=False, downsample_ratios=(32, 16, 8)):
    """YOLOv3 loss of a batch: ``yolo_loss`` of each level, summed, averaged over the images.

    Parameters
    ----------
    outputs : list of Tensor
        The raw maps of :class:`~paddleprune.models.YOLOv3Net`, stride 32 first.
    gt_box : Tensor
        float32 ``[N, B, 4]``: (cx, cy, w, h) divided by the input width / height; padded
        rows are all zero.
    gt_label : Tensor
        int32 ``[N, B]``, 0-based class ids.
    gt_score : Tensor
        float32 ``[N, B]``: box weights (1.0, or the mixup weights).
    anchors : list of [w, h]
        All anchors, in input pixels.
    anchor_masks : list of list of int
        Anchor indices of each level.
    num_classes : int
    ignore_threshold : float
        Predictions whose best IoU with a ground truth exceeds this get no objectness loss.
    label_smooth : bool
        Smooth the class targets (``yolo_loss(use_label_smooth=...)``).
    downsample_ratios : sequence of int
        Stride of each level.

    Returns
    -------
    Tensor
        A scalar.
    """
    owner = "yolov3_loss"
    _check_levels(owner, outputs, anchor_masks, downsample_ratios)
    ignore_threshold = _check_number(owner, "ignore_threshold", ignore_threshold, 0, 1)
    flat = [int(v) for a in anchors for v in a]
    total = None
    for out, mask, ratio in zip(outputs, anchor_masks, downsample_ratios):
        loss = yolo_loss(out, gt_box, gt_label, flat, [int(i) for i in mask], int(num_classes), ignore_threshold,
                         int(ratio), gt_score=gt_score, use_label_smooth=bool(label_smooth))
        total = loss if total is None else total + loss
    return total.mean()


def yolov3_decode(outputs, im_size, anchors, anchor_masks, num_classes, nms_score_threshold=0.01,
                  nms_topk=1000, nms_keep_topk=100, nms_iou_threshold=0.45, downsample_ratios=(32, 16, 8)):
    """Boxes of a batch: ``yolo_box`` on each level, then multi-class NMS.

    Parameters
    ----------
    outputs : list of Tensor
        The raw maps, stride 32 first.
    im_size : Tensor
        int32 ``[N, 2]``, (height, width) of each image: boxes come out in those
        coordinates (the network input is assumed to be that image resized), clipped to it.
    anchors, anchor_masks, num_classes, downsample_ratios
        As for :func:`yolov3_loss`.
    nms_score_threshold : float
        Candidates scoring (objectness x class probability) below this are dropped
        (also the ``conf_thresh`` of ``yolo_box``).
    nms_topk : int
        Candidates kept per class before NMS (-1: all).
    nms_keep_topk : int
        Boxes kept per image after NMS (-1: all).
    nms_iou_threshold : float
        IoU above which a lower-scoring box of the same class is suppressed.

    Returns
    -------
    bbox : Tensor
        float32 ``[K, 6]``: (class, score, x1, y1, x2, y2), the images one after the other,
        each sorted by decreasing score (ties in any order).
    bbox_num : Tensor
        int32 ``[N]``: rows of ``bbox`` belonging to each image.
    """
    owner = "yolov3_decode"
    _check_levels(owner, outputs, anchor_masks, downsample_ratios)
    score_threshold = _check_number(owner, "nms_score_threshold", nms_score_threshold, 0, 1)
    iou_threshold = _check_number(owner, "nms_iou_threshold", nms_iou_threshold, 0, 1)
    topk = _check_topk(owner, "nms_topk", nms_topk)
    keep_topk = _check_topk(owner, "nms_keep_topk", nms_keep_topk)
    boxes, scores = [], []
    for out, mask, ratio in zip(outputs, anchor_masks, downsample_ratios):
        mask_anchors = [int(v) for i in mask for v in anchors[i]]
        b, s = yolo_box(out, im_size, mask_anchors, int(num_classes), score_threshold, int(ratio), clip_bbox=True)
        boxes.append(b)
        scores.append(s.transpose([0, 2, 1]))
    bboxes = paddle.concat(boxes, axis=1)          # N, M, 4
    class_scores = paddle.concat(scores, axis=2)   # N, C, M
    bbox, _, bbox_num = paddle._C_ops.multiclass_nms3(
        bboxes, class_scores, None, score_threshold, topk, keep_topk, iou_threshold, False, 1.0, -1)
    return _sort_per_image(bbox, bbox_num), bbox_num


def _sort_per_image(bbox, bbox_num):
    """Rows of each image by decreasing score (``multiclass_nms3`` groups them by class).

    The key ``2 * image + (1 - score)`` is exact in float64; only ops that export to Paddle
    Inference and ONNX are used (no data-dependent Python control flow).
    """
    rows = paddle.arange(paddle.shape(bbox)[0], dtype="int64")
    ends = paddle.cumsum(bbox_num.astype("int64"))
    image = (rows.unsqueeze(1) >= ends.unsqueeze(0)).astype("float64").sum(axis=1)
    key = image * 2.0 + (1.0 - bbox[:, 1].astype("float64"))
    return paddle.gather(bbox, paddle.argsort(key), axis=0)


class YOLOv3Inference(nn.Layer):
    """``forward(image, im_size) -> (bbox, bbox_num)``: a YOLOv3 network plus decoding, for
    ``paddle.jit.save`` with two inputs (``image`` float32 [N, 3, H, W], ``im_size`` int32 [N, 2]).

    Parameters
    ----------
    net : YOLOv3Net
        The network (pruned or not); a sublayer named ``net``.
    anchors, anchor_masks, num_classes : optional
        Default: the network's own.
    **nms
        Keyword arguments of :func:`yolov3_decode` (``nms_score_threshold``, ``nms_topk``,
        ``nms_keep_topk``, ``nms_iou_threshold``); defaults :data:`NMS_DEFAULTS`.
    """

    def __init__(self, net, anchors=None, anchor_masks=None, num_classes=None, **nms):
        super().__init__()
        if not isinstance(net, nn.Layer):
            raise InvalidParameterError(f"YOLOv3Inference: 'net' must be a paddle.nn.Layer; got {type(net).__name__}.")
        unknown = sorted(set(nms) - set(NMS_DEFAULTS))
        if unknown:
            raise InvalidParameterError(
                f"YOLOv3Inference: unknown keyword argument(s) {unknown}; expected some of {sorted(NMS_DEFAULTS)}.")
        self.net = net
        self.anchors = anchors if anchors is not None else net.anchors
        self.anchor_masks = anchor_masks if anchor_masks is not None else net.anchor_masks
        self.num_classes = num_classes if num_classes is not None else net.num_classes
        self.downsample_ratios = list(getattr(net, "downsample_ratios", (32, 16, 8)))
        self.nms = {**NMS_DEFAULTS, **nms}

    def forward(self, image, im_size):
        outputs = self.net(image)
        return yolov3_decode(outputs, im_size, self.anchors, self.anchor_masks, self.num_classes,
                             downsample_ratios=self.downsample_ratios, **self.nms)
