"""Segmentation transforms: image and mask move together, masks are never interpolated, sizes,
padding values, im_info + restore_label_map, seeding, config round trip, argument errors."""
import numpy as np
import pytest
import yaml

from paddleprune.errors import InvalidParameterError
from paddleprune.transforms import seg as T

H, W = 40, 60
IDS = (0, 1, 2, 3, 255)
PALETTE = np.zeros((256, 3), np.uint8)  # image colour of each class id (255 = ignore has one too)
PALETTE[list(IDS)] = [[10, 20, 30], [200, 0, 0], [0, 200, 0], [0, 0, 200], [250, 250, 0]]


def _label(h=H, w=W, block=4, seed=0):
    """A mask of ``block x block`` cells of random ids (asymmetric, so flips and crops show)."""
    cells = np.random.default_rng(seed).choice(IDS, size=(-(-h // block), -(-w // block)))
    return np.kron(cells, np.ones((block, block), np.uint8))[:h, :w].astype(np.uint8)


def _sample(h=H, w=W, label=True, seed=0):
    lab = _label(h, w, seed=seed)
    out = {"image": PALETTE[lab].copy(), "im_path": "a.jpg", "origin_shape": [h, w]}
    if label:
        out["label"] = lab
    return out


def _check(out, allowed=IDS, tol=0, fill=None):
    """Mask is H x W like the image, holds only ``allowed`` ids, and wherever the mask is uniform
    over a 3x3 neighbourhood the image shows that id's colour (so they moved together)."""
    im, lab = out["image"].astype(np.float32), out["label"]
    assert lab.shape == im.shape[:2] and lab.ndim == 2
    assert set(np.unique(lab).tolist()) <= set(allowed)
    pad = np.pad(lab.astype(np.int32), 1, constant_values=-1)
    h, w = lab.shape
    uniform = np.ones((h, w), bool)
    for dy in range(3):
        for dx in range(3):
            uniform &= pad[dy:dy + h, dx:dx + w] == lab
    colour = PALETTE[lab].astype(np.float32)
    if fill is not None:  # padded mask pixels (255) show the image fill colour instead
        colour[lab == 255] = fill
        uniform &= (lab != 255) | (np.abs(im - fill).max(axis=2) <= tol)
    assert uniform.sum() > 0.1 * uniform.size  # the colour check below is not vacuous
    assert np.abs(im - colour).max(axis=2)[uniform].max() <= tol


def _seeded(op, seed):
    if hasattr(op, "set_rng"):
        op.set_rng(np.random.default_rng(seed))
    return op


def test_flips_move_image_and_label_exactly():
    s = _sample()
    for op, axis in ((T.RandomHorizontalFlip(prob=1.0), 1), (T.RandomVerticalFlip(prob=1.0), 0)):
        out = op(_sample())
        np.testing.assert_array_equal(out["image"], np.flip(s["image"], axis))
        np.testing.assert_array_equal(out["label"], np.flip(s["label"], axis))
        _check(out)
    same = T.RandomHorizontalFlip(prob=0.0)(_sample())
    np.testing.assert_array_equal(same["label"], s["label"])
    assert T.RandomHorizontalFlip().prob == 0.5 and T.RandomVerticalFlip().prob == 0.1
    flipped = sum(not np.array_equal(_seeded(T.RandomVerticalFlip(), k)(_sample())["label"], s["label"])
                  for k in range(200))
    assert 5 <= flipped <= 40  # about 10%


@pytest.mark.parametrize("interp", ["NEAREST", "LINEAR", "CUBIC", "AREA", "LANCZOS4", "RANDOM"])
def test_resize_sizes_and_label_values(interp):
    for size, shape in ((32, (32, 32)), ([50, 20], (20, 50)), ([120, 80], (80, 120))):
        out = T.Resize(size, interp=interp)(_sample())
        assert out["image"].shape == shape + (3,) and out["label"].shape == shape
        assert out["label"].dtype == np.uint8 and out["im_info"] == [("resize", (H, W))]
        assert set(np.unique(out["label"]).tolist()) <= set(IDS)
    out = T.Resize([120, 80], interp=interp)(_sample())  # 2x up: every 8x8 cell stays uniform
    _check(out, tol=0 if interp == "NEAREST" else 60)


def test_label_follows_the_bilinear_image():
    for size in ([90, 60], [45, 30], [77, 23], [33, 51]):  # up, down and odd ratios
        _check(T.Resize(size)(_sample(seed=3)), tol=1)


def test_resize_by_long_short_and_range_sizes():
    assert T.ResizeByLong(30)(_sample())["label"].shape == (20, 30)
    out = T.ResizeByLong(90)(_sample())
    assert out["image"].shape == (60, 90, 3) and out["im_info"] == [("resize", (H, W))]
    _check(out, tol=1)
    assert T.ResizeByShort(20)(_sample())["label"].shape == (20, 30)
    assert T.ResizeByShort(20, max_size=25)(_sample())["label"].shape == (17, 25)
    assert T.ResizeByShort().get_params() == {"short_size": 800, "max_size": 1333}
    longs = set()
    for seed in range(40):
        out = _seeded(T.ResizeRangeScaling(30, 50), seed)(_sample())
        h, w = out["label"].shape
        assert out["image"].shape[:2] == (h, w) and 30 <= w <= 50 and h == round(w * H / W)
        longs.add(w)
    assert len(longs) >= 10
    assert T.ResizeRangeScaling(45, 45)(_sample())["label"].shape == (30, 45)


def test_resize_step_scaling_sizes():
    seen = set()
    for seed in range(40):
        out = _seeded(T.ResizeStepScaling(), seed)(_sample())
        seen.add(out["label"].shape)
        assert out["image"].shape[:2] == out["label"].shape and out["im_info"] == [("resize", (H, W))]
        _check(out, tol=60)
    assert seen == {(30, 45), (40, 60), (50, 75)}  # factors 0.75, 1.0, 1.25
    assert T.ResizeStepScaling(0.5, 0.5)(_sample())["label"].shape == (20, 30)
    seen = {_seeded(T.ResizeStepScaling(0.5, 1.0, 0.0), k)(_sample())["label"].shape for k in range(20)}
    assert len(seen) >= 8 and all(20 <= h <= 40 for h, _ in seen)


def test_padding_pads_bottom_right_with_fill_and_255():
    s = _sample()
    out = T.Padding([80, 50])(_sample())
    assert out["image"].shape == (50, 80, 3) and out["label"].shape == (50, 80)
    assert out["image"].dtype == np.float32  # 127.5 does not fit uint8
    np.testing.assert_array_equal(out["image"][:H, :W], s["image"])
    np.testing.assert_array_equal(out["label"][:H, :W], s["label"])
    outside = np.ones((50, 80), bool)
    outside[:H, :W] = False
    assert (out["image"][outside] == 127.5).all() and (out["label"][outside] == 255).all()
    assert out["im_info"] == [("padding", (H, W))]
    kept = T.Padding(64, im_padding_value=[0, 0, 0], label_padding_value=7)(_sample())
    assert kept["image"].dtype == np.uint8 and kept["image"].shape == (64, 64, 3)
    assert (kept["label"][H:] == 7).all() and (kept["image"][H:] == 0).all()
    with pytest.raises(InvalidParameterError, match=r"Padding: the image \(60x40\) is larger than 'target_size' 50"):
        T.Padding(50)(_sample())


def test_random_padding_crop_is_exactly_crop_size():
    s = _sample()
    offsets = set()
    for seed in range(30):
        out = _seeded(T.RandomPaddingCrop(crop_size=32), seed)(_sample())
        assert out["image"].shape == (32, 32, 3) and out["label"].shape == (32, 32) and "im_info" not in out
        found = [(y, x) for y in range(H - 31) for x in range(W - 31)
                 if np.array_equal(s["label"][y:y + 32, x:x + 32], out["label"])
                 and np.array_equal(s["image"][y:y + 32, x:x + 32], out["image"])]
        assert found  # a window of the original, same place in image and mask
        offsets.add(found[0])
    assert len(offsets) >= 10
    big = T.RandomPaddingCrop(crop_size=[80, 50])(_sample())  # larger than the image: pad only
    assert big["label"].shape == (50, 80)
    np.testing.assert_array_equal(big["label"][:H, :W], s["label"])
    assert (big["label"][H:] == 255).all() and (big["label"][:, W:] == 255).all()
    assert (big["image"][H:] == 127.5).all()
    for seed in range(10):  # taller than the image, narrower: pad rows, crop columns
        out = _seeded(T.RandomPaddingCrop(crop_size=[32, 50]), seed)(_sample())
        assert out["label"].shape == (50, 32) and (out["label"][H:] == 255).all()
        _check(out, fill=127.5)


def test_random_rotate():
    for h, w in ((H, W), (41, 61)):  # angle ~0 keeps every pixel, odd sizes too
        s = _sample(h, w)
        out = T.RandomRotate(rotate_range=1e-9)(_sample(h, w))
        np.testing.assert_array_equal(out["label"], s["label"])
        np.testing.assert_array_equal(out["image"], s["image"].astype(out["image"].dtype))
    changed = 0
    for seed in range(10):
        out = _seeded(T.RandomRotate(rotate_range=15), seed)(_sample())
        h, w = out["label"].shape
        assert h >= H and w >= W and out["image"].shape == (h, w, 3) and "im_info" not in out
        _check(out, tol=1, fill=127.5)
        changed += (h, w) != (H, W)
    assert changed >= 8
    # a 3x3 square at the centre stays at the centre of the grown canvas
    lab = np.zeros((21, 21), np.uint8)
    lab[9:12, 9:12] = 1
    for seed in range(5):
        out = _seeded(T.RandomRotate(rotate_range=45), seed)({"image": PALETTE[lab].copy(), "label": lab})
        ys, xs = np.nonzero(out["label"] == 1)
        h, w = out["label"].shape
        assert 5 <= len(ys) <= 13 and abs(ys.mean() - (h - 1) / 2) <= 0.6 and abs(xs.mean() - (w - 1) / 2) <= 0.6
        assert (np.abs(out["image"][ys, xs].astype(float) - PALETTE[1]).max(axis=1) < 100).all()
        assert out["label"][0, 0] == 255 or (h, w) == (21, 21)


def test_random_scale_aspect_keeps_size():
    s = _sample()
    changed = 0
    for seed in range(10):
        out = _seeded(T.RandomScaleAspect(), seed)(_sample())
        assert out["image"].shape == (H, W, 3) and out["label"].shape == (H, W) and "im_info" not in out
        _check(out, tol=60)
        changed += not np.array_equal(out["label"], s["label"])
    assert changed >= 8
    np.testing.assert_array_equal(T.RandomScaleAspect(min_scale=0)(_sample())["label"], s["label"])


def test_photometric_ops_leave_the_label():
    s = _sample()
    for op in (T.RandomBlur(prob=1.0), T.RandomDistort(brightness_prob=1.0), T.Normalize()):
        out = op(_sample())
        np.testing.assert_array_equal(out["label"], s["label"])
        assert out["image"].shape == (H, W, 3) and not np.array_equal(out["image"], s["image"])
    assert T.RandomBlur(prob=0.0)(_sample())["image"] is not None
    np.testing.assert_array_equal(T.RandomBlur(prob=0.0)(_sample())["image"], s["image"])


def test_normalize_numbers():
    im = np.array([[[0, 127.5, 255], [60, 60, 60]]], np.float32)
    out = T.Normalize()({"image": im.copy()})["image"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [-1, 0, 1], atol=1e-6)
    op = T.Normalize(mean=[0.1, 0.2, 0.3], std=[0.5, 1, 2], min_val=[10, 10, 10], max_val=[110, 110, 110])
    np.testing.assert_allclose(op({"image": im.copy()})["image"][0, 1], [0.8, 0.3, 0.1], atol=1e-6)
    with pytest.raises(InvalidParameterError, match="Normalize: image has 1 channels"):
        T.Normalize()({"image": np.zeros((2, 2, 1), np.float32)})


def test_restore_undoes_resize_and_padding_exactly():
    s = _sample()
    chains = [[T.Resize([120, 80])], [T.ResizeByLong(90), T.Padding(96)],  # 1.5x: still exact
              [T.Resize([77, 51]), T.Padding([80, 64])], [T.ResizeByLong(30), T.Padding(32)],  # 2x down
              [T.ResizeByShort(50), T.Padding([100, 60]), T.Normalize()]]
    for ops in chains:
        out = T.Compose(ops)(_sample())
        assert [op for op, _ in out["im_info"]] == [type(o).__name__.startswith("Resize") and "resize" or "padding"
                                                    for o in ops if not isinstance(o, T.Normalize)]
        restored = T.restore_label_map(out["label"], out["im_info"])
        np.testing.assert_array_equal(restored, s["label"])  # 4x4 cells survive a 2x downscale
        onehot = (out["label"][None] == np.array(IDS)[:, None, None]).astype(np.float32)
        chw = T.restore_label_map(onehot, out["im_info"], data_format="CHW")
        hwc = T.restore_label_map(onehot.transpose(1, 2, 0), out["im_info"])
        assert chw.shape == (len(IDS), H, W) and hwc.shape == (H, W, len(IDS))
        np.testing.assert_array_equal(np.array(IDS)[chw.argmax(0)], s["label"])
        np.testing.assert_array_equal(hwc, chw.transpose(1, 2, 0))
    image_only = T.Compose([T.ResizeByLong(90), T.Padding(96), T.Normalize()])(_sample(label=False))
    assert image_only["im_info"] == [("resize", (H, W)), ("padding", (60, 90))] and "label" not in image_only
    assert T.restore_label_map(np.zeros((96, 96), np.uint8), image_only["im_info"]).shape == (H, W)
    np.testing.assert_array_equal(T.restore_label_map(s["label"], None), s["label"])
    np.testing.assert_array_equal(T.restore_label_map(s["label"], [["resize", [40, 60]]]), s["label"])


@pytest.mark.parametrize("args, message", [
    ((np.zeros(5), []), r"'label_map' must be H x W, H x W x C or C x H x W; got shape \(5,\)"),
    ((np.zeros((4, 4)), [("crop", (2, 2))]), r"'im_info\[0\]' must be \('resize' or 'padding', \(h, w\)\)"),
    ((np.zeros((4, 4)), [("resize", (2,))]), r"'im_info\[0\]' must be"),
    ((np.zeros((4, 4)), [("resize", (2, 2)), ("padding", (8, 8))]), r"the map \(4x4\) is smaller than"),
    ((np.zeros((2, 4, 4)), [], "NCHW"), r"'data_format' must be one of \['CHW', 'HWC'\]; got 'NCHW'"),
])
def test_restore_errors(args, message):
    with pytest.raises(InvalidParameterError, match="restore_label_map: " + message):
        T.restore_label_map(*args)


def _train():
    return T.Compose([T.RandomHorizontalFlip(), T.RandomVerticalFlip(0.5), T.ResizeStepScaling(),
                      T.RandomRotate(), T.RandomScaleAspect(), T.RandomPaddingCrop(crop_size=[48, 36]),
                      T.RandomBlur(prob=0.5), T.RandomDistort(), T.Normalize()])


def test_seeded_compose_is_reproducible():
    runs = [_train().seed(seed)(_sample()) for seed in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0]["image"], runs[1]["image"])
    np.testing.assert_array_equal(runs[0]["label"], runs[1]["label"])
    assert not np.array_equal(runs[0]["image"], runs[2]["image"])
    for out in runs:
        assert out["image"].shape == (36, 48, 3) and out["image"].dtype == np.float32
        assert out["label"].shape == (36, 48) and out["label"].dtype == np.uint8
        assert set(np.unique(out["label"]).tolist()) <= set(IDS)


def test_config_round_trip():
    train = _train()
    config = yaml.safe_load(yaml.safe_dump(train.to_config_list()))
    rebuilt = T.build_transforms(config)
    assert rebuilt.to_config_list() == train.to_config_list()
    assert [type(op) for op in rebuilt.transforms] == [type(op) for op in train.transforms]
    a, b = train.seed(3)(_sample()), rebuilt.seed(3)(_sample())
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    evals = T.Compose([T.Resize([64, 32], interp="CUBIC"), T.ResizeByLong(64), T.ResizeByShort(30, 60),
                       T.ResizeRangeScaling(40, 60), T.Padding([64, 64], [0, 0, 0], 254)])
    assert T.build_transforms(evals.to_config_list()).to_config_list() == evals.to_config_list()
    assert evals.to_config_list()[-1] == {"Padding": {"target_size": [64, 64], "im_padding_value": [0.0, 0.0, 0.0],
                                                      "label_padding_value": 254}}
    with pytest.raises(InvalidParameterError, match=r"unknown transform 'CenterCrop' at item 0; known: \["):
        T.build_transforms([{"CenterCrop": {"crop_size": 3}}])
    with pytest.raises(InvalidParameterError, match="bad arguments for Padding"):
        T.build_transforms([{"Padding": {"size": 3}}])


@pytest.mark.parametrize("factory, message", [
    (lambda: T.Resize(0), r"Resize: 'target_size' must be an int >= 1; got 0"),
    (lambda: T.Resize(32, interp="BAD"), r"Resize: 'interp' must be one of .*got 'BAD'"),
    (lambda: T.ResizeByLong(0), r"ResizeByLong: 'long_size' must be an int >= 1; got 0"),
    (lambda: T.ResizeByShort(short_size=2.5), r"ResizeByShort: 'short_size' must be an int >= 1; got 2.5"),
    (lambda: T.ResizeRangeScaling(500, 400), r"ResizeRangeScaling: 'max_value' must be an int >= 500; got 400"),
    (lambda: T.ResizeStepScaling(1.25, 0.75), r"ResizeStepScaling: 'max_scale_factor' must be a number in \[1.25"),
    (lambda: T.ResizeStepScaling(0, 1), r"ResizeStepScaling: 'min_scale_factor' must be a number in \(0, inf\)"),
    (lambda: T.ResizeStepScaling(scale_step_size=-1), r"ResizeStepScaling: 'scale_step_size' .* got -1"),
    (lambda: T.Padding([32, 32, 3]), r"Padding: 'target_size' must be an int >= 1 or a pair"),
    (lambda: T.Padding(32, im_padding_value=[1, 2]), r"Padding: 'im_padding_value' must be a list of 3 numbers"),
    (lambda: T.Padding(32, label_padding_value=256), r"Padding: 'label_padding_value' must be an int in \[0, 255\]"),
    (lambda: T.RandomPaddingCrop(crop_size=[32]), r"RandomPaddingCrop: 'crop_size' must be"),
    (lambda: T.RandomPaddingCrop(label_padding_value=-1), r"RandomPaddingCrop: 'label_padding_value' must be"),
    (lambda: T.RandomRotate(rotate_range=200), r"RandomRotate: 'rotate_range' must be a number in \[0, 180\]"),
    (lambda: T.RandomScaleAspect(min_scale=1.5), r"RandomScaleAspect: 'min_scale' must be a number in \[0, 1\]"),
    (lambda: T.RandomScaleAspect(aspect_ratio=-1), r"RandomScaleAspect: 'aspect_ratio' must be"),
    (lambda: T.RandomBlur(prob=2), r"RandomBlur: 'prob' must be a number in \[0, 1\]; got 2"),
    (lambda: T.RandomHorizontalFlip(prob=-0.1), r"RandomHorizontalFlip: 'prob' must be .*got -0.1"),
    (lambda: T.RandomVerticalFlip(prob="x"), r"RandomVerticalFlip: 'prob' must be"),
    (lambda: T.Normalize(std=[0, 1, 1]), r"Normalize: 'std' must be a list of 3 positive numbers"),
    (lambda: T.Normalize(min_val=[0, 0, 0], max_val=[0, 255, 255]), r"Normalize: 'max_val' must be greater"),
])
def test_argument_errors(factory, message):
    with pytest.raises(InvalidParameterError, match=message):
        factory()


def test_label_checks_and_dtypes():
    s = _sample()
    s["label"] = s["label"][:10]
    with pytest.raises(InvalidParameterError, match=r"RandomRotate: 'label' must be an H x W array the size of"):
        T.RandomRotate()(s)
    for op in (T.Resize(50), T.RandomRotate(), T.Padding(64), T.RandomPaddingCrop(70), T.RandomScaleAspect()):
        s = _sample()
        s["label"] = s["label"].astype(np.int32)
        out = _seeded(op, 0)(s)
        assert out["label"].dtype == np.int32 and out["label"].shape == out["image"].shape[:2]


def test_image_only_samples():
    ops = [T.RandomHorizontalFlip(1.0), T.RandomVerticalFlip(1.0), T.Resize(50), T.ResizeByLong(40),
           T.ResizeByShort(30), T.ResizeRangeScaling(30, 40), T.ResizeStepScaling(), T.Padding(80),
           T.RandomPaddingCrop(48), T.RandomRotate(), T.RandomScaleAspect(), T.RandomBlur(1.0),
           T.RandomDistort(), T.Normalize()]
    for op in ops:
        out = _seeded(op, 0)(_sample(label=False))
        assert "label" not in out and out["image"].ndim == 3 and out["image"].shape[2] == 3
    out = T.Compose(ops).seed(0)(_sample(label=False)["image"])  # a bare array works too
    assert out["image"].dtype == np.float32 and "label" not in out and len(out["im_info"]) == 6


def test_no_shared_mutable_defaults():
    a, b = T.Padding(8), T.Padding(8)
    a.im_padding_value[0] = 0.0
    assert b.im_padding_value == [127.5, 127.5, 127.5] and T.Normalize().mean == [0.5, 0.5, 0.5]


def test_all_exports():
    for name in T.__all__:
        assert getattr(T, name) is not None, name
    assert set(T.__all__) >= {"Compose", "build_transforms", "restore_label_map", "RandomDistort"}
