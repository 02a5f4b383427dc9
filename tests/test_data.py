import json
from pathlib import Path

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


# -----------------------------------------------------------------------------
# bad inputs: one DataError (or UsageError) line naming the file, row, column, value

import gzip  # noqa: E402
import os  # noqa: E402

import pyarrow as pa  # noqa: E402

from nanorec.data import UsageError, from_frame  # noqa: E402


def write_bytes(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def parquet(path, **columns):
    pl.DataFrame(columns).write_parquet(path)
    return str(path)


def challenge(d, train="user_id,item_id,rating,timestamp\n1,0,5,10\n1,3,4,11\n2,3,3,12\n", test=None):
    (d / "chal").mkdir()
    write_bytes(d / "chal" / "train.csv", train)
    if test is not None:
        write_bytes(d / "chal" / "test.csv", test)
    return str(d / "chal")


HEAD = "user_id,item_id,timestamp\n"
ROWS_10K = "".join(f"{i % 50},{i % 7},{i}\n" for i in range(10_001))  # past polars' type inference

# name -> builder(tmp_path) -> (thunk, [strings the one-line message must contain])
BAD = {
    # 1. S3-Rec .txt
    "txt_binary": lambda d: (lambda: load(write_bytes(d / "Bin.txt", b"1 2\n\xff\xfe\x00" + os.urandom(64))),
                             ["Bin.txt:2", "not UTF-8", "0xff"]),
    "txt_random_bytes": lambda d: (lambda: load(write_bytes(d / "Rnd.txt", b"\xc3" + os.urandom(256))),
                                   ["Rnd.txt:", "not UTF-8"]),
    # 2. ids beyond int64
    "txt_id_beyond_int64": lambda d: (lambda: load(write_bytes(d / "Big.txt", "1 2 3\n2 5 99999999999999999999\n")),
                                      ["Big.txt:2", "field 3", "'99999999999999999999'", "int64"]),
    "txt_user_beyond_int64": lambda d: (lambda: load(write_bytes(d / "Big.txt", "-99999999999999999999 5\n")),
                                        ["Big.txt:1", "field 1", "int64"]),
    "txt_unicode_digit": lambda d: (lambda: load(write_bytes(d / "Uni.txt", "1 2 \u0663\n")),
                                    ["Uni.txt:1", "field 3", "expected an integer id"]),
    "txt_underscore_id": lambda d: (lambda: load(write_bytes(d / "U.txt", "1 2\n2 1_000\n")),
                                    ["U.txt:2", "field 2", "'1_000'"]),
    "txt_user_twice": lambda d: (lambda: load(write_bytes(d / "Dup.txt", "1 2\n2 3\n1 4\n")),
                                 ["Dup.txt:3", "user id 1", "line 1"]),
    "csv_id_beyond_int64": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1\n2,99999999999999999999,2\n")),
                                      ["log.csv:3", "'item_id'", "99999999999999999999", "int64"]),
    "csv_id_beyond_int128": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1\n9" + "9" * 45 + ",5,2\n")),
                                       ["log.csv:3", "'user_id'", "int64"]),
    "csv_id_beyond_int64_after_10k_rows": lambda d: (
        lambda: load(write_bytes(d / "log.csv", HEAD + ROWS_10K + "3,99999999999999999999,5\n")),
        ["log.csv:10003", "'item_id'", "'99999999999999999999'", "int64"]),
    "parquet_uint64_beyond_int64": lambda d: (
        lambda: load(parquet(d / "log.parquet", user_id=pl.Series([1, 2**64 - 1], dtype=pl.UInt64),
                             item_id=[1, 2], timestamp=[1, 2])),
        ["log.parquet: row 1 (from 0)", "'user_id'", "18446744073709551615", "int64"]),
    # 3. nested id columns
    "parquet_list_item_ids": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 2], item_id=[[1, 2], [3]],
                                                             timestamp=[1, 2])),
                                        ["log.parquet", "'item_id'", "List(Int64)"]),
    "parquet_struct_user_ids": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[{"a": 1}, {"a": 2}],
                                                               item_id=[1, 2], timestamp=[1, 2])),
                                          ["log.parquet", "'user_id'", "Struct"]),
    # 4. garbage timestamps
    "parquet_time_not_a_date": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 1, 2], item_id=[1, 2, 3],
                                                               timestamp=["2024-01-01", "soon", "2024-01-03"])),
                                          ["log.parquet: row 1 (from 0)", "'timestamp'", "'soon'", "'2024-01-01'"]),
    "parquet_time_all_words": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 2], item_id=[1, 2],
                                                              timestamp=["later", "soon"])),
                                         ["log.parquet: row 0 (from 0)", "'later'", "expected a number or a date"]),
    "parquet_time_null": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 1, 2], item_id=[1, 2, 3],
                                                         timestamp=[1, 2, None])),
                                    ["log.parquet: row 2 (from 0)", "'timestamp'", "empty"]),
    "parquet_time_nan": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 1], item_id=[1, 2],
                                                        timestamp=[1.5, float("nan")])),
                                   ["log.parquet: row 1 (from 0)", "'timestamp'", "nan", "finite"]),
    "parquet_time_inf": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 1], item_id=[1, 2],
                                                        timestamp=[float("inf"), 1.0])),
                                   ["log.parquet: row 0 (from 0)", "inf", "finite"]),
    "parquet_time_bool": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1], item_id=[1], timestamp=[True])),
                                    ["log.parquet", "'timestamp'", "Boolean"]),
    "csv_time_not_a_date": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,2024-01-02\n2,5,yesterday\n")),
                                      ["log.csv:3", "'timestamp'", "'yesterday'"]),
    "csv_time_nan": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1.5\n2,5,NaN\n")),
                               ["log.csv:3", "'timestamp'", "finite"]),
    # 5. float, NaN and boolean ids
    "parquet_nan_item_id": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 2], item_id=[1.0, float("nan")],
                                                           timestamp=[1, 2])),
                                      ["log.parquet: row 1 (from 0)", "'item_id'", "nan", "not a number"]),
    "parquet_fractional_id": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1.0, 2.5], item_id=[1, 2],
                                                             timestamp=[1, 2])),
                                        ["log.parquet: row 1 (from 0)", "'user_id'", "2.5", "whole number"]),
    "parquet_inf_id": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 2], item_id=[float("-inf"), 2.0],
                                                      timestamp=[1, 2])),
                                 ["log.parquet: row 0 (from 0)", "-inf"]),
    "parquet_huge_float_id": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 2], item_id=[1e20, 2.0],
                                                             timestamp=[1, 2])),
                                        ["log.parquet: row 0 (from 0)", "int64"]),
    "csv_nan_id": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5.0,1\n2,NaN,2\n")),
                             ["log.csv:3", "'item_id'", "nan"]),
    "csv_bool_ids": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "true,5,1\nfalse,6,2\n")),
                               ["log.csv", "'user_id'", "Boolean"]),
    "frame_nan_id": lambda d: (lambda: load(pl.DataFrame({"user_id": [1, 2, 3], "item_id": [1.0, 2.0, float("nan")],
                                                          "timestamp": [1, 2, 3]})),
                               ["<dataframe>: row 2 (from 0)", "'item_id'", "nan"]),
    # 6. challenge test.csv
    "challenge_test_header_only": lambda d: (lambda: load(challenge(d, test="user_id,predictions\n")),
                                             ["test.csv", "no users"]),
    "challenge_test_duplicate_user": lambda d: (lambda: load(challenge(d, test="user_id,predictions\n1,0\n2,0\n1,0\n")),
                                                ["test.csv:4", "user_id 1", "appears again", "line 2"]),
    "challenge_filter_option": lambda d: (lambda: load(challenge(d), filter="rating=5"),
                                          ["filter='rating=5'", "challenge folder"]),
    # 7. event logs: columns, separators, formats, filter, weights
    "missing_item_column": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id,sku,timestamp\n1,5,1\n")),
                                      ["log.csv", "missing column 'item_id'", "user_id, sku, timestamp"]),
    "missing_time_column": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id,item_id,ts\n1,5,1\n")),
                                      ["log.csv", "missing time column 'timestamp'", "user_id, item_id, ts",
                                       "time_col=none"]),
    "tsv_named_csv": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id\titem_id\ttimestamp\n1\t5\t1\n")),
                                ["log.csv", "header has tabs but no commas", "name it .tsv"]),
    "semicolons_in_csv": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id;item_id;timestamp\n1;5;1\n")),
                                    ["log.csv", "header has semicolons but no commas"]),
    "csv_named_tsv": lambda d: (lambda: load(write_bytes(d / "log.tsv", HEAD + "1,5,1\n")),
                                ["log.tsv", "header has commas but no tabs", "name it .csv"]),
    "csv_gz_not_gzip": lambda d: (lambda: load(write_bytes(d / "log.csv.gz", HEAD + "1,5,1\n")),
                                  ["log.csv.gz", "gzip"]),
    "csv_not_utf8": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD.encode() + b"1,5,1\n2,\xe9t\xe9,2\n")),
                               ["log.csv:3", "not UTF-8", "0xe9"]),
    "filter_syntax": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1\n"), filter="purchase"),
                                ["filter='purchase'", "column=value"]),
    "filter_unknown_column": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1\n"), filter="kind=buy"),
                                        ["log.csv", "missing filter column 'kind'", "user_id, item_id, timestamp"]),
    "filter_matches_nothing": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id,item_id,timestamp,ev\n1,5,1,view\n"),
                                                      filter="ev=buy"),
                                         ["log.csv", "no interactions left", "'view'"]),
    "weight_column_missing": lambda d: (lambda: load(write_bytes(d / "log.csv", HEAD + "1,5,1\n"), weight_col="qty"),
                                        ["log.csv", "missing weight column 'qty'"]),
    "weight_not_a_number": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id,item_id,timestamp,w\n1,5,1,2\n1,6,2,abc\n"),
                                                   weight_col="w"),
                                      ["log.csv:3", "'w'", "'abc'", "number"]),
    "weight_nan": lambda d: (lambda: load(parquet(d / "log.parquet", user_id=[1, 1], item_id=[1, 2], timestamp=[1, 2],
                                                  w=[1.0, float("nan")]), weight_col="w"),
                             ["log.parquet: row 1 (from 0)", "'w'", "finite"]),
    "weight_all_zero": lambda d: (lambda: load(write_bytes(d / "log.csv", "user_id,item_id,timestamp,w\n1,5,1,0\n"),
                                               weight_col="w"),
                                  ["log.csv", "<= 0"]),
    "weight_on_txt": lambda d: (lambda: load(write_bytes(d / "T.txt", "1 2 3\n"), weight_col="w"),
                                ["weight_col='w'", "T.txt"]),
    "folder_without_data": lambda d: (lambda: (d / "empty").mkdir() or load(str(d / "empty")),
                                      ["empty", "train.csv", ".parquet"]),
    "parquet_folder_columns_differ": lambda d: (lambda: load(parquet_folder(d, [{"user_id": [1], "item_id": [1], "timestamp": [1]},
                                                                                {"user_id": [1], "sku": [1], "timestamp": [1]}])),
                                                ["part-1.parquet", "sku", "differ", "part-0.parquet"]),
    "parquet_folder_bad_row_names_its_file": lambda d: (
        lambda: load(parquet_folder(d, [{"user_id": [1, 2], "item_id": [1.0, 2.0], "timestamp": [1, 2]},
                                        {"user_id": [3, 4], "item_id": [3.0, 3.5], "timestamp": [3, 4]}])),
        ["part-1.parquet: row 1 (from 0)", "'item_id'", "3.5"]),
    "unknown_object": lambda d: (lambda: load(42), ["load", "int"]),
}


