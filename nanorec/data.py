"""Interactions in, per-user chronological item sequences out.

The inputs understood, chosen by what the path (or object) is:

- an S3-Rec ``.txt`` file: one user a line, ``user_id item_id item_id ...`` in
  chronological order (a sibling ``*_item2attributes.json`` is noticed);
- a challenge folder: ``train.csv`` (user_id,item_id,rating,timestamp),
  ``test.csv`` (user_id,...), optionally ``id_mappings.json`` and
  ``item_metadata.csv``; encoded ids start at 0 and item 0 is a real item;
- an event log: a ``.csv``, ``.tsv`` (either optionally ``.gz``), ``.parquet``
  file, a folder of Parquet files (read in sorted file name order), or an
  in-memory pandas / polars DataFrame or pyarrow Table, with columns named by
  the caller (default ``user_id,item_id,timestamp``). Rows are ordered by the
  time column, ties kept in file order; ``time_col="none"`` keeps file order.
  An optional ``filter`` (``column=value[,value...]``) keeps matching rows and
  an optional ``weight_col`` gives each event a weight (rows <= 0 dropped).

Every bad input raises DataError with one line: the file, with ``:line`` for a
text file's row or ``row N (from 0)`` for a Parquet file's or a frame's, the
column, the bad value and the problem.

Items get internal indices 1..N (0 is padding and never a recommendation);
``Dataset.item_ids[i]`` is the original id of index i. Ids stay integers
(int64) when the column is integer (or whole-number floats), else strings.
Sequences are stored flat (CSR): ``offsets`` (U+1,) and ``items`` (total,),
so 2.5M interactions cost two numpy arrays, not millions of Python lists.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass, field

import numpy as np


from .errors import DataError, UsageError  # noqa: F401  (re-exported: `from nanorec.data import DataError` keeps working)


# -----------------------------------------------------------------------------
# flat per-user sequences

@dataclass
class Sequences:
    """Variable-length integer sequences in CSR form: row u is items[offsets[u]:offsets[u+1]]."""
    offsets: np.ndarray  # (U+1,) int64, offsets[0] == 0
    items: np.ndarray    # (offsets[-1],) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, seqs) -> "Sequences":
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if len(seqs) else np.zeros(0, np.int64)
        return cls(offsets, items.astype(np.int64, copy=False))

    def to_lists(self) -> list[list[int]]:
        return [self[u].tolist() for u in range(len(self))]

    def drop_last(self, k: int) -> "Sequences":
        """Every row without its last k items (rows shorter than k become empty)."""
        if k == 0:
            return self
        new_len = np.maximum(self.lengths - k, 0)
        return self._keep_prefix(new_len)

    def _keep_prefix(self, new_len: np.ndarray) -> "Sequences":
        pos = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)  # position inside its row
        keep = pos < np.repeat(new_len, self.lengths)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(new_len, out=offsets[1:])
        return Sequences(offsets, self.items[keep])

    def take(self, rows: np.ndarray) -> "Sequences":
        """A new Sequences of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = np.repeat(self.offsets[:-1][rows], lengths)
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        return Sequences(offsets, self.items[starts + within])


def item_counts(seqs: Sequences, num_items: int) -> np.ndarray:
    """(N+1,) interaction counts per item index; index 0 (padding) is 0."""
    counts = np.bincount(seqs.items, minlength=num_items + 1).astype(np.int64)
    counts[0] = 0
    return counts


# -----------------------------------------------------------------------------
# the loaded data set

@dataclass
class Dataset:
    name: str
    path: str
    kind: str                 # "s3rec" | "challenge" | "table"
    user_ids: np.ndarray      # (U,) original user ids, row u of `sequences`
    item_ids: np.ndarray      # (N+1,) original item ids; item_ids[0] is the padding slot
    sequences: Sequences      # full chronological histories, internal item indices 1..N
    test_users: np.ndarray | None = None      # challenge: the user ids of test.csv (original)
    attributes_path: str | None = None        # S3-Rec: the sibling *_item2attributes.json
    metadata_path: str | None = None          # challenge: item_metadata.csv
    # event logs: the columns read but not used (callers print "ignored columns: a, b")
    ignored_columns: list[str] = field(default_factory=list)
    # event logs with weight_col: (total,) float32, parallel to sequences.items (> 0);
    # None without a weight column. Nothing consumes it yet (training ignores it).
    weights: np.ndarray | None = None
    # event logs with a time column: (total,) each event's sortable time, parallel to
    # sequences.items (None: time_col=none, S3-Rec .txt, challenge folders); what holdout=time
    # splits on. time_unit says what one step of it is: "ns"/"us"/"ms" (datetimes and date
    # strings, from the epoch), "d" (dates), None (plain numbers: the column's own units).
    times: np.ndarray | None = None
    time_unit: str | None = None

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    @property
    def has_test_targets(self) -> bool:
        # A challenge folder's test answers are hidden: its last train item is validation.
        return self.kind != "challenge"

    def item_index(self) -> dict:
        """original id -> internal index."""
        return {k: i for i, k in enumerate(self.item_ids.tolist()) if i > 0}

    def user_index(self) -> dict:
        return {k: u for u, k in enumerate(self.user_ids.tolist())}


