"""`nanorec serve`: an HTTP API for top-k recommendations from a trained run.

    nanorec serve --run RUN_DIR [--data PATH] [--host 127.0.0.1] [--port 8000]
                  [--max-history 10000] [--max-body-bytes 1000000] [--deny-items FILE]

    GET  /health                               {"status": "ok", "items": N, "users": U[, "deny_items": {...}]}
    GET  /openapi.json                         the API's schema (OpenAPI); no /docs page: FastAPI's
                                               loads from a CDN, blank offline
    GET  /users/{user_id}/recommendations?k=10[&exclude_seen=true|false][&items=ID&items=ID...][&exclude_items=ID...]
         the user's history (from --data, else the run's own), continued:
         {"user_id": ..., "known_user": bool, "items": [...], "scores": [...] | null, "source": ...}
    POST /recommendations                      {"history": [item ids, oldest first], "k": 10,
                                                "exclude_seen": true|false (optional), "items": [ids] (optional),
                                                "exclude_items": [ids] (optional),
                                                "event_types": [one per history item] (optional)}
         {"items": [...], "scores": [...] | null, "source": ..., "unknown_items": <count>}

Business filters: "items" (only these may be listed), "exclude_items" (never these) and the
server-wide --deny-items FILE (item ids, with or without a header, as `nanorec recommend
--deny-items` reads it) apply before the list is cut, to the popularity fallback too. The file is
re-read when its content changes (no restart; an emptied file brings every item back; a rewrite
keeping the old mtime is seen; write a new file and rename it over, as an in-place rewrite may be
read half-written); one that disappears or fails to load keeps the last good list, said once in
the log and in /health
("deny_items": {"problem": ...}). A list left with fewer than k items is returned shorter.

Ids are the original ones, matched by their exact text (nanorec/data/ids.py). Lists come from
the model ("source": "model", "scores": best first) by `nanorec recommend`'s scoring code; with
exclude_seen a list never holds a history item (so it may be shorter than k). exclude_seen left
out (or null): the run's own choice (auto: chosen on validation, nanorec/scoring/seen.py). A user
or history the model cannot use (unknown user, no known item) gets the most popular items with
"source": "popularity" and "scores": null (counts are not on the model's scale).

Every bad request is a 4xx with a one-line {"detail": ...}: malformed JSON or NaN/Infinity in
it, or a body shorter than its Content-Length (or not complete within 30 s) is 400; a body over
--max-body-bytes 413; a POST whose Content-Type is not JSON 415 (none at all is read as JSON);
wrong types (booleans or floats as ids or k, a string k), k outside 1..min(1000, items), a
history over --max-history, an unknown field, an empty "items" or a filter item the run does
not know is 422. Unknown ids are counted, never echoed back.

Event types (a run trained with target_filter, e.g. event_type=purchase): a user's history and
a POST's "event_types" (one per history item) mark which events are targets; exclude_seen
removes those, never an item only viewed. Without "event_types" every POST event is a target;
"event_types" for a run without target_filter, of another length than "history", or with a
value the run was not trained with is 422.
"""
# no `from __future__ import annotations`: FastAPI and pydantic read the live annotations

import asyncio
import hashlib
import json
import math
import os
import sys
import threading
import time

import numpy as np

from .. import __version__
from ..cli import command_parser
from ..core.devices import DEVICE_HELP, pick_device
from ..data import ids
from ..errors import NanorecError, UsageError, one_line
from ..runs.run import Run
from ..scoring import recommend
from ..scoring.recommend import RawHistories, blocked_items, histories_for, list_for_history, popular_items
from ..scoring.scorer import item_mask

MAX_K = 1000               # longest list one request may ask for (and never more than the items)
MAX_HISTORY = 10_000       # default --max-history
MAX_BODY_BYTES = 1_000_000  # default --max-body-bytes
BODY_SECONDS = 30.0        # a request body must arrive whole within this (a short body never holds a connection)
EXTRA_MISSING = "the serve command needs the serve extra: pip install 'nanorec[serve]'"


# -----------------------------------------------------------------------------
# request bodies: size cap, strict JSON, readable errors