def parquet_folder(d, frames):
    folder = d / "parts"
    folder.mkdir()
    for i, cols in enumerate(frames):
        pl.DataFrame(cols).write_parquet(folder / f"part-{i}.parquet")
    (folder / "_SUCCESS").write_text("")  # Spark's marker file is not data
    return str(folder)


# cases with one bad line or row by construction: removing the line the error names makes
# the input load, so the line number points at the culprit (not at its neighbour, nor the header)
ONE_BAD_ROW = ["txt_id_beyond_int64", "txt_underscore_id", "txt_user_twice", "csv_id_beyond_int64",
               "csv_id_beyond_int128", "csv_id_beyond_int64_after_10k_rows", "csv_time_not_a_date", "csv_time_nan",
               "csv_nan_id", "csv_not_utf8", "weight_not_a_number", "challenge_test_duplicate_user",
               "parquet_uint64_beyond_int64", "parquet_time_not_a_date", "parquet_time_null", "parquet_time_nan",
               "parquet_nan_item_id", "parquet_fractional_id", "parquet_inf_id", "parquet_huge_float_id",
               "weight_nan", "parquet_folder_bad_row_names_its_file"]


@pytest.mark.parametrize("name", ONE_BAD_ROW)
def test_removing_the_named_row_makes_the_input_load(name, tmp_path, monkeypatch):
    import re
    import tests.test_data as me
    calls, real_load = [], load
    monkeypatch.setattr(me, "load", lambda *a, **k: calls.append((a, k)) or real_load(*a, **k))
    thunk, _ = BAD[name](tmp_path)
    with pytest.raises(DataError) as e:
        thunk()
    text_line = re.match(r"(.+?):(\d+): ", str(e.value))
    parquet_row = re.match(r"(.+?): row (\d+) \(from 0\)", str(e.value))
    if text_line:
        path, line = text_line.group(1), int(text_line.group(2))
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        del lines[line - 1]
        write_bytes(Path(path), b"\n".join(lines))
    else:
        path, row = parquet_row.group(1), int(parquet_row.group(2))
        df = pl.read_parquet(path)
        pl.concat([df[:row], df[row + 1:]]).write_parquet(path)
    args, kwargs = calls[-1]
    ds = real_load(*args, **kwargs)
    assert len(ds.sequences.items) > 0


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_naming_the_place(name, tmp_path):
    thunk, mentions = BAD[name](tmp_path)
    with pytest.raises((DataError, UsageError)) as e:
        thunk()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for m in mentions:
        assert m in msg, f"{m!r} not in {msg!r}"


