"""`nanorec embed images` end to end, offline, with a tiny random SigLIP built here."""
import functools
import http.server
import json
import threading

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from nanorec.content.tables import load_table, table_metadata  # noqa: E402
from nanorec.commands.embed import main  # noqa: E402
from nanorec.content.images import SiglipImageEncoder, first_url  # noqa: E402


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    """A random SigLIP small enough to run in milliseconds, saved like a hub checkpoint."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    cfg = SiglipConfig(
        text_config=dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2))
    folder = tmp_path_factory.mktemp("siglip")
    SiglipModel(cfg).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def write_image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24 + seed, 40, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def toy(tmp_path):
    """S3-Rec data with items 1..6; images for 1, 2, 3, a corrupt 4, and 99 (unknown item)."""
    data = tmp_path / "Toy.txt"
    data.write_text("1 1 2 3\n2 4 5 6\n3 2 3 1\n")
    img = tmp_path / "img"
    img.mkdir()
    write_image(img / "1.png", 1)
    write_image(img / "2.jpg", 2)
    write_image(img / "3.png", 3)
    (img / "4.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    write_image(img / "99.png", 9)
    (img / "notes.txt").write_text("not an image file, ignored")
    return data, img


def run(args, capsys):
    rc = main(args + ["--no-progress"])
    return rc, capsys.readouterr().out


def test_folder_end_to_end_and_resume(siglip_dir, toy, tmp_path, capsys):
    data, img = toy
    out, rep = str(tmp_path / "img.safetensors"), str(tmp_path / "rep.json")
    base = ["images", "--model", siglip_dir, "--images", str(img), "--items", str(data), "--out", out,
            "--batch-size", "2", "--report", rep]
    rc, text = run(base, capsys)
    assert rc == 0
    stats = json.load(open(rep))
    assert stats == {"sources": 5, "unknown_item": 1, "already_embedded": 0, "download_failed": 0,
                     "unreadable": 1, "embedded": 3}
    assert "not in the vocabulary (e.g. 99)" in text and "4.png" in text  # reported by name
    assert "3 of 6 items (50.0%)" in text
    ids, vecs = load_table(out)
    assert ids.tolist() == [1, 2, 3] and vecs.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert table_metadata(out)["model"] == siglip_dir

    # the same numbers as the model called directly
    enc = SiglipImageEncoder(siglip_dir, "cpu")
    direct = enc.encode([Image.open(img / "2.jpg").convert("RGB")])
    np.testing.assert_allclose(vecs[1], direct[0], atol=1e-5)

    # resume: only the new image is embedded, old rows untouched
    write_image(img / "5.png", 5)
    rc, text = run(base, capsys)
    assert rc == 0 and "already has 3 items" in text
    stats = json.load(open(rep))
    assert stats["already_embedded"] == 3 and stats["embedded"] == 1
    ids2, vecs2 = load_table(out)
    assert ids2.tolist() == [1, 2, 3, 5]
    np.testing.assert_array_equal(vecs2[:3], vecs)

    # another model into the same file is refused (exit 2 through the CLI)
    from nanorec.cli import main as cli

    assert cli(["embed"] + base[:2] + [siglip_dir + "/"] + base[3:]) == 2
    assert "made with model" in capsys.readouterr().err


def test_interrupted_run_keeps_a_whole_table(siglip_dir, toy, tmp_path, capsys, monkeypatch):
    data, img = toy
    out = str(tmp_path / "img.safetensors")
    args = ["images", "--model", siglip_dir, "--images", str(img), "--items", str(data), "--out", out,
            "--batch-size", "1", "--save-every", "1", "--workers", "1"]
    calls = {"n": 0}
    real = SiglipImageEncoder.encode

    def flaky(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed in the middle of the second batch
        return real(self, images)

    monkeypatch.setattr(SiglipImageEncoder, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--no-progress"])
    ids, _ = load_table(out)
    assert ids.tolist() == [1]                    # the checkpoint after batch 1, complete
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(SiglipImageEncoder, "encode", real)
    rc, text = run(args, capsys)
    assert rc == 0
    assert load_table(out)[0].tolist() == [1, 2, 3]


def test_first_url_formats():
    assert first_url('["http://a/x.jpg", "http://a/y.jpg"]') == "http://a/x.jpg"
    assert first_url("['http://a/x.jpg']") == "http://a/x.jpg"  # a Python repr
    amazon = [{"thumb": "http://t/1.jpg", "large": "http://l/1.jpg", "variant": "MAIN"}]
    assert first_url(json.dumps(amazon)) == "http://l/1.jpg"
    assert first_url("see http://h/z.png here") == "http://h/z.png"
    assert first_url("") is None and first_url(None) is None and first_url("[]") is None


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www."""
    for var in ("no_proxy", "NO_PROXY"):  # a machine-wide http_proxy must not swallow 127.0.0.1
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_metadata_urls_with_download_cache(siglip_dir, server, tmp_path, capsys):
    www, url = server
    write_image(www / "a.png", 1)
    write_image(www / "b.jpg", 2)
    # a challenge folder: encoded item ids start at 0, and item 0 is a real product
    folder = tmp_path / "challenge"
    folder.mkdir()
    (folder / "train.csv").write_text("user_id,item_id,rating,timestamp\n0,0,5,1\n0,1,4,2\n1,2,3,3\n1,3,5,4\n")
    (folder / "test.csv").write_text("user_id,predictions\n0,0\n1,0\n")
    (folder / "id_mappings.json").write_text(json.dumps(
        {"user_mapping": {"U0": 0, "U1": 1}, "item_mapping": {"A0": 0, "A1": 1, "A2": 2, "A3": 3}}))
    amazon = json.dumps([{"thumb": f"{url}/nope.jpg", "large": f"{url}/b.jpg", "variant": "MAIN"}])
    rows = [
        ("A0", "first", json.dumps([f"{url}/a.png"]), ""),
        ("A1", "second", "", amazon),                            # only the `images` field
        ("A2", "third", json.dumps([f"{url}/missing.png"]), ""),  # 404: counted, skipped
        ("A9", "unknown", json.dumps([f"{url}/a.png"]), ""),      # not in the vocabulary
        ("A3", "no image", "", ""),
    ]
    import polars as pl

    pl.DataFrame(rows, schema=["parent_asin", "title", "image_urls", "images"], orient="row").write_csv(
        folder / "item_metadata.csv")
    out, rep = str(tmp_path / "img.safetensors"), str(tmp_path / "rep.json")
    cache = tmp_path / "cache"
    args = ["images", "--model", siglip_dir, "--metadata", str(folder / "item_metadata.csv"),
            "--items", str(folder), "--out", out, "--cache", str(cache), "--timeout", "5",
            "--retries", "1", "--report", rep, "--allow-private-hosts"]
    rc, text = run(args, capsys)
    assert rc == 0
    stats = json.load(open(rep))
    assert stats == {"sources": 4, "unknown_item": 1, "already_embedded": 0, "download_failed": 1,
                     "unreadable": 0, "embedded": 2}
    assert "missing.png: HTTP 404" in text
    assert "2 of 4 items (50.0%)" in text
    ids, vecs = load_table(out)
    assert ids.tolist() == [0, 1]
    assert len(list(cache.iterdir())) == 2       # the two images, cached
    # the same image served by URL and read from disk embeds the same
    direct = SiglipImageEncoder(siglip_dir, "cpu").encode([Image.open(www / "b.jpg").convert("RGB")])
    np.testing.assert_allclose(vecs[1], direct[0], atol=1e-5)
    # resume: nothing left to embed; the 404 is tried again, and fails again
    rc, text = run(args, capsys)
    assert rc == 0 and "nothing new" in text
    assert json.load(open(rep))["already_embedded"] == 2