# -----------------------------------------------------------------------------
# splits: which items are learned from, which select the model, which test it

HOLDOUTS = ("loo", "last", "none")


@dataclass
class EvalSet:
    users: np.ndarray        # (M,) rows of Dataset.user_ids
    histories: Sequences     # (M rows) what the model sees
    targets: np.ndarray      # (M,) internal index of the held-out item


@dataclass
class Split:
    train: Sequences         # one row per user: what training learns from
    valid: EvalSet | None    # None with holdout="none" (no selection: a fixed number of steps)
    test: EvalSet | None     # None for a challenge folder (no answers) and holdout="last"/"none"


def _eval_set(seqs: Sequences, drop: int) -> EvalSet:
    """Target = the item `drop` places before the end; history = everything before it.
    Users whose history would be empty are left out (nothing to condition on)."""
    rows = np.nonzero(seqs.lengths >= drop + 2)[0]
    sub = seqs.take(rows)
    targets = sub.items[sub.offsets[1:] - 1 - drop]
    return EvalSet(rows, sub.drop_last(drop + 1), targets)


def split(ds: Dataset, all_data: bool = False, holdout: str = "loo") -> Split:
    """Which of each user's items train, validate and test.

    holdout="loo" (leave-one-out, the benchmarks' protocol): test = last item,
      valid = second to last, train = the rest. A challenge folder's test answers
      are hidden, so there valid = its last train.csv item and there is no test.
    holdout="last": valid = last item, train = the rest, no test (a shop's model,
      selected on every user's most recent event).
    holdout="none": every item is a training target; no validation, no test
      (the model to ship, trained for a step count chosen on a validated run).
    all_data: training also learns the validation targets (loo: the test target stays unseen).
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout={holdout!r}: expected one of {', '.join(HOLDOUTS)}")
    seqs = ds.sequences
    if holdout == "none":
        return Split(train=seqs, valid=None, test=None)
    held = 2 if holdout == "loo" and ds.has_test_targets else 1
    valid = _eval_set(seqs, held - 1)
    test = _eval_set(seqs, 0) if held == 2 else None
    train = seqs.drop_last(held - 1 if all_data else held)
    return Split(train=train, valid=valid, test=test)


# -----------------------------------------------------------------------------
# holdout=time: one global split time (new code, kept apart from the splits above)

@dataclass
class TargetSets:
    """A multi-target evaluation set: each user's history before a split time and the set of
    items the user bought in the window after it (holdout=time's test split)."""
    users: np.ndarray        # (M,) rows of Dataset.user_ids, each with history and targets
    histories: Sequences     # (M rows) every event before the split time
    targets: Sequences       # (M rows) the distinct items of the window, in first-bought order
    cold_users: np.ndarray   # (C,) users with window events but no event before the split time
    cold_targets: Sequences  # (C rows) their distinct window items (reported apart: popularity fallback)


def parse_split_time(text: str):
    """split_time's value -> ("fraction", f) for 0 < f < 1, ("number", x) for any other number
    (a time in the column's own units), ("iso", datetime) for an ISO date or date-time, or None."""
    import datetime as _dt
    text = str(text).strip()
    try:
        x = float(text)
    except ValueError:
        x = None
    if x is not None:
        if not np.isfinite(x):
            return None
        return ("fraction", x) if 0 < x < 1 else ("number", x)
    try:
        return "iso", _dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return None


def _time_unit(s) -> str | None:
    """What one step of `_timestamps`' output is for this column (see Dataset.time_unit)."""
    pl = _polars()
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


_PER_DAY_US = 86_400 * 10 ** 6


def _iso_to_column(when, unit: str | None, text: str, where: str):
    """An ISO date/time as a value of the time column (an integer: events t < value are before it)."""
    import datetime as _dt
    if unit is None:
        raise DataError(f"split_time={text}: {where}'s time column holds plain numbers, not dates; give "
                        "split_time as a number in the column's units or a fraction of the log's events like 0.9")
    if when.tzinfo is not None:  # the reader keeps a zone-aware column in UTC; naive values as written
        when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    d = when - _dt.datetime(1970, 1, 1)
    us = (d.days * 86_400 + d.seconds) * 10 ** 6 + d.microseconds
    if unit == "ns":
        return us * 1000
    per = {"us": 1, "ms": 1000, "d": _PER_DAY_US}[unit]
    return -(-us // per)  # integer t < us / per  <=>  t < ceil(us / per)


def show_time(value, unit: str | None) -> str:
    """A value of a time column as a person reads it (ISO for dates and datetimes)."""
    import datetime as _dt
    if unit is None:
        return f"{value:g}" if isinstance(value, float) else str(value)
    us = int(value) * {"ns": 1, "us": 1, "ms": 1000, "d": _PER_DAY_US}[unit] // (1000 if unit == "ns" else 1)
    return (_dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=us)).isoformat(sep=" ")


VALID_SHARE_OF_DATES = 0.9  # a split_time given as a time: validation = the last 10% of the events before it


def split_times(ds: Dataset, split_time: str) -> tuple:
    """-> (valid_time, test_time). The test window is every event at or after test_time: split_time
    itself, or for a fraction f the time of the event at position floor(f x events) in time order
    (about a share f of the events come before it). The validation window applies the same rule
    inside the events before test_time: valid_time is the time of the event at position
    floor(f x those events) (f = VALID_SHARE_OF_DATES = 0.9 when split_time is a time), so it
    depends on nothing at or after test_time. Ties at a window's first time go into that window."""
    where = ds.path
    if ds.times is None:
        why = {"s3rec": "an S3-Rec .txt file has no times", "challenge": "a challenge folder's test is hidden "
               "(test.csv); holdout=time splits an event log"}.get(ds.kind, "time_col=none: the rows have no times")
        raise UsageError(f"holdout=time needs a time column ({where}: {why}); set time_col= or use holdout=loo")
    parsed = parse_split_time(split_time)
    if parsed is None:
        raise UsageError(f"split_time={split_time!r}: expected an ISO date/time (2024-03-01, 2024-03-01T12:00) "
                         "or a fraction of the log's events like 0.9")
    kind, value = parsed
    ordered = np.sort(ds.times)  # (total,)
    n = len(ordered)
    if kind == "iso":
        test = _iso_to_column(value, ds.time_unit, split_time, where)
    elif kind == "fraction":
        test = ordered[min(int(value * n), n - 1)]
    else:
        test = value
    if ordered.dtype.kind in "iu":  # integer t < x  <=>  t < ceil(x): exact comparisons on int64 times
        test = int(test) if isinstance(test, (int, np.integer)) else int(np.ceil(test))
    span = f"the log runs from {show_time(ordered[0], ds.time_unit)} to {show_time(ordered[-1], ds.time_unit)}"
    n_before = int(np.searchsorted(ordered, test, side="left"))  # events t < test
    if n_before == 0:
        raise DataError(f"split_time={split_time}: no event before it ({where}: {span})")
    if n_before == n:
        raise DataError(f"split_time={split_time}: no event at or after it, nothing to test ({where}: {span})")
    share = value if kind == "fraction" else VALID_SHARE_OF_DATES
    valid = ordered[int(share * n_before)]
    if valid <= ordered[0]:
        raise DataError(f"split_time={split_time}: only {n_before:,} events before it, too few to hold a validation "
                        f"window and training events before that ({where}: {span}); choose a later split_time")
    return valid, test


def time_split(ds: Dataset, split_time: str, all_data: bool = False) -> Split:
    """holdout=time: one split time for everyone, as a shop judges a model ("trained on everything
    before Monday, how good are next week's lists?").

    test: every user with events both before and at/after the split time; history = every event
      before it, targets = the distinct items of the user's window after it (multi-target; an item
      the user had bought before still counts: the lists exclude the history, as under loo).
      Users whose first event is at/after it are cold: TargetSets.cold_users, reported apart.
    valid: the last events before the split time, by the same rule (split_times), from training data
      only. It is a
      single-target set so that early stopping, fusion's weight search and the baselines' own
      selection work unchanged: each user with an event in [valid time, split time) and one before
      it gets the FIRST event of that window as its target (the rest of the window is ignored for
      selection), history = the events before the valid time.
    train: the events before the valid time (all_data: every event before the split time).
    No event at or after the split time reaches training or selection."""
    t_valid, t_test = split_times(ds, split_time)
    seqs, times = ds.sequences, ds.times
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    n_test = np.bincount(row[times < t_test], minlength=len(seqs))   # (U,) events before the split time
    n_valid = np.bincount(row[times < t_valid], minlength=len(seqs))  # (U,) events before the valid time
    # validation: first event of [t_valid, t_test) as the one target
    vrows = np.nonzero((n_valid >= 1) & (n_test > n_valid))[0]
    if len(vrows) == 0:
        raise DataError(f"split_time={split_time}: no user has an event in the validation window "
                        f"[{show_time(t_valid, ds.time_unit)}, {show_time(t_test, ds.time_unit)}) and one before it; "
                        "choose a later split_time")
    valid = EvalSet(vrows, seqs._keep_prefix(n_valid).take(vrows), seqs.items[seqs.offsets[vrows] + n_valid[vrows]])
    # test: everything after the split time, as a set per user
    after = seqs.lengths > n_test
    warm, cold = np.nonzero(after & (n_test >= 1))[0], np.nonzero(after & (n_test == 0))[0]
    if len(warm) == 0:
        raise DataError(f"split_time={split_time}: no user has events both before and after it; nothing to test")
    window = _suffix(seqs, n_test)
    test = TargetSets(warm, seqs._keep_prefix(n_test).take(warm), _distinct(window.take(warm)),
                      cold, _distinct(window.take(cold)))
    train = seqs._keep_prefix(n_test if all_data else n_valid)
    return Split(train=train, valid=valid, test=test)


def _suffix(seqs: Sequences, start: np.ndarray) -> Sequences:
    """Every row from position start[u] on."""
    pos = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], seqs.lengths)
    keep = pos >= np.repeat(start, seqs.lengths)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(np.maximum(seqs.lengths - start, 0), out=offsets[1:])
    return Sequences(offsets, seqs.items[keep])


