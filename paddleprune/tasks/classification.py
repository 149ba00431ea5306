"""Image classification tasks with PaddleX 1.x names: ``MobileNetV1``, ``MobileNetV2``,
``ResNet18``, ``ResNet50`` (networks from :mod:`paddleprune.models`)."""
import copy
import logging

import numpy as np
import paddle.nn.functional as F

from paddleprune.errors import InvalidParameterError
from paddleprune.metrics import TopkAccuracy, topk_keys
from paddleprune.models import get_model
from paddleprune.models.layers import check_common_args
from paddleprune.tasks.base import BaseTask
from paddleprune.tasks.params import check_int
from paddleprune.tasks.registry import register_task
from paddleprune.transforms import cls as T
from paddleprune.transforms.base import to_chw

logger = logging.getLogger(__name__)

__all__ = ["BaseClassifier", "MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50"]


class BaseClassifier(BaseTask):
    """Classification hooks on top of :class:`BaseTask`; subclasses set ``net_name``."""

    model_type = "classifier"
    #: name of the network in :func:`paddleprune.models.get_model`
    net_name = None

    def build_net(self):
        return get_model(self.net_name, **self.get_params())

    def compute_loss(self, outputs, labels):
        return F.cross_entropy(outputs, labels.reshape([-1]).astype("int64"))

    def make_metric(self, keep_details=False):
        return TopkAccuracy(self.num_classes, keep_details=keep_details)

    def step_metrics(self, outputs, labels):
        labels = labels.numpy().reshape(-1)
        hits = TopkAccuracy.batch_hits(outputs.numpy(), labels, topk_keys(self.num_classes))
        return {f"acc{k}": n / len(labels) for k, n in hits.items()}

    def default_transforms(self, mode):
        if mode == "train":
            return T.Compose([T.RandomCrop(crop_size=224), T.RandomHorizontalFlip(), T.Normalize()])
        return T.Compose([T.ResizeByShort(short_size=256), T.CenterCrop(crop_size=224), T.Normalize()])

    def eval_transforms_from(self, train_transforms):
        """The deterministic counterpart of ``train_transforms``: ``RandomCrop(c)`` becomes
        ``ResizeByShort(c) + CenterCrop(c)``, flips and colour distortion are dropped."""
        ops = []
        for op in getattr(train_transforms, "transforms", None) or []:
            if isinstance(op, T.RandomCrop):
                ops += [T.ResizeByShort(short_size=op.crop_size), T.CenterCrop(crop_size=op.crop_size)]
            elif isinstance(op, T.Resize):
                ops.append(T.Resize(target_size=copy.deepcopy(op.target_size),
                                    interp="LINEAR" if op.interp == "RANDOM" else op.interp))
            elif isinstance(op, (T.ResizeByShort, T.CenterCrop, T.Normalize)):
                ops.append(copy.deepcopy(op))
            elif not isinstance(op, (T.RandomHorizontalFlip, T.RandomDistort)):
                logger.warning("%s: cannot derive eval transforms from %r; using the defaults",
                               type(self).__name__, op)
                return self.default_transforms("eval")
        if not ops:
            return self.default_transforms("eval")
        return T.Compose(ops)

    def build_transforms(self, config_list):
        return T.build_transforms(config_list)

    # -- prediction -------------------------------------------------------------------
    def batch_predict(self, img_file_list, topk=1, transforms=None):
        """Classify several images; returns one :meth:`predict` result per image."""
        owner = f"{type(self).__name__}.predict"
        self._check_net(owner)
        self.check_topk(owner, topk)
        feeds, context = self.predict_inputs(owner, img_file_list, transforms)
        return self.predict_results(self.run_export_layer(feeds), context, topk=topk)

    def check_topk(self, owner, topk):
        check_int(owner, "topk", topk, 1)
        if topk > self.num_classes:
            raise InvalidParameterError(f"{owner}: 'topk' must be at most num_classes ({self.num_classes}); "
                                        f"got {topk}.")

    def _predict_inputs(self, owner, images, transforms):
        batch = np.stack([to_chw(transforms({"image": self.read_input_image(owner, im)})["image"]) for im in images])
        return [batch], None

    def predict_results(self, outputs, context, topk=1):
        logits = outputs[0].astype(np.float32)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        results = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:topk]
            results.append([{"category_id": int(i),
                             "category": self.labels[i] if self.labels and i < len(self.labels) else str(i),
                             "score": float(row[i])} for i in order])
        return results

    def predict(self, img_file_or_array, topk=1, transforms=None):
        """Classify one image (a path or an ``H x W x 3`` RGB array), or a list of them.

        Parameters
        ----------
        img_file_or_array : str, numpy.ndarray or list of them
        topk : int
            How many classes to return, best first.
        transforms : Compose, optional
            Default: the model's ``eval_transforms``.

        Returns
        -------
        list of dict
            ``[{'category_id': int, 'category': str, 'score': float}, ...]`` sorted by
            score; a list of such lists for a list of images.

        Raises
        ------
        NotTrainedError
            Before ``train()`` or ``load_model``.
        InvalidParameterError
            A bad image, ``topk`` out of range, or no transforms.
        """
        if isinstance(img_file_or_array, (list, tuple)):
            return self.batch_predict(img_file_or_array, topk, transforms)
        return self.batch_predict([img_file_or_array], topk, transforms)[0]


class _MobileNet(BaseClassifier):
    def __init__(self, num_classes=1000, scale=1.0, small_input=False):
        check_common_args(type(self).__name__, num_classes, scale, small_input)
        super().__init__(num_classes)
        self.scale = scale
        self.small_input = small_input


class _ResNet(BaseClassifier):
    def __init__(self, num_classes=1000, small_input=False):
        check_common_args(type(self).__name__, num_classes, 1.0, small_input)
        super().__init__(num_classes)
        self.small_input = small_input


@register_task
class MobileNetV1(_MobileNet):
    """MobileNetV1 classifier: ``MobileNetV1(num_classes=1000, scale=1.0, small_input=False)``."""
    net_name = "MobileNetV1"


@register_task
class MobileNetV2(_MobileNet):
    """MobileNetV2 classifier: ``MobileNetV2(num_classes=1000, scale=1.0, small_input=False)``."""
    net_name = "MobileNetV2"


@register_task
class ResNet18(_ResNet):
    """ResNet-18 classifier: ``ResNet18(num_classes=1000, small_input=False)``."""
    net_name = "ResNet18"


@register_task
class ResNet50(_ResNet):
    """ResNet-50 classifier: ``ResNet50(num_classes=1000, small_input=False)``."""
    net_name = "ResNet50"
