"""`nanorec inspect`: one static HTML page to look at a run's lists before trusting them.

    nanorec inspect --run RUN --out page.html [--data LOG] [--items catalog.csv] [--users u1,u2]
                    [--sample N] [--k 10]

For a sample of users (and any asked for): the history beside the top-k list the run ships (the
saved histories continued, the user's own items excluded; with --data the log's, as `nanorec
recommend --data` continues them), each item's score and, for a fused GPT run, the terms of its
score (GPT logit, weighted transitions, co-occurrence and content) and which one lifted it most
(its value minus its median over the catalogue), with a legend of those columns.

Each history event shows its event type and time when --data gives them (an event-typed run's
own histories keep only which events are targets). Marked: a listed item the user only viewed
(a context event, which target_filter keeps listable), an item the last `nanorec update` added,
and in a --data history an item the run does not know. With --items (a CSV with item_id and any
of title, image_url and other columns such as category or price) every item shows its title,
image and the other columns. A search box filters the users as you type (also page.html#find=ID).
Then the run's metrics (the baselines beside it), its fusion weights and curves.png.

The page needs no server and nothing from the network: CSS and script inline, curves.png
embedded; the only images are the catalogue's own URLs.
"""
from __future__ import annotations

import base64
import html
import os
import sys
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from ..cli import command_parser
from ..data import load, load_like, show_time
from ..data.columns import as_where
from ..data.ids import rows as id_rows
from ..data.readers import EVENT_LOG_SUFFIXES, data_set_name, read_s3rec, read_stream_table, table_events
from ..data.tables import is_stream, read_frame
from ..errors import DataError, UsageError, one_line
from ..runs import rundir
from ..runs.files import check_writable_folder, is_stdout, out_path, write_text
from ..runs.run import Run, fusion_terms
from ..scoring.fusion import BatchTerms
from ..scoring.recommend import histories_for
from ..scoring.scorer import SEEN_SCORE, top_k

TERMS = ("GPT logit", "transitions", "co-occurrence", "content")
LEGEND = {  # the page's columns: the history's event, the list's score and terms (TERMS order)
    "score": "what the list is ranked by: the sum of the term columns (comparable within one user's list only)",
    "GPT logit": "the model's own score for the item after this history",
    "transitions": "weight x log of how often the item followed the user's last items in training",
    "co-occurrence": "weight x log of how often the item was bought within a few events of them",
    "content": "weight x cosine of the item's content vector and the last item's",
    "event": "the event's type in the log (green: a target, what the run predicts; grey: context, e.g. a view); "
             "without --data only which events are targets",
    "lifted most by": "the term that put the item furthest above a typical item (its value minus its median "
                      "over the catalogue)",
}
MARKS = {
    "viewed": "in the user's history as a context event (e.g. a view or a cart), not bought: a run with "
              "target_filter excludes only the bought items, so a viewed one may be listed",
    "new": "added to the catalogue by the last nanorec update",
    "not in the run": "an item of the --data log the run does not know (it cannot be listed)",
}
MARK_CLASS = {"viewed": "viewed", "new": "new", "not in the run": "unknown"}  # their CSS classes
HISTORY_SHOWN = 20  # the last events of a history on the page
EXTRA_COLUMNS = 8   # a catalogue's other columns shown per item, at most


# -----------------------------------------------------------------------------
# inputs: the catalogue, the users, the events

@dataclass
class Entry:
    """A catalogue row: its title, image URL and other columns (name, value), all as written."""
    title: str
    image: str
    extra: list


