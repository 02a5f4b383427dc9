"""Top-k lists from a trained run (`nanorec recommend`, the Python API, the server), and their writers.

Two ways to read a list out of the model: oneshot (the k highest scores after the user's last
item) or generative (k steps, each appending its item to the history; never a repeat). Cold
users (no history the run knows) get the most popular items, source=popularity, no score:
counts are not on the model's scale. Histories are prepared once (`histories_for`) for every
surface; scoring goes through scoring.scorer, as evaluation does. Business filters (allow /
deny files: `read_filter_file`) and exclude_seen are applied before the lists are cut, so a
user left with fewer than k items gets a shorter list, never filled.

At scale, users are taken batch by batch in input order and each batch is written as soon as
it is scored, so memory does not grow with the users. Under torchrun (spelled --run-dir: its
own parser takes --run for --run-path) each process lists a contiguous slice of whole batches,
and rank 0 merges the parts into ONE output after checking every user is there once, in order.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from ..core.devices import pick_device
from ..data import Dataset, Sequences, column_ids, ids, item_counts, load_like
from ..data.columns import Where, filter_mask, parse_filter
from ..data.readers import read_stream_table
from ..data.tables import GZIP_MAGIC, PARQUET_MAGIC, gunzip, read_frame, read_parquet, read_stream
from ..errors import DataError, UsageError, show
from ..runs import rundir
from ..runs.files import atomic_write, is_special
from ..runs.run import Run
from .scorer import item_mask, recommend_lists
from .seen import run_excludes

# -----------------------------------------------------------------------------
# users, histories and the fallback

def histories_in_run_vocab(ds: Dataset, run_item_ids: np.ndarray) -> tuple[Sequences, int]:
    """The data set's histories in the run's item vocabulary (weights and target flags kept);
    items the model never saw are dropped -> (histories, how many were dropped)."""
    rows = ids.rows(run_item_ids[1:], ds.item_ids[1:])  # the one id rule (ids.py)
    remap = np.concatenate([[0], np.where(rows >= 0, rows + 1, 0)]).astype(np.int64)
    items = remap[ds.sequences.items]
    known = items > 0
    before = np.zeros(len(items) + 1, dtype=np.int64)  # (total+1,) known items before each event
    np.cumsum(known, out=before[1:])
    return Sequences(before[ds.sequences.offsets], items[known], *ds.sequences._cut(known)), int((~known).sum())


def read_user_list(path: str, user_col: str = "user_id") -> np.ndarray:
    """The user column (`user_col`, else user_id) of a file, typed as the readers type ids."""
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
    """A pipe or FIFO (--users <(cut -d, -f1 test.csv)) read once to a frame (one column: CSV)."""
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
    """A filter file matched to a run; `line` says what it held in one line."""
    path: str
    rows: np.ndarray          # (n,) internal indices of the known ids
    read: int                 # ids read
    unknown: np.ndarray       # (u,) the ids the run does not know, as written
    header: str | None        # a one-column file's first line, when it was a header

    def line(self, option: str) -> str:
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
    """A file of item ids (CSV/TSV, gzip, Parquet, a pipe; one column with or without a header,
    or a table with the item column `col`) matched to the run's item_ids (N+1,) by the one id rule.
    Ids the run does not know are counted, not an error: a first line taken as a header could not
    be listed anyway. An empty deny list denies nothing (an emptied out-of-stock list); an allow
    list with no id the run knows is a DataError. data: the bytes, when the caller read them."""
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
    """A one-column file's first line is a header unless the run knows it or it is a number
    (no column is named 4: 4 for the run's 004 is an unknown id, counted, never hidden)."""
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", first):
        return False
    return ids.rows(item_ids[1:], np.array([first]))[0] < 0


def filter_items(item_ids: np.ndarray, given: np.ndarray, where: str, error=DataError) -> np.ndarray:
    """A filter's original item ids (the API's, the server's) -> (n,) internal indices. An unknown
    id is an `error`: a typo in a list typed in code would silently filter nothing."""
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
    """The business filters (original ids, None: not given) as scoring's item mask, or None."""
    num_items = len(item_ids) - 1
    allow = None if allow is None else filter_items(item_ids, allow, allow_from, error)
    deny = None if deny is None else filter_items(item_ids, deny, deny_from, error)
    return item_mask(num_items, allow, deny)


def filter_files(item_ids: np.ndarray, allow_path=None, deny_path=None, col: str = "item_id",
                 report=lambda got, option: print(got.line(option), file=sys.stderr),
                 allow_option: str = "--allow-items", deny_option: str = "--deny-items"):
    """An allow and a deny file (paths or None) as scoring's item mask (or None), each `report`ed."""
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
    """(..., k) bool: the slots that hold an item; a short list ends with item 0, which is dropped."""
    return np.asarray(items) != 0


def histories_for(run: Run, data_path=None, warn=print, ds: Dataset | None = None
                  ) -> tuple[np.ndarray, Sequences, np.ndarray | None]:
    """The histories a list continues, in the run's vocabulary (the CLI, the server and the API)
    -> (known_users (U0,), hist (U0 rows), default_users): the run's own histories.parquet, or
    data_path's log read as at training (items the run never saw dropped; default users its
    test.csv, every user, or None for a challenge folder without one). ds: data_path, read."""
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
    """The target_filter column's values at training (data.json's event_types), or None."""
    fp = rundir.read_fingerprint(run.run_dir) if run.config.target_filter else None
    values = None if fp is None else fp.get("event_types")
    if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        raise DataError(f"{os.path.join(run.run_dir, rundir.DATA)}: event_types must be a list of strings")
    return values


def check_event_types(given, known: list[str] | None, run: Run, where: str, error=UsageError) -> None:
    """Every event type given must be one the run was trained with (`known`; None: unrecorded):
    an unknown one would silently count as context. where: what holds them."""
    if given is None or known is None:
        return
    new = sorted(set(given) - set(known))
    if new:
        col = parse_filter(run.config.target_filter, "target_filter")[0]
        shown = ", ".join(map(repr, known[:10])) + (f", ... ({len(known) - 10} more)" if len(known) > 10 else "")
        raise error(f"{where}: event type {new[0]!r} (column {col!r}) is not one the run in {run.run_dir} was "
                    f"trained with (its values: {shown})")


class RawHistories:
    """A raw history (the API's, the server's: original ids, oldest first, optionally each event's
    target_filter value, which marks the targets as at training) -> (a one-row Sequences in the
    run's vocabulary, how many ids were unknown and left out). Built once per loaded run."""

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
        import polars as pl

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
    """Everything a list needs, checked before any scoring
    -> (scorer, num_items, item_ids, known_users, hist, users (default: histories_for's))."""
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
    """Lists from a run folder -> (user_ids (U,), items (U, k) original ids, scores, cold (U,) bool).
    allow / deny: original item ids; an empty slot holds item_ids[0]. exclude_seen None: the run's."""
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
    return run_excludes(run_dir, rundir.read_config(run_dir)) if exclude_seen is None else exclude_seen


def recommend_users(scorer, num_items: int, known_users: np.ndarray, hist: Sequences, users, k: int = 10,
                    exclude_seen: bool = True, mode: str = "oneshot", batch_size: int = 512,
                    temperature: float = 0.0, top_k: int = 0, seed: int = 0, progress: bool = False,
                    blocked=None):
    """The lists of `iter_recommendations`, gathered -> items (U, k), scores (U, k), cold (U,)."""
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
    """Lists of users[start:stop] (known_users (U0,): row u of `hist`), batch by batch in input order:
    yields (lo, hi, items (hi-lo, k) internal indices, scores (NaN for cold), cold (hi-lo,) bool).
    A batch's sampling seed is seed + its first position (start: a multiple of batch_size), so
    any slicing into whole batches (torchrun's shards) gives the lists of one pass."""
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
    """One history (a one-row Sequences) -> (items (<= k,), scores, "model"), or for an empty
    history the first k of `popular`, scores None, "popularity"."""
    if len(history.items) == 0:  # nothing for the model to continue
        if blocked is not None:
            popular = popular[~blocked.numpy()[popular]]
        return popular[:k], None, "popularity"
    items, scores = recommend_lists(scorer, history, None, k, exclude_seen, mode, blocked=blocked)
    keep = listed(items[0])
    return items[0][keep], scores[0][keep], "model"


def popular_items(histories: Sequences, num_items: int, k: int, blocked=None) -> np.ndarray:
    """(<= k,) the most frequent item indices of the histories (ties: lower first), never blocked ones."""
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
    """One batch of lists as a polars frame: "submission" (user_id,predictions: ids space-separated,
    best first) or "long" (user_id,item_id,score,rank,source; a cold user's score is empty).
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
    """One row per (user, rank): user_id,item_id,score,rank,source."""
    write_frame(path, list_frame("long", users, items, scores, cold))


def write_frame(path: str, df) -> None:
    """A polars frame as .parquet (by its name) or CSV, atomically."""
    atomic_write(path, df.write_parquet if path.lower().endswith(".parquet") else df.write_csv)


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
            header = self.file is None  # one header, on the first frame
            self.file = self.file or open(self.path, "wb")
            df.write_csv(self.file, include_header=header)

    def close(self, empty) -> None:
        """empty: a frame with the columns, written when nothing was (a header / a schema)."""
        if self.writer is None and self.file is None:
            self.add(empty)
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()


def stream_lists(path: str, fmt: str, batches, users, item_ids, tally: dict | None = None) -> int:
    """Write `iter_recommendations` batches as they come, to a temporary file renamed to `path`
    at the end -> the number of cold users; tally["short"]: the users with a shorter list."""
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
    """Where rank `rank` writes its part of `out`: beside it, or here for /dev/stdout (never in /dev)."""
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(os.getcwd() if is_special(out) else folder, f".{name}.part{rank}-of-{world}")


def merge_parts(out: str, parts: list[str], users, k: int, fmt: str) -> None:
    """The parts (in rank order) as ONE file at `out`, atomically, after `check_merged`."""
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
    """Every user once in input order (k rows each in the long format; k None: shorter lists
    allowed), checked on the parts, so it holds for an `out` that cannot be read back."""
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
