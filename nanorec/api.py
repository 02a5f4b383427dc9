"""The Python API: fit on a DataFrame or a file, recommend, save, load.

    from nanorec import Recommender
    rec = Recommender(n_layer=2, max_steps=3000).fit(df, user_col="customer", item_col="sku", time_col="ts")
    top = rec.recommend(users=None, k=10, exclude_seen=True)   # user_id, item_id, score, rank, source
    rec.recommend_history(["sku1", "sku7"], k=10)               # a raw history of original ids
    rec.recommend_history(["sku1", "sku1"], event_types=["view", "purchase"])  # target_filter runs
    rec.save("runs/shop"); rec = Recommender.load("runs/shop")  # the run folder `nanorec train` writes

The CLI is a thin layer over the same functions (train.run, recommend.recommend_users), and a
saved Recommender is a run folder that every command reads, opened by `Run.open` with its
histories from `recommend.histories_for`. Arguments are checked as strictly as the CLI's options:
every refusal is one `UsageError` or `DataError` line naming the argument. Ids (users, history,
items, exclude_items) are lists, tuples, 1-D arrays or Series, never a bare string (it would be
iterated), matched by their exact text (nanorec/data/ids.py); items / exclude_items may also be
a path to a file of item ids, read as `nanorec recommend --allow-items` reads it.
Frames out follow the frame given to `fit` (pandas in, pandas out; else polars); `load` takes
`frame="pandas"`, and `rec.frame` may be set.
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
    """A next-item recommender: a GPT by default, or a baseline (method="transitions", ...); every
    `nanorec.config.Config` key is a keyword. After `fit` or `load`: `config`, `run_dir`, `metrics`."""

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
        """Train on `data`: a pandas / polars DataFrame, a pyarrow Table, or a path (any file or
        folder `nanorec train --data` reads). Columns default to the config's; time_col="none"
        keeps the rows' order. The run is written to `out` (default: a new temporary folder).
        Progress and log lines show on a terminal or in a notebook only; quiet=True: nowhere."""
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
        """A new Recommender: this run updated with new events `data` (a frame or a path), as
        `nanorec update` does (nanorec/runs/update.py), written to `out` (default: a new temporary
        folder); this run's folder is never changed. config: update.UPDATE_KEYS (e.g. max_steps=300)."""
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
        """An Optuna search (nanorec.core.tune) -> the winner, loaded, with the study summary in
        `.study`; the test split is scored once, for the winner. `config`: fixed keys for every trial."""
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
        """Top-k lists for `users` (original ids; default: every user seen in fit) -> a DataFrame,
        one row per (user, rank): user_id, item_id, score, rank, source ("model", or "popularity"
        with a null score for a user the model cannot continue). exclude_seen: never the user's own
        items (True), they may be listed (False), or the run's choice (None). items / exclude_items:
        item ids that alone may be listed / never are. A list is shorter when fewer items are left."""
        from .scoring.recommend import list_frame, listed, recommend_users  # late: torch

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
        return self._out(list_frame("long", users, self._run.item_ids[lists], scores, cold, listed(lists)))

    def recommend_history(self, history, k: int = 10, exclude_seen: bool | None = None, mode: str = "oneshot",
                          items=None, exclude_items=None, event_types=None):
        """Top-k for one raw history of original item ids, oldest first (unknown ids skipped; may be
        empty or repeat items) -> a DataFrame: item_id, score, rank, source. event_types (target_filter
        runs): each event's value of its column, so exclude_seen removes the targets (purchases) only.
        history may be a frame with the run's item column (and its target_filter column)."""
        from .scoring.recommend import RawHistories, list_for_history, list_frame, popular_items  # late: torch

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
        scores = np.full(len(listed), np.nan, np.float32) if scores is None else scores
        df = list_frame("long", [0], self._run.item_ids[listed][None], scores[None], [source == "popularity"])
        return self._out(df.drop("user_id"))

    # -------------------------------------------------------------------------
    # files

    def save(self, path, overwrite: bool = False) -> str:
        """Copy the run folder to `path` (a folder holding files only with overwrite=True, and only
        a nanorec run's). Returns path."""
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
        """A Recommender from a run folder; frame: "polars" or "pandas", the frames it returns."""
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
        """The arguments every list takes, checked before anything is scored -> exclude_seen resolved."""
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
        """A frame history -> (its item column, its target_filter column or None); else as given."""
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

    def _out(self, df):
        return df.to_pandas() if self.frame == "pandas" else df

    def __repr__(self) -> str:
        state = f"run_dir={self.run_dir!r}" if self.run_dir else "not fitted"
        return f"Recommender(n_layer={self.config.n_layer}, n_embd={self.config.n_embd}, {state})"


def _is_path(value) -> bool:
    """A filter given as a file: an os.PathLike, or a str naming a file or spelled as a path
    (a missing deny.csv is "no such file", not a list of one id)."""
    return isinstance(value, os.PathLike) or (isinstance(value, str) and (os.path.isfile(value) or bool(
        re.search(r"[/\\]|\.(csv|tsv|parquet|gz|txt)$", value, re.I))))  # 'deny.csv' missing: no such file


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
    """Whether fit's progress can be seen: stderr is a terminal, or this is a Jupyter kernel."""
    import sys
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _path_argument(path, what: str) -> str:
    """A run folder's path argument (non-empty str or os.PathLike); what: the call, e.g. "save({!r})"."""
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"{what.format(path)[:60]}: expected the path of a run folder (a str or os.PathLike), "
                         f"not {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path.strip():
        raise UsageError(f"{what.format(path)}: empty path; expected the path of a run folder")
    return path


