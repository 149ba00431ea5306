"""Classification transforms: shapes, dtypes, values, seeding, validation, config round trip."""
import numpy as np
import pytest
import yaml

from paddleprune.cls import transforms as T
from paddleprune.errors import InvalidParameterError
from paddleprune.transforms import base
from paddleprune.transforms.base import to_chw


def _image(h=40, w=60, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3)).astype(dtype)


def _run(op, image):
    out = op({"image": image.copy(), "label": 3})
    assert out["label"] == 3
    return out["image"]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_geometric_shapes_keep_dtype(dtype):
    im = _image(dtype=dtype)
    assert _run(T.Resize(32), im).shape == (32, 32, 3)
    assert _run(T.Resize([48, 20], interp="NEAREST"), im).shape == (20, 48, 3)
    assert _run(T.Resize(16, interp="RANDOM"), im).shape == (16, 16, 3)
    assert _run(T.ResizeByShort(20), im).shape == (20, 30, 3)
    assert _run(T.ResizeByShort(20, max_size=24), im).shape == (16, 24, 3)
    assert _run(T.CenterCrop(24), im).shape == (24, 24, 3)
    assert _run(T.RandomCrop(24), im).shape == (24, 24, 3)
    for op in (T.Resize(32), T.ResizeByShort(20), T.CenterCrop(24), T.RandomCrop(24), T.RandomHorizontalFlip()):
        assert _run(op, im).dtype == dtype


def test_center_crop_takes_the_centre():
    im = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    np.testing.assert_array_equal(_run(T.CenterCrop(2), im), im[2:4, 3:5])


def test_center_crop_too_large():
    with pytest.raises(InvalidParameterError, match=r"CenterCrop: 'crop_size' 64 is larger than the image \(60x40\)"):
        _run(T.CenterCrop(64), _image())


def test_flip_probability():
    im = _image()
    np.testing.assert_array_equal(_run(T.RandomHorizontalFlip(prob=1.0), im), im[:, ::-1])
    np.testing.assert_array_equal(_run(T.RandomHorizontalFlip(prob=0.0), im), im)


def test_random_crop_full_scale_is_a_resize():
    im = _image(32, 32)
    out = _run(T.RandomCrop(32, lower_scale=1.0, lower_ratio=1.0, upper_ratio=1.0), im)
    np.testing.assert_array_equal(out, im)


def test_random_distort():
    im = _image()
    out = _run(T.RandomDistort(), im)
    assert out.dtype == np.float32 and out.shape == im.shape
    assert out.min() >= 0 and out.max() <= 255
    off = T.RandomDistort(brightness_prob=0, contrast_prob=0, saturation_prob=0, hue_prob=0)
    np.testing.assert_array_equal(_run(off, im), im.astype(np.float32))
    grey = np.full((4, 4, 3), 100, np.uint8)
    only_b = T.RandomDistort(brightness_range=0.5, brightness_prob=1, contrast_prob=0, saturation_prob=0, hue_prob=0)
    factor = _run(only_b, grey) / 100.0
    assert np.allclose(factor, factor.flat[0]) and 0.5 <= factor.flat[0] <= 1.5
    only_sat = T.RandomDistort(saturation_prob=1, brightness_prob=0, contrast_prob=0, hue_prob=0)
    np.testing.assert_allclose(_run(only_sat, grey), 100, atol=1e-3)  # grey has no saturation
    only_hue = T.RandomDistort(hue_prob=1, brightness_prob=0, contrast_prob=0, saturation_prob=0)
    np.testing.assert_allclose(_run(only_hue, grey), 100, atol=0.05)  # hue of grey is undefined


def test_normalize_values():
    im = np.zeros((2, 3, 3), np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 255, 0, 51
    out = _run(T.Normalize(), im)
    assert out.dtype == np.float32 and out.shape == (2, 3, 3)
    np.testing.assert_allclose(out[0, 0], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225],
                               rtol=1e-5)
    out = _run(T.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]), im)
    np.testing.assert_allclose(out[1, 2], [1.0, -1.0, -0.6], rtol=1e-5)
    with pytest.raises(InvalidParameterError, match=r"Normalize: image has 1 channels but 'mean' has 3 values"):
        _run(T.Normalize(), np.zeros((2, 2, 1), np.uint8))