class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is answered 413 before the app sees it (a declared
    Content-Length checked first, a chunked body counted as it arrives); a body not whole within
    `seconds` is answered 400 and the connection closed, never waited on forever."""

    def __init__(self, app, max_bytes: int, seconds: float = BODY_SECONDS):
        self.app, self.max_bytes, self.seconds = app, max_bytes, seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:  # uvicorn refuses these first; other servers may not
            await _refuse(send, 400, "invalid Content-Length header")
            return
        if declared > self.max_bytes:
            await _refuse(send, 413, self._too_large())
            return
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.seconds
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except asyncio.TimeoutError:
                declared_text = f" of the {declared:,} declared" if declared >= 0 else ""
                await _refuse(send, 400, f"request body incomplete: {size:,} bytes{declared_text} arrived "
                                         f"within {self.seconds:g} s")
                return
            if message["type"] != "http.request":  # the client went away mid-body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes"


def _content_length(scope) -> "int | None":
    """The declared body size; -1 when there is none (chunked or no body), None when unreadable."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return -1


def _replay(body: bytes, receive):
    """A receive() that hands the read body to the app once, then defers to the server's."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send, status: int, detail: str) -> None:
    """A JSON error answer from the middleware; the connection is closed (the body is unread)."""
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})


class BadJSON(ValueError):
    """A body that is not strict JSON (answered 400)."""


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (non-finite numbers are refused)")


def _finite_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):  # 1e999 parses to inf without passing through parse_constant
        raise ValueError(f"{text[:20]} is not a finite number")
    return x


def parse_json(body: bytes):
    """Strict JSON: NaN, Infinity (and 1e999, which Python turns into inf) are errors."""
    if not body.strip():
        raise BadJSON("empty body: expected a JSON object")
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadJSON("malformed JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, bad UTF-8, an int with too many digits, NaN/Infinity
        raise BadJSON(f"malformed JSON: {one_line(e)}") from None


def describe(errors: list, limit: int = 3) -> str:
    """Pydantic errors as one short line: where and what, never the input itself."""
    errors = _merge_id_errors(errors)
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'body'}: {e['msg']}" for e in errors[:limit]]
    more = len(errors) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _merge_id_errors(errors: list) -> list:
    """An item id that is neither an int nor a string fails both halves of the union
    (history.3.int and history.3.str): one error per id instead."""
    out, seen = [], set()
    for e in errors:
        loc = tuple(e["loc"])
        if len(loc) == 3 and loc[0] in ("history", "event_types") and loc[2] in ("int", "str"):
            if loc[:2] in seen:
                continue
            seen.add(loc[:2])
            e = {**e, "loc": loc[:2], "msg": f"{'an item id' if loc[0] == 'history' else 'an event type'} must be a "
                                            "JSON integer or string"}
        out.append(e)
    return out


def refuse_non_json(content_type: "str | None") -> None:
    """A body declared as something other than JSON is 415; no Content-Type is read as JSON."""
    from fastapi import HTTPException
    if content_type is None:
        return
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(415, f"Content-Type {media or '(empty)'}: expected application/json")


def request_model(max_k: int, max_history: int):
    """The POST body. Strict types: JSON true is not item 1, 5.0 is not k=5, "10" is not 10."""
    from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

    class HistoryRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")  # a typo ("K", "histroy") is an error, not a silent default
        history: list[StrictInt | StrictStr] = Field(default_factory=list, max_length=max_history,
                                                     description="original item ids, oldest first")
        k: StrictInt = Field(min(10, max_k), ge=1, le=max_k, description="length of the list")
        exclude_seen: StrictBool | None = Field(None, description="leave the history's items out of the list "
                                                "(null: the run's choice)")
        items: list[StrictInt | StrictStr] | None = Field(None, description="only these item ids may be listed")
        exclude_items: list[StrictInt | StrictStr] | None = Field(None, description="these item ids are never listed")
        event_types: list[StrictInt | StrictStr] | None = Field(
            None, max_length=max_history, description="each history event's type (the target_filter column's "
            "value, as long as history); only the matching events count as seen (null: every event)")

    return HistoryRequest


class DenyFile:
    """The server-wide deny list (--deny-items FILE), kept current by the file's content: each
    request compares the file's stat signature (inode, size, mtime, ctime: ctime changes on every
    write, so a same-size rewrite keeping the mtime is seen) and only when it differs reads and
    hashes it, parsing again when the hash differs. A signature younger than SETTLE_NS is not
    trusted (git's "racy" rule). The first load must succeed; a pipe is read once at start. Later
    a file that disappears or fails keeps the last good list, said once in the log and in
    /health (`state()`). current() -> (n,) internal indices of the denied items (None: no file)."""

    SETTLE_NS = 1_000_000_000  # older than any file system's timestamp tick

    def __init__(self, path: str | None, item_ids: np.ndarray, item_col: str,
                 log=lambda line: print(line, file=sys.stderr)):
        self.path, self.item_ids, self.item_col, self.log = path, item_ids, item_col, log
        self.rows = self.got = self.digest = self.problem = self.signature = None
        self.once = False  # a pipe: read at start only
        self.lock = threading.Lock()
        if path is not None:
            self.once = not os.path.isfile(path)
            signature = self._signature()
            self._parse(recommend.read_filter_bytes(path), signature)
            self.log(self.got.line("--deny-items") + (" (a pipe: read once, not reloaded)" if self.once else ""))

    def _signature(self):
        """(inode, size, mtime, ctime) when it can be trusted to change with the content, else None."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # the read says why, in the words of every filter file
        settled = time.time_ns() - st.st_ctime_ns >= self.SETTLE_NS
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) if settled else None

    def _parse(self, data: bytes, signature) -> None:
        self.got = recommend.read_filter_file(self.path, self.item_ids, self.item_col, "--deny-items", data)
        self.rows, self.digest, self.problem = self.got.rows, hashlib.sha256(data).digest(), None
        self.signature = signature

    def current(self):
        if self.path is None or self.once:
            return self.rows
        with self.lock:
            try:
                signature = self._signature()  # taken before the read: a write after it changes the next one
                if signature is not None and signature == self.signature and self.problem is None:
                    return self.rows
                data = recommend.read_filter_bytes(self.path)
                if hashlib.sha256(data).digest() == self.digest:
                    self.signature = signature
                    if self.problem is not None:
                        self.log(f"--deny-items {self.path}: readable again, unchanged ({len(self.rows):,} items denied)")
                        self.problem = None
                    return self.rows
                self._parse(data, signature)
                self.log(f"reloaded: {self.got.line('--deny-items')}")
            except (NanorecError, OSError) as e:  # any failure keeps the last good list, said once
                problem = one_line(e)
                if problem != self.problem:
                    self.log(f"--deny-items {self.path}: not reloaded ({problem}); keeping the last good list of "
                             f"{len(self.rows):,} items")
                    self.problem = problem
            return self.rows

    def state(self) -> "dict | None":
        """What /health says of the list: file, items denied, ids read, unknown, `problem` (or None)."""
        if self.path is None:
            return None
        self.current()
        return {"file": self.path, "denied": len(self.rows), "ids_read": self.got.read,
                "unknown": len(self.got.unknown), "problem": self.problem}


