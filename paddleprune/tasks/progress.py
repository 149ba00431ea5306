"""Progress bars and time formatting for the train and eval loops."""
import datetime

from paddleprune.utils import progress as _progress
from paddleprune.utils.progress import bars_enabled

__all__ = ["progress_bar", "bars_enabled", "format_eta"]


def progress_bar(total, desc, unit="step"):
    """A tqdm bar that leaves no line behind, disabled when not on a terminal or under CI."""
    return _progress.progress_bar(total, desc, unit=unit, leave=False)


def format_eta(seconds):
    """``H:MM:SS`` for a number of seconds."""
    return str(datetime.timedelta(seconds=int(max(0, seconds))))
