"""Embedded demo data sets, built offline and deterministically from scikit-learn's bundled data.

:func:`classification` turns the 1,797 handwritten digits of
:func:`sklearn.datasets.load_digits` (8x8, 10 classes) into 32x32 colour PNGs in the
PaddleX ImageNet-list layout::

    <cache>/demo_cls/
        images/<class name>/<id>.png
        train_list.txt   "images/three/00003.png 3" per line
        val_list.txt
        labels.txt       one class name per line; line number (from 0) = label id

Each digit is upscaled to a random size (22-30 px), rotated, given a random light colour
and blended over a darkened, low-contrast random crop of one of scikit-learn's two
sample photos, with pixel noise. A MobileNetV2 x0.25 trained from scratch reaches about
80% validation accuracy after 8 epochs (batch 32, Momentum lr 0.02) and keeps
improving, so pruning losses stay visible. (Random digit polarity, i.e. dark-on-light
and light-on-dark mixed, made from-scratch training stall for hundreds of steps, so
``light_digit_prob`` is 1.) Everything comes from one fixed seed; the same library
versions give byte-identical files.
"""
import logging
import os

import cv2
import numpy as np

from paddleprune.datasets.cache import materialise
from paddleprune.datasets.synth import luma, stratified_split
from paddleprune.errors import DataFormatError

logger = logging.getLogger(__name__)

__all__ = ["classification", "detection", "segmentation", "CLS_CLASS_NAMES", "CLS_BUILDER_VERSION"]

CLS_BUILDER_VERSION = 1
CLS_CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_CLS_CONFIG = {
    "seed": 20240517,
    "image_size": 32,
    "digit_size": [22, 30],        # side of the upscaled digit, pixels (inclusive range)
    "rotation_deg": 10.0,
    "background_crop": [40, 200],  # side of the photo crop shrunk to image_size
    "background_contrast": 0.35,   # background pixels pulled towards their mean by this factor
    "opacity": [0.9, 1.0],
    "min_contrast": 100.0,         # luma gap digit colour vs background under it
    "noise_std": 5.0,
    "light_digit_prob": 1.0,       # None: any polarity; p: light-on-dark with probability p
    "val_fraction": 0.2,
}


def _background(rng, photos, size, crop_range, contrast):
    photo = photos[int(rng.integers(len(photos)))]
    h, w = photo.shape[:2]
    side = int(rng.integers(crop_range[0], crop_range[1] + 1))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))
    crop = photo[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    bg = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean = bg.mean(axis=(0, 1), keepdims=True)
    return mean + (bg - mean) * np.float32(contrast)


def _glyph_alpha(rng, digit, cfg):
    """Place the 8x8 digit (values 0..16) on an ``image_size`` canvas; return alpha in [0, 1]."""
    size = cfg["image_size"]
    side = int(rng.integers(cfg["digit_size"][0], cfg["digit_size"][1] + 1))
    glyph = cv2.resize((digit / 16.0).astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    angle = float(rng.uniform(-cfg["rotation_deg"], cfg["rotation_deg"]))
    top = int(rng.integers(0, size - side + 1))
    left = int(rng.integers(0, size - side + 1))
    centre = (left + side / 2.0, top + side / 2.0)
    canvas = np.zeros((size, size), np.float32)
    canvas[top:top + side, left:left + side] = glyph
    rot = cv2.getRotationMatrix2D(centre, angle, 1.0)
    canvas = cv2.warpAffine(canvas, rot, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.clip(canvas, 0.0, 1.0)


def _render(rng, digit, photos, cfg):
    """Return one ``size x size x 3`` RGB uint8 image of ``digit``."""
    size = cfg["image_size"]
    bg = _background(rng, photos, size, cfg["background_crop"], cfg["background_contrast"])
    alpha = _glyph_alpha(rng, digit, cfg) * float(rng.uniform(*cfg["opacity"]))
    colour = rng.integers(0, 256, size=3).astype(np.float32)
    polarity = cfg["light_digit_prob"] is not None
    light = polarity and rng.random() < cfg["light_digit_prob"]  # no draw when None: same images as before
    if polarity:
        # light digit on a darkened background, or dark digit on a lightened one
        bg = bg * 0.5 if light else 255.0 - (255.0 - bg) * 0.5
    under = bg[alpha > 0.3] if np.any(alpha > 0.3) else bg.reshape(-1, 3)
    bg_luma = luma(under)
    if abs(luma(colour) - bg_luma) < cfg["min_contrast"] or (polarity and (luma(colour) > bg_luma) != light):
        # push the colour away from the background: darker on bright, brighter on dark
        dark = (not light) if polarity else bg_luma > 127.5
        colour = colour * 0.3 if dark else 255.0 - (255.0 - colour) * 0.3
    a = alpha[:, :, None]
    img = bg * (1.0 - a) + colour[None, None, :] * a
    img += rng.normal(0.0, cfg["noise_std"], size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _build_cls(folder):
    from sklearn.datasets import load_digits, load_sample_images  # bundled with scikit-learn

    cfg = _CLS_CONFIG
    digits = load_digits()
    photos = [np.asarray(im) for im in load_sample_images().images]  # RGB uint8
    rng = np.random.default_rng(cfg["seed"])
    for name in CLS_CLASS_NAMES:
        os.makedirs(os.path.join(folder, "images", name))
    relpaths = []
    for i, (digit, target) in enumerate(zip(digits.images, digits.target)):
        rgb = _render(rng, digit, photos, cfg)
        rel = f"images/{CLS_CLASS_NAMES[int(target)]}/{i:05d}.png"
        ok, buf = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:  # pragma: no cover - OpenCV always encodes a small uint8 image
            raise DataFormatError("OpenCV could not encode the generated image", os.path.join(folder, rel))
        with open(os.path.join(folder, rel), "wb") as f:
            f.write(buf.tobytes())
        relpaths.append(rel)
    train, val = stratified_split(rng, digits.target, cfg["val_fraction"])
    for fname, idx in (("train_list.txt", train), ("val_list.txt", val)):
        with open(os.path.join(folder, fname), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{relpaths[i]} {int(digits.target[i])}\n" for i in idx)
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(name + "\n" for name in CLS_CLASS_NAMES)
    return {"num_images": len(relpaths), "num_train": len(train), "num_val": len(val),
            "num_classes": len(CLS_CLASS_NAMES), "source": "sklearn.datasets.load_digits + load_sample_images"}


def classification(cache_dir=None, force=False):
    """Build (once) the demo classification set and return its folder.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Cache root; default ``$PADDLEPRUNE_CACHE`` or ``~/.cache/paddleprune``. The set is
        written to ``<cache_dir>/demo_cls``.
    force : bool
        Rebuild even if a complete, current copy exists.

    Returns
    -------
    str
        Folder holding ``images/``, ``train_list.txt``, ``val_list.txt`` and ``labels.txt``
        (1,797 32x32 PNGs, 10 classes, stratified 80/20 split: 1,438 train, 359 val).

    Examples
    --------
    >>> from paddleprune.datasets import ImageNet, demo
    >>> root = demo.classification()
    >>> train = ImageNet(root, 'train_list.txt', 'labels.txt')  # list paths may be relative to root
    """
    return materialise("demo_cls", CLS_BUILDER_VERSION, _CLS_CONFIG, _build_cls,
                       cache_dir=cache_dir, force=force)


from paddleprune.datasets.demo_det import detection  # noqa: E402
from paddleprune.datasets.demo_seg import segmentation  # noqa: E402
