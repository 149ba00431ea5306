"""Detection transforms with PaddleX 1.x names and arguments (OpenCV based).

Every transform maps a detection sample dict to the same kind of dict: ``'image'``
(``H x W x 3`` RGB), ``'gt_bbox'`` (``float32 [N, 4]``, ``x1, y1, x2, y2`` in pixels of the
current image) and the per-box arrays ``'gt_class'``, ``'gt_score'``, ``'difficult'``, plus
``'im_id'``, ``'im_path'`` and ``'origin_shape'``, which no transform changes. Geometric
transforms move the boxes with the image, clip them to it and drop the boxes left with no
width or height together with their per-box entries. A sample without ``'gt_bbox'`` (test
time) is transformed image-only.

:class:`MixupImage` must be the first transform: it mixes the sample with a raw sample of
another image, obtained from ``sample['mixup_source'](rng)`` (the detection reader puts that
callable into each sample). The train loop enables it per epoch through
``Compose.set_epoch(epoch)``.

Usage::

    from paddleprune.det import transforms as T
    train_transforms = T.Compose([
        T.MixupImage(mixup_epoch=250), T.RandomDistort(), T.RandomExpand(), T.RandomCrop(),
        T.Resize(target_size=608, interp='RANDOM'), T.RandomHorizontalFlip(), T.Normalize()])
    eval_transforms = T.Compose([T.Resize(target_size=608, interp='CUBIC'), T.Normalize()])
"""
import math
import numbers

import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.transforms import base
from paddleprune.transforms import cls as _cls
from paddleprune.transforms.base import RandomTransform, _check_triple, build_from_config
from paddleprune.transforms.cls import Normalize
from paddleprune.utils.checks import check_int, check_interval

__all__ = ["Compose", "MixupImage", "RandomDistort", "RandomExpand", "RandomCrop", "Resize",
           "RandomHorizontalFlip", "Normalize", "build_transforms"]

_PER_BOX = ("gt_class", "gt_score", "difficult")  # arrays aligned with 'gt_bbox'


# ----------------------------------------------------------------------------- box helpers
def _boxes(sample, owner):
    """Return ``sample['gt_bbox']`` as ``float32 [N, 4]`` (``None`` if absent).

    Raises ``InvalidParameterError`` if the array is not ``N x 4`` or a per-box array has
    another length.
    """
    if sample.get("gt_bbox") is None:
        return None
    box = np.asarray(sample["gt_bbox"], dtype=np.float32)
    if box.size == 0:
        box = box.reshape(0, 4)
    if box.ndim != 2 or box.shape[1] != 4:
        raise InvalidParameterError(f"{owner}: 'gt_bbox' must be an N x 4 array; got shape {box.shape}.")
    for key in _PER_BOX:
        if key in sample and len(sample[key]) != len(box):
            raise InvalidParameterError(
                f"{owner}: '{key}' has {len(sample[key])} entries but 'gt_bbox' has {len(box)} boxes.")
    return box


def _take(sample, index):
    """Keep only the per-box entries at ``index`` (an index array or boolean mask)."""
    for key in _PER_BOX:
        if key in sample:
            sample[key] = np.asarray(sample[key])[index]


def _store_boxes(sample, box, width, height):
    """Clip ``box`` to a ``width x height`` image, drop empty boxes (and their per-box
    entries) and store the result as ``sample['gt_bbox']``."""
    box = np.asarray(box, dtype=np.float32).copy()
    np.clip(box[:, 0::2], 0, width, out=box[:, 0::2])
    np.clip(box[:, 1::2], 0, height, out=box[:, 1::2])
    valid = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    if not valid.all():
        _take(sample, valid)
    sample["gt_bbox"] = box[valid]


