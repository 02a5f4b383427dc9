"""Content tables: formats, alignment to the vocabulary, attributes, content kNN, `nanorec embed`."""
import json
import os

import numpy as np
import pytest
import torch

from nanorec.methods.knn import ContentKNN
from nanorec.content.tables import (align, attribute_table, coverage_line, load_content, load_table,
                             save_table, table_metadata)
from nanorec.data import DataError, EvalSet, Sequences
from nanorec.evaluation.metrics import evaluate


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -----------------------------------------------------------------------------
# safetensors round trip, formats

def test_round_trip_int_ids(tmp_path):
    path = str(tmp_path / "t.safetensors")
    vecs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    save_table(path, [10, 0, 7], vecs, {"model": "m"})  # 0 is a real original id
    ids, got = load_table(path)
    assert ids.dtype == np.int64 and ids.tolist() == [10, 0, 7]
    np.testing.assert_array_equal(got, vecs)
    assert table_metadata(path)["model"] == "m"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no temp file left behind


def test_round_trip_string_ids(tmp_path):
    path = str(tmp_path / "t.safetensors")
    vecs = np.eye(3, dtype=np.float32)
    save_table(path, ["B00X", "0123", "B01Y"], vecs)
    ids, got = load_table(path)
    assert ids.tolist() == ["B00X", "0123", "B01Y"]  # leading zero kept
    np.testing.assert_array_equal(got, vecs)


