"""Top-k recommendations from a trained run, and the challenge submission writer.

    nanorec recommend --run RUN_DIR --data PATH --out FILE [--users FILE] [--k 10]
                      [--mode oneshot|generative] [--exclude-seen|--include-seen]

Two ways to read a list out of the model:
- oneshot: the k highest logits after the user's last item (one forward pass);
- generative: k steps, each appending its greedy (or sampled) item to the
  history and predicting again; an item is never repeated in the list.
Users with no usable history (cold start: normal for a test user absent from
training) get the most popular items, marked `source=popularity` with no score
(counts are not on the model's scale). A challenge folder's default users are
its test.csv; the output is then `user_id,predictions` (10 original ids,
space-separated, best first). Otherwise a long table
`user_id,item_id,score,rank,source`. The run is opened by `Run.open` and its
histories prepared by `histories_for`, as the server and the Python API do;
scoring goes through nanorec.scoring.scorer, as evaluation does. Ids match by their
exact text (ids.py): a --users file whose ids are of another type than the
run's (strings for a run trained on integer ids) is an error when none is
known, a warning line naming how many are known otherwise. With
--exclude-seen a list never holds the user's own items: a user with fewer than
k unseen items left gets a shorter list, as from the server and the Python API;
--include-seen lets them be listed anywhere (repeat purchases). Neither given:
the run's own choice (its exclude_seen; for auto, the one training made on
validation and metrics.json records: nanorec/scoring/seen.py).

Event types: a run trained with target_filter (e.g. event_type=purchase) reads --data with
it, so the log needs that column; exclude-seen removes the user's purchases (targets), never
an item only viewed, and `--data <the run's own log>` gives exactly the run's lists.

Business filters: --allow-items FILE (only these items) and --deny-items FILE
(never these items), each a list of item ids, one a line with or without a header,
or a table with the run's item column (else item_id), read by `read_filter_file`
(the API's and the server's filter files too); one line on stderr says how many ids
each file holds and how many the run does not know (those filter nothing). They are
applied before the lists are cut (scoring.item_mask), for every method and for the
popularity fallback of cold users. A user left with fewer than k items (filters,
seen items) gets a shorter list (fewer rows in the long format, fewer ids in a
submission), never filled, and one line on stderr says how many.

At scale: users are taken batch by batch in input order and each batch is
written as soon as it is scored (to a temporary file, renamed into place at the
end), so memory does not grow with the number of users. Under torchrun

    torchrun --standalone --nproc_per_node=4 -m nanorec.cli recommend --run-dir R --data D --out F

(--run-dir: torchrun's own parser would take --run for its --run-path), each
process takes a contiguous slice of the users (whole batches), writes its part,
and rank 0 merges the parts into ONE output, checks that every user is there
once in input order, and removes the parts.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from ..core.devices import pick_device
from ..data import Dataset, Sequences, ids, item_counts, load_like
from ..data.columns import parse_filter
from ..errors import DataError, UsageError, show
from ..runs import rundir
from ..runs.files import atomic_write, is_special
from ..runs.run import Run
from .scorer import item_mask, recommend_lists

# -----------------------------------------------------------------------------
# users, histories and the fallback

def histories_in_run_vocab(ds: Dataset, run_item_ids: np.ndarray) -> tuple[Sequences, int]:
    """The data set's full histories re-indexed to the run's item vocabulary, with their
    events' weights and target flags (target_filter: exclude_seen removes the purchases only,
    as for the run's own histories). Items the model never saw are dropped from the
    histories (returned count), with their flags."""
    rows = ids.rows(run_item_ids[1:], ds.item_ids[1:])  # the one id rule (ids.py)
    remap = np.concatenate([[0], np.where(rows >= 0, rows + 1, 0)]).astype(np.int64)
    items = remap[ds.sequences.items]
    known = items > 0
    lengths = np.add.reduceat(known.astype(np.int64), ds.sequences.offsets[:-1]) if len(items) else np.zeros(len(ds.user_ids), np.int64)
    lengths = np.where(ds.sequences.lengths > 0, lengths, 0)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Sequences(offsets, items[known], *ds.sequences._cut(known)), int((~known).sum())


def read_user_list(path: str, user_col: str = "user_id") -> np.ndarray:
    """The user column of a CSV/Parquet file: `user_col` (the run's), else `user_id`.
    Typed as the readers type ids (strings stay strings); an empty list or a repeated
    user is an error."""
    from ..data import column_ids, read_frame
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    df = read_frame(path) if os.path.isfile(path) or os.path.isdir(path) else _read_stream_table(path)
    name = user_col if user_col in df.columns else "user_id"
    if name not in df.columns:
        raise DataError(f"{path}: missing column {user_col!r} (columns are {', '.join(df.columns)})")
    if df.height == 0:
        raise DataError(f"{path}: no users (no data rows)")
    values = column_ids(path, df, name)
    _, first, counts = np.unique(values.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = values.tolist()[np.sort(first[counts > 1])[0]]
        raise DataError(f"{path}: user {dup!r} is listed more than once")
    return values


def _read_stream_table(path: str):
    """A pipe or FIFO (--users <(cut -d, -f1 test.csv)) read once, as a stream, to a frame:
    a CSV/TSV/Parquet table by its name or its first bytes (one column: CSV), else a DataError."""
    from ..data.readers import read_stream_table
    from ..data.tables import read_frame
    kind, df, _, data = read_stream_table(path)
    if df is None and kind is None:  # one column: no comma to tell it by
        return read_frame(path, data, ".csv")
    if df is None:
        raise DataError(f"{path}: a pipe or FIFO whose first bytes are not a table (CSV with a header, TSV, Parquet)")
    return df


# -----------------------------------------------------------------------------
# filter files: the one reader of --allow-items / --deny-items, of the API's items= /
# exclude_items= given as a path, and of the server's --deny-items (at start and on reload)

@dataclass
class FilterFile:
    """A filter file as matched to a run: the internal indices of the ids the run knows and
    what was read (`line` says it in one line)."""
    path: str
    rows: np.ndarray          # (n,) internal indices of the known ids
    read: int                 # ids read
    unknown: np.ndarray       # (u,) the ids the run does not know, as written
    header: str | None        # a one-column file's first line, when it was a header

    def line(self, option: str) -> str:
        """e.g. "--deny-items deny.csv: 12 item ids read (header 'sku'), 2 not items of the run
        (e.g. 'X9'); 10 items denied"."""
        text = f"{option} {self.path}: {_count(self.read, 'item id')} read"
        if self.header is not None:
            text += f" (header {show(self.header)})"
        if len(self.unknown):
            text += f", {len(self.unknown):,} not known to the run (e.g. {show(self.unknown[0])})"
        return text + f"; {_count(len(self.rows), 'item')} {'allowed' if _allows(option) else 'denied'}"


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _allows(option: str) -> bool:
    return option in ("--allow-items", "items")


def read_filter_file(path, item_ids: np.ndarray, col: str = "item_id", option: str = "--deny-items",
                     data: bytes | None = None) -> FilterFile:
    """A list of item ids matched to the run's vocabulary item_ids (N+1,) by the one id rule.

    The file: CSV/TSV (optionally gzip; a pipe or FIFO is read once, as a stream) or Parquet.
    One column, with or without a header, or a table with a header and the run's item column
    `col` (else item_id). A UTF-8 BOM, blank lines, CRLF and spaces around an id are not part of
    any id; ids keep their text (007 stays 007, as the readers read ids). A one-column file's
    first line is an id when the run knows it, or when the run's ids are integers and it is
    written as one; else it is a header (`FilterFile.header`; an unknown first line taken as a
    header changes no list: the run could not list it anyway).
    Ids the run does not know are counted (`FilterFile.unknown`), not an error. DataError (one
    line): no such file, a folder, not a table, an id listed twice, a table without the item
    column, an allow list (option --allow-items / items) with no id or none the run knows. An
    empty deny list (no ids, or a header alone) denies nothing: an emptied out-of-stock list.
    data: the file's bytes when the caller has read them already (the server hashes them)."""
    path = os.fspath(path)
    values, header = _filter_ids(path, col, item_ids, data)
    if not values and _allows(option):
        why = f"its one line {show(header)} is no item of the run (read as a header)" if header else "no data rows"
        raise DataError(f"{path}: no items ({why}): an allow list of no items lists nothing")
    texts = np.asarray(values, dtype=object).astype(str) if values else np.zeros(0, dtype=str)
    if ids.kind(item_ids[1:]) == "integers":  # 17.0 is 17 where ids are integers, as the readers read it
        texts = np.asarray([_WHOLE.sub(r"\1", t) for t in texts.tolist()], dtype=str) if len(texts) else texts
    _, first, counts = np.unique(texts, return_index=True, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: item {texts[np.sort(first[counts > 1])[0]]} is listed more than once")
    rows = ids.rows(item_ids[1:], texts)
    got = FilterFile(path, rows[rows >= 0] + 1, len(texts), texts[rows < 0], header)
    if _allows(option) and len(texts) and not len(got.rows):
        detail = ids.kinds_differ(item_ids[1:], texts, "item")
        raise DataError(f"{got.line(option)}: no item could be listed" + (f" ({detail})" if detail else ""))
    return got


def _filter_ids(path: str, col: str, item_ids: np.ndarray, data: bytes | None = None) -> tuple[list[str], str | None]:
    """(the ids of a filter file as text, a one-column file's header or None)."""
    import csv
    import io

    from ..data import column_ids
    from ..data.tables import GZIP_MAGIC, PARQUET_MAGIC, gunzip, read_parquet
    if data is None:
        data = read_filter_bytes(path)
    if data[:4] == PARQUET_MAGIC:
        df = read_parquet(path, data)
        name = _filter_column(path, df.columns, col)
        return [str(x) for x in column_ids(path, df, name)], None
    if data[:2] == GZIP_MAGIC:
        data = gunzip(path, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text; save it as UTF-8") from None
    sep = "\t" if path.lower().endswith((".tsv", ".tsv.gz")) else ","
    try:
        lines = [[f.strip() for f in r] for r in csv.reader(io.StringIO(text), delimiter=sep)]
    except csv.Error as e:
        raise DataError(f"{path}: cannot be read as a table ({e})") from None
    lines = [r for r in lines if any(r)]  # blank lines (and lines of empty fields) are no ids
    if not lines:  # an empty file: no ids (an emptied deny list)
        return [], None
    if max(len(r) for r in lines) > 1:  # a table: its first line is its header
        name = _filter_column(path, lines[0], col)
        j = lines[0].index(name)
        short = next((i for i, r in enumerate(lines[1:]) if len(r) <= j or not r[j]), None)
        if short is not None:
            raise DataError(f"{path}: data row {short + 1} has no {name!r} value")
        return [r[j] for r in lines[1:]], None
    values = [r[0] for r in lines]
    semi = next((i for i, v in enumerate(values) if ";" in v), None)
    if semi is not None and not (ids.rows(item_ids[1:], np.asarray(values, dtype=str)) >= 0).any():
        raise DataError(f"{path}: line {semi + 1} is {show(values[semi])}, and no line is an item of the run: "
                        f"a ;-separated export? Write one id a line, or a comma-separated table")
    if _is_header(values[0], item_ids):
        return values[1:], values[0]
    return values, None


def read_filter_bytes(path: str) -> bytes:
    """A filter file's bytes, read once (a pipe or FIFO as a stream), or a DataError naming it."""
    from ..data.tables import read_stream
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file of item ids")
    return read_stream(path)


def _filter_column(path: str, columns: list, col: str) -> str:
    """The item column of a filter table: the run's item column, else item_id, else its only one."""
    for name in (col, "item_id"):
        if name in columns:
            return name
    if len(columns) == 1:
        return columns[0]
    raise DataError(f"{path}: missing column {col!r} (columns are {', '.join(map(str, columns))})")


_WHOLE = re.compile(r"^(-?(?:0|[1-9][0-9]*))\.0+$")  # a whole number written as a float


def _is_header(first: str, item_ids: np.ndarray) -> bool:
    """A one-column file's first line is a header unless it is an id the run knows, or a
    number (no column is named 4: an id of another spelling, 4 for the run's 004, is an
    id the run does not know, counted as one, never hidden as a header)."""
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", first):
        return False
    return ids.rows(item_ids[1:], np.array([first]))[0] < 0


def filter_items(item_ids: np.ndarray, given: np.ndarray, where: str, error=DataError) -> np.ndarray:
    """A filter's original item ids (the API's and the server's lists) -> (n,) internal indices,
    by the one id rule (ids.py). An id the run does not know is an `error` naming how many and
    one of them: a list typed in code is a promise about the lists, and a typo in it would
    silently be no filter at all (a filter *file* counts them instead: read_filter_file)."""
    rows = ids.rows(item_ids[1:], given)
    unknown = rows < 0
    if unknown.any():
        detail = ids.kinds_differ(item_ids[1:], given, "item")
        example = np.asarray(given)[np.argmax(unknown)]
        raise error(f"{where}: {int(unknown.sum()):,} of its {len(given):,} item ids are not items of the run "
                    f"(e.g. {show(example)})" + (f"; {detail}" if detail else ""))
    return rows + 1


def blocked_items(item_ids: np.ndarray, allow=None, deny=None, allow_from: str = "--allow-items",
                  deny_from: str = "--deny-items", error=DataError):
    """The business filters (original ids, None: not given) as scoring's one item mask
    (N+1,) bool, True = never listed; None when neither is given."""
    num_items = len(item_ids) - 1
    allow = None if allow is None else filter_items(item_ids, allow, allow_from, error)
    deny = None if deny is None else filter_items(item_ids, deny, deny_from, error)
    return item_mask(num_items, allow, deny)


def filter_files(item_ids: np.ndarray, allow_path=None, deny_path=None, col: str = "item_id",
                 report=lambda got, option: print(got.line(option), file=sys.stderr),
                 allow_option: str = "--allow-items", deny_option: str = "--deny-items"):
    """An allow file and a deny file (paths, None: not given; `read_filter_file`) as scoring's item
    mask (None when neither is given); report(FilterFile, option) is told what each file held."""
    rows = {}
    for option, path in ((allow_option, allow_path), (deny_option, deny_path)):
        if path is not None:
            got = read_filter_file(path, item_ids, col, option)
            report(got, option)
            rows[option] = got.rows
    if not rows:
        return None
    return item_mask(len(item_ids) - 1, rows.get(allow_option), rows.get(deny_option))


def listed(items: np.ndarray) -> np.ndarray:
    """(..., k) bool: the slots of a list that hold an item. A list with fewer than k items left
    (filters; exclude_seen near the catalogue's size) ends with item 0 (padding: never an item),
    which writers and callers drop: a shorter list, never filled."""
    return np.asarray(items) != 0


def histories_for(run: Run, data_path=None, warn=print, ds: Dataset | None = None
                  ) -> tuple[np.ndarray, Sequences, np.ndarray | None]:
    """The one preparation of the histories a list continues (the CLI, the server and the
    Python API all come here), in the run's vocabulary:
    -> (known_users (U0,), hist (U0 rows), default_users).
    data_path None: the run's own (histories.parquet); default users: all of them.
    Else the log's (a newer log may add items: those the run never saw are dropped; none
    known is the wrong data), read as at training: under target_filter its column marks the
    targets (exclude_seen removes those), and a value the run never saw is an error; default
    users: a challenge folder's test.csv, else every user of the log (None: a challenge folder
    without test.csv, which must name its users). ds: data_path already read by load_like's rules
    (inspect reads its log once)."""
    if data_path is None:
        if run.histories is None:
            raise DataError(f"{run.run_dir}: no {rundir.HISTORIES} (a run from an older nanorec): pass --data")
        return run.user_ids, run.histories, run.user_ids
    if ds is None:  # target_filter marks the targets; views alone are history
        ds = load_like(run.config, data_path, need_targets=False)
    check_event_types(ds.event_types, known_event_types(run), run, data_path, DataError)
    hist, dropped = histories_in_run_vocab(ds, run.item_ids)
    if dropped and len(hist.items) == 0:  # a newer log may add items; none known is the wrong data
        detail = ids.kinds_differ(run.item_ids[1:], ds.item_ids[1:], "item")
        raise DataError(f"{data_path}: none of its items is in the vocabulary of the run in {run.run_dir} "
                        f"({rundir.ITEMS}" + (f"; {detail}" if detail else "") + "); use data with the run's item ids")
    if dropped:  # ids of another type than the run's are never dropped without a word
        known = ids.rows(run.item_ids[1:], ds.item_ids[1:]) >= 0
        note = ids.check_kinds(run.item_ids[1:], ds.item_ids[1:], known, data_path, "item")
        if note:
            warn(note)
    default = ds.test_users if ds.test_users is not None else (None if ds.kind == "challenge" else ds.user_ids)
    return ds.user_ids, hist, default


# -----------------------------------------------------------------------------
# event types: which events of a history are targets (target_filter)

def known_event_types(run: Run) -> list[str] | None:
    """The values of the target_filter column at training (data.json's event_types, as text);
    None for a run without target_filter, or one from before they were recorded."""
    fp = rundir.read_fingerprint(run.run_dir) if run.config.target_filter else None
    values = None if fp is None else fp.get("event_types")
    if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        raise DataError(f"{os.path.join(run.run_dir, rundir.DATA)}: event_types must be a list of strings")
    return values


def check_event_types(given, known: list[str] | None, run: Run, where: str, error=UsageError) -> None:
    """Every event type given (text) must be a value the run was trained with (`known`; None:
    not recorded, nothing to check): an unknown one would silently count as context.
    where: what holds the given values ("event_types", a --data path)."""
    if given is None or known is None:
        return
    new = sorted(set(given) - set(known))
    if new:
        col = parse_filter(run.config.target_filter, "target_filter")[0]
        shown = ", ".join(map(repr, known[:10])) + (f", ... ({len(known) - 10} more)" if len(known) > 10 else "")
        raise error(f"{where}: event type {new[0]!r} (column {col!r}) is not one the run in {run.run_dir} was "
                    f"trained with (its values: {shown})")


class RawHistories:
    """A raw history, as the Python API and the server take one, -> one row in the run's
    vocabulary: original item ids, oldest first, and optionally each event's type (a value
    of the target_filter column; None: every event is a target, as for a run without one).
    The types mark the targets by the run's target_filter, as the readers do at training, so
    exclude_seen removes the purchases only. Built once per loaded run.
    call(history (L,), event_types (L,) or None) -> (one-row Sequences, how many ids are unknown:
    left out, with their types). Bad event types are an `error` (one line)."""

    def __init__(self, run: Run, error=UsageError):
        self.run, self.error = run, error
        self.lookup = ids.item_rows(run.item_ids)
        self.filter = parse_filter(run.config.target_filter, "target_filter") if run.config.target_filter else None
        self.known = known_event_types(run)

    def __call__(self, history, event_types=None) -> tuple[Sequences, int]:
        items, found = self.lookup(history)
        targets = None if event_types is None else self.targets(event_types, len(found))[found]
        return Sequences(np.array([0, len(items)], np.int64), items, targets=targets), int((~found).sum())

    def targets(self, event_types, n: int) -> np.ndarray:
        """(n,) bool: the events whose type matches target_filter."""
        import polars as pl

        from ..data.columns import Where, filter_mask
        if self.filter is None:
            raise self.error(f"event_types: the run in {self.run.run_dir} was trained without target_filter (every "
                             "event is a target); leave event_types out")
        if len(event_types) != n:
            raise self.error(f"event_types: {len(event_types):,} values for a history of {n:,} items; give one "
                             "event type per item")
        text = [str(v) for v in event_types]
        check_event_types(text, self.known, self.run, "event_types", self.error)
        col, values = self.filter
        frame = pl.DataFrame({col: pl.Series(text, dtype=pl.Utf8)})
        return filter_mask(Where("event_types"), frame, col, values, "target_filter")


def prepare(run_dir: str, data_path=None, k: int = 10, users=None, device: str = "auto", users_from: str = "--users"):
    """Everything a list needs, checked before any scoring:
    -> (scorer, num_items, item_ids, known_users, hist, users).
    users: the ids to list (default: histories_for's); given ids of another type than the
    run's users are an error when none is known, a warning line (stderr) when some are not."""
    run = Run.open(run_dir, pick_device(device))
    if not 1 <= k <= run.num_items:
        raise UsageError(f"--k {k}: must be between 1 and the {run.num_items:,} items the model knows")
    warn = lambda line: print(line, file=sys.stderr)  # noqa: E731
    known_users, hist, default_users = histories_for(run, data_path, warn)
    if users is None:
        if default_users is None:
            raise DataError(f"{data_path}: a challenge folder without test.csv; say which users with --users FILE")
        users = default_users
    else:
        note = ids.check_kinds(known_users, users, ids.rows(known_users, users) >= 0, users_from, "user")
        if note:
            warn(note)
    return run.scorer, run.num_items, run.item_ids, known_users, hist, np.asarray(users)


def recommend(run_dir: str, data_path=None, k: int = 10, mode: str = "oneshot", exclude_seen: bool | None = None,
              users=None, device: str = "auto", batch_size: int = 512, temperature: float = 0.0,
              top_k: int = 0, seed: int = 0, progress: bool = False, allow=None, deny=None):
    """Lists from a run folder -> (user_ids (U,), items (U, k) original ids, scores (U, k), cold (U,) bool).
    allow / deny: original item ids (business filters; `blocked_items`); a slot with no
    item left holds the padding id item_ids[0] (see `listed` on the internal indices).

    Histories come from `data_path` (a log in the run's vocabulary) or, when it is
    None, from the run's own histories.parquet. Default users: a challenge
    folder's test.csv, else every user with a history. exclude_seen None: the run's choice."""
    check_options(argparse.Namespace(k=k, mode=mode, temperature=temperature, top_k_sample=top_k, seed=seed,
                                     batch_size=batch_size))
    scorer, num_items, item_ids, known_users, hist, users = prepare(run_dir, data_path, k, users, device)
    exclude_seen = run_default_seen(run_dir, exclude_seen)
    blocked = blocked_items(item_ids, allow, deny)
    items, scores, cold = recommend_users(scorer, num_items, known_users, hist, users, k,
                                          exclude_seen, mode, batch_size, temperature, top_k, seed, progress,
                                          blocked)
    return users, item_ids[items], scores, cold


def run_default_seen(run_dir: str, exclude_seen: bool | None) -> bool:
    """exclude_seen as given, or (None) the run's own choice (seen.run_excludes)."""
    from .seen import run_excludes
    return run_excludes(run_dir, rundir.read_config(run_dir)) if exclude_seen is None else exclude_seen


def recommend_users(scorer, num_items: int, known_users: np.ndarray, hist: Sequences, users, k: int = 10,
                    exclude_seen: bool = True, mode: str = "oneshot", batch_size: int = 512,
                    temperature: float = 0.0, top_k: int = 0, seed: int = 0, progress: bool = False,
                    blocked=None):
    """The one list maker of the CLI and the Python API.
    known_users (U0,) original ids, row u of `hist`; users (U,) the ids to recommend for.
    -> items (U, k) internal indices, scores (U, k) (NaN for cold users), cold (U,) bool.
    Cold users (unknown, or no item the model knows) get the most popular items
    of `hist`; their scores are NaN, since counts are not on the model's scale.
    blocked: scoring.item_mask (business filters): a slot with no item left holds 0.
    The lists of `iter_recommendations`, gathered."""
    users = np.asarray(users)
    out_items = np.zeros((len(users), k), dtype=np.int64)
    out_scores = np.full((len(users), k), np.nan, dtype=np.float32)
    cold = np.ones(len(users), dtype=bool)
    for lo, hi, it, sc, cd in iter_recommendations(scorer, num_items, known_users, hist, users, k, exclude_seen,
                                                   mode, batch_size, temperature, top_k, seed, progress=progress,
                                                   blocked=blocked):
        out_items[lo:hi], out_scores[lo:hi], cold[lo:hi] = it, sc, cd
    return out_items, out_scores, cold


def iter_recommendations(scorer, num_items: int, known_users: np.ndarray, hist: Sequences, users, k: int = 10,
                         exclude_seen: bool = True, mode: str = "oneshot", batch_size: int = 512,
                         temperature: float = 0.0, top_k: int = 0, seed: int = 0, start: int = 0,
                         stop: int | None = None, progress: bool = False, blocked=None):
    """Lists of users[start:stop], batch by batch in input order:
    yields (lo, hi, items (hi-lo, k) internal indices, scores (NaN for cold), cold (hi-lo,) bool).
    Batches start at multiples of batch_size (start must be one), and a batch's
    sampling seed is seed + its first position, so any slicing into whole
    batches (the shards of a torchrun) gives the lists of one pass.
    blocked: scoring.item_mask, applied before the cut, to the popularity fallback too;
    a slot with no item left holds item 0 (`listed`)."""
    from tqdm.auto import tqdm

    users = np.asarray(users)
    stop = len(users) if stop is None else stop
    rows = ids.rows(known_users, users[start:stop])
    has = np.zeros(len(rows), dtype=bool)
    has[rows >= 0] = hist.lengths[rows[rows >= 0]] > 0
    popular = popular_items(hist, num_items, k, blocked)
    bar = tqdm(total=stop - start, desc="recommend", unit="user", unit_scale=True, dynamic_ncols=True,
               disable=None if progress else True)  # None: quiet when not a terminal
    try:
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            warm = np.nonzero(has[lo - start:hi - start])[0]
            items = np.zeros((hi - lo, k), dtype=np.int64)
            items[:, :len(popular)] = popular
            scores = np.full((hi - lo, k), np.nan, dtype=np.float32)
            cold = np.ones(hi - lo, dtype=bool)
            if len(warm):
                r = rows[lo - start + warm]
                items[warm], scores[warm] = recommend_lists(scorer, hist.take(r), r, k, exclude_seen, mode,
                                                            temperature, top_k, seed + lo, blocked)
                cold[warm] = False
            bar.update(hi - lo)
            yield lo, hi, items, scores, cold
    finally:
        bar.close()


def list_for_history(scorer, popular: np.ndarray, history: Sequences, k: int, exclude_seen: bool = True,
                     mode: str = "oneshot", blocked=None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """One history (a one-row Sequences of internal indices, with its target flags under
    target_filter: `RawHistories`, or a row `take`n from histories_for's) -> (items (<= k,),
    scores, "model"), or for an empty history the first k of `popular` with scores None and
    source "popularity". exclude_seen: never an item of the history's targets (every item
    without target_filter), so a list is shorter than k when fewer unseen items are left
    (scoring.recommend_lists). blocked: scoring.item_mask (business filters), applied before
    the cut; the list is shorter when fewer than k items are left."""
    if len(history.items) == 0:  # nothing for the model to continue
        if blocked is not None:
            popular = popular[~blocked.numpy()[popular]]
        return popular[:k], None, "popularity"
    items, scores = recommend_lists(scorer, history, None, k, exclude_seen, mode, blocked=blocked)
    keep = listed(items[0])
    return items[0][keep], scores[0][keep], "model"


def popular_items(histories: Sequences, num_items: int, k: int, blocked=None) -> np.ndarray:
    """(k,) the k most frequent item indices of the histories (ties: lower index first); never padding.
    blocked (scoring.item_mask): never those items, so fewer than k when fewer are left."""
    counts = item_counts(histories, num_items).astype(np.float64)
    counts[0] = -1
    order = np.argsort(-counts, kind="stable")
    if blocked is not None:
        order = order[~blocked.numpy()[order]]
    return order[:k]


# -----------------------------------------------------------------------------
# writers (atomic: a temp file renamed into place, never a half-written output)

def _ids(a: np.ndarray) -> np.ndarray:
    """An id array polars takes without per-element Python objects (object ids -> str)."""
    a = np.asarray(a)
    return a.astype(str) if a.dtype == object else a


def list_frame(fmt: str, users, items, scores=None, cold=None, items_mask=None):
    """One batch of lists as a polars frame: "submission" (user_id,predictions, the
    ids space-separated, best first) or "long" (user_id,item_id,score,rank,source;
    source "model" or "popularity" for cold users, whose score is empty).
    items_mask (U, k) bool (`listed`): the slots that hold an item; the others are left out."""
    import polars as pl
    present = None if items_mask is None else np.asarray(items_mask)
    users, items = _ids(users), _ids(items)
    k = items.shape[1]
    if fmt == "submission" and present is not None and not present.all():  # filtered: shorter lists
        preds = [" ".join(str(x) for x in row[keep]) for row, keep in zip(items, present)]
        return pl.DataFrame({"user_id": users, "predictions": pl.Series("predictions", preds, dtype=pl.Utf8)})
    if fmt == "submission":
        cols = [pl.Series(f"p{j}", items[:, j]).cast(pl.Utf8) for j in range(k)]
        preds = pl.select(pl.concat_str(cols, separator=" ").alias("predictions")).to_series() if len(items) \
            else pl.Series("predictions", [], dtype=pl.Utf8)
        return pl.DataFrame({"user_id": users, "predictions": preds})
    df = pl.DataFrame({"user_id": np.repeat(users, k), "item_id": items.reshape(-1),
                       "score": np.asarray(scores, dtype=np.float32).reshape(-1),
                       "rank": np.tile(np.arange(1, k + 1), len(users)),
                       "source": np.where(np.repeat(cold, k), "popularity", "model")})
    if present is not None and not present.all():
        df = df.filter(pl.Series(present.reshape(-1)))
    return df.with_columns(pl.col("score").fill_nan(None))


def write_submission(path: str, users, items) -> None:
    """Challenge format: user_id,predictions with the ids space-separated, best first."""
    write_frame(path, list_frame("submission", users, items))


def write_long(path: str, users, items, scores, cold) -> None:
    """One row per (user, rank): user_id,item_id,score,rank,source; source is
    "model" or "popularity" (cold users, whose score is empty)."""
    write_frame(path, list_frame("long", users, items, scores, cold))


def write_frame(path: str, df) -> None:
    """A polars frame as .parquet (by its name) or CSV, atomically."""
    if path.lower().endswith(".parquet"):
        atomic_write(path, df.write_parquet)
    else:
        atomic_write(path, df.write_csv)


class _FrameAppender:
    """Frames appended to one open file: CSV (one header) or Parquet (one row group each)."""

    def __init__(self, path: str, parquet: bool):
        self.path, self.parquet, self.file, self.writer, self.schema = path, parquet, None, None, None

    def add(self, df) -> None:
        if self.parquet:
            import pyarrow.parquet as pq
            table = df.to_arrow()
            if self.writer is None:
                self.schema = table.schema
                self.writer = pq.ParquetWriter(self.path, self.schema)
            self.writer.write_table(table.cast(self.schema))
        else:
            if self.file is None:
                self.file = open(self.path, "wb")
                df.write_csv(self.file, include_header=True)
            else:
                df.write_csv(self.file, include_header=False)

    def close(self, empty) -> None:
        """empty: a frame with the columns, written when nothing was (a header / a schema)."""
        if self.writer is None and self.file is None:
            self.add(empty)
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()


def stream_lists(path: str, fmt: str, batches, users, item_ids, tally: dict | None = None) -> int:
    """Write the lists of `iter_recommendations` batches as they come: appended to a
    temporary file, renamed to `path` at the end (.parquet by its name, else CSV).
    users: the ids the batches index; item_ids: internal index -> original id.
    Empty slots (filters left fewer than k items: `listed`) are left out, and
    tally["short"] (when a dict is given) counts the users whose list is shorter than k.
    -> the number of cold users written."""
    n_cold = n_short = 0

    def write(tmp):
        nonlocal n_cold, n_short
        out = _FrameAppender(tmp, path.lower().endswith(".parquet"))
        for lo, hi, items, scores, cold in batches:
            present = listed(items)
            out.add(list_frame(fmt, users[lo:hi], item_ids[items], scores, cold, present))
            n_cold += int(cold.sum())
            n_short += int((~present.all(axis=1)).sum())
        k = item_ids[np.zeros((0, 1), np.int64)]
        out.close(list_frame(fmt, users[:0], k, np.zeros((0, 1), np.float32), np.zeros(0, bool)))

    atomic_write(path, write)
    if tally is not None:
        tally["short"] = n_short
    return n_cold


# -----------------------------------------------------------------------------
# torchrun: contiguous shards, parts merged by rank 0

def shard_range(n: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of the users that process `rank` of `world` lists: whole batches, contiguous."""
    batches = -(-n // batch_size)
    b0, b1 = batches * rank // world, batches * (rank + 1) // world
    return min(b0 * batch_size, n), min(b1 * batch_size, n)


def part_path(out: str, rank: int, world: int) -> str:
    """Where rank `rank` writes its part of `out`: beside it, or in the working folder when `out`
    is something to write to rather than a place for files (/dev/stdout: never parts in /dev)."""
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(os.getcwd() if is_special(out) else folder, f".{name}.part{rank}-of-{world}")


def merge_parts(out: str, parts: list[str], users, k: int, fmt: str) -> None:
    """The parts (in rank order) as ONE file at `out`, atomically, checked before it is written:
    every user of `users` present once (k rows each in the long format), in input order. k None
    (filtered lists, which may be shorter): the long format's users in input order, each at most once."""
    import shutil
    parquet = out.lower().endswith(".parquet")

    def write(tmp):
        if parquet:
            import pyarrow.parquet as pq
            writer = None
            for part in parts:
                f = pq.ParquetFile(part)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, f.schema_arrow)
                for i in range(f.num_row_groups):
                    writer.write_table(f.read_row_group(i).cast(f.schema_arrow))
            writer.close()
        else:
            with open(tmp, "wb") as dst:
                for i, part in enumerate(parts):
                    with open(part, "rb") as src:
                        if i:
                            src.readline()  # each part has the header
                        shutil.copyfileobj(src, dst, 1 << 20)

    try:
        check_merged(out, parts, users, k, fmt)
        atomic_write(out, write)
    finally:
        for part in parts:
            if os.path.exists(part):
                os.remove(part)


def check_merged(out: str, parts: list[str], users, k, fmt: str) -> None:
    """merge_parts' check, on the parts themselves (so it holds for an `out` that cannot be read
    back, /dev/stdout): every user once in input order, k rows each in the long format."""
    import polars as pl
    cols = []
    for part in parts:
        if part.lower().endswith(".parquet"):
            cols.append(pl.read_parquet(part, columns=["user_id"])["user_id"].cast(pl.Utf8))
        else:
            cols.append(pl.read_csv(part, columns=["user_id"], schema_overrides={"user_id": pl.Utf8})["user_id"])
    got = pl.concat(cols).to_numpy().astype(str) if cols else np.zeros(0, str)
    expected = np.asarray(users).astype(str)
    if fmt == "long" and k is None:  # runs of one user, in input order, users with no item absent
        runs = got[np.r_[True, got[1:] != got[:-1]]] if len(got) else got
        at = ids.rows(expected, runs)
        if (at < 0).any() or (np.diff(at) <= 0).any():
            raise DataError(f"{out}: the merged parts do not list the users in input order")
        return
    expected = np.repeat(expected, k) if fmt == "long" else expected
    if len(got) != len(expected) or not np.array_equal(got, expected):
        bad = next((i for i in range(min(len(got), len(expected))) if got[i] != expected[i]), min(len(got), len(expected)))
        raise DataError(f"{out}: the merged parts do not list every user once in input order "
                        f"(row {bad}: {len(got):,} rows for {len(expected):,} expected)")




def check_options(args) -> None:
    if args.mode not in ("oneshot", "generative"):
        raise UsageError(f"--mode {args.mode!r}: expected oneshot or generative")
    if args.k < 1:
        raise UsageError(f"--k {args.k}: must be at least 1")
    if not (args.temperature >= 0 and np.isfinite(args.temperature)):
        raise UsageError(f"--temperature {args.temperature}: must be a finite number >= 0 (0 = greedy)")
    if args.temperature > 0 and args.mode != "generative":
        raise UsageError("--temperature applies to --mode generative only")
    if args.top_k_sample < 0:
        raise UsageError(f"--top-k-sample {args.top_k_sample}: must be >= 0 (0 = no limit)")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed {args.seed}: must be in 0..2^63-1")
    if not 1 <= args.batch_size <= 1_000_000:
        raise UsageError(f"--batch-size {args.batch_size}: must be in 1..1000000")
