"""Frozen item content tables: read, write, align to the item vocabulary.

A content table is one vector per item made outside the model (SigLIP image features, sentence
embeddings, attribute vectors, any precomputed .npy or .parquet), added to the GPT's input as
``proj(content[item])``, the table frozen and the projection trained. On disk it is one
safetensors file (`save_table`)::

    vectors   (M, D) float32   one row per covered item
    item_ids  (M,)   int64     the ORIGINAL item id of each row (integer ids)
    metadata  {"id_type": "int" | "str", "item_ids": JSON list (string ids only), ...}

so it depends on no run's numbering: `align` maps it onto a vocabulary and reports coverage.
Items without content get a zero row and ``has_content == False``; the model gives them a
learned "missing" vector (random noise would look like real content to the projection).
"""
from __future__ import annotations

import ast
import json
import os

import numpy as np
import polars as pl
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ..data import read_json
from ..errors import DataError, one_line
from ..runs.files import atomic_write

# Id columns tried, in order, when a .parquet table does not name one.
ID_COLUMNS = ("item_id", "id", "parent_asin", "asin")


# -----------------------------------------------------------------------------
# ids

def normalize_ids(ids) -> np.ndarray:
    """Original item ids as int64 where they are integers (3.0 included), else str objects; strings
    are never parsed as numbers (an ASIN like '0123' keeps its leading zero)."""
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if len(arr) and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise DataError("item ids are non-integer numbers")
        return arr.astype(np.int64)
    if arr.dtype.kind == "b":
        raise DataError("item ids are booleans")
    return np.array([str(x) for x in arr.tolist()], dtype=object)


def _vocab_ids(item_ids: np.ndarray) -> np.ndarray:
    """A Dataset.item_ids array (slot 0 = padding) in the same normal form."""
    item_ids = np.asarray(item_ids)
    if item_ids.dtype.kind in "iu":
        return item_ids.astype(np.int64)
    return np.array(["" if x is None else str(x) for x in item_ids.tolist()], dtype=object)


# -----------------------------------------------------------------------------
# safetensors tables

def save_table(path: str, item_ids, vectors, metadata: dict | None = None) -> None:
    """Write a content table atomically; item_ids (M,), vectors (M, D). String ids (ASINs) go in the
    safetensors metadata as a JSON list (safetensors has no string tensors); ``metadata`` values
    are stored as strings (e.g. the model name)."""
    ids = normalize_ids(item_ids)
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(f"vectors {vectors.shape} do not match {len(ids)} item ids")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("duplicate item ids in a content table")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    tensors = {"vectors": vectors}
    if ids.dtype == object:
        meta["id_type"] = "str"
        meta["item_ids"] = json.dumps(ids.tolist())
    else:
        meta["id_type"] = "int"
        tensors["item_ids"] = ids
    # through the one atomic writer: readers (and a resumed run) never see half a table
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def table_metadata(path: str) -> dict:
    """The string metadata of a safetensors table (model name, source...), ids left out."""
    with safe_open(path, framework="np") as f:
        meta = dict(f.metadata() or {})
    meta.pop("item_ids", None)
    return meta


def _load_safetensors(path: str):
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if "vectors" not in keys:
                raise DataError(f"{path}: not a content table (no 'vectors' tensor; tensors are {sorted(keys)})")
            vectors = f.get_tensor("vectors")
            if meta.get("id_type") == "str":
                ids = np.array(json.loads(meta["item_ids"]), dtype=object)
            elif "item_ids" in keys:
                ids = f.get_tensor("item_ids")
            else:
                raise DataError(f"{path}: content table without item ids")
    except (SafetensorError, OSError) as e:
        raise DataError(f"{path}: cannot be read as safetensors ({e})") from None
    return ids, vectors


# -----------------------------------------------------------------------------
# precomputed tables: .npy / .npz / .parquet

def _sibling_ids(path: str):
    """Ids for a bare .npy of vectors: ``X.ids.npy`` or ``X.ids.txt`` beside ``X.npy``."""
    stem = path[:-4]
    npy, txt = stem + ".ids.npy", stem + ".ids.txt"
    if os.path.exists(npy):
        return np.load(npy, allow_pickle=False)
    if os.path.exists(txt):
        with open(txt, encoding="utf-8") as f:
            ids = [line.strip() for line in f if line.strip()]
        return ids if not all(is_int_string(x) for x in ids) else [int(x) for x in ids]
    raise DataError(f"{path}: a .npy table needs its item ids beside it, in {os.path.basename(npy)} "
                    f"or {os.path.basename(txt)} (one id a line, row i of the .npy = id i of the list)")


