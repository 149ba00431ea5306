"""Embedded demo detection data set, built offline and deterministically from scikit-learn data.

:func:`detection` pastes handwritten digits 0-4 of :func:`sklearn.datasets.load_digits`
(8x8) onto darkened crops of scikit-learn's two sample photos, in the PaddleX
VOC layout::

    <cache>/demo_det/
        JPEGImages/<id>.jpg    colour JPEG (quality 95), width and height each in 128..192
        Annotations/<id>.xml   VOC XML: folder, filename, size, object/name/pose/truncated/
                               difficult/bndbox (integer pixel coordinates)
        train_list.txt         "JPEGImages/00000.jpg Annotations/00000.xml" per line (800 images)
        val_list.txt           200 images
        labels.txt             zero, one, two, three, four (line number from 0 = class id)

Every image holds 1 to 4 digits (2,470 objects, 2.5 per image). Each digit is upscaled
(cubic) to a height drawn log-uniformly in 14..60 px (width x0.85..1.15), rotated by up
to 10 degrees, given a random light colour and blended over the darkened, low-contrast
background, with pixel noise (the look of :func:`paddleprune.datasets.demo.classification`).
Boxes are tight around the digit's own alpha mask (pixels with alpha > 0.3), not the
paste rectangle: ``xmin`` is the first covered pixel column and ``xmax`` the last one
plus 1, i.e. continuous pixel coordinates with ``0 <= xmin < xmax <= width``. Digits
may overlap partially: a position is accepted if the new box has IoU <= 0.3 with every
earlier box and shares at most half of the smaller box (a digit with no such position
in 30 tries is left out); digits are painted largest first so a small one is never
hidden under a large one. Every 20th small digit (longer box side under 18 px), i.e.
5% of them, is marked ``difficult=1``. The glyphs of the validation images come from a
held-out 20% of the digit images, so validation objects are unseen.

Box heights span 14 to 62 px, widths 5 to 54 px (a thin "one"); by longer side about a
third each is below 24 px, 24-39 px and 40 px or more. 18 digits are difficult (14
train, 4 val) and about 10% of the digit pairs sharing an image overlap. Building takes
about 4 s of CPU (5-8 s wall on a busy 2-core machine). Everything comes from one fixed
seed, and the same library versions give byte-identical files. The marker file holds
the counts (``num_objects``, ``num_small``, ``num_difficult``, ``box_side_min``, ...).
"""
import logging
import math
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np

from paddleprune.datasets.cache import materialise
from paddleprune.datasets.synth import luma, stratified_split
from paddleprune.errors import DataFormatError

logger = logging.getLogger(__name__)

__all__ = ["detection", "DET_CLASS_NAMES", "DET_BUILDER_VERSION"]

DET_BUILDER_VERSION = 1
DET_CLASS_NAMES = ("zero", "one", "two", "three", "four")
_DET_CONFIG = {
    "seed": 20240611,
    "num_train": 800,
    "num_val": 200,
    "image_size": [128, 192],       # width and height each drawn in this inclusive range
    "objects_per_image": [1, 4],
    "digit_height": [14, 60],       # log-uniform height of the upscaled digit, pixels
    "aspect": [0.85, 1.15],         # digit width / height
    "rotation_deg": 10.0,
    "alpha_threshold": 0.3,         # tight box = pixels with alpha above this
    "max_iou": 0.3,
    "max_cover": 0.5,               # shared area / smaller box area
    "placement_tries": 30,
    "background_scale": [0.8, 2.5],  # photo crop size / image size
    "background_contrast": 0.35,
    "background_dim": 0.5,
    "opacity": [0.9, 1.0],
    "min_contrast": 100.0,          # luma gap digit colour vs background under it
    "noise_std": 5.0,
    "small_side": 18,               # longer box side below this: candidate for difficult
    "difficult_share": 0.05,        # share of the small digits marked difficult (every 20th)
    "jpeg_quality": 95,
    "val_fraction": 0.2,            # held-out share of the digit glyphs, for val images
}


