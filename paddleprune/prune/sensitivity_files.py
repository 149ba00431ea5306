"""Sensitivities tables on disk: JSON with metadata; legacy pickles read safely.

In memory a table is ``{structural_param_name: {ratio: relative_loss}}`` where a
ratio is a float in (0, 1) rounded to 6 decimals and the loss is
``(baseline - pruned) / baseline`` (a finite float, possibly negative).

On disk (``save_sensitivities``)::

    {"format": "paddleprune.sensitivities", "version": 1,
     "meta": {"metric": "acc1", "baseline": 0.71, "criterion": "l1_norm",
              "model": "MobileNetV2", "ratios": [0.1, ..., 0.9], ...},
     "sensitivities": {"conv1.weight": {"0.1": 0.002, "0.2": 0.01, ...}, ...}}

``load_sensitivities`` also reads PaddleX 1.x / PaddleSlim pickles of a plain
``{name: {ratio: loss}}`` dict, through an unpickler that admits only plain
containers, numbers and numpy scalars. No other global is ever imported.
"""
import codecs
import json
import logging
import math
import os

from paddleprune.errors import DataNotFoundError, InvalidParameterError, SensitivityFileError
from paddleprune.prune.sensitivity_table import (
    is_number, validate_table, parse_ratio, canonical_ratio, normalize_sensitivities, ratio_to_str)
from paddleprune.utils.atomic import atomic_write_json
from paddleprune.utils.safe_pickle import RestrictedUnpickler, restricted_loads

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "VERSION", "save_sensitivities", "load_sensitivities", "check_compatible",
           "merge_sensitive"]

FORMAT = "paddleprune.sensitivities"
VERSION = 1
META_KEYS = ("metric", "baseline", "criterion", "model", "ratios")
#: Fields compared by ``merge_sensitive`` (shards of one run may use different ratio sets).
MERGE_FIELDS = ("model", "metric", "criterion")


def _clean_meta(meta, table):
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise InvalidParameterError(f"save_sensitivities: 'meta' must be a dict; got {type(meta).__name__}.")
    out = {key: meta.get(key) for key in META_KEYS}
    out.update((k, v) for k, v in meta.items() if k not in out)
    baseline = out["baseline"]
    if baseline is not None:
        if not is_number(baseline) or not math.isfinite(float(baseline)):
            raise InvalidParameterError(f"save_sensitivities: meta 'baseline' must be a finite number; "
                                        f"got {baseline!r}.")
        out["baseline"] = float(baseline)
    ratios = out["ratios"]
    if ratios is None:
        ratios = {r for points in table.values() for r in points}
    try:
        out["ratios"] = sorted({parse_ratio(r, "meta", "save_sensitivities") for r in ratios})
    except (SensitivityFileError, TypeError) as exc:
        raise InvalidParameterError(f"save_sensitivities: meta 'ratios' must be numbers in (0, 1); "
                                    f"got {ratios!r} ({exc}).") from None
    return out


def save_sensitivities(path, sensitivities, meta=None):
    """Write a sensitivities table and its metadata as JSON, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; written to a temp file in the same folder, then renamed.
    sensitivities : dict
        ``{structural_param_name: {ratio: relative_loss}}``.
    meta : dict, optional
        Metadata. ``metric``, ``baseline``, ``criterion``, ``model`` and
        ``ratios`` are always written (``None`` when not given; ``ratios``
        defaults to the sorted union of the table's ratios); other keys are
        kept as given and must be JSON-serialisable.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InvalidParameterError
        If the table or the metadata is invalid; the old file is left untouched.
    """
    table = normalize_sensitivities(sensitivities, "save_sensitivities")
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "meta": _clean_meta(meta, table),
        "sensitivities": {name: {ratio_to_str(r): loss for r, loss in points.items()}
                          for name, points in table.items()},
    }
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"save_sensitivities: 'meta' is not JSON-serialisable: {exc}.") from None
    path = os.fspath(path)
    atomic_write_json(path, doc)
    return path


# --------------------------------------------------------------------------- loading

