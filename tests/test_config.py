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


def test_key_renames_read_and_write_a_family_s_own_names(tmp_path):
    """DistilBERT's config.json names the sizes its own way; its row's `key_renames` maps them both ways."""
    from bertkit.config import FAMILY_SPECS

    renames = FAMILY_SPECS["distilbert"].key_renames
    sizes = {"vocab_size": 50, "dim": 64, "n_layers": 3, "n_heads": 4, "hidden_dim": 96}
    config = BertConfig.from_dict({"model_type": "distilbert", **sizes})
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (64, 3, 96)
    assert config.type_vocab_size == 0 and config.classifier_dropout == 0.2  # the row's values, not in the file
    data = config.to_dict()
    assert {k: data[k] for k in sizes} == sizes and not set(renames.values()) & set(data)
    config.save(tmp_path / "config.json")
    assert BertConfig.from_json(tmp_path / "config.json") == config
    with pytest.raises(ConfigError, match="both 'dim' and 'hidden_size'"):
        BertConfig.from_dict({"model_type": "distilbert", **sizes, "hidden_size": 64})
    # ALBERT's classifier_dropout_prob is the first row entry of the mechanism, with AlbertConfig's default.
    albert = BertConfig.from_dict({"model_type": "albert", "classifier_dropout_prob": 0.3})
    assert albert.classifier_dropout == 0.3 and "classifier_dropout" not in albert.to_dict()
    assert BertConfig.from_dict({"model_type": "albert"}).classifier_dropout == 0.1


def test_bertkit_only_fields_are_written_only_when_they_change_something(tmp_path):
    plain = from_preset("bert-mini")
    assert "norm_position" not in plain.to_dict() and "extra_embeddings" not in plain.to_dict()
    config = from_preset("bert-mini", norm_position="pre", extra_embeddings={"task_type": 3}, type_vocab_size=0)
    config.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["norm_position"] == "pre" and data["extra_embeddings"] == {"task_type": 3}
    assert data["type_vocab_size"] == 0
    assert BertConfig.from_json(tmp_path / "config.json") == config
