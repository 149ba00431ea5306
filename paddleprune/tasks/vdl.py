"""VisualDL scalars written by ``train(use_vdl=True)`` under ``save_dir/vdl_log``.

Tags are PaddleX 1.x's without the GUI's task-id prefix:
``Metrics/Training(Step): loss`` (``acc1``, ``acc5``, ``lr`` ...) every logged step, and
``Metrics/Eval(Epoch): acc1`` ... at every evaluation. Open them with
``visualdl --logdir save_dir/vdl_log --host 127.0.0.1 --language en``.
"""
import logging
import numbers
import os

logger = logging.getLogger(__name__)

__all__ = ["VdlLogger", "TRAIN_TAG", "EVAL_TAG"]

TRAIN_TAG = "Metrics/Training(Step): {}"
EVAL_TAG = "Metrics/Eval(Epoch): {}"


class VdlLogger:
    """Writes scalars to ``logdir``; a no-op when ``logdir`` is None. Use as a context manager."""

    def __init__(self, logdir=None):
        self.logdir = None if logdir is None else os.fspath(logdir)
        self._writer = None

    def __enter__(self):
        if self.logdir is not None:
            from visualdl import LogWriter
            os.makedirs(self.logdir, exist_ok=True)
            self._writer = LogWriter(logdir=self.logdir)
            logger.info("VisualDL: writing scalars to %s", self.logdir)
        return self

    def __exit__(self, *exc):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return False

    def _write(self, template, values, step):
        if self._writer is None:
            return
        for key, value in values.items():
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                self._writer.add_scalar(tag=template.format(key), value=float(value), step=int(step))

    def train_step(self, values, step):
        """Scalars of one logged training step (global step)."""
        self._write(TRAIN_TAG, values, step)

    def eval_epoch(self, values, epoch):
        """Scalar metrics of one evaluation (lists such as per-class scores are skipped)."""
        self._write(EVAL_TAG, values, epoch)
