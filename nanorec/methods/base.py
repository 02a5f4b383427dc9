"""The one interface of every method (fit / scorer / save / load; the registry: methods/__init__.py).

A model class has fit(train, num_items, valid) -> itself, score(histories, users) -> (B, N+1),
state() -> {name: array} and from_state(state); `nanorec train method=NAME` fits it into a run
folder (baseline.safetensors in place of the GPT's weights) that every command opens alike.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
from safetensors.numpy import load_file

from ..data import Sequences
from ..errors import DataError, one_line
from ..runs import rundir
from ..runs.files import final_path


class Method:
    """One method: how it is fitted, scored, saved into a run folder and loaded back. trains: by
    train.py's loop (the GPT), else fitted in one call; takes_weights: uses per-event weights."""
    trains = False

    def __init__(self, name: str, model, takes_weights: bool = False):
        self.name, self.model, self.takes_weights = name, model, takes_weights

    def fit(self, train: Sequences, num_items: int, valid=None, **settings):
        """A fitted model: settings go to the model's constructor; valid selects its own settings."""
        return self.model(**settings).fit(train, num_items, valid)

    def scorer(self, model):
        return model.score

    def save(self, model, run_dir: str) -> None:
        rundir.save_baseline(model, os.path.join(run_dir, rundir.BASELINE))

    def load(self, path: str, num_items: int):
        """The fitted model saved at `path`, checked to score exactly num_items items."""
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file (the {self.name} run did not finish)")
        try:
            model = self.model.from_state(load_file(path))
            one = Sequences(np.array([0, 1], np.int64), np.array([1], np.int64))
            width = len(model.score(one, np.zeros(1, np.int64))[0])
        except Exception as e:  # noqa: BLE001 - a file that does not parse or rebuild the model is damaged
            raise DataError(f"{path}: not a readable {self.name} model ({one_line(e)})") from None
        if width != num_items + 1:
            raise DataError(f"{path}: scores {width - 1} items, but {rundir.ITEMS} has {num_items}")
        return model

    def open(self, run_dir: str, cfg, item_ids: np.ndarray, device: str = "cpu"):
        """(model, the scorer the run ships) of the run folder (Run.open)."""
        model = self.load(os.path.join(run_dir, rundir.BASELINE), len(item_ids) - 1)
        return model, self.scorer(model)

    def fit_run(self, folder, cfg, ds, sp, fp, score_test: bool, logger) -> dict:
        """Fit, score and write the run folder train.run's RunFolder started; logger(path) -> the log."""
        out_dir = folder.start(cfg, ds, fp)
        log = logger(os.path.join(out_dir, rundir.LOG))
        for line in folder.notes:
            log(line)
        t0 = time.time()
        model = self.fit(sp.train, ds.num_items, sp.valid)
        self.save(model, out_dir)
        train_seconds = time.time() - t0
        selection = getattr(model, "selection", None)
        entries = {"method": cfg.method, "holdout": cfg.holdout,
                   "selection": {str(k): v for k, v in selection.items()} if selection else "none (no hyper-parameters)",
                   "train_seconds": round(train_seconds, 2), "history": []}
        from ..evaluation.report import scored  # cycle: report -> beside -> methods
        results = scored(model.score, ds, sp if score_test else dataclasses.replace(sp, test=None), cfg, out_dir,
                         log, {}, lambda exclude_seen: entries, cfg.method)
        log(f"wrote {final_path(out_dir)}/{rundir.BASELINE}, {rundir.METRICS} ({train_seconds:.1f} s fitting)")
        folder.commit()
        return results
