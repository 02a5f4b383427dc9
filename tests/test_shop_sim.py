"""The shop simulator (`nanorec synth --shop`): seeded, shaped as documented, and its ceiling."""
import json

import numpy as np
import polars as pl
import pytest

from nanorec.errors import UsageError
from nanorec.data.synthetic import (DAY_S, SHOP_WEEKS, generate_shop, shop_ceiling, shop_sidecars,
                               write_shop)


@pytest.fixture(scope="module")
def sim():
    return generate_shop(20_000, seed=3)


def test_same_seed_same_shop_other_seed_other_shop(sim):
    again, other = generate_shop(20_000, seed=3), generate_shop(20_000, seed=4)
    for key in ("user", "item", "time", "kind"):
        assert np.array_equal(sim[key], again[key])
    assert len(other["item"]) != len(sim["item"]) or not np.array_equal(other["item"], sim["item"])


def test_shares_launches_and_late_customers(sim):
    kind, cat = sim["kind"], sim["catalogue"]
    assert 19_000 < len(kind) < 21_000
    assert 0.66 < np.mean(kind == 0) < 0.73 and 0.09 < np.mean(kind == 2) < 0.13  # views, purchases
    # no event of an item before its launch; 8% of the catalogue launched in weeks 8-10, and bought
    assert (sim["time"] >= cat["launch"][sim["item"]]).all()
    new = cat["new"]
    assert new.sum() == round(0.08 * len(new))
    assert (cat["launch"][new] >= 7 * 7 * DAY_S).all() and (cat["launch"][~new] < 0).all()
    assert new[sim["item"][kind == 2]].any()
    # a quarter of the customers arrive after week 1, and none is seen before arriving
    late = sim["arrival"] >= 7 * DAY_S
    assert 0.2 < late.mean() < 0.3 and (sim["arrival"][~late] == 0).all()
    assert (sim["time"] >= sim["arrival"][sim["user"]]).all()
    assert late[np.unique(sim["user"][sim["time"] >= 9 * 7 * DAY_S])].any()  # some week-10 customers are late ones


def test_purchases_follow_views_and_earlier_purchases(sim):
    """A purchase follows a view of the same item in its session, and the next purchase is
    often a follow-up of the previous one: signals beyond popularity."""
    user, item, time, kind = sim["user"], sim["item"], sim["time"], sim["kind"]
    buy = np.nonzero(kind == 2)[0]
    key = user * 10 ** 12 + time
    views = np.nonzero(kind == 0)[0]
    recent = np.array([np.any((user[views] == user[b]) & (item[views] == item[b]) & (time[views] < time[b])
                              & (time[views] > time[b] - 3600)) for b in buy[:500]])
    assert recent.mean() > 0.75
    order = buy[np.argsort(key[buy], kind="stable")]
    same_user = user[order][1:] == user[order][:-1]
    prev, nxt = item[order][:-1][same_user], item[order][1:][same_user]
    followed = (sim["catalogue"]["follow"][prev] == nxt[:, None]).any(1)
    assert followed.mean() > 0.35  # SHOP_P_FOLLOW = 0.5; a popularity draw rarely lands on one


def test_written_log_keeps_leading_zeros_and_iso_times(tmp_path):
    from nanorec.data import load
    out = str(tmp_path / "shop.csv")
    s = write_shop(out, 5_000, seed=1)
    df = pl.read_csv(out, schema_overrides={"item_id": pl.Utf8})
    assert df.columns == ["user_id", "item_id", "timestamp", "event_type", "weight"] and df.height == s["rows"]
    assert df["item_id"].str.len_chars().unique().to_list() == [6] and df["item_id"].str.starts_with("0").all()
    assert df["timestamp"][0].startswith("2024-01-01T") and df["timestamp"].is_sorted()
    ds = load(out, target_filter="event_type=purchase")
    assert set(ds.item_ids[1:].tolist()) == set(df["item_id"].to_list())  # text ids, zeros kept
    catalog_path, ceiling_path = shop_sidecars(out)
    cat = pl.read_csv(catalog_path, schema_overrides={"item_id": pl.Utf8})
    assert cat.columns == ["item_id", "title", "category", "price", "launch_time"]
    assert set(df["item_id"].to_list()) <= set(cat["item_id"].to_list())
    launch = dict(zip(cat["item_id"].to_list(), cat["launch_time"].to_list()))
    assert all(t >= launch[i] for i, t in zip(df["item_id"].to_list(), df["timestamp"].to_list()))
    with open(ceiling_path) as f:
        ceiling = json.load(f)
    assert ceiling["split_time"] == "2024-03-04T00:00:00" and 0 < ceiling["any_event"]["NDCG@10"] <= 1


def test_a_parquet_shop_is_the_csv_shop_with_datetime_times(tmp_path):
    """.parquet: the same events, the times a datetime column (was: polars refused numpy's seconds)."""
    csv, parquet = str(tmp_path / "shop.csv"), str(tmp_path / "shop.parquet")
    write_shop(csv, 3_000, seed=2)
    write_shop(parquet, 3_000, seed=2)
    a = pl.read_csv(csv, schema_overrides={"item_id": pl.Utf8})
    b = pl.read_parquet(parquet)
    assert b.schema["timestamp"] == pl.Datetime("ms")
    assert b["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S").to_list() == a["timestamp"].to_list()
    assert b.drop("timestamp").equals(a.drop("timestamp"))