def _background(rng, photos, width, height, cfg):
    """A darkened, low-contrast crop of a random photo, ``height x width x 3`` float32."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    low, high = cfg["background_scale"]
    scale = float(rng.uniform(low, min(high, ph / height, pw / width)))
    cw, ch = min(pw, round(width * scale)), min(ph, round(height * scale))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    interp = cv2.INTER_AREA if scale >= 1 else cv2.INTER_LINEAR
    bg = cv2.resize(photo[top:top + ch, left:left + cw], (width, height), interpolation=interp)
    if rng.random() < 0.5:
        bg = cv2.flip(bg, 1)
    bg = bg.astype(np.float32)
    mean = bg.mean(axis=(0, 1), keepdims=True)
    return (mean + (bg - mean) * np.float32(cfg["background_contrast"])) * np.float32(cfg["background_dim"])


def _glyph(rng, digit, cfg):
    """Return ``(alpha canvas, tight box (x1, y1, x2, y2) in canvas pixels)`` of one digit."""
    low, high = cfg["digit_height"]
    h = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    w = max(4, int(round(h * rng.uniform(*cfg["aspect"]))))
    glyph = np.clip(cv2.resize((digit / 16.0).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    pad = int(math.ceil(0.2 * max(w, h))) + 2
    canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    canvas[pad:pad + h, pad:pad + w] = glyph
    angle = float(rng.uniform(-cfg["rotation_deg"], cfg["rotation_deg"]))
    rot = cv2.getRotationMatrix2D((pad + w / 2.0, pad + h / 2.0), angle, 1.0)
    canvas = cv2.warpAffine(canvas, rot, canvas.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=0.0)
    alpha = np.clip(canvas, 0.0, 1.0) * np.float32(rng.uniform(*cfg["opacity"]))
    return alpha, _tight_box(alpha, cfg["alpha_threshold"])


def _tight_box(alpha, threshold):
    """``(x1, y1, x2, y2)`` around the pixels with ``alpha > threshold`` (x2, y2 exclusive)."""
    mask = alpha > threshold
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if not cols.size:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _overlap(a, b):
    """Return ``(IoU, intersection / smaller area)`` of two boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0, 0.0
    inter = iw * ih
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter), inter / min(area_a, area_b)