def _distinct(seqs: Sequences) -> Sequences:
    """Each row's distinct items, in order of first occurrence."""
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    V = int(seqs.items.max(initial=0)) + 1
    _, first = np.unique(row * V + seqs.items, return_index=True)
    first = np.sort(first)
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[first], minlength=len(seqs)), out=offsets[1:])
    return Sequences(offsets, seqs.items[first])


def split_like(ds: Dataset, cfg) -> Split:
    """The split a run's config asks for (any object with Config's holdout, split_time, all_data):
    `time_split` for holdout=time, else `split`."""
    if cfg.holdout == "time":
        return time_split(ds, cfg.split_time, cfg.all_data)
    return split(ds, all_data=cfg.all_data, holdout=cfg.holdout)


# -----------------------------------------------------------------------------
# readers

_EVENT_LOG_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1


def load(source, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp",
         filter: str | None = None, weight_col: str | None = None) -> Dataset:
    """Read any supported input; raise DataError with a one-line reason on bad input.

    source: a path (S3-Rec .txt, challenge folder, event log file or folder of
    Parquet files) or an in-memory frame (pandas / polars DataFrame, pyarrow
    Table; see `from_frame`). The column arguments, `filter` ("column=value[,value...]",
    rows kept when the column, as a string, equals one of the values) and
    `weight_col` (a numeric column; rows with weight <= 0 dropped; the weights
    land in `Dataset.weights`, which nothing consumes yet) apply to event logs.
    time_col="none" (or None) keeps file order."""
    if not isinstance(source, (str, os.PathLike)):
        return from_frame(source, user_col, item_col, time_col, filter=filter, weight_col=weight_col)
    path = os.fspath(source)
    if not path.strip():
        raise UsageError("empty data path: expected a file or folder of interactions")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "train.csv")):
            _event_options_only(path, "a challenge folder", filter, weight_col)
            return read_challenge(path)
        if _parquet_files(path):
            return read_table(path, user_col, item_col, time_col, filter=filter, weight_col=weight_col)
        raise DataError(f"{path}: a folder must be a challenge folder with train.csv (and test.csv) "
                        "or a folder of .parquet files")
    lower = path.lower()
    if lower.endswith(".txt"):
        _event_options_only(path, "an S3-Rec .txt file", filter, weight_col)
        return read_s3rec(path)
    if lower.endswith(_EVENT_LOG_SUFFIXES):
        return read_table(path, user_col, item_col, time_col, filter=filter, weight_col=weight_col)
    raise DataError(f"{path}: unknown format (expected .txt, .csv, .tsv, .csv.gz, .tsv.gz, .parquet, "
                    "a folder of .parquet files or a challenge folder)")