def test_synth_cli_shop_refuses_to_overwrite_its_catalogue(tmp_path):
    from nanorec.commands.synth import main
    out = tmp_path / "shop.csv"
    assert main(["--out", str(out), "--rows", "3000", "--shop"]) == 0
    out.unlink()  # the log gone, its catalogue still there
    with pytest.raises(UsageError, match="catalog.csv"):
        main(["--out", str(out), "--rows", "3000", "--shop"])
    assert main(["--out", str(out), "--rows", "3000", "--shop", "--overwrite"]) == 0
    with pytest.raises(UsageError, match="--shop"):
        main(["--out", str(tmp_path / "folder"), "--rows", "3000", "--shop"])


def tiny_shop() -> dict:
    """12 items: 0-5 in category 0 (popularity 1..6), 6-11 in category 1 (popularity 6..1);
    every item's follow-ups 7, 8, 9 (0.6 / 0.3 / 0.1), item 6's 1, 2, 3. Customer 0 likes category 1
    only and bought item 6, then item 0 (the last purchase) in week 1; in week 10 buys item 9 and item 0
    again (not a target: bought before).
    Customer 1 likes category 0 only, viewed item 3 in week 1, buys items 5 and 4 in week 10.
    Customer 2 has no event before week 10 (not known)."""
    follow = np.tile(np.array([7, 8, 9, 7]), (12, 1))
    follow[6] = [1, 2, 3, 1]
    weights = np.tile(np.array([0.6, 0.3, 0.1, 0.0]), (12, 1))
    cat = {"category": np.repeat([0, 1], 6), "pop": np.array([1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1], float),
           "launch": np.full(12, -DAY_S), "follow": follow, "follow_w": weights, "num_categories": 2,
           "new": np.zeros(12, bool)}
    T = (SHOP_WEEKS - 1) * 7 * DAY_S
    events = [(0, 6, DAY_S // 2, 2), (0, 0, DAY_S, 2), (1, 3, 2 * DAY_S, 0), (0, 9, T + DAY_S, 2), (0, 0, T + 2 * DAY_S, 2),
              (1, 5, T + DAY_S, 2), (1, 4, T + 3 * DAY_S, 2), (2, 1, T + DAY_S, 2)]
    user, item, time, kind = (np.array(c) for c in zip(*events))
    return {"user": user, "item": item, "time": time, "kind": kind, "catalogue": cat, "num_users": 3,
            "taste_cat": np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
            "taste_w": np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [1.0, 0, 0, 0]])}


def test_ceiling_of_a_tiny_shop_by_hand():
    """Customer 0: P = 0.5 x follow-ups of item 0 (the last purchase) + 0.5 x popularity share in
    category 1: 7: 0.3 + 0.5*5/21, 8: 0.15 + 0.5*4/21, 9: 0.05 + 0.5*3/21, ... (0 and 6 excluded)
    so item 9 is 3rd: NDCG@10 1/log2(4), MAP@10 1/3 (after item 6 it would be 5th). Customer 1 (no purchase before: tastes
    only): 5 then 4 on top: NDCG@10 = MAP@10 = 1. Customer 2 is not known."""
    c = shop_ceiling(tiny_shop())
    assert c["any_event"]["users"] == 2 and c["any_event"]["targets"] == 3
    assert c["any_event"]["NDCG@10"] == pytest.approx((1 / np.log2(4) + 1) / 2, abs=1e-5)
    assert c["any_event"]["MAP@10"] == pytest.approx((1 / 3 + 1) / 2, abs=1e-5)
    assert c["earlier_purchase"]["users"] == 1
    assert c["earlier_purchase"]["NDCG@10"] == pytest.approx(1 / np.log2(4), abs=1e-5)
    assert c["earlier_purchase"]["HR@10"] == 1.0


def test_another_shape_gives_another_shop_and_its_ceiling_follows_it():
    """--shop-shape: more views, fewer purchases and follow-ups, more launches, more late customers;
    the shares move as asked, and the ceiling uses the shape's own follow-up rate."""
    from nanorec.data.synthetic import shop_shape
    shape = shop_shape("extra_views=4,p_buy=0.35,p_follow=0.2,new_share=0.12,late_share=0.5,rows_per_user=8")
    sim = generate_shop(20_000, seed=3, shape=shape)
    kind, cat = sim["kind"], sim["catalogue"]
    assert 19_000 < len(kind) < 21_000  # events_per_session follows the shape: the size is still --rows
    assert np.mean(kind == 0) > 0.78 and np.mean(kind == 2) < 0.08
    assert cat["new"].sum() == round(0.12 * len(cat["new"])) and 0.45 < (sim["arrival"] > 0).mean() < 0.55
    assert sim["num_users"] == 2_500
    buy = np.nonzero(kind == 2)[0]
    order = buy[np.lexsort((sim["time"][buy], sim["user"][buy]))]
    same = sim["user"][order][1:] == sim["user"][order][:-1]
    followed = (cat["follow"][sim["item"][order][:-1][same]] == sim["item"][order][1:][same][:, None]).any(1)
    assert followed.mean() < 0.3  # p_follow 0.2 (0.5 by default: above 0.35)
    c = shop_ceiling(sim)
    assert c == shop_ceiling({**sim, "shape": shape}) and c != shop_ceiling({**sim, "shape": shop_shape()})


@pytest.mark.parametrize("text,words", [("views=4", "expected key=value with a key of"),
                                        ("p_buy=1.5", "a share in 0..1"), ("p_cart=0.5", "two shares a/b"),
                                        ("rows_per_item=-1", "a number > 0"), ("extra_views=x", "not a number")])
def test_a_bad_shape_is_one_line(tmp_path, text, words):
    from nanorec.cli import main
    import contextlib, io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["synth", "--out", str(tmp_path / "s.csv"), "--rows", "2000", "--shop", "--shop-shape", text])
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0] and not list(tmp_path.iterdir()), lines
