"""Write files and folders atomically: build them under a temp name in the same folder,
then rename them into place (``os.replace`` for a file, :func:`replace_dir` for a folder)."""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager


def default_mode(mode=0o777):
    """``mode`` masked by the process umask (what ``open``/``makedirs`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Open a temp file next to ``path``; on clean exit it replaces ``path``.

    On an exception the temp file is removed and ``path`` is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.chmod(tmp, default_mode(0o666))  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_write_json(path, obj, indent=2):
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextmanager
def staging_dir(path):
    """A new empty folder ``.<name>.tmp-<random suffix>`` beside folder ``path`` (the parent is created)
    to build ``path``'s contents in; if the block raises, it is removed with what it holds.

    It has the permissions ``os.makedirs`` would give (``mkdtemp`` makes 0700)."""
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".tmp-", dir=parent)
    os.chmod(tmp, default_mode())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp, path):
    """Put folder ``tmp`` at ``path`` by renames only: an existing ``path`` is first moved
    into a new hidden folder beside it, which is deleted afterwards (also if the rename of
    ``tmp`` fails)."""
    old = None
    if os.path.lexists(path):
        old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".old-", dir=os.path.dirname(path))
        os.rename(path, os.path.join(old, "d"))
    try:
        os.rename(tmp, path)
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
