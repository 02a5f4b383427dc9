"""Per-user chronological item sequences: the CSR Sequences, the loaded Dataset,
and the holdout splits (which items train, which select the model, which test it).

Items get internal indices 1..N (0 is padding, never a recommendation); ``Dataset.item_ids[i]``
is the original id of index i. Rows are stored flat (CSR: ``offsets`` (U+1,), ``items`` (total,)),
so 2.5M interactions cost two numpy arrays, not millions of Python lists. ``weights`` and
``targets`` (weight_col, target_filter) travel with every cut (take, drop_last, the splits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# -----------------------------------------------------------------------------
# flat per-user sequences

def offsets_of(counts) -> np.ndarray:
    """(n+1,) int64: 0, then the running sum of `counts` (CSR offsets of rows of these lengths)."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


@dataclass
class Sequences:
    """Variable-length integer sequences in CSR form: row u is items[offsets[u]:offsets[u+1]]."""
    offsets: np.ndarray  # (U+1,) int64, offsets[0] == 0
    items: np.ndarray    # (offsets[-1],) int64
    weights: np.ndarray | None = None  # (total,) float32 >= 0 target weight (0: context); None: all 1
    targets: np.ndarray | None = None  # (total,) bool, what a holdout may hold out; None: weight > 0

    def is_target(self) -> np.ndarray | None:
        """(total,) bool: the events a holdout may pick as targets; None when every event is one."""
        if self.targets is not None:
            return self.targets
        return None if self.weights is None else self.weights > 0

    def has_context(self) -> bool:
        """Whether some events are context only (weight 0: target_filter's views): an event-typed log."""
        return self.weights is not None and not bool((self.weights > 0).all())

    def target_events(self) -> "Sequences":
        """Each row's target events (purchases); a row without one keeps every event. What count tables read."""
        is_target = self.is_target()
        row = np.repeat(np.arange(len(self)), self.lengths)  # (total,)
        has = np.bincount(row[is_target], minlength=len(self)) > 0  # (U,)
        return self.select(is_target | ~has[row])

    def select(self, keep) -> "Sequences":
        """The events `keep` picks (a (total,) mask, or flat indices in order), rows kept; no weights."""
        row = np.repeat(np.arange(len(self)), self.lengths)[keep]
        return Sequences(offsets_of(np.bincount(row, minlength=len(self))), self.items[keep])

    def seen_items(self) -> "Sequences":
        """What exclude_seen removes: each row's target events (a viewed item may well be bought next), else all."""
        is_target = self.is_target()
        if is_target is None or is_target.all():
            return self
        before = offsets_of(is_target)  # (total+1,) target events before each event
        return Sequences(before[self.offsets], self.items[is_target])

    def _cut(self, keep) -> tuple:
        """(weights, targets) of the events `keep` selects (a mask or flat indices)."""
        return (None if self.weights is None else self.weights[keep],
                None if self.targets is None else self.targets[keep])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u]:self.offsets[u + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_lists(cls, seqs) -> "Sequences":
        offsets = offsets_of(np.array([len(s) for s in seqs], dtype=np.int64))
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if len(seqs) else np.zeros(0, np.int64)
        return cls(offsets, items.astype(np.int64, copy=False))

    def to_lists(self) -> list[list[int]]:
        return [self[u].tolist() for u in range(len(self))]

    def drop_last(self, k: int) -> "Sequences":
        """Every row without its last k items (rows shorter than k become empty)."""
        if k == 0:
            return self
        return self._keep_prefix(np.maximum(self.lengths - k, 0))

    def _keep_prefix(self, new_len: np.ndarray) -> "Sequences":
        pos = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)  # position inside its row
        keep = pos < np.repeat(new_len, self.lengths)
        return Sequences(offsets_of(new_len), self.items[keep], *self._cut(keep))

    def take(self, rows: np.ndarray) -> "Sequences":
        """A new Sequences of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = offsets_of(lengths)
        src = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths) + np.arange(offsets[-1])  # (kept,) flat
        return Sequences(offsets, self.items[src], *self._cut(src))


def next_targets(seqs: Sequences, is_target: np.ndarray) -> np.ndarray:
    """(total,) the flat index of the next target event at or after each event in its row, else len(items)."""
    n = len(seqs.items)
    following = np.where(is_target, np.arange(n), n)
    following = np.minimum.accumulate(following[::-1])[::-1]  # the next target anywhere after
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)
    ok = following < n
    ok[ok] = row[following[ok]] == row[ok]
    return np.where(ok, following, n)


def item_counts(seqs: Sequences, num_items: int) -> np.ndarray:
    """(N+1,) interaction counts per item index (padding 0); with target_filter of target events only."""
    is_target = seqs.is_target()
    items = seqs.items if is_target is None else seqs.items[is_target]
    counts = np.bincount(items, minlength=num_items + 1).astype(np.int64)
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
    ignored_columns: list[str] = field(default_factory=list)  # event logs: the columns read but not used
    # (total,) float32: weight_col's value (1 without it), 0 for target_filter's context events; None
    # without either. The same array as sequences.weights (__post_init__).
    weights: np.ndarray | None = None
    # (total,) each event's sortable time (None without a time column): what holdout=time splits on;
    # one step of it is time_unit: "ns"/"us"/"ms" (from the epoch), "d" (dates), None (plain numbers)
    times: np.ndarray | None = None
    time_unit: str | None = None
    # target_filter: its column's values (text, sorted, no nulls), the event types a run knows (recommend.py)
    event_types: list[str] | None = None

    def __post_init__(self):
        # one array, two names: the splits cut sequences (and their weights); ds.weights reads them
        if self.weights is None:
            self.weights = self.sequences.weights
        elif self.sequences.weights is None:
            self.sequences.weights = self.weights

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


def last_targets(seqs: Sequences, j: int) -> np.ndarray:
    """(U,) the position in its row of each row's j-th last target event (0: the last), -1 if none."""
    lengths = seqs.lengths
    is_target = seqs.is_target()
    if is_target is None:
        return np.where(lengths > j, lengths - 1 - j, -1)
    before = offsets_of(is_target)  # (total+1,) targets before each event
    row = np.repeat(np.arange(len(seqs)), lengths)  # (total,)
    from_end = before[seqs.offsets[1:]][row] - before[1:]  # (total,) targets after each event in its row
    hit = np.nonzero(is_target & (from_end == j))[0]
    out = np.full(len(seqs), -1, dtype=np.int64)
    out[row[hit]] = hit - seqs.offsets[row[hit]]
    return out


