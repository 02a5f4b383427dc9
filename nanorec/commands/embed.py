"""`nanorec embed`: build frozen item content tables (safetensors, keyed by original item id).

    nanorec embed images     --model google/siglip-base-patch16-224 --images DIR --items DATA --out images.safetensors
    nanorec embed images     --model ./siglip --metadata item_metadata.csv --items DATA --out images.safetensors
    nanorec embed text       --model ./minilm --metadata item_metadata.csv --fields title,features --out text.safetensors
    nanorec embed attributes --data Beauty.txt --out beauty_attr.safetensors
    nanorec embed table      --input vectors.parquet --items DATA --out table.safetensors

Each reports coverage against the item vocabulary (--items: a data path or a run folder) and
writes atomically; `images` is resumable (items in --out are skipped, the table saved every
--save-every images). Train with ``content=images.safetensors,text.safetensors``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import zipfile

import numpy as np

from ..content.images import SiglipImageEncoder, download_all, embed_files, find_images, urls_from_metadata
from ..content.tables import (align, attribute_table, coverage_line, is_int_string, load_table, normalize_ids,
                              save_table, table_metadata)
from ..content.text import encode_texts, read_texts
from ..core.devices import DEVICE_HELP, pick_device
from ..data import load, read_json
from ..errors import DataError, UsageError, one_line
from ..runs import rundir
from ..runs.files import check_writable_folder, write_json

DEFAULT_IMAGE_MODEL = "google/siglip-base-patch16-224"


# -----------------------------------------------------------------------------
# the item vocabulary

class Vocabulary:
    """The items a table is aligned to: ``item_ids`` (N+1,) original ids (slot 0 = padding), and
    {ASIN: original id} (id_mappings.json) so sources keyed by ASIN find their item."""

    def __init__(self, item_ids: np.ndarray, asin_map: dict | None = None):
        self.item_ids = item_ids
        self.asin_map = asin_map or {}
        self._by_str = {str(x): x for x in item_ids[1:].tolist()}

    def resolve(self, key: str):
        """Original item id for a file stem / metadata key, or None if unknown."""
        mapped = self.asin_map.get(str(key))
        return self._by_str.get(str(key), None if mapped is None else self._by_str.get(str(mapped)))


def read_id_map(path: str) -> dict:
    """{ASIN: item id} from a challenge id_mappings.json ({"item_mapping": {asin: int}})."""
    if os.path.isdir(path):  # read_json's words for a folder would not say what was expected
        raise DataError(f"{path}: is a folder, expected an id map (a JSON file)")
    try:
        d = read_json(path)
    except RecursionError:  # read_json leaves the parser's recursion limit to its caller
        raise DataError(f"{path}: nested too deeply to be an id map") from None
    m = d.get("item_mapping") if isinstance(d, dict) else None
    if not isinstance(m, dict):
        raise DataError(f"{path}: no 'item_mapping' object")
    return {str(k): v for k, v in m.items()}


def read_vocabulary(items: str, id_map: str | None = None, metadata: str | None = None) -> Vocabulary:
    """--items: a run folder (items.json) or anything nanorec.data.load reads. ASINs: --id-map, else
    a challenge folder's id_mappings.json, else the one beside --metadata."""
    asin_map = read_id_map(id_map) if id_map else None
    if os.path.isdir(items) and os.path.exists(os.path.join(items, rundir.ITEMS)):
        vocab = Vocabulary(rundir.read_items(items), asin_map)
    else:
        ds = load(items)
        if asin_map is None and ds.kind == "challenge":
            path = os.path.join(ds.path, "id_mappings.json")
            asin_map = read_id_map(path) if os.path.exists(path) else None
        vocab = Vocabulary(ds.item_ids, asin_map)
    sibling = os.path.join(os.path.dirname(os.path.abspath(metadata)), "id_mappings.json") if metadata else ""
    if id_map is None and not vocab.asin_map and os.path.exists(sibling):
        vocab.asin_map = read_id_map(sibling)
    return vocab


def _load_table(path: str, id_col: str | None = None, vector_col: str | None = None):
    """content.load_table, with numpy's and zipfile's errors for a damaged file a DataError."""
    try:
        return load_table(path, id_col, vector_col)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot be read as a table ({one_line(e)})") from None


def _save(out: str, ids, vectors, meta: dict, vocab: Vocabulary | None) -> None:
    save_table(out, ids, vectors, meta)
    print(f"wrote {out}: {len(ids):,} items x {np.asarray(vectors).shape[1]}")
    if vocab is not None:
        _, _, report = align(ids, vectors, vocab.item_ids)
        print(coverage_line(report, os.path.basename(out)))


