"""Update a trained run with new events: a new run folder, the old one never changed.

    nanorec update --run RUN --data NEW --out RUN2 [key=value ...] [--resume | --overwrite]

The README's "Update a run" says what it does; here, where each step is. The new events are read
with the run's own settings (columns, filter, target_filter, weight_col) and appended to the saved
histories (`extend`: users and items keep their indices, new ones come after); the GPT's item table
grows (`grown_weights`); training goes on from the run's weights (`update`: UPDATE_SHARE of the steps
to the run's best step at UPDATE_LR_SCALE x its learning rate, on `Extension.learners` plus REPLAY x as many
others) and train.run's own end of run refits the count tables and fusion (weights searched near the
run's, `Start.fusion_near`) with validation on UPDATE_VALID_USERS (valid_users=auto) and beyond-accuracy
on `Start.beyond_users`; a baseline run is refitted. holdout=time: `update_split_time`; the run's
histories keep the test window, only training and selection stop at the split. The result is an
ordinary run folder written by train.run's transaction (--overwrite, --resume as for train).

Refused, each with one line (exit status 2 on the CLI):
- --out equal to --run or inside it; --resume of a complete update;
- new events the run's columns do not read (a missing column; no event matching target_filter);
  an empty update (no rows, or none left after the run's filter);
- target_filter runs: event types the run never saw (data.json's "event_types"), which would
  silently be context; the line names them and counts their events;
- another data set's events: ids of another type than the run's (integers vs text), or events
  sharing no user and no item with the run;
- the run's own events again: every known user's new events begin with the user's saved history;
- events out of time order (a run with a time column): a known user's event older than the user's
  last in the run, or one already in it (same user, item and time): an update appends; pass only
  the newer events or retrain on the whole log;
- a run folder lacking what its config needs (event weights for weight_col, times for
  holdout=time), and runs from before histories.parquet: retrain those on the whole log;
- config keys other than UPDATE_KEYS (the model's shape and data settings are the run's), and
  values of the wrong type or range.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np

from .. import methods
from ..config import Config, unresolved
from ..content.tables import load_content
from ..core.devices import pick_device
from ..core.train import run as train
from ..core.validation import validation_users
from ..data import VALID_SHARE_OF_DATES, Dataset, Sequences, ids, load_like, parse_split_time, show_time
from ..data.sequences import offsets_of
from ..errors import DataError, UsageError, show
from . import rundir
from .run import Run

UPDATE_SHARE = 0.1  # default budget: this share of the steps to the full run's best step (`default_budget`)
# the peak learning rate, x the full run's: at 1x an update learns the new events too slowly. Beauty
# (benchmarks/results/update_beauty.json), of a retrain's NDCG@10 on the events after: 300 steps at
# 1x 0.918, 450 at 1x 0.923, 300 at 3x 0.954 (at 15% of its time)
UPDATE_LR_SCALE = 3.0
# replayed users (without new events, drawn at random) per user with new events: old targets kept
# in view, so that the model does not forget them while it learns the new ones
REPLAY = 1.0
# validation users when the run's valid_users is auto: four passes over every validation user (the
# step's, the weight search's, exclude_seen's, the report's) were a fifth of an update's time on the
# 300k-event shop, and its weights are searched near the run's, not from nothing
UPDATE_VALID_USERS = 2_000
# keys an update may set; every other key is the run's (the model's shape, its data settings)
UPDATE_KEYS = rundir.RESUMABLE_KEYS + ("learning_rate", "min_lr", "warmup_steps", "split_time", "valid_users")


@dataclass
class Start:
    """Where an update's training starts: train.run's `start` (data, read by train.py)."""
    weights: dict          # the GPT's state dict with the item table grown (grown_weights)
    source: str            # the weights' file, for error lines
    focus: np.ndarray      # (F,) rows of the training split (users) the batches are drawn from
    record: dict           # metrics.json's "update" entry
    # the end of run's beyond-accuracy figures (the run's and the baselines') on a sample of this many
    # users: over every test user that pass was a fifth of an update's time, and a sample says as much
    beyond_users: int = 2_000
    # fusion's weight search starts from the run's weights, one short pass (fusion.search_near): the
    # full search was a fifth of an update's time; None: the full search (fusion_weights=auto given)
    fusion_near: tuple | None = None


# -----------------------------------------------------------------------------
# the extended data

@dataclass
class Extension:
    """What `extend` made: the extended data and what it added."""
    dataset: Dataset
    touched: np.ndarray    # (T,) rows of dataset.user_ids with new events
    learners: np.ndarray   # (L,) those of them with a new target event (under target_filter: a new purchase)
    new_users: int
    new_items: int
    new_events: int


@dataclass
class Saved:
    """What the run folder keeps of each saved event beyond its item (histories.parquet)."""
    weights: np.ndarray | None   # (total,) float32 event weights (weight_col, target_filter), else None
    times: np.ndarray | None     # (total,) event times (Dataset.times) when the run had a time column
    time_unit: str | None


def saved_events(run) -> Saved:
    """The run's saved event weights and times; refuses a folder that lacks what its config needs."""
    cfg, seqs = run.config, run.histories
    times, unit = rundir.read_history_times(run.run_dir)
    weights = seqs.weights
    if weights is None and cfg.target_filter and not cfg.weight_col:  # target_filter alone: weight 1 per target
        weights = (seqs.targets if seqs.targets is not None else np.ones(len(seqs.items), bool)).astype(np.float32)
    missing = [what for what, need, have in (("event weights (weight_col)", cfg.weight_col, weights is not None),
                                             ("event times (holdout=time)", cfg.holdout == "time", times is not None))
               if need and not have]
    if missing:
        raise DataError(f"{run.run_dir}: its {rundir.HISTORIES} keeps no {missing[0]} (a run from an older nanorec); "
                        f"retrain on the whole log")
    return Saved(weights, times, unit)


