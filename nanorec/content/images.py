"""SigLIP image features for items, and the image sources they come from: `find_images(folder)`
(files named by item id or ASIN), `urls_from_metadata(csv)` (each item's first image URL),
`download_all(urls, cache)` (bounded, retried, a deadline per file; http(s) and public addresses
only, at every redirect; failures returned, not raised; no proxy: connections go straight to the
checked address) and `SiglipImageEncoder(model)` (L2-normalised features; a local model folder
works offline). `nanorec embed images` puts them together.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from ..core.devices import pick_device
from ..errors import DataError, one_line
from ..runs.files import write_file
from .tables import parse_literal, read_metadata

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
KEY_COLUMNS = ("item_id", "parent_asin", "asin")
URL_COLUMNS = ("image_urls", "images")
URL_KEYS = ("large", "hi_res", "thumb", "url")  # in an Amazon `images` entry: big enough, not huge
MAX_BYTES = 20 * 1024 * 1024                      # an item photo is far smaller; refuse runaway bodies
_URL_RE = re.compile(r"https?://[^\s'\"\],]+")


# -----------------------------------------------------------------------------
# image sources

def find_images(folder: str) -> dict[str, str]:
    """{file stem (item id or ASIN): path} of the image files in `folder`; the first sorted wins."""
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: " + ("is a file, expected a folder of images" if os.path.exists(folder)
                                         else "no such folder"))
    out = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTS and stem not in out:
            out[stem] = os.path.join(folder, name)
    return out


def first_url(field) -> str | None:
    """The first image URL in a metadata field: a JSON or Python list of URLs or of Amazon image
    dicts, or plain text; a field that cannot be parsed (even nested deeply) is searched as text."""
    text = "" if field is None else str(field).strip()
    if not text:
        return None
    m = _URL_RE.search(text)
    return _walk(parse_literal(text, text)) or (m.group(0) if m else None)


def _walk(obj):
    """The first http(s) URL in a parsed field, depth first; iterative, so no depth overflows."""
    stack = [obj]
    while stack:
        obj = stack.pop()
        if isinstance(obj, str):
            if obj.startswith(("http://", "https://")):
                return obj
        elif isinstance(obj, dict):
            stack.extend(reversed([obj[k] for k in URL_KEYS if obj.get(k)]))
        elif isinstance(obj, (list, tuple)):
            stack.extend(reversed(obj))
    return None


def urls_from_metadata(path: str, key_col: str | None = None) -> dict[str, str]:
    """{item key: first image URL} from an item metadata .csv/.parquet (key: `key_col`, else the
    first of KEY_COLUMNS; URLs: the first of URL_COLUMNS); items without a URL are left out."""
    df, key_col = read_metadata(path, key_col, KEY_COLUMNS)
    url_cols = [c for c in URL_COLUMNS if c in df.columns]
    if not url_cols:
        raise DataError(f"{path}: no image column (expected one of {', '.join(URL_COLUMNS)})")
    out = {}
    keys = df[key_col].cast(pl.Utf8).to_list()
    columns = [df[c].cast(pl.Utf8, strict=False).to_list() if df[c].dtype != pl.Utf8 else df[c].to_list()
               for c in url_cols]
    for i, key in enumerate(keys):
        url = next((url for url in (first_url(col[i]) for col in columns) if url), None) if key is not None else None
        if url:
            out[key] = url
    return out


# -----------------------------------------------------------------------------
# download cache
#
# The URLs come from metadata nobody here wrote: http(s) only at every hop, public addresses only
# (checked on the address connected to, so DNS cannot switch after the check), one wall-clock
# budget per attempt, and only complete bodies cached.

MAX_REDIRECTS = 5
REDIRECT_CODES = (301, 302, 303, 307, 308)
CHUNK = 64 * 1024
USER_AGENT = "nanorec (image embeddings)"


class DownloadError(Exception):
    """One URL could not be fetched; a `permanent` failure (404, a refused address) is not retried."""

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.permanent = permanent


def cache_file(cache_dir: str, url: str) -> str:
    """Where `url` is cached: a hash of the URL."""
    try:
        ext = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    except ValueError:  # "http://[::1" and such: fetch reports it, the name need not care
        ext = ""
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()[:24] + (ext if ext in IMAGE_EXTS else ".img"))


def is_public_address(ip: str) -> bool:
    """False for private, loopback, link-local (the cloud metadata service), multicast, reserved,
    unspecified and shared addresses, IPv4 and IPv6 (::ffff:10.0.0.1 included)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified):
        return False
    return addr.is_global


