"""Task models (train / evaluate / predict / save) shared by classification, detection and
segmentation; one train loop for all of them."""
from paddleprune.tasks.base import BaseTask
from paddleprune.tasks.checkpoint import load_model
from paddleprune.tasks.registry import get_task_class, list_tasks, register_task

__all__ = ["BaseTask", "load_model", "register_task", "get_task_class", "list_tasks"]
