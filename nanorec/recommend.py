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
`user_id,item_id,score,rank,source`. Scoring goes through nanorec.scoring, as
evaluation and the server do.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from . import rundir
from .data import Dataset, Sequences, item_counts, load_like
from .devices import DEVICE_HELP, pick_device
from .errors import DataError, UsageError
from .files import atomic_write, check_writable_folder
from .scoring import recommend_lists


# -----------------------------------------------------------------------------
# users, histories and the fallback

def histories_in_run_vocab(ds: Dataset, run_item_ids: np.ndarray) -> tuple[Sequences, int]:
    """The data set's full histories re-indexed to the run's item vocabulary.
    Items the model never saw are dropped from the histories (returned count)."""
    run_index = {str(x): i for i, x in enumerate(run_item_ids.tolist()) if i > 0}
    remap = np.array([0] + [run_index.get(str(x), 0) for x in ds.item_ids[1:].tolist()], dtype=np.int64)
    items = remap[ds.sequences.items]
    known = items > 0
    lengths = np.add.reduceat(known.astype(np.int64), ds.sequences.offsets[:-1]) if len(items) else np.zeros(len(ds.user_ids), np.int64)
    lengths = np.where(ds.sequences.lengths > 0, lengths, 0)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Sequences(offsets, items[known]), int((~known).sum())


