"""The readers' silent wrong answers of issue 17, each now the right answer or one line:
Parquet folders (one schema across files; subfolders and hive partitions read, none
skipped), day/month dates (an error unless time_format says which), and ids kept as
their exact text (005461 is not 5461; '42' and 42 are one item)."""
import contextlib
import datetime as dt
import io
import os

import numpy as np
import polars as pl
import pytest

from nanorec.config import Config, apply_overrides
from nanorec.data import DataError, UsageError, load, load_like


def items_of(ds, u):
    """User row u's history as original item ids."""
    return [ds.item_ids[i] for i in ds.sequences[u]]


def one_line_error(call, error=DataError):
    with pytest.raises(error) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# -----------------------------------------------------------------------------
# Parquet folders: one schema checked across the files

def test_folder_with_epoch_ints_in_one_file_and_datetimes_in_another_is_one_line(tmp_path):
    # Before: read as one column of int64 (epoch microseconds next to the datetimes' own
    # integer values), and the users of the second file came out in the wrong order.
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"user_id": [1, 1], "item_id": [10, 11],
                  "timestamp": [1_704_067_200, 1_704_153_600]}).write_parquet(folder / "day-1.parquet")
    pl.DataFrame({"user_id": [2, 2], "item_id": [10, 12],
                  "timestamp": [dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 2)]}).write_parquet(folder / "day-2.parquet")
    msg = one_line_error(lambda: load(str(folder)))
    for part in ("'timestamp'", "int64 in day-1.parquet", "timestamp[us] in day-2.parquet", "one type"):
        assert part in msg, msg


def test_folder_columns_of_one_kind_and_different_widths_are_one_column(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"user_id": pl.Series([1, 1], dtype=pl.Int32), "item_id": [10, 11],
                  "timestamp": pl.Series([dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 1)],
                                         dtype=pl.Datetime("ms"))}).write_parquet(folder / "a.parquet")
    pl.DataFrame({"user_id": [2, 1], "item_id": [12, 12],
                  "timestamp": pl.Series([dt.datetime(2024, 1, 1), dt.datetime(2023, 12, 31)],
                                         dtype=pl.Datetime("us"))}).write_parquet(folder / "b.parquet")
    ds = load(str(folder))
    assert ds.user_ids.tolist() == [1, 2] and ds.user_ids.dtype == np.int64
    assert items_of(ds, 0) == [12, 11, 10]  # 2023-12-31 (b), 2024-01-01 (a), 2024-01-02 (a)
    assert items_of(ds, 1) == [12]


def test_folder_with_integer_ids_in_one_file_and_text_in_another_is_one_line(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"user_id": [1], "item_id": [42], "timestamp": [1]}).write_parquet(folder / "a.parquet")
    pl.DataFrame({"user_id": [2], "item_id": ["B42"], "timestamp": [2]}).write_parquet(folder / "b.parquet")
    msg = one_line_error(lambda: load(str(folder)))
    assert "'item_id' is int64 in a.parquet but" in msg and "in b.parquet" in msg


# -----------------------------------------------------------------------------
# Parquet folders: subfolders (hive partitions) are read, never skipped

def write_hive(root):
    """12 rows in 4 files: two hive partitions, one plain subfolder, one file at the top;
    plus Spark's bookkeeping, which is not data."""
    frames = {
        "day=2024-01-01/shop=007/part-0.parquet": {"user_id": [1, 2, 3], "item_id": [10, 20, 30], "timestamp": [1, 1, 1]},
        "day=2024-01-02/shop=8/part-0.parquet": {"user_id": [1, 2, 3], "item_id": [11, 21, 31], "timestamp": [2, 2, 2]},
        "late/part-0.parquet": {"user_id": [1, 2, 3], "item_id": [12, 22, 32], "timestamp": [3, 3, 3]},
        "part-9.parquet": {"user_id": [1, 2, 3], "item_id": [13, 23, 33], "timestamp": [4, 4, 4]},
    }
    for rel, cols in frames.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(cols).write_parquet(path)
    (root / "_SUCCESS").write_text("")
    (root / "_temporary").mkdir()
    pl.DataFrame({"user_id": [9], "item_id": [99], "timestamp": [0]}).write_parquet(root / "_temporary" / "p.parquet")
    return str(root)