def _place(rng, box, width, height, placed, cfg):
    """Return the canvas offset ``(left, top)`` keeping ``box`` inside and apart, or ``None``."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw > width or bh > height:
        return None
    for _ in range(cfg["placement_tries"]):
        x, y = int(rng.integers(0, width - bw + 1)), int(rng.integers(0, height - bh + 1))
        cand = (x, y, x + bw, y + bh)
        if all(iou <= cfg["max_iou"] and cover <= cfg["max_cover"]
               for iou, cover in (_overlap(cand, other) for other in placed)):
            return x - box[0], y - box[1]
    return None


def _paste(rng, img, alpha, left, top, cfg):
    """Blend a light random colour into ``img`` (in place) with ``alpha`` at ``(left, top)``."""
    height, width = img.shape[:2]
    y0, y1 = max(0, top), min(height, top + alpha.shape[0])
    x0, x1 = max(0, left), min(width, left + alpha.shape[1])
    a = alpha[y0 - top:y1 - top, x0 - left:x1 - left]
    region = img[y0:y1, x0:x1]
    colour = rng.integers(0, 256, size=3).astype(np.float32)
    under = region[a > cfg["alpha_threshold"]]
    if luma(colour) - luma(under) < cfg["min_contrast"]:
        colour = 255.0 - (255.0 - colour) * 0.3  # push towards white: light digit on dark ground
    a = a[:, :, None]
    img[y0:y1, x0:x1] = region * (1.0 - a) + colour[None, None, :] * a


def _render_image(rng, pool, digits, targets, photos, cfg):
    """Return ``(RGB uint8 image, objects)``; an object is ``(class id, box)``."""
    width, height = (int(rng.integers(cfg["image_size"][0], cfg["image_size"][1] + 1)) for _ in range(2))
    img = _background(rng, photos, width, height, cfg)
    wanted = int(rng.integers(cfg["objects_per_image"][0], cfg["objects_per_image"][1] + 1))
    objects, placed = [], []
    for _ in range(wanted):
        k = int(pool[int(rng.integers(len(pool)))])
        alpha, box = _glyph(rng, digits[k], cfg)
        offset = None if box is None else _place(rng, box, width, height, placed, cfg)
        if offset is None:
            continue
        left, top = offset
        placed.append((box[0] + left, box[1] + top, box[2] + left, box[3] + top))
        objects.append((int(targets[k]), placed[-1], alpha, left, top))
    objects.sort(key=lambda o: -(o[1][2] - o[1][0]) * (o[1][3] - o[1][1]))  # largest painted first
    for cid, box, alpha, left, top in objects:
        _paste(rng, img, alpha, left, top, cfg)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(cfg["noise_std"])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), [(cid, box) for cid, box, *_ in objects]


def _mark_difficult(objects, n_small, cfg):
    """Add a difficult flag: every ``1 / difficult_share``-th small digit of the whole set.

    A quota rather than a coin flip, so train and val both get their share. ``n_small``
    counts the small digits seen so far; return the flagged objects and the new count.
    """
    share, out = cfg["difficult_share"], []
    for cid, box in objects:
        small = max(box[2] - box[0], box[3] - box[1]) < cfg["small_side"]
        n_small += small
        due = math.floor(share * n_small + 0.5) > math.floor(share * (n_small - 1) + 0.5)
        out.append((cid, box, int(small and due)))
    return out, n_small


def _write_xml(path, filename, width, height, objects):
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for cid, box, difficult in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = DET_CLASS_NAMES[cid]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = str(difficult)
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, key).text = str(int(value))
    tree = ET.ElementTree(root)
    ET.indent(tree, space="  ")
    with open(path, "wb") as f:
        tree.write(f, encoding="utf-8", xml_declaration=True)
        f.write(b"\n")


def _build_det(folder):
    from sklearn.datasets import load_digits, load_sample_images  # bundled with scikit-learn

    cfg = _DET_CONFIG
    data = load_digits()
    keep = data.target < len(DET_CLASS_NAMES)
    digits, targets = data.images[keep], data.target[keep]
    photos = [np.asarray(im) for im in load_sample_images().images]  # RGB uint8
    rng = np.random.default_rng(cfg["seed"])
    train_pool, val_pool = (np.asarray(ix) for ix in stratified_split(rng, targets, cfg["val_fraction"]))
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(folder, sub))
    lines = {"train_list.txt": [], "val_list.txt": []}
    sides, per_image, difficult, n_small = [], [], 0, 0
    n_train = cfg["num_train"]
    for i in range(n_train + cfg["num_val"]):
        pool = train_pool if i < n_train else val_pool
        rgb, objects = _render_image(rng, pool, digits, targets, photos, cfg)
        objects, n_small = _mark_difficult(objects, n_small, cfg)
        name = f"{i:05d}"
        ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, cfg["jpeg_quality"]])
        if not ok:  # pragma: no cover - OpenCV always encodes a small uint8 image
            raise DataFormatError("OpenCV could not encode the generated image",
                                  os.path.join(folder, "JPEGImages", name + ".jpg"))
        with open(os.path.join(folder, "JPEGImages", name + ".jpg"), "wb") as f:
            f.write(buf.tobytes())
        _write_xml(os.path.join(folder, "Annotations", name + ".xml"), name + ".jpg",
                   rgb.shape[1], rgb.shape[0], objects)
        lines["train_list.txt" if i < n_train else "val_list.txt"].append(
            f"JPEGImages/{name}.jpg Annotations/{name}.xml\n")
        per_image.append(len(objects))
        difficult += sum(d for _, _, d in objects)
        sides.extend(v for _, b, _ in objects for v in (b[2] - b[0], b[3] - b[1]))
    for fname, rows in lines.items():
        with open(os.path.join(folder, fname), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(rows)
    with open(os.path.join(folder, "labels.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(name + "\n" for name in DET_CLASS_NAMES)
    return {"num_images": len(per_image), "num_train": n_train, "num_val": cfg["num_val"],
            "num_classes": len(DET_CLASS_NAMES), "num_objects": int(sum(per_image)),
            "objects_per_image": [int(min(per_image)), int(max(per_image))],
            "num_difficult": int(difficult), "num_small": int(n_small),
            "box_side_min": int(min(sides)), "box_side_max": int(max(sides)),
            "source": "sklearn.datasets.load_digits (0-4) + load_sample_images"}


def detection(cache_dir=None, force=False):
    """Build (once) the demo detection set and return its folder.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Cache root; default ``$PADDLEPRUNE_CACHE`` or ``~/.cache/paddleprune``. The set is
        written to ``<cache_dir>/demo_det``.
    force : bool
        Rebuild even if a complete, current copy exists.

    Returns
    -------
    str
        Folder holding ``JPEGImages/``, ``Annotations/``, ``train_list.txt`` (800
        images), ``val_list.txt`` (200 images) and ``labels.txt`` (5 classes).

    Examples
    --------
    >>> from paddleprune.datasets import VOCDetection, demo
    >>> root = demo.detection()
    >>> train = VOCDetection(root, 'train_list.txt', 'labels.txt')
    """
    return materialise("demo_det", DET_BUILDER_VERSION, _DET_CONFIG, _build_det,
                       cache_dir=cache_dir, force=force)
