"""The run directory: the names of the files a training run writes, their checked reads and
their writes. File I/O only: opening a run for scoring (building the model, the fused scorer,
a baseline) is run.py's `Run.open`.

    config.json        the resolved Config (every key; unknown keys are refused on load)
    items.json         internal index -> original item id (index 0 = padding, null)
    histories.parquet  every user's history (user_id, item index) in order: what recommend and
                       serve continue when no --data is given
    data.json          fingerprint of the training data (users, items, interactions, a hash) and
                       items_sha256, the hash of items.json's ids: `--resume`, evaluate and
                       recommend refuse data that does not match; Run.open refuses an edited items.json
    transitions.safetensors, cooccurrence.safetensors, fusion.json
                       fusion on (fusion.py): the two item-to-item tables and the terms' weights
    baseline.safetensors  a baseline's fitted arrays (method=popularity|transitions|cooccurrence|svd), instead of weights
    model.safetensors  the selected weights (best validation NDCG@10; the last ones without selection)
    ckpt.pt            the latest resumable state (plain tensors and strings: weights_only-loadable)
    metrics.json       {"valid": {...}, "test": {...}, "best_step": ..., "history": [...], ...}
    history.jsonl      one JSON line per validation pass (step, losses, metrics, seconds)
    test_ranks.npy     (M,) rank of each test user's target (1..20; 21 = below the top 20), for breakdowns
    train.log          what was printed

Nothing here unpickles: weights are safetensors, checkpoints load with weights_only=True.
Every file is written through `files.atomic_write`, except history.jsonl and train.log,
which are appended to (a torn last line of history.jsonl is skipped by `read_history`).
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .config import Config
from .errors import DataError, UsageError
from .files import atomic_write, write_json

CONFIG, ITEMS, DATA, WEIGHTS = "config.json", "items.json", "data.json", "model.safetensors"
BASELINE = "baseline.safetensors"
TRANSITIONS, COOCCURRENCE, FUSION = "transitions.safetensors", "cooccurrence.safetensors", "fusion.json"
FUSION_FILES = {"transitions": TRANSITIONS, "cooccurrence": COOCCURRENCE}  # the fusion tables -> file
HISTORIES = "histories.parquet"
CKPT, METRICS, HISTORY, TEST_RANKS, LOG = "ckpt.pt", "metrics.json", "history.jsonl", "test_ranks.npy", "train.log"
RUN_FILES = (CONFIG, ITEMS, DATA, HISTORIES, WEIGHTS, BASELINE, TRANSITIONS, COOCCURRENCE, FUSION, CKPT, METRICS, HISTORY, TEST_RANKS, LOG, "curves.png")

# Keys a resumed run may change: they steer how long and how visibly it goes
# on, not what is being trained. Changing any other key would continue a
# different model from this one's weights (or fail to load them).
RESUMABLE_KEYS = ("max_steps", "patience", "eval_interval", "checkpoint_interval", "eval_batch_size",
                  "progress", "threads", "device", "compile", "fusion_weights")


# -----------------------------------------------------------------------------
# checks: nothing on disk changes here

def check_out_dir(out: str, resume: bool, overwrite: bool) -> None:
    """A fresh run needs an empty (or absent) folder unless overwrite; a resume needs a checkpoint."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DataError(f"{out}: exists and is not a folder")
    if resume and overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: choose one")
    if resume:
        if not os.path.exists(os.path.join(out, CKPT)):
            raise DataError(f"{out}: nothing to resume (no {CKPT})")
        return
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise UsageError(f"{out}: the folder is not empty (it holds {', '.join(sorted(os.listdir(out))[:3])}...); "
                         f"use --overwrite to replace its run, --resume to continue it, or another --out")
    ours = [name for name in RUN_FILES if os.path.isfile(os.path.join(out, name))]
    if overwrite and ours:  # start_run deletes these names: only a nanorec run's (a model folder has a config.json too)
        try:
            read_config(out)
        except DataError as e:
            raise DataError(f"{out}: --overwrite replaces a nanorec run, and this folder's {CONFIG} is not one's "
                            f"({e}); choose another --out, or remove {', '.join(ours[:3])} yourself") from None
    ancestor = os.path.abspath(out)  # the folder will be created: its first existing ancestor must be a folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise DataError(f"{out}: cannot create the run folder ({ancestor} is a file)")


