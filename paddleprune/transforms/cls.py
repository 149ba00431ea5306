"""Classification transforms with PaddleX 1.x names and arguments (OpenCV based).

Every transform maps ``{'image': H x W x C array, 'label': ...}`` to the same kind of
dict. Geometric transforms keep the dtype; :class:`RandomDistort` and :class:`Normalize`
return ``float32``. :class:`Normalize` stays channel-last like PaddleX's; the reader turns
the final image into ``C x H x W`` float32 (PaddleX's ``ArrangeClassifier`` step).

Usage::

    from paddleprune.cls import transforms as T
    train_transforms = T.Compose([T.RandomCrop(crop_size=32, lower_scale=0.6),
                                  T.RandomHorizontalFlip(), T.Normalize()])
"""
import math

import cv2
import numpy as np

from paddleprune.errors import InvalidParameterError
from paddleprune.transforms.base import (Compose, RandomTransform, Transform,
                                         _check_size, _check_triple, build_from_config)
from paddleprune.utils.checks import check_choice, check_int, check_interval

__all__ = ["Compose", "Resize", "ResizeByShort", "CenterCrop", "RandomCrop",
           "RandomHorizontalFlip", "RandomDistort", "Normalize", "build_transforms"]

_GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma weights (RGB)
_INTERP = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR, "CUBIC": cv2.INTER_CUBIC,
           "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}


def _resize(im, width, height, interp=cv2.INTER_LINEAR):
    """``cv2.resize`` that keeps a trailing channel axis and accepts float64."""
    if im.dtype not in (np.uint8, np.float32):
        im = im.astype(np.float32)
    out = cv2.resize(im, (int(width), int(height)), interpolation=interp)
    if out.ndim == 2 and im.ndim == 3:
        out = out[:, :, None]
    return out


class Resize(RandomTransform):
    """Resize the image to a fixed size (ignores the aspect ratio).

    Parameters
    ----------
    target_size : int or list of int
        Output side, or ``[width, height]``. Default 224.
    interp : str
        One of ``'NEAREST'``, ``'LINEAR'``, ``'CUBIC'``, ``'AREA'``, ``'LANCZOS4'``
        or ``'RANDOM'`` (one of the others, drawn per image). Default ``'LINEAR'``.
    """

    def __init__(self, target_size=224, interp="LINEAR"):
        self.target_size = _check_size("Resize", "target_size", target_size)
        self.interp = check_choice("Resize", "interp", interp, list(_INTERP) + ["RANDOM"])

    def __call__(self, sample):
        if isinstance(self.target_size, list):
            w, h = self.target_size
        else:
            w = h = self.target_size
        if self.interp == "RANDOM":
            names = sorted(_INTERP)
            interp = _INTERP[names[int(self.rng.integers(len(names)))]]
        else:
            interp = _INTERP[self.interp]
        sample["image"] = _resize(sample["image"], w, h, interp)
        return sample


class ResizeByShort(Transform):
    """Resize so the short side is ``short_size``, keeping the aspect ratio.

    Parameters
    ----------
    short_size : int
        Target length of the short side. Default 256.
    max_size : int
        If > 0, the long side is capped at ``max_size`` (the scale shrinks to fit).
        Default -1 (no cap).
    """

    def __init__(self, short_size=256, max_size=-1):
        self.short_size = check_int("ResizeByShort", "short_size", short_size)
        if isinstance(max_size, bool) or not isinstance(max_size, int):
            raise InvalidParameterError(
                f"ResizeByShort: 'max_size' must be an int (<= 0 for no cap); got {max_size!r}.")
        self.max_size = max_size

    def __call__(self, sample):
        im = sample["image"]
        h, w = im.shape[:2]
        scale = float(self.short_size) / min(h, w)
        if self.max_size > 0 and round(scale * max(h, w)) > self.max_size:
            scale = float(self.max_size) / max(h, w)
        sample["image"] = _resize(im, max(1, round(w * scale)), max(1, round(h * scale)))
        return sample


