"""Progress bars: tqdm, silent when stderr is not a terminal or under CI."""
import os
import sys

__all__ = ["bars_enabled", "progress_bar"]


def bars_enabled():
    """True when stderr is a terminal and the ``CI`` variable is not set."""
    return not os.environ.get("CI") and sys.stderr.isatty()


def progress_bar(total, desc, unit="step", leave=True):
    """A tqdm bar, disabled when not on a terminal or under CI."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not bars_enabled())