def _first_targets(seqs: Sequences) -> np.ndarray:
    """(U,) the position inside its row of each row's first target event, -1 for a row without one."""
    is_target = seqs.is_target()
    if is_target is None:
        return np.where(seqs.lengths > 0, 0, -1)
    row = np.repeat(np.arange(len(seqs)), seqs.lengths)  # (total,)
    hit = np.nonzero(is_target)[0]
    rows, first = np.unique(row[hit], return_index=True)
    out = np.full(len(seqs), -1, dtype=np.int64)
    out[rows] = hit[first] - seqs.offsets[rows]
    return out


def _kept_before(seqs: Sequences, k: int) -> np.ndarray:
    """(U,) events of each row before its k-th last target (k = 0: all; too few: before the first, or all)."""
    if k == 0:
        return seqs.lengths
    cut = last_targets(seqs, k - 1)
    if seqs.weights is None:
        return np.maximum(cut, 0)
    first = _first_targets(seqs)
    return np.where(cut >= 0, cut, np.where(first >= 0, first, seqs.lengths))


# Events further apart than this start a new session (the usual web-analytics cut, 30 minutes), per
# unit of a time column (Dataset.time_unit); a date column: the events of one day are one session.
SESSION_GAP = {"ns": 30 * 60 * 10 ** 9, "us": 30 * 60 * 10 ** 6, "ms": 30 * 60 * 1000, "d": 1}


