"""ImageNet-style classification list reader (PaddleX ``pdx.datasets.ImageNet``).

A list file holds one ``<image path> <label id>`` per line, the path relative to
``data_dir`` (it may contain spaces: the label is the last field). ``labels.txt``
holds one class name per line; the line number, from 0, is the label id.
"""
import logging
import operator
import os

import cv2
import numpy as np
import paddle

from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError
from paddleprune.transforms.base import to_chw

logger = logging.getLogger(__name__)

__all__ = ["ImageNet", "read_labels", "read_image"]


def _read_lines(path):
    try:
        with open(path, encoding="utf-8-sig") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})", path) from None


def read_labels(label_list):
    """Read ``labels.txt``: one class name per line, line number = id.

    Parameters
    ----------
    label_list : str
        Path of the label file.

    Returns
    -------
    list of str

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        The file is empty, has a blank line between names, or repeats a name.
    """
    if not os.path.isfile(label_list):
        raise DataNotFoundError(f"label list file not found: {label_list}")
    lines = _read_lines(label_list)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFormatError("label list is empty; expected one class name per line", label_list)
    labels, seen = [], {}
    for lineno, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            raise DataFormatError("blank line inside the label list; the line number is the label id, "
                                  "so every id needs a name", label_list, lineno)
        if name in seen:
            raise DataFormatError(f"duplicate class name {name!r} (also on line {seen[name]})",
                                  label_list, lineno)
        seen[name] = lineno
        labels.append(name)
    return labels


def list_rows(dataset, path, second):
    """The non-blank lines of a PaddleX list file as ``(lineno, first, last)``: the last
    whitespace-separated field is ``second`` (a label id, an XML or mask path), the rest the
    image path (which may hold spaces). Blank lines are skipped, counted in
    ``dataset.skipped_blank_lines`` and logged."""
    owner, blank = type(dataset).__name__, 0
    for lineno, raw in enumerate(_read_lines(path), 1):
        line = raw.strip()
        if not line:
            blank += 1
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise DataFormatError(f"expected '<image path> <{second}>'; got {line!r}", path, lineno)
        yield lineno, parts[0], parts[1]
    dataset.skipped_blank_lines = blank
    if blank:
        logger.info("%s: skipped %d blank line(s) in %s", owner, blank, os.path.basename(path))


def existing_pair(dataset, path, lineno, image, other, other_name):
    """``image`` and ``other`` joined to ``dataset.data_dir``; raises naming the list line if
    either file does not exist."""
    paths = [os.path.normpath(os.path.join(dataset.data_dir, p)) for p in (image, other)]
    for full, what in zip(paths, ("image", other_name)):
        if not os.path.isfile(full):
            raise DataNotFoundError(f"{path}:{lineno}: {what} file not found: {full}")
    return paths


def sample_index(dataset, idx):
    """``idx`` (negative counts from the end) as an index into ``dataset.num_samples`` samples."""
    idx = operator.index(idx)
    if idx < 0:
        idx += dataset.num_samples
    if not 0 <= idx < dataset.num_samples:
        raise IndexError(f"{type(dataset).__name__}: index {idx} out of range for {dataset.num_samples} samples")
    return idx


def read_image(path):
    """Decode an image file into an ``H x W x 3`` RGB ``uint8`` array.

    Grey images get three channels and an alpha channel is dropped. Non-ASCII paths work.

    Parameters
    ----------
    path : str

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    DataFormatError
        The file cannot be decoded as an image.
    """
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataNotFoundError(f"image file not found: {path}") from None
    im = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if im is None:
        raise DataFormatError("cannot decode image (corrupt or not an image file)", path)
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def _resolve_list(data_dir, path):
    """A relative list path that is not found from the cwd is tried inside ``data_dir``."""
    path = os.fspath(path)
    if not os.path.isabs(path) and not os.path.exists(path):
        inside = os.path.join(data_dir, path)
        if os.path.exists(inside):
            return inside
    return path


