"""Detection API (``paddleprune.det``), PaddleX 1.x style.

>>> from paddleprune import det
>>> from paddleprune.det import transforms as T
>>> model = det.YOLOv3(num_classes=5, backbone='MobileNetV1')
>>> model.train(num_epochs=270, train_dataset=train, eval_dataset=val, save_dir='output/yolov3')
"""
from paddleprune.det import transforms
from paddleprune.tasks.detection import YOLOv3

__all__ = ["transforms", "YOLOv3"]
