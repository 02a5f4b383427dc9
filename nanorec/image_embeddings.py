"""SigLIP image features for items, and the image sources they come from.

- `find_images(folder)`: files named by item id or ASIN (``B00ABC.jpg``, ``17.png``).
- `urls_from_metadata(csv)`: the first image URL of each item of the challenge's
  ``item_metadata.csv`` (``image_urls`` or ``images`` column).
- `download_all(urls, cache)`: fetch them into a local cache, a bounded number
  at a time, with timeouts and retries; failures are returned, not raised.
- `SiglipImageEncoder(model)`: Hugging Face AutoModel + AutoImageProcessor, image
  features, L2-normalised, on CUDA when present. A local model folder works
  offline (nothing is fetched from the hub when the folder exists).

`nanorec embed images` (nanorec/embed.py) puts these together.
"""
from __future__ import annotations

import ast
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

from .data import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
KEY_COLUMNS = ("item_id", "parent_asin", "asin")
URL_COLUMNS = ("image_urls", "images")
URL_KEYS = ("large", "hi_res", "thumb", "url")  # in an Amazon `images` entry: big enough, not huge
MAX_BYTES = 20 * 1024 * 1024                      # an item photo is far smaller; refuse runaway bodies
_URL_RE = re.compile(r"https?://[^\s'\"\],]+")


# -----------------------------------------------------------------------------
# image sources

def find_images(folder: str) -> dict[str, str]:
    """{file stem: path} of the image files directly in `folder` (stems are the
    item ids or ASINs). When one stem has several files, the first in sorted order wins."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: no such folder")
    out = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTS and stem not in out:
            out[stem] = os.path.join(folder, name)
    return out


def first_url(field) -> str | None:
    """The first image URL in a metadata field: a JSON or Python list of URLs, a
    list of Amazon image dicts ({"thumb", "large", "hi_res", ...}), or plain text."""
    if field is None:
        return None
    text = str(field).strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        try:
            obj = ast.literal_eval(text)  # a Python repr such as "['http://...']"
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            obj = text
    url = _walk(obj)
    if url is None:
        m = _URL_RE.search(text)
        url = m.group(0) if m else None
    return url


def _walk(obj):
    if isinstance(obj, str):
        return obj if obj.startswith(("http://", "https://")) else None
    if isinstance(obj, dict):
        for k in URL_KEYS:
            if obj.get(k):
                found = _walk(obj[k])
                if found:
                    return found
        return None
    if isinstance(obj, (list, tuple)):
        for x in obj:
            found = _walk(x)
            if found:
                return found
    return None


def urls_from_metadata(path: str, key_col: str | None = None) -> dict[str, str]:
    """{item key: first image URL} from an item metadata .csv/.parquet.
    The key column is ``key_col``, else the first of item_id, parent_asin, asin;
    URLs come from ``image_urls``, else ``images``. Items without a URL are left out."""
    import polars as pl

    from .content import read_metadata
    df, key_col = read_metadata(path, key_col, KEY_COLUMNS)
    url_cols = [c for c in URL_COLUMNS if c in df.columns]
    if not url_cols:
        raise DataError(f"{path}: no image column (expected one of {', '.join(URL_COLUMNS)})")
    out = {}
    keys = df[key_col].cast(pl.Utf8).to_list()
    columns = [df[c].cast(pl.Utf8, strict=False).to_list() if df[c].dtype != pl.Utf8 else df[c].to_list()
               for c in url_cols]
    for i, key in enumerate(keys):
        if key is None:
            continue
        for col in columns:
            url = first_url(col[i])
            if url:
                out[key] = url
                break
    return out


# -----------------------------------------------------------------------------
# download cache

class DownloadError(Exception):
    pass


def cache_file(cache_dir: str, url: str) -> str:
    """Where `url` is cached: a hash of the URL (safe, fixed-length file names)."""
    ext = os.path.splitext(urllib.parse.urlparse(url).path)[1].lower()
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()[:24] + (ext if ext in IMAGE_EXTS else ".img"))


def fetch(url: str, dest: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5) -> str:
    """Download `url` to `dest` (atomically) unless it is already there.
    Retries timeouts, connection errors, 5xx, 408 and 429 with exponential
    backoff; other 4xx (404...) are permanent and fail at once."""
    if os.path.exists(dest):
        return dest
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DownloadError("not an http(s) URL")  # no file:// or ftp:// from untrusted metadata
    last = "unknown error"
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "nanorec (image embeddings)"})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise DownloadError(f"larger than {MAX_BYTES >> 20} MiB")
            tmp = f"{dest}.{os.getpid()}.{id(data)}.part"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
            return dest
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
            if 400 <= e.code < 500 and e.code not in (408, 429):
                break
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
    raise DownloadError(last)


def download_all(urls: dict, cache_dir: str, workers: int = 8, timeout: float = 10.0,
                 retries: int = 2, progress: bool = True) -> tuple[dict, dict]:
    """Fetch {key: url} into `cache_dir`, at most `workers` at a time.
    Returns ({key: local path}, {key: "url: reason"} for the failures)."""
    from tqdm import tqdm

    os.makedirs(cache_dir, exist_ok=True)
    paths, failures = {}, {}
    if not urls:
        return paths, failures
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fetch, url, cache_file(cache_dir, url), timeout, retries): key
                   for key, url in urls.items()}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="download", unit="img",
                        disable=not progress):
            key = futures[fut]
            try:
                paths[key] = fut.result()
            except (DownloadError, OSError) as e:
                failures[key] = f"{urls[key]}: {e}"
    return paths, failures


# -----------------------------------------------------------------------------
# decoding and encoding

def load_image(path: str):
    """An RGB PIL image, or None when the file is not a readable image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decode fully here, so a truncated file fails here and not inside a batch
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def resolve_device(device: str = "auto") -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