def open_list_dataset(dataset, data_dir, file_list, label_list, transforms, shuffle, *,
                      labels_optional=False, **ignored):
    """The part of a PaddleX list data set's constructor every reader shares: check
    ``transforms`` and the folders, resolve the list and label files, read the labels.

    Sets ``data_dir``, ``file_list_path``, ``label_list_path``, ``transforms``, ``shuffle``
    and ``labels`` on ``dataset``; ``ignored`` are PaddleX's loader options (logged, unused).
    With ``labels_optional`` a ``label_list`` of ``None`` sets ``label_list_path`` and
    ``labels`` to ``None``.
    """
    owner = type(dataset).__name__
    for name, value in ignored.items():
        if value is not None:
            logger.debug("%s: %r=%r is accepted for PaddleX compatibility and ignored; "
                         "set the DataLoader's options instead", owner, name, value)
    if transforms is not None and not callable(transforms):
        raise InvalidParameterError(
            f"{owner}: 'transforms' must be callable (e.g. a Compose) or None; got {transforms!r}.")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataNotFoundError(f"data_dir not found or not a folder: {data_dir}")
    dataset.data_dir = os.path.abspath(data_dir)
    dataset.file_list_path = _resolve_list(data_dir, file_list)
    no_labels = labels_optional and label_list is None
    dataset.label_list_path = None if no_labels else _resolve_list(data_dir, label_list)
    dataset.transforms = transforms
    dataset.shuffle = shuffle
    if not os.path.isfile(dataset.file_list_path):
        raise DataNotFoundError(f"file list not found: {dataset.file_list_path}")
    dataset.labels = None if no_labels else read_labels(dataset.label_list_path)


class ImageNet(paddle.io.Dataset):
    """Classification data set read from an ImageNet-style list (PaddleX signature).

    The list is parsed and checked eagerly; images are decoded when a sample is read.
    ``dataset[i]`` builds ``{'image': RGB uint8 H x W x 3, 'label': int, 'im_path': str}``,
    runs it through ``transforms`` and returns ``(image as C x H x W float32, label as
    int64)``.

    Parameters
    ----------
    data_dir : str
        Root the image paths in the list are relative to.
    file_list : str
        List file (``train_list.txt``). A relative path not found from the working
        directory is looked up inside ``data_dir``.
    label_list : str
        Label file (``labels.txt``), looked up the same way.
    transforms : callable, optional
        A :class:`~paddleprune.transforms.base.Compose` (or any dict -> dict callable).
    shuffle : bool
        Stored for the train loop (a map-style data set is shuffled by its sampler).
    num_workers, buffer_size, parallel_method
        Accepted for PaddleX compatibility and ignored (use the DataLoader's options).

    Attributes
    ----------
    labels : list of str
        Class names; index = label id.
    file_list : list of [str, int]
        ``[absolute image path, label id]`` per sample (as in PaddleX).
    num_samples : int
    file_list_path, label_list_path : str
        The list and label files that were read.
    skipped_blank_lines : int

    Raises
    ------
    DataNotFoundError
        ``data_dir``, the list or the label file, or a listed image does not exist.
    DataFormatError
        A malformed list line, a label that is not an integer id of ``labels.txt``, or
        an empty list. Messages read ``train_list.txt:17: ...``.
    InvalidParameterError
        ``transforms`` is not callable.
    """

    def __init__(self, data_dir, file_list, label_list, transforms=None, shuffle=False,
                 num_workers=None, buffer_size=None, parallel_method=None):
        super().__init__()
        open_list_dataset(self, data_dir, file_list, label_list, transforms, shuffle,
                          num_workers=num_workers, buffer_size=buffer_size, parallel_method=parallel_method)
        self.file_list = self._parse(self.file_list_path, len(self.labels))
        self.num_samples = len(self.file_list)
        logger.info("ImageNet: %d samples, %d classes from %s", self.num_samples, len(self.labels),
                    self.file_list_path)

    def _parse(self, path, num_classes):
        samples = []
        for lineno, rel, label in list_rows(self, path, "label id"):
            try:
                label_id = int(label)
            except ValueError:
                raise DataFormatError(f"label {label!r} is not an integer id; expected 0..{num_classes - 1} "
                                      f"(num_classes {num_classes} from labels.txt)", path, lineno) from None
            if not 0 <= label_id < num_classes:
                raise DataFormatError(f"label {label_id} is out of range; expected 0..{num_classes - 1} "
                                      f"(num_classes {num_classes} from labels.txt)", path, lineno)
            full = os.path.normpath(os.path.join(self.data_dir, rel))
            if not os.path.isfile(full):
                raise DataNotFoundError(f"{path}:{lineno}: image file not found: {full}")
            samples.append([full, label_id])
        if not samples:
            raise DataFormatError("the list holds no samples; expected '<image path> <label id>' lines", path)
        return samples

    def __len__(self):
        return self.num_samples

    def __getitem__(self, idx):
        path, label = self.file_list[idx]
        sample = {"image": read_image(path), "label": label, "im_path": path}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return to_chw(sample["image"]), np.int64(sample["label"])
