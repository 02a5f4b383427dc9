"""Update a trained run with new events: a new run folder, the old one never changed.

    nanorec update --run RUN --data NEW --out RUN2 [key=value ...] [--resume | --overwrite]

What an update does, in order:
  1. read the run (Run.open: its config, vocabulary, saved histories and weights) and the
     new events with the run's own column settings (user_col, item_col, time_col, filter,
     time_format): an update's data has the run's columns;
  2. extend the run's data (`extend`): each user's saved history gets the user's new events
     appended, in their order (the update's data is what came after the run's data); new
     users are added after the run's users; new items get the indices after the run's
     items, so every item and user keeps its index;
  3. grow the GPT's item table (`grown_weights`): a new item covered by the run's content
     tables starts at its content vector (its own row 0), any other at the mean of the
     trained item rows plus small noise, and then it is learned;
  4. train from the run's weights with the run's config for max_steps steps (default
     UPDATE_SHARE of the full run's max_steps, far less than a retrain; peak learning rate
     UPDATE_LR_SCALE x the full run's), on the users with
     new events plus a replay sample of as many other users (REPLAY), with warmup and a
     cosine decay over those steps; validation, selection, the count tables and fusion are
     refitted on the extended data by train.run's own end of run. A baseline run
     (method=transitions, popularity, ...) is simply refitted on the extended histories;
  5. the result is an ordinary run folder (recommend, serve, evaluate, Recommender.load and
     update again), written by train.run's run-folder transaction: built beside --out and
     renamed into place when complete, one writer at a time, --overwrite replaces a run
     only then, and a killed update is continued with --resume (or rerun with --overwrite).
     metrics.json's "update" entry says where the run came from.

Refused, each with one line (exit status 2 on the CLI):
- --out equal to --run, or inside it (the old run is never written);
- new events that the run's columns do not read (a missing user, item or time column);
  an empty update (no rows, or none left after the run's filter);
- another data set's events. The rule: user ids or item ids of another type than the
  run's (integers vs text), or events that share no user and no item with the run;
- the run's own events again: every known user's new events begin with the user's whole
  saved history (pass only the events after the run's data);
- runs whose folder cannot be extended exactly: holdout=time (the run folder keeps no
  event times to split on), weight_col (it keeps no event weights), target_filter (not
  built: the new events' target flags), and runs from before
  histories.parquet; retrain those on the whole log.
- config keys other than UPDATE_KEYS (an update continues the run's model: its shape and
  data settings are the run's).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from . import ids, rundir
from .config import Config, add_run_writer_options, apply_overrides, check_dashed_keys, unresolved
from .data import Dataset, Sequences, load_like
from .errors import DataError, UsageError

# default budget: this share of the full run's max_steps (an update of an update keeps the
# first run's figure, metrics.json "update" -> "full_steps", so budgets do not shrink)
UPDATE_SHARE = 0.1
# the update's peak learning rate: this many times the full run's. Its short schedule starts from
# trained weights, and at the run's own rate it learns the new events too slowly: on Beauty
# (benchmarks/results/update_beauty.json) 300 steps at 1x reached 0.918 of a full retrain's
# NDCG@10 on the events after, 450 steps at 1x 0.923, 300 steps at 3x 0.954 (at 15% of its time).
UPDATE_LR_SCALE = 3.0
# replayed users (without new events, drawn at random) per user with new events: the old
# targets the model keeps seeing so that it does not forget them while it learns the new ones
REPLAY = 1.0
# keys an update may set; every other key is the run's (the model's shape, its data settings)
UPDATE_KEYS = rundir.RESUMABLE_KEYS + ("learning_rate", "min_lr", "warmup_steps")


@dataclass
class Start:
    """Where an update's training starts: train.run's `start`."""
    weights: dict          # the GPT's state dict with the item table grown (grown_weights)
    source: str            # the weights' file, for error lines
    focus: np.ndarray      # (F,) rows of the training split (users) the batches are drawn from
    record: dict           # metrics.json's "update" entry

    def batches_from(self, train: Sequences, weights: np.ndarray | None = None):
        """The training split's focus rows, and their events' weights (parallel to train.items)."""
        seqs = train.take(self.focus)
        return seqs, None if weights is None else Sequences(train.offsets, weights).take(self.focus).items


# -----------------------------------------------------------------------------
# the extended data

@dataclass
class Extension:
    """What `extend` made: the extended data and what it added."""
    dataset: Dataset
    touched: np.ndarray    # (T,) rows of dataset.user_ids with new events
    new_users: int
    new_items: int
    new_events: int


def extend(run, new: Dataset, where: str) -> Extension:
    """The run's saved histories (run.user_ids, run.histories, in run.item_ids' vocabulary)
    with `new`'s events appended per user; new users after the run's, new items after the
    run's items (sorted among themselves, as the readers sort a vocabulary). where: the new
    data's name, for error lines. Refuses another data set's events (module docstring)."""
    for known, given, what in ((run.item_ids[1:], new.item_ids[1:], "item"), (run.user_ids, new.user_ids, "user")):
        detail = ids.kinds_differ(known, given, what)
        if detail:
            raise DataError(f"{where}: not events of the run in {run.run_dir}'s data set ({detail})")
    item_rows = ids.rows(run.item_ids[1:], new.item_ids[1:])  # (M,) -1: a new item
    user_rows = ids.rows(run.user_ids, new.user_ids)          # (V,) -1: a new user
    if (item_rows < 0).all() and (user_rows < 0).all():
        raise DataError(f"{where}: shares no user and no item with the run in {run.run_dir} (e.g. user "
                        f"{ids._show(new.user_ids[0])}, item {ids._show(new.item_ids[1])}): another data set's "
                        f"events? An update extends the run's own users and items; train a new run instead")
    _check_not_repeated(run, new, item_rows, user_rows, where)

    n_old_items, n_old_users = run.num_items, len(run.user_ids)
    fresh_items = np.nonzero(item_rows < 0)[0]
    remap = np.zeros(len(new.item_ids), np.int64)  # new data's index -> extended index
    remap[1:] = item_rows + 1
    remap[1 + fresh_items] = n_old_items + 1 + np.arange(len(fresh_items))
    fresh_users = np.nonzero(user_rows < 0)[0]
    user_row = user_rows.copy()  # new data's user row -> extended row
    user_row[fresh_users] = n_old_users + np.arange(len(fresh_users))

    old, add = run.histories, new.sequences
    n_users = n_old_users + len(fresh_users)
    # every event as (extended user row, item); old events first, so a stable sort by user
    # puts each user's new events after its saved history, both in their own order
    rows = np.concatenate([np.repeat(np.arange(n_old_users), old.lengths), np.repeat(user_row, add.lengths)])
    items = np.concatenate([old.items, remap[add.items]])
    order = np.argsort(rows, kind="stable")
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=offsets[1:])
    user_ids = _concat_ids(run.user_ids, new.user_ids[fresh_users])
    item_ids = _concat_ids(run.item_ids, new.item_ids[1 + fresh_items])
    ds = Dataset(name=new.name, path=new.path, kind=new.kind, user_ids=user_ids, item_ids=item_ids,
                 sequences=Sequences(offsets, items[order]), test_users=new.test_users,
                 ignored_columns=new.ignored_columns)
    return Extension(ds, np.unique(user_row), len(fresh_users), len(fresh_items), len(add.items))


def _check_not_repeated(run, new: Dataset, item_rows: np.ndarray, user_rows: np.ndarray, where: str) -> None:
    """The run's own events passed again (the whole log instead of what came after it) would
    double every history: refused when every known user's new events begin with the user's
    whole saved history."""
    known = np.nonzero(user_rows >= 0)[0]
    if len(known) == 0:
        return
    old_len = run.histories.lengths[user_rows[known]]
    if (new.sequences.lengths[known] < old_len).any():
        return
    remap = np.concatenate([[0], np.where(item_rows >= 0, item_rows + 1, 0)])
    for u in known:
        saved = run.histories[user_rows[u]]
        if not np.array_equal(remap[new.sequences[u][:len(saved)]], saved):
            return
    raise DataError(f"{where}: every one of its {len(known):,} known users' events begin with the user's whole "
                    f"history in the run {run.run_dir}: the run's own events again? Pass only the events that "
                    f"came after the run's data")


def _concat_ids(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two id arrays of one kind (extend checked it) as one, integers staying int64."""
    if np.asarray(a).dtype.kind in "iu" and np.asarray(b).dtype.kind in "iu":
        return np.concatenate([a, b]).astype(np.int64)
    return np.concatenate([np.asarray(a, dtype=object), np.asarray(b, dtype=object)])


