"""Interactions in, per-user chronological item sequences out.

The inputs, chosen by what the path (or object) is:

- an S3-Rec ``.txt`` file: one user a line, ``user_id item_id item_id ...`` in
  chronological order (a sibling ``*_item2attributes.json`` is noticed);
- a challenge folder: ``train.csv`` (user_id,item_id,rating,timestamp), ``test.csv``
  (user_id,...), optionally ``id_mappings.json`` and ``item_metadata.csv`` (ids from 0);
- an event log: a ``.csv``/``.tsv`` (optionally ``.gz``) or ``.parquet`` file, a folder
  of Parquet files (hive ``key=value`` folders become columns), or an in-memory pandas /
  polars DataFrame or pyarrow Table, with columns named by the caller (`load`). Rows are
  ordered by the time column, ties in file order (``time_col="none"``: file order).

Every bad input raises DataError with one line naming the file, the row, the column,
the bad value and the problem. The package, one job a module:

- sequences.py: Sequences (CSR rows), item_counts, Dataset, EvalSet, Split, split
- readers.py: load / load_like, the readers (S3-Rec, event logs, frames, challenge folders), read_json
- tables.py: files and in-memory frames as polars DataFrames (text, Parquet, folders)
- columns.py: id / time / weight / filter column typing and checks, row naming
- time_split.py: holdout=time (one global split time; the test split's sets of next items)
- ids.py: original ids -> a run's rows (the one matching rule)
"""
# re-exported: `from nanorec.data import DataError` keeps working
from ..errors import DataError, UsageError  # noqa: F401
from .columns import column_ids  # noqa: F401  (recommend.read_user_list types a users file's ids as the readers do)
from .readers import from_frame, load, load_like, read_challenge, read_json, read_s3rec, read_table  # noqa: F401
from .sequences import HOLDOUTS, Dataset, EvalSet, Sequences, Split, funnel_note, item_counts, split  # noqa: F401
from .tables import read_frame  # noqa: F401  (recommend.read_user_list reads a users file as the readers do)
from .time_split import (VALID_SHARE_OF_DATES, TargetSets, parse_split_time, show_time, split_like,  # noqa: F401
                         split_times, time_split)
