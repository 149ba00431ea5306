"""Embedded demo detection data: deterministic, versioned, readable, with tight boxes at several scales."""
import hashlib
import itertools
import json
import os
import shutil

import numpy as np
import pytest

from paddleprune.datasets import VOCDetection, demo
from paddleprune.datasets import cache as dcache
from paddleprune.datasets import demo_det


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def root():
    return demo.detection()  # cache root from PADDLEPRUNE_CACHE (tests/conftest.py)


@pytest.fixture(scope="module")
def sets(root):
    return {split: VOCDetection(root, f"{split}_list.txt", "labels.txt") for split in ("train", "val")}


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_public_api():
    assert demo.detection is demo_det.detection and "detection" in demo.__all__
    assert demo_det.DET_CLASS_NAMES == ("zero", "one", "two", "three", "four")


def test_layout_and_counts(root):
    assert os.path.basename(root) == "demo_det"
    assert _lines(os.path.join(root, "labels.txt")) == list(demo_det.DET_CLASS_NAMES)
    train = [line.split(" ") for line in _lines(os.path.join(root, "train_list.txt"))]
    val = [line.split(" ") for line in _lines(os.path.join(root, "val_list.txt"))]
    assert (len(train), len(val)) == (800, 200)
    assert len({im for im, _ in train + val}) == 1000  # disjoint
    for im, xml in train + val:
        stem = im[len("JPEGImages/"):-len(".jpg")]
        assert (im, xml) == (f"JPEGImages/{stem}.jpg", f"Annotations/{stem}.xml")
    for sub in ("JPEGImages", "Annotations"):
        assert len(os.listdir(os.path.join(root, sub))) == 1000, sub
    marker = dcache.read_marker(root)
    assert marker["version"] == demo_det.DET_BUILDER_VERSION
    assert marker["config_hash"] == dcache.config_hash(demo_det._DET_CONFIG)
    counts = tuple(marker[key] for key in ("num_images", "num_train", "num_val", "num_classes"))
    assert counts == (1000, 800, 200, 5)


def test_reads_back_with_boxes_inside_images(root, sets):
    marker = dcache.read_marker(root)
    n_objects = n_difficult = 0
    sides = []
    for split, ds in sets.items():
        assert ds.labels == list(demo_det.DET_CLASS_NAMES) and not ds.skipped_files
        for i in range(len(ds)):
            rec = ds._records[i]
            box = rec["gt_bbox"]
            assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all(), rec["xml_path"]
            assert (box[:, 2] <= rec["width"]).all() and (box[:, 3] <= rec["height"]).all(), rec["xml_path"]
            assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] > box[:, 1]).all(), rec["xml_path"]
            assert (box == np.round(box)).all()  # integer pixel coordinates
            assert 128 <= rec["width"] <= 192 and 128 <= rec["height"] <= 192
            n_objects += len(box)
            n_difficult += int(rec["difficult"].sum())
            sides.append(box[:, 2:] - box[:, :2])
        for i in (0, len(ds) - 1):  # the decoded image agrees with the record
            s = ds.raw_sample(i)
            assert s["origin_shape"].tolist() == [ds._records[i]["height"], ds._records[i]["width"]]
            height, width = s["origin_shape"]
            assert (s["gt_bbox"][:, 2] <= width).all() and (s["gt_bbox"][:, 3] <= height).all()
            assert s["image"].std() > 5  # not blank
    sides = np.concatenate(sides)
    assert (n_objects, n_difficult) == (marker["num_objects"], marker["num_difficult"])
    assert (sides.min(), sides.max()) == (marker["box_side_min"], marker["box_side_max"])


def test_objects_per_image_classes_and_scales(sets):
    for split, ds in sets.items():
        per_image = [len(rec["gt_class"]) for rec in ds._records]
        assert set(per_image) == {1, 2, 3, 4}, (split, sorted(set(per_image)))
        assert 2.0 < np.mean(per_image) < 3.0, (split, np.mean(per_image))
        classes = np.bincount(np.concatenate([rec["gt_class"] for rec in ds._records]), minlength=5)
        assert len(classes) == 5 and classes.min() > 0.15 * classes.sum(), (split, classes)
        boxes = np.concatenate([rec["gt_bbox"] for rec in ds._records])
        height = boxes[:, 3] - boxes[:, 1]
        longer = np.maximum(boxes[:, 2] - boxes[:, 0], height)
        scales = (f"{split}: box height {height.min():g}..{height.max():g}, "
                  f"longer side {longer.min():g}..{longer.max():g}")
        assert height.min() <= 16 and height.max() >= 55, scales
        # several scales, each well populated: small (< 24 px), medium, large (>= 40 px)
        counts = np.histogram(longer, bins=[0, 24, 40, 1000])[0]
        assert (counts > 0.15 * len(longer)).all(), (scales, counts)