def read_catalogue(path: str) -> dict:
    """item_id (as text) -> Entry, from a CSV with item_id and any of title, image_url and others."""
    if not os.path.isfile(path):
        what = "not a file" if os.path.exists(path) else "no such file"
        raise DataError(f"{path}: {what} (--items: a CSV with item_id[,title][,image_url][,...])")
    try:
        df = pl.read_csv(path, infer_schema_length=0)  # every column as text: ids keep their exact spelling
    except Exception as e:  # noqa: BLE001 - polars raises several types for an unreadable file
        raise DataError(f"{path}: not a readable CSV ({one_line(e)})") from None
    if "item_id" not in df.columns or df.width < 2:
        raise DataError(f"{path}: expected item_id and at least one more column (e.g. title, image_url, "
                        f"category, price); its columns are {', '.join(df.columns)}")
    others = [c for c in df.columns if c not in ("item_id", "title", "image_url")][:EXTRA_COLUMNS]
    text = {c: df[c].fill_null("").to_list() if c in df.columns else [""] * df.height
            for c in ("title", "image_url", *others)}
    return {i: Entry(text["title"][r], text["image_url"][r], [(c, text[c][r]) for c in others if text[c][r]])
            for r, i in enumerate(df["item_id"].to_list()) if i is not None}


def check_catalogue(catalogue: dict, item_ids: np.ndarray, path: str) -> int:
    """How many of the run's items the catalogue has (by exact id text); none: a DataError."""
    found = sum(str(i) in catalogue for i in item_ids[1:].tolist())
    if not found:
        theirs = next(iter(catalogue), None)
        raise DataError(f"{path}: none of its {len(catalogue):,} item ids is an item of the run (the run's are "
                        f"e.g. {item_ids[1]!r}" + (f", the file's e.g. {theirs!r}" if theirs is not None else "")
                        + "); ids match by their exact text")
    return found


def choose_users(user_ids: np.ndarray, lengths: np.ndarray, asked: list[str], sample: int, seed: int,
                 where: str = "the run's histories") -> np.ndarray:
    """Rows of the asked users (original ids, as text), then a seeded sample of others with a
    history; `where` holds the users (said when an asked one is not there)."""
    text = [str(u) for u in user_ids.tolist()]
    row_of = {u: r for r, u in enumerate(text)}
    rows = []
    for u in asked:
        if u not in row_of:
            raise DataError(f"--users: user {u!r} is not in {where} (e.g. {', '.join(text[:3])})")
        rows.append(row_of[u])
    pool = np.setdiff1d(np.nonzero(lengths > 0)[0], rows)
    if sample and len(pool):
        rows += sorted(np.random.default_rng(seed).choice(pool, size=min(sample, len(pool)), replace=False).tolist())
    return np.array(rows, dtype=np.int64)


@dataclass
class Events:
    """What the page knows of each shown user's history (row b: the b-th user of the page), oldest first."""
    items: list        # (L,) original item ids
    index: list        # (L,) the run's item index, 0 for an item the run does not know
    targets: list      # (L,) bool, a target event (bought); None: every event is one
    types: list        # (L,) event type text; None: not known
    times: list        # (L,) time text; None: not known
    source: str        # where the histories, types and times come from (said on the page)


def target_label(cfg) -> str:
    """What a target event is, for a run whose event types are not known: target_filter's values."""
    return "/".join(v.strip() for v in cfg.target_filter.partition("=")[2].split(",")) or "target"


def run_events(run, rows: np.ndarray) -> Events:
    """The run's own histories: items, times where the folder keeps them, target flags (no types)."""
    seqs, flags = run.histories, run.histories.is_target()
    times, unit = rundir.read_history_times(run.run_dir)
    show, note = time_texts(times, unit) if times is not None else (None, "")
    cut = [slice(seqs.offsets[r], seqs.offsets[r + 1]) for r in rows]
    said = ("times from the run folder" + note if show else "no times") \
        + (f"; target events ({target_label(run.config)}) marked" if flags is not None else "")
    return Events([run.item_ids[seqs.items[c]] for c in cut], [seqs.items[c] for c in cut],
                  [None if flags is None else flags[c] for c in cut], [None] * len(rows),
                  [None if show is None else [show(t) for t in times[c].tolist()] for c in cut],
                  f"the run's saved histories ({said}; pass --data LOG for each event's type)")