def test_to_chw():
    out = to_chw(np.arange(24, dtype=np.uint8).reshape(2, 4, 3))
    assert out.shape == (3, 2, 4) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert out[2, 1, 3] == 23
    assert to_chw(np.zeros((2, 4))).shape == (1, 2, 4)


def _train_pipeline():
    return T.Compose([T.RandomCrop(24, lower_scale=0.5), T.RandomHorizontalFlip(), T.RandomDistort(),
                      T.Resize(16, interp="RANDOM"), T.Normalize()])


def test_seeded_determinism():
    im = _image()
    outs = [_run(_train_pipeline().seed(s), im) for s in (7, 7, 8)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    pipe = _train_pipeline().seed(7)
    a, b = _run(pipe, im), _run(pipe, im)
    assert not np.array_equal(a, b)  # the stream moves on between samples
    np.testing.assert_array_equal(a, outs[0])


def test_set_rng_validation():
    with pytest.raises(InvalidParameterError, match=r"RandomCrop.set_rng: 'rng' must be a numpy.random.Generator"):
        T.RandomCrop().set_rng(3)


def test_compose_validation():
    with pytest.raises(InvalidParameterError,
                       match=r"Compose: 'transforms' must be a list of transforms; got Normalize"):
        T.Compose(T.Normalize())
    with pytest.raises(InvalidParameterError, match=r"Compose: 'transforms' must hold at least one transform"):
        T.Compose([])
    with pytest.raises(InvalidParameterError, match=r"Compose: 'transforms\[1\]' must be a callable transform "
                                                    r"instance; got 3"):
        T.Compose([T.Normalize(), 3])
    with pytest.raises(InvalidParameterError, match=r"'transforms\[0\]' .* \(a class, not an instance: add '\(\)'\)"):
        T.Compose([T.Normalize])
    pipe = T.Compose([T.Normalize()])
    with pytest.raises(InvalidParameterError, match=r"Compose: a sample must be a dict with an 'image' numpy array"):
        pipe({"img": np.zeros((2, 2, 3))})
    with pytest.raises(InvalidParameterError,
                       match=r"Compose: 'image' must be a 3-D H x W x C array; got shape \(2, 2\)"):
        pipe(np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match=r"Compose: transform .* must return the sample dict; got NoneType"):
        T.Compose([lambda s: None])({"image": np.zeros((2, 2, 3))})
    assert pipe(np.zeros((2, 2, 3), np.uint8))["image"].dtype == np.float32  # bare arrays are wrapped


@pytest.mark.parametrize("factory, message", [
    (lambda: T.Resize(0), r"Resize: 'target_size' must be an int >= 1; got 0"),
    (lambda: T.Resize([32]), r"Resize: 'target_size' must be an int >= 1 or a pair \[width, height\]"),
    (lambda: T.Resize(32, interp="BICUBIC"), r"Resize: 'interp' must be one of .*'LINEAR'.*; got 'BICUBIC'"),
    (lambda: T.ResizeByShort(short_size=2.5), r"ResizeByShort: 'short_size' must be an int >= 1; got 2.5"),
    (lambda: T.ResizeByShort(max_size="none"), r"ResizeByShort: 'max_size' must be an int"),
    (lambda: T.CenterCrop(True), r"CenterCrop: 'crop_size' must be an int >= 1; got True"),
    (lambda: T.RandomCrop(lower_scale=0), r"RandomCrop: 'lower_scale' must be a number in \(0, 1\]; got 0"),
    (lambda: T.RandomCrop(lower_ratio=2.0), r"RandomCrop: 'upper_ratio' must be >= 'lower_ratio' \(2.0\)"),
    (lambda: T.RandomHorizontalFlip(prob=1.5), r"RandomHorizontalFlip: 'prob' must be a number in \[0, 1\]; got 1.5"),
    (lambda: T.RandomDistort(hue_range=200), r"RandomDistort: 'hue_range' must be a number in \[0, 180\]"),
    (lambda: T.RandomDistort(contrast_prob=-0.1), r"RandomDistort: 'contrast_prob' must be a number in \[0, 1\]"),
    (lambda: T.Normalize(mean=[0.5, 0.5]), r"Normalize: 'mean' must be a list of 3 numbers; got \[0.5, 0.5\]"),
    (lambda: T.Normalize(std=[0.2, 0, 0.2]), r"Normalize: 'std' must be a list of 3 positive numbers"),
])
def test_argument_validation(factory, message):
    with pytest.raises(InvalidParameterError, match=message):
        factory()


def test_no_shared_mutable_defaults():
    a, b = T.Normalize(), T.Normalize()
    a.mean[0] = 99.0
    assert b.mean[0] == 0.485 and T.Normalize().mean[0] == 0.485


def test_config_round_trip():
    pipe = T.Compose([T.ResizeByShort(36, max_size=50), T.CenterCrop(32), T.Resize((32, 30), interp="AREA"),
                      T.RandomCrop(32, lower_scale=0.7), T.RandomHorizontalFlip(0.3),
                      T.RandomDistort(hue_range=9, hue_prob=0.2), T.Normalize(mean=[0.1, 0.2, 0.3])])
    config = pipe.to_config_list()
    assert config[0] == {"ResizeByShort": {"short_size": 36, "max_size": 50}}
    assert config[2] == {"Resize": {"target_size": [32, 30], "interp": "AREA"}}
    text = yaml.safe_dump({"transforms": config})  # plain YAML, no Python tags
    rebuilt = T.build_transforms(yaml.safe_load(text)["transforms"])
    assert rebuilt.to_config_list() == config
    assert [type(op) for op in rebuilt.transforms] == [type(op) for op in pipe.transforms]
    im = _image()
    np.testing.assert_array_equal(_run(pipe.seed(3), im), _run(rebuilt.seed(3), im))
    assert pipe.to_config() == {"Compose": {"transforms": config}}
    assert "RandomCrop(crop_size=32, lower_scale=0.7" in repr(pipe)


def test_build_transforms_errors():
    with pytest.raises(InvalidParameterError, match=r"build_transforms: unknown transform 'Blur' at item 1; "
                                                    r"known: \['CenterCrop', 'Normalize'"):
        T.build_transforms([{"Normalize": {}}, {"Blur": {}}])
    with pytest.raises(InvalidParameterError, match=r"build_transforms: bad arguments for Resize \(item 0\)"):
        T.build_transforms([{"Resize": {"size": 3}}])
    with pytest.raises(InvalidParameterError, match=r"build_transforms: item 0 must be a one-key dict"):
        T.build_transforms([{"Resize": {}, "Normalize": {}}])
    with pytest.raises(InvalidParameterError, match=r"build_transforms: 'config_list' must be a list"):
        T.build_transforms({"Resize": {}})
    with pytest.raises(InvalidParameterError, match=r"build_transforms: arguments of Resize \(item 0\) must be a dict"):
        T.build_transforms([{"Resize": [32]}])
    assert isinstance(T.build_transforms([{"Normalize": None}]).transforms[0], T.Normalize)
    with pytest.raises(InvalidParameterError, match=r"Compose.to_config_list: 'transforms\[0\]' .* has no to_config"):
        T.Compose([lambda s: s]).to_config_list()


def test_all_exports():
    import paddleprune.cls as cls_pkg
    import paddleprune.transforms as tr_pkg
    import paddleprune.transforms.cls as tcls
    for mod in (T, tcls, base, tr_pkg, cls_pkg):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ names missing {name!r}"
    assert set(T.__all__) == set(tcls.__all__)
