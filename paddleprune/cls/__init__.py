"""Classification API (``paddleprune.cls``), PaddleX 1.x style.

>>> from paddleprune import cls
>>> from paddleprune.cls import transforms as T
>>> model = cls.MobileNetV2(num_classes=10, scale=0.25)
>>> model.train(num_epochs=10, train_dataset=train, eval_dataset=val, save_dir='output/mbv2')
"""
from paddleprune.cls import transforms
from paddleprune.tasks.classification import MobileNetV1, MobileNetV2, ResNet18, ResNet50

__all__ = ["transforms", "MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50"]