def is_int_string(x: str) -> bool:
    """True for a canonical integer ("17", "-3", "0"), not "0123" (int() would drop the zero)."""
    return x.lstrip("-").isdigit() and (x in ("0", "-0") or not x.lstrip("-").startswith("0"))


def _load_parquet(path: str, id_col: str | None, vector_col: str | None):
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"{path}: cannot be read as parquet ({one_line(e)})") from None
    if id_col is None:
        id_col = next((c for c in ID_COLUMNS if c in df.columns), None)
        if id_col is None:
            raise DataError(f"{path}: no id column (tried {', '.join(ID_COLUMNS)}; columns are {', '.join(df.columns)})")
    elif id_col not in df.columns:
        raise DataError(f"{path}: no column {id_col!r} (columns are {', '.join(df.columns)})")
    ids = df[id_col]
    if ids.null_count():
        raise DataError(f"{path}: column {id_col!r} has empty ids")
    ids = ids.to_numpy() if ids.dtype.is_numeric() else ids.cast(pl.Utf8).to_numpy().astype(object)
    rest = df.drop(id_col)
    list_cols = [c for c, t in zip(rest.columns, rest.dtypes) if isinstance(t, (pl.List, pl.Array))]
    if vector_col is not None or list_cols:
        col = vector_col or list_cols[0]
        if vector_col is None and len(list_cols) > 1:
            raise DataError(f"{path}: several list columns ({', '.join(list_cols)}); name one")
        if col not in rest.columns:
            raise DataError(f"{path}: no column {col!r}")
        rows = rest[col].to_list()
        lengths = {len(r) if r is not None else -1 for r in rows}
        if len(lengths) != 1 or -1 in lengths:
            raise DataError(f"{path}: column {col!r} has vectors of different lengths or empty rows")
        vectors = np.asarray(rows, dtype=np.float32)
    else:
        numeric = [c for c, t in zip(rest.columns, rest.dtypes) if t.is_numeric()]
        if not numeric:
            raise DataError(f"{path}: no vector columns besides {id_col!r}")
        vectors = rest.select(numeric).to_numpy().astype(np.float32)  # one column per dimension
    return ids, vectors