def test_filter_syntax_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError):
        load(write_bytes(tmp_path / "log.csv", HEAD + "1,5,1\n"), filter="=x")


# -----------------------------------------------------------------------------
# event logs: formats, frames, filter, weights, time order

EVENTS = {"user_id": [7, 3, 7, 3, 9, 7], "item_id": [100, 200, 300, 100, 200, 200],
          "timestamp": [3, 1, 1, 2, 5, 2], "price": [1.5, 2.0, 3.0, 4.0, 5.0, 6.0]}


def same(a, b):
    assert a.user_ids.tolist() == b.user_ids.tolist() and a.user_ids.dtype == b.user_ids.dtype
    assert a.item_ids.tolist() == b.item_ids.tolist() and a.item_ids.dtype == b.item_ids.dtype
    assert a.sequences.offsets.tolist() == b.sequences.offsets.tolist()
    assert a.sequences.items.tolist() == b.sequences.items.tolist()
    assert a.ignored_columns == b.ignored_columns


@pytest.fixture
def csv_log(tmp_path):
    p = tmp_path / "log.csv"
    pl.DataFrame(EVENTS).write_csv(p)
    return p


def test_csv_reports_ignored_columns_and_orders_by_time(csv_log):
    ds = load(str(csv_log))
    assert ds.ignored_columns == ["price"] and ds.weights is None
    assert ds.user_ids.tolist() == [7, 3, 9] and ds.user_ids.dtype == np.int64
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [300, 200, 100]  # ts 1, 2, 3


