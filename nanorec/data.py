"""Interactions in, per-user chronological item sequences out.

The inputs understood, chosen by what the path (or object) is:

- an S3-Rec ``.txt`` file: one user a line, ``user_id item_id item_id ...`` in
  chronological order (a sibling ``*_item2attributes.json`` is noticed);
- a challenge folder: ``train.csv`` (user_id,item_id,rating,timestamp),
  ``test.csv`` (user_id,...), optionally ``id_mappings.json`` and
  ``item_metadata.csv``; encoded ids start at 0 and item 0 is a real item;
- an event log: a ``.csv``, ``.tsv`` (either optionally ``.gz``), ``.parquet``
  file, a folder of Parquet files (subfolders included: a hive layout's
  ``key=value`` folder names become columns; files read in sorted path order,
  one schema checked across them), or an in-memory pandas / polars DataFrame
  or pyarrow Table, with columns named by the caller (default
  ``user_id,item_id,timestamp``). Rows are ordered by the time column, ties kept
  in file order; ``time_col="none"`` keeps file order. Times are numbers, dates,
  ISO date text, or text read with ``time_format`` (strptime): a day/month date
  such as 03/01/2024 is never guessed. An optional ``filter``
  (``column=value[,value...]``) keeps matching rows and an optional
  ``weight_col`` gives each event a weight (rows <= 0 dropped).

Every bad input raises DataError with one line: the file, with ``:line`` for a
text file's row or ``row N (from 0)`` for a Parquet file's or a frame's, the
column, the bad value and the problem.

Items get internal indices 1..N (0 is padding and never a recommendation);
``Dataset.item_ids[i]`` is the original id of index i, one type per column: ids
stay integers (int64) when the column is integer (or whole-number floats), else
strings; a CSV/TSV column is integer only when every value is written as one
(17, not 017, +17 or " 17"), else its values are kept as written.
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
# readers

_EVENT_LOG_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")
_I64_MIN, _I64_MAX = -(2 ** 63), 2 ** 63 - 1


def load(source, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp",
         filter: str | None = None, weight_col: str | None = None, time_format: str | None = None) -> Dataset:
    """Read any supported input; raise DataError with a one-line reason on bad input.

    source: a path (S3-Rec .txt, challenge folder, event log file or folder of
    Parquet files) or an in-memory frame (pandas / polars DataFrame, pyarrow
    Table; see `from_frame`). The column arguments, `filter` ("column=value[,value...]",
    rows kept when the column, as a string, equals one of the values) and
    `weight_col` (a numeric column; rows with weight <= 0 dropped; the weights
    land in `Dataset.weights`, which nothing consumes yet) apply to event logs.
    time_col="none" (or None) keeps file order. `time_format` (a strptime format such
    as "%d/%m/%Y") reads a text time column; without it only ISO dates and numbers are
    read, and a day/month date such as 03/01/2024 is an error (which is the day?)."""
    if not isinstance(source, (str, os.PathLike)):
        return from_frame(source, user_col, item_col, time_col, filter=filter, weight_col=weight_col,
                          time_format=time_format)
    path = os.fspath(source)
    if not path.strip():
        raise UsageError("empty data path: expected a file or folder of interactions")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "train.csv")):
            _event_options_only(path, "a challenge folder", filter, weight_col, time_format)
            return read_challenge(path)
        if _parquet_files(path):
            return read_table(path, user_col, item_col, time_col, filter=filter, weight_col=weight_col,
                              time_format=time_format)
        raise DataError(f"{path}: a folder must be a challenge folder with train.csv (and test.csv) "
                        "or a folder of .parquet files")
    lower = path.lower()
    if lower.endswith(".txt"):
        _event_options_only(path, "an S3-Rec .txt file", filter, weight_col, time_format)
        return read_s3rec(path)
    if lower.endswith(_EVENT_LOG_SUFFIXES):
        return read_table(path, user_col, item_col, time_col, filter=filter, weight_col=weight_col,
                          time_format=time_format)
    raise DataError(f"{path}: unknown format (expected .txt, .csv, .tsv, .csv.gz, .tsv.gz, .parquet, "
                    "a folder of .parquet files or a challenge folder)")


def load_like(cfg, source=None) -> Dataset:
    """`load` with a run's column, filter, weight and time format settings (any object
    with Config's attributes); `source` defaults to cfg.data (a path or a frame)."""
    return load(cfg.data if source is None else source, cfg.user_col, cfg.item_col, cfg.time_col,
                filter=cfg.filter or None, weight_col=cfg.weight_col or None, time_format=cfg.time_format or None)