def load_like(cfg, source=None) -> Dataset:
    """`load` with a run's column, filter and weight settings (any object with
    Config's attributes); `source` defaults to cfg.data (a path or a frame)."""
    return load(cfg.data if source is None else source, cfg.user_col, cfg.item_col, cfg.time_col,
                filter=cfg.filter or None, weight_col=cfg.weight_col or None)


def _event_options_only(path, what, filter, weight_col):
    # Silently ignoring a filter would train on rows the user meant to drop.
    for key, value in (("filter", filter), ("weight_col", weight_col)):
        if value:
            raise UsageError(f"{key}={value!r}: applies to event logs (.csv/.tsv/.parquet, frames), "
                             f"not to {what} ({path})")


def _finish(name, path, kind, user_ids, user_codes, item_orig, weights=None, **extra) -> Dataset:
    """Encode items (sorted original ids -> 1..N) and build CSR rows from
    (user_code, item) pairs that are already in chronological order per user."""
    if len(item_orig) == 0:
        raise DataError(f"{path}: no interactions")
    uniq, inverse = np.unique(item_orig, return_inverse=True)
    items = inverse.astype(np.int64) + 1  # 0 is padding
    order = np.argsort(user_codes, kind="stable")  # group by user, keep chronological order
    counts = np.bincount(user_codes, minlength=len(user_ids))
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    item_ids = np.empty(len(uniq) + 1, dtype=uniq.dtype if uniq.dtype != object else object)
    item_ids[1:] = uniq
    item_ids[0] = -1 if item_ids.dtype.kind in "iu" else ""
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)[order]
    return Dataset(name=name, path=path, kind=kind, user_ids=np.asarray(user_ids),
                   item_ids=item_ids, sequences=Sequences(offsets, items[order]), weights=weights, **extra)