def test_difficult_only_on_small_objects(sets):
    for split, ds in sets.items():
        boxes = np.concatenate([rec["gt_bbox"] for rec in ds._records])
        difficult = np.concatenate([rec["difficult"] for rec in ds._records]).astype(bool)
        small = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < 18
        assert not (difficult & ~small).any()
        assert difficult.sum() >= 2, (split, int(difficult.sum()), int(small.sum()))
        assert abs(difficult.sum() / small.sum() - 0.05) < 0.015, (split, int(difficult.sum()), int(small.sum()))


def test_overlapping_pairs_stay_separable(sets):
    for split, ds in sets.items():
        ious = [_iou(a, b) for rec in ds._records for a, b in itertools.combinations(rec["gt_bbox"].tolist(), 2)]
        ious = np.asarray(ious)
        overlapping = int((ious > 0).sum())
        assert overlapping >= 0.05 * len(ious), (split, overlapping, len(ious))
        assert ious.max() <= 0.3 + 1e-6, (split, ious.max())


def test_boxes_are_tight_around_the_digit(sets):
    """The first/last row and column inside a box hold digit pixels; the ring 1 px outside does not.

    Boxes shifted by one pixel either way pass this on about 10% of the digits, exact ones on ~90%.
    """
    ds = sets["val"]
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    wins = total = 0
    for i in range(len(ds)):
        s = ds.raw_sample(i)
        luma = s["image"].astype(np.float32) @ weights
        h, w = luma.shape
        boxes = s["gt_bbox"].astype(int)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            if any(o[0] < x2 + 3 and o[2] > x1 - 3 and o[1] < y2 + 3 and o[3] > y1 - 3
                   for j, o in enumerate(boxes) if j != k):
                continue  # another digit nearby
            inside = min(luma[y1:y2, x1].max(), luma[y1:y2, x2 - 1].max(),
                         luma[y1, x1:x2].max(), luma[y2 - 1, x1:x2].max())
            outside = [luma[y1:y2, x1 - 1].max() if x1 >= 1 else -1, luma[y1:y2, x2].max() if x2 < w else -1,
                       luma[y1 - 1, x1:x2].max() if y1 >= 1 else -1, luma[y2, x1:x2].max() if y2 < h else -1]
            wins += inside > max(outside)
            total += 1
    assert total > 200 and wins / total > 0.75, (wins, total)


def test_tight_box_helper():
    alpha = np.zeros((10, 12), np.float32)
    alpha[2:7, 3:9] = 0.31
    alpha[1, 0:12] = 0.3  # at the threshold: not part of the digit
    assert demo_det._tight_box(alpha, 0.3) == (3, 2, 9, 7)
    assert demo_det._tight_box(np.zeros((4, 4), np.float32), 0.3) is None


def test_cached_copy_is_reused(root):
    before = os.stat(os.path.join(root, dcache.MARKER)).st_mtime_ns
    assert demo.detection() == root
    assert os.stat(os.path.join(root, dcache.MARKER)).st_mtime_ns == before


def test_forced_rebuild_is_byte_identical(root, tmp_path):
    copy = tmp_path / "demo_det"
    shutil.copytree(root, copy)  # rebuild a private copy, never the shared one other tests read
    (copy / "stray.txt").write_text("left over")
    assert demo.detection(cache_dir=tmp_path, force=True) == str(copy)
    assert not (copy / "stray.txt").exists()  # really rebuilt
    assert sorted(os.listdir(tmp_path)) == ["demo_det"]  # no temp or trash folders left
    with open(copy / dcache.MARKER, encoding="utf-8") as f:
        assert json.load(f) == dcache.read_marker(root)
    for rel in ["train_list.txt", "val_list.txt", "labels.txt"] + [
            f"{sub}/{i:05d}.{ext}" for i in (0, 1, 417, 799, 800, 999) for sub, ext in
            (("JPEGImages", "jpg"), ("Annotations", "xml"))]:
        assert _sha(copy / rel) == _sha(os.path.join(root, rel)), rel