# -----------------------------------------------------------------------------
# metadata fields nested too deeply to parse

def test_deeply_nested_field_is_no_url():
    # json.loads raises RecursionError at ~1000 levels and ast.literal_eval a
    # SyntaxError at 200: neither may escape, and the walker must not recurse
    assert first_url("[" * 1000 + "]" * 1000) is None
    assert first_url("[" * 100_000 + "]" * 100_000) is None
    assert first_url("[" * 1000 + '"http://h/deep.jpg"' + "]" * 1000) == "http://h/deep.jpg"  # found as text
    assert first_url("[" * 150 + '"http://h/a.jpg"' + "]" * 150) == "http://h/a.jpg"        # parsed


def test_cli_skips_a_deeply_nested_images_field(siglip_dir, server, tmp_path, capsys):
    www, url = server
    write_image(www / "a.png", 1)
    data = tmp_path / "Toy.txt"
    data.write_text("1 1 2\n2 2 1\n")
    meta = tmp_path / "meta.csv"
    nested = "[" * 1000 + "]" * 1000
    meta.write_text(f"item_id,image_urls\n1,{url}/a.png\n2,\"{nested}\"\n")
    out, rep = str(tmp_path / "img.safetensors"), str(tmp_path / "rep.json")
    rc, text = run(["images", "--model", siglip_dir, "--metadata", str(meta), "--items", str(data),
                    "--out", out, "--report", rep, "--allow-private-hosts", "--retries", "0"], capsys)
    assert rc == 0
    assert json.load(open(rep))["sources"] == 1      # item 2: no URL, not a crash
    assert load_table(out)[0].tolist() == [1]