@pytest.mark.parametrize("fmt", ["tsv", "csv.gz", "tsv.gz", "parquet", "parquet folder"])
def test_other_formats_give_the_same_dataset(csv_log, tmp_path, fmt):
    df = pl.DataFrame(EVENTS)
    if fmt == "parquet folder":
        path = parquet_folder(tmp_path, [df[:2].to_dict(as_series=False), df[2:5].to_dict(as_series=False),
                                         df[5:].to_dict(as_series=False)])
    elif fmt == "parquet":
        path = str(tmp_path / "log.parquet")
        df.write_parquet(path)
    else:
        path = str(tmp_path / f"log.{fmt}")
        text = df.write_csv(separator="\t" if fmt.startswith("tsv") else ",").encode()
        with (gzip.open(path, "wb") if fmt.endswith(".gz") else open(path, "wb")) as f:
            f.write(text)
    ds = load(path)
    same(ds, load(str(csv_log)))
    assert ds.name == ("parts" if fmt == "parquet folder" else "log")


def test_frames_load_like_the_csv_and_keep_id_types(csv_log):
    ref = load(str(csv_log))
    polars_frame = pl.DataFrame(EVENTS)
    for frame in (polars_frame, polars_frame.to_arrow(), polars_frame.lazy()):
        ds = load(frame)
        same(ds, ref)
        assert (ds.name, ds.path) == ("dataframe", "<dataframe>")
    strings = {**EVENTS, "item_id": [f"B{i:05d}" for i in EVENTS["item_id"]], "user_id": ["u7", "u3", "u7", "u3", "u9", "u7"]}
    ds = from_frame(pa.table(strings))
    assert ds.user_ids.tolist() == ["u7", "u3", "u9"]
    assert ds.item_ids[1:].tolist() == ["B00100", "B00200", "B00300"]
    assert all(isinstance(x, str) for x in ds.item_ids[1:])


