"""The readers: any supported input -> Dataset (see the package docstring for the
formats). `load` chooses the reader by what the path (or object) is; every bad
input raises DataError (or UsageError) with one line.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re

import numpy as np

from ..errors import DataError, UsageError, show
from .columns import (_I64_MAX, _I64_MIN, Where, as_where, _examples, _integer_column, _polars, _require_columns,
                      _time_unit, _timestamps, _weights, column_ids, filter_mask, parse_filter)
from .sequences import Dataset, Sequences, offsets_of
from .tables import (GZIP_MAGIC, PARQUET_MAGIC, _parquet_files, _read_parquet_folder, frame_to_polars, gunzip,
                     is_stream, read_frame, read_stream)

# -----------------------------------------------------------------------------
# readers

EVENT_LOG_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet", ".pq")


def load(source, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp",
         filter: str | None = None, weight_col: str | None = None, time_format: str | None = None,
         target_filter: str | None = None, need_targets: bool = True) -> Dataset:
    """Read any supported input (a path, or an in-memory frame: `from_frame`).

    For event logs: `filter` ("column=value[,value...]") keeps the rows whose column, as text,
    equals a value; `weight_col` (numbers > 0) weighs each event as a target; `target_filter`
    (the same syntax) keeps every event but makes only the matching ones targets (without
    weight_col the others weigh 0). time_col="none" (or None) keeps file order; `time_format`
    (strptime, e.g. "%d/%m/%Y") reads a text time column. need_targets=False (recommend, serve):
    a log where no event matches target_filter is history, not an error."""
    options = dict(filter=filter, weight_col=weight_col, time_format=time_format, target_filter=target_filter)
    events = dict(user_col=user_col, item_col=item_col, time_col=time_col, need_targets=need_targets, **options)
    if not isinstance(source, (str, os.PathLike)):
        return from_frame(source, **events)
    path = os.fspath(source)
    if not path.strip():
        raise UsageError("empty data path: expected a file or folder of interactions")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file or folder")
    if is_stream(path):  # <(zcat log.gz), a FIFO: read once, as a stream
        return _load_stream(path, events, options)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "train.csv")):
            _event_options_only(path, "a challenge folder", **options)
            return read_challenge(path)
        if _parquet_files(path):
            return read_table(path, **events)
        raise DataError(f"{path}: a folder must be a challenge folder with train.csv (and test.csv) "
                        "or a folder of .parquet files")
    lower = path.lower()
    if lower.endswith(".txt"):
        _event_options_only(path, "an S3-Rec .txt file", **options)
        return read_s3rec(path)
    if lower.endswith(EVENT_LOG_SUFFIXES):
        return read_table(path, **events)
    raise DataError(f"{path}: unknown format (expected .txt, .csv, .tsv, .csv.gz, .tsv.gz, .parquet, "
                    "a folder of .parquet files or a challenge folder)")


def _load_stream(path, events: dict, options: dict) -> Dataset:
    """A pipe or FIFO, read once to its end, its format by its name or first bytes (_stream_format)."""
    kind, df, where, data = read_stream_table(path)
    if kind is None:
        raise DataError(f"{path}: a pipe or FIFO whose name has no suffix, and its first bytes are not a table "
                        "(CSV with a header, TSV, Parquet, gzip of either) or S3-Rec lines; save it to a file "
                        "with its suffix")
    if kind == ".txt":
        _event_options_only(path, "an S3-Rec .txt file", **options)
        return read_s3rec(path, data)
    return table_events(df, where, data_set_name(path), **events)


def read_stream_table(path: str) -> tuple:
    """A pipe or FIFO read once -> (kind, frame, Where, bytes): a table parsed, else frame and Where
    None (S3-Rec .txt, or kind None). The one stream reader of load, recommend and inspect."""
    kind, data = _stream_format(path, read_stream(path))
    if kind in (".csv", ".tsv", ".parquet"):
        return kind, read_frame(path, data, kind), Where(path, text=kind != ".parquet"), data
    return kind, None, None, data


def _stream_format(path: str, data: bytes) -> tuple[str | None, bytes]:
    """(".csv"/".tsv"/".parquet"/".txt" or None by the name, else by the first bytes; the bytes, gunzipped)."""
    if data[:2] == GZIP_MAGIC:
        data = gunzip(path, data)
    lower = path.lower()
    for suffix in (".parquet", ".pq", ".txt", ".tsv.gz", ".tsv", ".csv.gz", ".csv"):
        if lower.endswith(suffix):
            return {".pq": ".parquet", ".tsv.gz": ".tsv", ".csv.gz": ".csv"}.get(suffix, suffix), data
    if data[:4] == PARQUET_MAGIC:
        return ".parquet", data
    first = data[:data.find(b"\n")] if b"\n" in data else data
    first = first.removeprefix(b"\xef\xbb\xbf").strip()
    if b"\t" in first:
        return ".tsv", data
    if b"," in first:
        return ".csv", data
    if re.fullmatch(rb"[0-9]+( +[0-9]+)+", first):
        return ".txt", data
    return None, data


def load_like(cfg, source=None, need_targets: bool = True) -> Dataset:
    """`load` with a run's data settings (any object with Config's attributes); `source` defaults
    to cfg.data, which may not be a pipe or FIFO: a run's data is read again (--resume, evaluate)."""
    if source is None and isinstance(cfg.data, str) and is_stream(cfg.data):
        raise DataError(f"{cfg.data}: a pipe or FIFO can be read once, and a run's data is read again "
                        "(--resume, evaluate); save it to a file and train on that")
    return load(cfg.data if source is None else source, cfg.user_col, cfg.item_col, cfg.time_col,
                filter=cfg.filter or None, weight_col=cfg.weight_col or None, time_format=cfg.time_format or None,
                target_filter=getattr(cfg, "target_filter", "") or None, need_targets=need_targets)


