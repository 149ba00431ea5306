"""Segmentation list reader: exact read-back, and every bad input names its list line and file."""
import os
import time

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

from paddleprune.datasets import SegDataset
from paddleprune.datasets.seg import read_mask
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError


def _png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _image(path, size=(40, 30), bgr=(0, 0, 255)):
    im = np.zeros((size[1], size[0], 3), np.uint8)
    im[:] = bgr
    _png(path, im)


def _mask(size=(40, 30), value=0):
    return np.full((size[1], size[0]), value, np.uint8)


def _palette_png(path, ids):
    im = Image.fromarray(ids, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [200, 200, 200] * 253)
    im.save(str(path))


@pytest.fixture
def data(tmp_path):
    """a (red, 40x30, space in the image name), b (green 24x20, palette mask), c (blue 40x30)."""
    _image(tmp_path / "JPEGImages" / "a b.png", (40, 30), (0, 0, 255))
    _image(tmp_path / "JPEGImages" / "b.png", (24, 20), (0, 255, 0))
    _image(tmp_path / "JPEGImages" / "c.png", (40, 30), (255, 0, 0))
    a = _mask((40, 30))
    a[5:10, 2:20] = 1
    a[20:, 30:] = 2
    a[0, 0] = 255
    _png(tmp_path / "Annotations" / "a.png", a)
    b = _mask((24, 20))
    b[3:7, 4:9] = 2
    _palette_png(tmp_path / "Annotations" / "b.png", b)
    _png(tmp_path / "Annotations" / "c.png", _mask((40, 30), 1))
    (tmp_path / "labels.txt").write_text("background\ncat\ndog\n")
    (tmp_path / "train_list.txt").write_text("JPEGImages/a b.png Annotations/a.png\n"
                                             "JPEGImages/b.png Annotations/b.png\n"
                                             "\n"
                                             "JPEGImages/c.png Annotations/c.png\n")
    return tmp_path


def _make(root, list_text=None, label_list="labels.txt", **kwargs):
    if list_text is not None:
        (root / "train_list.txt").write_text(list_text)
    labels = None if label_list is None else str(root / label_list)
    return SegDataset(str(root), str(root / "train_list.txt"), labels, **kwargs)


def _raises(root, line_text, exc, lineno, *needles, **kwargs):
    """Build with ``line_text`` as line ``lineno`` after good lines; check the message."""
    good = "JPEGImages/c.png Annotations/c.png\n" * (lineno - 1)
    with pytest.raises(exc) as info:
        _make(root, good + line_text + "\n", **kwargs)
    msg = str(info.value)
    assert f"train_list.txt:{lineno}" in msg, msg
    for needle in needles:
        assert str(needle) in msg, (needle, msg)
    return msg


def test_reads_exact_images_and_masks(data):
    ds = _make(data)
    assert isinstance(ds, paddle.io.Dataset)
    assert (len(ds), ds.num_samples, ds.num_classes, ds.labels) == (3, 3, 3, ["background", "cat", "dog"])
    assert ds.label_list_path == str(data / "labels.txt") and ds.shuffle is False and ds.transforms is None
    assert ds.file_list[0] == [str(data / "JPEGImages" / "a b.png"), str(data / "Annotations" / "a.png")]
    s = ds[0]
    assert sorted(s) == ["im_id", "im_path", "image", "label", "label_path", "origin_shape"]
    assert s["image"].shape == (30, 40, 3) and s["image"].dtype == np.uint8
    assert s["image"][..., 0].min() == 255 and s["image"][..., 2].max() == 0  # RGB order: red first
    assert s["label"].shape == (30, 40) and s["label"].dtype == np.uint8
    expected = _mask((40, 30))
    expected[5:10, 2:20] = 1
    expected[20:, 30:] = 2
    expected[0, 0] = 255
    np.testing.assert_array_equal(s["label"], expected)
    assert s["origin_shape"].dtype == np.int32 and s["origin_shape"].tolist() == [30, 40]
    assert (s["im_id"], s["im_path"], s["label_path"]) == (0, *ds.file_list[0])
    last = ds[-1]
    assert last["im_id"] == 2 and (last["label"] == 1).all() and last["image"][..., 2].min() == 255
    with pytest.raises(IndexError, match="out of range for 3 samples"):
        ds[3]
    assert ds._class_pixels.tolist() == [30 * 40 - 1 - 90 - 100 + 24 * 20 - 20, 90 + 1200, 100 + 20]