def _iou(box, crop):
    """IoU of each row of ``box`` ``[N, 4]`` with the single box ``crop`` ``[4]``."""
    lt = np.maximum(box[:, :2], crop[:2])
    rb = np.minimum(box[:, 2:], crop[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[:, 2:] - box[:, :2], axis=1)
    union = area + np.prod(crop[2:] - crop[:2]) - inter
    return inter / np.maximum(union, 1e-10)


def _check_range(owner, name, value, low, high):
    """Raise unless ``value`` is a pair ``[a, b]`` of numbers with ``low < a <= b <= high``."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    if not ok or not low < value[0] <= value[1] <= high:
        raise InvalidParameterError(
            f"{owner}: {name!r} must be a pair [min, max] with {low} < min <= max <= {high}; got {value!r}.")
    return [float(v) for v in value]


def _check_bool(owner, name, value):
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{owner}: {name!r} must be True or False; got {value!r}.")
    return value


# ----------------------------------------------------------------------------- transforms
class MixupImage(RandomTransform):
    """Blend the sample with another image and keep the boxes of both (training aug).

    While active (``epoch <= mixup_epoch``; see :meth:`set_epoch`), draws a factor
    ``f ~ Beta(alpha, beta)`` clipped to [0, 1] (before fetching the partner), fetches the
    raw partner sample with ``sample['mixup_source'](self.rng)`` and returns: the sample
    itself if ``f >= 1``; the partner if ``f <= 0``; otherwise a ``float32`` image of the
    larger height and width holding ``f * image + (1 - f) * partner image`` (both at the
    top-left corner), the boxes, classes and ``difficult`` flags of both, and ``gt_score``
    multiplied by ``f`` for the sample's boxes and by ``1 - f`` for the partner's.
    ``'mixup_source'`` is always removed from the sample.

    Parameters
    ----------
    alpha, beta : float
        Parameters (> 0) of the Beta distribution. Default 1.5 each.
    mixup_epoch : int
        Mix during the first ``mixup_epoch`` epochs; -1 (default) disables mixup.
    """

    _epoch = 1

    def __init__(self, alpha=1.5, beta=1.5, mixup_epoch=-1):
        self.alpha = check_interval("MixupImage", "alpha", alpha, 0, math.inf)
        self.beta = check_interval("MixupImage", "beta", beta, 0, math.inf)
        self.mixup_epoch = check_int("MixupImage", "mixup_epoch", mixup_epoch, low=-1)

    def set_epoch(self, epoch):
        """Set the running training epoch (counted from 1; 1 until called).

        Parameters
        ----------
        epoch : int
            Epoch number, >= 1.

        Returns
        -------
        MixupImage
            ``self``.
        """
        self._epoch = check_int("MixupImage.set_epoch", "epoch", epoch)
        return self

    @property
    def active(self):
        """Whether the current epoch mixes (``mixup_epoch != -1 and epoch <= mixup_epoch``)."""
        return self.mixup_epoch != -1 and self._epoch <= self.mixup_epoch

    def _partner(self, source):
        other = source(self.rng)
        if not isinstance(other, dict) or not isinstance(other.get("image"), np.ndarray) \
                or other["image"].ndim != 3:
            raise InvalidParameterError(
                "MixupImage: 'mixup_source' must return a sample dict with a 3-D 'image' array; "
                f"got {type(other).__name__}.")
        other.pop("mixup_source", None)
        return other

    def __call__(self, sample):
        source = sample.pop("mixup_source", None)
        if not self.active:
            return sample
        if not callable(source):
            raise InvalidParameterError(
                "MixupImage: the sample needs a callable 'mixup_source' (added by the detection reader; "
                f"MixupImage must be the first transform); got {source!r}.")
        factor = float(np.clip(self.rng.beta(self.alpha, self.beta), 0.0, 1.0))
        if factor >= 1.0:
            return sample
        other = self._partner(source)
        if factor <= 0.0:
            return other
        box1, box2 = _boxes(sample, "MixupImage"), _boxes(other, "MixupImage")
        if box1 is None or box2 is None or "gt_class" not in sample or "gt_class" not in other:
            raise InvalidParameterError("MixupImage: both samples need 'gt_bbox' and 'gt_class'.")
        im1, im2 = sample["image"], other["image"]
        if im1.shape[2] != im2.shape[2]:
            raise InvalidParameterError(
                f"MixupImage: images have {im1.shape[2]} and {im2.shape[2]} channels; they must match.")
        h, w = max(im1.shape[0], im2.shape[0]), max(im1.shape[1], im2.shape[1])
        image = np.zeros((h, w, im1.shape[2]), np.float32)
        image[:im1.shape[0], :im1.shape[1]] = im1.astype(np.float32) * np.float32(factor)
        image[:im2.shape[0], :im2.shape[1]] += im2.astype(np.float32) * np.float32(1.0 - factor)
        n1, n2 = len(box1), len(box2)
        score1 = np.asarray(sample.get("gt_score", np.ones(n1)), np.float32)
        score2 = np.asarray(other.get("gt_score", np.ones(n2)), np.float32)
        sample["image"] = image
        sample["gt_bbox"] = np.concatenate([box1, box2]).astype(np.float32)
        sample["gt_class"] = np.concatenate([np.asarray(sample["gt_class"]), np.asarray(other["gt_class"])])
        sample["gt_score"] = np.concatenate([score1 * np.float32(factor), score2 * np.float32(1.0 - factor)])
        if "difficult" in sample:
            diff2 = np.asarray(other.get("difficult", np.zeros(n2, np.int32)))
            sample["difficult"] = np.concatenate([np.asarray(sample["difficult"]), diff2])
        return sample


class RandomDistort(_cls.RandomDistort):
    """Random brightness, contrast, saturation and hue, in random order (training aug).

    The colour operations of the classification ``RandomDistort`` (factors drawn in
    ``[1 - range, 1 + range]``, hue shifted by up to ``hue_range`` degrees; ``float32``
    output in [0, 255]) with the PaddleX detection defaults. Boxes are untouched.

    Parameters
    ----------
    brightness_range, contrast_range, saturation_range : float
        In [0, 1]. Default 0.5 each.
    brightness_prob, contrast_prob, saturation_prob, hue_prob : float
        In [0, 1]. Default 0.5 each.
    hue_range : int or float
        In [0, 180] degrees. Default 18.
    """

    def __init__(self, brightness_range=0.5, brightness_prob=0.5, contrast_range=0.5,
                 contrast_prob=0.5, saturation_range=0.5, saturation_prob=0.5, hue_range=18,
                 hue_prob=0.5):
        super().__init__(brightness_range, brightness_prob, contrast_range, contrast_prob,
                         saturation_range, saturation_prob, hue_range, hue_prob)


class RandomExpand(RandomTransform):
    """With probability ``prob``, place the image at a random offset on a larger canvas
    filled with ``fill_value`` (training aug); the boxes move with it.

    The canvas is ``int(h * r) x int(w * r)`` with ``r`` uniform in ``[1, ratio]``; if it
    would not be larger on both sides the sample is returned unchanged. The output image is
    ``float32``.

    Parameters
    ----------
    ratio : float
        Largest expansion ratio, > 1.01. Default 4.0.
    prob : float
        Probability in [0, 1] of expanding. Default 0.5.
    fill_value : list of float
        Canvas colour, 3 values in [0, 255]. Default ``[123.675, 116.28, 103.53]``.
    """

    def __init__(self, ratio=4., prob=0.5, fill_value=(123.675, 116.28, 103.53)):
        self.ratio = check_interval("RandomExpand", "ratio", ratio, 1.01, math.inf)
        self.prob = check_interval("RandomExpand", "prob", prob, 0, 1, "both")
        self.fill_value = _check_triple("RandomExpand", "fill_value", fill_value)
        if not all(0 <= v <= 255 for v in self.fill_value):
            raise InvalidParameterError(
                f"RandomExpand: 'fill_value' must hold 3 numbers in [0, 255]; got {fill_value!r}.")

    def __call__(self, sample):
        if self.rng.random() >= self.prob:
            return sample
        im = sample["image"]
        h, w, c = im.shape
        if c != len(self.fill_value):
            raise InvalidParameterError(
                f"RandomExpand: image has {c} channels but 'fill_value' has {len(self.fill_value)} values.")
        r = self.rng.uniform(1.0, self.ratio)
        big_h, big_w = int(h * r), int(w * r)
        if big_h <= h or big_w <= w:
            return sample
        y = int(self.rng.integers(0, big_h - h + 1))
        x = int(self.rng.integers(0, big_w - w + 1))
        canvas = np.empty((big_h, big_w, c), np.float32)
        canvas[...] = np.asarray(self.fill_value, np.float32)
        canvas[y:y + h, x:x + w] = im
        sample["image"] = canvas
        box = _boxes(sample, "RandomExpand")
        if box is not None:
            _store_boxes(sample, box + np.array([x, y, x, y], np.float32), big_w, big_h)
        return sample


class RandomCrop(RandomTransform):
    """IoU-constrained random crop, SSD style as in PaddleX (training aug).

    The thresholds (plus a "no crop" choice if ``allow_no_crop``) are tried in random
    order. For a threshold, up to ``num_attempts`` crops are drawn: area scale ``s`` in
    ``scaling`` and aspect ratio ``a`` in ``aspect_ratio`` (limited to ``[s**2, s**-2]``)
    give a ``int(w*s*sqrt(a)) x int(h*s/sqrt(a))`` crop at a random position. A crop is
    accepted if some box has IoU >= threshold with it (every box, if ``cover_all_box``) and
    at least one box has its centre inside it; the boxes whose centre is inside are kept,
    clipped to the crop and shifted. If "no crop" is drawn, the sample has no box, or no
    crop is accepted, the sample is returned unchanged, so a crop never loses every box.

    Parameters
    ----------
    aspect_ratio : list of float
        ``[min, max]`` width/height ratio range, 0 < min <= max. Default ``[0.5, 2.0]``.
    thresholds : list of float
        IoU thresholds in [0, 1]. Default ``[0.0, 0.1, 0.3, 0.5, 0.7, 0.9]``.
    scaling : list of float
        ``[min, max]`` side scale range, 0 < min <= max <= 1. Default ``[0.3, 1.0]``.
    num_attempts : int
        Crops drawn per threshold. Default 50.
    allow_no_crop : bool
        Add "no crop" to the choices. Default True.
    cover_all_box : bool
        Require every box to reach the threshold. Default False.
    """

    def __init__(self, aspect_ratio=(.5, 2.), thresholds=(.0, .1, .3, .5, .7, .9), scaling=(.3, 1.),
                 num_attempts=50, allow_no_crop=True, cover_all_box=False):
        owner = "RandomCrop"
        self.aspect_ratio = _check_range(owner, "aspect_ratio", aspect_ratio, 0, math.inf)
        if not isinstance(thresholds, (list, tuple)) or len(thresholds) == 0 or not all(
                isinstance(t, numbers.Real) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds):
            raise InvalidParameterError(
                f"RandomCrop: 'thresholds' must be a non-empty list of numbers in [0, 1]; got {thresholds!r}.")
        self.thresholds = [float(t) for t in thresholds]
        self.scaling = _check_range(owner, "scaling", scaling, 0, 1)
        self.num_attempts = check_int(owner, "num_attempts", num_attempts)
        self.allow_no_crop = _check_bool(owner, "allow_no_crop", allow_no_crop)
        self.cover_all_box = _check_bool(owner, "cover_all_box", cover_all_box)

    def _search(self, box, width, height, thresh):
        """Return ``(crop [x1, y1, x2, y2] ints, kept box indices, boxes in crop coords)`` or None."""
        min_ar, max_ar = self.aspect_ratio
        for _ in range(self.num_attempts):
            scale = self.rng.uniform(*self.scaling)
            low, high = max(min_ar, scale ** 2), min(max_ar, scale ** -2)
            if low > high:
                continue
            ar = math.sqrt(self.rng.uniform(low, high))
            crop_w, crop_h = int(width * scale * ar), int(height * scale / ar)
            if not (1 <= crop_w <= width and 1 <= crop_h <= height):
                continue
            y = int(self.rng.integers(0, height - crop_h + 1))
            x = int(self.rng.integers(0, width - crop_w + 1))
            crop = np.array([x, y, x + crop_w, y + crop_h], np.float32)
            iou = _iou(box, crop)
            if iou.max() < thresh or (self.cover_all_box and iou.min() < thresh):
                continue
            centre = (box[:, :2] + box[:, 2:]) / 2
            inside = ((centre >= crop[:2]) & (centre < crop[2:])).all(axis=1)
            moved = np.concatenate([np.maximum(box[:, :2], crop[:2]), np.minimum(box[:, 2:], crop[2:])], axis=1)
            moved -= np.tile(crop[:2], 2)
            keep = np.flatnonzero(inside & (moved[:, :2] < moved[:, 2:]).all(axis=1))
            if keep.size:
                return (x, y, x + crop_w, y + crop_h), keep, moved
        return None

    def __call__(self, sample):
        box = _boxes(sample, "RandomCrop")
        if box is None or len(box) == 0:
            return sample
        height, width = sample["image"].shape[:2]
        choices = self.thresholds + ([None] if self.allow_no_crop else [])
        for k in self.rng.permutation(len(choices)):
            if choices[k] is None:
                return sample
            found = self._search(box, width, height, choices[k])
            if found is not None:
                (x1, y1, x2, y2), keep, moved = found
                sample["image"] = np.ascontiguousarray(sample["image"][y1:y2, x1:x2])
                _take(sample, keep)
                _store_boxes(sample, moved[keep], x2 - x1, y2 - y1)
                return sample
        return sample


class Resize(_cls.Resize):
    """Resize the image to ``target_size`` (ignores the aspect ratio); boxes are scaled.

    Parameters
    ----------
    target_size : int or list of int
        Output side, or ``[width, height]``. Default 608.
    interp : str
        One of ``'NEAREST'``, ``'LINEAR'``, ``'CUBIC'``, ``'AREA'``, ``'LANCZOS4'``
        or ``'RANDOM'`` (one of the others, drawn per image). Default ``'LINEAR'``.
    """

    def __init__(self, target_size=608, interp="LINEAR"):
        super().__init__(target_size, interp)

    def __call__(self, sample):
        h, w = sample["image"].shape[:2]
        sample = super().__call__(sample)
        new_h, new_w = sample["image"].shape[:2]
        box = _boxes(sample, "Resize")
        if box is not None:
            sx, sy = new_w / w, new_h / h
            _store_boxes(sample, box * np.array([sx, sy, sx, sy], np.float32), new_w, new_h)
        return sample


class RandomHorizontalFlip(RandomTransform):
    """Flip left-right with probability ``prob`` (training aug); boxes are mirrored
    (``x1' = w - x2``, ``x2' = w - x1``).

    Parameters
    ----------
    prob : float
        Probability in [0, 1]. Default 0.5.
    """

    def __init__(self, prob=0.5):
        self.prob = check_interval("RandomHorizontalFlip", "prob", prob, 0, 1, "both")

    def __call__(self, sample):
        if self.rng.random() >= self.prob:
            return sample
        im = sample["image"]
        h, w = im.shape[:2]
        sample["image"] = np.ascontiguousarray(im[:, ::-1])
        box = _boxes(sample, "RandomHorizontalFlip")
        if box is not None:
            _store_boxes(sample, np.stack([w - box[:, 2], box[:, 1], w - box[:, 0], box[:, 3]], axis=1), w, h)
        return sample


class Compose(base.Compose):
    """Apply a list of detection transforms in order (PaddleX ``det.transforms.Compose``).

    Parameters
    ----------
    transforms : list
        Non-empty list of transform instances; a :class:`MixupImage` must come first.

    Raises
    ------
    InvalidParameterError
        As :class:`paddleprune.transforms.base.Compose`, or if a ``MixupImage`` is not first.
    """

    def __init__(self, transforms):
        super().__init__(transforms)
        for i, op in enumerate(self.transforms):
            if i > 0 and isinstance(op, MixupImage):
                raise InvalidParameterError(
                    f"Compose: 'transforms[{i}]' is a MixupImage; it must be the first transform "
                    "(it mixes raw images).")


_CLASSES = {c.__name__: c for c in (MixupImage, RandomDistort, RandomExpand, RandomCrop, Resize,
                                    RandomHorizontalFlip, Normalize)}


def build_transforms(config_list):
    """Rebuild a detection :class:`Compose` from ``[{ClassName: {args}}, ...]``.

    Parameters
    ----------
    config_list : list of dict
        As stored in ``model.yml`` (``Compose.to_config_list()``).

    Returns
    -------
    Compose

    Raises
    ------
    InvalidParameterError
        Unknown transform name (the message lists the known ones), bad arguments, or a
        ``MixupImage`` that is not first.
    """
    return Compose(build_from_config(config_list, _CLASSES).transforms)
