"""The Python API: fit on a DataFrame or a file, recommend, save, load.

    from nanorec import Recommender
    rec = Recommender(n_layer=2, max_steps=3000).fit(df, user_col="customer", item_col="sku", time_col="ts")
    top = rec.recommend(users=None, k=10, exclude_seen=True)   # user_id, item_id, score, rank, source
    rec.recommend_history(["sku1", "sku7"], k=10)               # a raw history of original ids
    rec.save("runs/shop"); rec = Recommender.load("runs/shop")  # the run folder `nanorec train` writes

The CLI is a thin layer over the same functions: `fit` is `nanorec train`
(train.run), `recommend` is `nanorec recommend` (recommend.recommend_users),
and a saved Recommender is a run folder that `nanorec recommend/serve/evaluate`
read as they read any other.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Iterable

import numpy as np

from . import rundir
from .config import Config
from .errors import DataError, UsageError

_FIELDS = {f.name for f in dataclasses.fields(Config)}


class Recommender:
    """A next-item recommender: a GPT by default, or a baseline with method="transitions",
    "popularity" or "svd"; every `nanorec.config.Config` key is a keyword.

    Attributes after `fit` or `load`: `config` (the resolved Config), `run_dir`
    (the run folder), `metrics` (metrics.json: validation/test figures and the
    training history).
    """

    def __init__(self, **config: Any):
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            import difflib
            close = difflib.get_close_matches(unknown[0], _FIELDS, n=3)
            raise UsageError(f"unknown config key {unknown[0]!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        self.config = Config(**config).validate()
        self.run_dir: str | None = None
        self._scorer = None
        self._frame_kind = "polars"

    # -------------------------------------------------------------------------
    # training

    def fit(self, data, user_col: str | None = None, item_col: str | None = None, time_col: str | None = None,
            *, filter: str | None = None, out: str | None = None, overwrite: bool = False,
            quiet: bool = True, time_format: str | None = None) -> "Recommender":
        """Train on `data`: a pandas / polars DataFrame, a pyarrow Table, or a path
        (S3-Rec .txt, .csv/.tsv(.gz)/.parquet, a Parquet folder, a challenge folder).

        Column names default to the config's (user_id, item_id, timestamp);
        time_col="none" keeps the rows' order. Frames are read in memory, never
        through a temporary file. The run is written to `out` (default: a new
        temporary folder; `save` copies it where you want it). Returns self."""
        from .data import load_like
        from .train import run

        changes = {k: v for k, v in (("user_col", user_col), ("item_col", item_col),
                                     ("time_col", time_col), ("filter", filter), ("time_format", time_format)) if v is not None}
        cfg = dataclasses.replace(self.config, **changes)
        if isinstance(data, (str, os.PathLike)):
            cfg.data = os.fspath(data)
            dataset = None
        else:
            cfg.data = "<dataframe>"
            dataset = load_like(cfg, data)
            self._frame_kind = "pandas" if type(data).__module__.startswith("pandas") else "polars"
        cfg.validate()
        out = out or tempfile.mkdtemp(prefix="nanorec-run-")
        run(cfg, out, overwrite=overwrite, quiet=quiet, dataset=dataset)
        self.config = cfg
        self._attach(out)
        return self

    @classmethod
    def tune(cls, data, space: str | None = None, trials: int = 20, out: str | None = None,
             user_col: str | None = None, item_col: str | None = None, time_col: str | None = None,
             *, filter: str | None = None, **config: Any) -> "Recommender":
        """An Optuna search (see `nanorec.tune`): every trial selects on validation,
        and the test split is scored once, for the winner. Returns the winner,
        loaded, with the study summary in `.study`. `config`: fixed keys for every trial."""
        from .data import load_like
        from .tune import DEFAULT_SPACE, tune

        base = cls(**config).config
        changes = {k: v for k, v in (("user_col", user_col), ("item_col", item_col),
                                     ("time_col", time_col), ("filter", filter)) if v is not None}
        base = dataclasses.replace(base, **changes, progress=False)
        if isinstance(data, (str, os.PathLike)):
            base.data, dataset = os.fspath(data), None
        else:
            base.data, dataset = "<dataframe>", load_like(base, data)
        out = out or tempfile.mkdtemp(prefix="nanorec-study-")
        summary = tune(base, out, space or DEFAULT_SPACE, trials, dataset=dataset, log=lambda *_: None)
        rec = cls.load(summary["best"]["run"])
        rec.study = summary
        if dataset is not None:
            rec._frame_kind = "pandas" if type(data).__module__.startswith("pandas") else "polars"
        return rec

    # -------------------------------------------------------------------------
    # recommending

    def recommend(self, users: Iterable | None = None, k: int = 10, exclude_seen: bool = True,
                  mode: str = "oneshot"):
        """Top-k lists for `users` (original ids; default: every user seen in fit).

        Returns a DataFrame (pandas if fit was given pandas, else polars) with one
        row per (user, rank): user_id, item_id, score, rank, source. source is
        "model", or "popularity" for a user the model cannot continue (unknown, or
        no known item), whose score is null: counts are not on the model's scale."""
        from .recommend import recommend_users

        self._require_fitted()
        self._check_k(k)
        users = self._user_ids if users is None else _as_array(users)
        items, scores, cold = recommend_users(self._scorer, self._num_items, self._user_ids,
                                              self._histories, users, k, exclude_seen, mode)
        return self._frame(users, items, scores, cold)

    def recommend_history(self, history: Iterable, k: int = 10, exclude_seen: bool = True, mode: str = "oneshot"):
        """Top-k for one raw history of original item ids, oldest first (unknown ids are skipped).
        Returns a DataFrame: item_id, score, rank, source ("popularity", with null scores, when
        no id of the history is known)."""
        import polars as pl

        from .recommend import item_lookup, list_for_history, popular_items

        self._require_fitted()
        self._check_k(k)
        if self._lookup is None:  # built once per loaded model, as the server does
            self._lookup = item_lookup(self._item_ids)
            self._popular = popular_items(self._histories, self._num_items, self._num_items)
        known, _ = self._lookup(history)
        items, scores, source = list_for_history(self._scorer, self._popular, known, k, exclude_seen, mode)
        scores = np.full(k, np.nan, np.float32) if scores is None else np.asarray(scores, np.float32)
        df = pl.DataFrame({"item_id": self._item_ids[items].tolist(), "score": scores,
                           "rank": np.arange(1, k + 1), "source": [source] * k}).with_columns(pl.col("score").fill_nan(None))
        return df.to_pandas() if self._frame_kind == "pandas" else df

    # -------------------------------------------------------------------------
    # files

    def save(self, path: str, overwrite: bool = False) -> str:
        """Copy the run folder to `path` (refused when `path` holds files, unless overwrite). Returns path."""
        self._require_fitted()
        if os.path.abspath(path) == os.path.abspath(self.run_dir):
            return path
        if os.path.exists(path) and not os.path.isdir(path):
            raise DataError(f"{path}: exists and is not a folder")
        if os.path.isdir(path) and os.listdir(path) and not overwrite:
            raise UsageError(f"{path}: the folder is not empty; pass overwrite=True to replace it")
        os.makedirs(path, exist_ok=True)
        from .files import atomic_write
        for name in rundir.RUN_FILES:
            src = os.path.join(self.run_dir, name)
            if os.path.isfile(src):
                atomic_write(os.path.join(path, name), lambda tmp, src=src: shutil.copyfile(src, tmp))
        return path

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> "Recommender":
        """A Recommender from a run folder written by `save`, `fit` or `nanorec train`."""
        rec = cls.__new__(cls)
        rec.run_dir, rec._frame_kind = None, "polars"
        rec.config = rundir.read_config(path)
        rec._attach(path, device)
        return rec

    @property
    def metrics(self) -> dict:
        from .data import read_json
        self._require_fitted()
        return read_json(os.path.join(self.run_dir, rundir.METRICS))

    # -------------------------------------------------------------------------
    # internals

    def _attach(self, run_dir: str, device: str = "cpu") -> None:
        from .devices import pick_device
        cfg, scorer, item_ids, num_items = rundir.load_scorer(run_dir, pick_device(device))
        self.config, self._scorer, self._item_ids, self._num_items = cfg, scorer, item_ids, num_items
        self._user_ids, self._histories = rundir.read_histories(run_dir)
        self._lookup = self._popular = None  # recommend_history's id lookup and popularity order, on first use
        self.run_dir = run_dir

    def _require_fitted(self) -> None:
        if self._scorer is None:
            raise UsageError("this Recommender is not fitted: call fit(data) or Recommender.load(path)")

    def _check_k(self, k) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self._num_items:
            raise UsageError(f"k={k!r}: expected an integer in 1..{self._num_items}")

    def _frame(self, users, items, scores, cold):
        import polars as pl
        k = items.shape[1]
        uid = np.repeat(users, k)
        df = pl.DataFrame({"user_id": uid.tolist() if uid.dtype == object else uid,
                           "item_id": self._item_ids[items].reshape(-1).tolist(),
                           "score": scores.reshape(-1), "rank": np.tile(np.arange(1, k + 1), len(users)),
                           "source": np.where(np.repeat(cold, k), "popularity", "model")})
        df = df.with_columns(pl.col("score").fill_nan(None))
        return df.to_pandas() if self._frame_kind == "pandas" else df

    def __repr__(self) -> str:
        state = f"run_dir={self.run_dir!r}" if self.run_dir else "not fitted"
        return f"Recommender(n_layer={self.config.n_layer}, n_embd={self.config.n_embd}, {state})"


def _as_array(users) -> np.ndarray:
    if hasattr(users, "to_numpy"):  # pandas / polars Series
        users = users.to_numpy()
    arr = np.asarray(list(users) if not isinstance(users, np.ndarray) else users)
    if arr.dtype.kind not in "iu":
        arr = arr.astype(object)
    return arr