# -----------------------------------------------------------------------------
# the app

def create_app(run_dir: str, data_path: str | None = None, device: str = "cpu", max_history: int = MAX_HISTORY,
               max_body_bytes: int = MAX_BODY_BYTES, deny_items: str | None = None,
               body_seconds: float = BODY_SECONDS):
    from fastapi import Depends, FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import ValidationError


    run = Run.open(run_dir, device)
    scorer, item_ids, num_items = run.scorer, run.item_ids, run.num_items
    # the run's own histories, or --data's (a newer log: continued in the run's vocabulary)
    user_ids, hist, _ = histories_for(run, data_path, warn=lambda line: print(line, file=sys.stderr))
    users = ids.Index(user_ids)  # a path's user id is text: matched by the one id rule (ids.py)
    raw_history = RawHistories(run)  # a POST's history (and event types) in the run's vocabulary
    max_k = min(MAX_K, num_items)
    popular = popular_items(hist, num_items, num_items)  # all of them: filters may block the first ones
    HistoryRequest = request_model(max_k, max_history)
    deny_file = DenyFile(deny_items, item_ids, run.config.item_col)

    def blocked(allow, deny):
        """The request's filters and the server-wide deny list as one item mask (422 on bad ids)."""
        if allow is not None and len(allow) == 0:
            raise HTTPException(422, "items: empty; give at least one item id that may be listed (or leave it out)")
        server = deny_file.current()
        try:  # ids are checked by text, never echoed back: a count of the unknown ones
            mask = blocked_items(item_ids, None if allow is None else np.array(allow, dtype=object),
                                 np.array(deny, dtype=object) if deny else None, "items", "exclude_items")
        except NanorecError as e:
            raise HTTPException(422, str(e).split(" (e.g.")[0]) from None
        if server is not None:
            denied = item_mask(num_items, None, server)
            mask = denied if mask is None else mask | denied
        return mask

    def answer(history, k: int, exclude_seen: bool | None, mask=None) -> dict:
        exclude_seen = run.exclude_seen if exclude_seen is None else exclude_seen  # None: the run's choice
        items, scores, source = list_for_history(scorer, popular, history, k, exclude_seen, blocked=mask)
        return {"items": item_ids[np.asarray(items, dtype=np.int64)].tolist(),
                "scores": None if scores is None else scores.tolist(), "source": source}

    async def history_request(request: Request) -> HistoryRequest:
        """The body parsed strictly (BodyLimit has capped its size already)."""
        refuse_non_json(request.headers.get("content-type"))
        try:
            data = parse_json(await request.body())
        except BadJSON as e:
            raise HTTPException(400, str(e)) from None
        try:
            return HistoryRequest.model_validate(data)
        except ValidationError as e:
            raise HTTPException(422, describe(e.errors(include_url=False, include_input=False))) from None

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN (blank offline); the schema is /openapi.json
    app = FastAPI(title="nanorec", description="Next-item recommendations from a GPT over purchase histories.",
                  version=__version__, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, seconds=body_seconds)

    @app.exception_handler(RequestValidationError)
    async def short_validation_error(request, exc):
        # FastAPI's default answer echoes the input; the first loc entry ("query", "path") is noise here
        errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} for e in exc.errors()]
        return JSONResponse({"detail": describe(errors)}, status_code=422)

    @app.get("/health")
    def health():
        deny = deny_file.state()
        return {"status": "ok", "items": num_items, "users": len(user_ids),
                **({} if deny is None else {"deny_items": deny})}

    @app.get("/users/{user_id}/recommendations")
    def for_user(user_id: str, k: int = Query(min(10, max_k), ge=1, le=max_k), exclude_seen: bool | None = None,
                 items: list[str] | None = Query(None), exclude_items: list[str] | None = Query(None)):
        mask = blocked(items, exclude_items)
        r = int(users.rows(np.array([user_id]))[0])
        history = hist.take(np.array([r] if r >= 0 else [], np.int64))  # one row (none: unknown), with its flags
        return {"user_id": user_id, "known_user": r >= 0, **answer(history, k, exclude_seen, mask)}

    # the body is read by history_request, so its schema is given to the docs by hand
    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": HistoryRequest.model_json_schema()}}}}

    @app.post("/recommendations", openapi_extra=body_doc)
    def for_history(req: HistoryRequest = Depends(history_request)):
        mask = blocked(req.items, req.exclude_items)
        try:
            known, unknown = raw_history(req.history, req.event_types)
        except NanorecError as e:  # event_types the run cannot read: one line
            raise HTTPException(422, str(e)) from None
        return {**answer(known, req.k, req.exclude_seen, mask), "unknown_items": unknown}

    return app