def _show(value, limit: int = 40) -> str:
    """repr of a bad value, cut so that one error stays one readable line."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


# -----------------------------------------------------------------------------
# S3-Rec .txt

_ASCII_INT = re.compile(r"[+-]?[0-9]+")


def read_s3rec(path: str) -> Dataset:
    users, user_codes, items = [], [], []
    line_of_user = {}
    with open(path, "rb") as f:  # bytes: a non-UTF-8 line is reported by number, not as a traceback
        for lineno, raw in enumerate(f, 1):
            fields = _decode_line(path, lineno, raw).split()
            if not fields:
                continue
            ids = _int_fields(path, lineno, fields)
            if len(ids) < 2:
                raise DataError(f"{path}:{lineno}: a line needs a user id and at least one item id")
            if ids[0] in line_of_user:
                raise DataError(f"{path}:{lineno}: user id {ids[0]} already has line {line_of_user[ids[0]]}; "
                                "a user's items belong on one line")
            line_of_user[ids[0]] = lineno
            user_codes.extend([len(users)] * (len(ids) - 1))
            users.append(ids[0])
            items.extend(ids[1:])
    if not users:
        raise DataError(f"{path}: no interactions (empty file)")
    stem = os.path.basename(path)[:-4]
    attrs = os.path.join(os.path.dirname(path), f"{stem}_item2attributes.json")
    return _finish(stem, path, "s3rec", np.array(users, dtype=np.int64),
                   np.array(user_codes, dtype=np.int64), np.array(items, dtype=np.int64),
                   attributes_path=attrs if os.path.exists(attrs) else None)


def _decode_line(path, lineno, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # a BOM is not part of the first id
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                        "expected lines of integer ids") from None


def _int_fields(path, lineno, fields) -> list[int]:
    """The fields as ints: ASCII digits only (int() also takes '1_000' and other scripts' digits)
    and within int64, or a DataError naming the field."""
    try:
        ids = [int(x) for x in fields]
        plain = all(x.isascii() and "_" not in x for x in fields)
    except ValueError:
        plain = False
    if not plain:
        k = next(i for i, x in enumerate(fields) if not _ASCII_INT.fullmatch(x))
        raise DataError(f"{path}:{lineno}: field {k + 1} is {_show(fields[k])}, expected an integer id")
    if max(ids) > _I64_MAX or min(ids) < _I64_MIN:
        k = next(i for i, v in enumerate(ids) if not _I64_MIN <= v <= _I64_MAX)
        raise DataError(f"{path}:{lineno}: field {k + 1} is {_show(fields[k])}, beyond the int64 range of ids")
    return ids


def read_json(path: str):
    """A JSON file's content, or a DataError naming the file (and line) and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:  # a folder, no permission
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid JSON (not UTF-8 text)") from None


# -----------------------------------------------------------------------------
# where a row came from (for error messages)

@dataclass(frozen=True)
class _Where:
    """Names a row of a frame in an error message.

    Text files count lines (the header is line 1, so data row r is on line
    r + 2; a quoted field spanning lines would shift this). Parquet files and
    in-memory frames have no lines: "row N (from 0)", as df.row(N) / iloc[N]
    count. A folder names the Parquet file the row came from. `rows` maps the
    rows left after a filter back to the original ones."""
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


def _as_where(where) -> _Where:
    """Accepts a plain path, as older callers (recommend.read_user_list) pass."""
    if isinstance(where, _Where):
        return where
    lower = os.fspath(where).lower()
    return _Where(os.fspath(where), text=lower.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")))


# -----------------------------------------------------------------------------
# reading event log files into polars frames

def _polars():
    import polars as pl  # imported late: `nanorec --help` and the .txt path need no polars
    return pl


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0] if msg.strip() else "unknown error"


def _read_frame(path: str):
    """A .csv/.tsv(.gz)/.parquet file (or a folder of Parquet files) as a polars DataFrame."""
    lower = path.lower()
    if os.path.isdir(path):
        return _read_parquet_folder(path)[0]
    if lower.endswith((".parquet", ".pq")):
        return _read_parquet(path)
    return _read_text_table(path)


def _read_text_table(path: str):
    pl = _polars()
    lower = path.lower()
    sep = "\t" if lower.endswith((".tsv", ".tsv.gz")) else ","
    if lower.endswith(".gz"):
        data = _gunzip(path)
        header = data[:data.find(b"\n")] if b"\n" in data else data
        source = lambda: io.BytesIO(data)  # noqa: E731  (a fresh stream for the second try)
    else:
        try:
            with open(path, "rb") as f:
                header = f.readline(1 << 16)
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e.strerror})") from None
        source = lambda: path  # noqa: E731
    _check_separator(path, header, sep)
    try:
        return pl.read_csv(source(), separator=sep, infer_schema_length=10000)
    except pl.exceptions.PolarsError as e:
        msg = str(e)
    if msg.startswith("could not parse"):
        # A value past the first 10000 rows does not fit the inferred type (an id
        # beyond int64, a word among numbers): read every column as text; the
        # column checks below then name the row.
        try:
            return pl.read_csv(source(), separator=sep, infer_schema=False)
        except pl.exceptions.PolarsError as e:
            msg = str(e)
    if "utf-8" in msg.lower():
        raise DataError(_non_utf8_line(path, data if lower.endswith(".gz") else None)) from None
    raise DataError(f"{path}: cannot be read as a table ({_first_line(msg)})") from None


def _gunzip(path: str) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({_first_line(str(e)) or type(e).__name__})") from None


def _non_utf8_line(path, data: bytes | None) -> str:
    """The message for a text table that is not UTF-8, naming the first bad line."""
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return (f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                    "save it as UTF-8")
    return f"{path}: not UTF-8 text; save it as UTF-8"


_SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "pipes"}


def _check_separator(path, header: bytes, sep: str):
    """A header without the expected separator but with another one is a misnamed
    file: reading it would give one column named 'user_id\\titem_id...'."""
    text = header.decode("utf-8", errors="replace")
    if sep in text:
        return
    for other, name in _SEPARATORS.items():
        if other != sep and other in text:
            if other == "\t":
                hint = "a tab-separated file? name it .tsv"
            elif other == ",":
                hint = "a comma-separated file? name it .csv"
            else:
                hint = f"a {name[:-1]}-separated file? save it with commas (.csv) or tabs (.tsv)"
            raise DataError(f"{path}: header has {name} but no {_SEPARATORS[sep]}: {hint}")


def _read_parquet(path: str):
    pl = _polars()
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as a table ({_first_line(str(e))})") from None


def _parquet_files(folder: str) -> list[str]:
    # "_SUCCESS", "_metadata" and ".crc" files that Spark writes alongside are not data
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror})") from None
    return sorted(f for f in names
                  if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_"))
                  and os.path.isfile(os.path.join(folder, f)))


def _read_parquet_folder(folder: str):
    """(one frame of all the folder's Parquet files in sorted name order, _Where naming each file)."""
    pl = _polars()
    files = [os.path.join(folder, f) for f in _parquet_files(folder)]
    if not files:
        raise DataError(f"{folder}: is a folder without .parquet files, expected a table")
    frames = [_read_parquet(f) for f in files]
    columns = frames[0].columns
    for f, df in zip(files[1:], frames[1:]):
        if set(df.columns) != set(columns):
            raise DataError(f"{f}: columns {', '.join(df.columns)} differ from {os.path.basename(files[0])}'s "
                            f"({', '.join(columns)})")
    try:
        # relaxed: int32 in one file and int64 in the next is the same column
        df = pl.concat([d.select(columns) for d in frames], how="vertical_relaxed")
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{folder}: the Parquet files' column types do not match ({_first_line(str(e))})") from None
    starts = np.concatenate([[0], np.cumsum([d.height for d in frames])[:-1]])
    return df, _Where(folder, parts=tuple(zip(files, starts.tolist())))


# -----------------------------------------------------------------------------
# in-memory frames

def _frame_to_polars(frame):
    """(polars DataFrame, pandas index names) for a pandas / polars DataFrame or a
    pyarrow Table, or None for anything else. pandas and pyarrow are looked up in
    sys.modules, not imported: a frame of theirs means they already are."""
    pl = _polars()
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame, ()
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(frame, (pa.Table, pa.RecordBatch)):
        return _convert(pl.from_arrow, frame, frame.column_names), ()
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(frame, pd.DataFrame):
        names = tuple(str(n) for n in frame.index.names if n is not None)
        return _convert(pl.from_pandas, frame, [str(c) for c in frame.columns]), names
    return None


def _convert(to_polars, frame, columns):
    try:
        return to_polars(frame)
    except Exception as e:  # noqa: BLE001  pyarrow's conversion errors share no base class with polars'
        bad = next((c for c in columns if not _converts(to_polars, frame, c)), None)
        where = f"column {bad!r}" if bad is not None else "a column"
        raise DataError(f"<dataframe>: {where} cannot be converted ({_first_line(str(e))}); "
                        "mixed types in one column?") from None


def _converts(to_polars, frame, col) -> bool:
    try:
        to_polars(frame[[col]] if hasattr(frame, "iloc") else frame.select([col]))
        return True
    except Exception:  # noqa: BLE001
        return False


def from_frame(frame, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp",
               filter: str | None = None, weight_col: str | None = None) -> Dataset:
    """An event log already in memory: a pandas or polars DataFrame or a pyarrow
    Table. Converted to polars without a temporary file; integer ids stay int64,
    string ids stay strings. Name "dataframe", path "<dataframe>"; errors name
    rows by position (from 0). Other arguments as in `load`."""
    converted = _frame_to_polars(frame)
    if converted is None:
        raise UsageError(f"load: expected a path, a pandas or polars DataFrame or a pyarrow Table, "
                         f"not {type(frame).__module__}.{type(frame).__name__}")
    df, index_names = converted
    return _events(df, _Where("<dataframe>", index_names=index_names), "dataframe",
                   user_col, item_col, time_col, filter, weight_col)


# -----------------------------------------------------------------------------
# event logs: columns -> Dataset

def read_table(path: str, user_col="user_id", item_col="item_id", time_col="timestamp",
               filter: str | None = None, weight_col: str | None = None) -> Dataset:
    """An event log file (.csv/.tsv, optionally .gz, .parquet) or a folder of Parquet files."""
    if os.path.isdir(path):
        df, where = _read_parquet_folder(path)
        name = os.path.basename(os.path.normpath(path))
    else:
        df, where = _read_frame(path), _as_where(path)
        name = re.sub(r"\.(csv|tsv)\.gz$|\.[^.]*$", "", os.path.basename(path), flags=re.I)
    return _events(df, where, name, user_col, item_col, time_col, filter, weight_col)


