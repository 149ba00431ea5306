"""Semantic segmentation list reader (PaddleX ``pdx.datasets.SegDataset``).

A list file holds one ``<image path> <mask path>`` per line, both relative to
``data_dir``. The mask is the last whitespace-separated field, so image paths may
contain spaces (mask paths may not). ``labels.txt`` (optional) holds one class name
per line; the line number, from 0, is the class id, background usually first.

A mask is a single-channel image of class ids, one per pixel, the size of its image:
a grey (PIL mode ``'L'``) or palette (``'P'``, the indices are the ids) PNG; 16-bit
grey and 1-bit masks are read too. The value 255 marks pixels to ignore. Colour (RGB)
masks are refused: convert a colour-coded mask to ids first.
"""
import logging
import os

import numpy as np
import paddle
from PIL import Image

from paddleprune.datasets.imagenet import existing_pair, list_rows, open_list_dataset, read_image, sample_index
from paddleprune.datasets.voc import _image_size
from paddleprune.errors import DataFormatError, DataNotFoundError

logger = logging.getLogger(__name__)

__all__ = ["SegDataset", "read_mask", "IGNORE_INDEX"]

IGNORE_INDEX = 255
_GREY_MODES = ("L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N")
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def read_mask(path):
    """Decode a segmentation mask into an ``H x W`` array of class ids.

    Parameters
    ----------
    path : str
        A single-channel image: grey (``'L'``), palette (``'P'``, indices are the ids),
        16-bit grey or 1-bit. PIL reads it, so palette indices are not turned into colours.

    Returns
    -------
    numpy.ndarray
        ``uint8`` for 8-bit and 1-bit masks, ``uint16`` or ``int32`` for wider ones.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        The file cannot be decoded, or is a colour / multi-channel image. The message
        names ``path``.
    """
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im) if mode in _GREY_MODES else None  # a writable copy
            if arr is None:
                bands = im.getbands()
                equal_rgb = mode == "RGB" and _channels_equal(np.asarray(im))
    except FileNotFoundError:
        raise DataNotFoundError(f"mask file not found: {path}") from None
    except _PIL_ERRORS as exc:
        raise DataFormatError(f"cannot decode mask (corrupt or not an image file: {exc})", path) from None
    if arr is None:
        expected = f"expected a single-channel PNG of class ids (grey 'L' or palette 'P'), {IGNORE_INDEX} = ignore."
        if len(bands) == 1:
            raise DataFormatError(f"mask pixel type (PIL mode {mode!r}) is not integer class ids; {expected}", path)
        hint = (" Its three channels are equal: save it as a single-channel grey PNG." if equal_rgb else
                " Convert a colour-coded mask to class ids (or a palette PNG) first.")
        raise DataFormatError(f"mask has {len(bands)} channels (PIL mode {mode!r}); {expected}{hint}", path)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise DataFormatError(f"mask holds a negative value {int(arr.min())}; expected class ids >= 0", path)
    return arr


def _channels_equal(rgb):
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _value_counts(mask):
    """``(values, pixel counts)`` of the distinct values in ``mask``."""
    if mask.dtype == np.uint8:
        counts = np.bincount(mask.ravel(), minlength=256)
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(mask, return_counts=True)


def _first_pixel(mask, value):
    row, col = np.argwhere(mask == value)[0]
    return f"first at row {row}, column {col}"