def test_palette_mask_gives_indices_not_colours(data):
    path = str(data / "Annotations" / "b.png")
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).ndim == 3  # what OpenCV would have given: colours
    s = _make(data)[1]
    assert s["label"].dtype == np.uint8 and s["label"].shape == (20, 24)
    assert s["label"][3:7, 4:9].tolist() == [[2] * 5] * 4 and s["label"].sum() == 2 * 20
    assert s["origin_shape"].tolist() == [20, 24]


def test_other_single_channel_masks(tmp_path):
    arr = np.array([[0, 1], [2, 255]], np.uint16)
    Image.fromarray(arr.astype(np.uint16)).save(str(tmp_path / "m16.png"))  # 16-bit grey
    assert read_mask(str(tmp_path / "m16.png")).tolist() == arr.tolist()
    Image.fromarray(np.array([[True, False]])).save(str(tmp_path / "m1.png"))  # 1-bit
    m1 = read_mask(str(tmp_path / "m1.png"))
    assert m1.dtype == np.uint8 and m1.tolist() == [[1, 0]]


def test_label_list_optional_infers_num_classes(data):
    ds = _make(data, label_list=None)
    assert ds.labels is None and ds.label_list_path is None
    assert ds.num_classes == 3  # largest id 2 (255 is ignore, not a class)
    _png(data / "Annotations" / "c.png", _mask((40, 30), 6))
    assert _make(data, label_list=None).num_classes == 7
    _png(data / "Annotations" / "only_ignore.png", _mask((40, 30), 255))
    with pytest.raises(DataFormatError, match="only the ignore value 255.*pass label_list"):
        _make(data, "JPEGImages/c.png Annotations/only_ignore.png\n", label_list=None)


def test_shuffle_transforms_and_raw_sample(data):
    seen = []

    def transform(sample):
        seen.append(sorted(sample))
        return {"image": sample["image"][::2, ::2], "label": sample["label"][::2, ::2], "tag": sample["im_id"]}

    ds = _make(data, transforms=transform, shuffle=True, num_workers=4, buffer_size=10, parallel_method="thread")
    assert ds.shuffle is True
    out = ds[0]
    assert seen == [["im_id", "im_path", "image", "label", "label_path", "origin_shape"]]
    assert out["image"].shape == (15, 20, 3) and out["label"].shape == (15, 20) and out["tag"] == 0
    raw = ds.raw_sample(0)
    assert raw["image"].shape == (30, 40, 3) and len(seen) == 1  # raw_sample skips transforms
    raw["label"][:] = 9
    assert ds.raw_sample(0)["label"].max() == 255  # fresh arrays every call
    with pytest.raises(InvalidParameterError, match="transforms"):
        _make(data, transforms="not callable")


def test_relative_list_paths_are_looked_up_in_data_dir(data, monkeypatch):
    monkeypatch.chdir(data.parent)
    ds = SegDataset(str(data), "train_list.txt", "labels.txt")
    assert ds.file_list_path == os.path.join(str(data), "train_list.txt") and len(ds) == 3


def test_missing_files(data):
    _raises(data, "JPEGImages/nope.png Annotations/a.png", DataNotFoundError, 2, "image file not found",
            data / "JPEGImages" / "nope.png")
    _raises(data, "JPEGImages/c.png Annotations/nope.png", DataNotFoundError, 3, "mask file not found",
            data / "Annotations" / "nope.png")
    with pytest.raises(DataNotFoundError, match="file list not found"):
        SegDataset(str(data), str(data / "missing.txt"))
    with pytest.raises(DataNotFoundError, match="label list file not found"):
        SegDataset(str(data), str(data / "train_list.txt"), str(data / "missing.txt"))
    with pytest.raises(DataNotFoundError, match="data_dir not found"):
        SegDataset(str(data / "nowhere"), "train_list.txt")


