"""Detection transforms: boxes follow the pixels, aligned per-box arrays, mixup, seeding, config."""
import numpy as np
import pytest
import yaml

from paddleprune.errors import InvalidParameterError
from paddleprune.transforms import det as T

# Four non-overlapping coloured rectangles on black; rectangle i has class i.
BOXES = np.array([[5, 4, 25, 20], [40, 10, 70, 30], [10, 35, 30, 55], [50, 40, 85, 58]], np.float32)
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float32)
SCORES = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
DIFFICULT = np.array([0, 1, 0, 1], np.int32)
H, W = 60, 90


def _sample():
    im = np.zeros((H, W, 3), np.uint8)
    for (x1, y1, x2, y2), colour in zip(BOXES.astype(int), COLOURS):
        im[y1:y2, x1:x2] = colour
    return {"image": im, "im_id": 7, "im_path": "a.jpg", "origin_shape": np.array([H, W], np.int32),
            "gt_bbox": BOXES.copy(), "gt_class": np.arange(4, dtype=np.int32), "gt_score": SCORES.copy(),
            "difficult": DIFFICULT.copy()}


def _check(out, edge=0.0, colour_tol=0.0):
    """Every box encloses exactly the pixels of its rectangle's colour (``edge`` pixels of slack
    around the box border), and the per-box arrays stay aligned with the boxes."""
    im = out["image"].astype(np.float32)
    h, w = im.shape[:2]
    box, cls = out["gt_bbox"], out["gt_class"]
    assert box.dtype == np.float32 and box.shape == (len(cls), 4) and len(cls) >= 1
    np.testing.assert_allclose(out["gt_score"], SCORES[cls])
    np.testing.assert_array_equal(out["difficult"], DIFFICULT[cls])
    assert (box[:, 0] >= 0).all() and (box[:, 1] >= 0).all() and (box[:, 2] <= w).all() and (box[:, 3] <= h).all()
    assert (box[:, 2] > box[:, 0]).all() and (box[:, 3] > box[:, 1]).all()
    assert out["im_id"] == 7 and out["origin_shape"].tolist() == [H, W]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    for (x1, y1, x2, y2), c in zip(box, cls):
        mask = np.abs(im - COLOURS[c]).max(axis=2) <= colour_tol
        core = (xs > x1 + edge) & (xs < x2 - edge) & (ys > y1 + edge) & (ys < y2 - edge)
        far = (xs < x1 - edge) | (xs > x2 + edge) | (ys < y1 - edge) | (ys > y2 + edge)
        assert core.any() and mask[core].all(), f"class {c}: box {[x1, y1, x2, y2]} not filled"
        assert not mask[far].any(), f"class {c}: colour found outside box {[x1, y1, x2, y2]}"
        if edge == 0:
            np.testing.assert_array_equal(mask, core)


def test_horizontal_flip():
    out = T.RandomHorizontalFlip(prob=1.0)(_sample())
    np.testing.assert_array_equal(out["gt_bbox"][:, [0, 2]], W - BOXES[:, [2, 0]])
    np.testing.assert_array_equal(out["gt_bbox"][:, [1, 3]], BOXES[:, [1, 3]])
    _check(out)
    twice = T.RandomHorizontalFlip(prob=1.0)(T.RandomHorizontalFlip(prob=1.0)(_sample()))
    np.testing.assert_array_equal(twice["image"], _sample()["image"])
    np.testing.assert_array_equal(twice["gt_bbox"], BOXES)
    same = T.RandomHorizontalFlip(prob=0.0)(_sample())
    np.testing.assert_array_equal(same["image"], _sample()["image"])
    np.testing.assert_array_equal(same["gt_bbox"], BOXES)