def _keyed(keys, vocab: Vocabulary | None):
    """Map source keys to original item ids. Returns ({key: id}, [unknown keys])."""
    if vocab is None:
        return {k: k for k in keys}, []
    items = [(k, vocab.resolve(k)) for k in keys]
    return {k: item for k, item in items if item is not None}, [k for k, item in items if item is None]


def _examples(xs, n=3) -> str:
    xs = list(xs)
    return ", ".join(map(str, xs[:n])) + (", ..." if len(xs) > n else "")


# -----------------------------------------------------------------------------
# images

def cmd_images(a) -> int:
    vocab = read_vocabulary(a.items, a.id_map, a.metadata)

    # resume: what the output already holds
    done_ids, done_vecs = np.zeros(0, np.int64), None
    if os.path.exists(a.out):
        done_ids, done_vecs = _load_table(a.out)
        made_by = table_metadata(a.out).get("model")
        if made_by and made_by != a.model:
            raise DataError(f"{a.out}: made with model {made_by!r}, not {a.model!r}; "
                            "choose another --out or delete it")
        print(f"resuming: {a.out} already has {len(done_ids):,} items (skipped)")
    done = {str(x) for x in done_ids.tolist()}

    if a.images:
        sources = find_images(a.images)          # {stem: path}
        what = f"{len(sources):,} image files in {a.images}"
    else:
        sources = urls_from_metadata(a.metadata, a.key_col)  # {key: url}
        what = f"{len(sources):,} items with an image URL in {a.metadata}"
    known, unknown = _keyed(sources, vocab)
    stats = {"sources": len(sources), "unknown_item": len(unknown), "already_embedded": 0,
             "download_failed": 0, "unreadable": 0, "embedded": 0}
    todo, seen = {}, set()
    for key, item in known.items():
        if str(item) in done:
            stats["already_embedded"] += 1
        elif str(item) not in seen:   # an ASIN and an id naming the same item: embed once
            seen.add(str(item))
            todo[key] = item
    print(f"{what}: {len(known):,} match the vocabulary, {len(todo):,} to embed")
    if unknown:
        print(f"skipped {len(unknown):,} for items not in the vocabulary (e.g. {_examples(unknown)})")

    if a.metadata:
        cache = a.cache or os.path.splitext(a.out)[0] + "_images"
        paths, failures = download_all({k: sources[k] for k in todo}, cache, workers=a.workers,
                                       timeout=a.timeout, retries=a.retries, progress=a.progress,
                                       allow_private=a.allow_private_hosts)
        stats["download_failed"] = len(failures)
        if failures:
            print(f"skipped {len(failures):,} failed downloads (e.g. {_examples(failures.values(), 2)})")
    else:
        paths = {k: sources[k] for k in todo}

    items = [(todo[k], paths[k]) for k in todo if k in paths]
    meta = {"model": a.model, "source": a.images or a.metadata, "kind": "siglip image features, L2-normalised"}
    ids, vecs = list(done_ids.tolist()), done_vecs
    if items:
        encoder = SiglipImageEncoder(a.model, a.device)
        print(f"model {a.model} on {encoder.device}")
        pending = {"n": 0}

        def checkpoint(new_ids, chunks):
            # rewrite the whole table every --save-every new images: an interrupted run keeps them
            if len(new_ids) - pending["n"] >= a.save_every:
                pending["n"] = len(new_ids)
                merged = np.concatenate(chunks) if done_vecs is None else np.concatenate([done_vecs] + chunks)
                save_table(a.out, ids + list(new_ids), merged, meta)

        new_ids, new_vecs, unreadable = embed_files(encoder, items, a.batch_size, a.progress,
                                                    on_batch=checkpoint, workers=a.workers)
        stats.update(unreadable=len(unreadable), embedded=len(new_ids))
        if unreadable:
            print(f"skipped {len(unreadable):,} unreadable images (e.g. {_examples(unreadable.values(), 2)})")
        if len(new_ids):
            ids = ids + list(new_ids)
            vecs = new_vecs if done_vecs is None or not len(done_ids) else np.concatenate([done_vecs, new_vecs])
    print("images: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats.items()))
    if not ids:
        raise DataError("no image could be embedded; nothing written")
    if stats["embedded"] or not os.path.exists(a.out):
        _save(a.out, normalize_ids(ids), vecs, meta, vocab)
    else:
        _, _, report = align(done_ids, done_vecs, vocab.item_ids)
        print("nothing new; " + coverage_line(report, os.path.basename(a.out)))
    if a.report:
        write_json(a.report, stats)
    return 0


# -----------------------------------------------------------------------------
# text, attributes, precomputed tables

def cmd_text(a) -> int:
    fields = [f.strip() for f in a.fields.split(",") if f.strip()]
    if not fields:
        raise UsageError("--fields: name at least one column, e.g. --fields title")
    keys, texts = read_texts(a.metadata, fields, a.key_col)
    vocab = read_vocabulary(a.items, a.id_map, a.metadata) if a.items else None
    known, unknown = _keyed(keys, vocab)
    print(f"{len(keys):,} items with text in {a.metadata}" +
          (f"; skipped {len(unknown):,} not in the vocabulary (e.g. {_examples(unknown)})" if unknown else ""))
    pairs, seen = [], set()
    for k, t in zip(keys, texts):
        if k in known and str(known[k]) not in seen:
            seen.add(str(known[k]))
            pairs.append((known[k], t))
    if not pairs:
        raise DataError(f"{a.metadata}: no item with text matches the vocabulary")
    vecs = encode_texts(a.model, [t for _, t in pairs], a.batch_size, a.device, a.progress)
    ids = [i for i, _ in pairs]
    if vocab is None:  # keys are the metadata's own ids: integers where they all are
        ids = [int(i) for i in ids] if all(is_int_string(str(i)) for i in ids) else ids
    _save(a.out, normalize_ids(ids), vecs, {"model": a.model, "source": a.metadata,
                                            "fields": ",".join(fields)}, vocab)
    return 0


def cmd_attributes(a) -> int:
    if a.data.lower().endswith(".json"):
        json_path = a.data
        vocab = read_vocabulary(a.items, a.id_map) if a.items else None
    else:
        ds = load(a.data)
        if not ds.attributes_path:
            raise DataError(f"{a.data}: no *_item2attributes.json beside it; pass the .json as --data")
        json_path, vocab = ds.attributes_path, Vocabulary(ds.item_ids)
        if a.items:
            vocab = read_vocabulary(a.items, a.id_map)
    ids, vecs = attribute_table(json_path, None if vocab is None else vocab.item_ids, a.dim)
    _save(a.out, ids, vecs, {"source": json_path, "kind": f"TF-IDF multi-hot + truncated SVD, dim {vecs.shape[1]}"},
          vocab)
    return 0


def cmd_table(a) -> int:
    ids, vecs = _load_table(a.input, a.id_col, a.vector_col)
    if a.l2:
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    vocab = read_vocabulary(a.items, a.id_map) if a.items else None
    _save(a.out, ids, vecs, {"source": a.input}, vocab)
    return 0


# -----------------------------------------------------------------------------
# command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nanorec embed",
        description="Build frozen item content tables (.safetensors keyed by original item id) "
                    "for training with content=a.safetensors,b.safetensors.",
        epilog="Each command prints how many vocabulary items the table covers; items without "
               "content get a learned 'missing' vector in the model.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(q, items_required):
        q.add_argument("--out", required=True, help="output table (.safetensors), written atomically")
        q.add_argument("--items", required=items_required, metavar="RUN_DIR|DATA",
                       help="item vocabulary: a run folder (items.json) or a data path "
                            "(S3-Rec .txt, .csv/.parquet, challenge folder)" +
                            ("" if items_required else "; optional, for the coverage report"))
        q.add_argument("--id-map", metavar="JSON",
                       help="id_mappings.json ({'item_mapping': {asin: id}}) for ASIN-keyed sources; "
                            "default: the challenge folder's own")
        q.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")

    q = sub.add_parser("images", help="SigLIP image features from a folder of images or item_metadata.csv URLs",
                       description="Embed item images with a frozen SigLIP (transformers AutoModel + "
                                   "AutoImageProcessor), L2-normalised, on CUDA when present. Resumable: "
                                   "items already in --out are skipped. Unknown items, unreadable images "
                                   "and failed downloads are counted, reported and skipped.")
    common(q, True)
    q.add_argument("--model", default=DEFAULT_IMAGE_MODEL,
                   help=f"model name or local folder (save_pretrained; works offline); default {DEFAULT_IMAGE_MODEL}")
    src = q.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of images named by item id or ASIN (17.jpg, B00X.png)")
    src.add_argument("--metadata", metavar="CSV", help="item_metadata.csv with image_urls or images columns")
    q.add_argument("--key-col", help="metadata column with the item key (default: item_id, parent_asin or asin)")
    q.add_argument("--cache", metavar="DIR", help="download cache (default: OUT's name + '_images/')")
    q.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    q.add_argument("--device", default="auto", help=DEVICE_HELP)
    q.add_argument("--workers", type=int, default=8, help="concurrent downloads / decoding threads (default 8)")
    q.add_argument("--timeout", type=float, default=10.0,
                   help="wall-clock seconds per download attempt, connection, redirects and whole body "
                        "included (default 10)")
    q.add_argument("--retries", type=int, default=2, help="retries after a failed download (default 2)")
    q.add_argument("--allow-private-hosts", action="store_true",
                   help="let image URLs reach private, loopback and link-local addresses (10.x, 192.168.x, "
                        "127.0.0.1, ...), for images served from your own network. Off by default: URLs in "
                        "downloaded metadata must not reach internal services")
    q.add_argument("--save-every", type=int, default=2048,
                   help="save the table every N new images, so an interruption loses little (default 2048)")
    q.add_argument("--report", metavar="JSON", help="also write the counts as JSON")
    q.set_defaults(fn=cmd_images)

    q = sub.add_parser("text", help="sentence-transformers embeddings of metadata text fields",
                       description="Embed item text (fields joined as 'a. b. c') with sentence-transformers, "
                                   "L2-normalised. A local model folder works offline.")
    common(q, False)
    q.add_argument("--model", required=True, help="sentence-transformers model name or local folder")
    q.add_argument("--metadata", required=True, help="item metadata (.csv, .parquet or .jsonl)")
    q.add_argument("--fields", default="title", help="comma-separated text columns (default: title)")
    q.add_argument("--key-col", help="column with the item key (default: item_id, parent_asin, asin or id)")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--device", default="auto", help=DEVICE_HELP)
    q.set_defaults(fn=cmd_text)

    q = sub.add_parser("attributes", help="TF-IDF + SVD vectors from *_item2attributes.json",
                       description="Turn S3-Rec item attributes (brand, categories) into dense vectors: "
                                   "TF-IDF-weighted multi-hot, truncated SVD, unit rows.")
    common(q, False)
    q.add_argument("--data", required=True,
                   help="S3-Rec .txt (its *_item2attributes.json is used) or the .json itself")
    q.add_argument("--dim", type=int, default=64, help="SVD dimensions (default 64; fewer if the rank is lower)")
    q.set_defaults(fn=cmd_attributes)

    q = sub.add_parser("table", help="convert a precomputed .npy/.npz/.parquet table",
                       description="Convert precomputed vectors to a content table. .npy: ids in X.ids.npy "
                                   "or X.ids.txt beside it; .npz: arrays 'ids' and 'vectors'; .parquet: an id "
                                   "column and a list column or one column per dimension.")
    common(q, False)
    q.add_argument("--input", required=True, help=".npy, .npz or .parquet")
    q.add_argument("--id-col", help="parquet id column (default: item_id, id, parent_asin or asin)")
    q.add_argument("--vector-col", help="parquet list column holding the vectors")
    q.add_argument("--l2", action="store_true", help="L2-normalise the rows")
    q.set_defaults(fn=cmd_table)
    return p


# (option, attribute, smallest value) of the integer options, whichever subcommand has them
MINIMUMS = (("--batch-size", "batch_size", 1), ("--save-every", "save_every", 1), ("--workers", "workers", 1),
            ("--retries", "retries", 0), ("--dim", "dim", 1))


def check_options(a) -> None:
    """Every value range and output path, before any work (not after an hour of embedding)."""
    for option, attr, low in MINIMUMS:
        value = getattr(a, attr, None)
        if value is not None and value < low:
            raise UsageError(f"{option} must be at least {low}, not {value}")
    timeout = getattr(a, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a positive number of seconds, not {timeout:g}")
    if not a.out.lower().endswith(".safetensors"):  # load_table goes by the extension
        raise UsageError(f"--out {a.out}: a content table is a .safetensors file; name it *.safetensors")
    check_writable_folder(a.out, "table")
    report = getattr(a, "report", None)
    if report:
        check_writable_folder(report, "report")
        if os.path.abspath(report) == os.path.abspath(a.out):
            raise UsageError(f"--report {report}: the same file as --out")
    cache = getattr(a, "cache", None)
    if cache and os.path.exists(cache) and not os.path.isdir(cache):
        raise DataError(f"--cache {cache}: is a file, expected a folder for the download cache")
    if getattr(a, "device", None):
        pick_device(a.device)


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    check_options(a)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