class _SensitivityUnpickler(RestrictedUnpickler):
    """Plain-data unpickler that explains PaddleSlim's pickled ``Status`` objects."""

    def refuse(self, module, name):
        if module.startswith("paddleslim") and name == "Status":
            return SensitivityFileError(
                f"{self.path}: holds a pickled PaddleSlim Status object ('{module}.{name}', written by "
                f"the dygraph FilterPruner.sensitive), not a plain {{name: {{ratio: loss}}}} dict. It is "
                f"refused because loading it would run PaddleSlim code. Recompute the sensitivities with "
                f"paddleprune, or convert the file where PaddleSlim is installed: "
                f"pickle.dump(dict(pickle.load(open(path, 'rb')).sensitivies), open('plain.data', 'wb')).")
        return SensitivityFileError(
            f"{self.path}: refused to unpickle global '{module}.{name}'; a sensitivities pickle may hold "
            f"only dicts of numbers (and numpy scalars). Nothing from the file was run. "
            f"Recompute the sensitivities or convert the file to plain data.")


def _load_pickle(data, path):
    obj = restricted_loads(data, path, error=SensitivityFileError, unpickler=_SensitivityUnpickler)
    if not isinstance(obj, dict):
        raise SensitivityFileError(f"{path}: the pickle holds a {type(obj).__name__}, expected a dict "
                                   f"{{param_name: {{ratio: loss}}}}.")
    return validate_table(obj, path, decode_bytes=True), {"source_format": "pickle"}


def _json_locator(text, path):
    """Return ``name -> 'path:line'`` pointing at the table entry of ``name`` when found."""
    start = max(text.find('"sensitivities"'), 0)

    def locate(name):
        if name is None:
            return path
        pos = text.find(json.dumps(name) + ":", start)
        return f"{path}:{text.count(chr(10), 0, pos) + 1}" if pos >= 0 else path
    return locate


def _load_json(data, path):
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SensitivityFileError(f"{path}: not UTF-8 text at byte {exc.start}; expected JSON.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SensitivityFileError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}); the file "
                                   f"is truncated or was edited by hand.") from None
    if not isinstance(doc, dict):
        raise SensitivityFileError(f"{path}: the top level must be a JSON object; got {type(doc).__name__}.")
    if doc.get("format") != FORMAT:
        raise SensitivityFileError(f"{path}: 'format' is {doc.get('format')!r}, expected {FORMAT!r}; "
                                   f"not a paddleprune sensitivities file.")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise SensitivityFileError(f"{path}: format version {version!r} is not supported; this paddleprune "
                                   f"reads version {VERSION} (a newer file needs a newer paddleprune).")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise SensitivityFileError(f"{path}: 'meta' must be an object; got {type(meta).__name__}.")
    if "sensitivities" not in doc:
        raise SensitivityFileError(f"{path}: no 'sensitivities' table.")
    table = validate_table(doc["sensitivities"], _json_locator(text, path))
    return table, dict(meta)