class _Deadline:
    """One wall-clock budget for a whole attempt (DNS, connect, TLS, redirects, headers, body): a
    socket timeout bounds each read, not the download, so every step gets what is left, and a
    timer shuts the socket down when it runs out (waking http.client mid-headers too)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._sock = None
        self._lock = threading.Lock()
        self.fired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; DownloadError once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.error()
        return left

    def expired(self) -> bool:
        # `fired`: the timer may shut the socket a hair before the clock reads `end`
        return self.fired or time.monotonic() >= self.end

    def error(self) -> DownloadError:
        return DownloadError(f"timed out after {self.seconds:g}s")

    def watch(self, sock) -> None:
        """The socket to shut down when time runs out."""
        with self._lock:
            self._sock = sock
        if self.expired():
            self._expire()

    def _expire(self) -> None:
        self.fired = True
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:  # the plain socket's shutdown: it interrupts a TLS read too, without touching TLS state
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _resolve(host: str, port: int, deadline: _Deadline) -> list:
    """getaddrinfo within the deadline, in a daemon thread abandoned if it takes too long."""
    box = {}

    def lookup():
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            box["error"] = e

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(deadline.left())
    if thread.is_alive():
        raise deadline.error()
    if "error" in box:
        raise DownloadError(f"cannot resolve {host} ({box['error']})")
    return box["infos"]


def _addresses(host: str, port: int, deadline: _Deadline, allow_private: bool) -> list:
    """[(family, sockaddr)] to try for host:port, non-public ones left out unless `allow_private`."""
    allowed, refused = [], []
    for family, _, _, _, sockaddr in _resolve(host, port, deadline):
        ok = allow_private or is_public_address(sockaddr[0])
        (allowed if ok else refused).append((family, sockaddr))
    if not allowed:
        ip = refused[0][1][0] if refused else "no address"
        shown = ip if ip == host else f"{host} resolves to {ip}, which"
        raise DownloadError(f"refused: {shown} is not a public address "
                            "(private, loopback, link-local or reserved; --allow-private-hosts allows it)",
                            permanent=True)
    return allowed


def _connect(host: str, port: int, https: bool, deadline: _Deadline, allow_private: bool):
    """A connected (and for https, TLS-verified) socket to one checked address of host."""
    last = None
    for family, sockaddr in _addresses(host, port, deadline, allow_private):
        timeout = deadline.left()
        sock = socket.socket(family, socket.SOCK_STREAM)
        deadline.watch(sock)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as e:  # this address is down: try the next one, as create_connection does
            sock.close()
            last = e
            continue
        if not https:
            return sock
        tls = ssl.create_default_context().wrap_socket(sock, server_hostname=host,
                                                        do_handshake_on_connect=False)
        deadline.watch(tls)  # the handshake is watched too
        try:
            tls.settimeout(deadline.left())
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        return tls
    raise last


def _target(url: str, hop: int):
    """(https?, host, port, request target) of an http(s) URL; anything else is refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:  # an unclosed [IPv6 literal, a port out of range
        raise DownloadError(f"bad URL {url!r} ({e})", permanent=True) from None
    if parts.scheme not in ("http", "https"):
        what = "not an http(s) URL" if hop == 0 else f"redirect to a {parts.scheme or 'relative'}: URL refused"
        raise DownloadError(f"{what} (only http and https)", permanent=True)
    if not parts.hostname:
        raise DownloadError(f"no host in {url}", permanent=True)
    # percent-encode what http.client would refuse (spaces, non-ASCII); keep existing escapes
    path = urllib.parse.quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return parts.scheme == "https", parts.hostname, port, path


def _content_length(resp):
    """The declared body length, or None (absent, or chunked: then it does not apply)."""
    value = resp.getheader("Content-Length")
    if value is None or resp.chunked:
        return None
    if not value.strip().isdigit():
        raise DownloadError(f"bad Content-Length {value!r}")
    return int(value)


def _read_body(resp, sock, deadline: _Deadline) -> bytes:
    """The whole body, within the deadline and MAX_BYTES, exactly as long as declared."""
    declared = _content_length(resp)
    if declared is not None and declared > MAX_BYTES:
        raise DownloadError(f"larger than {MAX_BYTES >> 20} MiB", permanent=True)
    if declared is not None and resp.will_close:
        # read to the connection's end, so a body longer than its Content-Length is seen, not cut
        resp.length = None
    chunks, total = [], 0
    while True:
        sock.settimeout(deadline.left())  # the time left for the whole download, not a fresh timeout
        chunk = resp.read1(CHUNK)        # returns after one socket read: the deadline is checked between reads
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_BYTES:
            raise DownloadError(f"larger than {MAX_BYTES >> 20} MiB", permanent=True)
        chunks.append(chunk)
    if declared is not None and total != declared:
        raise DownloadError(f"body is {total} bytes, Content-Length says {declared}")
    return b"".join(chunks)