def _event_options_only(path, what, filter, weight_col, time_format=None):
    # Silently ignoring a filter would train on rows the user meant to drop.
    for key, value in (("filter", filter), ("weight_col", weight_col), ("time_format", time_format)):
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
# an integer written as str(int) writes it: no sign but "-", no leading zero, no space
_CANONICAL_INT = r"^(0|-?[1-9][0-9]*)$"


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
    """A .csv/.tsv(.gz) file as a polars DataFrame of text (String) columns."""
    pl = _polars()
    lower = path.lower()
    sep = "\t" if lower.endswith((".tsv", ".tsv.gz")) else ","
    if lower.endswith(".gz"):
        data = _gunzip(path)
        header = data[:data.find(b"\n")] if b"\n" in data else data
        source = lambda: io.BytesIO(data)  # noqa: E731
    else:
        try:
            with open(path, "rb") as f:
                header = f.readline(1 << 16)
        except OSError as e:
            raise DataError(f"{path}: cannot be read ({e.strerror})") from None
        source = lambda: path  # noqa: E731
    _check_separator(path, header, sep)
    try:
        # Every column as text, each value exactly as written: type inference would turn the
        # id 005461 into 5461. The column checks type each column by its role (_text_ids,
        # _timestamps, _weights).
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
    """Every Parquet file under `folder`, subfolders included (a hive layout such as
    day=2024-01-01/part-0.parquet), in sorted path order. Names starting with "." or "_"
    (Spark's _SUCCESS, _temporary/, .crc files) are not data."""
    def unreadable(e):
        raise DataError(f"{e.filename or folder}: cannot list the folder ({e.strerror})")
    found = []
    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found += [os.path.join(root, f) for f in names
                  if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_"))]
    return sorted(found, key=lambda f: os.path.relpath(f, folder).split(os.sep))


def _read_parquet_folder(folder: str):
    """(one frame of every Parquet file under the folder in sorted path order, _Where naming each file).

    One schema for all files: a column's type may differ only in width (int32 and int64,
    float32 and float64, string and large string, timestamp units with one time zone);
    any other difference (epoch integers in one file, datetimes in another) is an error
    naming the two files. Folder names key=value (hive partitions) become string columns,
    integers when every value is spelled as one."""
    pa, pads = _pyarrow()
    files = _parquet_files(folder)
    if not files:
        raise DataError(f"{folder}: is a folder without .parquet files, expected a table")
    schemas = [_parquet_schema(f) for f in files]
    names = schemas[0].names
    for f, schema in zip(files[1:], schemas[1:]):
        if set(schema.names) != set(names):
            raise DataError(f"{f}: columns {', '.join(schema.names)} differ from {_relative(folder, files[0])}'s "
                            f"({', '.join(names)})")
    keys = _partition_keys(folder, files)
    both = next((k for k in keys if k in names), None)
    if both is not None:
        raise DataError(f"{folder}: {both!r} is both a column of the files and a folder name ({both}=...); "
                        "rename one of them")
    fields = [pa.field(n, _folder_column_type(folder, files, schemas, n)) for n in names]
    fields += [pa.field(k, pa.string()) for k in keys]
    partitioning = pads.partitioning(pa.schema(fields[len(names):]), flavor="hive") if keys else None
    dataset = pads.dataset(files, schema=pa.schema(fields), format="parquet", partitioning=partitioning,
                           partition_base_dir=folder)
    tables, parts, first = [], [], 0
    for fragment in dataset.get_fragments():  # the files in the order given
        try:
            table = fragment.to_table(schema=dataset.schema)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{fragment.path}: cannot be read as a table ({_first_line(str(e))})") from None
        tables.append(table)
        parts.append((fragment.path, first))
        first += table.num_rows
    df = _polars().from_arrow(pa.concat_tables(tables))
    return _integer_spellings(df, keys), _Where(folder, parts=tuple(parts))


def _pyarrow():
    import pyarrow as pa  # imported late, like polars
    import pyarrow.dataset as pads
    return pa, pads


def _parquet_schema(path: str):
    import pyarrow.parquet as pq
    try:
        return pq.read_schema(path)
    except Exception as e:  # noqa: BLE001  pyarrow's errors share no base class with OSError
        raise DataError(f"{path}: cannot be read as a table ({_first_line(str(e))})") from None


def _relative(folder: str, path: str) -> str:
    return os.path.relpath(path, folder)


def _partition_keys(folder: str, files) -> list[str]:
    """The keys of the key=value folder names between `folder` and its files, in order of appearance."""
    keys = []
    for f in files:
        for part in os.path.dirname(_relative(folder, f)).split(os.sep):
            key = part.partition("=")[0]
            if "=" in part and key and key not in keys:
                keys.append(key)
    return keys


def _folder_column_type(folder, files, schemas, name):
    """The one type of column `name` across the folder's files, or a DataError naming two files that differ."""
    types = [s.field(name).type for s in schemas]
    for j in range(1, len(types)):
        if _one_type(types[:j + 1]) is None:
            i = next(i for i in range(j) if _one_type([types[i], types[j]]) is None)
            raise DataError(f"{folder}: column {name!r} is {types[i]} in {_relative(folder, files[i])} but "
                            f"{types[j]} in {_relative(folder, files[j])}; every file must store a column "
                            "with one type")
    return _one_type(types)


def _one_type(types):
    """The type that holds values of every type in `types` without changing their kind, or None."""
    pa = _pyarrow()[0]
    types = [t.value_type if pa.types.is_dictionary(t) else t for t in types]  # categorical strings are strings
    types = [t for t in types if not pa.types.is_null(t)]  # an all-empty column fits any type
    if not types:
        return pa.null()
    if all(t == types[0] for t in types):
        return types[0]
    is_text = lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"  # noqa: E731
    if all(pa.types.is_integer(t) for t in types):
        return pa.int64()
    if all(pa.types.is_floating(t) for t in types):
        return pa.float64()
    if all(is_text(t) for t in types):
        return pa.large_string()
    if all(pa.types.is_date(t) for t in types):
        return pa.date32()
    if all(pa.types.is_timestamp(t) for t in types) and len({t.tz for t in types}) == 1:
        finest = max(types, key=lambda t: ("s", "ms", "us", "ns").index(t.unit))
        return pa.timestamp(finest.unit, finest.tz)
    return None


def _integer_spellings(df, columns):
    """Text columns (hive partition values) as int64 when every value is spelled as an integer
    (no sign, leading zero or space that the integer would lose), else left as text."""
    pl = _polars()
    for c in columns:
        s = df[c].drop_nulls()
        if len(s) and s.str.contains(_CANONICAL_INT).all():
            ints = df[c].cast(pl.Int64, strict=False)
            if ints.null_count() == df[c].null_count():  # all within int64
                df = df.with_columns(ints)
    return df


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
        try:
            return pl.from_pandas(frame), names
        except Exception:  # noqa: BLE001  see _convert
            return _convert(pl.from_pandas, _mixed_ids_as_text(pd, frame), [str(c) for c in frame.columns]), names
    return None


def _mixed_ids_as_text(pd, frame):
    """pandas object columns that mix integers and strings (pd.concat of a day whose skus
    were all numbers with one whose were not) as the text of each value, so that 42 and
    '42' are one id; other columns as they are."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    out = frame
    for j, c in enumerate(frame.columns):
        if frame.dtypes.iloc[j] != object:
            continue
        values = frame.iloc[:, j].tolist()
        missing = [v is None or (not isinstance(v, str) and not is_int(v) and bool(pd.isna(v))) for v in values]
        if not all(m or isinstance(v, str) or is_int(v) for v, m in zip(values, missing)):
            continue
        if out is frame:
            out = frame.copy()
        out.iloc[:, j] = pd.Series([None if m else v if isinstance(v, str) else str(int(v))
                                    for v, m in zip(values, missing)], index=frame.index, dtype=object)
    return out


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
               filter: str | None = None, weight_col: str | None = None, time_format: str | None = None) -> Dataset:
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
                   user_col, item_col, time_col, filter, weight_col, time_format)


# -----------------------------------------------------------------------------
# event logs: columns -> Dataset

def read_table(path: str, user_col="user_id", item_col="item_id", time_col="timestamp",
               filter: str | None = None, weight_col: str | None = None, time_format: str | None = None) -> Dataset:
    """An event log file (.csv/.tsv, optionally .gz, .parquet) or a folder of Parquet files."""
    if os.path.isdir(path):
        df, where = _read_parquet_folder(path)
        name = os.path.basename(os.path.normpath(path))
    else:
        df, where = _read_frame(path), _as_where(path)
        name = re.sub(r"\.(csv|tsv)\.gz$|\.[^.]*$", "", os.path.basename(path), flags=re.I)
    return _events(df, where, name, user_col, item_col, time_col, filter, weight_col, time_format)


def _events(df, where: _Where, name, user_col, item_col, time_col, filter, weight_col, time_format=None) -> Dataset:
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
    if time_format and not time_col:
        raise UsageError(f"time_format={time_format!r}: reads the time column, but time_col=none keeps file order")
    times = _timestamps(where, df, time_col, time_format) if time_col else np.zeros(len(users))
    user_ids, codes, order = _chronological(users, times)
    return _finish(name, path, "table", user_ids, codes[order], items[order],
                   weights=None if weights is None else weights[order], ignored_columns=ignored)


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
    """Original ids, one type per column: int64 for integer columns (and floats that
    are all whole numbers, as pandas makes of an integer column with a gap), else
    strings; a text file's column by how its values are written (_text_ids).
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


# how str(int) and str(float) write numbers: no "+", no leading zero, no space
_PLAIN_NUMBER = r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?|[+-]?(?i:nan|inf|infinity))$"


