"""PascalVOC-style detection list reader (PaddleX ``pdx.datasets.VOCDetection``).

A list file holds one ``<image path> <xml path>`` per line, both relative to
``data_dir``. The XML is the last whitespace-separated field, so image paths may
contain spaces (XML paths may not). ``labels.txt`` holds one class name per line; the
line number, from 0, is the class id.

Each XML must give ``size/width``, ``size/height`` and, per ``object``, ``name``,
``bndbox/xmin, ymin, xmax, ymax`` (pixels, read as floats) and optionally
``difficult`` (0 or 1, default 0). Coordinates are continuous pixel coordinates of the
decoded image: pixel column ``c`` spans ``[c, c + 1)``, so ``0 <= xmin < xmax <= width``.
"""
import logging
import warnings
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import paddle

from paddleprune.datasets.imagenet import existing_pair, list_rows, open_list_dataset, read_image, sample_index
from paddleprune.errors import DataFormatError, DataNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["VOCDetection", "parse_voc_xml"]

_UNSAFE_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")


class _NoDoctypeBuilder(ET.TreeBuilder):
    """Tree builder that refuses a DOCTYPE (expat reports it in any encoding)."""

    def doctype(self, name, pubid, system):
        raise DataFormatError("XML with a DOCTYPE declaration is refused (entity expansion is unsafe); "
                              "remove the DOCTYPE")


def _text(node, path):
    child = node.find(path)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _number(node, path, what):
    text = _text(node, path)
    if text is None:
        raise ValueError(f"missing <{path}> in {what}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"<{path}> of {what} is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise ValueError(f"<{path}> of {what} is not finite: {text!r}")
    return value


def parse_voc_xml(xml_path, cname2cid):
    """Parse and check one VOC annotation file.

    Parameters
    ----------
    xml_path : str
        The annotation file.
    cname2cid : dict of str to int
        Class name -> class id (from ``labels.txt``).

    Returns
    -------
    dict
        ``{'width': int, 'height': int, 'gt_bbox': float32 [N, 4], 'gt_class': int32 [N],
        'difficult': int32 [N]}``; ``N`` may be 0.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        Unsafe or malformed XML, a missing or non-numeric field, an unknown class name,
        a box outside the image or with no area. The message names ``xml_path``.
    """
    try:
        with open(xml_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataNotFoundError(f"annotation file not found: {xml_path}") from None
    upper = data.upper()
    for token in _UNSAFE_MARKUP:
        if token in upper:
            raise DataFormatError(f"XML containing {token.decode()} is refused (entity expansion is unsafe); "
                                  "remove the declaration", xml_path)
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise DataFormatError(f"malformed XML ({exc})", xml_path) from None
    except DataFormatError as exc:
        raise DataFormatError(str(exc), xml_path) from None
    try:
        return _read_annotation(root, cname2cid)
    except ValueError as exc:
        raise DataFormatError(str(exc), xml_path) from None


def _read_annotation(root, cname2cid):
    size = root.find("size")
    if size is None:
        raise ValueError("missing <size> (expected <size><width>..</width><height>..</height></size>)")
    dims = []
    for key in ("width", "height"):
        value = _number(size, key, "<size>")
        if value < 1 or value != int(value):
            raise ValueError(f"<size>/<{key}> must be a positive integer; got {_text(size, key)!r}")
        dims.append(int(value))
    width, height = dims
    boxes, classes, difficult = [], [], []
    for k, obj in enumerate(root.findall("object"), 1):
        name = _text(obj, "name")
        what = f"object {k}" + (f" ({name!r})" if name else "")
        if name is None:
            raise ValueError(f"missing <name> in {what}")
        if name not in cname2cid:
            raise ValueError(f"{what}: class name {name!r} is not in labels.txt; known names: "
                             f"{sorted(cname2cid)}")
        diff_text = _text(obj, "difficult")
        if diff_text is None:
            diff = 0
        elif diff_text in ("0", "1"):
            diff = int(diff_text)
        else:
            raise ValueError(f"<difficult> of {what} must be 0 or 1; got {diff_text!r}")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"missing <bndbox> in {what}")
        x1, y1, x2, y2 = (_number(bndbox, key, what) for key in ("xmin", "ymin", "xmax", "ymax"))
        box = f"box (xmin={x1:g}, ymin={y1:g}, xmax={x2:g}, ymax={y2:g})"
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ValueError(f"{what}: {box} is outside the {width}x{height} image; expected "
                             f"0 <= xmin < xmax <= {width} and 0 <= ymin < ymax <= {height}")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"{what}: {box} has no area; expected xmin < xmax and ymin < ymax")
        boxes.append((x1, y1, x2, y2))
        classes.append(cname2cid[name])
        difficult.append(diff)
    return {"width": width, "height": height,
            "gt_bbox": np.asarray(boxes, np.float32).reshape(-1, 4),
            "gt_class": np.asarray(classes, np.int32), "difficult": np.asarray(difficult, np.int32)}


