"""VOC detection reader: exact read-back, and every bad input names its list line and file."""
import logging
import os

import cv2
import numpy as np
import paddle
import pytest

from paddleprune.datasets import VOCDetection
from paddleprune.datasets.voc import parse_voc_xml
from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError


def _jpg(path, size=(40, 30), bgr=(0, 0, 255)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = np.zeros((size[1], size[0], 3), np.uint8)
    im[:] = bgr
    assert cv2.imwrite(str(path), im)


def _obj(name, box, difficult=None):
    diff = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><pose>Unspecified</pose>{diff}<bndbox>{coords}</bndbox></object>"


def _xml(path, objects, size=(40, 30)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    body = "".join(objects)
    path.write_text(f"<annotation><filename>x.jpg</filename><size><width>{size[0]}</width>"
                    f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")


@pytest.fixture
def data(tmp_path):
    """Three images: a (red, 40x30, 2 objects), b (green, 24x20, 1 object), c (blue, 40x30)."""
    _jpg(tmp_path / "JPEGImages" / "a.jpg", (40, 30), (0, 0, 255))
    _jpg(tmp_path / "JPEGImages" / "b.jpg", (24, 20), (0, 255, 0))
    _jpg(tmp_path / "JPEGImages" / "c.jpg", (40, 30), (255, 0, 0))
    _xml(tmp_path / "Annotations" / "a.xml", [_obj("dog", (1.5, 2, 20, 28), 1), _obj("cat", (0, 0, 40, 30))])
    _xml(tmp_path / "Annotations" / "b.xml", [_obj("cat", (3, 4, 10, 12), 0)], size=(24, 20))
    _xml(tmp_path / "Annotations" / "c.xml", [_obj("dog", (5, 5, 9, 9))])
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "train_list.txt").write_text("JPEGImages/a.jpg Annotations/a.xml\n"
                                             "JPEGImages/b.jpg Annotations/b.xml\n"
                                             "JPEGImages/c.jpg Annotations/c.xml\n")
    return tmp_path


def _grab_source(seen):
    """A transform that keeps the sample's mixup source in ``seen['source']``."""
    def transform(sample):
        seen["source"] = sample["mixup_source"]
        return sample
    return transform


def _make(root, list_text=None, **kwargs):
    if list_text is not None:
        (root / "train_list.txt").write_text(list_text)
    return VOCDetection(str(root), str(root / "train_list.txt"), str(root / "labels.txt"), **kwargs)


def test_reads_exact_boxes_classes_difficult(data):
    ds = _make(data)
    assert isinstance(ds, paddle.io.Dataset)
    assert (len(ds), ds.num_samples, ds.labels, ds.cname2cid) == (3, 3, ["cat", "dog"], {"cat": 0, "dog": 1})
    assert ds.file_list[1] == [str(data / "JPEGImages" / "b.jpg"), str(data / "Annotations" / "b.xml")]
    s = ds.raw_sample(0)
    assert sorted(s) == ["difficult", "gt_bbox", "gt_class", "gt_score", "im_id", "im_path", "image",
                         "origin_shape"]
    assert s["image"].shape == (30, 40, 3) and s["image"].dtype == np.uint8
    assert s["image"][..., 0].min() > 200 and s["image"][..., 2].max() < 50  # RGB order: red first
    assert s["gt_bbox"].dtype == np.float32
    np.testing.assert_array_equal(s["gt_bbox"], [[1.5, 2, 20, 28], [0, 0, 40, 30]])
    assert s["gt_class"].dtype == np.int32 and s["gt_class"].tolist() == [1, 0]
    assert s["difficult"].dtype == np.int32 and s["difficult"].tolist() == [1, 0]  # missing tag -> 0
    assert s["gt_score"].dtype == np.float32 and s["gt_score"].tolist() == [1.0, 1.0]
    assert s["origin_shape"].dtype == np.int32 and s["origin_shape"].tolist() == [30, 40]
    assert s["im_id"] == 0 and s["im_path"] == str(data / "JPEGImages" / "a.jpg")
    b = ds[-2]
    assert b["im_id"] == 1 and b["origin_shape"].tolist() == [20, 24] and b["gt_bbox"].tolist() == [[3, 4, 10, 12]]
    assert "mixup_source" not in b
    with pytest.raises(IndexError, match="index 3 out of range for 3 samples"):
        ds[3]


def test_raw_sample_returns_fresh_arrays(data):
    ds = _make(data)
    ds.raw_sample(0)["gt_bbox"][:] = -1
    assert ds.raw_sample(0)["gt_bbox"][0, 0] == 1.5


def test_transforms_see_mixup_source_and_it_is_removed(data):
    seen = {}

    def transform(sample):
        seen.update(sample)
        sample["image"] = sample["image"].astype(np.float32) / 255.0
        return sample

    ds = _make(data, transforms=transform)
    out = ds[2]
    assert "mixup_source" in seen and callable(seen["mixup_source"])
    assert "mixup_source" not in out and out["image"].dtype == np.float32 and out["im_id"] == 2


def test_mixup_source_returns_another_raw_sample(data):
    seen = {}
    ds = _make(data, transforms=_grab_source(seen))
    ds[0]
    source = seen["source"]
    rng = np.random.default_rng(0)
    drawn = {source(rng)["im_id"] for _ in range(30)}
    assert drawn == {1, 2}  # never the image itself, both others reachable
    other = source(np.random.default_rng(5))
    assert "mixup_source" not in other
    ref = ds.raw_sample(other["im_id"])
    assert sorted(other) == sorted(ref) and other["im_path"] == ref["im_path"]
    for key in ("image", "gt_bbox", "gt_class", "gt_score", "difficult", "origin_shape"):
        np.testing.assert_array_equal(other[key], ref[key])
    assert source(np.random.default_rng(5))["im_id"] == other["im_id"]  # drawn with the given rng


def test_single_image_mixup_source_returns_itself(data):
    seen = {}
    ds = _make(data, "JPEGImages/b.jpg Annotations/b.xml\n",
               transforms=_grab_source(seen))
    ds[0]
    assert seen["source"](np.random.default_rng(0))["im_id"] == 0


def test_paths_with_spaces_blank_lines_and_relative_lists(data, monkeypatch, tmp_path_factory):
    _jpg(data / "my images" / "x 1.jpg", (40, 30))
    ds = _make(data, "\nmy images/x 1.jpg Annotations/c.xml\r\n   \nJPEGImages/a.jpg Annotations/a.xml\n\n")
    assert ds.file_list[0] == [str(data / "my images" / "x 1.jpg"), str(data / "Annotations" / "c.xml")]
    assert ds.raw_sample(0)["image"].shape == (30, 40, 3)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    ds = VOCDetection(str(data), "train_list.txt", "labels.txt", num_workers=4, buffer_size=8,
                      parallel_method="thread")
    assert ds.file_list_path == os.path.join(str(data), "train_list.txt") and len(ds) == 2


def test_missing_inputs(data):
    with pytest.raises(DataNotFoundError, match=r"data_dir not found or not a folder: .*nowhere"):
        VOCDetection(str(data / "nowhere"), "train_list.txt", "labels.txt")
    with pytest.raises(DataNotFoundError, match=r"file list not found: .*val_list\.txt"):
        VOCDetection(str(data), str(data / "val_list.txt"), "labels.txt")
    with pytest.raises(DataNotFoundError, match=r"label list file not found: .*names\.txt"):
        VOCDetection(str(data), "train_list.txt", str(data / "names.txt"))
    with pytest.raises(DataNotFoundError, match=r"train_list\.txt:2: annotation file not found: .*nope\.xml"):
        _make(data, "JPEGImages/a.jpg Annotations/a.xml\nJPEGImages/b.jpg Annotations/nope.xml\n")
    with pytest.raises(DataNotFoundError, match=r"train_list\.txt:1: image file not found: .*gone\.jpg"):
        _make(data, "JPEGImages/gone.jpg Annotations/a.xml\n")


def test_bad_list_lines_and_parameters(data):
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: expected '<image path> <xml path>'; "
                                              r"got 'JPEGImages/b\.jpg'") as err:
        _make(data, "JPEGImages/a.jpg Annotations/a.xml\nJPEGImages/b.jpg\n")
    assert err.value.line == 2 and err.value.path.endswith("train_list.txt")
    with pytest.raises(DataFormatError, match=r"train_list\.txt: the list holds no samples"):
        _make(data, "\n \n")
    with pytest.raises(InvalidParameterError, match=r"'transforms' must be callable .* got 3"):
        _make(data, transforms=3)


_BAD = {
    "malformed": ("<annotation><size>", r"malformed XML \(.*line 1"),
    "doctype": ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotation/>',
                r"XML containing <!DOCTYPE is refused \(entity expansion is unsafe\)"),
    "entity": ('<annotation><!-- <!ENTITY x "y"> --></annotation>', r"XML containing <!ENTITY is refused"),
    "no size": ("<annotation><object/></annotation>", r"missing <size>"),
    "no width": ("<annotation><size><height>30</height></size></annotation>", r"missing <width> in <size>"),
    "bad width": ("<annotation><size><width>4.5</width><height>30</height></size></annotation>",
                  r"<size>/<width> must be a positive integer; got '4\.5'"),
    "no name": ("<annotation><size><width>40</width><height>30</height></size><object><bndbox/></object>"
                "</annotation>", r"missing <name> in object 1"),
    "no bndbox": ("<annotation><size><width>40</width><height>30</height></size><object><name>cat</name>"
                  "</object></annotation>", r"missing <bndbox> in object 1 \('cat'\)"),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_bad_xml_documents(data, case):
    text, message = _BAD[case]
    (data / "Annotations" / "b.xml").write_text(text)
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: .*Annotations.b\.xml: " + message) as err:
        _make(data)
    assert err.value.line == 2


def test_doctype_refused_in_any_encoding(tmp_path):
    path = tmp_path / "u16.xml"  # the byte check cannot see it; the parser hook must
    path.write_bytes('<!DOCTYPE a [<!ENTITY x "y">]><annotation>&x;</annotation>'.encode("utf-16"))
    with pytest.raises(DataFormatError, match=r"u16\.xml: XML with a DOCTYPE declaration is refused"):
        parse_voc_xml(str(path), {"cat": 0})


_CAT = r"object 1 \('cat'\): "


@pytest.mark.parametrize("obj, message", [
    (_obj("cat", ("abc", 2, 10, 10)), r"<xmin> of object 1 \('cat'\) is not a number: 'abc'"),
    (_obj("cat", (1, 2, "nan", 10)), r"<xmax> of object 1 \('cat'\) is not finite: 'nan'"),
    ("<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>5</ymax></bndbox></object>",
     r"missing <xmax> in object 1 \('cat'\)"),
    (_obj("cat", (-1, 2, 10, 10)), _CAT + r"box \(xmin=-1, ymin=2, xmax=10, ymax=10\) is outside the 24x20 image"),
    (_obj("cat", (1, -0.5, 10, 10)), _CAT + r"box \(xmin=1, ymin=-0\.5, .*\) is outside the 24x20 image"),
    (_obj("cat", (1, 2, 24.5, 10)), _CAT + r"box \(.*xmax=24\.5, .*\) is outside the 24x20 image; "
                                     r"expected 0 <= xmin < xmax <= 24"),
    (_obj("cat", (1, 2, 10, 21)), _CAT + r"box \(.*ymax=21\) is outside the 24x20 image; .* 0 <= ymin < ymax <= 20"),
    (_obj("cat", (5, 2, 5, 10)), _CAT + r"box \(xmin=5, ymin=2, xmax=5, ymax=10\) has no area"),
    (_obj("cat", (1, 9, 5, 3)), _CAT + r"box \(xmin=1, ymin=9, xmax=5, ymax=3\) has no area; "
                                  r"expected xmin < xmax and ymin < ymax"),
    (_obj("cat", (1, 2, 5, 6), 2), r"<difficult> of object 1 \('cat'\) must be 0 or 1; got '2'"),
    (_obj("cat", (1, 2, 5, 6)) + _obj("bird", (1, 2, 5, 6)),
     r"object 2 \('bird'\): class name 'bird' is not in labels\.txt; known names: \['cat', 'dog'\]"),
], ids=["text", "nan", "no xmax", "x1<0", "y1<0", "x2>w", "y2>h", "zero width", "negative height", "difficult 2",
        "unknown class"])
def test_bad_objects(data, obj, message):
    _xml(data / "Annotations" / "b.xml", [obj], size=(24, 20))
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: .*Annotations.b\.xml: " + message):
        _make(data)


def test_xml_size_must_match_image(data):
    _xml(data / "Annotations" / "b.xml", [_obj("cat", (1, 2, 5, 6))], size=(20, 24))  # swapped
    with pytest.raises(DataFormatError, match=r"train_list\.txt:2: .*b\.xml: <size> says 20x24 \(width x height\) "
                                              r"but the image .*b\.jpg is 24x20"):
        _make(data)


def test_undecodable_image(data):
    (data / "JPEGImages" / "c.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=r"train_list\.txt:3: .*c\.jpg: cannot decode image"):
        _make(data)


def test_image_without_objects_is_skipped_with_warning(data, caplog):
    _xml(data / "Annotations" / "b.xml", [], size=(24, 20))
    with caplog.at_level(logging.WARNING, logger="paddleprune.datasets.voc"):
        with pytest.warns(UserWarning, match=r"Annotations.b\.xml holds no object; skipping image .*b\.jpg "
                                             r"\(.*train_list\.txt:2\)"):
            ds = _make(data)
    assert "b.xml holds no object" in caplog.text
    assert len(ds) == 2 and ds.skipped_files == [str(data / "JPEGImages" / "b.jpg")]
    assert [s["im_path"] for s in (ds[0], ds[1])] == [str(data / "JPEGImages" / n) for n in ("a.jpg", "c.jpg")]
    assert ds[1]["im_id"] == 1


def test_every_image_skipped_raises(data):
    _xml(data / "Annotations" / "b.xml", [], size=(24, 20))
    with pytest.warns(UserWarning, match="holds no object"):
        with pytest.raises(DataFormatError, match=r"train_list\.txt: every image of the list was skipped "
                                                  r"\(1 annotation\(s\) without any object\)"):
            _make(data, "JPEGImages/b.jpg Annotations/b.xml\n")
