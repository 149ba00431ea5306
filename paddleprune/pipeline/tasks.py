"""What the pipeline needs to know about each task: data, model, settings.

Adding a task (detection, segmentation) means adding one ``TaskSpec`` here;
the stages in :mod:`paddleprune.pipeline.run` never look at the task.
"""
import dataclasses
import os
from dataclasses import dataclass, field

from paddleprune.errors import DataNotFoundError, InvalidParameterError


@dataclass
class Settings:
    """Training settings of one pipeline run (stage 1 and stage 3)."""
    epochs: int
    prune_epochs: int
    batch_size: int
    learning_rate: float
    lr_decay_epochs: tuple
    prune_lr_decay_epochs: tuple = None   # stage 3's decay epochs (default: lr_decay_epochs)
    warmup_epochs: int = 0
    eval_batch_size: int = 64
    sensitivity_images: int = 0       # 0 = the whole validation set
    train_images: int = 0             # > 0: train on the first this many training images (quick forms)
    ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    round_to: int = 8                 # pruned groups keep a multiple of 8 channels (SIMD width)
    model_kwargs: dict = field(default_factory=dict)   # overrides of the task's model arguments
    save_interval: int = 1            # evaluate and save every this many epochs
    optimizer: str = "momentum"       # 'momentum': train()'s PaddleX default; 'adam': Adam, same schedule
    backbone_epochs: int = 0          # > 0: stage 0 trains the backbone as a classifier first (see TaskSpec)


@dataclass
class TaskSpec:
    """A task for the pipeline: its PaddleX data layout, model and settings.

    Subclasses give ``package`` (the PaddleX-style API module holding the model class),
    ``reader`` (the data set class in :mod:`paddleprune.datasets`) and ``transforms(mode)``.
    """
    name: str
    model: str
    model_kwargs: dict
    input_size: int
    full: Settings
    quick: Settings
    demo_data: object = None          # callable returning the demo data dir
    latency_batches: tuple = (1, 32)  # batch sizes the report times

    package = None
    reader = None
    lists = ("train_list.txt", "val_list.txt", "labels.txt")

    def with_model(self, model, model_kwargs=None, input_size=None):
        """This task with another model of its package (e.g. ``'ResNet50'`` for classification), built with
        ``model_kwargs`` only (the quick and full forms' model overrides are dropped), at ``input_size``."""
        import importlib
        package = importlib.import_module(f"paddleprune.{self.package}")
        if not hasattr(package, model):
            raise InvalidParameterError(f"pipeline: paddleprune.{self.package} has no model {model!r}; available: "
                                        f"{sorted(n for n in getattr(package, '__all__', ()) if n[:1].isupper())}.")
        return dataclasses.replace(
            self, model=model, model_kwargs=dict(model_kwargs or {}), input_size=input_size or self.input_size,
            full=dataclasses.replace(self.full, model_kwargs={}), quick=dataclasses.replace(self.quick, model_kwargs={}))

    def build_model(self, num_classes, settings):
        import importlib
        package = importlib.import_module(f"paddleprune.{self.package}")
        return getattr(package, self.model)(num_classes=num_classes, **{**self.model_kwargs, **settings.model_kwargs})

    def schedule(self, settings, learning_rate, steps_per_epoch, epochs, decay_epochs, warmup=False):
        """``train()`` keywords of the learning-rate schedule of a run of ``epochs``: PaddleX's warmup
        (if ``warmup``) and piecewise decay at ``decay_epochs``, with Momentum (``train()``'s default)
        or Adam."""
        warmup_steps = settings.warmup_epochs * steps_per_epoch
        kwargs = {"learning_rate": learning_rate, "lr_decay_epochs": list(decay_epochs)}
        if warmup:
            kwargs["warmup_steps"] = warmup_steps
        if settings.optimizer == "adam":
            from paddleprune.tasks.optim import adam_factory
            kwargs["optimizer"] = adam_factory(learning_rate, steps_per_epoch, decay_epochs, warmup_steps)
        return kwargs

    def backbone_classifier(self, settings):
        """Stage 0, for tasks whose network has a classification backbone: ``(classifier model,
        train set, val set)`` to train it on, or None. It stands in for the ImageNet weights
        PaddleX starts from (nothing can be downloaded here)."""
        return None

    def datasets(self, data_dir):
        """``(train, val)`` data sets of ``data_dir`` with the pipeline's transforms."""
        import paddleprune.datasets as datasets
        for name in self.lists:
            if not os.path.isfile(os.path.join(data_dir, name)):
                raise DataNotFoundError(f"pipeline: {os.path.join(data_dir, name)} does not exist; a {self.name} "
                                        f"data dir holds {', '.join(self.lists)} ({self.reader} layout).")
        reader = getattr(datasets, self.reader)
        train_list, val_list, labels = (os.path.join(data_dir, name) for name in self.lists)
        train = reader(data_dir, train_list, labels, transforms=self.transforms("train"), shuffle=True)
        val = reader(data_dir, val_list, labels, transforms=self.transforms("eval"))
        return train, val