def test_hive_folder_reads_every_file_and_its_partition_columns(tmp_path):
    # Before: only the top folder's files were read (3 of 12 rows here).
    ds = load(write_hive(tmp_path / "events"))
    assert len(ds.sequences.items) == 12
    assert ds.user_ids.tolist() == [1, 2, 3]
    assert items_of(ds, 0) == [10, 11, 12, 13]
    assert items_of(ds, 2) == [30, 31, 32, 33]
    assert ds.ignored_columns == ["day", "shop"]


def test_hive_partition_values_keep_their_text(tmp_path):
    root = write_hive(tmp_path / "events")
    # shop=007 stays the text 007 (an integer would be 7); shop=8 is the integer 8
    assert load(root, filter="shop=007").sequences.to_lists() == [[1], [2], [3]]
    msg = one_line_error(lambda: load(root, filter="shop=7"))
    assert "no interactions left" in msg and "'007'" in msg
    ds = load(root, filter="shop=8")
    assert [ds.item_ids[i] for i in ds.sequences.items] == [11, 21, 31]


def test_hive_partition_column_as_the_time_column(tmp_path):
    root = tmp_path / "events"
    for day, items in (("2024-01-02", [5, 6]), ("2024-01-01", [7, 8])):
        (root / f"day={day}").mkdir(parents=True)
        pl.DataFrame({"user_id": [1, 2], "item_id": items}).write_parquet(root / f"day={day}" / "p.parquet")
    ds = load(str(root), time_col="day")
    assert items_of(ds, 0) == [7, 5] and items_of(ds, 1) == [8, 6]


def test_hive_partition_named_like_a_column_is_one_line(tmp_path):
    root = tmp_path / "events"
    (root / "user_id=1").mkdir(parents=True)
    pl.DataFrame({"user_id": [1], "item_id": [5], "timestamp": [1]}).write_parquet(root / "user_id=1" / "p.parquet")
    msg = one_line_error(lambda: load(str(root)))
    assert "'user_id' is both a column of the files and a folder name" in msg


def test_a_bad_row_in_a_subfolder_names_its_file(tmp_path):
    root = write_hive(tmp_path / "events")
    pl.DataFrame({"user_id": [4, None], "item_id": [1, 2], "timestamp": [1, 2]}).write_parquet(
        tmp_path / "events" / "late" / "part-1.parquet")
    msg = one_line_error(lambda: load(root))
    assert os.path.join("late", "part-1.parquet") + ": row 1 (from 0): column 'user_id' is empty" in msg


# -----------------------------------------------------------------------------
# dates: a day/month order is never guessed

DMY = {"user_id": [1, 1, 2, 2], "item_id": [10, 11, 10, 12],
       "timestamp": ["03/01/2024", "02/03/2024", "05/02/2024", "04/03/2024"]}


def write_csv(path, cols):
    pl.DataFrame(cols).write_csv(path)
    return str(path)


def test_day_month_dates_are_an_error_naming_the_column_and_a_value(tmp_path):
    # Before: read day first (3 January) where pandas reads month first (March 1).
    p = write_csv(tmp_path / "log.csv", DMY)
    msg = one_line_error(lambda: load(p))
    for part in ("log.csv:2", "'timestamp'", "'03/01/2024'", "time_format=%d/%m/%Y", "time_format=%m/%d/%Y"):
        assert part in msg, msg


def test_time_format_says_which(tmp_path):
    p = write_csv(tmp_path / "log.csv", DMY)
    day_first = load(p, time_format="%d/%m/%Y")  # 3 Jan < 2 Mar; 5 Feb < 4 Mar
    assert items_of(day_first, 0) == [10, 11] and items_of(day_first, 1) == [10, 12]
    month_first = load(p, time_format="%m/%d/%Y")  # Mar 1 > Feb 3; May 2 > Apr 3
    assert items_of(month_first, 0) == [11, 10] and items_of(month_first, 1) == [12, 10]
    cfg = apply_overrides(Config(), [f"data={p}", "time_format=%m/%d/%Y"])
    assert load_like(cfg).sequences.to_lists() == month_first.sequences.to_lists()


