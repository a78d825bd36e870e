import json

import pytest

from bertkit.config import PRESETS, BertConfig, from_preset
from bertkit.errors import ConfigError


def test_presets_match_published_sizes():
    assert (PRESETS["bert-tiny"]["num_hidden_layers"], PRESETS["bert-tiny"]["hidden_size"]) == (2, 128)
    assert (PRESETS["bert-mini"]["num_hidden_layers"], PRESETS["bert-mini"]["hidden_size"]) == (4, 256)
    assert (PRESETS["bert-small"]["num_hidden_layers"], PRESETS["bert-small"]["hidden_size"]) == (4, 512)
    assert (PRESETS["bert-medium"]["num_hidden_layers"], PRESETS["bert-medium"]["hidden_size"]) == (8, 512)
    large = from_preset("bert-large")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads) == (24, 1024, 16)
    assert from_preset("bert-base-chinese").vocab_size == 21128
    assert from_preset("bert-base").vocab_size == 30522
    assert all(p["intermediate_size"] == 4 * p["hidden_size"] for p in PRESETS.values())


def test_json_round_trip(tmp_path):
    config = from_preset("bert-mini-chinese", id2label={0: "neg", 1: "pos"})
    config.save(tmp_path / "config.json", architectures=["BertForSequenceClassification"])
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["label2id"] == {"neg": 0, "pos": 1} and data["model_type"] == "bert"
    assert BertConfig.from_json(tmp_path / "config.json") == config


def test_transformers_config_json_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    hf.save_pretrained(tmp_path)
    config = BertConfig.from_json(tmp_path / "config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (64, 2, 128)


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("hidden_size", 100, "divisible"),
        ("num_hidden_layers", 0, "num_hidden_layers"),
        ("hidden_act", "swish", "hidden_act"),
        ("hidden_dropout_prob", 1.5, "hidden_dropout_prob"),
        ("vocab_size", "big", "vocab_size"),
    ],
)
def test_bad_fields_are_named(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        BertConfig(**{field: value})


def test_unknown_key_is_an_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 64, "num_attention_heads": 4, "rotary_dim": 16}))
    with pytest.raises(ConfigError, match="unknown key 'rotary_dim'"):
        BertConfig.from_json(path)
    path.write_text(json.dumps({"position_embedding_type": "relative_key"}))
    with pytest.raises(ConfigError, match="position_embedding_type"):
        BertConfig.from_json(path)
    path.write_text(json.dumps({"model_type": "xlnet"}))
    with pytest.raises(ConfigError, match="model_type"):
        BertConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BertConfig.from_json(path)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        from_preset("bert-huge")
