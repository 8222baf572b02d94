import json

import pytest

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError


def test_files_in_yaml_or_json_with_dashes_or_underscores(tmp_path):
    (tmp_path / "a.yaml").write_text("batch-size: 32\noptimizer: adam\noptimizer_options:\n  betas: [0.8, 0.9]\n")
    (tmp_path / "b.json").write_text(json.dumps({"depth": 10, "lr": 0.5}))
    a = TrainConfig.from_file(tmp_path / "a.yaml").validate()
    assert (a.batch_size, a.optimizer, a.optimizer_options["betas"]) == (32, "adam", (0.8, 0.9))
    b = TrainConfig.from_file(tmp_path / "b.json", base=a)
    assert (b.depth, b.lr, b.batch_size) == (10, 0.5, 32)


def test_numbers_with_an_exponent_are_numbers(tmp_path):
    (tmp_path / "e.yaml").write_text("lr: 1e-3\noptimizer_options: {weight_decay: 5e-4}\n")
    c = TrainConfig.from_file(tmp_path / "e.yaml").validate()
    assert c.lr == 1e-3 and c.optimizer_options == {"weight_decay": 5e-4}


def test_unknown_keys_are_named(tmp_path):
    (tmp_path / "c.yaml").write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match="unknown config key.*epochz.*valid:"):
        TrainConfig.from_file(tmp_path / "c.yaml")


@pytest.mark.parametrize("text, word", [("epochs: [1\n", "not valid YAML"), ("- 1\n- 2\n", "mapping")])
def test_malformed_files_are_one_line_errors(tmp_path, text, word):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(ConfigError, match=word) as info:
        TrainConfig.from_file(tmp_path / "d.yaml")
    assert "\n" not in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config file"):
        TrainConfig.from_file("/nonexistent/x.yaml")


@pytest.mark.parametrize("field, value", [("batch_size", -1), ("epochs", 0), ("depth", 1.5), ("width", True),
                                          ("val_fraction", 1.0), ("lr", -0.1), ("limit_train", 0),
                                          ("dataset", "imagenet"), ("optimizer", "nosuch"), ("init", "zeros"),
                                          ("es_precision", "float16")])
def test_out_of_range_values_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        TrainConfig.from_dict({field: value}).validate()


def test_defaults_are_valid_and_use_glorot():
    config = TrainConfig().validate()
    assert config.init == "glorot" and config.method == "gradient"
