"""paddleprune: structured filter pruning for PaddlePaddle 3 vision models."""
__version__ = "0.1.0"
