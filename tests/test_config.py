import pytest

from nanorec.config import Config, apply_overrides
from nanorec.errors import UsageError


def test_overrides_are_typed():
    cfg = apply_overrides(Config(), ["n_layer=3", "dropout=0.25", "compile=true", "data=x.txt"])
    assert (cfg.n_layer, cfg.dropout, cfg.compile, cfg.data) == (3, 0.25, True, "x.txt")


@pytest.mark.parametrize("bad,msg", [("n_layers=3", "unknown config key 'n_layers'"),
                                     ("n_layer=abc", "expected int"),
                                     ("compile=maybe", "expected true or false"),
                                     ("n_layer", "key=value")])
def test_bad_overrides(bad, msg):
    with pytest.raises(UsageError, match=msg):
        apply_overrides(Config(), [bad])


def test_round_trip(tmp_path):
    cfg = apply_overrides(Config(), ["n_embd=48"])
    cfg.save(str(tmp_path / "c.json"))
    assert Config.load(str(tmp_path / "c.json")) == cfg


def test_a_config_from_before_fusion_loads_unfused(tmp_path):
    import json
    d = Config().to_dict()
    del d["fuse_transitions"]  # config.json of a run written before the key existed
    json.dump(d, open(tmp_path / "c.json", "w"))
    assert Config.load(str(tmp_path / "c.json")).fuse_transitions == "false"
    assert Config().fuse_transitions == "auto"
    d["fuse_transitions"] = True  # a config.json from when the key was a bool
    json.dump(d, open(tmp_path / "c.json", "w"))
    assert Config.load(str(tmp_path / "c.json")).fuse_transitions == "true"


# -----------------------------------------------------------------------------
# resolve(): every auto key -> the value a run uses, on both sides of its line

def test_resolve_turns_each_auto_into_the_value_used_on_both_sides_of_its_line():
    import nanorec.core.validation as validation
    from nanorec.config import AUTO, resolve, unresolved
    from nanorec.core.loss import AUTO_DROPOUT, AUTO_SAMPLED_ABOVE
    cfg = Config(max_steps=900).validate()
    assert cfg.auto is None and set(AUTO) == {"dropout", "fuse_transitions", "decay_steps", "loss", "num_negatives",
                                              "valid_users", "context_targets"}
    calls = []

    def batches(n):  # training batches an epoch; counts the (costly) calls
        return lambda: calls.append(n) or n
    # at the catalogue line: the full softmax, its dropout, no negatives (batches never packed)
    at = resolve(cfg, AUTO_SAMPLED_ABOVE, num_valid=10, batches_per_epoch=batches(100))
    assert (at.loss, at.dropout, at.num_negatives) == ("full", AUTO_DROPOUT["full"], 0) and calls == []
    # one item above: sampled, its dropout, negatives by the epochs max_steps covers (900 / 100 = 9 -> 1,024)
    above = resolve(cfg, AUTO_SAMPLED_ABOVE + 1, num_valid=10, batches_per_epoch=batches(100))
    assert (above.loss, above.dropout, above.num_negatives) == ("sampled", AUTO_DROPOUT["sampled"], 1024)
    assert resolve(cfg, AUTO_SAMPLED_ABOVE + 1, 10, batches(30)).num_negatives == 4096  # 30 epochs
    assert AUTO_DROPOUT["full"] != AUTO_DROPOUT["sampled"]
    # valid_users: all while users x items <= VALID_WORK, else VALID_WORK // items
    items = 2_000
    line = validation.VALID_WORK // items
    assert resolve(cfg, items, num_valid=line).valid_users == line
    assert resolve(cfg, items, num_valid=line + 1).valid_users == line
    assert resolve(cfg, items, num_valid=7).valid_users == 7
    # decay_steps 0 = max_steps; fuse_transitions auto = true; context_targets auto = next
    assert (at.decay_steps, at.fuse_transitions, at.context_targets) == (900, "true", "next")
    assert at.auto == above.auto == tuple(AUTO)  # every default auto is listed
    # explicit values are kept, and not listed as auto
    given = Config(max_steps=900, loss="sampled", dropout=0.3, num_negatives=64, valid_users=5, decay_steps=500,
                   fuse_transitions="false", context_targets="none").validate()
    kept = resolve(given, 10, num_valid=100, batches_per_epoch=batches(1))
    assert kept == given and kept.auto == ()
    # a resolved config resolves to itself; unresolved gives the settings as given back
    assert resolve(above, AUTO_SAMPLED_ABOVE + 1, 10, batches(100)) == above
    assert unresolved(above) == cfg and unresolved(kept) == given
    # facts not given: those keys stay as they are (an old run's model, opened for scoring)
    partial = resolve(cfg, 50)
    assert (partial.valid_users, partial.num_negatives, partial.dropout) == (0, 0, AUTO_DROPOUT["full"])


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    from nanorec.data.synthetic import write_fast
    data = str(tmp_path_factory.mktemp("cfg") / "data")
    write_fast(data, num_rows=600, num_items=30, num_users=200, seed=1, test_fraction=0.6, cold_users=3)
    return data