def extend(run, new: Dataset, where: str, saved: Saved | None = None) -> Extension:
    """The run's saved histories with `new`'s events appended per user; new users and items after
    the run's (new items sorted, as the readers sort a vocabulary); weights, target flags and times
    (saved: `saved_events`) carried alongside. where: the new data's name, for error lines. Refuses
    another data set's events, the run's own again, and events out of time order (module docstring)."""
    saved = saved or Saved(run.histories.weights, None, None)
    for known, given, what in ((run.item_ids[1:], new.item_ids[1:], "item"), (run.user_ids, new.user_ids, "user")):
        detail = ids.kinds_differ(known, given, what)
        if detail:
            raise DataError(f"{where}: not events of the run in {run.run_dir}'s data set ({detail})")
    item_rows = ids.rows(run.item_ids[1:], new.item_ids[1:])  # (M,) -1: a new item
    user_rows = ids.rows(run.user_ids, new.user_ids)          # (V,) -1: a new user
    if (item_rows < 0).all() and (user_rows < 0).all():
        raise DataError(f"{where}: shares no user and no item with the run in {run.run_dir} (e.g. user "
                        f"{show(new.user_ids[0])}, item {show(new.item_ids[1])}): another data set's "
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
    times = None
    if saved.times is not None and new.times is not None:
        if saved.time_unit != new.time_unit:
            raise DataError(f"{where}: its times ({new.time_unit or 'plain numbers'}) are not of the kind the run's "
                            f"are ({saved.time_unit or 'plain numbers'}): not the run's time column?")
        _check_time_order(run, saved, new, user_row, remap, where)
        times = np.concatenate([saved.times, new.times])
    n_users = n_old_users + len(fresh_users)
    # every event as (extended user row, item); old events first, so a stable sort by user
    # puts each user's new events after its saved history, both in their own order
    rows = np.concatenate([np.repeat(np.arange(n_old_users), old.lengths), np.repeat(user_row, add.lengths)])
    items = np.concatenate([old.items, remap[add.items]])
    weights = _concat_optional(saved.weights, add.weights, len(old.items), len(add.items), 1.0)
    targets = _concat_optional(old.targets, add.targets, len(old.items), len(add.items), True)
    order = np.argsort(rows, kind="stable")
    offsets = offsets_of(np.bincount(rows, minlength=n_users))
    user_ids = _concat_ids(run.user_ids, new.user_ids[fresh_users])
    item_ids = _concat_ids(run.item_ids, new.item_ids[1 + fresh_items])
    pick = lambda a: None if a is None else a[order]  # noqa: E731
    # the train log's "data" line names both parts: its sizes are the extended data's
    ds = Dataset(name=new.name, path=f"{run.run_dir} + {where}", kind=new.kind, user_ids=user_ids,
                 item_ids=item_ids, sequences=Sequences(offsets, items[order], pick(weights), pick(targets)),
                 test_users=new.test_users, ignored_columns=new.ignored_columns, times=pick(times),
                 time_unit=new.time_unit if times is not None else None)
    is_target = add.is_target()  # (new events,) None: every new event is a target
    row = np.repeat(np.arange(len(user_row)), add.lengths)  # (new events,) the new data's user row of each
    learners = np.unique(user_row[row if is_target is None else row[is_target]])  # (L,) extended rows, sorted
    return Extension(ds, np.unique(user_row), learners, len(fresh_users), len(fresh_items), len(add.items))


def _concat_optional(a, b, n_a: int, n_b: int, fill):
    """Two optional per-event arrays as one: None when both are, else the missing one filled with `fill`."""
    if a is None and b is None:
        return None
    dtype = (a if a is not None else b).dtype
    a = np.full(n_a, fill, dtype) if a is None else a
    b = np.full(n_b, fill, dtype) if b is None else b
    return np.concatenate([a, b.astype(dtype, copy=False)])


def _check_time_order(run, saved: Saved, new: Dataset, user_row: np.ndarray, remap: np.ndarray, where: str) -> None:
    """A known user's new event older than the user's last saved one, or equal to one, is refused."""
    old, n_old = run.histories, len(run.user_ids)
    last = np.zeros(n_old, saved.times.dtype)  # (U,) each user's last saved time (the column's own type: exact)
    nonempty = np.nonzero(old.lengths > 0)[0]
    if len(nonempty):
        last[nonempty] = np.maximum.reduceat(saved.times, old.offsets[nonempty])
    ev_user = np.repeat(user_row, new.sequences.lengths)  # (E,) each new event's extended user row
    known = ev_user < n_old
    known[known] = old.lengths[ev_user[known]] > 0
    t, last_of = new.times, last[np.where(known, ev_user, 0)]
    event = lambda i: (f"user {show(run.user_ids[ev_user[i]])}, item {show(new.item_ids[new.sequences.items[i]])} "  # noqa: E731
                       f"at {show_time(new.times[i], new.time_unit)}")
    older = np.nonzero(known & (t < last_of))[0]
    if len(older):
        i = older[0]
        raise DataError(f"{where}: {len(older):,} events of {len(np.unique(ev_user[older])):,} known users are older "
                        f"than the user's last event in the run {run.run_dir} (e.g. {event(i)}, the user's last at "
                        f"{show_time(last[ev_user[i]], new.time_unit)}); an update's events "
                        f"come after the run's data: pass only the newer events, or retrain on the whole log")
    tied = np.nonzero(known & (t == last_of))[0]  # at the user's last saved time: the same item there is the same event
    if len(tied):
        n_items = len(run.item_ids) + len(remap)
        row = np.repeat(np.arange(n_old), old.lengths)
        at_last = saved.times == last[row]
        seen = row[at_last] * n_items + old.items[at_last]
        again = tied[np.isin(ev_user[tied] * n_items + remap[new.sequences.items[tied]], seen)]
        if len(again):
            raise DataError(f"{where}: {len(again):,} events are already in the run {run.run_dir} (e.g. "
                            f"{event(again[0])}); pass only the events after the run's data")


def _check_not_repeated(run, new: Dataset, item_rows: np.ndarray, user_rows: np.ndarray, where: str) -> None:
    """The run's own events again (the whole log, not what came after it) would double every history:
    refused when every known user's new events begin with the user's whole saved history."""
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

def grown_weights(state: dict, num_items: int, content_rows: np.ndarray, seed: int,
                  seqs: Sequences | None = None) -> dict:
    """The run's GPT state with the item table grown from N+1 to num_items+1 rows. A new item
    with content (content_rows (M,) bool) starts at 0: its vector is its content's projection. Any
    other starts at the mean of the trained rows of its old neighbours in `seqs` (the events before
    and after its own; the output layer is tied to these rows, so it scores where they do), else at
    the mean of all trained rows; plus noise of a tenth of the trained rows' spread (no ties)."""
    import torch
    wte = state["wte.weight"]  # (N+1, C)
    trained = wte[1:]
    first_new = wte.shape[0]
    m = num_items + 1 - first_new
    g = torch.Generator().manual_seed(int(seed))
    rows = trained.mean(0) + 0.1 * trained.std(0) * torch.randn(m, wte.shape[1], generator=g, dtype=wte.dtype)
    if seqs is not None and m:
        new_item, old_item = neighbour_pairs(seqs, first_new)  # (P,), (P,)
        sums = torch.zeros(m, wte.shape[1], dtype=wte.dtype).index_add_(
            0, torch.from_numpy(new_item - first_new), wte[torch.from_numpy(old_item)])
        counts = torch.from_numpy(np.bincount(new_item - first_new, minlength=m)).to(wte.dtype)
        has = counts > 0
        rows[has] += sums[has] / counts[has, None] - trained.mean(0)
    rows[torch.from_numpy(np.asarray(content_rows, bool))] = 0.0
    return {**state, "wte.weight": torch.cat([wte, rows.to(wte.dtype)])}


def neighbour_pairs(seqs: Sequences, first_new: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (new item (P,), old item (P,)): a user's consecutive events, one item new (>= first_new), one old."""
    a, b = seqs.items[:-1], seqs.items[1:]
    same_user = np.ones(len(a), bool)
    same_user[seqs.offsets[1:-1][(seqs.offsets[1:-1] > 0) & (seqs.offsets[1:-1] < len(seqs.items))] - 1] = False
    forward = same_user & (b >= first_new) & (a < first_new)   # old -> new
    backward = same_user & (a >= first_new) & (b < first_new)  # new -> old
    return np.concatenate([b[forward], a[backward]]), np.concatenate([a[forward], b[backward]])


def content_coverage(cfg: Config, item_ids: np.ndarray, first_new: int) -> np.ndarray:
    """(M,) bool: which of the items from index first_new on a content table covers."""
    if not cfg.content:
        return np.zeros(len(item_ids) - first_new, bool)
    covered = np.zeros(len(item_ids), bool)
    for _, has in load_content(cfg.content, item_ids, log=None):
        covered |= has.numpy()
    return covered[first_new:]


def replay_rows(touched: np.ndarray, num_users: int, seed: int) -> np.ndarray:
    """(F,) sorted user rows to train on: `touched` and REPLAY times as many others, drawn from (seed, 2)."""
    others = np.setdiff1d(np.arange(num_users), touched)
    n = min(len(others), int(math.ceil(REPLAY * len(touched))))
    replay = np.random.default_rng([seed, 2]).choice(others, size=n, replace=False)
    return np.sort(np.concatenate([touched, replay]))


def default_budget(run_dir: str, cfg: Config) -> tuple[int, int, float]:
    """-> (the update's max_steps, the full run's steps it is a share of, its learning_rate). The steps to
    its best step (validation's choice; the weights an update starts from), else the steps it trained,
    else its max_steps. Early stopping ends a shop's run at 1,600 of 3,000 steps, its best at 600: a share
    of max_steps (300 update steps) cost 0.21 of a retrain's CPU time; of the steps trained (160) 0.10, but
    on a shop whose GPT peaks at step 200 of 1,200 that update fell to 0.896 of a retrain's next-week
    NDCG@10; a share of the best step (60 and 20 steps) gave 0.972 / 1.004 (300k shop, purchases only /
    views as context) and 0.998 (that shop), in 0.06-0.07 of the CPU time (benchmarks/README.md, "A shop's
    lifecycle at the defaults"). An update of an update reads the first run's figures (metrics.json
    "update"): budgets neither shrink nor compound."""
    full, lr = cfg.max_steps, cfg.learning_rate
    if os.path.exists(os.path.join(run_dir, rundir.METRICS)):
        metrics = rundir.read_metrics(run_dir)
        record = metrics.get("update", {})
        full = record.get("full_steps", metrics.get("best_step") or metrics.get("steps") or full)
        lr = record.get("full_learning_rate", lr)
    return max(1, int(round(UPDATE_SHARE * full))), full, lr


# -----------------------------------------------------------------------------
# the update

def update(run_dir: str, data, out: str, changes: dict | None = None, resume: bool = False,
           overwrite: bool = False, quiet: bool = False, print_=print) -> dict:
    """Update the run in `run_dir` with `data` (a path, or a pandas / polars DataFrame or
    pyarrow Table) into the new run folder `out`; -> its metrics (metrics.json).
    changes: config keys to set (UPDATE_KEYS only; max_steps is the update's budget)."""
    changes = dict(changes or {})
    _check_paths(run_dir, out)
    bad = sorted(set(changes) - set(UPDATE_KEYS))
    if bad:
        raise UsageError(f"{bad[0]}: an update continues the run's model with the run's config; "
                         f"only {', '.join(UPDATE_KEYS)} may be set")
    dataclasses.replace(key_base(changes), **changes).validate()  # each value typed and ranged as the CLI's are
    if resume:
        _check_resumable(out)
    old = Run.open(run_dir, pick_device("cpu"))
    cfg = unresolved(old.config)  # the run's settings as given: the update resolves its autos on the new data
    if old.histories is None:
        raise DataError(f"{run_dir}: no {rundir.HISTORIES} (a run from an older nanorec): retrain on the whole log")
    if "split_time" in changes and cfg.holdout != "time":
        raise UsageError(f"split_time={changes['split_time']}: applies to a run trained with holdout=time "
                         f"(this one: holdout={cfg.holdout})")
    saved = saved_events(old)
    where = os.fspath(data) if isinstance(data, (str, os.PathLike)) else "<dataframe>"
    try:
        new = load_like(cfg, data)
    except DataError as e:
        if "missing" not in str(e):
            raise
        raise DataError(f"{e}; an update reads its data with the run's settings (user_col={cfg.user_col}, "
                        f"item_col={cfg.item_col}, time_col={cfg.time_col}"
                        + "".join(f", {k}={getattr(cfg, k)}" for k in ("filter", "target_filter", "weight_col")
                                  if getattr(cfg, k)) + ")") from None
    event_types = _check_event_types(run_dir, cfg, data, new, where)
    ext = extend(old, new, where, saved)
    ds = ext.dataset
    ds.event_types = event_types  # data.json's, for the next update's check

    steps, full, full_lr = default_budget(run_dir, cfg)
    given_steps = changes.pop("max_steps", None)
    if resume:  # the interrupted update's own config (train.run checks that the data is the same)
        new_cfg = dataclasses.replace(unresolved(rundir.read_config(rundir.resume_dir(out))), **changes)
        new_cfg.max_steps = given_steps if given_steps is not None else new_cfg.max_steps
    else:  # the run's config, trained for the update's budget: a short warmup, a cosine over the steps
        steps = given_steps if given_steps is not None else steps
        new_cfg = dataclasses.replace(cfg, data=where, max_steps=steps, decay_steps=0,
                                      warmup_steps=min(cfg.warmup_steps, steps // 10),
                                      learning_rate=UPDATE_LR_SCALE * full_lr)
        if cfg.holdout == "time":
            new_cfg.split_time = update_split_time(cfg, new)
        if cfg.valid_users == 0:  # auto: a sample (UPDATE_VALID_USERS), or the auto rule's, if smaller
            new_cfg.valid_users = validation_users(UPDATE_VALID_USERS, 0, ds.num_items)
        new_cfg = dataclasses.replace(new_cfg, **changes)
    new_cfg.validate()

    # the batches: users with a new target event and a replay of as many others. New views alone teach
    # nothing new: on a shop of 83% views (benchmarks/results/lifecycle_shop2.json) every user with new
    # events gave 0.925 of a retrain's next-week NDCG@10, those with a new purchase 0.970 (300k-event
    # shop: 0.2189 vs 0.2193). Without target flags every new event is a target: the same users.
    learners = ext.learners if len(ext.learners) else ext.touched
    focus = replay_rows(learners, len(ds.user_ids), cfg.seed)
    record = {"from_run": os.path.abspath(run_dir), "data": where, "new_events": ext.new_events,
              "new_users": ext.new_users, "new_items": ext.new_items, "users_with_new_events": len(ext.touched),
              "users_with_new_targets": len(learners), "replayed_users": int(len(focus) - len(learners)),
              "steps": new_cfg.max_steps, "full_steps": full, "full_learning_rate": full_lr}
    trains = methods.get(cfg.method).trains
    if not quiet:
        print_(f"update {run_dir} with {where}: new {ext.new_events:,} events, {ext.new_users:,} users, "
               f"{ext.new_items:,} items; the extended data {len(ds.sequences.items):,} events, "
               f"{len(ds.user_ids):,} users, {ds.num_items:,} items"
               + (f"; holdout=time: the update's test window from split_time={new_cfg.split_time}"
                  if cfg.holdout == "time" else "")
               + (f"; {new_cfg.max_steps:,} steps on the {len(learners):,} users with new "
                  f"{'targets' if len(learners) < len(ext.touched) else 'events'} and "
                  f"{record['replayed_users']:,} replayed" if trains else f"; {cfg.method} refitted"))
    start = None
    if trains:  # the GPT goes on from the old run's weights; a fitted method is refitted
        state = {k: v.detach().cpu() for k, v in old.model.state_dict().items()}
        grown = grown_weights(state, ds.num_items, content_coverage(cfg, ds.item_ids, old.num_items + 1), cfg.seed,
                              ds.sequences)
        near = None
        if cfg.fusion_weights == "auto" and "fusion_weights" not in changes and os.path.exists(
                os.path.join(run_dir, rundir.FUSION)):
            near = rundir.read_fusion(run_dir)
            record["fusion_search"] = f"near the run's weights {list(near)} (fusion_weights=auto: the full search)"
        start = Start(grown, os.path.join(run_dir, rundir.WEIGHTS), focus, record, fusion_near=near)
    return train(new_cfg, out, resume=resume, overwrite=overwrite, quiet=quiet, dataset=ds, start=start)


def _check_event_types(run_dir: str, cfg: Config, data, new: Dataset, where: str) -> list | None:
    """target_filter: a type the run never saw (data.json's "event_types") would silently be context:
    refused, naming the values and counting their events. -> the extended data's event types."""
    known = (rundir.read_fingerprint(run_dir) or {}).get("event_types")
    if not cfg.target_filter or known is None or new.event_types is None:
        return new.event_types
    unknown = sorted(set(new.event_types) - set(known))
    if not unknown:
        return list(known)
    col = cfg.target_filter.partition("=")[0].strip()
    n = ""
    if all(v == v.strip() and "," not in v for v in unknown):  # the filter syntax can name them: count their events
        typed = load_like(dataclasses.replace(cfg, target_filter=f"{col}={','.join(unknown)}"), data,
                          need_targets=False)
        n = f"{int(typed.sequences.targets.sum()):,} events of "
    raise DataError(f"{where}: {n}event types the run in {run_dir} never saw in column {col!r}: "
                    f"{', '.join(repr(v) for v in unknown[:5])}{' ...' if len(unknown) > 5 else ''} (the run's: "
                    f"{', '.join(repr(v) for v in known)}); they would be context, never targets: map them to the "
                    f"run's types, or retrain on the whole log")


def key_base(keys) -> Config:
    """The config an update's keys are checked against: the defaults, holdout=time with split_time."""
    return Config(holdout="time", split_time="0.9") if "split_time" in keys else Config()


def update_split_time(cfg: Config, new: Dataset) -> str:
    """holdout=time: the update's split time, judging it on its newest events: the new events' time
    at position floor(f x new events) in time order (f: the run's split_time when a fraction, else
    VALID_SHARE_OF_DATES), in the column's units; validation comes just before (split_times' rule)."""
    kind, value = parse_split_time(cfg.split_time)
    share = value if kind == "fraction" else VALID_SHARE_OF_DATES
    ordered = np.sort(new.times)
    t = ordered[min(int(share * len(ordered)), len(ordered) - 1)]
    text = str(int(t)) if ordered.dtype.kind in "iu" else repr(float(t))
    if parse_split_time(text)[0] != "number":  # a time in (0, 1) would read as a fraction
        raise UsageError(f"{cfg.data}: holdout=time: give the update's split_time= (a time of its events)")
    return text


def _check_resumable(out: str) -> None:
    """--resume continues an update that stopped; one that finished is said to be complete."""
    saved = rundir.resume_dir(out)
    if os.path.exists(os.path.join(saved, rundir.METRICS)):
        raise UsageError(f"{out}: the update into it is complete ({rundir.METRICS} written): nothing to resume; "
                         f"recommend from it, or update it again into a new --out")
    if not os.path.exists(os.path.join(saved, rundir.CONFIG)):
        raise DataError(f"{out}: nothing to resume (no {rundir.CONFIG})")


def _check_paths(run_dir: str, out: str) -> None:
    """The old run is never written: --out is neither the run folder nor inside it."""
    a, b = os.path.realpath(run_dir), os.path.realpath(out)
    if a == b:
        raise UsageError(f"--out {out}: is the run being updated; an update writes a new run folder and never "
                         f"changes the old one (choose another --out)")
    if b.startswith(a + os.sep):
        raise UsageError(f"--out {out}: inside the run being updated ({run_dir}); choose a folder outside it")
