"""The Python API: fit on a DataFrame or a file, recommend, save, load.

    from nanorec import Recommender
    rec = Recommender(n_layer=2, max_steps=3000).fit(df, user_col="customer", item_col="sku", time_col="ts")
    top = rec.recommend(users=None, k=10, exclude_seen=True)   # user_id, item_id, score, rank, source
    rec.recommend_history(["sku1", "sku7"], k=10)               # a raw history of original ids
    rec.recommend_history(["sku1", "sku1"], event_types=["view", "purchase"])  # target_filter runs
    rec.save("runs/shop"); rec = Recommender.load("runs/shop")  # the run folder `nanorec train` writes

The CLI is a thin layer over the same functions: `fit` is `nanorec train`
(train.run), `recommend` is `nanorec recommend` (recommend.recommend_users),
and a saved Recommender is a run folder that `nanorec recommend/serve/evaluate`
read as they read any other; it is opened by `Run.open` and its histories
prepared by `recommend.histories_for`, as the CLI and the server do.

Arguments are checked as strictly as the CLI's options, and every refusal is a
`UsageError` or `DataError` with one line naming the argument:
- users / history: a list, tuple, 1-D numpy array or pandas / polars Series of
  ids (a bare string or number is refused, never iterated); None, NaN and
  pandas.NA are refused, and so are booleans, nested lists and non-integral
  floats; an integral float (pandas makes them of integer columns with a gap) is
  that integer only where the run's ids are integers. Ids match by their exact
  text (nanorec/data/ids.py). Given ids of another type than the run's (strings for a
  run trained on integer ids) are an error when none is known, a warning when some
  are not. users must not be empty or list a user twice.
- k: an int (not a bool) in 1..items; exclude_seen: a bool, or None (the default): the
  run's own choice (its exclude_seen config; auto: chosen on validation at training, see
  nanorec/scoring/seen.py); mode: "oneshot" or "generative", checked on every call.
- exclude_seen=True never returns an item of the user's history: a user with fewer
  than k unseen items gets a shorter list (as from `nanorec recommend`). Under
  target_filter "seen" means the history's target events (purchases) only;
  recommend_history's event_types (one value of the target_filter column per history
  item, ids' rules: ints or strings) says which.
- items / exclude_items (business filters): item ids, as for users, that alone may be
  listed / that are never listed, applied before the lists are cut, for every method
  and for the popularity fallback. An id the run does not know is a UsageError naming
  how many and one of them; an empty allow list is refused (an empty exclude list is
  no filter). A user left with fewer than k items gets a shorter list, never filler.
  Either may be a path (a str naming an existing file, or a pathlib.Path) to a file of
  item ids, read as `nanorec recommend --allow-items / --deny-items` read theirs
  (recommend.read_filter_file: with or without a header; ids the run does not know
  are counted, in a warning, not an error).

Frames out: the type follows the frame given to `fit` (pandas in, pandas out;
polars, pyarrow or a path: polars). `load` has no frame to follow: polars unless
`frame="pandas"`; `rec.frame` says which, and may be set.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import warnings
from typing import Any

import numpy as np

from .config import Config, check_keys, unresolved
from .data import ids, load_like
from .data.tables import frame_to_polars
from .errors import DataError, UsageError, show
from .runs import rundir
from .runs.files import atomic_write, check_output_folder

FRAMES = ("polars", "pandas")
MODES = ("oneshot", "generative")


class Recommender:
    """A next-item recommender: a GPT by default, or a baseline with method="transitions",
    "popularity" or "svd"; every `nanorec.config.Config` key is a keyword.

    Attributes after `fit` or `load`: `config` (the resolved Config), `run_dir`
    (the run folder), `metrics` (metrics.json: validation/test figures and the
    training history).
    """

    def __init__(self, **config: Any):
        check_keys(sorted(config))
        self.config = Config(**config).validate()
        self.run_dir: str | None = None
        self._run = None
        self.frame = "polars"  # the type of the frames out: fit's frame's, see the module docstring

    # -------------------------------------------------------------------------
    # training

    def fit(self, data, user_col: str | None = None, item_col: str | None = None, time_col: str | None = None,
            *, filter: str | None = None, out: str | None = None, overwrite: bool = False,
            quiet: bool = False, time_format: str | None = None) -> "Recommender":
        """Train on `data`: a pandas / polars DataFrame, a pyarrow Table, or a path
        (S3-Rec .txt, .csv/.tsv(.gz)/.parquet, a Parquet folder, a challenge folder).

        Column names default to the config's (user_id, item_id, timestamp);
        time_col="none" keeps the rows' order. Frames are read in memory, never
        through a temporary file. The run is written to `out` (default: a new
        temporary folder; `save` copies it where you want it). Returns self.

        On a terminal or in a notebook, training shows a progress bar and its log lines
        (validation figures, fusion weights; train.log keeps them too); elsewhere (output
        to a file or a pipe) nothing is printed. quiet=True prints nothing anywhere;
        progress=False (a config key) keeps the lines but drops the bar."""
        from .core.train import run  # late: torch; import nanorec stays light

        changes = _column_arguments(user_col=user_col, item_col=item_col, time_col=time_col, filter=filter,
                                    time_format=time_format)
        _check_bool(overwrite, "overwrite")
        _check_bool(quiet, "quiet")
        out = None if out is None else _path_argument(out, "out={!r}")
        if data is None:
            raise UsageError("fit(data=None): expected a DataFrame (pandas or polars), a pyarrow Table or a path")
        cfg = dataclasses.replace(unresolved(self.config), **changes)  # a loaded run's autos resolve again
        if isinstance(data, (str, os.PathLike)):
            cfg.data = os.fspath(data)
            dataset = None
        else:
            cfg.data = "<dataframe>"
            dataset = load_like(cfg, data)
            self.frame = _frame_of(data)
        cfg.validate()
        out = out or tempfile.mkdtemp(prefix="nanorec-run-")
        run(cfg, out, overwrite=overwrite, quiet=quiet or not _on_screen(), dataset=dataset)
        self.config = cfg
        self._attach(out)
        return self

    def update(self, data, *, out: str | None = None, overwrite: bool = False, quiet: bool = True,
               **config: Any) -> "Recommender":
        """A new Recommender: this run updated with new events `data` (a DataFrame, a pyarrow
        Table or a path, with the run's columns), as `nanorec update` does (nanorec/runs/update.py):
        histories extended (new users added), new items added to the vocabulary (existing ids
        keep their indices), training continued from this run's weights for max_steps steps
        (default a tenth of the full run's) on the users with new events plus a replay of
        others, fusion refitted. The new run is written to `out` (default: a new temporary
        folder); this run's folder is never changed. config: keys an update may set
        (update.UPDATE_KEYS, e.g. max_steps=300), each value checked as the CLI's key=value
        (max_steps=0 or "5" refused). Events older than a user's last event in this run, or
        already in it, are refused (update.py)."""
        from .runs.update import update  # late: torch; import nanorec stays light
        self._require_fitted()
        _check_bool(overwrite, "overwrite")
        _check_bool(quiet, "quiet")
        check_keys(sorted(config))
        if data is None:
            raise UsageError("update(data=None): expected a DataFrame (pandas or polars), a pyarrow Table or a path")
        out = _path_argument(out, "out={!r}") if out is not None else tempfile.mkdtemp(prefix="nanorec-run-")
        update(self.run_dir, data, out, config, overwrite=overwrite, quiet=quiet)
        frame = self.frame if isinstance(data, (str, os.PathLike)) else _frame_of(data)
        return type(self).load(out, frame=frame)

    @classmethod
    def tune(cls, data, space: str | None = None, trials: int = 20, out: str | None = None,
             user_col: str | None = None, item_col: str | None = None, time_col: str | None = None,
             *, filter: str | None = None, **config: Any) -> "Recommender":
        """An Optuna search (see `nanorec.core.tune`): every trial selects on validation,
        and the test split is scored once, for the winner. Returns the winner,
        loaded, with the study summary in `.study`. `config`: fixed keys for every trial."""
        from .core.tune import DEFAULT_SPACE, tune  # late: torch; import nanorec stays light

        base = cls(**config).config
        changes = _column_arguments(user_col=user_col, item_col=item_col, time_col=time_col, filter=filter)
        out = None if out is None else _path_argument(out, "out={!r}")
        base = dataclasses.replace(base, **changes, progress=False)
        if isinstance(data, (str, os.PathLike)):
            base.data, dataset = os.fspath(data), None
        else:
            base.data, dataset = "<dataframe>", load_like(base, data)
        out = out or tempfile.mkdtemp(prefix="nanorec-study-")
        summary = tune(base, out, space or DEFAULT_SPACE, trials, dataset=dataset, log=lambda *_: None)
        rec = cls.load(summary["best"]["run"], frame=_frame_of(data) if dataset is not None else "polars")
        rec.study = summary
        return rec

    # -------------------------------------------------------------------------
    # recommending

    def recommend(self, users=None, k: int = 10, exclude_seen: bool | None = None, mode: str = "oneshot",
                  items=None, exclude_items=None):
        """Top-k lists for `users` (original ids; default: every user seen in fit).

        Returns a DataFrame (see `frame`) with one row per (user, rank): user_id, item_id,
        score, rank, source. source is "model", or "popularity" for a user the model cannot
        continue (unknown, or no known item), whose score is null: counts are not on the
        model's scale. exclude_seen: a user's own items are never listed (fewer than k rows
        when fewer unseen items are left); False: they may be (repeat purchases); None: the run's choice. items / exclude_items: original item ids that alone
        may be listed / that never are (fewer than k rows when fewer are left)."""
        from .scoring.recommend import recommend_users  # late: torch; import nanorec stays light

        exclude_seen = self._check_call(k, exclude_seen, mode)
        blocked = self._blocked(items, exclude_items)
        known = self._users
        if users is None:
            users = known
        else:
            users = ids.from_python(users, known, "users")
            note = ids.check_kinds(known, users, ids.rows(known, users) >= 0, "users", "user")
            if note:
                warnings.warn(note, stacklevel=2)
        lists, scores, cold = recommend_users(self._run.scorer, self._run.num_items, known, self._histories,
                                              users, k, exclude_seen, mode, blocked=blocked)
        return self._frame(users, lists, scores, cold)

    def recommend_history(self, history, k: int = 10, exclude_seen: bool | None = None, mode: str = "oneshot",
                          items=None, exclude_items=None, event_types=None):
        """Top-k for one raw history of original item ids, oldest first (unknown ids are skipped;
        the same checks as `users`, but an empty history or a repeated item is a history).
        Returns a DataFrame: item_id, score, rank, source ("popularity", with null scores, when
        no id of the history is known). items / exclude_items: as in `recommend`.
        event_types: for a run trained with target_filter, each event's value of its column
        (e.g. ["view", "purchase", "view"], as long as `history`): only the matching events are
        targets, so exclude_seen removes those (the purchases), never items only viewed. None:
        every event is a target. A value the run was not trained with is a UsageError.
        history may also be a frame (pandas / polars DataFrame, pyarrow Table) with the run's item
        column and, for event types, its target_filter column (rows oldest first)."""
        from .scoring.recommend import (RawHistories, list_for_history,  # late: torch; import nanorec stays light
                                        popular_items)

        exclude_seen = self._check_call(k, exclude_seen, mode)
        blocked = self._blocked(items, exclude_items)
        if self._lookup is None:  # built once per loaded model, as the server does
            self._lookup = RawHistories(self._run)
            self._popular = popular_items(self._histories, self._run.num_items, self._run.num_items)
        history, event_types = self._history_columns(history, event_types)
        vocab = self._run.item_ids[1:]
        history = ids.from_python(history, vocab, "history", allow_empty=True, allow_repeats=True)
        if event_types is not None:  # ints and strings, as ids are (a column's values, compared as text)
            event_types = ids.from_python(event_types, np.array([""], object), "event_types", allow_empty=True,
                                          allow_repeats=True)
        known, unknown = self._lookup(history, event_types)
        if unknown and not len(known.items):
            detail = ids.kinds_differ(vocab, history, "item")
            if detail:
                raise DataError(f"history: none of its {len(history):,} item ids is known to the run ({detail})")
        listed, scores, source = list_for_history(self._run.scorer, self._popular, known, k, exclude_seen, mode,
                                                  blocked)
        n = len(listed)
        scores = np.full(n, np.nan, np.float32) if scores is None else np.asarray(scores, np.float32)
        return self._out(_pl_frame({"item_id": _plain_ids(self._run.item_ids[listed]), "score": scores,
                                   "rank": np.arange(1, n + 1), "source": [source] * n}))

    # -------------------------------------------------------------------------
    # files

    def save(self, path, overwrite: bool = False) -> str:
        """Copy the run folder to `path` (refused when `path` holds files, unless overwrite=True,
        which replaces a nanorec run there). Returns path."""
        self._require_fitted()
        path = _path_argument(path, "save({!r})")
        _check_bool(overwrite, "overwrite")
        if os.path.abspath(path) == os.path.abspath(self.run_dir):
            return path
        check_output_folder(path, "folder")  # a folder, or a path where one can be created
        if os.path.isdir(path) and os.listdir(path):
            if not overwrite:
                raise UsageError(f"{path}: the folder is not empty; pass overwrite=True to replace it")
            try:  # overwrite replaces a nanorec run, never another folder's files
                rundir.read_config(path)
            except DataError as e:
                raise DataError(f"{path}: overwrite=True replaces a nanorec run, and this folder is not one ({e})") from None
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise DataError(f"{path}: cannot create the folder ({e.strerror})") from None
        for name in rundir.RUN_FILES:
            src, dst = os.path.join(self.run_dir, name), os.path.join(path, name)
            if os.path.isfile(src):
                atomic_write(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
            elif os.path.isfile(dst):  # a file of the run replaced: one folder, one run
                os.remove(dst)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu", frame: str = "polars") -> "Recommender":
        """A Recommender from a run folder written by `save`, `fit` or `nanorec train`.
        frame: the type of the frames `recommend` returns, "polars" (default) or "pandas"."""
        path = _path_argument(path, "load({!r})")
        if frame not in FRAMES:
            raise UsageError(f"frame={frame!r}: expected one of {', '.join(map(repr, FRAMES))}")
        rec = cls.__new__(cls)
        rec.run_dir, rec._run, rec.frame = None, None, frame
        rec._attach(path, device)
        return rec

    @property
    def metrics(self) -> dict:
        self._require_fitted()
        return rundir.read_metrics(self.run_dir)

    # -------------------------------------------------------------------------
    # internals

    def _attach(self, run_dir: str, device: str = "cpu") -> None:
        from .core.devices import pick_device  # late: torch; import nanorec stays light
        from .runs.run import Run
        from .scoring.recommend import histories_for
        self._run = Run.open(run_dir, pick_device(device))
        self.config = self._run.config
        self._users, self._histories, _ = histories_for(self._run)
        self._lookup = self._popular = None  # recommend_history's RawHistories and popularity order, on first use
        self.run_dir = run_dir

    def _require_fitted(self) -> None:
        if self._run is None:
            raise UsageError("this Recommender is not fitted: call fit(data) or Recommender.load(path)")

    def _check_call(self, k, exclude_seen, mode) -> bool:
        """The arguments every list takes, checked on every call (before anything is scored).
        -> exclude_seen, None resolved to the run's choice (Run.exclude_seen)."""
        self._require_fitted()
        n = self._run.num_items
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
            raise UsageError(f"k={show(k)}: expected an integer in 1..{n}")
        if exclude_seen is not None:
            _check_bool(exclude_seen, "exclude_seen")
        if not isinstance(mode, str) or mode not in MODES:
            raise UsageError(f"mode={show(mode)}: expected {' or '.join(map(repr, MODES))}")
        return self._run.exclude_seen if exclude_seen is None else exclude_seen

    def _history_columns(self, history, event_types):
        """A frame history -> (its item column, its target_filter column or None); any other
        history is returned as it is, with event_types."""
        converted = None if isinstance(history, (list, tuple, np.ndarray, str, bytes)) else frame_to_polars(history)
        if converted is None:
            return history, event_types
        df, item_col = converted[0], self.config.item_col
        if item_col not in df.columns:
            raise UsageError(f"history: a frame needs the run's item column {item_col!r} "
                             f"(its columns: {', '.join(df.columns[:10])})")
        col = self._lookup.filter[0] if self._lookup.filter else None
        if event_types is not None:
            raise UsageError(f"event_types: a frame history carries them in its {col or 'target_filter'} column; "
                             "leave event_types out")
        return df[item_col], (df[col] if col in df.columns else None)

    def _blocked(self, items, exclude_items):
        """The business filters (original item ids, None: not given) as scoring's item mask."""
        from .scoring.recommend import blocked_items, filter_files  # late: torch; import nanorec stays light
        vocab = self._run.item_ids
        if _is_path(items) or _is_path(exclude_items):  # files: read as the CLI reads --allow/--deny-items
            def report(got, option):  # unknown ids are counted, not an error: said when there are some
                if len(got.unknown):
                    warnings.warn(got.line(option), stacklevel=5)  # the caller's line
            files = filter_files(vocab, items if _is_path(items) else None,
                                 exclude_items if _is_path(exclude_items) else None, self._run.config.item_col,
                                 report, allow_option="items", deny_option="exclude_items")
            rest = self._blocked(None if _is_path(items) else items, None if _is_path(exclude_items) else exclude_items)
            return files if rest is None else files | rest
        allow = deny = None
        if items is not None:
            allow = ids.from_python(items, vocab[1:], "items", allow_empty=True)
            if len(allow) == 0:
                raise UsageError("items: empty; pass at least one item id that may be listed "
                                 "(or None for every item)")
        if exclude_items is not None:
            deny = ids.from_python(exclude_items, vocab[1:], "exclude_items", allow_empty=True)
            deny = deny if len(deny) else None  # nothing to exclude
        return blocked_items(vocab, allow, deny, "items", "exclude_items", UsageError)

    def _frame(self, users, items, scores, cold):
        """(U,) users, (U, k) items, scores, (U,) cold -> the long frame; empty slots (filters,
        seen items with exclude_seen: `recommend.listed`) are left out: shorter lists."""
        from .scoring.recommend import listed  # late: torch; import nanorec stays light
        k = items.shape[1]
        keep = listed(items).reshape(-1)
        uid = np.repeat(users, k)[keep]
        rank = np.tile(np.arange(1, k + 1), len(users))[keep]
        return self._out(_pl_frame({"user_id": _plain_ids(uid), "item_id": _plain_ids(self._run.item_ids[items].reshape(-1)[keep]),
                                   "score": scores.reshape(-1)[keep], "rank": rank,
                                   "source": np.where(np.repeat(cold, k), "popularity", "model")[keep]}))

    def _out(self, df):
        import polars as pl
        df = df.with_columns(pl.col("score").fill_nan(None))
        return df.to_pandas() if self.frame == "pandas" else df

    def __repr__(self) -> str:
        state = f"run_dir={self.run_dir!r}" if self.run_dir else "not fitted"
        return f"Recommender(n_layer={self.config.n_layer}, n_embd={self.config.n_embd}, {state})"


def _is_path(value) -> bool:
    """A filter given as a file: a pathlib.Path (any os.PathLike), or a str naming an existing file
    or spelled as a path (a folder in it, or a table's suffix: a missing deny.csv is "no such
    file", not a list of one id; a bare str is never a list of ids: ids.from_python refuses it)."""
    return isinstance(value, os.PathLike) or (isinstance(value, str) and (os.path.isfile(value) or bool(
        re.search(r"[/\\]|\.(csv|tsv|parquet|gz|txt)$", value, re.I))))  # 'deny.csv' missing: no such file


def _pl_frame(columns: dict):
    import polars as pl
    return pl.DataFrame(columns)


def _plain_ids(a: np.ndarray):
    """An id array polars takes (object ids -> a list of Python values)."""
    a = np.asarray(a)
    return a.tolist() if a.dtype == object else a


def _frame_of(data) -> str:
    return "pandas" if type(data).__module__.startswith("pandas") else "polars"


def _column_arguments(**given) -> dict:
    """fit/tune's column, filter and time_format arguments that were given (None: the config's), each a str."""
    for name, value in given.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{name}={show(value)}: expected a column name (a str)" if name not in ("filter", "time_format")
                             else f"filter={show(value)}: expected \"column=value[,value...]\" (a str)" if name == "filter"
                             else f"time_format={show(value)}: expected a strptime format such as \"%d/%m/%Y\" (a str)")
    return {k: v for k, v in given.items() if v is not None}


def _check_bool(value, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name}={show(value)}: expected True or False")


def _on_screen() -> bool:
    """Whether fit's progress has somewhere to be seen: stderr is a terminal (tqdm draws its bar
    there), or this is a Jupyter kernel (tqdm.auto draws a widget; its stderr is no terminal)."""
    import sys
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _path_argument(path, what: str) -> str:
    """A run folder's path argument: a non-empty str or os.PathLike, else one UsageError line.
    what: how the call is shown, with {!r} for the value ("save({!r})", "out={!r}")."""
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"{what.format(path)[:60]}: expected the path of a run folder (a str or os.PathLike), "
                         f"not {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path.strip():
        raise UsageError(f"{what.format(path)}: empty path; expected the path of a run folder")
    return path