class CenterCrop(Transform):
    """Crop a ``crop_size`` x ``crop_size`` square from the centre.

    Parameters
    ----------
    crop_size : int
        Side of the crop. Default 224.

    Raises
    ------
    InvalidParameterError
        When called on an image smaller than ``crop_size``.
    """

    def __init__(self, crop_size=224):
        self.crop_size = check_int("CenterCrop", "crop_size", crop_size)

    def __call__(self, sample):
        im = sample["image"]
        h, w = im.shape[:2]
        c = self.crop_size
        if h < c or w < c:
            raise InvalidParameterError(
                f"CenterCrop: 'crop_size' {c} is larger than the image ({w}x{h}); "
                f"resize first, e.g. ResizeByShort(short_size={c}).")
        top, left = (h - c) // 2, (w - c) // 2
        sample["image"] = im[top:top + c, left:left + c]
        return sample


class RandomCrop(RandomTransform):
    """Crop a random area and aspect ratio, then resize to ``crop_size`` (training aug).

    The area fraction is drawn in ``[lower_scale, 1]`` and the width/height ratio in
    ``[lower_ratio, upper_ratio]``, both bounded so the crop fits (PaddleX's rule).

    Parameters
    ----------
    crop_size : int
        Output side. Default 224.
    lower_scale : float
        Smallest crop area as a fraction of the image, in (0, 1]. Default 0.08.
    lower_ratio, upper_ratio : float
        Range of the aspect ratio. Defaults 3/4 and 4/3.
    """

    def __init__(self, crop_size=224, lower_scale=0.08, lower_ratio=3. / 4, upper_ratio=4. / 3):
        self.crop_size = check_int("RandomCrop", "crop_size", crop_size)
        self.lower_scale = check_interval("RandomCrop", "lower_scale", lower_scale, 0, 1, "right")
        self.lower_ratio = check_interval("RandomCrop", "lower_ratio", lower_ratio, 0, math.inf)
        self.upper_ratio = check_interval("RandomCrop", "upper_ratio", upper_ratio, 0, math.inf)
        if upper_ratio < lower_ratio:
            raise InvalidParameterError(
                f"RandomCrop: 'upper_ratio' must be >= 'lower_ratio' ({lower_ratio!r}); got {upper_ratio!r}.")

    def __call__(self, sample):
        im = sample["image"]
        h, w = im.shape[:2]
        aspect = math.sqrt(self.rng.uniform(self.lower_ratio, self.upper_ratio))
        bound = min((h / w) * aspect ** 2, (w / h) / aspect ** 2)
        area = h * w * self.rng.uniform(min(self.lower_scale, bound), min(1.0, bound))
        side = math.sqrt(area)
        cw = min(w, max(1, int(side * aspect)))
        ch = min(h, max(1, int(side / aspect)))
        top = int(self.rng.integers(0, h - ch + 1))
        left = int(self.rng.integers(0, w - cw + 1))
        sample["image"] = _resize(im[top:top + ch, left:left + cw], self.crop_size, self.crop_size)
        return sample


