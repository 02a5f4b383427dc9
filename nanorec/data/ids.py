"""Original ids -> rows of a run: the one rule by which an id given now (a users file, a newer
log's items, an API argument, a server request) finds its user or item.

The rule: ids match by their exact text. The integer 17 and the string "17" are the same id;
"017", "17.0", " 17", 17.0 and True are not 17. Nothing is guessed: strings are never parsed as
numbers, floats never rounded (`from_python` checks the API's arguments first). Ids of another
type than the run's are never matched silently (`check_kinds`).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError, UsageError, show


def _texts(a: np.ndarray) -> np.ndarray:
    """(n,) the ids' exact texts (numpy strings: sortable, searchable)."""
    return np.asarray(a).astype(str)


def kind(ids: np.ndarray) -> str:
    """"integers" or "text": the type of an id array (an object array holds text, or a mix)."""
    return "integers" if np.asarray(ids).dtype.kind in "iu" else "text"


class Index:
    """Known ids (K,), sorted once: rows(wanted (U,)) -> (U,) row of each in `known` (-1: unknown; repeats: last)."""

    def __init__(self, known):
        self.known = np.asarray(known)
        self._sorted: dict[bool, tuple[np.ndarray, np.ndarray]] = {}  # by_text -> (order, sorted keys)

    def _keys(self, by_text: bool):
        if by_text not in self._sorted:
            keys = _texts(self.known) if by_text else self.known
            order = np.argsort(keys, kind="stable")
            self._sorted[by_text] = (order, keys[order])
        return self._sorted[by_text]

    def rows(self, wanted) -> np.ndarray:
        wanted = np.asarray(wanted)
        if len(self.known) == 0 or len(wanted) == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        by_text = not (self.known.dtype.kind in "iu" and wanted.dtype.kind in "iu")
        order, ordered = self._keys(by_text)
        w = _texts(wanted) if by_text else wanted
        pos = np.searchsorted(ordered, w, side="right") - 1
        at = np.maximum(pos, 0)
        found = (pos >= 0) & (ordered[at] == w)
        return np.where(found, order[at], -1).astype(np.int64)


def rows(known, wanted) -> np.ndarray:
    """(U,) row of each of `wanted` in `known` (-1: unknown), by the rule above."""
    return Index(known).rows(wanted)


def item_rows(item_ids: np.ndarray):
    """From a run's item_ids (N+1,): known(raw (L,)) -> (indices of the known ones, (L,) bool: which were known)."""
    index = Index(item_ids[1:])

    def known(raw) -> tuple[np.ndarray, np.ndarray]:
        raw = np.asarray(raw if isinstance(raw, np.ndarray) else list(raw))
        r = index.rows(raw)
        return (r[r >= 0] + 1).astype(np.int64), r >= 0

    return known


def kinds_differ(known: np.ndarray, wanted: np.ndarray, what: str) -> str | None:
    """The words that say the ids given are of another type than the run's; None when they agree."""
    k_kind, w_kind = kind(known), kind(wanted)
    if k_kind == w_kind or len(known) == 0 or len(wanted) == 0:
        return None
    return (f"the run's {what} ids are {k_kind} (e.g. {show(np.asarray(known)[0])}), these are {w_kind} "
            f"(e.g. {show(np.asarray(wanted)[0])}); ids match by their exact text")


def check_kinds(known: np.ndarray, wanted: np.ndarray, found: np.ndarray, where: str, what: str) -> str | None:
    """Ids of another type than the run's: none matched (found (U,)), a DataError; some, a warning line."""
    detail = kinds_differ(known, wanted, what)
    if detail is None or found.all():
        return None
    n, hit = len(wanted), int(found.sum())
    if hit == 0:
        raise DataError(f"{where}: none of its {n:,} {what} ids is known to the run ({detail})")
    return f"warning: {where}: {hit:,} of {n:,} {what} ids are known to the run ({detail}); the others are cold"


# -----------------------------------------------------------------------------
# the Python API's id arguments

def _is_missing(x) -> bool:
    return (x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))
            or type(x).__name__ in ("NAType", "NaTType"))  # pandas.NA, pandas.NaT


def _series_kind(values) -> str | None:
    """"pandas" / "polars" for a Series of either, else None (neither library is imported here)."""
    module = type(values).__module__.split(".")[0]
    return module if module in ("pandas", "polars") and type(values).__name__ == "Series" else None


def from_python(values, known: np.ndarray, name: str, allow_empty: bool = False,
                allow_repeats: bool = False) -> np.ndarray:
    """A Python API argument (`name`: "users", "history": a list, tuple, 1-D array or pandas /
    polars Series of ints and strings) -> (n,) int64 when every id is an integer, else object.
    Refused in one UsageError line naming the position: a bare string or number, a missing id, a
    boolean, other objects, non-integral floats, integral floats where the run's ids are text (where
    they are integers, 1.0 is 1: pandas' integer column with a gap), empty or repeated unless allowed."""
    series = _series_kind(values)
    if isinstance(values, (str, bytes)) or not (isinstance(values, (list, tuple, np.ndarray)) or series):
        raise UsageError(f"{name}={show(values)}: expected a list (or tuple, numpy array, pandas or polars "
                         f"Series) of ids, not {type(values).__name__}" +
                         (f"; for one id write {name}=[{values!r}]" if isinstance(values, (str, int)) else ""))
    if series == "pandas":
        values = values.tolist()  # NaN and pandas.NA stay visible (to_numpy would make them floats)
    elif series == "polars":
        values = values.to_list()  # nulls become None
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UsageError(f"{name}: expected a 1-D array of ids, got shape {values.shape}")
        if values.dtype.kind in "iu":
            return _checked(values.astype(np.int64), name, allow_empty, allow_repeats)
        if values.dtype.kind == "U":
            return _checked(values.astype(object), name, allow_empty, allow_repeats)
        values = values.tolist()
    integer_run = kind(known) == "integers"
    out = []
    for i, x in enumerate(values):
        if _is_missing(x):
            raise UsageError(f"{name}[{i}] is missing ({show(x)}): every id must be given")
        if isinstance(x, (bool, np.bool_)):
            raise UsageError(f"{name}[{i}]={x!r}: a boolean is not an id")
        if isinstance(x, (int, np.integer)):
            if not -2**63 <= int(x) < 2**63:
                raise UsageError(f"{name}[{i}]={show(x)}: beyond 64-bit integers")
            out.append(int(x))
        elif isinstance(x, str):
            out.append(x)
        elif isinstance(x, (float, np.floating)):
            if not math.isfinite(x) or x != int(x):
                raise UsageError(f"{name}[{i}]={x!r}: not an id (ids are integers or strings)")
            if not integer_run:
                raise UsageError(f"{name}[{i}]={x!r}: a float, and the run's ids are text; pass the id's exact "
                                 f"text (e.g. {str(int(x))!r})")
            out.append(int(x))
        else:
            raise UsageError(f"{name}[{i}]: expected an id (an int or a str), got a {type(x).__name__}")
    if out and all(type(x) is int for x in out):
        arr = np.array(out, dtype=np.int64)
    elif out and all(type(x) is str for x in out):
        arr = np.array(out, dtype=object)
    elif out:  # ints and strings: the same thing as their texts (the one rule), and one column type out
        arr = np.array([str(x) for x in out], dtype=object)
    else:
        arr = np.zeros(0, dtype=np.int64 if integer_run else object)
    return _checked(arr, name, allow_empty, allow_repeats)


def _checked(arr: np.ndarray, name: str, allow_empty: bool, allow_repeats: bool) -> np.ndarray:
    if len(arr) == 0 and not allow_empty:
        raise UsageError(f"{name}: empty; pass at least one id (or None for every user)")
    if not allow_repeats and len(arr):
        _, first, counts = np.unique(_texts(arr), return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = arr[np.sort(first[counts > 1])[0]]
            raise UsageError(f"{name}: {show(dup)} is listed more than once")
    return arr