def test_resize_scales_boxes_exactly():
    out = T.Resize([45, 30])(_sample())
    assert out["image"].shape == (30, 45, 3)
    np.testing.assert_array_equal(out["gt_bbox"], BOXES * 0.5)
    _check(out, edge=1.0, colour_tol=60)
    for seed in range(6):  # every interpolation, upscaling
        op = T.Resize(120, interp="RANDOM")
        op.set_rng(np.random.default_rng(seed))
        out = op(_sample())
        assert out["image"].shape == (120, 120, 3)
        np.testing.assert_allclose(out["gt_bbox"], BOXES * np.array([120 / W, 2, 120 / W, 2], np.float32),
                                   rtol=1e-6)
        _check(out, edge=5.0, colour_tol=60)
    no_boxes = T.Resize(32)({"image": np.zeros((10, 20, 3), np.uint8)})
    assert no_boxes["image"].shape == (32, 32, 3) and "gt_bbox" not in no_boxes


def test_random_expand():
    fill = np.array([123.675, 116.28, 103.53], np.float32)
    grown = 0
    for seed in range(10):
        op = T.RandomExpand(ratio=3.0, prob=1.0)
        op.set_rng(np.random.default_rng(seed))
        out = op(_sample())
        im = out["image"]
        assert im.dtype == np.float32 and len(out["gt_bbox"]) == 4
        _check(out)
        h, w = im.shape[:2]
        if (h, w) == (H, W):
            continue
        grown += 1
        assert h > H and w > W and h <= 3 * H and w <= 3 * W
        x, y = (out["gt_bbox"][0, :2] - BOXES[0, :2]).astype(int)
        np.testing.assert_array_equal(out["gt_bbox"], BOXES + np.array([x, y, x, y], np.float32))
        np.testing.assert_array_equal(im[y:y + H, x:x + W], _sample()["image"].astype(np.float32))
        outside = np.ones((h, w), bool)
        outside[y:y + H, x:x + W] = False
        assert (im[outside] == fill).all()
    assert grown >= 8
    sample = _sample()
    image = sample["image"]
    assert T.RandomExpand(prob=0.0)(sample)["image"] is image


def _crop_offset(out, axis):
    """Crop offset along x (axis 0) or y (1), read from a kept box not clipped on one side."""
    box, orig = out["gt_bbox"], BOXES[out["gt_class"]]
    size = out["image"].shape[1 - axis]
    for b, o in zip(box, orig):
        if b[axis] > 0:
            return o[axis] - b[axis]
        if b[axis + 2] < size:
            return o[axis + 2] - b[axis + 2]
    return None


def test_random_crop_keeps_pixels_and_aligned_arrays():
    cropped = dropped = centre_checked = 0
    for seed in range(40):
        op = T.RandomCrop()
        op.set_rng(np.random.default_rng(seed))
        out = op(_sample())
        _check(out)
        h, w = out["image"].shape[:2]
        cropped += (h, w) != (H, W)
        dropped += len(out["gt_class"]) < 4
        x0, y0 = _crop_offset(out, 0), _crop_offset(out, 1)
        if x0 is not None and y0 is not None:  # kept boxes are exactly those centred in the crop
            centre = (BOXES[:, :2] + BOXES[:, 2:]) / 2
            inside = (centre >= [x0, y0]).all(axis=1) & (centre < [x0 + w, y0 + h]).all(axis=1)
            np.testing.assert_array_equal(np.flatnonzero(inside), out["gt_class"])
            centre_checked += 1
    assert cropped >= 10 and dropped >= 5 and centre_checked >= 30  # the loop really cropped and dropped


def test_random_crop_keeps_the_original_without_a_valid_crop():
    # Crops cover >= 81% of the image, so no box reaches IoU 0.5: nothing is ever accepted.
    for allow in (False, True):
        op = T.RandomCrop(thresholds=[0.5], scaling=[0.9, 1.0], allow_no_crop=allow, num_attempts=20)
        op.set_rng(np.random.default_rng(0))
        sample = _sample()
        image = sample["image"]
        out = op(sample)
        assert out["image"] is image
        np.testing.assert_array_equal(out["gt_bbox"], BOXES)
    # cover_all_box: class 0 (area 320) never reaches IoU 0.1 with such crops, class 3 (630) can.
    changed = {True: 0, False: 0}
    for cover in (True, False):
        for seed in range(10):
            op = T.RandomCrop(thresholds=[0.1], scaling=[0.9, 1.0], allow_no_crop=False, cover_all_box=cover)
            op.set_rng(np.random.default_rng(seed))
            out = op(_sample())
            _check(out)
            changed[cover] += out["image"].shape[:2] != (H, W)
    assert changed[True] == 0 and changed[False] >= 5
    empty = {"image": np.zeros((8, 8, 3), np.uint8), "gt_bbox": np.zeros((0, 4), np.float32)}
    assert T.RandomCrop()(empty)["image"].shape == (8, 8, 3)