def _events(df, where: _Where, name, user_col, item_col, time_col, filter, weight_col) -> Dataset:
    path = where.path
    if df.height == 0:
        raise DataError(f"{path}: no interactions (no data rows)")
    time_col = None if time_col is None or str(time_col).lower() == "none" else time_col
    roles = [c for c in (user_col, item_col, time_col) if c]
    if len(set(roles)) < len(roles):
        raise UsageError(f"user_col={user_col!r}, item_col={item_col!r}, time_col={time_col!r}: "
                         "each must name a different column")
    filter_col, values = _parse_filter(filter) if filter else (None, None)
    _require_columns(where, df, [user_col, item_col])
    _require_time_column(where, df, time_col)
    _require_columns(where, df, [c for c in (weight_col, filter_col) if c],
                     what={weight_col: "weight column", filter_col: "filter column"})
    used = {user_col, item_col, time_col, weight_col, filter_col}
    ignored = [c for c in df.columns if c not in used]

    keep = np.ones(df.height, dtype=bool)
    if filter_col:
        keep = _filter_mask(where, df, filter_col, values)
        if not keep.any():
            raise DataError(f"{path}: no interactions left after filter {filter!r} "
                            f"(column {filter_col!r} has e.g. {_examples(df[filter_col])})")
        df, where = df.filter(_polars().Series(keep)), dataclasses.replace(where, rows=np.nonzero(keep)[0])
    weights = None
    if weight_col:
        weights = _weights(where, df, weight_col)
        positive = weights > 0
        if not positive.any():
            raise DataError(f"{path}: no interactions left: every {weight_col!r} weight is <= 0")
        if not positive.all():  # a zero or negative weight is no event
            rows = where.rows if where.rows is not None else np.arange(len(positive))
            df, where = df.filter(_polars().Series(positive)), dataclasses.replace(where, rows=rows[positive])
            weights = weights[positive]

    users = _ids(where, df, user_col)
    items = _ids(where, df, item_col)
    times = _timestamps(where, df, time_col) if time_col else np.zeros(len(users))
    user_ids, codes, order = _chronological(users, times)
    # `order` sorts by user first, so times[order] is already in the CSR order _finish builds
    return _finish(name, path, "table", user_ids, codes[order], items[order],
                   weights=None if weights is None else weights[order], ignored_columns=ignored,
                   times=times[order] if time_col else None, time_unit=_time_unit(df[time_col]) if time_col else None)


def _columns_list(df) -> str:
    cols = df.columns
    shown = ", ".join(cols[:30])
    return shown + (f", ... ({len(cols) - 30} more)" if len(cols) > 30 else "")


def _require_columns(where, df, cols, what=None):
    where = _as_where(where)
    for c in cols:
        if c not in df.columns:
            kind = (what or {}).get(c, "column")
            hint = f"; {c!r} is the index: call reset_index() first" if c in where.index_names else ""
            raise DataError(f"{where.path}: missing {kind} {c!r} (columns are {_columns_list(df)}){hint}")


def _require_time_column(where, df, time_col):
    if time_col and time_col not in df.columns:
        hint = f"; {time_col!r} is the index: call reset_index() first" if time_col in where.index_names else ""
        raise DataError(f"{where.path}: missing time column {time_col!r} (columns are {_columns_list(df)}); "
                        f"set time_col to one of them, or time_col=none to keep file order{hint}")


def _parse_filter(text: str):
    col, eq, rest = str(text).partition("=")
    values = [v.strip() for v in rest.split(",") if v.strip()]
    if not eq or not col.strip() or not values:
        raise UsageError(f"filter={text!r}: expected column=value[,value...], e.g. event_type=purchase")
    return col.strip(), values


def _filter_mask(where, df, col, values) -> np.ndarray:
    pl = _polars()
    try:
        as_text = df[col].cast(pl.Utf8)
    except pl.exceptions.PolarsError:
        raise DataError(f"{where.path}: filter column {col!r} has type {df[col].dtype}, "
                        "which cannot be compared with text values") from None
    return as_text.is_in(values).fill_null(False).to_numpy()


def _examples(s, k: int = 5) -> str:
    vals = s.cast(_polars().Utf8, strict=False).drop_nulls().unique(maintain_order=True).head(k).to_list()
    return ", ".join(_show(v) for v in vals) or "only empty values"


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


def _ids(where, df, col):
    """Original ids: int64 for integer columns (and floats that are all whole
    numbers, as pandas makes of an integer column with a gap), else strings.
    NaN, inf, fractions, ids beyond int64, booleans, lists and structs are errors."""
    pl = _polars()
    where = _as_where(where)
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
        if where.text:
            numeric = _text_numbers(where, s, col)
            if numeric is not None:
                return numeric
        return s.to_numpy().astype(object)
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
            raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, beyond the int64 range of ids")
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
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(v)}, {problem}")
    return ints.to_numpy()


