"""Segmentation transforms with PaddleX 1.x names and arguments (OpenCV based).

A sample holds ``'image'`` (``H x W x 3`` RGB, ``uint8`` from the reader, ``float32`` after
:class:`Normalize`; channel-last, the collate calls ``to_chw``), ``'label'`` (``H x W`` class
ids, 255 = ignore; absent at predict time, then only the image is transformed) and keys no
transform changes. Image and label move together; the label is resized with pixel-centre-aligned
nearest neighbour (never interpolated) and padded with ``label_padding_value``.

**im_info.** ``Resize*`` and :class:`Padding` append ``('resize', (h, w))`` / ``('padding',
(h, w))``, the size *before* them, to the list ``sample['im_info']``; :func:`restore_label_map`
undoes them. The training crops and rotations record nothing (they cannot be undone).

Usage: ``T.Compose([T.ResizeByLong(512), T.Padding(512), T.Normalize()])``.
"""
import math

import cv2
import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.transforms import cls as _cls
from paddleprune.transforms.base import (Compose, RandomTransform, Transform, _check_size,
                                         _check_triple, build_from_config)
from paddleprune.transforms.cls import _resize
from paddleprune.transforms.det import RandomDistort
from paddleprune.utils.checks import check_choice, check_int, check_interval

__all__ = ["Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "Resize", "ResizeByLong",
           "ResizeByShort", "ResizeRangeScaling", "ResizeStepScaling", "Padding", "RandomPaddingCrop",
           "RandomBlur", "RandomRotate", "RandomScaleAspect", "RandomDistort", "Normalize",
           "build_transforms", "restore_label_map"]

_PAD = (127.5, 127.5, 127.5)  # PaddleX's default image padding value


def _label(sample, owner):
    """Return ``sample['label']`` (``None`` if absent), checked to be ``H x W`` like the image."""
    label = sample.get("label")
    if label is not None and np.shape(label) != sample["image"].shape[:2]:
        raise InvalidParameterError(f"{owner}: 'label' must be an H x W array the size of 'image' "
                                    f"{sample['image'].shape[:2]}; got shape {np.shape(label)}.")
    return None if label is None else np.asarray(label)


def _nearest(arr, width, height):
    """Nearest-neighbour resize of the first two axes (any dtype or trailing axes): output pixel
    ``i`` takes input pixel ``floor((i + 0.5) * n_in / n_out)`` (pixel centres aligned, as in
    OpenCV's linear resize), in integers, so a downscale exactly undoes an upscale."""
    h, w = arr.shape[:2]
    rows = ((2 * np.arange(height) + 1) * h) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * w) // (2 * width)
    return arr[rows[:, None], cols]


def _follow(sample, label, height, width, record=True):
    """The image was resized from ``height x width``: record it, make the label follow (nearest)."""
    if record:
        sample.setdefault("im_info", []).append(("resize", (int(height), int(width))))
    if label is not None:
        sample["label"] = _nearest(label, sample["image"].shape[1], sample["image"].shape[0])


def _set_fills(op, im_padding_value, label_padding_value):
    """Validate and store ``op.im_padding_value`` (3 numbers) and ``op.label_padding_value`` (0-255)."""
    owner = type(op).__name__
    op.im_padding_value = _check_triple(owner, "im_padding_value", im_padding_value)
    if check_int(owner, "label_padding_value", label_padding_value, low=0) > 255:
        raise InvalidParameterError(
            f"{owner}: 'label_padding_value' must be an int in [0, 255]; got {label_padding_value!r}.")
    op.label_padding_value = int(label_padding_value)


def _image_dtype(owner, im, values):
    """The image's dtype if it holds the padding ``values`` exactly, else ``float32``."""
    if im.shape[2] != len(values):
        raise InvalidParameterError(
            f"{owner}: image has {im.shape[2]} channels but 'im_padding_value' has {len(values)} values.")
    if im.dtype.kind == "f" or im.dtype.kind in "ui" and all(
            float(v).is_integer() and np.iinfo(im.dtype).min <= v <= np.iinfo(im.dtype).max for v in values):
        return im.dtype
    return np.dtype(np.float32)