class ClassificationSpec(TaskSpec):
    """PaddleX ImageNet-list data (train_list.txt, val_list.txt, labels.txt), MobileNetV2."""
    package, reader = "cls", "ImageNet"

    def transforms(self, mode):  # noqa: ARG002 - same transforms for training and evaluation
        from paddleprune.cls import transforms as T
        size = self.input_size
        # digits: no flips; the demo images are already varied in size, angle, colour and background
        return T.Compose([T.Resize(target_size=size), T.Normalize()])


class DetectionSpec(TaskSpec):
    """PaddleX VOC data (JPEG images, XML annotations, train_list.txt ...), YOLOv3-MobileNetV1."""
    package, reader = "det", "VOCDetection"

    def transforms(self, mode):
        from paddleprune.det import transforms as T
        size = self.input_size
        if mode == "train":
            # digits: no flips (a mirrored digit is another shape). Without RandomCrop the detector led by
            # ~0.1 bbox_map at epoch 6 but ended lower (0.34 against 0.43 after 36 epochs, one run each)
            return T.Compose([T.RandomDistort(), T.RandomExpand(ratio=2.0), T.RandomCrop(),
                              T.Resize(target_size=size, interp="RANDOM"), T.Normalize()])
        return T.Compose([T.Resize(target_size=size, interp="CUBIC"), T.Normalize()])

    def backbone_classifier(self, settings):
        """MobileNetV1 at the detector's backbone scale, on the embedded classification set at
        64 x 64 (there the digits are as large as the detection set's larger objects)."""
        if not settings.backbone_epochs:
            return None
        from paddleprune import cls
        from paddleprune.cls import transforms as T
        from paddleprune.datasets import ImageNet, demo
        root = demo.classification()
        tf = T.Compose([T.Resize(target_size=64), T.Normalize()])
        train = ImageNet(root, "train_list.txt", "labels.txt", transforms=tf, shuffle=True)
        val = ImageNet(root, "val_list.txt", "labels.txt", transforms=T.Compose([T.Resize(target_size=64),
                                                                                T.Normalize()]))
        scale = {**self.model_kwargs, **settings.model_kwargs}.get("backbone_scale", 1.0)
        return cls.MobileNetV1(num_classes=len(train.labels), scale=scale), train, val


class SegmentationSpec(TaskSpec):
    """PaddleX segmentation data (images, single-channel PNG masks, train_list.txt ...), UNet."""
    package, reader = "seg", "SegDataset"

    def transforms(self, mode):
        from paddleprune.seg import transforms as T
        size = self.input_size
        if mode == "train":
            # the demo objects are symmetric shapes and digits: no flips (a mirrored digit is another shape)
            return T.Compose([T.ResizeByLong(long_size=size), T.ResizeStepScaling(0.75, 1.25, 0.25),
                              T.RandomPaddingCrop(crop_size=size), T.Normalize()])
        return T.Compose([T.ResizeByLong(long_size=size), T.Padding(target_size=size), T.Normalize()])

    def schedule(self, settings, learning_rate, steps_per_epoch, epochs, decay_epochs, warmup=False):  # noqa: ARG002
        """PaddleX's segmenter schedule, a polynomial decay (power 0.9) over the run, with Momentum
        (``train()``'s default) or Adam."""
        kwargs = {"learning_rate": learning_rate, "lr_decay_power": 0.9}
        if settings.optimizer == "adam":
            from paddleprune.tasks.optim import adam_poly_factory
            kwargs["optimizer"] = adam_poly_factory(learning_rate, epochs * steps_per_epoch, 0.9)
        return kwargs


def _demo_classification():
    from paddleprune.datasets import demo
    return demo.classification()


def _demo_detection():
    from paddleprune.datasets import demo
    return demo.detection()


