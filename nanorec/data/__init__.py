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
  (``column=value[,value...]``) keeps matching rows, an optional
  ``weight_col`` gives each event a weight (> 0; anything else is an error) and
  an optional ``target_filter`` (the same syntax) keeps every row but makes only
  the matching ones the targets (the others are context: Sequences.weights 0).

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

The package, one job a module:

- sequences.py: Sequences (CSR rows), item_counts, Dataset, EvalSet, Split, split
- readers.py: load / load_like and the readers (S3-Rec .txt, event logs, frames,
  challenge folders), read_json
- tables.py: files and in-memory frames as polars DataFrames (text, Parquet, folders)
- columns.py: id / time / weight / filter column typing and checks, row naming
- time_split.py: holdout=time (one global split time; the test split's sets of next items)
"""
# re-exported: `from nanorec.data import DataError` keeps working
from ..errors import DataError, UsageError  # noqa: F401
from .columns import column_ids  # noqa: F401  (recommend.read_user_list types a users file's ids as the readers do)
from .readers import from_frame, load, load_like, read_challenge, read_json, read_s3rec, read_table  # noqa: F401
from .sequences import HOLDOUTS, Dataset, EvalSet, Sequences, Split, funnel_note, item_counts, split  # noqa: F401
from .tables import read_frame  # noqa: F401  (recommend.read_user_list reads a users file as the readers do)
from .time_split import (VALID_SHARE_OF_DATES, TargetSets, parse_split_time, show_time, split_like,  # noqa: F401
                         split_times, time_split)