def _text_numbers(where, s, col):
    """A text file's column that is all numbers but came in as text (the all-text
    re-read after a parse failure, or integers beyond what polars infers):
    typed as polars would have, so that the bad row is named. None: real text."""
    pl = _polars()
    stripped = s.str.strip_chars()
    if stripped.str.contains(r"^[+-]?[0-9]+$").all():
        ints = stripped.cast(pl.Int64, strict=False)
        if ints.null_count():
            i = _first(ints.is_null())
            raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, beyond the int64 range of ids")
        return ints.to_numpy()
    floats = stripped.cast(pl.Float64, strict=False)
    if floats.null_count() == 0:
        return _whole_numbers(where, floats, col)
    return None


def _integer_column(where, df, col):
    """An id column that must be integer (challenge folders), or a DataError naming the first bad row."""
    where = _as_where(where)
    ids = _ids(where, df, col)
    if ids.dtype == object:
        bad = next(i for i, x in enumerate(ids) if not _ASCII_INT.fullmatch(str(x).strip()))
        raise DataError(f"{where.row(bad)}: column {col!r} is {_show(ids[bad])}, expected an integer id")
    return ids


def _finite(where, f, col, original):
    bad = f.is_nan() | f.is_infinite()
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(original[i])}, expected a finite number")
    return f


def _timestamps(where, df, col):
    """Sortable times: integers as int64 (ns timestamps stay exact), other numbers as
    float64, dates and datetimes as their integer value, date strings parsed."""
    pl = _polars()
    where = _as_where(where)
    s = df[col]
    _no_nulls(where, s, col)
    dt = s.dtype
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
    numbers = s.str.strip_chars().cast(pl.Float64, strict=False)
    if numbers.null_count() == 0:
        return _finite(where, numbers, col, s).to_numpy()
    try:
        parsed = s.str.to_datetime(strict=False)
    except pl.exceptions.PolarsError:  # no date format fits the first value
        parsed = pl.Series([None] * len(s), dtype=pl.Datetime)
    if parsed.null_count():
        i = _first(parsed.is_null())
        like = f" like {_show(s[_first(parsed.is_not_null())])}" if parsed.null_count() < len(s) else ""
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, expected a number or a date{like}")
    return parsed.cast(pl.Int64).to_numpy()


def _weights(where, df, col) -> np.ndarray:
    pl = _polars()
    s = df[col]
    _no_nulls(where, s, col)
    if s.dtype == pl.Utf8:
        f = s.str.strip_chars().cast(pl.Float64, strict=False)
        if f.null_count():
            i = _first(f.is_null())
            raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, expected a number (a weight)")
    elif s.dtype.is_numeric():
        f = s.cast(pl.Float64)
    else:
        _bad_type(where, s, col, "numbers (weights)")
    return _finite(where, f, col, s).to_numpy()


def _chronological(user_raw, times):
    """Users in order of first appearance; rows sorted by (user, time), ties in file order."""
    uniq, first, codes = np.unique(user_raw, return_index=True, return_inverse=True)
    # renumber users by first appearance so output order follows the file
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    codes = rank[codes]
    user_ids = uniq[np.argsort(first, kind="stable")]
    order = np.lexsort((np.arange(len(codes)), times, codes))
    return user_ids, codes, order


# -----------------------------------------------------------------------------
# challenge folder

def read_challenge(folder: str) -> Dataset:
    train_path = os.path.join(folder, "train.csv")
    where = _as_where(train_path)
    df = _read_frame(train_path)
    if df.height == 0:
        raise DataError(f"{train_path}: no interactions (no data rows)")
    _require_columns(where, df, ["user_id", "item_id", "timestamp"])
    users = _integer_column(where, df, "user_id")
    items = _integer_column(where, df, "item_id")
    times = _timestamps(where, df, "timestamp")
    user_ids, codes, order = _chronological(users, times)
    ignored = [c for c in df.columns if c not in ("user_id", "item_id", "timestamp")]

    test_path = os.path.join(folder, "test.csv")
    test_users = _read_test_users(test_path) if os.path.exists(test_path) else None
    mapping = os.path.join(folder, "id_mappings.json")
    if os.path.exists(mapping):
        read_json(mapping)  # fail early on a broken file, before any training
    meta = os.path.join(folder, "item_metadata.csv")
    return _finish(os.path.basename(os.path.normpath(folder)), folder, "challenge", user_ids,
                   codes[order], items[order], test_users=test_users,
                   metadata_path=meta if os.path.exists(meta) else None, ignored_columns=ignored)


def _read_test_users(path: str) -> np.ndarray:
    """test.csv's user ids: at least one, each once (a submission has one row per user)."""
    where = _as_where(path)
    df = _read_frame(path)
    _require_columns(where, df, ["user_id"])
    if df.height == 0:
        raise DataError(f"{path}: no users (no data rows)")
    users = _integer_column(where, df, "user_id")
    uniq, first = np.unique(users, return_index=True)
    if len(uniq) != len(users):
        again = np.ones(len(users), dtype=bool)
        again[first] = False
        i = int(np.argmax(again))
        before = int(np.argmax(users == users[i]))
        raise DataError(f"{where.row(i)}: user_id {users[i]} appears again (first on line {before + 2}); "
                        "test.csv lists each user once")
    return users
