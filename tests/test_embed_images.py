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

from nanorec.content import load_table, table_metadata  # noqa: E402
from nanorec.embed import main  # noqa: E402
from nanorec.image_embeddings import SiglipImageEncoder, first_url  # noqa: E402


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
            "--retries", "1", "--report", rep]
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