def test_random_distort_leaves_boxes():
    op = T.RandomDistort()
    assert op.brightness_range == op.contrast_range == op.saturation_range == 0.5 and op.hue_range == 18
    out = op(_sample())
    assert out["image"].dtype == np.float32 and out["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(out["gt_bbox"], BOXES)
    np.testing.assert_array_equal(out["gt_class"], np.arange(4))


def test_normalize():
    out = T.Normalize()(_sample())
    assert out["image"].dtype == np.float32 and out["image"].shape == (H, W, 3)
    np.testing.assert_allclose(out["image"][5, 10], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225],
                               rtol=1e-5)


def _partner(record=None):
    def source(rng):
        if record is not None:
            record.append(rng)
        return {"image": np.full((40, 100, 3), 200, np.uint8), "im_id": 9,
                "gt_bbox": np.array([[60, 5, 95, 35]], np.float32), "gt_class": np.array([5], np.int32),
                "gt_score": np.ones(1, np.float32), "difficult": np.zeros(1, np.int32)}
    return source


def test_mixup_blend_weights_and_scores():
    sample = _sample()
    sample["image"][:] = 100
    calls = []
    sample["mixup_source"] = _partner(calls)
    op = T.MixupImage(mixup_epoch=3)
    op.set_rng(np.random.default_rng(3))
    out = op(sample)
    f = float(np.clip(np.random.default_rng(3).beta(1.5, 1.5), 0, 1))
    assert 0 < f < 1 and calls == [op.rng] and "mixup_source" not in out
    im = out["image"]
    assert im.dtype == np.float32 and im.shape == (60, 100, 3)
    np.testing.assert_allclose(im[:40, :90], 100 * f + 200 * (1 - f), rtol=1e-5)
    np.testing.assert_allclose(im[:40, 90:], 200 * (1 - f), rtol=1e-5)
    np.testing.assert_allclose(im[40:, :90], 100 * f, rtol=1e-5)
    assert (im[40:, 90:] == 0).all()
    np.testing.assert_array_equal(out["gt_bbox"], np.concatenate([BOXES, [[60, 5, 95, 35]]]))
    np.testing.assert_array_equal(out["gt_class"], [0, 1, 2, 3, 5])
    np.testing.assert_allclose(out["gt_score"], np.append(SCORES * f, 1 - f), rtol=1e-6)
    np.testing.assert_array_equal(out["difficult"], [0, 1, 0, 1, 0])
    assert out["gt_score"].dtype == np.float32 and out["im_id"] == 7


