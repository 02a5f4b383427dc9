"""holdout=time: one global split time for every user, as a shop judges a model.

`time_split` divides the log at one time (ISO, the column's units, or a fraction of the events):
training and selection see only what came before it; the test split holds each user's set of
next items after it (`TargetSets`). `split_like` picks this or the leave-one-out splits.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UsageError
from .sequences import Dataset, EvalSet, Sequences, Split, split


@dataclass
class TargetSets:
    """holdout=time's test split: each user's history before the split time, the items after it."""
    users: np.ndarray        # (M,) rows of Dataset.user_ids, each with history and targets
    histories: Sequences     # (M rows) every event before the split time
    targets: Sequences       # (M rows) the distinct items of the window, in first-bought order
    cold_users: np.ndarray   # (C,) users with window events but no event before the split time
    cold_targets: Sequences  # (C rows) their distinct window items (reported apart: popularity fallback)


def parse_split_time(text: str):
    """split_time -> ("fraction", f) for 0 < f < 1, ("number", x) (the column's units), ("iso", datetime), or None."""
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


_PER_DAY_US = 86_400 * 10 ** 6


def _iso_to_column(when, unit: str | None, text: str, where: str):
    """An ISO date/time as a value of the time column (an integer: events t < value are before it)."""
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
    if unit is None:
        return f"{value:g}" if isinstance(value, float) else str(value)
    us = int(value) * {"ns": 1, "us": 1, "ms": 1000, "d": _PER_DAY_US}[unit] // (1000 if unit == "ns" else 1)
    return (_dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=us)).isoformat(sep=" ")


VALID_SHARE_OF_DATES = 0.9  # a split_time given as a time: validation = the last 10% of the events before it


def split_times(ds: Dataset, split_time: str) -> tuple:
    """-> (valid_time, test_time): split_time, or for a fraction f the time of event floor(f x events);
    valid_time by the same rule inside the events before test_time. Ties go into the window."""
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
    """holdout=time: one split time for everyone ("trained on everything before Monday, how good
    are next week's lists?"); no event at or after it reaches training or selection.

    test: users with events before and after it; history = every event before it, targets = the
      distinct (target) items after it; users with no event before it are cold, reported apart.
    valid: single-target (early stopping and every selection work unchanged): each user's first
      (target) event in [valid time, split time), history = the events before the valid time.
    train: the events before the valid time (all_data: before the split time)."""
    t_valid, t_test = split_times(ds, split_time)
    seqs, times = ds.sequences, ds.times
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    n_test = np.bincount(row[times < t_test], minlength=len(seqs))   # (U,) events before the split time
    n_valid = np.bincount(row[times < t_valid], minlength=len(seqs))  # (U,) events before the valid time
    is_target = seqs.is_target()  # None: every event is a target
    # validation: first (target) event of [t_valid, t_test) as the one target
    in_window = (times >= t_valid) & (times < t_test)
    if is_target is not None:
        in_window &= is_target
    hit = np.nonzero(in_window)[0]
    vrows, first = np.unique(row[hit], return_index=True)
    first_hit = hit[first[n_valid[vrows] >= 1]]  # (V,) flat index of each user's first window target
    vrows = vrows[n_valid[vrows] >= 1]
    if len(vrows) == 0:
        raise DataError(f"split_time={split_time}: no user has an event in the validation window "
                        f"[{show_time(t_valid, ds.time_unit)}, {show_time(t_test, ds.time_unit)}) and one before it; "
                        "choose a later split_time")
    valid = EvalSet(vrows, seqs._keep_prefix(n_valid).take(vrows), seqs.items[first_hit])
    # test: every (target) event after the split time, as a set per user
    window = _suffix(seqs, n_test, is_target)
    after = window.lengths > 0
    warm, cold = np.nonzero(after & (n_test >= 1))[0], np.nonzero(after & (n_test == 0))[0]
    if len(warm) == 0:
        raise DataError(f"split_time={split_time}: no user has events both before and after it; nothing to test")
    test = TargetSets(warm, seqs._keep_prefix(n_test).take(warm), _distinct(window.take(warm)),
                      cold, _distinct(window.take(cold)))
    train = seqs._keep_prefix(n_test if all_data else n_valid)
    return Split(train=train, valid=valid, test=test)


def _suffix(seqs: Sequences, start: np.ndarray, only: np.ndarray | None = None) -> Sequences:
    """Every row from position start[u] on (only: (total,) bool, and only those events)."""
    pos = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], seqs.lengths)
    keep = pos >= np.repeat(start, seqs.lengths)
    if only is not None:
        keep &= only
    return seqs.select(keep)


def _distinct(seqs: Sequences) -> Sequences:
    """Each row's distinct items, in order of first occurrence."""
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    V = int(seqs.items.max(initial=0)) + 1
    _, first = np.unique(row * V + seqs.items, return_index=True)
    return seqs.select(np.sort(first))


def split_like(ds: Dataset, cfg) -> Split:
    """The split a run's config (holdout, split_time, all_data) asks for."""
    if cfg.holdout == "time":
        return time_split(ds, cfg.split_time, cfg.all_data)
    return split(ds, all_data=cfg.all_data, holdout=cfg.holdout)