def test_undecodable_files(data):
    (data / "JPEGImages" / "junk.png").write_bytes(b"not an image at all")
    _raises(data, "JPEGImages/junk.png Annotations/c.png", DataFormatError, 2, "cannot decode image",
            data / "JPEGImages" / "junk.png")
    (data / "Annotations" / "junk.png").write_bytes(b"")
    _raises(data, "JPEGImages/c.png Annotations/junk.png", DataFormatError, 1, "cannot decode mask",
            data / "Annotations" / "junk.png")
    blob = (data / "Annotations" / "c.png").read_bytes()
    (data / "Annotations" / "cut.png").write_bytes(blob[:len(blob) // 2])  # truncated PNG
    _raises(data, "JPEGImages/c.png Annotations/cut.png", DataFormatError, 4, "cannot decode mask",
            data / "Annotations" / "cut.png")


def test_mask_size_differs_from_image(data):
    msg = _raises(data, "JPEGImages/b.png Annotations/c.png", DataFormatError, 3, data / "Annotations" / "c.png",
                  data / "JPEGImages" / "b.png")
    assert "mask is 40x30 (width x height)" in msg and "is 24x20" in msg


def test_value_not_a_class_id(data):
    bad = _mask((40, 30))
    bad[7, 11] = 3
    bad[8, 12] = 255
    _png(data / "Annotations" / "bad.png", bad)
    msg = _raises(data, "JPEGImages/c.png Annotations/bad.png", DataFormatError, 2,
                  data / "Annotations" / "bad.png", "mask value 3", ">= num_classes 3")
    assert "row 7, column 11" in msg and "255 = ignore" in msg
    ok = _mask((40, 30), 255)
    ok[0, :2] = (0, 2)  # 255 = ignore is always allowed
    _png(data / "Annotations" / "ok.png", ok)
    assert _make(data, "JPEGImages/c.png Annotations/ok.png\n").num_classes == 3
    Image.fromarray(np.full((30, 40), 300, np.uint16)).save(str(data / "Annotations" / "wide.png"))
    _raises(data, "JPEGImages/c.png Annotations/wide.png", DataFormatError, 1, "mask value 300",
            "0..254", label_list=None)


def test_colour_mask_is_refused(data):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 2] = 128
    _png(data / "Annotations" / "rgb.png", rgb)
    msg = _raises(data, "JPEGImages/c.png Annotations/rgb.png", DataFormatError, 2, data / "Annotations" / "rgb.png",
                  "expected a single-channel PNG of class ids")
    assert "3 channels" in msg and "colour-coded" in msg
    _png(data / "Annotations" / "grey3.png", np.ones((30, 40, 3), np.uint8))
    _raises(data, "JPEGImages/c.png Annotations/grey3.png", DataFormatError, 1, "three channels are equal")
    Image.fromarray(np.zeros((30, 40), np.float32)).save(str(data / "Annotations" / "float.tif"))
    _raises(data, "JPEGImages/c.png Annotations/float.tif", DataFormatError, 1, "PIL mode 'F'",
            "expected a single-channel PNG of class ids")


def test_malformed_and_empty_lists(data):
    _raises(data, "JPEGImages/c.png", DataFormatError, 2, "expected '<image path> <mask path>'")
    with pytest.raises(DataFormatError, match="holds no samples"):
        _make(data, "\n\n")
    (data / "many.txt").write_text("".join(f"c{i}\n" for i in range(256)))
    with pytest.raises(DataFormatError, match="at most 255 classes"):
        _make(data, label_list="many.txt")


def test_every_line_is_checked_eagerly(tmp_path):
    """1,000 small pairs are checked at construction in well under 3 s; a bad last mask is found."""
    n = 1000
    _image(tmp_path / "im.png", (64, 48), (10, 20, 30))
    img_bytes = (tmp_path / "im.png").read_bytes()
    mask = _mask((64, 48))
    mask[10:20, 10:30] = 1
    _png(tmp_path / "m.png", mask)
    mask_bytes = (tmp_path / "m.png").read_bytes()
    os.makedirs(tmp_path / "JPEGImages")
    os.makedirs(tmp_path / "Annotations")
    for i in range(n):
        (tmp_path / "JPEGImages" / f"{i}.png").write_bytes(img_bytes)
        (tmp_path / "Annotations" / f"{i}.png").write_bytes(mask_bytes)
    (tmp_path / "labels.txt").write_text("background\nthing\n")
    text = "".join(f"JPEGImages/{i}.png Annotations/{i}.png\n" for i in range(n))
    start = time.perf_counter()
    ds = _make(tmp_path, text)
    elapsed = time.perf_counter() - start
    assert len(ds) == n and ds._class_pixels.tolist() == [n * (64 * 48 - 200), n * 200]
    assert elapsed < 3.0, f"checking {n} pairs took {elapsed:.2f} s"
    bad = mask.copy()
    bad[0, 0] = 2
    _png(tmp_path / "Annotations" / f"{n - 1}.png", bad)
    with pytest.raises(DataFormatError, match=f"train_list.txt:{n}: .*{n - 1}.png: mask value 2"):
        _make(tmp_path)