def test_days_above_12_name_the_order_they_show_but_are_still_not_guessed(tmp_path):
    p = write_csv(tmp_path / "log.csv", {**DMY, "timestamp": ["25/01/2024", "02/03/2024", "05/02/2024", "04/03/2024"]})
    msg = one_line_error(lambda: load(p))
    assert "'25/01/2024'" in msg and "set time_format=%d/%m/%Y (its first numbers go above 12" in msg


@pytest.mark.parametrize("values", [["2024-01-03", "2024-01-02"], ["2024-01-03T10:00:00", "2024-01-02T23:59:59"],
                                    ["2024-01-03 10:00:00+01:00", "2024-01-02 10:00:00+01:00"],
                                    ["1704240000", "1704153600"], ["1704240000.5", "1704153600"]])
def test_iso_dates_and_epoch_numbers_keep_working(tmp_path, values):
    p = write_csv(tmp_path / "log.csv", {"user_id": [1, 1], "item_id": [10, 11], "timestamp": values})
    assert items_of(load(p), 0) == [11, 10]


def test_time_format_reads_integer_dates_and_refuses_a_value_that_does_not_match(tmp_path):
    frame = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [10, 11, 12], "timestamp": [20240201, 20240103, 20240105]})
    assert items_of(load(frame, time_format="%Y%m%d"), 0) == [11, 12, 10]
    p = write_csv(tmp_path / "log.csv", {**DMY, "timestamp": ["03/01/2024", "2024-03-02", "05/02/2024", "04/03/2024"]})
    msg = one_line_error(lambda: load(p, time_format="%d/%m/%Y"))
    assert "log.csv:3" in msg and "'2024-03-02'" in msg and "does not match time_format=%d/%m/%Y" in msg


def test_time_format_where_it_cannot_apply_is_one_line(tmp_path):
    dates = pl.DataFrame({"user_id": [1], "item_id": [1], "timestamp": [dt.datetime(2024, 1, 1)]})
    assert "already holds dates" in one_line_error(lambda: load(dates, time_format="%d/%m/%Y"))
    txt = tmp_path / "Toy.txt"
    txt.write_text("1 2 3\n")
    assert "time_format" in one_line_error(lambda: load(str(txt), time_format="%d/%m/%Y"), UsageError)
    p = write_csv(tmp_path / "log.csv", DMY)
    assert "time_col=none" in one_line_error(lambda: load(p, time_col="none", time_format="%d/%m/%Y"), UsageError)
    msg = one_line_error(lambda: apply_overrides(Config(), ["time_format=dd/mm/yyyy"]), UsageError)
    assert "time_format='dd/mm/yyyy'" in msg and "strptime" in msg


def test_the_api_passes_time_format_through(tmp_path):
    from nanorec import Recommender
    days = ["03/01/2024", "02/03/2024", "05/02/2024", "04/03/2024"]
    frame = pl.DataFrame({"user_id": np.repeat([1, 2, 3], 4), "item_id": [10, 11, 12, 13] * 3, "timestamp": days * 3})
    with pytest.raises(DataError, match="time_format"):
        Recommender(method="popularity", progress=False).fit(frame, out=str(tmp_path / "a"))
    rec = Recommender(method="popularity", progress=False).fit(frame, out=str(tmp_path / "b"), time_format="%m/%d/%Y")
    assert rec.config.time_format == "%m/%d/%Y"
    assert Config.load(str(tmp_path / "b" / "config.json")).time_format == "%m/%d/%Y"


# -----------------------------------------------------------------------------
# ids: exact text, one type per column

def test_leading_zero_ids_keep_their_text_like_pandas_with_dtype_str(tmp_path):
    # Before: 005461 became the integer 5461 (another customer at recommend time).
    pd = pytest.importorskip("pandas")
    p = write_csv(tmp_path / "log.csv", {"user_id": ["005461", "5461", "+17", "005461"],
                                         "item_id": ["0042", "42", "42", " 7"], "timestamp": [1, 2, 3, 4]})
    ds = load(p)
    ref = pd.read_csv(p, dtype=str)
    assert ds.user_ids.tolist() == list(dict.fromkeys(ref["user_id"])) == ["005461", "5461", "+17"]
    assert sorted(ds.item_ids[1:].tolist()) == sorted(set(ref["item_id"])) == [" 7", "0042", "42"]
    assert items_of(ds, 0) == ["0042", " 7"]


