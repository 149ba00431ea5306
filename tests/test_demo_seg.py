"""Embedded demo segmentation data: deterministic, versioned, readable, exact masks at several scales."""
import hashlib
import os
import time

import cv2
import numpy as np
import pytest

from paddleprune.datasets import SegDataset, demo
from paddleprune.datasets import cache as dcache
from paddleprune.datasets import demo_seg

K = len(demo_seg.SEG_CLASS_NAMES) - 1  # object classes


def _digest(folder):
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return demo.segmentation(cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def sets(root):
    return {split: SegDataset(root, f"{split}_list.txt", "labels.txt") for split in ("train", "val")}


def test_public_api():
    assert demo.segmentation is demo_seg.segmentation and "segmentation" in demo.__all__
    assert demo_seg.SEG_CLASS_NAMES == ("background", "disc", "square", "triangle")


def test_layout_and_counts(root):
    assert os.path.basename(root) == "demo_seg"
    assert _lines(os.path.join(root, "labels.txt")) == list(demo_seg.SEG_CLASS_NAMES)
    train = [line.split(" ") for line in _lines(os.path.join(root, "train_list.txt"))]
    val = [line.split(" ") for line in _lines(os.path.join(root, "val_list.txt"))]
    assert (len(train), len(val)) == (600, 150)
    assert len({im for im, _ in train + val}) == 750  # disjoint
    for im, mask in train + val:
        stem = im[len("JPEGImages/"):-len(".jpg")]
        assert (im, mask) == (f"JPEGImages/{stem}.jpg", f"Annotations/{stem}.png")
    for sub in ("JPEGImages", "Annotations"):
        assert len(os.listdir(os.path.join(root, sub))) == 750, sub
    marker = dcache.read_marker(root)
    assert marker["version"] == demo_seg.SEG_BUILDER_VERSION
    assert marker["config_hash"] == dcache.config_hash(demo_seg._SEG_CONFIG)
    counts = tuple(marker[key] for key in ("num_images", "num_train", "num_val", "num_classes"))
    assert counts == (750, 600, 150, K + 1)
    assert marker["objects_per_image"] == [1, 4] and 2.5 * 750 < marker["num_objects"] < 3.3 * 750
    assert 10 <= marker["object_side_min"] <= 14 and 72 <= marker["object_side_max"] <= 80


def test_masks_hold_class_ids_and_every_class_is_present(root, sets):
    marker = dcache.read_marker(root)
    total = np.zeros(K + 1, np.int64)
    for split, ds in sets.items():
        assert ds.num_classes == K + 1 and ds.labels == list(demo_seg.SEG_CLASS_NAMES)
        frac = ds._class_pixels / ds._class_pixels.sum()
        assert 0.74 < frac[0] < 0.86, (split, frac)  # objects are ~20% of the pixels
        assert (frac[1:] > 0.04).all(), (split, frac)  # every object class well represented
        total += ds._class_pixels
        for i in (0, len(ds) // 2, len(ds) - 1):
            s = ds[i]
            assert set(np.unique(s["label"]).tolist()) <= set(range(K + 1))  # no 255 either
            h, w = s["origin_shape"].tolist()
            assert s["label"].shape == (h, w) and s["image"].shape == (h, w, 3)
            assert 128 <= h <= 160 and 128 <= w <= 160 and s["image"].std() > 5
    np.testing.assert_allclose(total / total.sum(), marker["class_pixel_fraction"], atol=1e-4)


def _components(label):
    """``(class id, x, y, w, h, component mask)`` of every connected object region."""
    out = []
    for cid in range(1, K + 1):
        n, comp, stats, _ = cv2.connectedComponentsWithStats((label == cid).astype(np.uint8), connectivity=8)
        for k in range(1, n):
            x, y, w, h, _area = stats[k]
            out.append((cid, x, y, w, h, comp == k))
    return out


def test_object_sizes_overlap_and_counts(sets):
    ds = sets["val"]
    sides, touching, classes_per_image = [], 0, []
    for i in range(len(ds)):
        label = ds.raw_sample(i)["label"]
        comps = _components(label)
        sides += [max(w, h) for cid, x, y, w, h, _ in comps]
        grown = cv2.dilate((label > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
        # two different object classes 8-adjacent: a later object pasted over an earlier one
        shifted = [np.roll(label, s, axis=a) for a in (0, 1) for s in (1, -1)]
        touching += any(((label > 0) & (o > 0) & (o != label)).any() for o in shifted)
        classes_per_image.append(len(set(np.unique(label[grown > 0]).tolist()) - {0}))
    sides = np.asarray(sides)
    assert sides.min() <= 14 and sides.max() >= 70, (sides.min(), sides.max())
    counts = np.histogram(sides, bins=[0, 24, 48, 1000])[0] / len(sides)
    assert counts[0] > 0.05 and (counts[1:] > 0.2).all(), counts  # small, medium and large objects
    assert touching >= 5, touching
    assert max(classes_per_image) >= 3 and min(classes_per_image) >= 1


def test_masks_are_exact_to_the_painted_pixels(sets):
    """The ring just inside an isolated object's mask differs in brightness from the ring just
    outside (median gap ~44 luma levels); the same mask shifted by one pixel separates them
    clearly worse (~27)."""
    ds = sets["val"]
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    kernel = np.ones((3, 3), np.uint8)

    def gap(luma, m):
        m = m.astype(np.uint8)
        inner = (m - cv2.erode(m, kernel)).astype(bool)
        outer = (cv2.dilate(m, kernel) - m).astype(bool)
        return abs(float(luma[inner].mean()) - float(luma[outer].mean()))

    exact, shifted = [], []
    for i in range(len(ds)):
        s = ds.raw_sample(i)
        luma = s["image"].astype(np.float32) @ weights
        for cid, x, y, w, h, m in _components(s["label"]):
            if min(w, h) < 12 or x < 3 or y < 3 or x + w + 3 > m.shape[1] or y + h + 3 > m.shape[0]:
                continue
            near = cv2.dilate(m.astype(np.uint8), kernel, iterations=4).astype(bool)
            if (near & (s["label"] > 0) & ~m).any():
                continue  # another object nearby
            exact.append(gap(luma, m))
            shifted.append(gap(luma, np.roll(m, 1, axis=1)))
    exact, shifted = np.asarray(exact), np.asarray(shifted)
    assert len(exact) > 80, len(exact)
    assert np.median(exact) > 35 and np.percentile(exact, 5) > 18, (np.median(exact), np.percentile(exact, 5))
    assert np.median(shifted) < 0.8 * np.median(exact), (np.median(shifted), np.median(exact))


def test_cached_then_rebuilt_byte_identical(root, tmp_path):
    before = _digest(root)
    mtime = os.path.getmtime(os.path.join(root, dcache.MARKER))
    assert demo.segmentation(cache_dir=os.path.dirname(root)) == root  # current copy: no rebuild
    assert os.path.getmtime(os.path.join(root, dcache.MARKER)) == mtime
    start = time.process_time()  # CPU time: other jobs on the machine do not count
    again = demo.segmentation(cache_dir=str(tmp_path), force=True)
    elapsed = time.process_time() - start
    assert again != root and _digest(again) == before
    assert len(before) == 2 * 750 + 4
    assert elapsed < 10.0, f"building took {elapsed:.1f} s"