TINY = dict(block_size=12, n_layer=1, n_head=1, n_embd=16, batch_size=16, warmup_steps=2, eval_interval=5,
            max_steps=10, patience=0, progress=False, threads=1)


def test_a_new_runs_config_json_holds_resolved_values_and_the_auto_list(tiny_log, tmp_path):
    import json
    from nanorec.config import AUTO
    from nanorec.core.train import run
    run(Config(data=tiny_log, loss="sampled", **TINY), str(tmp_path / "run"), quiet=True)
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["auto"] == ["dropout", "fuse_transitions", "decay_steps", "num_negatives", "valid_users",
                             "context_targets"]
    for k, sentinel in AUTO.items():  # not one auto value left
        assert saved[k] != sentinel, k
    assert (saved["loss"], saved["dropout"], saved["decay_steps"], saved["fuse_transitions"]) == ("sampled", 0.1, 10, "true")
    assert saved["num_negatives"] == 1024  # few epochs: loss.AUTO_NEGATIVES
    log = open(tmp_path / "run" / "train.log").read()
    assert "dropout 0.1 (auto)" in log and "1,024 shared popularity negatives" in log
    assert f"valid {saved['valid_users']:,} users" in log  # every validation user: a small log
    loaded = Config.load(str(tmp_path / "run" / "config.json"))
    assert loaded.auto == tuple(saved["auto"]) and loaded.num_negatives == 1024


def test_an_old_run_folder_with_unresolved_autos_still_opens_and_scores_the_same(tiny_log, tmp_path):
    """config.json written before resolve(): autos as given, no "auto" list."""
    import json

    import numpy as np

    from nanorec.config import unresolved
    from nanorec.runs.run import Run
    run_dir = str(tmp_path / "run")
    from nanorec.core.train import run
    run(Config(data=tiny_log, **TINY), run_dir, quiet=True)
    new = Run.open(run_dir)
    path = tmp_path / "run" / "config.json"
    old = unresolved(Config.load(str(path))).to_dict()  # as an older nanorec wrote it
    assert old["dropout"] == -1.0 and old["loss"] == "auto" and old["valid_users"] == 0
    del old["context_targets"], old["exclude_seen"]  # keys added since (config.LEGACY: the values such runs used)
    json.dump(old, open(path, "w"))
    back = Run.open(run_dir)
    assert back.config.auto is None and back.config.dropout == -1.0
    assert (back.config.context_targets, back.config.exclude_seen) == ("none", "true")
    assert back.model.cfg.dropout == 0.5  # its model: the auto rule of its own catalogue
    hist = new.histories.take(np.arange(5))
    assert np.allclose(back.scorer(hist).numpy(), new.scorer(hist).numpy())