def _event_options_only(path, what, **options):
    # Silently ignoring a filter would train on rows the user meant to drop.
    for key, value in options.items():
        if value:
            raise UsageError(f"{key}={value!r}: applies to event logs (.csv/.tsv/.parquet, frames), "
                             f"not to {what} ({path})")


def _finish(name, path, kind, user_ids, user_codes, item_orig, weights=None, targets=None, **extra) -> Dataset:
    """Items encoded (sorted original ids -> 1..N), CSR rows from (user_code, item) pairs in time order."""
    if len(item_orig) == 0:
        raise DataError(f"{path}: no interactions")
    uniq, inverse = np.unique(item_orig, return_inverse=True)
    items = inverse.astype(np.int64) + 1  # 0 is padding
    order = np.argsort(user_codes, kind="stable")  # group by user, keep chronological order
    offsets = offsets_of(np.bincount(user_codes, minlength=len(user_ids)))
    item_ids = np.empty(len(uniq) + 1, dtype=uniq.dtype if uniq.dtype != object else object)
    item_ids[1:] = uniq
    item_ids[0] = -1 if item_ids.dtype.kind in "iu" else ""
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float32)[order]
    if targets is not None:
        targets = np.asarray(targets, dtype=bool)[order]
    return Dataset(name=name, path=path, kind=kind, user_ids=np.asarray(user_ids),
                   item_ids=item_ids, sequences=Sequences(offsets, items[order], weights, targets), **extra)


# -----------------------------------------------------------------------------
# S3-Rec .txt

_ASCII_INT = re.compile(r"[+-]?[0-9]+")


def read_s3rec(path: str, data: bytes | None = None) -> Dataset:
    """An S3-Rec .txt file (or its bytes, read from a stream): one line per user, `user item item ...`."""
    users, user_codes, items = [], [], []
    line_of_user = {}
    # bytes: a non-UTF-8 line is reported by number, not as a traceback
    with (open(path, "rb") if data is None else io.BytesIO(data)) as f:
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
    stem = re.sub(r"\.txt$", "", os.path.basename(path), flags=re.I)
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
    """The fields as ints: ASCII digits only (int() also takes '1_000' and other scripts') within int64."""
    try:
        ids = [int(x) for x in fields]
        plain = all(x.isascii() and "_" not in x for x in fields)
    except ValueError:
        plain = False
    if not plain:
        k = next(i for i, x in enumerate(fields) if not _ASCII_INT.fullmatch(x))
        raise DataError(f"{path}:{lineno}: field {k + 1} is {show(fields[k])}, expected an integer id")
    if max(ids) > _I64_MAX or min(ids) < _I64_MIN:
        k = next(i for i, v in enumerate(ids) if not _I64_MIN <= v <= _I64_MAX)
        raise DataError(f"{path}:{lineno}: field {k + 1} is {show(fields[k])}, beyond the int64 range of ids")
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
# in-memory frames

def from_frame(frame, user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = "timestamp",
               filter: str | None = None, weight_col: str | None = None, time_format: str | None = None,
               target_filter: str | None = None, need_targets: bool = True) -> Dataset:
    """An in-memory pandas / polars / pyarrow frame as an event log (path "<dataframe>"); arguments as in `load`."""
    converted = frame_to_polars(frame)
    if converted is None:
        raise UsageError(f"load: expected a path, a pandas or polars DataFrame or a pyarrow Table, "
                         f"not {type(frame).__module__}.{type(frame).__name__}")
    df, index_names = converted
    return table_events(df, Where("<dataframe>", index_names=index_names), "dataframe",
                   user_col, item_col, time_col, filter, weight_col, time_format, target_filter, need_targets)


# -----------------------------------------------------------------------------
# event logs: columns -> Dataset