def read_user_list(path: str, user_col: str = "user_id") -> np.ndarray:
    """The user column of a CSV/Parquet file: `user_col` (the run's), else `user_id`.
    Strings stay strings; an empty list or a repeated user is an error."""
    from .data import _ids, _read_frame
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    df = _read_frame(path)
    col = user_col if user_col in df.columns else "user_id"
    if col not in df.columns:
        raise DataError(f"{path}: missing column {user_col!r} (columns are {', '.join(df.columns)})")
    if df.height == 0:
        raise DataError(f"{path}: no users (no data rows)")
    users = _ids(path, df, col)
    _, first, counts = np.unique(users.astype(str), return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = users.tolist()[np.sort(first[counts > 1])[0]]
        raise DataError(f"{path}: user {dup!r} is listed more than once")
    return users


def recommend(run_dir: str, data_path=None, k: int = 10, mode: str = "oneshot", exclude_seen: bool = True,
              users=None, device: str = "auto", batch_size: int = 512, temperature: float = 0.0,
              top_k: int = 0, seed: int = 0, progress: bool = False):
    """Lists from a run folder -> (user_ids (U,), items (U, k) original ids, scores (U, k), cold (U,) bool).

    Histories come from `data_path` (a log in the run's vocabulary) or, when it is
    None, from the run's own histories.parquet. Default users: a challenge
    folder's test.csv, else every user with a history."""
    check_options(argparse.Namespace(k=k, mode=mode, temperature=temperature, top_k_sample=top_k, seed=seed,
                                     batch_size=batch_size))
    device = pick_device(device)
    cfg, scorer, item_ids, num_items = rundir.load_scorer(run_dir, device)
    if not 1 <= k <= num_items:
        raise UsageError(f"--k {k}: must be between 1 and the {num_items:,} items the model knows")
    if data_path is None:
        known_users, hist = rundir.read_histories(run_dir)
        default_users = known_users
    else:
        ds = load_like(cfg, data_path)
        hist, dropped = histories_in_run_vocab(ds, item_ids)
        if dropped and len(hist.items) == 0:  # a newer log may add items; none known is the wrong data
            raise DataError(f"{data_path}: none of its items is in the vocabulary of the run in {run_dir} "
                            f"({rundir.ITEMS}); use data with the run's item ids")
        known_users = ds.user_ids
        if ds.kind == "challenge" and ds.test_users is None and users is None:
            raise DataError(f"{data_path}: a challenge folder without test.csv; say which users with --users FILE")
        default_users = ds.test_users if ds.test_users is not None else ds.user_ids
    users = default_users if users is None else users
    items, scores, cold = recommend_users(scorer, num_items, known_users, hist, users, k,
                                          exclude_seen, mode, batch_size, temperature, top_k, seed, progress)
    return np.asarray(users), item_ids[items], scores, cold


def recommend_users(scorer, num_items: int, known_users: np.ndarray, hist: Sequences, users, k: int = 10,
                    exclude_seen: bool = True, mode: str = "oneshot", batch_size: int = 512,
                    temperature: float = 0.0, top_k: int = 0, seed: int = 0, progress: bool = False):
    """The one list maker of the CLI and the Python API.
    known_users (U0,) original ids, row u of `hist`; users (U,) the ids to recommend for.
    -> items (U, k) internal indices, scores (U, k) (NaN for cold users), cold (U,) bool.
    Cold users (unknown, or no item the model knows) get the most popular items
    of `hist`; their scores are NaN, since counts are not on the model's scale."""
    from tqdm.auto import tqdm

    users = np.asarray(users)
    rows = user_rows(known_users, users)
    warm = np.nonzero(rows >= 0)[0]
    warm = warm[hist.lengths[rows[warm]] > 0]
    cold = np.ones(len(users), dtype=bool)
    cold[warm] = False

    out_items = np.zeros((len(users), k), dtype=np.int64)
    out_scores = np.full((len(users), k), np.nan, dtype=np.float32)
    out_items[cold] = popular_items(hist, num_items, k)
    for s in tqdm(range(0, len(warm), batch_size), desc="recommend", unit="batch",
                  disable=None if progress else True):  # None: quiet when not a terminal
        idx = warm[s:s + batch_size]
        it, sc = recommend_lists(scorer, hist.take(rows[idx]), rows[idx], k, exclude_seen, mode,
                                 temperature, top_k, seed + s)
        out_items[idx], out_scores[idx] = it, sc
    return out_items, out_scores, cold


def user_rows(known_users: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(U,) row of each user in known_users, -1 when unknown. Integer ids match
    integers; otherwise ids match as strings (a CSV of "17" finds user 17)."""
    ints = known_users.dtype.kind in "iu" and users.dtype.kind in "iu"
    key = (lambda u: u) if ints else str
    row_of = {key(u): r for r, u in enumerate(known_users.tolist())}
    return np.array([row_of.get(key(u), -1) for u in users.tolist()], dtype=np.int64)


def popular_items(histories: Sequences, num_items: int, k: int) -> np.ndarray:
    """(k,) the k most frequent item indices of the histories (ties: lower index first); never padding."""
    counts = item_counts(histories, num_items).astype(np.float64)
    counts[0] = -1
    return np.argsort(-counts, kind="stable")[:k]


# -----------------------------------------------------------------------------
# writers (atomic: a temp file renamed into place, never a half-written output)

def write_submission(path: str, users, items) -> None:
    """Challenge format: user_id,predictions with the ids space-separated, best first."""
    import polars as pl
    preds = [" ".join(str(x) for x in row) for row in items.tolist()]
    write_frame(path, pl.DataFrame({"user_id": list(users.tolist()), "predictions": preds}))


def write_long(path: str, users, items, scores, cold) -> None:
    """One row per (user, rank): user_id,item_id,score,rank,source; source is
    "model" or "popularity" (cold users, whose score is empty)."""
    import polars as pl
    k = items.shape[1]
    df = pl.DataFrame({"user_id": np.repeat(users, k).tolist(), "item_id": items.reshape(-1).tolist(),
                       "score": scores.reshape(-1), "rank": np.tile(np.arange(1, k + 1), len(users)),
                       "source": np.where(np.repeat(cold, k), "popularity", "model")})
    df = df.with_columns(pl.col("score").fill_nan(None))
    write_frame(path, df)


def write_frame(path: str, df) -> None:
    """A polars frame as .parquet (by its name) or CSV, atomically."""
    if path.lower().endswith(".parquet"):
        atomic_write(path, df.write_parquet)
    else:
        atomic_write(path, df.write_csv)


def main(argv) -> int:
    p = argparse.ArgumentParser(prog="nanorec recommend", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n"
                                       "  nanorec recommend --run runs/kaggle --data data/kaggle --out submission.csv\n"
                                       "  nanorec recommend --run runs/beauty --data Beauty.txt --k 20 --out recs.csv")
    p.add_argument("--run", required=True, help="run directory written by `nanorec train`")
    p.add_argument("--data", help="interactions whose histories are continued (default: the run's own histories)")
    p.add_argument("--out", required=True, help="output .csv (or .parquet)")
    p.add_argument("--users", help="CSV/Parquet of users: the run's user column (user_col), else user_id "
                        "(default: test.csv of a challenge folder, else every user with a history)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--mode", choices=["oneshot", "generative"], default="oneshot")
    seen = p.add_mutually_exclusive_group()
    seen.add_argument("--exclude-seen", dest="exclude_seen", action="store_true", default=True,
                      help="never recommend an item already in the history (default; such items only "
                           "fill the end of a list longer than the user's unseen items)")
    seen.add_argument("--include-seen", dest="exclude_seen", action="store_false",
                      help="allow repeat purchases in the list")
    p.add_argument("--format", choices=["auto", "submission", "long"], default="auto",
                   help="auto = submission for a challenge folder, long table otherwise")
    p.add_argument("--temperature", type=float, default=0.0, help="generative: 0 = greedy, > 0 = sampling")
    p.add_argument("--top-k-sample", type=int, default=0, help="generative sampling: keep only the top k logits (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="generative sampling seed")
    p.add_argument("--batch-size", type=int, default=512, help="users scored at once (default 512)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    args = p.parse_args(argv)
    check_options(args)
    check_writable_folder(args.out, "--out list")  # fail before the work, not after it
    user_col = rundir.read_config(args.run).user_col if os.path.isdir(args.run) else "user_id"
    users = read_user_list(args.users, user_col) if args.users else None
    users, items, scores, cold = recommend(args.run, args.data, args.k, args.mode, args.exclude_seen, users,
                                           args.device, args.batch_size, args.temperature, args.top_k_sample,
                                           args.seed, progress=True)
    is_challenge = args.data is not None and os.path.isdir(args.data)
    fmt = args.format if args.format != "auto" else ("submission" if is_challenge else "long")
    if fmt == "submission":
        write_submission(args.out, users, items)
    else:
        write_long(args.out, users, items, scores, cold)
    print(f"wrote {args.out}: {len(users):,} users x {args.k} items ({args.mode}); "
          f"{int(cold.sum()):,} cold users got the most popular items")
    return 0


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
