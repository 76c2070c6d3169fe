import pytest

from visrep.config import load_config, to_yaml
from visrep.errors import UserError


def test_defaults_yaml_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  image_size: 16\n  augment:\n    flip: true\nrun:\n  seed: 3\n")
    cfg = load_config(path, ["data.image_size=32"])
    assert cfg.data.image_size == 32 and cfg.data.augment.flip is True and cfg.run.seed == 3
    assert "image_size: 32" in to_yaml(cfg)


@pytest.mark.parametrize("override, message", [
    ("data.imgae_size=32", "unknown config key 'data.imgae_size'"),
    ("nosuch.key=1", "unknown config key 'nosuch"),
    ("data.image_size=big", "bad value for config key 'data.image_size'"),
    ("data.strict=maybe", "bad value for config key 'data.strict'"),
    ("data.image_size", "must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=[override])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  colour: red\n")
    with pytest.raises(UserError, match="unknown config key 'data.colour'"):
        load_config(path)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(scalar)
