"""Materialise generated data sets into a cache folder, atomically and versioned.

A data set ``<cache>/<name>/`` is usable only if it holds the marker file
``.paddleprune_complete.json`` whose ``version`` and ``config_hash`` match what the
builder expects. A builder always writes into a fresh temp folder next to the target,
writes the marker last and then renames the folder into place, so a killed build
never leaves a folder that looks complete.
"""
import hashlib
import json
import logging
import os
import shutil

from paddleprune.errors import InvalidParameterError
from paddleprune.utils.atomic import replace_dir, staging_dir

logger = logging.getLogger(__name__)

__all__ = ["MARKER", "ENV_VAR", "resolve_cache_dir", "config_hash", "read_marker", "materialise"]

MARKER = ".paddleprune_complete.json"
ENV_VAR = "PADDLEPRUNE_CACHE"


def resolve_cache_dir(cache_dir=None):
    """Return the cache root: ``cache_dir``, else ``$PADDLEPRUNE_CACHE``, else ``~/.cache/paddleprune``.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Explicit cache root.

    Returns
    -------
    str
        Absolute path (not created here).
    """
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_VAR) or os.path.join("~", ".cache", "paddleprune")
    return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))


def config_hash(config):
    """Return a short SHA-256 of ``config`` (a JSON-serialisable dict, keys sorted)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def read_marker(folder):
    """Return the marker dict of ``folder``, or ``None`` if it is missing or unreadable."""
    try:
        with open(os.path.join(folder, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_current(folder, version, chash):
    marker = read_marker(folder)
    return marker is not None and marker.get("version") == version and marker.get("config_hash") == chash


def materialise(name, version, config, build_fn, cache_dir=None, force=False):
    """Return ``<cache>/<name>``, building it with ``build_fn(tmp_folder)`` unless current.

    Parameters
    ----------
    name : str
        Folder name under the cache root, e.g. ``'demo_cls'``.
    version : int
        Builder version; a folder built by another version is rebuilt.
    config : dict
        JSON-serialisable builder settings; their hash is stored and checked too.
    build_fn : callable
        ``build_fn(folder) -> dict`` writes the data set into the empty ``folder`` and
        returns extra fields for the marker (e.g. sample counts).
    cache_dir : str, optional
        Cache root (see :func:`resolve_cache_dir`).
    force : bool
        Rebuild even if a current copy exists.

    Returns
    -------
    str
        Absolute path of the data set folder.

    Raises
    ------
    InvalidParameterError
        If the cache root exists but is not a folder.
    """
    root = resolve_cache_dir(cache_dir)
    if os.path.exists(root) and not os.path.isdir(root):
        raise InvalidParameterError(f"materialise: cache dir {root!r} exists and is not a folder.")
    target = os.path.join(root, name)
    chash = config_hash(config)
    if not force and _is_current(target, version, chash):
        logger.debug("%s: using cached copy at %s", name, target)
        return target
    with staging_dir(target) as tmp:
        extra = build_fn(tmp) or {}
        marker = {"name": name, "version": version, "config_hash": chash, "config": config}
        marker.update(extra)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
            json.dump(marker, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.lexists(target):
            if not force and _is_current(target, version, chash):  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            logger.info("%s: replacing stale or incomplete copy at %s", name, target)
        try:
            replace_dir(tmp, target)
        except OSError:
            if not _is_current(target, version, chash):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build finished first
    logger.info("%s: built at %s", name, target)
    return target