def load_table(path: str, id_col: str | None = None, vector_col: str | None = None):
    """Any content table -> ``(ids (M,), vectors (M, D) float32)``, ids int64 when integers, else str:
    ``.safetensors`` (`save_table`); ``.npy`` with ids in a sibling ``X.ids.npy`` or ``X.ids.txt``;
    ``.npz`` with arrays ``ids`` and ``vectors``; ``.parquet`` with an id column (``id_col``, else
    the first of ID_COLUMNS) and one list column (``vector_col``, else the only one) or one
    numeric column per dimension."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a table file")
    lower = path.lower()
    if lower.endswith(".safetensors"):
        ids, vectors = _load_safetensors(path)
    elif lower.endswith(".npy"):
        try:
            vectors = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: cannot be read as .npy ({e})") from None
        ids = _sibling_ids(path)
    elif lower.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if "ids" not in z or "vectors" not in z:
                raise DataError(f"{path}: an .npz table needs arrays 'ids' and 'vectors' (has {', '.join(z.files)})")
            ids, vectors = z["ids"], z["vectors"]
    elif lower.endswith((".parquet", ".pq")):
        ids, vectors = _load_parquet(path, id_col, vector_col)
    else:
        raise DataError(f"{path}: unknown table format (expected .safetensors, .npy, .npz or .parquet)")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise DataError(f"{path}: vectors must be 2-D (items, dim), got shape {vectors.shape}")
    try:
        ids = normalize_ids(ids)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    if len(ids) != len(vectors):
        raise DataError(f"{path}: {len(ids)} ids for {len(vectors)} vectors")
    if not np.all(np.isfinite(vectors)):
        bad = int(np.nonzero(~np.isfinite(vectors).all(1))[0][0])
        raise DataError(f"{path}: row {bad} (item {ids[bad]}) has NaN or infinite values")
    if len(set(ids.tolist())) != len(ids):
        raise DataError(f"{path}: duplicate item ids")
    return ids, vectors


# -----------------------------------------------------------------------------
# alignment to the vocabulary

def align(ids, vectors, item_ids):
    """Table rows at their items' internal indices: ids (M,), vectors (M, D), item_ids (N+1,) the
    vocabulary (slot 0 = padding, never matched) -> ``table (N+1, D)`` (zeros where no content),
    ``has_content (N+1,)`` and a report for `coverage_line`. Ids match as integers when both sides
    are, else as strings (a table keyed by "17" still finds item 17)."""
    ids = normalize_ids(ids)
    vocab = _vocab_ids(item_ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vocab) - 1
    if ids.dtype == object or vocab.dtype == object:
        keys, vkeys = [str(x) for x in ids.tolist()], [str(x) for x in vocab.tolist()]
    else:
        keys, vkeys = ids.tolist(), vocab.tolist()
    row_of = {k: r for r, k in enumerate(keys)}
    rows = np.array([row_of.get(k, -1) for k in vkeys[1:]], dtype=np.int64)
    hit = rows >= 0
    has_content = np.concatenate([[False], hit])  # (N+1,) slot 0 never
    table = np.zeros((n + 1, vectors.shape[1]), dtype=np.float32)
    table[has_content] = vectors[rows[hit]]
    covered = int(hit.sum())
    report = {
        "items": n,
        "covered": covered,
        "missing": n - covered,
        "coverage": covered / n if n else 0.0,
        "table_rows": len(ids),
        "unused_rows": len(ids) - covered,  # rows for items outside the vocabulary
        "dim": int(vectors.shape[1]),
        "missing_examples": [vkeys[1:][i] for i in np.nonzero(~hit)[0][:5].tolist()],
    }
    return table, has_content, report


def coverage_line(report: dict, name: str = "content") -> str:
    """One human line, e.g. 'images.safetensors: 11,950 of 12,101 items (98.8%) have content ...'."""
    line = (f"{name}: {report['covered']:,} of {report['items']:,} items ({100 * report['coverage']:.1f}%) "
            f"have content, {report['missing']:,} without (learned missing vector), dim {report['dim']}")
    if report.get("unused_rows"):
        line += f"; {report['unused_rows']:,} table rows are not in the vocabulary"
    if report.get("missing_examples") and report["missing"]:
        line += f"; e.g. without: {', '.join(map(str, report['missing_examples'][:3]))}"
    return line


def load_content(spec: str, item_ids, log=print):
    """The model's entry point: ``spec`` is the config value ``a.safetensors,b.npy`` -> one
    ``(table (N+1, D_i), has_content (N+1,))`` pair of tensors per file, in order; one coverage line
    each through ``log`` (None: silent). A table covering no item is an error (a wrong id space)."""
    out = []
    for path in [p.strip() for p in spec.split(",") if p.strip()]:
        ids, vectors = load_table(path)
        table, has_content, report = align(ids, vectors, item_ids)
        if report["covered"] == 0:
            raise DataError(f"{path}: none of its {len(ids):,} item ids is in the vocabulary "
                            f"(table ids look like {', '.join(map(str, ids[:3].tolist()))})")
        if log is not None:
            log(coverage_line(report, os.path.basename(path)))
        out.append((torch.from_numpy(table), torch.from_numpy(has_content)))
    return out


# -----------------------------------------------------------------------------
# item metadata (the challenge's item_metadata.csv and the like)

def parse_literal(text: str, default=None):
    """A metadata field's JSON or Python-literal value, else `default` (deep nesting, which makes
    both parsers raise, included)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError, MemoryError):
        pass
    try:
        return ast.literal_eval(text)  # a Python repr such as "['http://...']"
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return default


def read_metadata(path: str, key_col: str | None, key_candidates: tuple[str, ...]):
    """(frame, the item key column) from a .csv (every column as text)/.parquet/.jsonl metadata
    file; the key column is `key_col`, else the first of `key_candidates` present."""
    lower = path.lower()
    try:
        if lower.endswith((".parquet", ".pq")):
            df = pl.read_parquet(path)
        elif lower.endswith((".jsonl", ".ndjson")):
            df = pl.read_ndjson(path)
        else:
            df = pl.read_csv(path, infer_schema_length=0)  # everything as text: ids keep leading zeros
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(f"{path}: cannot be read ({one_line(e)})") from None
    if key_col is not None and key_col not in df.columns:
        raise DataError(f"{path}: no column {key_col!r} (--key-col; columns are {', '.join(df.columns)})")
    key_col = key_col or next((c for c in key_candidates if c in df.columns), None)
    if key_col is None:
        raise DataError(f"{path}: no item key column (tried {', '.join(key_candidates)}; "
                        f"columns are {', '.join(df.columns)})")
    return df, key_col


