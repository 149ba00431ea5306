"""Progress bars and time formatting for the train and eval loops."""
import datetime
import os
import sys

__all__ = ["progress_bar", "bars_enabled", "format_eta"]


def bars_enabled():
    """True when stderr is a terminal and the ``CI`` variable is not set."""
    return not os.environ.get("CI") and sys.stderr.isatty()


def progress_bar(total, desc, unit="step"):
    """A tqdm bar, disabled when not on a terminal or under CI."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not bars_enabled())


def format_eta(seconds):
    """``H:MM:SS`` for a number of seconds."""
    return str(datetime.timedelta(seconds=int(max(0, seconds))))
