"""The three-stage pruning pipeline (train, sensitivities, retrain pruned), shared by all tasks."""
from paddleprune.pipeline.run import run_pipeline

__all__ = ["run_pipeline"]