# -----------------------------------------------------------------------------
# the command

def check_options(args) -> None:
    """Refuse bad option values as one line before anything is loaded."""
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected a port number in 1..65535")
    if not args.host.strip():
        raise UsageError("--host: empty; expected an address such as 127.0.0.1 or 0.0.0.0")
    if args.max_history < 1:
        raise UsageError(f"--max-history {args.max_history}: expected at least 1")
    if args.max_body_bytes < 1:
        raise UsageError(f"--max-body-bytes {args.max_body_bytes}: expected at least 1")


def import_uvicorn():
    """uvicorn, or a UsageError when the serve extra (fastapi, uvicorn) is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError(EXTRA_MISSING) from None
    return uvicorn


def main(argv) -> int:
    p = command_parser("serve", __doc__)
    p.add_argument("--run", required=True, help="run directory written by `nanorec train`")
    p.add_argument("--data", help="interactions whose user histories are served (default: the run's own histories)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="1..65535 (default 8000)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--max-history", type=int, default=MAX_HISTORY,
                   help=f"longest history a POST may send, in items (default {MAX_HISTORY:,})")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"largest request body, in bytes (default {MAX_BODY_BYTES:,})")
    p.add_argument("--deny-items", metavar="FILE",
                   help="items never listed, for every request: a CSV/Parquet of item ids, one a line with or "
                        "without a header (as `nanorec recommend --deny-items`); re-read when its content changes, "
                        "no restart (a file that disappears or fails to load keeps the last good list, said in the "
                        "log and in /health)")
    args = p.parse_args(argv)
    check_options(args)
    uvicorn = import_uvicorn()
    app = create_app(args.run, args.data, pick_device(args.device), args.max_history, args.max_body_bytes,
                     args.deny_items)
    uvicorn.run(app, host=args.host.strip(), port=args.port)
    return 0
