"""Interactions in, per-user chronological item sequences out.

Three inputs are understood, chosen by what the path is:

- an S3-Rec ``.txt`` file: one user a line, ``user_id item_id item_id ...`` in
  chronological order (a sibling ``*_item2attributes.json`` is noticed);
- a challenge folder: ``train.csv`` (user_id,item_id,rating,timestamp),
  ``test.csv`` (user_id,...), optionally ``id_mappings.json`` and
  ``item_metadata.csv``; encoded ids start at 0 and item 0 is a real item;
- any ``.csv`` / ``.parquet`` of interactions with columns named by the caller
  (default ``user_id,item_id,timestamp``), ordered by timestamp, ties kept in
  file order.

Items get internal indices 1..N (0 is padding and never a recommendation);
``Dataset.item_ids[i]`` is the original id of index i. Sequences are stored
flat (CSR): ``offsets`` (U+1,) and ``items`` (total,), so 2.5M interactions
cost two numpy arrays, not millions of Python lists.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np


from .errors import DataError  # noqa: F401  (re-exported: `from nanorec.data import DataError` keeps working)


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
# splits (see DESIGN.md, "Evaluation protocol")

@dataclass
class EvalSet:
    users: np.ndarray        # (M,) rows of Dataset.user_ids
    histories: Sequences     # (M rows) what the model sees
    targets: np.ndarray      # (M,) internal index of the held-out item


@dataclass
class Split:
    train: Sequences         # one row per user: what training learns from
    valid: EvalSet
    test: EvalSet | None     # None for a challenge folder (no answers)


def _eval_set(seqs: Sequences, drop: int) -> EvalSet:
    """Target = the item `drop` places before the end; history = everything before it.
    Users whose history would be empty are left out (nothing to condition on)."""
    rows = np.nonzero(seqs.lengths >= drop + 2)[0]
    sub = seqs.take(rows)
    targets = sub.items[sub.offsets[1:] - 1 - drop]
    return EvalSet(rows, sub.drop_last(drop + 1), targets)


def split(ds: Dataset, all_data: bool = False) -> Split:
    """Leave-one-out (S3-Rec): test = last item, valid = second to last, train = the rest.

    Challenge folder: valid = last train.csv item, train = the rest, no test.
    all_data: training also learns the validation targets (the test target stays unseen).
    """
    seqs = ds.sequences
    holdout = 2 if ds.has_test_targets else 1
    valid = _eval_set(seqs, holdout - 1)
    test = _eval_set(seqs, 0) if holdout == 2 else None
    train = seqs.drop_last(holdout - 1 if all_data else holdout)
    return Split(train=train, valid=valid, test=test)


# -----------------------------------------------------------------------------
# readers

def load(path: str, user_col: str = "user_id", item_col: str = "item_id",
         time_col: str = "timestamp") -> Dataset:
    """Read any supported input; raise DataError with a one-line reason on bad input."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "train.csv")):
            return read_challenge(path)
        raise DataError(f"{path}: a folder must be a challenge folder with train.csv (and test.csv)")
    lower = path.lower()
    if lower.endswith(".txt"):
        return read_s3rec(path)
    if lower.endswith((".csv", ".parquet", ".pq")):
        return read_table(path, user_col, item_col, time_col)
    raise DataError(f"{path}: unknown format (expected .txt, .csv, .parquet or a challenge folder)")


def _finish(name, path, kind, user_ids, user_codes, item_orig, **extra) -> Dataset:
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
    return Dataset(name=name, path=path, kind=kind, user_ids=np.asarray(user_ids),
                   item_ids=item_ids, sequences=Sequences(offsets, items[order]), **extra)


def read_s3rec(path: str) -> Dataset:
    users, user_codes, items = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids = [int(x) for x in fields]
            except ValueError:
                bad = next(i for i, x in enumerate(fields) if not _is_int(x))
                raise DataError(f"{path}:{lineno}: field {bad + 1} is {fields[bad]!r}, expected an integer id") from None
            if len(ids) < 2:
                raise DataError(f"{path}:{lineno}: a line needs a user id and at least one item id")
            user_codes.extend([len(users)] * (len(ids) - 1))
            users.append(ids[0])
            items.extend(ids[1:])
    if not users:
        raise DataError(f"{path}: no interactions (empty file)")
    if len(set(users)) != len(users):
        raise DataError(f"{path}: a user id appears on more than one line")
    stem = os.path.basename(path)[:-4]
    attrs = os.path.join(os.path.dirname(path), f"{stem}_item2attributes.json")
    return _finish(stem, path, "s3rec", np.array(users, dtype=np.int64),
                   np.array(user_codes, dtype=np.int64), np.array(items, dtype=np.int64),
                   attributes_path=attrs if os.path.exists(attrs) else None)