def test_mixup_epochs():
    calls = []

    def run(op):
        sample = _sample()
        sample["mixup_source"] = _partner(calls)
        out = op(sample)
        assert "mixup_source" not in out
        return out

    op = T.MixupImage(mixup_epoch=2)
    pipe = T.Compose([op, T.Normalize()])
    run(op)  # epoch 1 until set_epoch is called
    assert len(calls) == 1
    pipe.set_epoch(3)
    out = run(op)
    assert len(calls) == 1 and out["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(out["gt_bbox"], BOXES)
    pipe.set_epoch(2)
    assert len(run(op)["gt_class"]) == 5 and len(calls) == 2
    off = T.MixupImage()  # mixup_epoch=-1
    for epoch in (1, 1, 5):
        off.set_epoch(epoch)
        run(off)
    assert len(calls) == 2 and not off.active
    with pytest.raises(InvalidParameterError, match=r"MixupImage: the sample needs a callable 'mixup_source'"):
        op(_sample())
    with pytest.raises(InvalidParameterError, match=r"MixupImage.set_epoch: 'epoch' must be an int >= 1; got 0"):
        op.set_epoch(0)


class _FixedBeta:
    """Stands in for the generator so the clipped factor can be forced to 1 or 0."""

    def __init__(self, value):
        self.value = value

    def beta(self, alpha, beta):
        return self.value


def test_mixup_factor_limits():
    calls = []
    op = T.MixupImage(mixup_epoch=5)
    op._rng = _FixedBeta(1.3)  # clipped to 1: the sample itself, no partner fetched
    sample = _sample()
    sample["mixup_source"] = _partner(calls)
    out = op(sample)
    assert calls == [] and out["image"].shape == (H, W, 3) and "mixup_source" not in out
    op._rng = _FixedBeta(-0.2)  # clipped to 0: the partner
    sample = _sample()
    sample["mixup_source"] = _partner(calls)
    out = op(sample)
    assert len(calls) == 1 and out["im_id"] == 9 and out["gt_class"].tolist() == [5]


def test_compose_requires_mixup_first():
    with pytest.raises(InvalidParameterError, match=r"Compose: 'transforms\[1\]' is a MixupImage; it must be "
                                                    r"the first transform"):
        T.Compose([T.RandomDistort(), T.MixupImage()])
    with pytest.raises(InvalidParameterError, match=r"'transforms\[1\]' is a MixupImage"):
        T.build_transforms([{"Resize": {}}, {"MixupImage": {}}])
    assert isinstance(T.Compose([T.MixupImage(), T.Normalize()]), T.Compose)


def _train_pipeline():
    return T.Compose([T.MixupImage(mixup_epoch=4), T.RandomDistort(), T.RandomExpand(ratio=2.0),
                      T.RandomCrop(), T.Resize(64, interp="RANDOM"), T.RandomHorizontalFlip(), T.Normalize()])


def _pooled_sample():
    pool = [_partner()(None), _sample()]

    def source(rng):
        item = pool[int(rng.integers(len(pool)))]
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in item.items()}
    sample = _sample()
    sample["mixup_source"] = source
    return sample


def test_seeded_compose_is_reproducible():
    outs = [_train_pipeline().seed(s)(_pooled_sample()) for s in (7, 7, 8)]
    for key in ("image", "gt_bbox", "gt_class", "gt_score", "difficult"):
        np.testing.assert_array_equal(outs[0][key], outs[1][key])
    assert outs[0]["image"].shape == (64, 64, 3) and outs[0]["image"].dtype == np.float32
    assert not np.array_equal(outs[0]["image"], outs[2]["image"])
    pipe = _train_pipeline().seed(7)
    again = pipe(_pooled_sample())
    np.testing.assert_array_equal(again["gt_bbox"], outs[0]["gt_bbox"])


def test_config_round_trip():
    pipe = T.Compose([T.MixupImage(alpha=2.0, mixup_epoch=10), T.RandomDistort(hue_prob=0.2),
                      T.RandomExpand(ratio=2.5, fill_value=[0, 0, 0]), T.RandomCrop(thresholds=[0.3, 0.5]),
                      T.Resize([64, 48], interp="CUBIC"), T.RandomHorizontalFlip(0.3), T.Normalize()])
    config = pipe.to_config_list()
    assert config[2] == {"RandomExpand": {"ratio": 2.5, "prob": 0.5, "fill_value": [0.0, 0.0, 0.0]}}
    assert config[3]["RandomCrop"]["aspect_ratio"] == [0.5, 2.0]
    text = yaml.safe_dump({"transforms": config})  # plain YAML, no Python tags
    rebuilt = T.build_transforms(yaml.safe_load(text)["transforms"])
    assert type(rebuilt) is T.Compose and rebuilt.to_config_list() == config
    a, b = pipe.seed(3)(_pooled_sample()), rebuilt.seed(3)(_pooled_sample())
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["gt_bbox"], b["gt_bbox"])
    with pytest.raises(InvalidParameterError, match=r"build_transforms: unknown transform 'CenterCrop' at item 0; "
                                                    r"known: \['MixupImage', 'Normalize'"):
        T.build_transforms([{"CenterCrop": {}}])