def test_pandas_frames_load_like_the_csv(csv_log):
    pd = pytest.importorskip("pandas")
    ref = load(str(csv_log))
    df = pd.DataFrame(EVENTS)
    same(load(df), ref)
    # an integer column with a gap becomes float64 in pandas: whole floats are ids again
    gap = df.astype({"item_id": "float64"})
    assert load(gap).item_ids.dtype == np.int64
    same(load(gap), ref)
    strings = df.astype({"user_id": str})
    assert load(strings).user_ids.tolist() == ["7", "3", "9"]


def test_pandas_index_and_mixed_columns_are_named():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(EVENTS).set_index("user_id")
    with pytest.raises(DataError, match=r"<dataframe>: missing column 'user_id'.*reset_index"):
        load(df)
    mixed = pd.DataFrame({**EVENTS, "item_id": [1.5, "x", 2, 3, 4, 5]})
    with pytest.raises(DataError, match=r"<dataframe>: column 'item_id' cannot be converted"):
        load(mixed)


def test_filter_and_weights(tmp_path):
    p = tmp_path / "shop.csv"
    pl.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "item_id": [10, 11, 12, 10, 13, 14],
                  "timestamp": [1, 2, 3, 1, 2, 3], "event": ["view", "purchase", "cart", "purchase", "view", "cart"],
                  "qty": [1.0, 2.0, 0.0, 3.0, 1.0, 0.5], "note": ["a"] * 6}).write_csv(p)
    ds = load(str(p), filter="event = purchase, cart")
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [11, 12]
    assert [ds.item_ids[i] for i in ds.sequences[1]] == [10, 14]
    assert ds.ignored_columns == ["qty", "note"] and ds.weights is None

    with pytest.raises(DataError, match=r"shop.csv:4: column 'qty' is '0.0', a weight <= 0"):
        load(str(p), filter="event=purchase,cart", weight_col="qty")  # a weight 0 is an error, never a silent drop
    ds = load(str(p), filter="event=purchase", weight_col="qty")  # the filter drops the weight-0 row first
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [11]
    assert [ds.item_ids[i] for i in ds.sequences[1]] == [10]
    assert ds.weights.dtype == np.float32 and ds.weights.tolist() == [2.0, 3.0]
    assert ds.weights is ds.sequences.weights and len(ds.weights) == len(ds.sequences.items)
    assert ds.ignored_columns == ["note"]
    # a filter on an integer column compares the text of the values
    ds = load(str(p), filter="item_id=10")
    assert ds.user_ids.tolist() == [1, 2] and ds.sequences.lengths.tolist() == [1, 1]