def resume_config(out: str, overrides_cfg: Config) -> None:
    """Refuse a resume whose config differs from the saved one in a key that shapes the model."""
    saved = read_config(out)
    for key in saved.to_dict():
        if key in RESUMABLE_KEYS or key == "data":
            continue
        if getattr(saved, key) != getattr(overrides_cfg, key):
            raise UsageError(f"{key}={getattr(overrides_cfg, key)!r}: cannot change on --resume "
                             f"(the run in {out} was trained with {key}={getattr(saved, key)!r}); "
                             f"changeable: {', '.join(RESUMABLE_KEYS)}")


def fingerprint(ds) -> dict:
    """What identifies a training data set: sizes and a hash of the vocabulary and every history."""
    h = hashlib.sha256()
    h.update(json.dumps([_plain(x) for x in ds.item_ids[1:].tolist()]).encode())
    h.update(np.ascontiguousarray(ds.sequences.offsets, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(ds.sequences.items, dtype=np.int64).tobytes())
    return {"users": int(len(ds.user_ids)), "items": int(ds.num_items),
            "interactions": int(len(ds.sequences.items)), "sha256": h.hexdigest(),
            "items_sha256": items_digest(ds.item_ids)}


def items_digest(item_ids: np.ndarray) -> str:
    """sha256 of the vocabulary's original ids (N+1,) as items.json holds them (slot 0 skipped):
    recorded in data.json at training, checked by Run.open (an edited items.json is refused)."""
    body = [_plain(x) for x in np.asarray(item_ids)[1:].tolist()]
    return hashlib.sha256(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def check_same_data(run_dir: str, fp: dict, data_path: str) -> None:
    """The data given now must be the data the run was trained on."""
    saved = read_fingerprint(run_dir)
    if saved is None or all(saved[k] == fp[k] for k in saved.keys() & fp.keys()):  # a key older runs lack is skipped
        return
    diffs = [f"{k} {saved[k]:,} vs {fp[k]:,}" for k in ("users", "items", "interactions") if saved.get(k) != fp.get(k)]
    what = "; ".join(diffs) if diffs else "same sizes, different contents"
    raise DataError(f"{data_path}: not the data the run in {run_dir} was trained on ({what})")


def check_same_vocabulary(run_dir: str, item_ids: np.ndarray, data_path: str) -> None:
    """Scoring needs the run's item vocabulary, not necessarily its exact training data."""
    run_items = read_items(run_dir)
    same = len(run_items) == len(item_ids) and all(str(a) == str(b) for a, b in zip(run_items[1:], item_ids[1:]))
    if not same:
        raise DataError(f"{data_path}: its item vocabulary ({len(item_ids) - 1:,} items) differs from the run's "
                        f"{ITEMS} ({len(run_items) - 1:,} items); use the data the run was trained on")


# -----------------------------------------------------------------------------
# writing (rank 0, after every check has passed)

def start_run(out: str, cfg: Config, ds, fp: dict, resume: bool) -> None:
    """Create the folder; a fresh run removes an older run's files (the caller checked
    --overwrite), then writes config, items, histories and the data fingerprint."""
    item_ids = ds.item_ids
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise DataError(f"{out}: cannot create the run folder ({e.strerror})") from None
    if not resume:
        for name in RUN_FILES:
            path = os.path.join(out, name)
            if os.path.isfile(path):
                os.remove(path)
    cfg.save(os.path.join(out, CONFIG))
    write_json(os.path.join(out, ITEMS), [None] + [_plain(x) for x in item_ids[1:].tolist()], indent=None)
    write_json(os.path.join(out, DATA), fp)
    if not resume or not os.path.exists(os.path.join(out, HISTORIES)):
        save_histories(os.path.join(out, HISTORIES), ds.user_ids, ds.sequences)


def save_histories(path: str, user_ids: np.ndarray, seqs) -> None:
    """Long format, one row per event in order: user_id (original), item (internal index)."""
    import polars as pl
    users = np.repeat(np.asarray(user_ids), seqs.lengths)
    df = pl.DataFrame({"user_id": users.tolist() if users.dtype == object else users, "item": seqs.items})
    atomic_write(path, df.write_parquet)


def read_histories(run_dir: str, num_items: int | None = None):
    """(user_ids (U,), Sequences) from histories.parquet, users in first-appearance order.
    num_items: the run's vocabulary size; every item index must be in 1..num_items."""
    import polars as pl
    from .data import Sequences
    path = os.path.join(run_dir, HISTORIES)
    if not os.path.exists(path):
        raise DataError(f"{run_dir}: no {HISTORIES} (a run from an older nanorec): pass --data")
    try:
        df = pl.read_parquet(path)
    except Exception as e:  # polars raises several unrelated types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({first_line(e)})") from None
    if df.columns != ["user_id", "item"] or not df["item"].dtype.is_integer():
        raise DataError(f"{path}: expected columns user_id, item (an integer item index)")
    if df["user_id"].null_count() or df["item"].null_count():
        raise DataError(f"{path}: a missing user_id or item")
    if num_items is not None and df.height and not 1 <= df["item"].min() <= df["item"].max() <= num_items:
        bad = df["item"].filter((df["item"] < 1) | (df["item"] > num_items))[0]
        raise DataError(f"{path}: item index {bad} outside the run's 1..{num_items:,} ({ITEMS}); "
                        f"the file was edited: restore it, or pass --data")
    users = df["user_id"].to_numpy()
    if users.dtype.kind not in "iu":
        users = users.astype(object)
    change = np.ones(len(users), dtype=bool)
    change[1:] = users[1:] != users[:-1]
    starts = np.nonzero(change)[0]
    offsets = np.append(starts, len(users)).astype(np.int64)
    return users[starts], Sequences(offsets, df["item"].to_numpy().astype(np.int64))


def save_weights(model, path: str) -> None:
    from safetensors.torch import save_file
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


def save_checkpoint(state: dict, path: str) -> None:
    import torch
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def save_array(path: str, arr: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, arr)
    atomic_write(path, write)


def append_history(out: str, record: dict) -> None:
    """One line per validation pass; appended (a torn last line is skipped by readers)."""
    with open(os.path.join(out, HISTORY), "a") as f:
        f.write(json.dumps(record) + "\n")


def rewrite_history(out: str, records: list) -> None:
    """history.jsonl as of a checkpoint (a resumed run drops passes made after it)."""
    from .files import write_text
    write_text(os.path.join(out, HISTORY), "".join(json.dumps(r) + "\n" for r in records))


# -----------------------------------------------------------------------------
# reading: every failure is a DataError naming the file

def read_config(run_dir: str) -> Config:
    """config.json, checked: every key of Config must be there (a key missing is a DataError
    naming it, never today's default), except config.LEGACY's, which runs written before
    they existed lack (they take the value those runs actually used)."""
    import dataclasses

    from .config import LEGACY
    from .data import read_json
    require_folder(run_dir)
    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        raise DataError(f"{run_dir}: not a run folder ({CONFIG} is missing)")
    saved = read_json(path)
    if isinstance(saved, dict):
        missing = [f.name for f in dataclasses.fields(Config) if f.name not in saved and f.name not in LEGACY]
        if missing:
            raise DataError(f"{path}: config key {missing[0]!r} is missing"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                            + "; restore the file, or train the run again")
    return Config.load(path)


def read_items(run_dir: str) -> np.ndarray:
    """items.json: position i = original id of internal index i (position 0 = null, padding)."""
    from .data import read_json
    path = os.path.join(run_dir, ITEMS)
    ids = read_json(path)
    if not isinstance(ids, list) or len(ids) < 2 or ids[0] is not None:
        raise DataError(f"{path}: expected a JSON list [null, item id, ...]")
    body = ids[1:]
    if all(isinstance(x, int) and not isinstance(x, bool) for x in body):
        out = np.empty(len(ids), dtype=np.int64)
        out[0] = -1
    elif all(isinstance(x, str) for x in body):
        out = np.empty(len(ids), dtype=object)
        out[0] = ""
    else:
        raise DataError(f"{path}: item ids must be all integers or all strings")
    out[1:] = body
    if len(set(body)) != len(body):
        raise DataError(f"{path}: an item id appears twice")
    return out


def read_fingerprint(run_dir: str) -> dict | None:
    from .data import read_json
    path = os.path.join(run_dir, DATA)
    if not os.path.exists(path):
        return None  # a run written before fingerprints existed
    fp = read_json(path)
    if not isinstance(fp, dict) or not {"users", "items", "interactions", "sha256"} <= set(fp):
        raise DataError(f"{path}: not a data fingerprint")
    return fp


def read_metrics(run_dir: str) -> dict:
    """metrics.json of a finished run (a DataError naming the file when absent or broken)."""
    from .data import read_json
    path = os.path.join(run_dir, METRICS)
    m = read_json(path)
    if not isinstance(m, dict):
        raise DataError(f"{path}: expected a JSON object of metrics")
    return m


def read_history(run_dir: str) -> list[dict]:
    """history.jsonl: one record per validation pass, in order; a torn last line (a run
    killed while appending) is skipped. [] when the run has made no pass yet."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return []
    records = []
    with open(path) as f:
        lines = [x for x in f.read().split("\n") if x.strip()]
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # the torn last line
            raise DataError(f"{path}:{i + 1}: not a JSON record") from None
    return records


def read_test_ranks(run_dir: str) -> np.ndarray:
    """test_ranks.npy: (M,) rank of each test user's target (1..20; 21 = below the top 20)."""
    path = os.path.join(run_dir, TEST_RANKS)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (the run did not score its test split)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy file ({first_line(e)})") from None


def load_weights(model, path: str) -> None:
    """Load safetensors weights into `model`, or a DataError naming the file."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (has the run finished a validation pass?)")
    _load_state(model, _read_safetensors(path), path)


def check_weights(path: str, state: dict) -> None:
    """--resume keeps the selected weights until a better validation replaces them:
    they must be readable and fit the checkpoint's model (absent: no validation yet)."""
    if not os.path.exists(path):
        return
    shapes = lambda d: {k: tuple(v.shape) for k, v in d.items()}  # noqa: E731
    if shapes(_read_safetensors(path)) != shapes(state):
        raise DataError(f"{path}: the weights do not fit the model of {CKPT}; "
                        f"start again with --overwrite, or restore the file")


def _read_safetensors(path: str) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - any failure to parse the file means it is damaged
        raise DataError(f"{path}: not a readable safetensors file ({first_line(e)})") from None


def load_checkpoint(path: str, device: str = "cpu") -> dict:
    import pickle

    import torch
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file can fail anywhere in the (weights-only) unpickler
        # (seen: RuntimeError, EOFError, UnpicklingError, BadZipFile, IndexError "pop from empty list")
        reason = "not a weights-only torch file" if isinstance(e, pickle.UnpicklingError) else first_line(e)
        raise DataError(f"{path}: not a readable checkpoint ({reason}); "
                        f"start again with --overwrite, or restore the file") from None
    need = {"model", "optimizer", "state", "config", "rng_cpu"}
    if not isinstance(ck, dict) or not need <= set(ck):
        raise DataError(f"{path}: not a nanorec checkpoint (missing {sorted(need - set(ck or {}))[:3]})")
    return ck


def _load_state(module, state: dict, path: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(f"{path}: weights do not fit the model of {CONFIG} ({first_line(e)})") from None


def load_state(module, state: dict, path: str) -> None:
    """module.load_state_dict(state), or a DataError naming the file whose state it is."""
    _load_state(module, state, path)


def save_fusion(out: str, tables: list, weights: tuple) -> None:
    """The fitted tables (transitions, cooccurrence) and the weights of fusion.SIGNALS,
    as {"transitions_weight": 0.2, "cooccurrence_weight": 0.3, "content_weight": 0.0}."""
    from .fusion import SIGNALS
    for name, table in zip(FUSION_FILES, tables):
        save_baseline(table, os.path.join(out, FUSION_FILES[name]))
    write_json(os.path.join(out, FUSION), {f"{name}_weight": w for name, w in zip(SIGNALS, weights)})


def read_fusion(run_dir: str) -> tuple[float, ...]:
    """The weights of fusion.json in fusion.SIGNALS order; a signal the file does not name
    (a run from before it existed) has weight 0."""
    from .data import read_json
    from .fusion import SIGNALS
    path = os.path.join(run_dir, FUSION)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (the run did not finish its fusion step)")
    d = read_json(path)
    weights = []
    for name in SIGNALS:
        w = d.get(f"{name}_weight", 0.0 if name != SIGNALS[0] else None) if isinstance(d, dict) else None
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 100:
            raise DataError(f"{path}: expected {{\"transitions_weight\": a number in 0..100, "
                            f"\"cooccurrence_weight\": ..., \"content_weight\": ...}}; {name}_weight is {w!r}")
        weights.append(float(w))
    return tuple(weights)


def save_baseline(model, path: str) -> None:
    from safetensors.numpy import save_file
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state().items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp))


def read_baseline(path: str, method: str) -> dict:
    """A baseline's fitted arrays (baseline.safetensors, or a fusion table) as {name: array};
    run.load_baseline rebuilds the model from them."""
    from safetensors.numpy import load_file
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file (the {method} run did not finish)")
    try:
        return load_file(path)
    except Exception as e:  # noqa: BLE001 - any failure to parse the file means it is damaged
        raise DataError(f"{path}: not a readable {method} model ({first_line(e)})") from None


def require_folder(run_dir: str) -> None:
    """A DataError unless run_dir is an existing folder."""
    if not os.path.isdir(run_dir):
        what = "not a run folder (a file)" if os.path.exists(run_dir) else "no such run folder"
        raise DataError(f"{run_dir}: {what}")


def _plain(x):
    return x.item() if hasattr(x, "item") else x


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
