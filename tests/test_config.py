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