def _text_ids(where, s, col):
    """A text file's id column, typed by how every value is written: int64 when each is
    an integer written plainly (17, -3, what str(int) gives); whole numbers when each is a
    plain number and some are written as floats (17.0, as pandas writes an integer column
    with a gap; 2.5 and nan are errors); else strings exactly as written, so that 005461,
    +17 and ' 17' keep their spelling (read as 17 they would be another customer)."""
    pl = _polars()
    if s.str.contains(_CANONICAL_INT).all():
        ints = s.cast(pl.Int64, strict=False)
        if ints.null_count():
            i = _first(ints.is_null())
            raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, beyond the int64 range of ids")
        return ints.to_numpy()
    if s.str.contains(_PLAIN_NUMBER).all():
        floats = s.cast(pl.Float64, strict=False)
        if floats.null_count() == 0:
            return _whole_numbers(where, floats, col)
    if s.str.to_lowercase().is_in(["true", "false"]).all():  # a flag column named by mistake
        raise DataError(f"{where.path}: column {col!r} has type Boolean (every value true or false), "
                        "expected integer or string ids")
    return s.to_numpy().astype(object)


def _integer_column(where, df, col):
    """An id column that must be integer (challenge folders: encoded ids, so +7 and 007
    are 7), or a DataError naming the first bad row."""
    pl = _polars()
    where = _as_where(where)
    ids = _ids(where, df, col)
    if ids.dtype != object:
        return ids
    text = df[col].cast(pl.Utf8).str.strip_chars()
    bad = ~text.str.contains(r"^[+-]?[0-9]+$")
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(ids[i])}, expected an integer id")
    ints = text.cast(pl.Int64, strict=False)
    if ints.null_count():
        i = _first(ints.is_null())
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(ids[i])}, beyond the int64 range of ids")
    return ints.to_numpy()


def _finite(where, f, col, original):
    bad = f.is_nan() | f.is_infinite()
    if bad.any():
        i = _first(bad)
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(original[i])}, expected a finite number")
    return f


def _timestamps(where, df, col, time_format=None):
    """Sortable times: integers as int64 (ns timestamps stay exact), other numbers as
    float64, dates and datetimes as their integer value, date text parsed: with
    `time_format` exactly as it says, else ISO dates (year first) only; a day/month
    date is an error, since 03/01/2024 is 3 January to some and March 1 to others."""
    pl = _polars()
    where = _as_where(where)
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
        like = f" like {_show(s[_first(parsed.is_not_null())])}" if parsed.null_count() < len(s) else ""
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, expected a number or a date{like}")
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
    raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, a date with the day and the month first, "
                    f"in an order nanorec does not guess: set {say}")


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
                         f"({_first_line(str(e))})") from None
    if parsed.null_count():
        i = _first(parsed.is_null())
        raise DataError(f"{where.row(i)}: column {col!r} is {_show(s[i])}, which does not match "
                        f"time_format={time_format}")
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