# -----------------------------------------------------------------------------
# the downloader: deadline, Content-Length, redirects, addresses, permissions

import os  # noqa: E402
import socket  # noqa: E402
import socketserver  # noqa: E402
import time  # noqa: E402

from nanorec.content.images import DownloadError, download_all, fetch, is_public_address  # noqa: E402


@pytest.fixture
def raw_server(monkeypatch):
    """start(respond) -> base URL of a 127.0.0.1 server that reads a request and
    calls respond(sock, path, stop) to answer it byte by byte, however it likes."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    stop = threading.Event()
    servers = []

    def start(respond):
        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                head = b""
                while b"\r\n\r\n" not in head:
                    part = self.request.recv(4096)
                    if not part:
                        return
                    head += part
                path = head.split(b" ", 2)[1].decode()
                try:
                    respond(self.request, path, stop)
                except OSError:  # the client hung up: what a deadline does
                    pass

        srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        srv.block_on_close = False
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    stop.set()
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def trickle(sock, first: bytes, stop, every=0.8, n=15):
    """Send `first`, then one byte every `every` seconds: never idle long enough
    for a per-read timeout, far too slow for a whole download."""
    sock.sendall(first)
    for _ in range(n):
        if stop.wait(every):
            return
        sock.sendall(b"x")


@pytest.mark.parametrize("first", [
    b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n",  # a slow body
    b"HTTP/1.0 200 OK\r\nX-Slow: ",                      # slow headers
])
def test_deadline_is_per_file_not_per_read(raw_server, tmp_path, first):
    url = raw_server(lambda sock, path, stop: trickle(sock, first, stop))
    dest = str(tmp_path / "x.img")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out after 2s"):
        fetch(url + "/x.jpg", dest, timeout=2, retries=0, allow_private=True)
    assert time.monotonic() - start < 4      # 12 s of trickle, cut at the 2 s budget
    assert not os.path.exists(dest)


def answer(status_line: str, headers: dict, body: bytes = b""):
    def respond(sock, path, stop):
        lines = [status_line] + [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return respond


@pytest.mark.parametrize("declared, sent", [(100, 50), (10, 50), (5, 0)])
def test_body_must_match_content_length(raw_server, tmp_path, declared, sent):
    url = raw_server(answer("HTTP/1.0 200 OK", {"Content-Length": declared}, b"y" * sent))
    paths, failures = download_all({"k": url + "/x.jpg"}, str(tmp_path / "cache"), workers=1, timeout=5,
                                   retries=0, progress=False, allow_private=True)
    assert paths == {} and f"Content-Length says {declared}" in failures["k"]
    assert os.listdir(tmp_path / "cache") == []  # nothing cached, no leftover temp file


def test_exact_body_is_cached_with_umask_permissions(raw_server, tmp_path):
    url = raw_server(answer("HTTP/1.0 200 OK", {"Content-Length": 7}, b"pixels!"))
    old = os.umask(0o022)
    try:
        path = fetch(url + "/x.jpg", str(tmp_path / "x.jpg"), timeout=5, retries=0, allow_private=True)
    finally:
        os.umask(old)
    assert open(path, "rb").read() == b"pixels!"
    assert os.stat(path).st_mode & 0o777 == 0o644  # not mkstemp's 0600


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1/x"])
def test_redirect_to_another_scheme_is_refused(raw_server, tmp_path, location):
    url = raw_server(answer("HTTP/1.0 302 Found", {"Location": location, "Content-Length": 0}))
    with pytest.raises(DownloadError, match="refused"):
        fetch(url + "/x.jpg", str(tmp_path / "x.img"), timeout=5, retries=0, allow_private=True)
    assert not os.path.exists(tmp_path / "x.img")


def test_redirects_are_followed_and_bounded(raw_server, tmp_path):
    def respond(sock, path, stop):
        if path == "/final.jpg":
            answer("HTTP/1.0 200 OK", {"Content-Length": 3}, b"img")(sock, path, stop)
        elif path == "/loop":
            answer("HTTP/1.0 301 Moved", {"Location": "/loop"})(sock, path, stop)
        else:  # a relative Location, resolved against the current URL
            answer("HTTP/1.0 307 Temporary", {"Location": "final.jpg"})(sock, path, stop)

    url = raw_server(respond)
    path = fetch(url + "/start", str(tmp_path / "a.img"), timeout=5, retries=0, allow_private=True)
    assert open(path, "rb").read() == b"img"
    with pytest.raises(DownloadError, match="redirects"):
        fetch(url + "/loop", str(tmp_path / "b.img"), timeout=5, retries=0, allow_private=True)


def test_loopback_is_refused_unless_allowed(server, tmp_path):
    www, url = server
    write_image(www / "a.png", 1)
    cache = tmp_path / "cache"
    paths, failures = download_all({"k": f"{url}/a.png"}, str(cache), workers=1, timeout=5, retries=0,
                                   progress=False)
    assert paths == {} and "refused: 127.0.0.1 is not a public address" in failures["k"]
    assert os.listdir(cache) == []
    paths, failures = download_all({"k": f"{url}/a.png"}, str(cache), workers=1, timeout=5, retries=0,
                                   progress=False, allow_private=True)
    assert failures == {} and os.path.exists(paths["k"])


def test_malformed_urls_are_failures_not_crashes(tmp_path):
    urls = {"a": "http://[::1", "b": "http://h:99999/x.jpg", "c": "ftp://h/x.jpg", "d": "http:///x.jpg"}
    paths, failures = download_all(urls, str(tmp_path / "cache"), workers=2, timeout=5, retries=0,
                                   progress=False)
    assert paths == {} and set(failures) == set(urls)
    assert "only http and https" in failures["c"]


def test_every_redirect_hop_is_checked(raw_server, tmp_path, monkeypatch):
    # Pretend 127.0.0.1 is public so the first hop passes; the redirect to another
    # loopback address must still be refused, before any connection is made.
    import nanorec.content.images as ie

    monkeypatch.setattr(ie, "is_public_address", lambda ip: ip == "127.0.0.1")
    url = raw_server(answer("HTTP/1.0 302 Found", {"Location": "http://127.0.0.2:9/x.jpg"}))
    start = time.monotonic()
    with pytest.raises(DownloadError, match="refused: 127.0.0.2"):
        fetch(url + "/x.jpg", str(tmp_path / "x.img"), timeout=5, retries=2, backoff=10)
    assert time.monotonic() - start < 5  # a refusal is permanent: no retry, no 10 s backoff


@pytest.mark.parametrize("ip, public", [
    ("8.8.8.8", True), ("93.184.216.34", True), ("2606:4700:4700::1111", True),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False), ("127.0.0.1", False),
    ("169.254.169.254", False), ("224.0.0.1", False), ("239.255.255.250", False), ("0.0.0.0", False),
    ("240.0.0.1", False), ("255.255.255.255", False), ("100.64.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fe80::1%eth0", False), ("fc00::1", False),
    ("ff02::1", False), ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False),
])
def test_is_public_address(ip, public):
    assert is_public_address(ip) is public


# -----------------------------------------------------------------------------
# bad command lines: one line on stderr, exit 2, nothing written

@pytest.fixture
def inputs(tmp_path):
    """Valid inputs for every subcommand, and broken ones beside them."""
    p = {"dir": tmp_path}
    (tmp_path / "Toy.txt").write_text("1 1 2 3\n2 2 3 4\n")
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps({"1": [1], "2": [2]}))
    img = tmp_path / "img"
    img.mkdir()
    write_image(img / "1.png", 1)
    (tmp_path / "meta.csv").write_text("item_id,title,image_urls\n1,red,http://h/1.jpg\n")
    run_dir = tmp_path / "run_bad_json"
    run_dir.mkdir()
    (run_dir / "items.json").write_text("[null, 1, ")
    run_bin = tmp_path / "run_binary"
    run_bin.mkdir()
    (run_bin / "items.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "deep.json").write_text("[" * 100_000)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "noids.npy", np.ones((2, 3), np.float32))
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a table")
    (tmp_path / "a_file").write_text("a file, not a folder")
    (tmp_path / "folder.safetensors").mkdir()
    return p


def images(d, *extra):
    return ["images", "--model", str(d / "model"), "--images", str(d / "img"), "--items", str(d / "Toy.txt"),
            "--out", str(d / "out.safetensors"), *extra]


def from_metadata(d, *extra):
    return ["images", "--model", str(d / "model"), "--metadata", str(d / "meta.csv"),
            "--items", str(d / "Toy.txt"), "--out", str(d / "out.safetensors"), *extra]


def text(d, *extra):
    return ["text", "--model", str(d / "model"), "--metadata", str(d / "meta.csv"),
            "--out", str(d / "out.safetensors"), *extra]


BAD = {  # name: (argv from the inputs folder, what the one line must name)
    "batch-size 0": (lambda d: images(d, "--batch-size", "0"), "--batch-size"),
    "save-every negative": (lambda d: images(d, "--save-every", "-1"), "--save-every"),
    "workers 0": (lambda d: images(d, "--workers", "0"), "--workers"),
    "timeout negative": (lambda d: from_metadata(d, "--timeout", "-1"), "--timeout"),
    "timeout 0": (lambda d: from_metadata(d, "--timeout", "0"), "--timeout"),
    "timeout nan": (lambda d: from_metadata(d, "--timeout", "nan"), "--timeout"),
    "timeout inf": (lambda d: from_metadata(d, "--timeout", "inf"), "--timeout"),
    "retries negative": (lambda d: from_metadata(d, "--retries", "-1"), "--retries"),
    "device nonsense": (lambda d: images(d, "--device", "banana"), "device='banana'"),
    "images missing": (lambda d: images(d)[:4] + [str(d / "nope")] + images(d)[5:], "nope"),
    "images is a file": (lambda d: images(d)[:4] + [str(d / "a_file")] + images(d)[5:], "a_file"),
    "items missing": (lambda d: images(d, "--items", str(d / "missing.txt")), "missing.txt"),
    "items.json not json": (lambda d: images(d, "--items", str(d / "run_bad_json")), "items.json"),
    "items.json binary": (lambda d: images(d, "--items", str(d / "run_binary")), "items.json"),
    "id-map a folder": (lambda d: images(d, "--id-map", str(d / "img")), "img"),
    "id-map too deep": (lambda d: images(d, "--id-map", str(d / "deep.json")), "deep.json"),
    "out folder missing": (lambda d: images(d, "--out", str(d / "no" / "out.safetensors")), "out.safetensors"),
    "out is a folder": (lambda d: images(d, "--out", str(d / "folder.safetensors")), "folder.safetensors"),
    "out not safetensors": (lambda d: images(d, "--out", str(d / "out.npy")), "--out"),
    "out corrupt (resume)": (lambda d: images(d, "--out", str(d / "corrupt.safetensors")), "corrupt.safetensors"),
    "report folder missing": (lambda d: images(d, "--report", str(d / "no" / "r.json")), "r.json"),
    "metadata missing": (lambda d: from_metadata(d)[:4] + [str(d / "none.csv")] + from_metadata(d)[5:],
                         "none.csv"),
    "model is a file": (lambda d: images(d)[:2] + [str(d / "a_file")] + images(d)[3:], "a_file"),
    "cache is a file": (lambda d: from_metadata(d, "--cache", str(d / "a_file")), "--cache"),
    "key-col unknown": (lambda d: from_metadata(d, "--key-col", "sku"), "sku"),
    "text batch-size 0": (lambda d: text(d, "--batch-size", "0"), "--batch-size"),
    "text fields empty": (lambda d: text(d, "--fields", " , "), "--fields"),
    "text field unknown": (lambda d: text(d, "--fields", "colour"), "colour"),
    "text metadata is a folder": (lambda d: text(d)[:4] + [str(d / "img")] + text(d)[5:], "img"),
    "attributes dim 0": (lambda d: ["attributes", "--data", str(d / "Toy.txt"), "--dim", "0",
                                    "--out", str(d / "out.safetensors")], "--dim"),
    "attributes json bad": (lambda d: ["attributes", "--data", str(d / "bad.json"),
                                       "--out", str(d / "out.safetensors")], "bad.json"),
    "table input missing": (lambda d: ["table", "--input", str(d / "gone.npz"),
                                       "--out", str(d / "out.safetensors")], "gone.npz"),
    "table npz corrupt": (lambda d: ["table", "--input", str(d / "bad.npz"),
                                     "--out", str(d / "out.safetensors")], "bad.npz"),
    "table npy corrupt": (lambda d: ["table", "--input", str(d / "bad.npy"),
                                     "--out", str(d / "out.safetensors")], "bad.npy"),
    "table npy without ids": (lambda d: ["table", "--input", str(d / "noids.npy"),
                                         "--out", str(d / "out.safetensors")], "noids"),
    "table unknown format": (lambda d: ["table", "--input", str(d / "meta.csv"),
                                        "--out", str(d / "out.safetensors")], "meta.csv"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_exit_2(name, inputs, capsys):
    from nanorec.cli import main as cli

    d = inputs["dir"]
    argv, named = BAD[name]
    before = sorted(p.name for p in d.iterdir())
    corrupt = (d / "corrupt.safetensors").read_bytes()
    rc = cli(["embed", *argv(d), "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("nanorec embed: error: ") and named in lines[0], lines[0]
    # nothing written: no table, no report, no temp file, the old table untouched
    assert sorted(p.name for p in d.iterdir()) == before
    assert (d / "corrupt.safetensors").read_bytes() == corrupt