def load_sensitivities(path, return_meta=False, missing_ok=False):
    """Read a sensitivities file: paddleprune JSON or a legacy PaddleX/PaddleSlim pickle.

    Parameters
    ----------
    path : str or os.PathLike
        The file. JSON is recognised by its first character (``{``); anything
        else is read as a pickle through a restricted unpickler.
    return_meta : bool
        Also return the metadata dict (``{"source_format": "pickle"}`` for pickles).
    missing_ok : bool
        Return an empty table (PaddleSlim's behaviour) instead of raising when
        the file does not exist.

    Returns
    -------
    dict or (dict, dict)
        ``{param_name: {ratio: loss}}`` with ratios rounded to 6 decimals, and
        the metadata when ``return_meta`` is true.

    Raises
    ------
    DataNotFoundError
        If the file does not exist and ``missing_ok`` is false.
    SensitivityFileError
        If the file is malformed (JSON errors name line and column), holds a
        wrong structure, or a pickle asks for any global beyond plain data.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        if missing_ok:
            return ({}, {}) if return_meta else {}
        raise DataNotFoundError(f"{path}: sensitivities file not found. Compute it first (for example "
                                f"FilterPruner.sensitive), check the path, or pass missing_ok=True.")
    if os.path.isdir(path):
        raise SensitivityFileError(f"{path}: is a directory, expected a sensitivities file.")
    with open(path, "rb") as f:
        data = f.read()
    head = data.lstrip(codecs.BOM_UTF8).lstrip()[:1]
    if not head:
        raise SensitivityFileError(f"{path}: the file is empty.")
    if head in (b"{", b"["):
        table, meta = _load_json(data, path)
    else:
        table, meta = _load_pickle(data, path)
    logger.debug("%s: loaded sensitivities of %d parameters.", path, len(table))
    return (table, meta) if return_meta else table


# --------------------------------------------------------------------------- checks and merging

def _same(field, got, want):
    if field == "ratios":
        try:
            return {canonical_ratio(r) for r in got} == {canonical_ratio(r) for r in want}
        except (TypeError, ValueError):
            return False
    if is_number(got) and is_number(want):
        return math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-12)
    return got == want


def _show(field, value):
    if field == "ratios" and isinstance(value, (list, tuple, set)):
        try:
            return "[" + ", ".join(ratio_to_str(r) for r in sorted(value)) + "]"
        except (TypeError, ValueError):
            pass
    return repr(value)


def check_compatible(meta, expected, path=None, overwrite=False):
    """Check that a file's metadata matches the current setup.

    Parameters
    ----------
    meta : dict
        Metadata read from the file (``load_sensitivities(..., return_meta=True)``).
    expected : dict
        Values of the current run, e.g. ``{"model": "MobileNetV2", "metric": "acc1",
        "criterion": "l1_norm", "ratios": [...]}``. Every key whose value is
        not None is compared; ``ratios`` as sets of rounded floats, numbers
        with a relative tolerance of 1e-6, anything else with ``==``. A field
        the file does not record (legacy pickles) cannot be checked and passes.
    path : str, optional
        File name used in messages.
    overwrite : bool
        Log the differences instead of raising (the caller then discards the file).

    Returns
    -------
    list of (str, object, object)
        ``(field, value_in_file, expected_value)`` for every differing field.

    Raises
    ------
    SensitivityFileError
        If a field differs and ``overwrite`` is false; the message names each
        differing field and both values.
    """
    where = os.fspath(path) if path is not None else "sensitivities"
    meta = meta or {}
    diffs, unchecked = [], []
    for field, want in (expected or {}).items():
        if want is None:
            continue
        got = meta.get(field)
        if got is None:
            unchecked.append(field)
        elif not _same(field, got, want):
            diffs.append((field, got, want))
    if unchecked:
        logger.info("%s: records no %s; that cannot be checked.", where, ", ".join(unchecked))
    if diffs:
        text = "; ".join(f"{field} is {_show(field, got)} in the file but {_show(field, want)} now"
                         for field, got, want in diffs)
        if not overwrite:
            raise SensitivityFileError(f"{where}: made for a different setup: {text}. Use a file made for "
                                       f"this setup, or pass overwrite=True to discard it and recompute.")
        logger.warning("%s: made for a different setup (%s); overwriting as asked.", where, text)
    return diffs


def merge_sensitive(sensitivities, check_meta=True):
    """Merge sensitivities tables (PaddleSlim semantics: union, later entries win).

    Parameters
    ----------
    sensitivities : list of (dict or str or os.PathLike)
        Tables or files (paths are read with ``load_sensitivities``).
    check_meta : bool
        Refuse to merge files whose ``model``, ``metric`` or ``criterion``
        differ (fields a file does not record are not compared).

    Returns
    -------
    dict
        ``{param_name: {ratio: loss}}``; for a point present in several
        inputs, the value from the last one.

    Raises
    ------
    InvalidParameterError
        If ``sensitivities`` is not a list or an in-memory table is invalid.
    SensitivityFileError
        If a file is unreadable, or ``check_meta`` finds two different setups.
    """
    if isinstance(sensitivities, (str, bytes, os.PathLike, dict)) or not hasattr(sensitivities, "__iter__"):
        raise InvalidParameterError(f"merge_sensitive: 'sensitivities' must be a list of dicts or paths; "
                                    f"got {type(sensitivities).__name__}.")
    merged, reference, reference_src = {}, {}, None
    for i, item in enumerate(sensitivities):
        if isinstance(item, (str, os.PathLike)):
            table, meta = load_sensitivities(item, return_meta=True)
            source = os.fspath(item)
        else:
            table, meta = normalize_sensitivities(item, f"merge_sensitive: item {i}"), {}
            source = f"item {i}"
        if check_meta and meta:
            wanted = {field: reference.get(field) for field in MERGE_FIELDS}
            try:
                check_compatible(meta, wanted, source)
            except SensitivityFileError as exc:
                raise SensitivityFileError(f"merge_sensitive: cannot merge {source} into {reference_src}: "
                                           f"{exc}") from None
            for field in MERGE_FIELDS:
                if reference.get(field) is None and meta.get(field) is not None:
                    reference[field], reference_src = meta[field], reference_src or source
        for name, points in table.items():
            merged.setdefault(name, {}).update(points)
    return {name: dict(sorted(points.items())) for name, points in merged.items()}