# -----------------------------------------------------------------------------
# the model's starting point

def grown_weights(state: dict, num_items: int, content_rows: np.ndarray, seed: int) -> dict:
    """The run's GPT state with the item table grown from N+1 to num_items+1 rows.
    content_rows: (M,) bool, each new item covered by a content table: its row starts at 0,
    so that its item vector is its content's (model.item_embeddings adds the projections).
    Any other new item starts at the mean of the trained item rows (an average item: scored
    mid-list, neither hidden nor pushed) plus noise of a tenth of their spread (no ties)."""
    import torch
    wte = state["wte.weight"]  # (N+1, C)
    trained = wte[1:]
    m = num_items + 1 - wte.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    rows = trained.mean(0) + 0.1 * trained.std(0) * torch.randn(m, wte.shape[1], generator=g, dtype=wte.dtype)
    rows[torch.from_numpy(np.asarray(content_rows, bool))] = 0.0
    return {**state, "wte.weight": torch.cat([wte, rows.to(wte.dtype)])}


def content_coverage(cfg: Config, item_ids: np.ndarray, first_new: int) -> np.ndarray:
    """(M,) bool: which of the items from index first_new on a content table covers."""
    if not cfg.content:
        return np.zeros(len(item_ids) - first_new, bool)
    from .content import load_content
    covered = np.zeros(len(item_ids), bool)
    for _, has in load_content(cfg.content, item_ids, log=None):
        covered |= has.numpy()
    return covered[first_new:]


