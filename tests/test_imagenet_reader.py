"""ImageNet list reader: every bad input gives a clear error naming file, line and value."""
import logging
import os

import cv2
import numpy as np
import paddle
import pytest

from paddleprune.datasets import ImageNet
from paddleprune.datasets.imagenet import read_image, read_labels
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError
from paddleprune.transforms.cls import Compose, Normalize, Resize


def _png(path, bgr=(0, 0, 255), size=(6, 5)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = np.zeros((size[1], size[0], 3), np.uint8)
    im[:] = bgr
    assert cv2.imwrite(str(path), im)


@pytest.fixture
def data(tmp_path):
    """A 2-class set: images/a/0.png (red), images/b/1.png (green), labels cat/dog."""
    _png(tmp_path / "images" / "a" / "0.png", (0, 0, 255))
    _png(tmp_path / "images" / "b" / "1.png", (0, 255, 0))
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "train_list.txt").write_text("images/a/0.png 0\nimages/b/1.png 1\n")
    return tmp_path


def _make(root, list_text=None, labels_text=None, **kwargs):
    if list_text is not None:
        (root / "train_list.txt").write_text(list_text)
    if labels_text is not None:
        (root / "labels.txt").write_text(labels_text)
    return ImageNet(str(root), str(root / "train_list.txt"), str(root / "labels.txt"), **kwargs)


def test_reads_samples(data):
    ds = _make(data)
    assert isinstance(ds, paddle.io.Dataset)
    assert (len(ds), ds.num_samples, ds.labels) == (2, 2, ["cat", "dog"])
    assert ds.file_list == [[str(data / "images" / "a" / "0.png"), 0], [str(data / "images" / "b" / "1.png"), 1]]
    image, label = ds[0]
    assert image.shape == (3, 5, 6) and image.dtype == np.float32
    assert label == 0 and label.dtype == np.int64
    assert image[0].min() == 255 and image[1].max() == 0 and image[2].max() == 0  # RGB order: red first


def test_transforms_and_dataloader(data):
    ds = _make(data, transforms=Compose([Resize(8), Normalize()]))
    x, y = next(iter(paddle.io.DataLoader(ds, batch_size=2)))
    assert x.shape == [2, 3, 8, 8] and str(x.dtype) == "paddle.float32"
    assert y.numpy().tolist() == [0, 1]
    np.testing.assert_allclose(x.numpy()[0, 0], (1.0 - 0.485) / 0.229, rtol=1e-5)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data_dir not found or not a folder: .*nowhere"):
        ImageNet(str(tmp_path / "nowhere"), "train_list.txt", "labels.txt")


def test_missing_file_list(data):
    with pytest.raises(DataNotFoundError, match=r"file list not found: .*val_list\.txt"):
        ImageNet(str(data), str(data / "val_list.txt"), str(data / "labels.txt"))


def test_missing_label_list(data):
    with pytest.raises(DataNotFoundError, match=r"label list file not found: .*names\.txt"):
        ImageNet(str(data), str(data / "train_list.txt"), str(data / "names.txt"))


def test_list_paths_relative_to_data_dir(data, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    ds = ImageNet(str(data), "train_list.txt", "labels.txt")
    assert ds.file_list_path == os.path.join(str(data), "train_list.txt") and len(ds) == 2


def test_malformed_line(data):
    with pytest.raises(DataFormatError,
                       match=r"train_list\.txt:2: expected '<image path> <label id>'; got 'images/b/1\.png'"):
        _make(data, "images/a/0.png 0\nimages/b/1.png\n")


def test_label_not_an_integer(data):
    with pytest.raises(DataFormatError, match=r"train_list\.txt:1: label 'dog' is not an integer id; "
                                              r"expected 0\.\.1 \(num_classes 2 from labels\.txt\)") as err:
        _make(data, "images/a/0.png dog\n")
    assert err.value.line == 1 and err.value.path.endswith("train_list.txt")


@pytest.mark.parametrize("label", ["2", "-1", "12"])
def test_label_out_of_range(data, label):
    with pytest.raises(DataFormatError,
                       match=rf"train_list\.txt:2: label {label} is out of range; expected 0\.\.1 \(num_classes 2"):
        _make(data, f"images/a/0.png 0\nimages/b/1.png {label}\n")


def test_missing_image(data):
    with pytest.raises(DataNotFoundError, match=r"train_list\.txt:2: image file not found: .*nope\.png"):
        _make(data, "images/a/0.png 0\nimages/nope.png 1\n")


def test_blank_lines_skipped_and_logged(data, caplog):
    with caplog.at_level(logging.INFO, logger="paddleprune.datasets.imagenet"):
        ds = _make(data, "\nimages/a/0.png 0\n   \n\nimages/b/1.png 1\n\n")
    assert len(ds) == 2 and ds.skipped_blank_lines == 4
    assert "skipped 4 blank line(s) in train_list.txt" in caplog.text


def test_empty_list(data):
    with pytest.raises(DataFormatError, match=r"train_list\.txt: the list holds no samples"):
        _make(data, "\n\n")


def test_path_with_spaces_and_crlf(data):
    _png(data / "my images" / "x 1.png")
    ds = _make(data, "my images/x 1.png 1\r\nimages/a/0.png 0\r\n")
    assert ds.file_list[0] == [str(data / "my images" / "x 1.png"), 1]


def test_corrupt_image_raises_when_read(data):
    (data / "images" / "a" / "0.png").write_bytes(b"not a png at all")
    ds = _make(data)  # parsing does not decode
    with pytest.raises(DataFormatError, match=r"0\.png: cannot decode image \(corrupt or not an image file\)"):
        ds[0]
    (data / "images" / "a" / "0.png").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"0\.png: cannot decode image"):
        ds[0]


def test_read_image_missing_and_grey(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"image file not found: .*gone\.png"):
        read_image(str(tmp_path / "gone.png"))
    assert cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 3), 7, np.uint8))
    im = read_image(str(tmp_path / "g.png"))
    assert im.shape == (4, 3, 3) and im.dtype == np.uint8 and (im == 7).all()


def test_label_file_errors(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"labels\.txt: label list is empty"):
        read_labels(str(path))
    path.write_text("cat\n\ndog\n")
    with pytest.raises(DataFormatError, match=r"labels\.txt:2: blank line inside the label list"):
        read_labels(str(path))
    path.write_text("cat\ndog\ncat\n")
    with pytest.raises(DataFormatError, match=r"labels\.txt:3: duplicate class name 'cat' \(also on line 1\)"):
        read_labels(str(path))
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataFormatError, match=r"labels\.txt: not a UTF-8 text file"):
        read_labels(str(path))
    path.write_text("\ufeffcat\ndog\n\n", encoding="utf-8")  # BOM and trailing blank lines are fine
    assert read_labels(str(path)) == ["cat", "dog"]


def test_bad_transforms_argument(data):
    with pytest.raises(InvalidParameterError, match=r"ImageNet: 'transforms' must be callable"):
        _make(data, transforms=[Normalize()])


def test_paddlex_extra_arguments_ignored(data, caplog):
    with caplog.at_level(logging.DEBUG, logger="paddleprune.datasets.imagenet"):
        ds = _make(data, num_workers=4, buffer_size=8, parallel_method="thread", shuffle=True)
    assert ds.shuffle is True and len(ds) == 2
    assert "'num_workers'=4 is accepted for PaddleX compatibility and ignored" in caplog.text