class RandomHorizontalFlip(RandomTransform):
    """Flip left-right with probability ``prob`` (training aug).

    Parameters
    ----------
    prob : float
        Probability in [0, 1]. Default 0.5.
    """

    def __init__(self, prob=0.5):
        self.prob = check_interval("RandomHorizontalFlip", "prob", prob, 0, 1, "both")

    def __call__(self, sample):
        if self.rng.random() < self.prob:
            sample["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        return sample


class RandomDistort(RandomTransform):
    """Random brightness, contrast, saturation and hue, in random order (training aug).

    Each of the four ops runs with its probability; factors are drawn uniformly in
    ``[1 - range, 1 + range]`` (hue: a shift in degrees in ``[-hue_range, hue_range]``).
    Semantics follow PaddleX 1.0 / PIL ``ImageEnhance``: brightness scales the pixels,
    contrast blends with the mean grey level, saturation blends with the per-pixel grey
    (ITU-R 601 weights, so the image is taken as RGB). The output is ``float32`` in
    ``[0, 255]``.

    Parameters
    ----------
    brightness_range, contrast_range, saturation_range : float
        In [0, 1]. Default 0.9 each.
    brightness_prob, contrast_prob, saturation_prob, hue_prob : float
        In [0, 1]. Default 0.5 each.
    hue_range : int or float
        In [0, 180] degrees. Default 18.
    """

    def __init__(self, brightness_range=0.9, brightness_prob=0.5, contrast_range=0.9,
                 contrast_prob=0.5, saturation_range=0.9, saturation_prob=0.5, hue_range=18,
                 hue_prob=0.5):
        owner = "RandomDistort"
        for name, value in (("brightness_range", brightness_range), ("brightness_prob", brightness_prob),
                            ("contrast_range", contrast_range), ("contrast_prob", contrast_prob),
                            ("saturation_range", saturation_range), ("saturation_prob", saturation_prob),
                            ("hue_prob", hue_prob)):
            check_interval(owner, name, value, 0, 1, "both")
        check_interval(owner, "hue_range", hue_range, 0, 180, "both")
        self.brightness_range = brightness_range
        self.brightness_prob = brightness_prob
        self.contrast_range = contrast_range
        self.contrast_prob = contrast_prob
        self.saturation_range = saturation_range
        self.saturation_prob = saturation_prob
        self.hue_range = hue_range
        self.hue_prob = hue_prob

    def _factor(self, r):
        return self.rng.uniform(1.0 - r, 1.0 + r)

    def _brightness(self, im):
        return im * self._factor(self.brightness_range)

    def _contrast(self, im):
        grey = (im * _GREY).sum(axis=-1) if im.shape[2] == 3 else im
        mean = float(grey.mean())
        return mean + (im - mean) * self._factor(self.contrast_range)

    def _saturation(self, im):
        if im.shape[2] != 3:
            return im
        grey = (im * _GREY).sum(axis=-1, keepdims=True)
        return grey + (im - grey) * self._factor(self.saturation_range)

    def _hue(self, im):
        delta = self.rng.uniform(-self.hue_range, self.hue_range)
        if im.shape[2] != 3:
            return im
        hsv = cv2.cvtColor(np.clip(im, 0, 255) / np.float32(255), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + delta, 360.0)
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * np.float32(255)

    def __call__(self, sample):
        im = sample["image"].astype(np.float32)
        ops = [(self._brightness, self.brightness_prob), (self._contrast, self.contrast_prob),
               (self._saturation, self.saturation_prob), (self._hue, self.hue_prob)]
        for k in self.rng.permutation(len(ops)):
            op, prob = ops[k]
            if self.rng.random() < prob:
                im = np.clip(op(im), 0, 255).astype(np.float32)
        sample["image"] = im
        return sample


class Normalize(Transform):
    """Scale to [0, 1], then subtract ``mean`` and divide by ``std`` per channel.

    Parameters
    ----------
    mean : list of float
        Per-channel mean (RGB). Default ``[0.485, 0.456, 0.406]``.
    std : list of float
        Per-channel standard deviation, all > 0. Default ``[0.229, 0.224, 0.225]``.

    Raises
    ------
    InvalidParameterError
        When called on an image whose channel count differs from ``len(mean)``.
    """

    def __init__(self, mean=None, std=None):
        self.mean = _check_triple("Normalize", "mean", [0.485, 0.456, 0.406] if mean is None else mean)
        self.std = _check_triple("Normalize", "std", [0.229, 0.224, 0.225] if std is None else std,
                                 positive=True)

    def __call__(self, sample):
        im = sample["image"]
        if im.shape[2] != len(self.mean):
            raise InvalidParameterError(
                f"Normalize: image has {im.shape[2]} channels but 'mean' has {len(self.mean)} values.")
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        sample["image"] = (im.astype(np.float32) / np.float32(255.0) - mean) / std
        return sample


_CLASSES = {cls.__name__: cls for cls in (Resize, ResizeByShort, CenterCrop, RandomCrop,
                                          RandomHorizontalFlip, RandomDistort, Normalize)}


def build_transforms(config_list):
    """Rebuild a classification :class:`Compose` from ``[{ClassName: {args}}, ...]``.

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
        Unknown transform name (the message lists the known ones) or bad arguments.
    """
    return build_from_config(config_list, _CLASSES)