class SiglipImageEncoder:
    """Frozen SigLIP (or any transformers model with image features).

    ``encode(images)``: a list of B PIL images -> (B, D) float32, unit rows.
    """

    def __init__(self, model: str, device: str = "auto"):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        local = os.path.isdir(model)
        try:
            # The image half of AutoProcessor: SigLIP's full processor also wants a
            # tokenizer, which an image-only model folder need not have.
            self.processor = AutoImageProcessor.from_pretrained(model, local_files_only=local)
            self.model = AutoModel.from_pretrained(model, local_files_only=local)
        except (OSError, ValueError) as e:
            hint = "" if local else " (offline? pass a local model folder made with save_pretrained)"
            raise DataError(f"cannot load image model {model!r}: {str(e).splitlines()[0]}{hint}") from None
        self.device = resolve_device(device)
        self.model = self.model.eval().to(self.device)
        self.name = model
        self._torch = torch

    def encode(self, images) -> np.ndarray:
        torch = self._torch
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=pixels)
            else:  # a bare vision tower (SiglipVisionModel)
                out = self.model(pixel_values=pixels)
            # transformers 4 returns the pooled tensor, 5 a BaseModelOutputWithPooling
            feats = out if isinstance(out, torch.Tensor) else out.pooler_output  # (B, D)
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()


def embed_files(encoder, items: list, batch_size: int = 32, progress: bool = True,
                on_batch=None, workers: int = 4) -> tuple[list, np.ndarray, dict]:
    """Encode [(item id, image path), ...] in batches.

    Images are decoded by a small thread pool (PIL releases the GIL while
    decoding) so the model is not left waiting on the disk.
    ``on_batch(ids, chunks)`` is called after every batch with the ids and the
    list of (b, D) arrays encoded so far (for checkpoints).
    Returns (ids, vectors (M, D) float32, {id: path} of the unreadable files).
    """
    from tqdm import tqdm

    ids, chunks, unreadable = [], [], {}
    bar = tqdm(total=len(items), desc="embed", unit="img", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            images = list(pool.map(load_image, [p for _, p in batch]))
            good = [(item, im) for (item, _), im in zip(batch, images) if im is not None]
            for (item, path), im in zip(batch, images):
                if im is None:
                    unreadable[item] = path
            if good:
                chunks.append(encoder.encode([im for _, im in good]))
                ids.extend(item for item, _ in good)
            bar.update(len(batch))
            if on_batch is not None and good:
                on_batch(ids, chunks)
    bar.close()
    dim = chunks[0].shape[1] if chunks else 0
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)
    return ids, vectors, unreadable