def _pad(sample, label, height, width, owner, values, label_value):
    """Pad image and label at the bottom and right to ``height x width`` (>= current size)."""
    im = sample["image"]
    canvas = np.empty((height, width, im.shape[2]), _image_dtype(owner, im, values))
    canvas[...] = np.asarray(values, canvas.dtype)
    canvas[:im.shape[0], :im.shape[1]] = im
    sample["image"] = canvas
    if label is not None:
        sample["label"] = np.full((height, width), label_value, label.dtype)
        sample["label"][:label.shape[0], :label.shape[1]] = label


class RandomHorizontalFlip(RandomTransform):
    """Flip image and label left-right with probability ``prob`` (in [0, 1]; default 0.5)."""

    _axis = 1

    def __init__(self, prob=0.5):
        self.prob = check_interval(type(self).__name__, "prob", prob, 0, 1, "both")

    def __call__(self, sample):
        label = _label(sample, type(self).__name__)
        if self.rng.random() < self.prob:
            sample["image"] = np.ascontiguousarray(np.flip(sample["image"], self._axis))
            if label is not None:
                sample["label"] = np.ascontiguousarray(np.flip(label, self._axis))
        return sample


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flip image and label upside down with probability ``prob`` (in [0, 1]; default 0.1)."""

    _axis = 0

    def __init__(self, prob=0.1):
        super().__init__(prob)


class _LabelFollows:
    """Mixin over a classification resize: the label follows the image; im_info records it."""
    def __call__(self, sample):
        label = _label(sample, type(self).__name__)
        h, w = sample["image"].shape[:2]
        sample = super().__call__(sample)
        _follow(sample, label, h, w)
        return sample


class Resize(_LabelFollows, _cls.Resize):
    """Resize image and label to ``target_size``, ignoring the aspect ratio.

    Parameters
    ----------
    target_size : int or list of int
        Output side, or ``[width, height]``.
    interp : str
        Image interpolation: ``'NEAREST'``, ``'LINEAR'`` (default), ``'CUBIC'``, ``'AREA'``,
        ``'LANCZOS4'`` or ``'RANDOM'`` (one of them per image). The label uses nearest.
    """

    def __init__(self, target_size, interp="LINEAR"):
        super().__init__(target_size, interp)


class ResizeByShort(_LabelFollows, _cls.ResizeByShort):
    """Resize so the short side is ``short_size`` (default 800), the long side capped at
    ``max_size`` if that is > 0 (default 1333), keeping the aspect ratio (PaddleX seg defaults)."""

    def __init__(self, short_size=800, max_size=1333):
        super().__init__(short_size, max_size)


class _ScaleResize(Transform):
    """Scale image (bilinear) and label (nearest) by ``self._scale(h, w)``, sides rounded."""
    def __call__(self, sample):
        label = _label(sample, type(self).__name__)
        h, w = sample["image"].shape[:2]
        scale = self._scale(h, w)
        sample["image"] = _resize(sample["image"], max(1, round(w * scale)), max(1, round(h * scale)))
        _follow(sample, label, h, w)
        return sample


class ResizeByLong(_ScaleResize):
    """Resize so the long side is ``long_size`` (an int >= 1), keeping the aspect ratio."""

    def __init__(self, long_size):
        self.long_size = check_int("ResizeByLong", "long_size", long_size)

    def _scale(self, h, w):
        return self.long_size / max(h, w)


class ResizeRangeScaling(_ScaleResize, RandomTransform):
    """Resize the long side to ``int(uniform(min_value, max_value) + 0.5)``, keeping the aspect
    ratio (training aug).

    Parameters
    ----------
    min_value, max_value : int
        Range of the long side, ``1 <= min_value <= max_value``. Defaults 400 and 600.
    """

    def __init__(self, min_value=400, max_value=600):
        self.min_value = check_int("ResizeRangeScaling", "min_value", min_value)
        self.max_value = check_int("ResizeRangeScaling", "max_value", max_value, low=self.min_value)

    def _scale(self, h, w):
        long_size = self.max_value
        if self.min_value != self.max_value:
            long_size = int(self.rng.uniform(self.min_value, self.max_value) + 0.5)
        return long_size / max(h, w)


class ResizeStepScaling(_ScaleResize, RandomTransform):
    """Scale both sides by a random factor (training aug): one of ``int((max - min) / step + 1)``
    evenly spaced values from ``min_scale_factor`` to ``max_scale_factor`` (PaddleX's rule),
    uniform in the range if ``scale_step_size`` is 0, ``min_scale_factor`` if the two are equal.

    Parameters
    ----------
    min_scale_factor, max_scale_factor, scale_step_size : float
        ``0 < min <= max`` and ``step >= 0``. Defaults 0.75, 1.25 and 0.25.
    """

    def __init__(self, min_scale_factor=0.75, max_scale_factor=1.25, scale_step_size=0.25):
        owner = "ResizeStepScaling"
        self.min_scale_factor = check_interval(owner, "min_scale_factor", min_scale_factor, 0, math.inf)
        self.max_scale_factor = check_interval(owner, "max_scale_factor", max_scale_factor, min_scale_factor,
                                               math.inf, "left")
        self.scale_step_size = check_interval(owner, "scale_step_size", scale_step_size, 0, math.inf, "left")

    def _scale(self, h, w):
        low, high, step = self.min_scale_factor, self.max_scale_factor, self.scale_step_size
        if low == high or step == 0:
            return low if low == high else self.rng.uniform(low, high)
        choices = np.linspace(low, high, int((high - low) / step + 1 + 1e-9))
        return float(choices[int(self.rng.integers(len(choices)))])


class Padding(Transform):
    """Pad image and label at the bottom and right to ``target_size``. The image keeps its dtype
    unless a padding value does not fit it (``127.5`` in ``uint8``), then it becomes ``float32``.

    Parameters
    ----------
    target_size : int or list of int
        Output side, or ``[width, height]``.
    im_padding_value : list of float
        Image fill per channel. Default ``[127.5, 127.5, 127.5]``.
    label_padding_value : int
        Label fill in [0, 255]. Default 255 (ignored by the loss and the metrics).

    Raises
    ------
    InvalidParameterError
        When called on an image larger than ``target_size``.
    """

    def __init__(self, target_size, im_padding_value=_PAD, label_padding_value=255):
        self.target_size = _check_size("Padding", "target_size", target_size)
        _set_fills(self, im_padding_value, label_padding_value)

    def __call__(self, sample):
        label = _label(sample, "Padding")
        width, height = self.target_size if isinstance(self.target_size, list) else [self.target_size] * 2
        h, w = sample["image"].shape[:2]
        if h > height or w > width:
            raise InvalidParameterError(
                f"Padding: the image ({w}x{h}) is larger than 'target_size' {self.target_size!r}; "
                "resize it first (e.g. ResizeByLong) or use a larger target_size.")
        sample.setdefault("im_info", []).append(("padding", (h, w)))
        _pad(sample, label, height, width, "Padding", self.im_padding_value, self.label_padding_value)
        return sample


class RandomPaddingCrop(RandomTransform):
    """Crop a random ``crop_size`` window from image and label, padded at the bottom and right
    first where smaller (training aug). The output is exactly ``crop_size``, dtype as in Padding.

    Parameters
    ----------
    crop_size : int or list of int
        Output side, or ``[width, height]``. Default 512.
    im_padding_value, label_padding_value
        As in :class:`Padding`.
    """

    def __init__(self, crop_size=512, im_padding_value=_PAD, label_padding_value=255):
        self.crop_size = _check_size("RandomPaddingCrop", "crop_size", crop_size)
        _set_fills(self, im_padding_value, label_padding_value)

    def __call__(self, sample):
        label = _label(sample, "RandomPaddingCrop")
        cw, ch = self.crop_size if isinstance(self.crop_size, list) else [self.crop_size] * 2
        height, width = max(sample["image"].shape[0], ch), max(sample["image"].shape[1], cw)
        _pad(sample, label, height, width, "RandomPaddingCrop", self.im_padding_value, self.label_padding_value)
        y, x = int(self.rng.integers(0, height - ch + 1)), int(self.rng.integers(0, width - cw + 1))
        for key in ("image", "label") if label is not None else ("image",):
            sample[key] = np.ascontiguousarray(sample[key][y:y + ch, x:x + cw])
        return sample


class RandomRotate(RandomTransform):
    """Rotate image (bilinear) and label (nearest) by a random angle in ``[-rotate_range,
    rotate_range]`` degrees about the centre, on a canvas grown to hold the result and filled
    with the padding values (training aug). An angle of 0 keeps every pixel.

    Parameters
    ----------
    rotate_range : float
        Largest angle, in [0, 180]; 0 disables. Default 15.
    im_padding_value, label_padding_value
        As in :class:`Padding`.
    """

    def __init__(self, rotate_range=15, im_padding_value=_PAD, label_padding_value=255):
        self.rotate_range = check_interval("RandomRotate", "rotate_range", rotate_range, 0, 180, "both")
        _set_fills(self, im_padding_value, label_padding_value)

    def __call__(self, sample):
        label = _label(sample, "RandomRotate")
        if self.rotate_range == 0:
            return sample
        im = sample["image"]
        h, w, c = im.shape
        im = im.astype(_image_dtype("RandomRotate", im, self.im_padding_value), copy=False)
        angle = self.rng.uniform(-self.rotate_range, self.rotate_range)
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
        cos, sin = abs(m[0, 0]), abs(m[0, 1])
        size = (int(round(h * sin + w * cos)), int(round(h * cos + w * sin)))
        m[:, 2] += (size[0] - w) / 2.0, (size[1] - h) / 2.0
        out = cv2.warpAffine(im, m, size, flags=cv2.INTER_LINEAR, borderValue=tuple(self.im_padding_value))
        sample["image"] = out.reshape(size[1], size[0], c)
        if label is not None:
            sample["label"] = cv2.warpAffine(label, m, size, flags=cv2.INTER_NEAREST,
                                             borderValue=self.label_padding_value).astype(label.dtype)
        return sample


class RandomScaleAspect(RandomTransform):
    """Crop a random area and aspect ratio, resize it back to the input size (training aug).
    Up to 10 tries (PaddleX): area fraction uniform in ``[min_scale, 1]``, width/height ratio in
    ``[aspect_ratio, 1 / aspect_ratio]``, sides swapped with probability 0.5; the first crop
    smaller than the image on both sides is used, else nothing changes.

    Parameters
    ----------
    min_scale, aspect_ratio : float
        Smallest area fraction and aspect-ratio bound, in [0, 1]; 0 disables. Defaults 0.5, 0.33.
    """

    def __init__(self, min_scale=0.5, aspect_ratio=0.33):
        self.min_scale = check_interval("RandomScaleAspect", "min_scale", min_scale, 0, 1, "both")
        self.aspect_ratio = check_interval("RandomScaleAspect", "aspect_ratio", aspect_ratio, 0, 1, "both")

    def __call__(self, sample):
        label = _label(sample, "RandomScaleAspect")
        h, w = sample["image"].shape[:2]
        for _ in range(10 if self.min_scale > 0 and self.aspect_ratio > 0 else 0):
            area = h * w * self.rng.uniform(self.min_scale, 1.0)
            ratio = self.rng.uniform(self.aspect_ratio, 1.0 / self.aspect_ratio)
            dw, dh = int(math.sqrt(area * ratio)), int(math.sqrt(area / ratio))
            if self.rng.random() < 0.5:
                dw, dh = dh, dw
            if 1 <= dh < h and 1 <= dw < w:
                y, x = int(self.rng.integers(0, h - dh + 1)), int(self.rng.integers(0, w - dw + 1))
                sample["image"] = _resize(sample["image"][y:y + dh, x:x + dw], w, h)
                _follow(sample, None if label is None else label[y:y + dh, x:x + dw], dh, dw, record=False)
                break
        return sample


class RandomBlur(RandomTransform):
    """Gaussian-blur the image with probability ``prob`` (in [0, 1]; default 0.1); kernel 3-9."""

    def __init__(self, prob=0.1):
        self.prob = check_interval("RandomBlur", "prob", prob, 0, 1, "both")

    def __call__(self, sample):
        if self.rng.random() < self.prob:
            k = int(self.rng.integers(3, 10)) | 1  # PaddleX: randint(3, 10), made odd
            sample["image"] = cv2.GaussianBlur(sample["image"], (k, k), 0, 0).reshape(sample["image"].shape)
        return sample


class Normalize(_cls.Normalize):
    """``((im - min_val) / (max_val - min_val) - mean) / std`` per channel, as ``float32``.

    Parameters
    ----------
    mean, std : list of float
        Per-channel mean and standard deviation (> 0). Default ``[0.5, 0.5, 0.5]`` each.
    min_val, max_val : list of float
        Per-channel data range, ``max_val > min_val``. Defaults ``[0, 0, 0]``, ``[255.0] * 3``.
    """

    def __init__(self, mean=None, std=None, min_val=None, max_val=None):
        super().__init__([0.5] * 3 if mean is None else mean, [0.5] * 3 if std is None else std)
        self.min_val = _check_triple("Normalize", "min_val", [0, 0, 0] if min_val is None else min_val)
        self.max_val = _check_triple("Normalize", "max_val", [255.0] * 3 if max_val is None else max_val)
        if any(hi <= lo for lo, hi in zip(self.min_val, self.max_val)):
            raise InvalidParameterError(f"Normalize: 'max_val' must be greater than 'min_val' in every "
                                        f"channel; got min_val={self.min_val}, max_val={self.max_val}.")

    def __call__(self, sample):
        im = sample["image"]
        if im.shape[2] != len(self.mean):
            raise InvalidParameterError(
                f"Normalize: image has {im.shape[2]} channels but 'mean' has {len(self.mean)} values.")
        low, high, mean, std = (np.asarray(v, np.float32)
                                for v in (self.min_val, self.max_val, self.mean, self.std))
        sample["image"] = ((im.astype(np.float32) - low) / (high - low) - mean) / std
        return sample


_CLASSES = {c.__name__: c for c in (RandomHorizontalFlip, RandomVerticalFlip, Resize, ResizeByLong,
                                    ResizeByShort, ResizeRangeScaling, ResizeStepScaling, Padding,
                                    RandomPaddingCrop, RandomBlur, RandomRotate, RandomScaleAspect,
                                    RandomDistort, Normalize)}


def build_transforms(config_list):
    """Rebuild a segmentation :class:`Compose` from ``model.yml``'s ``[{ClassName: {args}}, ...]``
    (see :func:`paddleprune.transforms.base.build_from_config`, which raises on unknown names
    and bad arguments)."""
    return build_from_config(config_list, _CLASSES)


def _im_info_entry(i, entry):
    """``(op, h, w)`` of the ``im_info`` item ``i``, or raise."""
    try:
        op, (h, w) = entry
        ok = op in ("resize", "padding") and int(h) == h >= 1 and int(w) == w >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidParameterError(
            f"restore_label_map: 'im_info[{i}]' must be ('resize' or 'padding', (h, w)); got {entry!r}.")
    return op, int(h), int(w)


def restore_label_map(label_map, im_info, data_format="HWC"):
    """Undo the resizes and paddings in ``im_info``, last first, so a prediction matches the input
    image: ``('padding', (h, w))`` keeps the top-left ``h x w``; ``('resize', (h, w))`` resizes
    back with the label's nearest rule (class ids stay ids; an upscale is undone exactly).

    Parameters
    ----------
    label_map : numpy.ndarray
        ``H x W`` label map, or score map ``H x W x C`` (``data_format='HWC'``) or ``C x H x W``.
    im_info : list or None
        ``sample['im_info']``, ``[(op, (h, w)), ...]``; ``None`` or ``[]`` changes nothing.
    data_format : str
        Layout of a 3-D map: ``'HWC'`` (default) or ``'CHW'``. Ignored for a 2-D map.

    Returns
    -------
    numpy.ndarray
        The map in the same layout, sized as the image before the first recorded transform.

    Raises
    ------
    InvalidParameterError
        A map not 2-D or 3-D, a malformed ``im_info`` item, or a map smaller than a padding.
    """
    check_choice("restore_label_map", "data_format", data_format, ["HWC", "CHW"])
    arr = np.asarray(label_map)
    if arr.ndim not in (2, 3):
        raise InvalidParameterError(
            f"restore_label_map: 'label_map' must be H x W, H x W x C or C x H x W; got shape {arr.shape}.")
    entries = [_im_info_entry(i, e) for i, e in enumerate(im_info or [])]
    chw = arr.ndim == 3 and data_format == "CHW"
    arr = arr.transpose(1, 2, 0) if chw else arr
    for op, h, w in reversed(entries):
        if op == "padding" and (arr.shape[0] < h or arr.shape[1] < w):
            raise InvalidParameterError(f"restore_label_map: the map ({arr.shape[1]}x{arr.shape[0]}) is "
                                        f"smaller than the size before padding ({w}x{h}).")
        arr = arr[:h, :w] if op == "padding" else _nearest(arr, w, h)
    return np.ascontiguousarray(arr.transpose(2, 0, 1) if chw else arr)
