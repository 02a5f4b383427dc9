"""Every event log table as a polars DataFrame: .csv/.tsv (optionally .gz) files
(every column as text, values exactly as written), .parquet files, folders of
Parquet files (subfolders and hive partitions included, one schema checked across
the files, read with pyarrow.dataset), and in-memory pandas / polars / pyarrow frames.
"""
from __future__ import annotations

import gzip
import io
import os
import sys
import zlib

import numpy as np

from ..errors import DataError, one_line
from .columns import _CANONICAL_INT, Where, _polars

# -----------------------------------------------------------------------------
# reading event log files into polars frames

def read_frame(path: str, data: bytes | None = None, suffix: str | None = None):
    """A table file or Parquet folder as a polars DataFrame (data: a stream's bytes instead; suffix: their format)."""
    lower = suffix or path.lower()
    if data is None and os.path.isdir(path):
        return _read_parquet_folder(path)[0]
    if lower.endswith((".parquet", ".pq")):
        return read_parquet(path, data)
    return _read_text_table(path, data, "\t" if lower.endswith((".tsv", ".tsv.gz")) else ",")


PARQUET_MAGIC, GZIP_MAGIC = b"PAR1", b"\x1f\x8b"


def is_stream(path: str) -> bool:
    """A pipe or FIFO (neither file nor folder): read once, never seeked or opened again (a FIFO's would hang)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    import stat
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def read_stream(path: str) -> bytes:
    """All the bytes of `path`, read once from start to end (a pipe or FIFO: as a stream)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None


def _read_text_table(path: str, data: bytes | None = None, sep: str = ","):
    """A .csv/.tsv(.gz) file (or a stream's bytes) as a polars DataFrame of text columns."""
    pl = _polars()
    lower = path.lower()
    if data is not None or lower.endswith(".gz"):
        if data is None or data[:2] == GZIP_MAGIC:
            data = gunzip(path, data)
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
        # Every column as text, as written: inference would turn the id 005461 into 5461. The
        # column checks type each column by its role (_text_ids, _timestamps, _weights).
        return pl.read_csv(source(), separator=sep, infer_schema=False)
    except pl.exceptions.PolarsError as e:
        msg = str(e)
    if "utf-8" in msg.lower():
        raise DataError(_non_utf8_line(path, data)) from None
    raise DataError(f"{path}: cannot be read as a table ({one_line(msg)})") from None


def gunzip(path: str, data: bytes | None = None) -> bytes:
    """The decompressed bytes of a gzip file (or of gzip bytes already read from a stream)."""
    try:
        if data is not None:
            return gzip.decompress(data)
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable gzip file ({one_line(e)})") from None


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
_RENAME = {"\t": "a tab-separated file? name it .tsv", ",": "a comma-separated file? name it .csv"}


def _check_separator(path, header: bytes, sep: str):
    """A header with another separator but not the expected one: a misnamed file."""
    text = header.decode("utf-8", errors="replace")
    if sep in text:
        return
    for other, name in _SEPARATORS.items():
        if other != sep and other in text:
            hint = _RENAME.get(other, f"a {name[:-1]}-separated file? save it with commas (.csv) or tabs (.tsv)")
            raise DataError(f"{path}: header has {name} but no {_SEPARATORS[sep]}: {hint}")


def read_parquet(path: str, data: bytes | None = None):
    pl = _polars()
    try:
        return pl.read_parquet(path if data is None else io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as a table ({one_line(e)})") from None


def _parquet_files(folder: str) -> list[str]:
    """Every Parquet file under `folder`, sorted; names starting "." or "_" (Spark's _SUCCESS) are not data."""
    def unreadable(e):
        raise DataError(f"{e.filename or folder}: cannot list the folder ({e.strerror})")
    found = []
    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found += [os.path.join(root, f) for f in names
                  if f.lower().endswith((".parquet", ".pq")) and not f.startswith((".", "_"))]
    return sorted(found, key=lambda f: os.path.relpath(f, folder).split(os.sep))


def _read_parquet_folder(folder: str):
    """(one frame of every Parquet file under the folder, Where naming each file). A column's type
    may differ between files only in width (_one_type); key=value folder names become columns."""
    pa, pads = _pyarrow()
    files = _parquet_files(folder)
    if not files:
        raise DataError(f"{folder}: is a folder without .parquet files, expected a table")
    schemas = [_parquet_schema(f) for f in files]
    names = schemas[0].names
    for f, schema in zip(files[1:], schemas[1:]):
        if set(schema.names) != set(names):
            raise DataError(f"{f}: columns {', '.join(schema.names)} differ from {os.path.relpath(files[0], folder)}'s "
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
            raise DataError(f"{fragment.path}: cannot be read as a table ({one_line(e)})") from None
        tables.append(table)
        parts.append((fragment.path, first))
        first += table.num_rows
    df = _polars().from_arrow(pa.concat_tables(tables))
    return _integer_spellings(df, keys), Where(folder, parts=tuple(parts))


def _pyarrow():
    import pyarrow as pa  # imported late, like polars
    import pyarrow.dataset as pads
    return pa, pads


def _parquet_schema(path: str):
    import pyarrow.parquet as pq
    try:
        return pq.read_schema(path)
    except Exception as e:  # noqa: BLE001  pyarrow's errors share no base class with OSError
        raise DataError(f"{path}: cannot be read as a table ({one_line(e)})") from None


def _partition_keys(folder: str, files) -> list[str]:
    """The keys of the key=value folder names between `folder` and its files, in order of appearance."""
    keys = []
    for f in files:
        for part in os.path.dirname(os.path.relpath(f, folder)).split(os.sep):
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
            raise DataError(f"{folder}: column {name!r} is {types[i]} in {os.path.relpath(files[i], folder)} but "
                            f"{types[j]} in {os.path.relpath(files[j], folder)}; every file must store a column "
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
    """Text columns (hive partition values) as int64 when every value is spelled as str(int) would."""
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

def frame_to_polars(frame):
    """(polars DataFrame, pandas index names) of a pandas / polars / pyarrow frame (via sys.modules), else None."""
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
    """pandas object columns mixing integers and strings as each value's text: 42 and '42' are one id."""
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
        raise DataError(f"<dataframe>: {where} cannot be converted ({one_line(e)}); "
                        "mixed types in one column?") from None


def _converts(to_polars, frame, col) -> bool:
    try:
        to_polars(frame[[col]] if hasattr(frame, "iloc") else frame.select([col]))
        return True
    except Exception:  # noqa: BLE001
        return False