def event_column(cfg, ds) -> str | None:
    """The log's event type column: target_filter's, filter's, or an unused column event_type."""
    for key in (cfg.target_filter, cfg.filter):
        if key:
            return key.partition("=")[0].strip()
    return "event_type" if "event_type" in ds.ignored_columns else None


def read_log(cfg, path: str):
    """The --data log read ONCE (a pipe is read only once, a big log parsed once) -> (its Dataset,
    the same events with the event type column read as items or None, what the page says of the
    types). A table file or stream is parsed to one frame; a folder or S3-Rec file by `load_like`."""
    df = None
    if is_stream(path):
        kind, df, where, data = read_stream_table(path)
        if df is None and kind == ".txt":
            return read_s3rec(path, data), None, None
        if df is None:
            raise DataError(f"{path}: a pipe or FIFO whose first bytes are not a table (CSV with a header, TSV, "
                            "Parquet, gzip of either) or S3-Rec lines; save it to a file with its suffix")
    elif os.path.isfile(path) and path.lower().endswith(EVENT_LOG_SUFFIXES):
        df, where = read_frame(path), as_where(path)
    if df is None:
        ds = load_like(cfg, path, need_targets=False)
        read_types = lambda col: load(path, cfg.user_col, col, cfg.time_col, filter=cfg.filter or None,  # noqa: E731
                                      time_format=cfg.time_format or None)
    else:
        name = data_set_name(path)
        ds = table_events(df, where, name, cfg.user_col, cfg.item_col, cfg.time_col, cfg.filter or None,
                     cfg.weight_col or None, cfg.time_format or None, cfg.target_filter or None, need_targets=False)
        read_types = lambda col: table_events(df, where, name, cfg.user_col, col, cfg.time_col,  # noqa: E731
                                         cfg.filter or None, None, cfg.time_format or None)
    col = event_column(cfg, ds)
    if not col:
        return ds, None, "no event type column"
    try:
        return ds, read_types(col), f"event types from column {col!r}"
    except DataError as e:  # e.g. an empty type in a row: the page goes on without types, and says why
        return ds, None, f"no event types ({e})"


def data_events(run, data_path: str, rows: np.ndarray, ds, typed, said_types: str) -> Events:
    """The --data log's histories of the shown users, each event with its type and time where known."""
    cfg = run.config
    seqs, flags = ds.sequences, ds.sequences.is_target()
    known = np.concatenate([[0], id_rows(run.item_ids[1:], ds.item_ids[1:]) + 1])  # data index -> run index (0: unknown)
    # the type column read as the item column of the same rows: the reader orders them the same way
    types = typed.item_ids[typed.sequences.items].astype(str) if typed is not None else None
    cut = [slice(seqs.offsets[r], seqs.offsets[r + 1]) for r in rows]
    show, note = time_texts(ds.times, ds.time_unit) if ds.times is not None else (None, "")
    times = [None if show is None else [show(t) for t in ds.times[c].tolist()] for c in cut]
    said = [said_types, f"times from column {cfg.time_col!r}{note}" if show is not None else "no times"]
    return Events([ds.item_ids[seqs.items[c]] for c in cut], [known[seqs.items[c]] for c in cut],
                  [None if flags is None else flags[c] for c in cut],
                  [None if types is None else types[c] for c in cut], times,
                  f"{data_path} (--data): {', '.join(said)}")


