"""ImageNet weights published by Paddle (``paddle.vision.models``) for ``pretrain_weights='IMAGENET'``.

Which networks have them (:data:`IMAGENET`), where they come from (URL and md5 read from
paddle.vision's ``model_urls``, never retyped), where they are cached (Paddle's own
``paddle.utils.download.WEIGHTS_HOME``, under the URL's file name, as Paddle's helper
stores them) and how paddle.vision's tensor names map onto paddleprune's. The mapping
is built by structure: the layers holding tensors of both networks (default arguments,
1000 classes) are paired in order, and each pair must agree in layer type, tensor names
and shapes.

A file already in the cache is used as is: Paddle's helper would download it again when
its md5 differs, so a file put there by hand only gets a warning.
"""
import functools
import hashlib
import importlib
import logging
import os

from paddleprune.errors import DataFormatError, DataNotFoundError, InvalidParameterError

logger = logging.getLogger(__name__)

__all__ = ["IMAGENET", "HEAD", "STEM", "SUPPORTED", "published", "cache_path", "fetch_imagenet",
           "key_map", "to_paddleprune_names"]

#: paddleprune network -> (paddle.vision.models module, ``model_urls`` key, constructor, its keywords)
IMAGENET = {
    "MobileNetV1": ("mobilenetv1", "mobilenetv1_1.0", "mobilenet_v1", {"scale": 1.0}),
    "MobileNetV2": ("mobilenetv2", "mobilenetv2_1.0", "mobilenet_v2", {"scale": 1.0}),
    "ResNet18": ("resnet", "resnet18", "resnet18", {}),
    "ResNet50": ("resnet", "resnet50", "resnet50", {}),
}
#: prefix of the classifier head in paddleprune's names (dropped when num_classes != 1000)
HEAD = "fc."
#: prefix of the stem conv, which differs with ``small_input=True``
STEM = {"MobileNetV1": "features.0.", "MobileNetV2": "features.0.", "ResNet18": "conv1.", "ResNet50": "conv1."}
SUPPORTED = ("MobileNetV1 and MobileNetV2 with scale=1.0, ResNet18 and ResNet50 (classifiers, also with "
             "small_input=True), and YOLOv3 with backbone='MobileNetV1', backbone_scale=1.0 (backbone only)")


def published(name):
    """``(url, md5)`` of the ImageNet weights of paddleprune network ``name``, from paddle.vision."""
    module, key, _, _ = IMAGENET[name]
    url, md5 = importlib.import_module(f"paddle.vision.models.{module}").model_urls[key]
    return url, md5


def cache_path(url):
    """Where Paddle's download helper keeps ``url``: ``WEIGHTS_HOME/<file name>`` (read at call time)."""
    import paddle.utils.download as download
    return os.path.join(download.WEIGHTS_HOME, os.path.basename(url))


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_imagenet(owner, name, scale=1.0, what=None):
    """The local file of network ``name``'s ImageNet weights: from Paddle's cache, else downloaded into it.

    ``what`` describes the model in messages (default ``name``). Returns a dict with ``path``, ``url``,
    ``md5`` (published) and ``file_md5`` (of the file used).

    Raises
    ------
    InvalidParameterError
        ``name`` / ``scale`` has no published weights (the message lists what has).
    DataNotFoundError
        The file is not cached and cannot be downloaded (names the URL and the cache path).
    """
    if name not in IMAGENET or scale != 1.0:
        raise InvalidParameterError(
            f"{owner}: pretrain_weights='IMAGENET': Paddle publishes no ImageNet weights for {what or name}. "
            f"Supported: {SUPPORTED}. Pass None (random initialisation) or a model folder saved by train().")
    url, md5 = published(name)
    path = cache_path(url)
    if not os.path.isfile(path):
        import paddle.utils.download as download
        logger.info("%s: downloading the ImageNet %s weights from %s into %s", owner, name, url, path)
        try:
            got = download.get_weights_path_from_url(url, md5)
        except Exception as exc:  # noqa: BLE001 - offline: RuntimeError, httpx errors, OSError ...
            raise DataNotFoundError(
                f"{owner}: pretrain_weights='IMAGENET' needs {url} (md5 {md5}); it is not in Paddle's weights "
                f"cache and could not be downloaded ({type(exc).__name__}: {exc}). Download it elsewhere and put "
                f"it at {path} (this exact path; it is then used as is). Supported: {SUPPORTED}.") from None
        path = os.path.abspath(got)
    file_md5 = _md5(path)
    if file_md5 != md5:
        logger.warning("%s: %s has md5 %s, not the published %s (%s); using it as is", owner, path, file_md5,
                       md5, url)
    return {"path": path, "url": url, "md5": md5, "file_md5": file_md5}


def _tensor_layers(net):
    """``[(layer name, layer type, [(tensor name, shape)])]`` of the layers holding tensors, in order."""
    out = []
    for name, layer in net.named_sublayers():
        own = layer.state_dict(include_sublayers=False)
        if own:
            out.append((name, type(layer), [(k, list(v.shape)) for k, v in own.items()]))
    return out


@functools.lru_cache(maxsize=None)
def key_map(name):
    """``{paddleprune name: paddle.vision name}`` of every tensor of network ``name`` (1000 classes).

    Raises
    ------
    DataFormatError
        The two networks do not pair up layer by layer (a paddle.vision change).
    """
    import paddle.vision.models as vision

    from paddleprune.models.registry import get_model
    module, _, ctor, kwargs = IMAGENET[name]
    ours = _tensor_layers(get_model(name, num_classes=1000))
    theirs = _tensor_layers(getattr(vision, ctor)(**kwargs))
    if len(ours) != len(theirs):
        raise DataFormatError(f"paddle.vision {ctor} has {len(theirs)} layers with tensors, paddleprune's "
                              f"{name} {len(ours)}; the ImageNet weights cannot be mapped")
    mapping = {}
    for (a, ta, ka), (b, tb, kb) in zip(ours, theirs):
        if ta is not tb or ka != kb:
            raise DataFormatError(f"paddle.vision {ctor} layer {b} ({tb.__name__} {kb}) does not match "
                                  f"paddleprune's {name} layer {a} ({ta.__name__} {ka})")
        mapping.update({f"{a}.{k}": f"{b}.{k}" for k, _ in ka})
    return mapping


def to_paddleprune_names(name, state, path):
    """paddle.vision's ImageNet ``state`` (from file ``path``) renamed to network ``name``'s tensor names.

    Raises
    ------
    DataFormatError
        The file lacks tensors of paddle.vision's network or holds others (naming them).
    """
    mapping = key_map(name)
    missing = [v for v in mapping.values() if v not in state]
    extra = sorted(set(state) - set(mapping.values()))
    if missing or extra:
        raise DataFormatError(f"not paddle.vision's {IMAGENET[name][2]} weights: {len(missing)} tensor(s) missing "
                              f"{missing[:5]}, {len(extra)} unknown {extra[:5]}", path)
    return {ours: state[theirs] for ours, theirs in mapping.items()}