def session_starts(seqs: Sequences, times: np.ndarray, unit: str | None) -> np.ndarray | None:
    """(total,) the position inside its row of the first event of each event's session (events
    less than SESSION_GAP apart, one user); None when the times' unit is unknown (plain numbers)."""
    if unit not in SESSION_GAP:
        return None
    n = len(seqs.items)
    row_start = np.repeat(seqs.offsets[:-1], seqs.lengths)  # (total,) the flat index of each event's row start
    new = np.arange(n) == row_start
    new[1:] |= np.diff(np.asarray(times)) >= SESSION_GAP[unit]
    first = np.maximum.accumulate(np.where(new, np.arange(n), 0))  # flat index of each session's first event
    return first - row_start


def _eval_set(seqs: Sequences, drop: int, sessions: np.ndarray | None = None) -> EvalSet:
    """Target = the `drop`-th last target event (0: the last); history = every event before it (users
    with none are left out). An event-typed log ends the history before the target's session
    (`session_starts`; without times, at the purchase before it), so selection measures the next
    purchase, not "buy the item just carted" (NDCG@10 ~0.9, which picks the wrong fusion weights
    and steps: benchmarks/results/selection_event_types.json)."""
    at = last_targets(seqs, drop)  # (U,)
    keep = np.maximum(at, 0)
    if seqs.has_context():
        if sessions is not None:
            has = np.nonzero(at >= 0)[0]
            keep[has] = sessions[seqs.offsets[has] + at[has]]  # the first event of the target's session
        else:
            keep = np.where(at >= 0, last_targets(seqs, drop + 1) + 1, 0)  # through the purchase before it
    rows = np.nonzero((at >= 1) & (keep >= 1))[0]
    targets = seqs.items[seqs.offsets[rows] + at[rows]]
    return EvalSet(rows, seqs._keep_prefix(keep).take(rows), targets)


def funnel_share(seqs: Sequences, drop: int) -> tuple[int, float]:
    """An event-typed log: (users with a purchase before the held-out one, share of them whose
    held-out purchase was viewed or carted since it): the easy task `_eval_set` leaves out."""
    at, prev = last_targets(seqs, drop), last_targets(seqs, drop + 1)
    rows = np.nonzero((at >= 1) & (prev >= 0))[0]
    if not len(rows):
        return 0, 0.0
    start, end = seqs.offsets[rows], seqs.offsets[rows] + at[rows]  # the target's flat index
    lo = start + prev[rows] + 1  # the first event after the purchase before it
    n = end - lo  # (M,) events of each funnel
    funnel = np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # their flat indices
    same = seqs.items[funnel] == np.repeat(seqs.items[end], n)
    return len(rows), float((np.bincount(np.repeat(np.arange(len(rows)), n), same, len(rows)) > 0).mean())


def funnel_note(seqs: Sequences, drop: int) -> str:
    """The training log's line on an event-typed log's held-out purchases (`funnel_share`)."""
    users, share = funnel_share(seqs, drop)
    return (f"validation (views as context): {share:.0%} of the {users:,} held-out purchases that follow an earlier "
            "purchase were viewed or carted since it" + (" (validation would be dominated by same-session repeats)"
                                                if share >= 0.5 else "")
            + "; each one's session is left out of its history: validation measures the next purchase from "
            "what came before it, as next week is judged")


def split(ds: Dataset, all_data: bool = False, holdout: str = "loo") -> Split:
    """Which of each user's items (target events, under target_filter) train, validate and test.

    holdout="loo" (the benchmarks' protocol): test = last item, valid = second to last, train =
      the rest; a challenge folder's test answers are hidden: valid = its last item, no test.
    holdout="last": valid = last item, train = the rest, no test.
    holdout="none": every item trains; no validation, no test (the model to ship).
    all_data: training also learns the validation targets (loo: the test target stays unseen)."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout={holdout!r}: expected one of {', '.join(HOLDOUTS)}")
    seqs = ds.sequences
    if holdout == "none":
        return Split(train=seqs, valid=None, test=None)
    held = 2 if holdout == "loo" and ds.has_test_targets else 1
    sessions = session_starts(seqs, ds.times, ds.time_unit) if seqs.has_context() and ds.times is not None else None
    valid = _eval_set(seqs, held - 1, sessions)
    test = _eval_set(seqs, 0, sessions) if held == 2 else None
    train = seqs._keep_prefix(_kept_before(seqs, held - 1 if all_data else held))
    return Split(train=train, valid=valid, test=test)