def replay_rows(touched: np.ndarray, num_users: int, seed: int) -> np.ndarray:
    """(F,) sorted user rows an update trains on: the users with new events and REPLAY times
    as many others, drawn once from (seed, 2) (all of them when there are fewer)."""
    others = np.setdiff1d(np.arange(num_users), touched)
    n = min(len(others), int(math.ceil(REPLAY * len(touched))))
    replay = np.random.default_rng([seed, 2]).choice(others, size=n, replace=False)
    return np.sort(np.concatenate([touched, replay]))


def default_budget(run_dir: str, cfg: Config) -> tuple[int, int, float]:
    """-> (the update's max_steps, the full run's max_steps it is a share of, the full run's
    learning_rate). An update of an update reads the first run's figures from metrics.json's
    "update" entry, so budgets neither shrink nor compound."""
    full, lr = cfg.max_steps, cfg.learning_rate
    if os.path.exists(os.path.join(run_dir, rundir.METRICS)):
        record = rundir.read_metrics(run_dir).get("update", {})
        full, lr = record.get("full_steps", full), record.get("full_learning_rate", lr)
    return max(1, int(round(UPDATE_SHARE * full))), full, lr


# -----------------------------------------------------------------------------
# the update

def update(run_dir: str, data, out: str, changes: dict | None = None, resume: bool = False,
           overwrite: bool = False, quiet: bool = False, print_=print) -> dict:
    """Update the run in `run_dir` with `data` (a path, or a pandas / polars DataFrame or
    pyarrow Table) into the new run folder `out`; -> its metrics (metrics.json).
    changes: config keys to set (UPDATE_KEYS only; max_steps is the update's budget)."""
    from .devices import pick_device
    from .run import Run
    from .train import run as train

    changes = dict(changes or {})
    _check_paths(run_dir, out)
    bad = sorted(set(changes) - set(UPDATE_KEYS))
    if bad:
        raise UsageError(f"{bad[0]}: an update continues the run's model with the run's config; "
                         f"only {', '.join(UPDATE_KEYS)} may be set")
    old = Run.open(run_dir, pick_device("cpu"))
    cfg = unresolved(old.config)  # the run's settings as given: the update resolves its autos on the new data
    if cfg.holdout == "time":
        raise UsageError(f"{run_dir}: trained with holdout=time, and a run folder keeps no event times to split "
                         f"the extended data on; retrain on the whole log (or train with holdout=loo, last or none)")
    if cfg.weight_col:
        raise UsageError(f"{run_dir}: trained with weight_col={cfg.weight_col}, and a run folder keeps no event "
                         f"weights for its saved histories; retrain on the whole log")
    if cfg.target_filter:  # the extension would have to carry each new event's target flag: not built
        raise UsageError(f"{run_dir}: trained with target_filter={cfg.target_filter}; updating such a run is "
                         f"not supported yet: retrain on the whole log")
    if old.histories is None:
        raise DataError(f"{run_dir}: no {rundir.HISTORIES} (a run from an older nanorec): retrain on the whole log")
    where = os.fspath(data) if isinstance(data, (str, os.PathLike)) else "<dataframe>"
    try:
        new = load_like(cfg, data)
    except DataError as e:
        if "missing" not in str(e):
            raise
        raise DataError(f"{e}; an update reads its data with the run's settings (user_col={cfg.user_col}, "
                        f"item_col={cfg.item_col}, time_col={cfg.time_col}"
                        + (f", filter={cfg.filter}" if cfg.filter else "") + ")") from None
    ext = extend(old, new, where)
    ds = ext.dataset

    steps, full, full_lr = default_budget(run_dir, cfg)
    given_steps = changes.pop("max_steps", None)
    if resume:  # the interrupted update's own config (train.run checks that the data is the same)
        saved = rundir.resume_dir(out)
        if not os.path.exists(os.path.join(saved, rundir.CONFIG)):
            raise DataError(f"{out}: nothing to resume (no {rundir.CONFIG})")
        new_cfg = dataclasses.replace(unresolved(rundir.read_config(saved)), **changes)
        new_cfg.max_steps = given_steps or new_cfg.max_steps
    else:  # the run's config, trained for the update's budget: a short warmup, a cosine over the steps
        steps = given_steps or steps
        new_cfg = dataclasses.replace(cfg, data=where, max_steps=steps, decay_steps=0,
                                      warmup_steps=min(cfg.warmup_steps, steps // 10),
                                      learning_rate=UPDATE_LR_SCALE * full_lr)
        new_cfg = dataclasses.replace(new_cfg, **changes)
    new_cfg.validate()

    focus = replay_rows(ext.touched, len(ds.user_ids), cfg.seed)
    record = {"from_run": os.path.abspath(run_dir), "data": where, "new_events": ext.new_events,
              "new_users": ext.new_users, "new_items": ext.new_items, "users_with_new_events": len(ext.touched),
              "replayed_users": int(len(focus) - len(ext.touched)), "steps": new_cfg.max_steps, "full_steps": full,
              "full_learning_rate": full_lr}
    if not quiet:
        print_(f"update {run_dir} with {where}: {ext.new_events:,} new events, {ext.new_users:,} new users, "
               f"{ext.new_items:,} new items"
               + (f"; {new_cfg.max_steps:,} steps on the {len(ext.touched):,} users with new events and "
                  f"{record['replayed_users']:,} replayed" if cfg.method == "gpt" else f"; {cfg.method} refitted"))
    start = None
    if cfg.method == "gpt":
        state = {k: v.detach().cpu() for k, v in old.model.state_dict().items()}
        grown = grown_weights(state, ds.num_items, content_coverage(cfg, ds.item_ids, old.num_items + 1), cfg.seed)
        start = Start(grown, os.path.join(run_dir, rundir.WEIGHTS), focus, record)
    return train(new_cfg, out, resume=resume, overwrite=overwrite, quiet=quiet, dataset=ds, start=start)


def _check_paths(run_dir: str, out: str) -> None:
    """The old run is never written: --out is neither the run folder nor inside it."""
    a, b = os.path.realpath(run_dir), os.path.realpath(out)
    if a == b:
        raise UsageError(f"--out {out}: is the run being updated; an update writes a new run folder and never "
                         f"changes the old one (choose another --out)")
    if b.startswith(a + os.sep):
        raise UsageError(f"--out {out}: inside the run being updated ({run_dir}); choose a folder outside it")


# -----------------------------------------------------------------------------
# the command

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="nanorec update",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Update a trained run with new events (new users and new items welcome) into a new run "
                    "folder: training goes on from the run's weights for a fraction of a retrain's steps; "
                    "the old run is never changed.",
        epilog="what it does:\n"
               "  histories: each user's saved history + the user's new events (new users added);\n"
               "  items: new ones get the indices after the run's (existing ids keep theirs), start from\n"
               "    their content vector (content=) or an average item's, and are learned;\n"
               f"  training: max_steps (default {UPDATE_SHARE:g} x the full run's max_steps; learning_rate\n"
               f"    {UPDATE_LR_SCALE:g} x the full run's) on the users with new\n"
               f"    events + {REPLAY:g} x as many replayed old users; fusion and count tables refitted;\n"
               "  a baseline run (method=transitions, ...) is refitted on the extended histories.\n"
               "The new events are read with the run's columns (user_col, item_col, time_col, filter) and\n"
               "come after the run's data. Refused: another data set's events (ids of another type, or no\n"
               "user and no item in common), the run's own events again, and runs trained with\n"
               "holdout=time, weight_col or target_filter (retrain those).\n\n"
               f"keys an update may set (key=value): {', '.join(UPDATE_KEYS)}\n\n"
               "examples:\n"
               "  nanorec update --run runs/shop --data events_this_week.csv --out runs/shop_w2\n"
               "  nanorec update --run runs/shop_w2 --data events_next_week.csv --out runs/shop_w3 max_steps=500\n"
               "  nanorec update --run runs/shop --data events_this_week.csv --out runs/shop_w2 --resume\n"
               "      # after a kill: goes on from the update's last checkpoint\n"
               "  nanorec recommend --run runs/shop_w2 --out lists.csv   # an ordinary run folder")
    p.add_argument("--run", required=True, help="the trained run folder to update (read only)")
    p.add_argument("--data", help="the new events: a .csv/.tsv/.parquet log (or S3-Rec .txt) with the run's columns")
    p.add_argument("--out", required=True,
                   help="the new run folder (must be empty or absent, unless --overwrite; never --run)")
    add_run_writer_options(p, resume_help="continue an update into --out that was killed (same --run and --data)",
                           overwrite_help="replace the run already in --out (only when the new one is complete)")
    check_dashed_keys(argv, p._option_string_actions)
    return p.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    for name in ("run", "out"):
        if not getattr(args, name).strip():
            raise UsageError(f"--{name}: empty; expected a run folder")
    if not args.data or not args.data.strip():
        raise UsageError("--data is required: the new events")
    named = [o.split("=", 1)[0].strip().lstrip("-").replace("-", "_") for o in args.overrides if "=" in o]
    given = apply_overrides(Config(), args.overrides)  # each value typed and checked as train's are
    changes = {k: getattr(given, k) for k in named}
    update(args.run, args.data, args.out, changes, resume=args.resume, overwrite=args.overwrite, quiet=args.quiet)
    return 0