@pytest.mark.parametrize("bad,msg", [('{"auto": "dropout"}', '"auto" must list'), ('{"auto": ["n_layer"]}', '"auto" must list')])
def test_a_bad_auto_list_is_one_line_naming_the_file(tmp_path, bad, msg):
    import json

    from nanorec.errors import DataError
    d = {**Config().to_dict(), **json.loads(bad)}
    json.dump(d, open(tmp_path / "c.json", "w"))
    with pytest.raises(DataError, match=f"{tmp_path / 'c.json'}: {msg}"):
        Config.load(str(tmp_path / "c.json"))


def test_help_lists_every_key_with_its_default_meaning_and_range(capsys):
    import dataclasses

    from nanorec.cli import main
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    for f in dataclasses.fields(Config):
        line = next((x for x in lines if x.strip().startswith(f"{f.name}: {f.type} = ")), None)
        assert line is not None, f.name
        default = f'"{f.default}"' if f.type == "str" else repr(f.default)
        assert line.split(" = ", 1)[1].startswith(default), f.name
        if f.metadata["help"]:
            assert f.metadata["help"].split("\n")[0] in line, f.name
        if f.metadata["rule"]:
            assert f"[{f.metadata['rule'][1]}]" in text, f.name
    assert "n_layer: int = 2  [an integer in 1..64]" in text
    assert "[auto, full or sampled]" in text and "[a number in [0, 1), or -1 (auto)]" in text


@pytest.mark.parametrize("spec", ["compile=maybe", "packing=true|maybe", "bias=2"])
def test_tune_refuses_a_bool_that_is_neither_true_nor_false(spec):
    from nanorec.core.tune import parse_space
    with pytest.raises(UsageError, match=r"--space .*expected true or false"):
        parse_space(spec)


def test_tune_reads_bools_as_the_command_line_does():
    from nanorec.core.tune import parse_space
    (p,) = parse_space("packing=true|off|1|No")
    assert p.choices == (True, False, True, False)
    with pytest.raises(UsageError, match=r"--space n_layer='0': expected an integer in 1..64"):
        parse_space("n_layer=0..3")


def test_an_update_and_a_resume_resolve_the_autos_again_on_their_own_data(tmp_path):
    """A run's config.json holds resolved values; an update (more users) and a --resume take the
    settings as given back (the auto list) and resolve them on their data, not the old values."""
    import json

    import polars as pl

    from nanorec import Recommender
    from nanorec.cli import main as cli_main
    rows = [(u, (u + t) % 9 + 1, t) for u in range(40) for t in range(5)]
    log = pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row")
    log.write_csv(tmp_path / "log.csv")  # a file: --resume reads the data again
    rec = Recommender(**{**TINY, "max_steps": 10}).fit(str(tmp_path / "log.csv"), out=str(tmp_path / "run"))
    assert rec.config.valid_users == 40 and "valid_users" in rec.config.auto
    more = pl.DataFrame([(u, (u + t) % 9 + 1, 10 + t) for u in range(40, 60) for t in range(5)],
                        schema=["user_id", "item_id", "timestamp"], orient="row")
    new = rec.update(more, out=str(tmp_path / "updated"), max_steps=4)
    saved = json.load(open(tmp_path / "updated" / "config.json"))
    # all 60, not the old run's 40: an update validates on min(update.UPDATE_VALID_USERS, the auto rule's)
    # users, a number it states (a resumed update keeps it), so valid_users is no longer on its auto list
    assert saved["valid_users"] == 60 and "valid_users" not in saved["auto"]
    assert saved["decay_steps"] == 4 and new.config.decay_steps == 4
    # --resume with the saved (resolved) config: the same values, and a given auto key still compares as given
    assert cli_main(["train", "--out", str(tmp_path / "run"), "--resume", "max_steps=12"]) == 0
    again = json.load(open(tmp_path / "run" / "config.json"))
    assert (again["valid_users"], again["decay_steps"], set(again["auto"])) == (40, 12, {*saved["auto"], "valid_users"})
