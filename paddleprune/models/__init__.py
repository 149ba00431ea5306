"""Network definitions and the model registry.

>>> from paddleprune.models import get_model, list_models
>>> net = get_model("MobileNetV2", num_classes=10, scale=0.5, small_input=True)
"""
from paddleprune.models.mobilenet import MobileNetV1, MobileNetV2
from paddleprune.models.registry import Net, get_model, list_models, register_model
from paddleprune.models.resnet import ResNet18, ResNet50
from paddleprune.models.unet import UNetNet
from paddleprune.models.yolov3 import YOLOv3Net

__all__ = ["Net", "register_model", "get_model", "list_models",
           "MobileNetV1", "MobileNetV2", "ResNet18", "ResNet50", "UNetNet", "YOLOv3Net"]