def read_table(path: str, user_col="user_id", item_col="item_id", time_col="timestamp",
               filter: str | None = None, weight_col: str | None = None, time_format: str | None = None,
               target_filter: str | None = None, need_targets: bool = True) -> Dataset:
    """An event log file (.csv/.tsv, optionally .gz, .parquet) or a folder of Parquet files."""
    if os.path.isdir(path):
        df, where = _read_parquet_folder(path)
        name = os.path.basename(os.path.normpath(path))
    else:
        df, where, name = read_frame(path), as_where(path), data_set_name(path)
    return table_events(df, where, name, user_col, item_col, time_col, filter, weight_col, time_format, target_filter,
                   need_targets)


def data_set_name(path: str) -> str:
    """The file name without its suffix (log.csv.gz -> log): the data set's name."""
    return re.sub(r"\.(csv|tsv)\.gz$|\.[^.]*$", "", os.path.basename(path), flags=re.I)


def table_events(df, where: Where, name, user_col, item_col, time_col, filter, weight_col, time_format=None,
                 target_filter=None, need_targets=True) -> Dataset:
    """A table already read (a polars frame; `where` names it in error lines) as an event log, with
    `load`'s arguments: read once, a caller (inspect) may ask for it twice with other columns."""
    path = where.path
    if df.height == 0:
        raise DataError(f"{path}: no interactions (no data rows)")
    time_col = None if time_col is None or str(time_col).lower() == "none" else time_col
    roles = [c for c in (user_col, item_col, time_col, weight_col) if c]  # weight_col=item_id: ids as weights
    if len(set(roles)) < len(roles):
        raise UsageError(f"user_col={user_col!r}, item_col={item_col!r}, time_col={time_col!r}"
                         + (f", weight_col={weight_col!r}" if weight_col else "") + ": each must name a different column")
    filter_col, values = parse_filter(filter) if filter else (None, None)
    target_col, target_values = parse_filter(target_filter, "target_filter") if target_filter else (None, None)
    _require_columns(where, df, [user_col, item_col])
    _require_columns(where, df, [time_col] if time_col else [], {time_col: "time column"},
                     "; set time_col to one of them, or time_col=none to keep file order")
    _require_columns(where, df, [c for c in (weight_col, filter_col, target_col) if c],
                     what={weight_col: "weight column", filter_col: "filter column",
                           target_col: "target_filter column"})
    used = {user_col, item_col, time_col, weight_col, filter_col, target_col}
    ignored = [c for c in df.columns if c not in used]

    if filter_col:
        keep = filter_mask(where, df, filter_col, values)
        if not keep.any():
            raise DataError(f"{path}: no interactions left after filter {filter!r} "
                            f"(column {filter_col!r} has e.g. {_examples(df[filter_col])})")
        df, where = df.filter(_polars().Series(keep)), dataclasses.replace(where, rows=np.nonzero(keep)[0])
    weights = _weights(where, df, weight_col) if weight_col else None
    is_target = event_types = None
    if target_col:
        # every event stays in the histories; the matching ones are what validation and test hold out
        is_target = filter_mask(where, df, target_col, target_values, "target_filter")
        if need_targets and not is_target.any():
            raise DataError(f"{path}: no event matches target_filter {target_filter!r} "
                            f"(column {target_col!r} has e.g. {_examples(df[target_col])})")
        if weights is None:  # without weight_col only the targets are learned from: the others are context
            weights = is_target.astype(np.float32)
        event_types = sorted(df[target_col].cast(_polars().Utf8).drop_nulls().unique().to_list())

    users = column_ids(where, df, user_col)
    items = column_ids(where, df, item_col)
    if time_format and not time_col:
        raise UsageError(f"time_format={time_format!r}: reads the time column, but time_col=none keeps file order")
    times = _timestamps(where, df, time_col, time_format) if time_col else np.zeros(len(users))
    user_ids, codes, order = _chronological(users, times)
    # `order` sorts by user first, so times[order] is already in the CSR order _finish builds
    return _finish(name, path, "table", user_ids, codes[order], items[order],
                   weights=None if weights is None else weights[order],
                   targets=None if is_target is None else is_target[order], ignored_columns=ignored,
                   times=times[order] if time_col else None,
                   time_unit=_time_unit(df[time_col], time_format) if time_col else None, event_types=event_types)


def _chronological(user_raw, times):
    """Users in order of first appearance; rows sorted by (user, time), ties in file order."""
    uniq, first, codes = np.unique(user_raw, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")  # users renumbered by first appearance: output follows the file
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[by_first] = np.arange(len(uniq))
    codes = rank[codes]
    user_ids = uniq[by_first]
    order = np.lexsort((np.arange(len(codes)), times, codes))
    return user_ids, codes, order


# -----------------------------------------------------------------------------
# challenge folder

def read_challenge(folder: str) -> Dataset:
    train_path = os.path.join(folder, "train.csv")
    where = as_where(train_path)
    df = read_frame(train_path)
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
    where = as_where(path)
    df = read_frame(path)
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