def _image_size(path):
    """Return ``(height, width)`` of the image as :func:`read_image` would decode it."""
    buf = np.fromfile(path, dtype=np.uint8)
    im = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None  # same size and EXIF rotation
    if im is None:
        raise ValueError("cannot decode image (corrupt or not an image file)")
    return im.shape[:2]


class _MixupSource:
    """``source(rng)`` -> raw sample of a random image other than ``idx`` (itself if it is alone)."""

    def __init__(self, dataset, idx):
        self.dataset = dataset
        self.idx = idx

    def __call__(self, rng):
        n = self.dataset.num_samples
        other = self.idx if n < 2 else (self.idx + int(rng.integers(1, n))) % n
        return self.dataset.raw_sample(other)

    def __repr__(self):
        return f"_MixupSource(idx={self.idx}, num_samples={self.dataset.num_samples})"


class VOCDetection(paddle.io.Dataset):
    """Detection data set read from a VOC list and XML annotations (PaddleX signature).

    The list and every XML are parsed and checked eagerly, and every image is decoded
    once to check that its real size matches the XML ``<size>``; this costs well under
    a millisecond per small image, fine for data sets of a few thousand images. An image
    whose XML holds no object is skipped with a warning (``logger.warning`` and
    :func:`warnings.warn`) naming the file, as PaddleX does; its path is kept in
    ``skipped_files``.

    ``dataset[i]`` builds the detection sample dict (``'image'`` RGB uint8 H x W x 3,
    ``'im_id'`` = ``i``, ``'im_path'``, ``'origin_shape'`` int32 (h, w), ``'gt_bbox'``
    float32 [N, 4] x1 y1 x2 y2, ``'gt_class'`` int32, ``'gt_score'`` float32 ones,
    ``'difficult'`` int32), adds ``'mixup_source'`` (``source(rng)`` returns the raw sample
    of a random other image), runs ``transforms``, removes ``'mixup_source'`` and returns
    the dict.

    Parameters
    ----------
    data_dir : str
        Root the paths in the list are relative to.
    file_list : str
        List file (``train_list.txt``). A relative path not found from the working
        directory is looked up inside ``data_dir``.
    label_list : str
        Label file (``labels.txt``), looked up the same way.
    transforms : callable, optional
        A detection ``Compose`` (or any dict -> dict callable).
    shuffle : bool
        Stored for the train loop (a map-style data set is shuffled by its sampler).
    num_workers, buffer_size, parallel_method
        Accepted for PaddleX compatibility and ignored (use the DataLoader's options).

    Attributes
    ----------
    labels : list of str
        Class names; index = class id.
    cname2cid : dict of str to int
    file_list : list of [str, str]
        ``[absolute image path, absolute xml path]`` per kept sample (as in PaddleX).
    num_samples : int
    skipped_files : list of str
        Images skipped because their XML holds no object.
    file_list_path, label_list_path : str

    Raises
    ------
    DataNotFoundError
        ``data_dir``, the list or label file, or a listed image or XML does not exist.
    DataFormatError
        A malformed list line, unsafe (DOCTYPE / ENTITY) or malformed XML, a missing or
        non-numeric field, a box outside the image or with no area, a class name not in
        ``labels.txt``, an XML size that differs from the real image size, an
        undecodable image, or a list with no usable image. Messages read
        ``train_list.txt:17: Annotations/x.xml: ...``.
    InvalidParameterError
        ``transforms`` is not callable.
    """

    def __init__(self, data_dir, file_list, label_list, transforms=None, shuffle=False,
                 num_workers=None, buffer_size=None, parallel_method=None):
        super().__init__()
        open_list_dataset(self, data_dir, file_list, label_list, transforms, shuffle,
                          num_workers=num_workers, buffer_size=buffer_size, parallel_method=parallel_method)
        self.cname2cid = {name: i for i, name in enumerate(self.labels)}
        self.skipped_files = []
        self._records = self._parse(self.file_list_path)
        self.file_list = [[rec["im_path"], rec["xml_path"]] for rec in self._records]
        self.num_samples = len(self._records)
        logger.info("VOCDetection: %d samples, %d objects, %d classes from %s", self.num_samples,
                    sum(len(rec["gt_class"]) for rec in self._records), len(self.labels), self.file_list_path)

    def _parse(self, path):
        records = []
        for lineno, image, xml in list_rows(self, path, "xml path"):
            im_path, xml_path = existing_pair(self, path, lineno, image, xml, "annotation")
            try:
                ann = parse_voc_xml(xml_path, self.cname2cid)
            except DataFormatError as exc:  # already names the xml file; add the list line
                raise DataFormatError(str(exc), path, lineno) from None
            if not len(ann["gt_class"]):
                msg = f"VOCDetection: {xml_path} holds no object; skipping image {im_path} ({path}:{lineno})"
                logger.warning(msg)
                warnings.warn(msg, stacklevel=3)
                self.skipped_files.append(im_path)
                continue
            try:
                height, width = _image_size(im_path)
            except ValueError as exc:
                raise DataFormatError(f"{im_path}: {exc}", path, lineno) from None
            if (width, height) != (ann["width"], ann["height"]):
                raise DataFormatError(f"{xml_path}: <size> says {ann['width']}x{ann['height']} (width x height) "
                                      f"but the image {im_path} is {width}x{height}", path, lineno)
            ann.update(im_path=im_path, xml_path=xml_path)
            records.append(ann)
        if not records:
            if self.skipped_files:
                raise DataFormatError(f"every image of the list was skipped ({len(self.skipped_files)} "
                                      "annotation(s) without any object); nothing to read", path)
            raise DataFormatError("the list holds no samples; expected '<image path> <xml path>' lines", path)
        return records

    def __len__(self):
        return self.num_samples

    def raw_sample(self, idx):
        """Return the untransformed sample dict of image ``idx`` (fresh arrays every call)."""
        idx = sample_index(self, idx)
        rec = self._records[idx]
        image = read_image(rec["im_path"])
        n = len(rec["gt_class"])
        return {"image": image, "im_id": idx, "im_path": rec["im_path"],
                "origin_shape": np.asarray(image.shape[:2], np.int32),
                "gt_bbox": rec["gt_bbox"].copy(), "gt_class": rec["gt_class"].copy(),
                "gt_score": np.ones(n, np.float32), "difficult": rec["difficult"].copy()}

    def __getitem__(self, idx):
        idx = sample_index(self, idx)
        sample = self.raw_sample(idx)
        sample["mixup_source"] = _MixupSource(self, idx)
        if self.transforms is not None:
            sample = self.transforms(sample)
        sample.pop("mixup_source", None)
        return sample