@pytest.mark.parametrize("factory, message", [
    (lambda: T.MixupImage(alpha=0), r"MixupImage: 'alpha' must be a number in \(0, inf\); got 0"),
    (lambda: T.MixupImage(beta=-1.0), r"MixupImage: 'beta' must be a number in \(0, inf\)"),
    (lambda: T.MixupImage(mixup_epoch=2.5), r"MixupImage: 'mixup_epoch' must be an int >= -1; got 2.5"),
    (lambda: T.RandomDistort(saturation_range=1.5), r"RandomDistort: 'saturation_range' must be a number in \[0, 1\]"),
    (lambda: T.RandomExpand(ratio=1.0), r"RandomExpand: 'ratio' must be a number in \(1.01, inf\); got 1.0"),
    (lambda: T.RandomExpand(prob=2), r"RandomExpand: 'prob' must be a number in \[0, 1\]; got 2"),
    (lambda: T.RandomExpand(fill_value=[1, 2]), r"RandomExpand: 'fill_value' must be a list of 3 numbers"),
    (lambda: T.RandomExpand(fill_value=[0, 0, 300]), r"RandomExpand: 'fill_value' must hold 3 numbers in \[0, 255\]"),
    (lambda: T.RandomCrop(aspect_ratio=[2.0, 0.5]), r"RandomCrop: 'aspect_ratio' must be a pair \[min, max\]"),
    (lambda: T.RandomCrop(thresholds=[0.5, 1.5]), r"RandomCrop: 'thresholds' must be a non-empty list of numbers "
                                                  r"in \[0, 1\]; got \[0.5, 1.5\]"),
    (lambda: T.RandomCrop(thresholds=[]), r"RandomCrop: 'thresholds' must be a non-empty list"),
    (lambda: T.RandomCrop(scaling=[0.3, 1.2]), r"RandomCrop: 'scaling' must be a pair \[min, max\] with "
                                               r"0 < min <= max <= 1; got \[0.3, 1.2\]"),
    (lambda: T.RandomCrop(num_attempts=0), r"RandomCrop: 'num_attempts' must be an int >= 1; got 0"),
    (lambda: T.RandomCrop(allow_no_crop="yes"), r"RandomCrop: 'allow_no_crop' must be True or False"),
    (lambda: T.RandomCrop(cover_all_box=1), r"RandomCrop: 'cover_all_box' must be True or False; got 1"),
    (lambda: T.Resize(0), r"Resize: 'target_size' must be an int >= 1; got 0"),
    (lambda: T.Resize(608, interp="BILINEAR"), r"Resize: 'interp' must be one of .*; got 'BILINEAR'"),
    (lambda: T.RandomHorizontalFlip(prob=-0.5), r"RandomHorizontalFlip: 'prob' must be a number in \[0, 1\]"),
    (lambda: T.Normalize(std=[0.2, 0.0, 0.2]), r"Normalize: 'std' must be a list of 3 positive numbers"),
])
def test_argument_validation(factory, message):
    with pytest.raises(InvalidParameterError, match=message):
        factory()


def test_malformed_boxes():
    sample = _sample()
    sample["gt_bbox"] = np.zeros(4, np.float32)
    with pytest.raises(InvalidParameterError, match=r"Resize: 'gt_bbox' must be an N x 4 array; got shape \(4,\)"):
        T.Resize(32)(sample)
    sample = _sample()
    sample["gt_class"] = sample["gt_class"][:3]
    with pytest.raises(InvalidParameterError, match=r"RandomHorizontalFlip: 'gt_class' has 3 entries but "
                                                    r"'gt_bbox' has 4 boxes"):
        T.RandomHorizontalFlip(prob=1.0)(sample)


def test_no_shared_mutable_defaults():
    a, b = T.RandomCrop(), T.RandomCrop()
    a.thresholds.append(0.95)
    assert b.thresholds == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9] == T.RandomCrop().thresholds


def test_reexport_module():
    from paddleprune.det import transforms as public
    assert public.__all__ == T.__all__
    assert all(getattr(public, name) is getattr(T, name) for name in T.__all__)