def test_save_rejects_duplicates_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError):
        save_table(str(tmp_path / "a.safetensors"), [1, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError):
        save_table(str(tmp_path / "a.safetensors"), [1, 2], np.zeros((3, 2)))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_table_gets_umask_permissions_and_replaces_atomically(tmp_path, umask, mode):
    path = tmp_path / "t.safetensors"
    old = os.umask(umask)
    try:
        save_table(str(path), [1], np.ones((1, 2)))
        save_table(str(path), [1, 2], np.ones((2, 2)))  # over the old one
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == mode  # 0666 & ~umask, as open() would, not mkstemp's 0600
    assert load_table(str(path))[0].tolist() == [1, 2]
    assert os.listdir(tmp_path) == ["t.safetensors"]  # no temp file left


def test_save_table_into_a_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        save_table(str(tmp_path / "no" / "t.safetensors"), [1], np.ones((1, 2)))
    assert os.listdir(tmp_path) == []


def test_npy_with_sibling_ids_and_npz(tmp_path):
    vecs = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.save(tmp_path / "v.npy", vecs)
    with pytest.raises(DataError, match="v.ids.npy"):
        load_table(str(tmp_path / "v.npy"))
    (tmp_path / "v.ids.txt").write_text("5\n3\n9\n")
    ids, got = load_table(str(tmp_path / "v.npy"))
    assert ids.tolist() == [5, 3, 9]
    np.testing.assert_array_equal(got, vecs)
    np.savez(tmp_path / "w.npz", ids=np.array(["a", "b", "c"]), vectors=vecs)
    ids, got = load_table(str(tmp_path / "w.npz"))
    assert ids.tolist() == ["a", "b", "c"]


def test_parquet_list_column_and_wide_columns(tmp_path):
    import polars as pl

    pl.DataFrame({"item_id": [4, 2], "embedding": [[1.0, 2.0], [3.0, 4.0]]}).write_parquet(tmp_path / "a.parquet")
    ids, vecs = load_table(str(tmp_path / "a.parquet"))
    assert ids.tolist() == [4, 2] and vecs.tolist() == [[1, 2], [3, 4]]
    pl.DataFrame({"parent_asin": ["X", "Y"], "d0": [1.0, 3.0], "d1": [2, 4]}).write_parquet(tmp_path / "b.parquet")
    ids, vecs = load_table(str(tmp_path / "b.parquet"))
    assert ids.tolist() == ["X", "Y"] and vecs.tolist() == [[1, 2], [3, 4]]
    pl.DataFrame({"sku": [1], "d0": [1.0]}).write_parquet(tmp_path / "c.parquet")
    with pytest.raises(DataError, match="no id column"):
        load_table(str(tmp_path / "c.parquet"))


def test_bad_tables_are_data_errors(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not a table")
    with pytest.raises(DataError, match="x.safetensors"):
        load_table(str(tmp_path / "x.safetensors"))
    np.savez(tmp_path / "n.npz", ids=np.array([1, 2]), vectors=np.array([[1.0], [np.nan]]))
    with pytest.raises(DataError, match="NaN"):
        load_table(str(tmp_path / "n.npz"))
    with pytest.raises(DataError, match="unknown table format"):
        (tmp_path / "t.csv").write_text("a\n")
        load_table(str(tmp_path / "t.csv"))


# -----------------------------------------------------------------------------
# alignment

def test_align_places_rows_and_reports_coverage():
    item_ids = np.array([-1, 0, 5, 9, 11], dtype=np.int64)  # index 0 = padding; original id 0 is real
    ids = np.array([9, 0, 42])                              # 42 is not in the vocabulary
    vecs = np.array([[1, 1], [2, 2], [3, 3]], dtype=np.float32)
    table, has, report = align(ids, vecs, item_ids)
    assert table.shape == (5, 2) and table.dtype == np.float32
    assert has.tolist() == [False, True, False, True, False]
    assert table[1].tolist() == [2, 2] and table[3].tolist() == [1, 1]
    assert table[0].tolist() == [0, 0] and table[2].tolist() == [0, 0]
    assert report["covered"] == 2 and report["missing"] == 2 and report["unused_rows"] == 1
    line = coverage_line(report, "t")
    assert "2 of 4 items (50.0%)" in line and "1 table rows are not in the vocabulary" in line


def test_align_compares_as_strings_when_types_differ():
    item_ids = np.array([-1, 3, 7], dtype=np.int64)
    table, has, report = align(np.array(["7", "B00"], dtype=object), np.eye(2, dtype=np.float32), item_ids)
    assert has.tolist() == [False, False, True] and table[2].tolist() == [1, 0]
    item_ids = np.array(["", "A", "B"], dtype=object)
    _, has, _ = align(np.array(["B"], dtype=object), np.ones((1, 3)), item_ids)
    assert has.tolist() == [False, False, True]


def test_load_content_returns_tensor_pairs(tmp_path):
    item_ids = np.array([-1, 1, 2, 3], dtype=np.int64)
    a, b = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    save_table(a, [1, 3], np.ones((2, 4)))
    save_table(b, ["2"], np.ones((1, 6)))
    lines = []
    pairs = load_content(f"{a}, {b}", item_ids, log=lines.append)
    assert [tuple(t.shape) for t, _ in pairs] == [(4, 4), (4, 6)]
    assert pairs[0][0].dtype == torch.float32 and pairs[0][1].dtype == torch.bool
    assert pairs[0][1].tolist() == [False, True, False, True] and pairs[1][1].tolist() == [False, False, True, False]
    assert len(lines) == 2 and "2 of 3 items" in lines[0]
    save_table(str(tmp_path / "c.safetensors"), [99], np.ones((1, 2)))
    with pytest.raises(DataError, match="none of its"):
        load_content(str(tmp_path / "c.safetensors"), item_ids)


# -----------------------------------------------------------------------------
# attributes: TF-IDF multi-hot + truncated SVD

def test_attribute_table_tfidf_svd(tmp_path):
    attrs = {"1": [10, 20], "2": [10, 20], "3": [10, 30], "4": [40], "5": [10], "99": [50]}
    path = tmp_path / "x_item2attributes.json"
    path.write_text(json.dumps(attrs))
    item_ids = np.array([-1, 1, 2, 3, 4, 5, 6], dtype=np.int64)  # item 6 has no attributes, 99 is unknown
    ids, vecs = attribute_table(str(path), item_ids, dim=64)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert vecs.dtype == np.float32 and vecs.shape[0] == 5 and vecs.shape[1] <= 4  # rank-limited
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sim = vecs @ vecs.T
    assert sim[0, 1] == pytest.approx(1.0, abs=1e-5)     # same attributes, same vector
    assert abs(sim[0, 3]) < 1e-5                          # nothing shared: orthogonal (full rank kept)
    # IDF: sharing the rare 20 (item 1 vs 2) beats sharing only the common 10 (1 vs 3)
    assert sim[0, 2] < sim[0, 1] and sim[0, 2] > 0
    # with the full rank kept, the SVD vectors have exactly the TF-IDF cosines
    m = 5
    idf = {a: np.log((1 + m) / (1 + df)) + 1 for a, df in {10: 4, 20: 2, 30: 1, 40: 1}.items()}
    v1, v3 = np.array([idf[10], idf[20], 0]), np.array([idf[10], 0, idf[30]])
    assert sim[0, 2] == pytest.approx(v1 @ v3 / np.linalg.norm(v1) / np.linalg.norm(v3), abs=1e-5)
    # reduced dimension: still unit rows, deterministic
    ids2, low = attribute_table(str(path), item_ids, dim=2)
    assert low.shape == (5, 2)
    np.testing.assert_array_equal(low, attribute_table(str(path), item_ids, dim=2)[1])


def test_attribute_table_bad_json(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"1": [1, 2],\n "2": oops}')
    with pytest.raises(DataError, match=r"a.json:2"):
        attribute_table(str(p), None)
    p.write_text('{"1": 5}')
    with pytest.raises(DataError, match="list of attribute ids"):
        attribute_table(str(p), None)


# -----------------------------------------------------------------------------
# content kNN

def knn_fixture(n=50, d=8, seed=0):
    rng = np.random.default_rng(seed)
    table = np.zeros((n + 1, d), np.float32)
    table[1:] = unit(rng.standard_normal((n, d)))
    has = np.ones(n + 1, bool)
    has[0] = False
    return table, has


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_knn_ranks_true_nearest_neighbour_first(index):
    table, has = knn_fixture()
    train = Sequences.from_lists([[1, 2, 3], [4, 5]])
    knn = ContentKNN((table, has), index=index, neighbours=20, ivf_lists=4, nprobe=4).fit(train, 50)
    hist = Sequences.from_lists([[7, 12], [30]])
    scores = knn(hist, np.array([0, 1]))
    assert scores.shape == (2, 51)
    for row, last in enumerate([12, 30]):
        sims = table[1:] @ table[last]
        sims[last - 1] = -np.inf                 # the item itself is excluded by the evaluator anyway
        true_nn = int(np.argmax(sims)) + 1
        s = scores[row].copy()
        s[last] = -np.inf
        assert int(np.argmax(s)) == true_nn
        assert s[true_nn] == pytest.approx(float(table[true_nn] @ table[last]), abs=1e-5)


def test_knn_mean_of_last_items_missing_content_and_fallback():
    table, has = knn_fixture(n=10, d=4)
    has[5] = False                                      # item 5 has no content: never retrieved
    table[5] = 0
    train = Sequences.from_lists([[9, 9, 9, 8, 8]])
    knn = ContentKNN((table, has), last=2, neighbours=3).fit(train, 10)
    hist = Sequences.from_lists([[1, 2, 5], [5]])      # user 0: last two WITH content are 1 and 2
    scores = knn(hist, np.array([0, 1]))
    q = (table[1] + table[2]) / 2                      # mean of the last two content vectors
    sims = table @ q
    sims[~has] = -np.inf
    top = np.argsort(-sims)[:3]
    np.testing.assert_allclose(scores[0, top], sims[top], atol=1e-5)
    assert set(np.argsort(-scores[0])[:3].tolist()) == set(top.tolist())
    assert scores[0, 5] < -2                           # no content: below every neighbour
    # user 1 has no item with content: popularity ranking (9, then 8)
    assert np.argsort(-scores[1])[:2].tolist() == [9, 8]
    # the evaluator takes the scorer as is
    target = next(int(i) for i in top if i not in (1, 2))  # the best neighbour outside the history
    ev = EvalSet(np.array([0]), Sequences.from_lists([[1, 2]]), np.array([target]))
    m = evaluate(knn, ev)
    assert m["users"] == 1 and m["MRR@5"] == 1.0
    none = ContentKNN((table, has), fallback="none", neighbours=3).fit(train, 10)
    assert np.isinf(none(hist, np.array([0, 1]))[1]).all()


def test_knn_from_table_path_needs_vocabulary(tmp_path):
    path = str(tmp_path / "t.safetensors")
    save_table(path, [10, 20, 30], unit(np.random.default_rng(1).standard_normal((3, 4))))
    with pytest.raises(ValueError, match="item_ids"):
        ContentKNN(path)
    knn = ContentKNN(path, item_ids=np.array([-1, 10, 20, 30, 40])).fit(Sequences.from_lists([[1]]), 4)
    assert knn.has_content.tolist() == [False, True, True, True, False]


# -----------------------------------------------------------------------------
# `nanorec embed attributes` / `table`

def test_cli_attributes_and_table(tmp_path, capsys):
    from nanorec.cli import main

    (tmp_path / "Toy.txt").write_text("1 1 2 3\n2 2 3 4\n3 4 1 2\n")
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps({"1": [1, 2], "2": [2], "3": [3], "9": [4]}))
    out = str(tmp_path / "attr.safetensors")
    assert main(["embed", "attributes", "--data", str(tmp_path / "Toy.txt"), "--out", out]) == 0
    text = capsys.readouterr().out
    assert "3 of 4 items (75.0%)" in text
    ids, vecs = load_table(out)
    assert ids.tolist() == [1, 2, 3]

    np.save(tmp_path / "v.npy", np.ones((2, 3), np.float32))
    np.save(tmp_path / "v.ids.npy", np.array([4, 77]))
    out2 = str(tmp_path / "v.safetensors")
    assert main(["embed", "table", "--input", str(tmp_path / "v.npy"), "--items", str(tmp_path / "Toy.txt"),
                 "--out", out2, "--l2"]) == 0
    assert "1 of 4 items" in capsys.readouterr().out
    np.testing.assert_allclose(np.linalg.norm(load_table(out2)[1], axis=1), 1.0, rtol=1e-6)
    # bad input: one line, exit 2
    assert main(["embed", "table", "--input", str(tmp_path / "nope.npy"), "--out", out2]) == 2
    assert "nope.npy: no such file" in capsys.readouterr().err


def test_items_from_run_dir(tmp_path):
    from nanorec.commands.embed import read_vocabulary

    run = tmp_path / "run"
    run.mkdir()
    (run / "items.json").write_text(json.dumps([None, 0, 5, 9]))
    vocab = read_vocabulary(str(run))
    assert vocab.item_ids.tolist() == [-1, 0, 5, 9] and vocab.resolve("0") == 0 and vocab.resolve("1") is None
    (run / "items.json").write_text(json.dumps([None, "B0A", "B0B"]))
    assert read_vocabulary(str(run)).item_ids.tolist() == ["", "B0A", "B0B"]