def _get(url: str, deadline: _Deadline, allow_private: bool) -> bytes:
    """GET `url`, following up to MAX_REDIRECTS redirects, each hop checked anew."""
    for hop in range(MAX_REDIRECTS + 1):
        https, host, port, path = _target(url, hop)
        sock = _connect(host, port, https, deadline, allow_private)
        cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = cls(host, port)
        conn.sock = sock  # already connected to the checked address: http.client must not resolve again
        try:
            sock.settimeout(deadline.left())
            conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Connection": "close",
                                               "Accept": "image/*, */*;q=0.5"})
            resp = conn.getresponse()
            if resp.status in REDIRECT_CODES:
                location = resp.getheader("Location")
                if not location:
                    raise DownloadError(f"HTTP {resp.status} without a Location", permanent=True)
                url = urllib.parse.urljoin(url, location.strip())
                continue
            if resp.status != 200:
                transient = resp.status >= 500 or resp.status in (408, 429)  # 404, 403...: will not change
                raise DownloadError(f"HTTP {resp.status}", permanent=not transient)
            return _read_body(resp, sock, deadline)
        finally:
            conn.close()
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects", permanent=True)


def fetch(url: str, dest: str, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
          allow_private: bool = False) -> str:
    """Download `url` to `dest` (atomically) unless it is there; DownloadError when it fails.
    `timeout`: one attempt's wall-clock limit, redirects and body included. Timeouts, connection
    errors, short bodies, 5xx, 408 and 429 are retried with backoff; the rest fail at once."""
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
    if os.path.exists(dest):
        return dest
    last = DownloadError("unknown error")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        deadline = _Deadline(timeout)
        try:
            data = _get(url, deadline, allow_private)
        except DownloadError as e:  # a short body may be short because the deadline cut it
            last = deadline.error() if deadline.expired() and not e.permanent else e
        except (OSError, http.client.HTTPException) as e:
            if deadline.expired():  # whatever broke (a reset, a short read) broke because time ran out
                last = deadline.error()
            else:  # a certificate that fails verification will fail again: not retried
                last = DownloadError(f"{type(e).__name__}: {e}",
                                     permanent=isinstance(e, ssl.SSLCertVerificationError))
        else:
            write_file(dest, lambda f: f.write(data))
            return dest
        finally:
            deadline.cancel()
        if last.permanent:
            break
    raise last


def _prepare_cache(cache_dir: str) -> None:
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise DataError(f"{cache_dir}: is a file, expected a folder for the download cache")
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as e:
        raise DataError(f"{cache_dir}: cannot create the download cache ({e.strerror or e})") from None
    if not os.access(cache_dir, os.W_OK):
        raise DataError(f"{cache_dir}: download cache folder is not writable")


def download_all(urls: dict, cache_dir: str, workers: int = 8, timeout: float = 10.0,
                 retries: int = 2, progress: bool = True, allow_private: bool = False) -> tuple[dict, dict]:
    """Fetch {key: url} into `cache_dir`, at most `workers` at a time -> ({key: local path},
    {key: "url: reason"} of the failures); `allow_private`: private addresses allowed."""
    _prepare_cache(cache_dir)
    paths, failures = {}, {}
    if not urls:
        return paths, failures
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(fetch, url, cache_file(cache_dir, url), timeout, retries,
                               allow_private=allow_private): key
                   for key, url in urls.items()}
        try:
            for fut in tqdm(as_completed(futures), total=len(futures), desc="download", unit="img",
                            disable=None if progress else True):
                key = futures[fut]
                try:
                    paths[key] = fut.result()
                except DownloadError as e:
                    failures[key] = f"{urls[key]}: {e}"
        except BaseException:
            # a cache that cannot be written (DataError) fails them all: stop, don't wait for each
            for fut in futures:
                fut.cancel()
            raise
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


class SiglipImageEncoder:
    """Frozen SigLIP (or any transformers model with image features): ``encode(images)``, a list of
    B PIL images -> (B, D) float32, unit rows."""

    def __init__(self, model: str, device: str = "auto"):
        from transformers import AutoImageProcessor, AutoModel

        local = os.path.isdir(model)
        try:
            # The image half of AutoProcessor: SigLIP's full processor also wants a
            # tokenizer, which an image-only model folder need not have.
            self.processor = AutoImageProcessor.from_pretrained(model, local_files_only=local)
            self.model = AutoModel.from_pretrained(model, local_files_only=local)
        except (OSError, ValueError) as e:
            hint = "" if local else " (offline? pass a local model folder made with save_pretrained)"
            raise DataError(f"cannot load image model {model!r}: {one_line(e)}{hint}") from None
        self.device = pick_device(device)
        self.model = self.model.eval().to(self.device)
        self.name = model

    def encode(self, images) -> np.ndarray:
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
    """Encode [(item id, image path), ...] in batches, decoding in a thread pool (PIL releases the
    GIL) -> (ids, vectors (M, D) float32, {id: path} of the unreadable files). ``on_batch(ids,
    chunks)`` after every batch: the ids and (b, D) arrays so far (for checkpoints)."""
    ids, chunks, unreadable = [], [], {}
    bar = tqdm(total=len(items), desc="embed", unit="img", disable=None if progress else True)
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