def time_texts(times: np.ndarray, unit: str | None) -> tuple:
    """-> (show(value) -> text, a note on how the times are read): plain numbers all in the range
    of Unix seconds or milliseconds (2001-2096) are shown as dates (the log does not say its unit)."""
    scale = None
    if unit is None and len(times) and np.asarray(times).dtype.kind in "iuf":
        lo, hi = float(np.min(times)), float(np.max(times))
        scale = next((s for s in (1000, 1) if 1e9 <= lo / s and hi / s < 4e9), None)
    note = {1: " (numbers, read as Unix seconds)", 1000: " (numbers, read as Unix milliseconds)"}.get(scale, "")

    def show(value) -> str:
        text = show_time(int(value * 1000 // scale), "ms") if scale else show_time(value, unit)
        text = text.split(".")[0] if scale or unit else text  # no fractions of a second
        return text[:-9] if text.endswith(" 00:00:00") else text
    return show, note


def viewed_items(ev: Events, b: int) -> dict:
    """The run's items user b saw only as context events -> e.g. "view x3, cart" ({}: all targets)."""
    if ev.targets[b] is None:
        return {}
    bought = set(ev.index[b][ev.targets[b]].tolist())
    seen: dict = {}
    for j in np.nonzero(~ev.targets[b])[0].tolist():
        i = int(ev.index[b][j])
        if i and i not in bought:
            kind = str(ev.types[b][j]) if ev.types[b] is not None else "context event"
            seen.setdefault(i, {}).setdefault(kind, 0)
            seen[i][kind] += 1
    return {i: ", ".join(k + (f" x{n}" if n > 1 else "") for k, n in kinds.items()) for i, kinds in seen.items()}


def new_item_count(metrics: dict, num_items: int, path: str) -> int:
    """How many items the last `nanorec update` added (the run's last indices); 0 for no update."""
    record = metrics.get("update")
    if record is None:
        return 0
    n = record.get("new_items") if isinstance(record, dict) else None
    if type(n) is not int or not 0 <= n <= num_items:
        raise DataError(f"{path}: \"update\" -> \"new_items\" is {n!r}, expected a count of items 0..{num_items:,}")
    return n


# -----------------------------------------------------------------------------
# the fused terms

def term_table(parts, histories, users, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Each listed item's fused-score terms -> (terms (B, k, 4): GPT logit, w1 log transitions,
    w2 log co-occurrence, w3 content cosine; lift (B, k, 4): each term minus its median over the
    catalogue; the terms in use). A dense pass per term: cheap for a page's handful of users."""
    gpt, tables, content, weights = parts
    bt = BatchTerms(gpt, tables, content, histories, users)
    B = len(lists)
    dense = [bt.gpt.dense().double().cpu()]  # (B, V) each
    for i, w in enumerate(weights[:2]):
        term = bt.table(i) if w else None
        dense.append(w * term.dense().double().cpu() if term is not None else None)
    dense.append(weights[2] * bt.content.dense().double().cpu() if weights[2] and bt.content is not None else None)
    rows, idx = torch.arange(B)[:, None], torch.from_numpy(lists)
    terms, lift = np.zeros(lists.shape + (4,)), np.zeros(lists.shape + (4,))
    for t, d in enumerate(dense):
        if d is None:
            continue
        terms[..., t] = d[rows, idx].numpy()
        lift[..., t] = terms[..., t] - d[:, 1:].median(dim=1).values.numpy()[:, None]  # item 0 is padding
    return terms, lift, [t for t, d in enumerate(dense) if d is not None]


def lifted_by(lift: np.ndarray, used: list[int]) -> list[list[str]]:
    """Per listed item, the term that put it furthest above a typical item (the largest lift)."""
    best = np.array(used)[lift[..., used].argmax(-1)]
    return [[TERMS[t] for t in row] for row in best]


# -----------------------------------------------------------------------------
# the page

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} h3{margin:0 0 8px} .muted{color:#777}
.user{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 16px;margin:14px 0}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.5fr);gap:18px}
table{border-collapse:collapse;width:100%} td,th{padding:3px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
th{font-weight:600;background:#f3f3f3} .num{text-align:right;font-variant-numeric:tabular-nums;width:1%}
td.when{white-space:nowrap;font-size:12px;color:#555}
img.thumb{width:40px;height:40px;flex:none;object-fit:cover;border-radius:4px;background:#eee}
.it{display:flex;gap:8px;align-items:center}
.tag{display:inline-block;padding:0 6px;border-radius:10px;background:#e6f0ff;font-size:12px;white-space:nowrap}
.tag.gpt{background:#eee} .tag.ctx{background:#f1f1f1;color:#555} .tag.buy{background:#d9f2dd;color:#17612a}
.tag.viewed{background:#fff0d6;color:#8a5300} .tag.new{background:#dff3ff;color:#035b8c}
.tag.unknown{background:#fde2e2;color:#8c1d1d} .attrs{font-size:12px;color:#555} .attrs b{white-space:nowrap}
.metrics td{font-size:13px} dl.legend{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:13px;margin:6px 0}
dl.legend dt{font-weight:600} dl.legend dd{margin:0;color:#444}
#find{font:inherit;padding:4px 8px;width:260px;border:1px solid #bbb;border-radius:6px}
"""

# The search box: show the users whose id contains what is typed (or #find=ID in the address).
SCRIPT = """
(function () {
  var box = document.getElementById('find'), said = document.getElementById('found');
  var users = document.querySelectorAll('.user');
  function show() {
    var q = box.value.trim().toLowerCase(), n = 0;
    users.forEach(function (u) {
      var hit = !q || u.getAttribute('data-user').toLowerCase().indexOf(q) >= 0;
      u.hidden = !hit;
      if (hit) n++;
    });
    said.textContent = q ? n + ' of ' + users.length + ' users' : '';
  }
  var m = /[#&]find=([^&]*)/.exec(location.hash);
  if (m) box.value = decodeURIComponent(m[1]);
  box.addEventListener('input', show);
  show();
})();
"""


def _tag(text: str, cls: str = "", title: str = "") -> str:
    return (f"<span class='tag {cls}'" + (f" title='{html.escape(title)}'" if title else "")
            + f">{html.escape(text)}</span>")


def _short(text: str, most: int = 32) -> str:
    """A catalogue value short enough for a table cell (the whole value is the cell's tooltip)."""
    return text if len(text) <= most else text[:most - 1] + "\u2026"


def _item_cell(item_id, catalogue: dict, marks: str = "") -> str:
    """An item as the page shows it: image, title (id), the catalogue's other columns, marks."""
    esc = html.escape
    entry = catalogue.get(str(item_id))
    if entry is None:
        return f"{esc(str(item_id))} {marks}".strip()
    img = f'<img class="thumb" src="{esc(entry.image)}" alt="">' if entry.image and \
        not entry.image.lower().startswith("javascript:") else ""
    name = esc(entry.title or str(item_id)) + ("" if str(item_id) in entry.title else
                                                f" <span class=muted>({esc(str(item_id))})</span>")
    attrs = " &middot; ".join(f"{esc(c)} <b title='{esc(v)}'>{esc(_short(v))}</b>" for c, v in entry.extra)
    text = f"{name} {marks}".strip() + (f"<br><span class=attrs>{attrs}</span>" if attrs else "")
    return f"<div class=it>{img}<div>{text}</div></div>" if img else text


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _metrics_table(metrics: dict) -> str:
    """The @10 figures of each split and baseline; a value that is not a number is left out."""
    esc, rows = html.escape, []
    for split in ("valid", "test", "test_cold", "beyond"):
        m = metrics.get(split)
        if not isinstance(m, dict):
            continue
        cells = [(k, v) for k, v in m.items() if "@10" in k and _number(v)]
        users = f"{m['users']:,} users" if _number(m.get("users")) else ""
        label = f"{split} ({', '.join(x for x in (str(m.get('split', '')) if split == 'beyond' else '', users) if x)})"
        rows.append(f"<tr><th>{esc(label)}</th>" + "".join(
            f"<td>{esc(k)} <b>{v:.4f}</b></td>" for k, v in cells) + "</tr>")
    baselines = metrics.get("baselines")
    for name, report in (baselines.items() if isinstance(baselines, dict) else ()):
        split = next((s for s in ("test", "valid") if isinstance(report, dict) and isinstance(report.get(s), dict)), None)
        if split:
            rows.append(f"<tr><th>{esc(str(name))} beside ({split})</th>" + "".join(
                f"<td>{k} <b>{report[split][k]:.4f}</b></td>" for k in ("HR@10", "NDCG@10", "MAP@10")
                if _number(report[split].get(k))) + "</tr>")
    return "<table class=metrics>" + "".join(rows) + "</table>" if rows else "<p class=muted>no metrics</p>"


def _legend(used: list[int] | None, ev: Events, any_new: bool, method: str) -> str:
    """What the score columns and the marks mean (only those the page shows)."""
    cols = (["event"] if any(t is not None for t in ev.targets + ev.types) else []) + ["score"] \
        + ([TERMS[t] for t in used] + ["lifted most by"] if used is not None else [])
    text = dict(LEGEND, score=LEGEND["score"] if used is not None else
                f"what the list is ranked by: the run's score (method={method}; comparable within one user's list only)")
    marks = ["viewed"] if any(t is not None for t in ev.targets) else []
    marks += ["new"] if any_new else []
    marks += ["not in the run"] if any((i == 0).any() for i in ev.index) else []
    return "<dl class=legend>" + "".join(f"<dt>{html.escape(c)}</dt><dd>{html.escape(text[c])}</dd>" for c in cols) \
        + "".join(f"<dt>{_tag(m, MARK_CLASS[m])}</dt><dd>{html.escape(MARKS[m])}</dd>" for m in marks) + "</dl>"


def _event_tag(ev: Events, b: int, j: int, label: str) -> str:
    """The event's type (its target flag as a colour), else target / context when only that is known."""
    target = None if ev.targets[b] is None else bool(ev.targets[b][j])
    text = str(ev.types[b][j]) if ev.types[b] is not None else (
        None if target is None else (label if target else "context"))
    return "" if text is None else _tag(text, {True: "buy", False: "ctx", None: ""}[target])


def _history(ev: Events, b: int, catalogue: dict, first_new: int, label: str) -> str:
    """The last HISTORY_SHOWN events of user b: item, event type, time."""
    n = len(ev.items[b])
    start = max(0, n - HISTORY_SHOWN)
    typed = ev.types[b] is not None or ev.targets[b] is not None
    rows = []
    for j in range(start, n):
        i = int(ev.index[b][j])
        marks = _tag("not in the run", "unknown") if i == 0 else (_tag("new", "new") if i >= first_new else "")
        cells = f"<td class=muted>{j + 1}</td><td>{_item_cell(ev.items[b][j], catalogue, marks)}</td>"
        cells += f"<td>{_event_tag(ev, b, j, label)}</td>" if typed else ""
        cells += f"<td class=when>{html.escape(ev.times[b][j]).replace(' ', '<br>', 1)}</td>" \
            if ev.times[b] is not None else ""  # the date above the time of day: a narrower column
        rows.append(f"<tr class=ev data-item='{html.escape(str(ev.items[b][j]))}'>{cells}</tr>")
    head = "<tr><th>#</th><th>item</th>" + ("<th>event</th>" if typed else "") \
        + ("<th>when</th>" if ev.times[b] is not None else "") + "</tr>"
    more = f"<p class=muted>... and {start:,} earlier</p>" if start else ""
    return f"<b>history</b> <span class=muted>(oldest first)</span>{more}<table>{head}{''.join(rows)}</table>"


def _top_list(b: int, lists, scores, terms, catalogue: dict, item_ids, viewed: dict, first_new: int) -> str:
    """User b's list: rank, item (marked viewed / new), score, the terms and what lifted it most;
    slots at SEEN_SCORE (fewer unseen items than k) are left out, and that is said."""
    esc = html.escape
    if terms is not None:
        values, lift, used = terms
        lifted = lifted_by(lift, used)
    head = "<tr><th>#</th><th>item</th><th class=num>score</th>" + (
        "".join(f"<th class=num>{TERMS[t]}</th>" for t in used) + "<th>lifted most by</th>" if terms is not None else "") + "</tr>"
    body = []
    for j in range(lists.shape[1]):
        if scores[b, j] <= SEEN_SCORE:
            break
        i = int(lists[b, j])
        marks = (_tag("viewed", "viewed", viewed[i]) if i in viewed else "") + (_tag("new", "new") if i >= first_new else "")
        cells = f"<td>{j + 1}</td><td>{_item_cell(item_ids[i], catalogue, marks)}</td><td class=num>{scores[b, j]:.3f}</td>"
        if terms is not None:
            cells += "".join(f"<td class=num>{values[b, j, t]:.3f}</td>" for t in used)
            cells += f"<td>{_tag(lifted[b][j], 'gpt' if lifted[b][j] == TERMS[0] else '')}</td>"
        body.append(f"<tr class=rec data-item='{esc(str(item_ids[i]))}'>{cells}</tr>")
    short = f"<p class=muted>only {len(body)} items left once the user's own are excluded</p>" \
        if len(body) < lists.shape[1] else ""
    return f"<b>top {lists.shape[1]}</b><table>{head}{''.join(body)}</table>{short}"


def _curves(run_dir: str) -> str:
    """The curves section, or nothing when the run has no curve (no, empty or non-PNG curves.png)."""
    path = os.path.join(run_dir, "curves.png")
    data = open(path, "rb").read() if os.path.isfile(path) else b""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ""
    return (f"<h2>Training curves</h2><img alt='curves' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")


@dataclass
class Page:
    """Everything the page shows, gathered by `build`."""
    run_dir: str
    cfg: object
    metrics: dict
    user_ids: np.ndarray   # (U,) the users of the histories the lists continue
    rows: np.ndarray       # (B,) the page's users' rows of user_ids
    events: Events         # B histories
    lists: np.ndarray      # (B, k) run item indices
    scores: np.ndarray     # (B, k)
    terms: tuple | None    # term_table's (terms, lift, used), or None
    catalogue: dict
    catalogue_note: str
    item_ids: np.ndarray   # (N+1,)
    new_items: int         # the last update's new items: the run's last new_items indices


def render(p: Page) -> str:
    """The page as one HTML string."""
    esc, cfg = html.escape, p.cfg
    num_items = len(p.item_ids) - 1
    first_new = num_items - p.new_items + 1 if p.new_items else num_items + 1
    update = p.metrics.get("update") if isinstance(p.metrics.get("update"), dict) else None
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>nanorec inspect: {esc(p.run_dir)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>nanorec inspect: {esc(os.path.basename(os.path.normpath(p.run_dir)))}</h1>",
             f"<p class=muted>{esc(p.run_dir)} &middot; method={esc(cfg.method)} &middot; holdout={esc(cfg.holdout)}"
             + (f" split_time={esc(cfg.split_time)}" if cfg.split_time else "")
             + (f" &middot; target_filter={esc(cfg.target_filter)}" if cfg.target_filter else "")
             + f" &middot; {num_items:,} items"
             + (f" &middot; an update of {esc(str(update.get('from_run', '?')))}: {p.new_items:,} new items"
                if update else "") + "</p>",
             f"<p class=muted>histories: {esc(p.events.source)}"
             + (f"<br>catalogue: {esc(p.catalogue_note)}" if p.catalogue_note else "") + "</p>"]
    parts.append("<h2>Metrics</h2>" + _metrics_table(p.metrics))
    fusion = p.metrics.get("fusion", {}).get("weights") if isinstance(p.metrics.get("fusion"), dict) else None
    if isinstance(fusion, dict) and fusion:
        parts.append("<p>Fusion weights: " + ", ".join(f"{esc(str(n))} <b>{esc(str(w))}</b>" for n, w in fusion.items())
                     + "</p>")
    any_new = p.new_items > 0
    parts.append(f"<h2>Users ({len(p.rows)})</h2>"
                 "<p><input id=find type=search placeholder='find a user by id' autocomplete=off "
                 "aria-label='find a user by id'> <span id=found class=muted></span></p>"
                 + _legend(None if p.terms is None else p.terms[2], p.events, any_new, cfg.method))
    label = target_label(cfg)
    for b, r in enumerate(p.rows):
        ev = p.events
        parts.append(f"<div class=user data-user='{esc(str(p.user_ids[r]))}'><h3>user {esc(str(p.user_ids[r]))} "
                     f"<span class=muted>({len(ev.items[b]):,} events)</span></h3><div class=cols>"
                     f"<div>{_history(ev, b, p.catalogue, first_new, label)}</div>"
                     f"<div>{_top_list(b, p.lists, p.scores, p.terms, p.catalogue, p.item_ids, viewed_items(ev, b), first_new)}"
                     f"</div></div></div>")
    parts.append(_curves(p.run_dir))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(x for x in parts if x)


def build(run_dir: str, out: str, items: str | None = None, users: list[str] | None = None, sample: int = 5,
          k: int = 10, seed: int = 0, device: str = "cpu", data: str | None = None) -> str:
    """Write the page for `run_dir` to `out` (atomically), every input checked before any scoring."""
    check_writable_folder(out, "--out page")
    catalogue = read_catalogue(items) if items else {}
    run = Run.open(run_dir, device)
    note = f"{items}: has {check_catalogue(catalogue, run.item_ids, items):,} of the {run.num_items:,} items of " \
        "the run" if items else ""
    metrics_path = os.path.join(run_dir, rundir.METRICS)
    metrics = rundir.read_metrics(run_dir) if os.path.exists(metrics_path) else {}
    new_items = new_item_count(metrics, run.num_items, metrics_path)
    log = read_log(run.config, data) if data else None  # (ds, typed, col): the log read once
    user_ids, hist, _ = histories_for(run, data, warn=lambda line: print(line, file=sys.stderr),
                                      ds=log[0] if log else None)
    rows = choose_users(user_ids, hist.lengths, users or [], sample, seed, data or "the run's histories")
    if len(rows) == 0:
        raise UsageError("no user to show: give --users or --sample N >= 1")
    events = data_events(run, data, rows, *log) if data else run_events(run, rows)
    h = hist.take(rows)
    k = min(k, run.num_items)
    parts = fusion_terms(run, device)
    with torch.no_grad():
        lists, scores = top_k(run.scorer, h, rows, k, run.exclude_seen)  # the lists the run ships (seen.py)
        terms = term_table(parts, h, rows, lists) if parts is not None else None
    write_text(out, render(Page(run_dir, run.config, metrics, user_ids, rows, events, lists, scores, terms,
                                catalogue, note, run.item_ids, new_items)))
    return out


def main(argv) -> int:
    p = command_parser("inspect", __doc__)
    p.add_argument("--run", required=True, help="a finished run folder")
    p.add_argument("--out", required=True, help="the HTML page to write (- : standard output)")
    p.add_argument("--data", help="an event log in the run's columns (e.g. its own): its histories, with each "
                   "event's type and time, are shown and continued (as recommend --data)")
    p.add_argument("--items", help="catalogue CSV: item_id and any of title, image_url and other columns "
                   "(e.g. category, price), shown with each item")
    p.add_argument("--users", help="comma-separated user ids to show (original ids)")
    p.add_argument("--sample", type=int, default=None, help="also show this many random users (default 5, "
                   "0 with --users)")
    p.add_argument("--k", type=int, default=10, help="list length (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the user sample (default 0)")
    args = p.parse_args(argv)
    if not 1 <= args.k <= 1000:
        raise UsageError(f"--k {args.k}: must be in 1..1000")
    sample = args.sample if args.sample is not None else (0 if args.users else 5)
    if not 0 <= sample <= 1000:
        raise UsageError(f"--sample {sample}: must be in 0..1000")
    asked = [u.strip() for u in (args.users or "").split(",") if u.strip()]
    if args.users is not None and not asked:
        raise UsageError(f"--users {args.users!r}: no user id given")
    out = build(args.run, out_path(args.out), args.items, asked, sample, args.k, args.seed, data=args.data)
    print(f"wrote {out}", file=sys.stderr if is_stdout(out) else sys.stdout)  # never into the page itself
    return 0
