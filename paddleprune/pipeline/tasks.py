"""What the pipeline needs to know about each task: data, model, settings.

Adding a task (detection, segmentation) means adding one ``TaskSpec`` here;
the stages in :mod:`paddleprune.pipeline.run` never look at the task.
"""
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
    warmup_epochs: int = 0
    eval_batch_size: int = 64
    sensitivity_images: int = 0       # 0 = the whole validation set
    ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    round_to: int = 8                 # pruned groups keep a multiple of 8 channels (SIMD width)
    model_kwargs: dict = field(default_factory=dict)   # overrides of the task's model arguments


@dataclass
class TaskSpec:
    """A task for the pipeline; subclasses add ``build_model(num_classes, settings)`` and ``datasets(data_dir)``."""
    name: str
    model: str
    model_kwargs: dict
    metric: str
    input_size: int
    full: Settings
    quick: Settings
    demo_data: object = None          # callable returning the demo data dir
    extra: dict = field(default_factory=dict)


class ClassificationSpec(TaskSpec):
    """PaddleX ImageNet-list data (train_list.txt, val_list.txt, labels.txt), MobileNetV2."""

    def build_model(self, num_classes, settings):
        from paddleprune import cls
        return getattr(cls, self.model)(num_classes=num_classes, **{**self.model_kwargs, **settings.model_kwargs})

    def transforms(self, mode):  # noqa: ARG002 - same transforms for training and evaluation
        from paddleprune.cls import transforms as T
        size = self.input_size
        # digits: no flips; the demo images are already varied in size, angle, colour and background
        return T.Compose([T.Resize(target_size=size), T.Normalize()])

    def datasets(self, data_dir):
        from paddleprune.datasets import ImageNet
        for name in ("train_list.txt", "val_list.txt", "labels.txt"):
            if not os.path.isfile(os.path.join(data_dir, name)):
                raise DataNotFoundError(f"pipeline: {os.path.join(data_dir, name)} does not exist; a "
                                        "classification data dir holds train_list.txt, val_list.txt and labels.txt.")
        labels = os.path.join(data_dir, "labels.txt")
        train = ImageNet(data_dir, os.path.join(data_dir, "train_list.txt"), labels,
                         transforms=self.transforms("train"), shuffle=True)
        val = ImageNet(data_dir, os.path.join(data_dir, "val_list.txt"), labels,
                       transforms=self.transforms("eval"))
        return train, val


def _demo_classification():
    from paddleprune.datasets import demo
    return demo.classification()


TASKS = {
    "classification": ClassificationSpec(
        name="classification", model="MobileNetV2", model_kwargs={"scale": 0.5, "small_input": True},
        metric="acc1", input_size=32,
        full=Settings(epochs=12, prune_epochs=10, batch_size=32, learning_rate=0.02, lr_decay_epochs=(9, 11),
                      warmup_epochs=1),
        quick=Settings(epochs=4, prune_epochs=3, batch_size=32, learning_rate=0.02, lr_decay_epochs=(3,),
                       warmup_epochs=1, sensitivity_images=128, ratios=(0.2, 0.4, 0.6, 0.8),
                       model_kwargs={"scale": 0.25}),
        demo_data=_demo_classification),
}


def get_task(name):
    if name not in TASKS:
        raise InvalidParameterError(f"pipeline: unknown task {name!r}; available: {sorted(TASKS)}.")
    return TASKS[name]
