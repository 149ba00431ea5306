"""Embedded demo classification data: deterministic, atomic, versioned, readable."""
import hashlib
import json
import logging
import os
from collections import Counter

import numpy as np
import pytest

from paddleprune.datasets import ImageNet, demo
from paddleprune.datasets import cache as dcache
from paddleprune.errors import InvalidParameterError


def _digest(folder):
    """sha256 of every file under ``folder`` except the marker, keyed by relative path."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if name == dcache.MARKER:
                continue
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    first = demo.classification(cache_dir=tmp_path_factory.mktemp("a"))
    second = demo.classification(cache_dir=tmp_path_factory.mktemp("b"))
    return first, second


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def test_build_is_deterministic(built):
    first, second = built
    assert os.path.basename(first) == "demo_cls"
    d1, d2 = _digest(first), _digest(second)
    assert len(d1) == 1797 + 3
    assert d1 == d2


def test_layout_split_and_labels(built):
    root = built[0]
    labels = _lines(os.path.join(root, "labels.txt"))
    assert labels == list(demo.CLS_CLASS_NAMES)
    train = [line.split() for line in _lines(os.path.join(root, "train_list.txt"))]
    val = [line.split() for line in _lines(os.path.join(root, "val_list.txt"))]
    assert (len(train), len(val)) == (1438, 359)
    paths = [p for p, _ in train + val]
    assert len(set(paths)) == 1797  # disjoint and complete
    for rel, label in train + val:
        assert rel.startswith(f"images/{labels[int(label)]}/") and rel.endswith(".png")
    # stratified: every class has ~20% of its images in val
    n_train, n_val = Counter(int(l) for _, l in train), Counter(int(l) for _, l in val)
    for c in range(10):
        assert abs(n_val[c] / (n_train[c] + n_val[c]) - 0.2) < 0.01
    marker = json.load(open(os.path.join(root, dcache.MARKER), encoding="utf-8"))
    assert marker["version"] == demo.CLS_BUILDER_VERSION
    assert (marker["num_train"], marker["num_val"], marker["num_classes"]) == (1438, 359, 10)


def test_reader_reads_demo(built):
    root = built[0]
    ds = ImageNet(root, os.path.join(root, "val_list.txt"), os.path.join(root, "labels.txt"))
    assert len(ds) == ds.num_samples == 359
    assert ds.labels == list(demo.CLS_CLASS_NAMES)
    image, label = ds[0]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    assert label.dtype == np.int64 and 0 <= int(label) < 10
    assert 0.0 <= image.min() and image.max() <= 255.0 and image.std() > 5  # not blank


def test_cached_copy_is_reused(built):
    root = built[0]
    before = os.stat(os.path.join(root, "train_list.txt")).st_mtime_ns
    assert demo.classification(cache_dir=os.path.dirname(root)) == root
    assert os.stat(os.path.join(root, "train_list.txt")).st_mtime_ns == before


def test_rebuilt_when_marker_missing(tmp_path):
    root = demo.classification(cache_dir=tmp_path)
    reference = _digest(root)
    os.remove(os.path.join(root, dcache.MARKER))
    with open(os.path.join(root, "leftover.txt"), "w") as f:
        f.write("half-built")
    assert demo.classification(cache_dir=tmp_path) == root
    assert os.path.isfile(os.path.join(root, dcache.MARKER))
    assert not os.path.exists(os.path.join(root, "leftover.txt"))
    assert _digest(root) == reference
    assert sorted(os.listdir(tmp_path)) == ["demo_cls"]  # no temp or trash folders left


def test_env_var_sets_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLEPRUNE_CACHE", str(tmp_path / "env"))
    assert dcache.resolve_cache_dir() == str(tmp_path / "env")
    assert dcache.resolve_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
    monkeypatch.delenv("PADDLEPRUNE_CACHE")
    assert dcache.resolve_cache_dir() == os.path.expanduser(os.path.join("~", ".cache", "paddleprune"))


def _writer(calls, content="x"):
    def build(folder):
        calls.append(folder)
        with open(os.path.join(folder, "data.txt"), "w") as f:
            f.write(content)
        return {"num": 1}
    return build


def test_materialise_versioning(tmp_path):
    calls = []
    path = dcache.materialise("toy", 1, {"a": 1}, _writer(calls), cache_dir=tmp_path)
    assert len(calls) == 1 and dcache.read_marker(path)["num"] == 1
    dcache.materialise("toy", 1, {"a": 1}, _writer(calls), cache_dir=tmp_path)
    assert len(calls) == 1  # current: not rebuilt
    dcache.materialise("toy", 2, {"a": 1}, _writer(calls), cache_dir=tmp_path)
    assert len(calls) == 2  # builder version changed
    dcache.materialise("toy", 2, {"a": 2}, _writer(calls), cache_dir=tmp_path)
    assert len(calls) == 3  # builder settings changed
    dcache.materialise("toy", 2, {"a": 2}, _writer(calls), cache_dir=tmp_path, force=True)
    assert len(calls) == 4
    assert dcache.read_marker(path)["version"] == 2
    assert sorted(os.listdir(tmp_path)) == ["toy"]


def test_failed_build_leaves_nothing(tmp_path):
    def broken(folder):
        with open(os.path.join(folder, "part.txt"), "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        dcache.materialise("toy", 1, {}, broken, cache_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_failed_rebuild_keeps_old_copy_unused(tmp_path, caplog):
    path = dcache.materialise("toy", 1, {}, _writer([], "old"), cache_dir=tmp_path)

    def broken(folder):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        dcache.materialise("toy", 2, {}, broken, cache_dir=tmp_path)
    assert open(os.path.join(path, "data.txt")).read() == "old"  # never replaced by a half build
    with caplog.at_level(logging.INFO, logger="paddleprune.datasets.cache"):
        dcache.materialise("toy", 2, {}, _writer([], "new"), cache_dir=tmp_path)
    assert "replacing stale" in caplog.text
    assert open(os.path.join(path, "data.txt")).read() == "new"


def test_cache_root_must_be_a_folder(tmp_path):
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    with pytest.raises(InvalidParameterError, match="exists and is not a folder"):
        dcache.materialise("toy", 1, {}, _writer([]), cache_dir=not_dir)


def test_all_exports():
    import paddleprune.datasets as ds
    for mod in (ds, demo, dcache):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ names missing {name!r}"