def read_json(path: str):
    """A JSON file's content, or a DataError naming the file (and line) and the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid JSON (not UTF-8 text)") from None


def _is_int(x: str) -> bool:
    try:
        int(x)
        return True
    except ValueError:
        return False


def _read_frame(path: str):
    import polars as pl
    try:
        if path.lower().endswith((".parquet", ".pq")):
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=10000)
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot be read as a table ({first})") from None


def _require_columns(path, df, cols):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} (columns are {', '.join(df.columns)})")


def _integer_column(path, df, col):
    """The column as int64, or a DataError naming the first bad row (1-based data line)."""
    import polars as pl
    s = df[col]
    if s.dtype.is_integer():
        if s.null_count():
            raise DataError(f"{path}:{_first_null(s) + 2}: column {col!r} is empty")
        return s.cast(pl.Int64).to_numpy()
    cast = s.cast(pl.Int64, strict=False)
    bad = (cast.is_null()).arg_max() if cast.null_count() else None
    if bad is not None:
        raise DataError(f"{path}:{bad + 2}: column {col!r} is {s[bad]!r}, expected an integer id")
    return cast.to_numpy()


def _first_null(s) -> int:
    return int(s.is_null().arg_max())


def _timestamps(path, df, col):
    import polars as pl
    s = df[col]
    if s.dtype.is_numeric():
        if s.null_count():
            raise DataError(f"{path}:{_first_null(s) + 2}: column {col!r} is empty")
        return s.cast(pl.Float64).to_numpy()
    if s.dtype in (pl.Datetime, pl.Date):
        return s.cast(pl.Int64).to_numpy()
    parsed = s.cast(pl.Utf8).str.to_datetime(strict=False)
    if parsed.null_count():
        bad = _first_null(parsed)
        raise DataError(f"{path}:{bad + 2}: column {col!r} is {s[bad]!r}, expected a number or a date")
    return parsed.cast(pl.Int64).to_numpy()


def _ids(path, df, col):
    """Ids stay integers where the column is integer, else strings (e.g. ASINs)."""
    import polars as pl
    s = df[col]
    if s.null_count():
        raise DataError(f"{path}:{_first_null(s) + 2}: column {col!r} is empty")
    if s.dtype.is_integer():
        return s.cast(pl.Int64).to_numpy()
    return s.cast(pl.Utf8).to_numpy().astype(object)


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


def read_table(path: str, user_col="user_id", item_col="item_id", time_col="timestamp") -> Dataset:
    df = _read_frame(path)
    if df.height == 0:
        raise DataError(f"{path}: no interactions (no data rows)")
    _require_columns(path, df, [user_col, item_col])
    users = _ids(path, df, user_col)
    items = _ids(path, df, item_col)
    times = _timestamps(path, df, time_col) if time_col in df.columns else np.zeros(len(users))
    user_ids, codes, order = _chronological(users, times)
    name = os.path.splitext(os.path.basename(path))[0]
    return _finish(name, path, "table", user_ids, codes[order], items[order])


def read_challenge(folder: str) -> Dataset:
    train_path = os.path.join(folder, "train.csv")
    df = _read_frame(train_path)
    if df.height == 0:
        raise DataError(f"{train_path}: no interactions (no data rows)")
    _require_columns(train_path, df, ["user_id", "item_id", "timestamp"])
    users = _integer_column(train_path, df, "user_id")
    items = _integer_column(train_path, df, "item_id")
    times = _timestamps(train_path, df, "timestamp")
    user_ids, codes, order = _chronological(users, times)

    test_path = os.path.join(folder, "test.csv")
    test_users = None
    if os.path.exists(test_path):
        tdf = _read_frame(test_path)
        _require_columns(test_path, tdf, ["user_id"])
        test_users = _integer_column(test_path, tdf, "user_id")
    mapping = os.path.join(folder, "id_mappings.json")
    if os.path.exists(mapping):
        read_json(mapping)  # fail early on a broken file, before any training
    meta = os.path.join(folder, "item_metadata.csv")
    return _finish(os.path.basename(os.path.normpath(folder)), folder, "challenge", user_ids,
                   codes[order], items[order], test_users=test_users,
                   metadata_path=meta if os.path.exists(meta) else None)