# -----------------------------------------------------------------------------
# attributes (S3-Rec *_item2attributes.json) -> dense vectors

def read_attributes(json_path: str) -> dict:
    """{original item id (str): [attribute id, ...]} with the input checked."""
    raw = read_json(json_path)
    if not isinstance(raw, dict):
        raise DataError(f"{json_path}: expected an object {{item id: [attribute ids]}}")
    for k, v in raw.items():
        if not isinstance(v, list) or not all(isinstance(a, (int, str)) for a in v):
            raise DataError(f"{json_path}: item {k!r}: expected a list of attribute ids, got {str(v)[:40]}")
    return {str(k): v for k, v in raw.items()}


def attribute_table(json_path: str, item_ids=None, dim: int = 64, seed: int = 0):
    """Dense attribute vectors: TF-IDF-weighted multi-hot, truncated SVD, unit rows, from
    ``{item id: [attribute ids]}``, for the items of `item_ids` (N+1,) (IDF measured on the catalogue
    the model ranks; None: every item of the file) -> ``(ids (M,), vectors (M, d) float32)`` for the
    items with an attribute; d = min(dim, rank). IDF: a rare attribute (a brand) says more than a
    common one; SVD merges co-occurring attributes so items sharing none still get a graded similarity."""
    import scipy.sparse as sp

    attrs = read_attributes(json_path)
    if item_ids is None:
        keys = list(attrs)
        ids = normalize_ids([int(k) for k in keys]) if all(is_int_string(k) for k in keys) else normalize_ids(keys)
    else:
        vocab = _vocab_ids(item_ids)[1:]
        mask = np.array([str(x) in attrs and len(attrs[str(x)]) > 0 for x in vocab.tolist()], dtype=bool)
        ids = vocab[mask]
        keys = [str(x) for x in ids.tolist()]
    keys_ids = [(k, i) for k, i in zip(keys, ids.tolist()) if attrs.get(k)]
    if not keys_ids:
        raise DataError(f"{json_path}: no item of the vocabulary has attributes")
    keys = [k for k, _ in keys_ids]
    ids = normalize_ids([i for _, i in keys_ids])
    vocab_attr = {a: j for j, a in enumerate(sorted({str(a) for k in keys for a in attrs[k]}))}
    pairs = [(r, vocab_attr[a]) for r, k in enumerate(keys) for a in {str(a) for a in attrs[k]}]  # a repeat: once
    rows, cols = [r for r, _ in pairs], [c for _, c in pairs]
    m, v = len(keys), len(vocab_attr)
    x = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(m, v))
    df = np.bincount(cols, minlength=v)
    idf = np.log((1 + m) / (1 + df)) + 1.0  # smoothed: an attribute every item has keeps weight 1
    x = x @ sp.diags(idf)
    x = sp.diags(1.0 / np.sqrt(x.multiply(x).sum(1).A1)) @ x  # unit rows: long attribute lists don't dominate
    vectors = _truncated_svd(x, dim, seed)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    return ids, vectors.astype(np.float32)


def _truncated_svd(x, dim: int, seed: int) -> np.ndarray:
    """Rows of x (M, V) on its top-k right singular vectors: (M, k) = X V_k. A small attribute
    vocabulary's come exactly from the (V, V) Gram matrix, a larger one's from sparse svds; signs
    fixed (each component's largest entry positive), so the table is reproducible."""
    from scipy.sparse.linalg import svds

    k = min(dim, min(x.shape))
    if x.shape[1] <= 4096:
        gram = (x.T @ x).toarray()                   # (V, V)
        evals, evecs = np.linalg.eigh(gram)          # ascending
        order = np.argsort(-evals)[:k]
        s2, vt = evals[order], evecs[:, order].T     # (k,), (k, V)
    else:
        k = min(k, min(x.shape) - 1)
        rng = np.random.default_rng(seed)
        _, s, vt = svds(x, k=k, v0=rng.standard_normal(min(x.shape)), random_state=seed)
        order = np.argsort(-s)
        s2, vt = s[order] ** 2, vt[order]
    keep = s2 > 1e-10 * max(s2.max(), 1e-30)        # drop null directions (rank < k)
    vt = vt[keep]
    sign = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    return np.asarray(x @ (vt.T * sign))             # (M, k)