def _demo_segmentation():
    from paddleprune.datasets import demo
    return demo.segmentation()


#: PaddleX's YOLOv3 anchors (for 608 x 608 inputs) scaled to the demo's 128 x 128 inputs, x1.6
#: for the demo objects (digits fill more of their image than VOC objects do)
DEMO_ANCHORS = [[3, 4], [5, 10], [11, 8], [10, 21], [21, 15], [20, 40], [39, 30], [53, 67], [126, 110]]

TASKS = {
    "classification": ClassificationSpec(
        name="classification", model="MobileNetV2", model_kwargs={"scale": 0.5, "small_input": True},
        input_size=32,
        full=Settings(epochs=12, prune_epochs=10, batch_size=32, learning_rate=0.02, lr_decay_epochs=(9, 11),
                      warmup_epochs=1),
        quick=Settings(epochs=4, prune_epochs=3, batch_size=32, learning_rate=0.02, lr_decay_epochs=(3,),
                       warmup_epochs=1, sensitivity_images=64, ratios=(0.2, 0.4, 0.6, 0.8),
                       model_kwargs={"scale": 0.25}),
        demo_data=_demo_classification),
    "detection": DetectionSpec(
        name="detection", model="YOLOv3",
        model_kwargs={"backbone": "MobileNetV1", "backbone_scale": 0.5, "anchors": DEMO_ANCHORS,
                      "train_random_shapes": []},
        input_size=128,
        # from scratch the detector learns slowly on 2 cores: the backbone first learns the digits as a
        # classifier (stage 0), and Adam trains the head several times faster than Momentum here. Width 0.5:
        # at 0.25 the detector found the digits (class-agnostic AP 0.77) but named them poorly (bbox_map
        # 0.434 after 36 epochs, 0.567 on its own training images); at 0.5, 0.606 at epoch 30 (one run each)
        full=Settings(epochs=36, prune_epochs=24, batch_size=16, learning_rate=0.001, lr_decay_epochs=(27, 33),
                      prune_lr_decay_epochs=(18, 22), warmup_epochs=1, eval_batch_size=32, save_interval=3,
                      optimizer="adam", backbone_epochs=20),
        quick=Settings(epochs=3, prune_epochs=1, batch_size=16, learning_rate=0.001, lr_decay_epochs=(3,),
                       warmup_epochs=1, eval_batch_size=32, sensitivity_images=64, ratios=(0.3, 0.6),
                       optimizer="adam", backbone_epochs=3,
                       # width 0.25 keeps the quick form fast; after 3 epochs most scores are still near the priors (0.01 x 0.2): a lower floor
                       # keeps boxes, so bbox_map (the sensitivity baseline) is above 0
                       model_kwargs={"backbone_scale": 0.25, "nms_score_threshold": 0.001}),
        demo_data=_demo_detection,
        # paddle2onnx 2.1.0 converts multiclass NMS correctly only at batch 1 (tests/test_yolov3.py)
        latency_batches=(1,)),
    "segmentation": SegmentationSpec(
        name="segmentation", model="UNet", model_kwargs={"scale": 0.25}, input_size=128,
        # Adam with PaddleX's polynomial decay: in 3 epochs Momentum (lr 0.05) had learnt only the background
        # (miou 0.21). Width 0.25 (16 to 128 channels): at 0.125 the pruned UNet (49 % of the FLOPs removed in
        # multiples of 4 channels, 34 % in multiples of 8) lost the textured classes and retrained to miou
        # 0.41 from 0.66 (one run)
        full=Settings(epochs=12, prune_epochs=8, batch_size=8, learning_rate=0.002, lr_decay_epochs=(),
                      eval_batch_size=16, save_interval=2, optimizer="adam", sensitivity_images=64),
        # the quick form trains x0.125 on 96 images
        quick=Settings(epochs=2, prune_epochs=1, batch_size=8, learning_rate=0.002, lr_decay_epochs=(),
                       eval_batch_size=16, train_images=96, sensitivity_images=16, ratios=(0.3, 0.6),
                       optimizer="adam", model_kwargs={"scale": 0.125}),
        demo_data=_demo_segmentation, latency_batches=(1, 8)),
}


def get_task(name):
    if name not in TASKS:
        raise InvalidParameterError(f"pipeline: unknown task {name!r}; available: {sorted(TASKS)}.")
    return TASKS[name]