def test_plainly_written_integer_ids_stay_integers(tmp_path):
    p = write_csv(tmp_path / "log.csv", {"user_id": [7, -3, 0], "item_id": [100, 200, 100], "timestamp": [1, 2, 3]})
    ds = load(p)
    assert ds.user_ids.dtype == np.int64 and ds.user_ids.tolist() == [7, -3, 0]
    assert ds.item_ids.dtype == np.int64 and ds.item_ids[1:].tolist() == [100, 200]
    # Parquet integer columns and S3-Rec lines are integers whatever their text was
    txt = tmp_path / "Toy.txt"
    txt.write_text("1 010 11\n")
    assert load(str(txt)).item_ids[1:].tolist() == [10, 11]


def test_numbers_in_some_rows_and_text_in_others_are_one_id_per_text(tmp_path):
    # 42 in one row and B42 in another: the column is text, and 42 is one item (not an int and a str)
    p = write_csv(tmp_path / "log.csv", {"user_id": [1, 1, 2, 2], "item_id": ["42", "B42", "42", "7"],
                                         "timestamp": [1, 2, 3, 4]})
    ds = load(p)
    assert ds.num_items == 3 and sorted(ds.item_ids[1:].tolist()) == ["42", "7", "B42"]
    assert all(isinstance(x, str) for x in ds.item_ids[1:])


def test_pandas_column_mixing_ints_and_strings_is_one_id_per_text():
    # pd.concat of a day whose skus were all numbers (int64) with a day that had letters:
    # before, an error ("cannot be converted"); 42 and '42' must be one item
    pd = pytest.importorskip("pandas")
    a = pd.DataFrame({"user_id": [1, 2], "item_id": [42, 7], "timestamp": [1, 2]})
    b = pd.DataFrame({"user_id": [2, 3], "item_id": ["42", "B1"], "timestamp": [3, 4]})
    ds = load(pd.concat([a, b], ignore_index=True))
    assert ds.num_items == 3 and sorted(ds.item_ids[1:].tolist()) == ["42", "7", "B1"]
    assert items_of(ds, 1) == ["7", "42"]


def test_string_ids_survive_the_run_folder_and_the_users_file(tmp_path):
    """Trained on 005461, a users file of 005461 finds that customer (not cold)."""
    from nanorec.cli import main as cli_main
    from nanorec.runs.rundir import read_histories, read_items
    events = write_csv(tmp_path / "events.csv", {
        "customer": ["005461"] * 4 + ["5461"] * 4 + ["000777"] * 4,
        "sku": ["0042", "0043", "42", "0042"] * 2 + ["0043", "42", "0042", "42"],
        "ts": [1, 2, 3, 4] * 3})
    run, recs = str(tmp_path / "run"), str(tmp_path / "recs.csv")
    users = write_csv(tmp_path / "users.csv", {"customer": ["005461", "000777", "777"]})
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["train", "--data", events, "--out", run, "--quiet", "method=popularity",
                         "user_col=customer", "item_col=sku", "time_col=ts", "progress=false"]) == 0
        # --include-seen: each customer has bought all 3 items, and a list never pads with seen ones
        assert cli_main(["recommend", "--run", run, "--users", users, "--out", recs, "--k", "2",
                         "--include-seen"]) == 0
    assert read_items(run)[1:].tolist() == ["0042", "0043", "42"]
    assert read_histories(run)[0].tolist() == ["005461", "5461", "000777"]
    out = pl.read_csv(recs, schema_overrides={"user_id": pl.Utf8, "item_id": pl.Utf8})
    source = dict(zip(out["user_id"], out["source"]))
    assert source == {"005461": "model", "000777": "model", "777": "popularity"}


# -----------------------------------------------------------------------------
# a pipe or FIFO (<(zcat log.gz), mkfifo) is read once, as a stream: never opened twice (a hang)

def _pipe(data: bytes) -> str:
    """/dev/fd/N of a pipe holding `data`, closed for writing (what the shell's <(...) passes)."""
    import threading
    read, written = os.pipe()

    def fill():
        os.write(written, data)
        os.close(written)
    threading.Thread(target=fill, daemon=True).start()  # more than a pipe's buffer: written while read
    return f"/dev/fd/{read}"