class SegDataset(paddle.io.Dataset):
    """Segmentation data set read from an image / mask list (PaddleX signature).

    The list is parsed and every image and mask is checked eagerly: both files exist
    and decode, the mask is single-channel, has its image's size, and holds only class
    ids below ``num_classes`` or 255 (ignore). This decodes each image (grey) and mask
    once, well under a millisecond each for small images.

    ``dataset[i]`` builds ``{'image': RGB uint8 H x W x 3, 'label': uint8 H x W class
    ids (255 = ignore), 'im_path', 'label_path', 'im_id': i, 'origin_shape': int32
    [h, w]}``, runs it through ``transforms`` (which transform image and label
    together) and returns the dict.

    Parameters
    ----------
    data_dir : str
        Root the paths in the list are relative to.
    file_list : str
        List file (``train_list.txt``). A relative path not found from the working
        directory is looked up inside ``data_dir``.
    label_list : str, optional
        Label file (``labels.txt``), looked up the same way. Without it ``labels`` is
        ``None`` and ``num_classes`` is the largest id found in the masks plus one.
    transforms : callable, optional
        A segmentation ``Compose`` (or any dict -> dict callable).
    shuffle : bool
        Stored for the train loop (a map-style data set is shuffled by its sampler).
    num_workers, buffer_size, parallel_method
        Accepted for PaddleX compatibility and ignored (use the DataLoader's options).

    Attributes
    ----------
    labels : list of str or None
        Class names; index = class id.
    num_classes : int
    file_list : list of [str, str]
        ``[absolute image path, absolute mask path]`` per sample (as in PaddleX).
    num_samples : int
    file_list_path : str
    label_list_path : str or None

    Raises
    ------
    DataNotFoundError
        ``data_dir``, the list or label file, or a listed image or mask does not exist.
    DataFormatError
        A malformed list line, an undecodable image or mask, a colour mask, a mask whose
        size differs from its image, a mask value that is not a class id (``>=
        num_classes`` and not 255), more than 255 classes, or an empty list. Messages
        read ``train_list.txt:17: .../Annotations/x.png: ...``.
    InvalidParameterError
        ``transforms`` is not callable.
    """

    def __init__(self, data_dir, file_list, label_list=None, transforms=None, shuffle=False,
                 num_workers=None, buffer_size=None, parallel_method=None):
        super().__init__()
        open_list_dataset(self, data_dir, file_list, label_list, transforms, shuffle, labels_optional=True,
                          num_workers=num_workers, buffer_size=buffer_size, parallel_method=parallel_method)
        if self.labels is not None and len(self.labels) > IGNORE_INDEX:
            raise DataFormatError(f"{len(self.labels)} class names; at most {IGNORE_INDEX} classes are "
                                  f"supported (id {IGNORE_INDEX} marks ignored pixels)", self.label_list_path)
        self._records, pixels = self._parse(self.file_list_path)
        self.num_classes = len(self.labels) if self.labels is not None else len(pixels)
        self._class_pixels = np.zeros(self.num_classes, np.int64)
        self._class_pixels[:len(pixels)] = pixels
        self.file_list = [[im, mask] for im, mask, _ in self._records]
        self.num_samples = len(self._records)
        logger.info("SegDataset: %d samples, %d classes%s from %s", self.num_samples, self.num_classes,
                    "" if self.labels is not None else " (inferred from the masks)", self.file_list_path)

    def _parse(self, path):
        records = []
        limit = len(self.labels) if self.labels is not None else IGNORE_INDEX
        pixels = np.zeros(IGNORE_INDEX, np.int64)
        for lineno, image, mask_rel in list_rows(self, path, "mask path"):
            im_path, mask_path = existing_pair(self, path, lineno, image, mask_rel, "mask")
            try:
                height, width = _image_size(im_path)
            except ValueError as exc:
                raise DataFormatError(f"{im_path}: {exc}", path, lineno) from None
            try:
                mask = read_mask(mask_path)
            except DataFormatError as exc:  # already names the mask file; add the list line
                raise DataFormatError(str(exc), path, lineno) from None
            if mask.shape != (height, width):
                raise DataFormatError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (width x height) "
                                      f"but the image {im_path} is {width}x{height}", path, lineno)
            values, counts = _value_counts(mask)
            for value, count in zip(values.tolist(), counts.tolist()):
                if value == IGNORE_INDEX:
                    continue
                if value >= limit:
                    raise DataFormatError(self._bad_value(mask_path, mask, value, count), path, lineno)
                pixels[value] += count
            records.append((im_path, mask_path, (height, width)))
        if not records:
            raise DataFormatError("the list holds no samples; expected '<image path> <mask path>' lines", path)
        if self.labels is not None:
            return records, pixels[:len(self.labels)]
        seen = np.flatnonzero(pixels)
        if not seen.size:
            raise DataFormatError(f"every mask holds only the ignore value {IGNORE_INDEX}, so the number of "
                                  "classes cannot be inferred; pass label_list", path)
        return records, pixels[:int(seen[-1]) + 1]

    def _bad_value(self, mask_path, mask, value, count):
        where = f"{count} pixel(s), {_first_pixel(mask, value)}"
        if self.labels is None:
            return (f"{mask_path}: mask value {value} ({where}) is not a class id; without a label_list "
                    f"ids must be 0..{IGNORE_INDEX - 1}, and {IGNORE_INDEX} = ignore")
        n = len(self.labels)
        return (f"{mask_path}: mask value {value} ({where}) is >= num_classes {n} ({n} classes in "
                f"{os.path.basename(self.label_list_path)}, ids 0..{n - 1}; {IGNORE_INDEX} = ignore)")

    def __len__(self):
        return self.num_samples

    def raw_sample(self, idx):
        """Return the untransformed sample dict of image ``idx`` (fresh arrays every call)."""
        idx = sample_index(self, idx)
        im_path, mask_path, shape = self._records[idx]
        image = read_image(im_path)
        mask = read_mask(mask_path)
        if image.shape[:2] != shape or mask.shape != shape:
            raise DataFormatError(f"image {im_path} is {image.shape[1]}x{image.shape[0]} and mask is "
                                  f"{mask.shape[1]}x{mask.shape[0]} (width x height); they were "
                                  f"{shape[1]}x{shape[0]} when the list was read (files changed?)", mask_path)
        if mask.dtype != np.uint8:
            mask = mask.astype(np.uint8)  # checked at construction: every value is <= 255
        return {"image": image, "label": mask, "im_path": im_path, "label_path": mask_path, "im_id": idx,
                "origin_shape": np.asarray(shape, np.int32)}

    def __getitem__(self, idx):
        sample = self.raw_sample(idx)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample
