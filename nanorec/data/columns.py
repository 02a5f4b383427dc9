"""Column typing and checks: a polars column of ids, times, weights or a filter
as numpy, or a DataError naming the file, the row, the column and the bad value.

Ids get one type per column: int64 for integer columns (and whole-number floats), else
strings; a CSV/TSV column is integer only when every value is written as one (17, not 017,
+17 or " 17"). Times are numbers, dates, ISO date text, or text read with ``time_format``;
a day/month date such as 03/01/2024 is never guessed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UsageError, one_line, show

_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1


# an integer written as str(int) writes it: no sign but "-", no leading zero, no space
_CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"


# -----------------------------------------------------------------------------
# where a row came from (for error messages)

@dataclass(frozen=True)
class Where:
    """Names a row in an error message: a text file's line (data row r is on line r + 2), else "row N
    (from 0)" as df.row(N) counts, in its folder's Parquet file; `rows` maps filtered rows back."""
    path: str
    text: bool = False
    parts: tuple = ()            # folder: ((file path, first row), ...)
    rows: np.ndarray | None = None
    index_names: tuple = ()      # pandas: named index levels, for a hint when a column is missing

    def row(self, r: int) -> str:
        r = int(self.rows[r]) if self.rows is not None else int(r)
        if self.text:
            return f"{self.path}:{r + 2}"
        for file, first in reversed(self.parts):
            if r >= first:
                return f"{file}: row {r - first} (from 0)"
        return f"{self.path}: row {r} (from 0)"


def as_where(where) -> Where:
    """A path as its Where (recommend.read_user_list passes one to column_ids)."""
    if isinstance(where, Where):
        return where
    lower = os.fspath(where).lower()
    return Where(os.fspath(where), text=lower.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")))


def _polars():
    import polars as pl  # imported late: `nanorec --help` and the .txt path need no polars
    return pl


# -----------------------------------------------------------------------------
# event logs: required columns and the filter

def _columns_list(df) -> str:
    cols = df.columns
    return ", ".join(cols[:30]) + (f", ... ({len(cols) - 30} more)" if len(cols) > 30 else "")


def _require_columns(where, df, cols, what=None, advice=""):
    for c in cols:
        if c not in df.columns:
            kind = (what or {}).get(c, "column")
            hint = f"; {c!r} is the index: call reset_index() first" if c in where.index_names else ""
            raise DataError(f"{where.path}: missing {kind} {c!r} (columns are {_columns_list(df)}){advice}{hint}")


def parse_filter(text: str, key: str = "filter"):
    """"column=value[,value...]" -> (column, [values]); `key` names the setting in the error."""
    col, eq, rest = str(text).partition("=")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if not eq or not col.strip() or not values:
        raise UsageError(f"{key}={text!r}: expected column=value[,value...], e.g. event_type=purchase")
    return col.strip(), values


def filter_mask(where, df, col, values, key: str = "filter") -> np.ndarray:
    pl = _polars()
    try:
        as_text = df[col].cast(pl.Utf8)
    except pl.exceptions.PolarsError:
        raise DataError(f"{where.path}: {key} column {col!r} has type {df[col].dtype}, "
                        "which cannot be compared with text values") from None
    return as_text.is_in(values).fill_null(False).to_numpy()


def _examples(s, k: int = 5) -> str:
    vals = s.cast(_polars().Utf8, strict=False).drop_nulls().unique(maintain_order=True).head(k).to_list()
    return ", ".join(show(v) for v in vals) or "only empty values"


# -----------------------------------------------------------------------------
# columns -> numpy, with the first bad row named

def _first(mask) -> int:
    """Index of the first True of a boolean Series."""
    return int(mask.arg_max())


def _no_nulls(where, s, col):
    if s.null_count():
        raise DataError(f"{where.row(_first(s.is_null()))}: column {col!r} is empty")


def _bad_type(where, s, col, expected):
    raise DataError(f"{where.path}: column {col!r} has type {s.dtype}, expected {expected}")


def column_ids(where, df, col):
    """Original ids, one type per column (module docstring); NaN, fractions, booleans... are errors."""
    pl = _polars()
    where = as_where(where)
    s = df[col]
    _no_nulls(where, s, col)
    dt = s.dtype
    if dt.is_integer():
        return _int64(where, s, col)
    if dt.is_float() or dt.is_decimal():
        return _whole_numbers(where, s, col)
    if dt == pl.Categorical or dt == pl.Enum:
        return s.cast(pl.Utf8).to_numpy().astype(object)
    if dt == pl.Utf8:
        return _text_ids(where, s, col) if where.text else s.to_numpy().astype(object)
    _bad_type(where, s, col, "integer or string ids")


def _fits_int64(pl):
    return (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)


def _int64(where, s, col):
    pl = _polars()
    if s.dtype not in _fits_int64(pl):  # UInt64, Int128, ...: values may not fit
        out = s > _I64_MAX
        if s.dtype.is_signed_integer():  # an unsigned series cannot even be compared with a negative
            out = out | (s < _I64_MIN)
        if out.any():
            i = _first(out)
            raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, beyond the int64 range of ids")
    return s.cast(pl.Int64).to_numpy()


def _whole_numbers(where, s, col):
    """A float (or decimal) id column as int64 when every value is a whole number in range."""
    pl = _polars()
    ints = s.cast(pl.Int64, strict=False)  # NaN, inf and out-of-range values become null
    bad = (ints.is_null() | (ints.cast(s.dtype) != s)).fill_null(True)
    if bad.any():
        i = _first(bad)
        v = s[i]
        f = float(v)
        if f != f or f in (float("inf"), float("-inf")):
            problem = "not a number; ids must be integers or strings"
        elif not _I64_MIN <= f <= _I64_MAX:
            problem = "beyond the int64 range of ids"
        else:
            problem = "not a whole number; a float id column must hold whole numbers"
        raise DataError(f"{where.row(i)}: column {col!r} is {show(v)}, {problem}")
    return ints.to_numpy()


# how str(int) and str(float) write numbers: no "+", no leading zero, no space
_PLAIN_NUMBER = r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?|[+-]?(?i:nan|inf|infinity))$"


def _text_ids(where, s, col):
    """A text file's id column by how every value is written: int64 as str(int) writes them; whole
    numbers as 17.0 (pandas' integer column with a gap); else strings as written (005461 is not 5461)."""
    pl = _polars()
    if s.str.contains(_CANONICAL_INT).all():
        return _text_int64(where, s, col, s)
    if s.str.contains(_PLAIN_NUMBER).all():
        floats = s.cast(pl.Float64, strict=False)
        if floats.null_count() == 0:
            return _whole_numbers(where, floats, col)
    if s.str.to_lowercase().is_in(["true", "false"]).all():  # a flag column named by mistake
        raise DataError(f"{where.path}: column {col!r} has type Boolean (every value true or false), "
                        "expected integer or string ids")
    return s.to_numpy().astype(object)


def _integer_column(where, df, col):
    """An id column that must be integer (challenge folders: encoded ids, so +7 and 007 are 7)."""
    pl = _polars()
    ids = column_ids(where, df, col)
    if ids.dtype != object:
        return ids
    text = df[col].cast(pl.Utf8).str.strip_chars()
    bad = ~text.str.contains(r"^[+-]?[0-9]+$")
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {show(ids[i])}, expected an integer id")
    return _text_int64(where, text, col, ids)


def _text_int64(where, text, col, written):
    """Integer text as int64, or a DataError naming the first value (as `written`) beyond int64."""
    ints = text.cast(_polars().Int64, strict=False)
    if ints.null_count():
        i = _first(ints.is_null())
        raise DataError(f"{where.row(i)}: column {col!r} is {show(written[i])}, beyond the int64 range of ids")
    return ints.to_numpy()


def _finite(where, f, col, original):
    bad = f.is_nan() | f.is_infinite()
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {show(original[i])}, expected a finite number")
    return f


def _timestamps(where, df, col, time_format=None):
    """Sortable times: integers as int64 (ns stay exact), other numbers float64, dates as integers, date text parsed."""
    pl = _polars()
    s = df[col]
    _no_nulls(where, s, col)
    dt = s.dtype
    if time_format:
        return _formatted_times(where, s, col, time_format)
    if dt in _fits_int64(pl):
        return s.cast(pl.Int64).to_numpy()
    if dt.is_numeric():
        return _finite(where, s.cast(pl.Float64), col, s).to_numpy()
    if dt == pl.Date or dt == pl.Datetime:
        return s.cast(pl.Int64).to_numpy()
    if dt == pl.Categorical or dt == pl.Enum:
        s, dt = s.cast(pl.Utf8), pl.Utf8
    if dt != pl.Utf8:
        _bad_type(where, s, col, "numbers, dates or date strings")
    stripped = s.str.strip_chars()
    if stripped.str.contains(r"^-?[0-9]+$").all():
        ints = stripped.cast(pl.Int64, strict=False)  # exact: epoch nanoseconds do not fit a float64
        if ints.null_count() == 0:
            return ints.to_numpy()
    numbers = stripped.cast(pl.Float64, strict=False)
    if numbers.null_count() == 0:
        return _finite(where, numbers, col, s).to_numpy()
    _no_day_month_dates(where, s, col)
    try:
        parsed = s.str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:  # no date format fits the first value
        parsed = pl.Series([None] * len(s), dtype=pl.Datetime)
    if parsed.null_count():
        i = _first(parsed.is_null())
        like = f" like {show(s[_first(parsed.is_not_null())])}" if parsed.null_count() < len(s) else ""
        raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, expected a number or a date{like}")
    return parsed.cast(pl.Int64).to_numpy()


# 03/01/2024, 3-1-24, 03.01.2024 10:00: day and month first, in an order only the writer knows
_DAY_MONTH = r"^\s*([0-9]{1,2})([-/.])([0-9]{1,2})[-/.][0-9]{2,4}\b"


def _no_day_month_dates(where, s, col):
    """polars reads 03/01/2024 as 3 January, pandas as March 1: never guess, ask for time_format."""
    pl = _polars()
    ambiguous = s.str.contains(_DAY_MONTH)
    if not ambiguous.any():
        return
    i = _first(ambiguous)
    dates = s.filter(ambiguous)
    sep = dates.str.extract(_DAY_MONTH, 2)[0]
    first, second = (dates.str.extract(_DAY_MONTH, g).cast(pl.Int64) for g in (1, 3))
    day_first, month_first = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    if (first > 12).any() and not (second > 12).any():
        say = f"time_format={day_first} (its first numbers go above 12: days)"
    elif (second > 12).any() and not (first > 12).any():
        say = f"time_format={month_first} (its second numbers go above 12: days)"
    else:
        say = f"time_format={day_first} (day first) or time_format={month_first} (month first)"
    raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, a date with the day and the month first, "
                    f"in an order nanorec does not guess: set {say}")


def _time_unit(s, time_format=None) -> str | None:
    """What one step of `_timestamps`' output is for this column (see Dataset.time_unit)."""
    pl = _polars()
    if time_format:  # _formatted_times parses to polars' default Datetime unit
        return "us"
    dt = s.dtype
    if dt == pl.Date:
        return "d"
    if dt == pl.Datetime:
        return dt.time_unit
    if dt in (pl.Utf8, pl.Categorical, pl.Enum):
        head = s.cast(pl.Utf8).drop_nulls().head(100)
        if head.str.strip_chars().cast(pl.Float64, strict=False).null_count() == 0:
            return None  # numbers written as text
        return head.str.to_datetime(strict=False).dtype.time_unit
    return None


def _formatted_times(where, s, col, time_format: str):
    """A time column read with the user's strptime format: every value must match it."""
    pl = _polars()
    if s.dtype == pl.Date or s.dtype == pl.Datetime:
        raise DataError(f"{where.path}: column {col!r} already holds dates ({s.dtype}); "
                        f"time_format={time_format} reads text: leave it out")
    if not (s.dtype.is_integer() or s.dtype in (pl.Utf8, pl.Categorical, pl.Enum)):  # 20240103.0 is no text
        _bad_type(where, s, col, f"text or integers to read with time_format={time_format}")
    try:
        parsed = s.cast(pl.Utf8).str.strip_chars().str.strptime(pl.Datetime, time_format, strict=False)
    except pl.exceptions.PolarsError as e:
        raise UsageError(f"time_format={time_format!r}: not a date format polars reads "
                         f"({one_line(e)})") from None
    if parsed.null_count():
        i = _first(parsed.is_null())
        raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, which does not match "
                        f"time_format={time_format}")
    return parsed.cast(pl.Int64).to_numpy()


def _weights(where, df, col) -> np.ndarray:
    """(rows,) float64 weights, each finite and > 0: a weight <= 0 is an error, not a silently dropped row."""
    pl = _polars()
    s = df[col]
    _no_nulls(where, s, col)
    if s.dtype == pl.Utf8:
        f = s.str.strip_chars().cast(pl.Float64, strict=False)
        if f.null_count():
            i = _first(f.is_null())
            raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, expected a number (a weight)")
    elif s.dtype.is_numeric():
        f = s.cast(pl.Float64)
    else:
        _bad_type(where, s, col, "numbers (weights)")
    f = _finite(where, f, col, s)
    bad = f <= 0
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, a weight <= 0; every weight must be "
                        "> 0 (leave such rows out of the log, or drop them with filter=)")
    values = f.to_numpy()
    _float32_weights(where, values, col, s)
    return values


F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def _float32_weights(where, values: np.ndarray, col: str, s) -> None:
    """Training adds weights up in float32: a weight it turns into 0 (a target that silently
    stops counting) or inf, or a sum beyond float32, is an error naming the row, before any work."""
    bad = (values < F32_TINY) | (values > F32_MAX)
    if bad.any():
        i = int(np.argmax(bad))
        what = "0" if values[i] < F32_TINY else "inf"
        raise DataError(f"{where.row(i)}: column {col!r} is {show(s[i])}, which is {what} in float32 (training's "
                        f"number type: weights from {F32_TINY:.2g} to {F32_MAX:.2g}); scale the weights")
    total = float(values.sum())
    if total > F32_MAX:
        raise DataError(f"{where.path}: column {col!r} sums to {total:.3g}, beyond float32's largest number "
                        f"({F32_MAX:.2g}; training adds weights up in float32); divide every weight by one constant")