def _same(a, b):
    assert a.user_ids.tolist() == b.user_ids.tolist() and a.item_ids.tolist() == b.item_ids.tolist()
    assert a.sequences.items.tolist() == b.sequences.items.tolist()


@pytest.mark.parametrize("shape", ["csv", "csv_gz", "tsv", "parquet", "s3rec"])
def test_a_pipe_is_read_as_a_stream_by_its_first_bytes(tmp_path, shape):
    import gzip
    from nanorec.data.synthetic import write_csv
    path = write_csv(str(tmp_path / "log.csv"), num_users=400, num_items=50, seed=3)  # > 64 KB: the pipe's buffer
    df = pl.read_csv(path, infer_schema=False)
    if shape == "s3rec":
        lines = df.group_by("user_id", maintain_order=True).agg("item_id")
        text = "".join(f"{u} {' '.join(i)}\n" for u, i in lines.iter_rows())
        (tmp_path / "log.txt").write_text(text)
        file, data = str(tmp_path / "log.txt"), text.encode()
    elif shape == "parquet":
        df.write_parquet(tmp_path / "log.parquet")
        file = str(tmp_path / "log.parquet")
        data = open(file, "rb").read()
    elif shape == "tsv":
        df.write_csv(tmp_path / "log.tsv", separator="\t")
        file = str(tmp_path / "log.tsv")
        data = open(file, "rb").read()
    else:
        file, data = path, open(path, "rb").read()
        data = gzip.compress(data) if shape == "csv_gz" else data
    want = load(file, time_col="none" if shape == "s3rec" else "timestamp")
    _same(load(_pipe(data), time_col="none" if shape == "s3rec" else "timestamp"), want)


@pytest.mark.subprocess
def test_recommend_and_update_read_a_fifo_once(tmp_path):
    """`recommend --data FIFO` and `update --data FIFO` (a writer that writes once, as zcat into a
    FIFO does): the lists of the file itself, and an update; each bounded (a regression hangs)."""
    import subprocess
    import sys
    import threading
    from nanorec.data.synthetic import write_csv
    log = write_csv(str(tmp_path / "log.csv"), num_users=80, num_items=20, seed=2)
    old = pl.read_csv(log)
    later = int(old["timestamp"].max()) + 1000  # events after the run's: what an update takes
    items = old["item_id"].unique().sort().to_list()
    new = str(tmp_path / "new.csv")
    pl.DataFrame({"user_id": [u for u in range(10) for _ in range(2)],
                  "item_id": [items[(u + j) % len(items)] for u in range(10) for j in range(2)],
                  "timestamp": [later + 10 * u + j for u in range(10) for j in range(2)]}).write_csv(new)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    cli = lambda *a: subprocess.run([sys.executable, "-m", "nanorec.cli", *a], capture_output=True, text=True,  # noqa: E731
                                    env=env, timeout=300)
    run = str(tmp_path / "run")
    tiny = ["max_steps=2", "eval_interval=1", "n_embd=16", "n_layer=1", "n_head=1", "progress=false",
            "warmup_steps=1", "batch_size=8", "block_size=8", "threads=1"]
    assert cli("train", "--data", log, "--out", run, "--quiet", *tiny).returncode == 0

    def through_fifo(name, source):
        fifo = str(tmp_path / name)
        os.mkfifo(fifo)

        def feed():
            with open(fifo, "wb") as f:  # blocks until the reader opens it, once
                f.write(open(source, "rb").read())
        threading.Thread(target=feed, daemon=True).start()
        return fifo

    assert cli("recommend", "--run", run, "--data", log, "--out", str(tmp_path / "file.csv")).returncode == 0
    r = cli("recommend", "--run", run, "--data", through_fifo("log_fifo.csv", log), "--out", str(tmp_path / "fifo.csv"))
    assert r.returncode == 0, r.stderr
    assert open(tmp_path / "fifo.csv").read() == open(tmp_path / "file.csv").read()
    r = cli("update", "--run", run, "--data", through_fifo("new_fifo.csv", new), "--out", str(tmp_path / "run2"),
            "max_steps=2")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(tmp_path / "run2" / "metrics.json")
