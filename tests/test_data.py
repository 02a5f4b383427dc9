import json

import numpy as np
import polars as pl
import pytest

from nanorec.data import DataError, Sequences, load, split
from tests.conftest import shared_file


def write_txt(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_s3rec_txt_and_leave_one_out(tmp_path):
    p = write_txt(tmp_path / "Toy.txt", ["1 10 11 12 13", "2 11 12 14", "3 10 14"])
    (tmp_path / "Toy_item2attributes.json").write_text(json.dumps({"10": [1]}))
    ds = load(p)
    assert ds.kind == "s3rec" and ds.num_items == 5
    assert ds.item_ids[1:].tolist() == [10, 11, 12, 13, 14]
    assert ds.attributes_path.endswith("Toy_item2attributes.json")
    idx = ds.item_index()
    sp = split(ds)
    # user 1: train 10 11, valid history 10 11 -> 12, test history 10 11 12 -> 13
    assert [ds.item_ids[i] for i in sp.train[0]] == [10, 11]
    assert ds.item_ids[sp.valid.targets[0]] == 12 and ds.item_ids[sp.test.targets[0]] == 13
    assert [ds.item_ids[i] for i in sp.test.histories[0]] == [10, 11, 12]
    # user 3 (two items): no validation (empty history), test history [10] -> 14
    assert 2 not in sp.valid.users.tolist()
    t3 = sp.test.users.tolist().index(2)
    assert sp.test.histories[t3].tolist() == [idx[10]] and sp.test.targets[t3] == idx[14]
    # all_data: training also sees the validation target, never the test one
    sp_all = split(ds, all_data=True)
    assert [ds.item_ids[i] for i in sp_all.train[0]] == [10, 11, 12]


def test_csv_orders_by_timestamp_and_keeps_ties_in_file_order(tmp_path):
    p = tmp_path / "log.csv"
    pl.DataFrame({"uid": ["b", "a", "a", "a", "b"], "sku": ["x", "z", "y", "w", "y"],
                  "ts": [5, 3, 1, 3, 1]}).write_csv(p)
    ds = load(str(p), user_col="uid", item_col="sku", time_col="ts")
    assert ds.user_ids.tolist() == ["b", "a"]  # order of first appearance
    items = lambda u: [ds.item_ids[i] for i in ds.sequences[u]]
    assert items(0) == ["y", "x"]
    assert items(1) == ["y", "z", "w"]  # z and w tie at ts=3: file order


def test_parquet_with_dates(tmp_path):
    p = tmp_path / "log.parquet"
    pl.DataFrame({"user_id": [1, 1, 2], "item_id": [7, 8, 7],
                  "timestamp": ["2024-01-02", "2024-01-01", "2024-01-03"]}).write_parquet(p)
    ds = load(str(p))
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [8, 7]


def test_challenge_folder_item_zero_is_a_real_item(tmp_path):
    pl.DataFrame({"user_id": [0, 0, 1, 1], "item_id": [0, 3, 3, 0], "rating": [5] * 4,
                  "timestamp": [1, 2, 1, 2]}).write_csv(tmp_path / "train.csv")
    pl.DataFrame({"user_id": [0, 1, 9], "predictions": ["0"] * 3}).write_csv(tmp_path / "test.csv")
    ds = load(str(tmp_path))
    assert ds.kind == "challenge" and not ds.has_test_targets
    assert ds.item_ids[1:].tolist() == [0, 3]  # original id 0 -> index 1, never padding
    assert ds.sequences.items.min() == 1
    assert ds.test_users.tolist() == [0, 1, 9]
    sp = split(ds)
    assert sp.test is None
    assert sp.valid.targets.tolist() == [2, 1]  # last train.csv item of each user
    assert split(ds, all_data=True).train.lengths.tolist() == [2, 2]


def test_sequences_helpers():
    s = Sequences.from_lists([[1, 2, 3], [], [4, 5]])
    assert s.drop_last(1).to_lists() == [[1, 2], [], [4]]
    assert s.drop_last(5).to_lists() == [[], [], []]
    assert s.take(np.array([2, 0])).to_lists() == [[4, 5], [1, 2, 3]]


def test_bad_txt_line_names_file_and_line(tmp_path):
    p = write_txt(tmp_path / "Bad.txt", ["1 2 3", "2 4 x5"])
    with pytest.raises(DataError, match=r"Bad.txt:2: field 3 is 'x5'"):
        load(p)


def test_beauty_matches_published_statistics():
    ds = load(shared_file("beauty", "Beauty.txt"))
    assert (len(ds.user_ids), ds.num_items, len(ds.sequences.items)) == (22363, 12101, 198502)
    assert ds.item_ids[1:].tolist() == list(range(1, 12102))  # ids 1..N map to themselves
