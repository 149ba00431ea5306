"""Deployment: export to Paddle Inference / ONNX, check the export, measure CPU latency.

Nothing heavy is imported here: paddle.inference, paddle2onnx and onnxruntime are imported
by the functions that use them.
"""
from paddleprune.deploy.check import check_exported
from paddleprune.deploy.export import export_inference_model, export_onnx
from paddleprune.deploy.latency import compare_latency, measure_latency
from paddleprune.deploy.predictor import Predictor
from paddleprune.deploy.runners import BACKENDS
from paddleprune.deploy.size import model_size_mb

__all__ = ["BACKENDS", "Predictor", "check_exported", "compare_latency", "export_inference_model", "export_onnx",
           "measure_latency", "model_size_mb"]