def test_weights_follow_the_chronological_order():
    frame = pl.DataFrame({"user_id": [1, 2, 1], "item_id": [5, 6, 7], "timestamp": [9, 1, 2], "w": [0.9, 0.1, 0.2]})
    ds = load(frame, weight_col="w")
    assert [ds.item_ids[i] for i in ds.sequences.items] == [7, 5, 6]
    assert np.allclose(ds.weights, [0.2, 0.9, 0.1])


def test_a_bad_row_after_a_filter_names_its_original_line(tmp_path):
    p = write_bytes(tmp_path / "log.csv",
                    "user_id,item_id,timestamp,ev\n1,5,1,view\n,6,2,view\n2,x,3,buy\n2,7,4,buy\n3,,5,cart\n")
    ds = load(p, filter="ev=buy")  # the empty user id is on a dropped row
    assert [ds.item_ids[i] for i in ds.sequences[0]] == ["x", "7"]
    with pytest.raises(DataError, match=r"log.csv:6: column 'item_id' is empty"):
        load(p, filter="ev=buy,cart")


def test_time_col_none_keeps_file_order(tmp_path):
    p = write_bytes(tmp_path / "log.csv", "user_id,item_id,when\n1,30,3\n1,10,1\n2,20,2\n1,20,2\n")
    ds = load(p, time_col="none")
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [30, 10, 20]
    assert ds.ignored_columns == ["when"]
    ds = load(p, time_col="when")
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [10, 20, 30]
    with pytest.raises(DataError, match=r"log.csv: missing time column 'timestamp' \(columns are user_id, item_id, when\)"):
        load(p)


def test_whole_float_ids_become_integers(tmp_path):
    p = parquet(tmp_path / "log.parquet", user_id=[1.0, 2.0], item_id=[3.0, 4.0], timestamp=[1, 2])
    ds = load(p)
    assert ds.user_ids.dtype == np.int64 and ds.item_ids.dtype == np.int64
    assert ds.item_ids[1:].tolist() == [3, 4]


def test_wide_integer_ids_within_int64_are_kept(tmp_path):
    big = 2**63 - 1
    ds = load(parquet(tmp_path / "log.parquet", user_id=pl.Series([1, 2], dtype=pl.UInt64),
                      item_id=pl.Series([big, 3], dtype=pl.UInt64), timestamp=[1, 2]))
    assert ds.item_ids[1:].tolist() == [3, big] and ds.item_ids.dtype == np.int64


def test_nanosecond_timestamps_keep_their_order(tmp_path):
    t = 1_700_000_000_000_000_000  # float64 cannot tell t from t + 1
    ds = load(pl.DataFrame({"user_id": [1, 1], "item_id": [5, 6], "timestamp": [t + 1, t]}))
    assert [ds.item_ids[i] for i in ds.sequences[0]] == [6, 5]


def test_late_text_row_in_a_long_csv_keeps_string_ids(tmp_path):
    p = write_bytes(tmp_path / "log.csv", HEAD + ROWS_10K + "3,B0001,10002\n")
    ds = load(p)
    assert "B0001" in ds.item_ids.tolist() and "0" in ds.item_ids.tolist()


def test_txt_with_bom_and_crlf(tmp_path):
    p = write_bytes(tmp_path / "Win.txt", b"\xef\xbb\xbf1 2 3\r\n2 3 4\r\n")
    ds = load(p)
    assert ds.user_ids.tolist() == [1, 2] and ds.num_items == 3


def test_challenge_without_test_csv_and_ignored_rating(tmp_path):
    ds = load(challenge(tmp_path))
    assert ds.test_users is None
    assert ds.ignored_columns == ["rating"]
