"""ALBERT, RoBERTa and ELECTRA on the one encoder: parity with `transformers` through the folders, in both
directions, with random weights; and the behaviour each delta promises (shared storage, offsets)."""

import json

import pytest
import torch
import transformers
from helpers import assert_outputs_close

from bertkit.config import BertConfig, from_preset
from bertkit.errors import BertkitError, ConfigError
from bertkit.hf import build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder
from bertkit.sizes import parameter_table

SMALL = dict(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=40,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
HF_CONFIGS = {
    "albert": lambda **kw: transformers.AlbertConfig(**SMALL, embedding_size=16, classifier_dropout_prob=0.0, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(
        **SMALL, pad_token_id=1, type_vocab_size=1, layer_norm_eps=1e-5, **kw
    ),
    "electra": lambda **kw: transformers.ElectraConfig(**SMALL, embedding_size=16, **kw),
}
# (transformers class, the bertkit heads it holds, whether its encoder has a pooler)
CLASSES = [
    ("AlbertModel", [], True),
    ("AlbertForPreTraining", ["mlm", "nsp"], True),
    ("AlbertForMaskedLM", ["mlm"], False),
    ("AlbertForSequenceClassification", ["classifier"], True),
    ("RobertaModel", [], True),
    ("RobertaForMaskedLM", ["mlm"], False),
    ("RobertaForSequenceClassification", ["classifier"], False),
    ("RobertaForTokenClassification", ["token_classifier"], False),
    ("ElectraModel", [], False),
    ("ElectraForPreTraining", ["rtd"], False),
    ("ElectraForMaskedLM", ["mlm"], False),
    ("ElectraForSequenceClassification", ["classifier"], False),
    ("ElectraForTokenClassification", ["token_classifier"], False),
]


def _family(cls_name: str) -> str:
    return next(f for f in HF_CONFIGS if cls_name.lower().startswith(f))


def _inputs(pad: int):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 97, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = pad  # RoBERTa numbers positions by the padding id, as its tokenizer pads
    return ids, mask


def _hf_outputs(model, ids, mask) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    got = {}
    for key in ("last_hidden_state", "pooler_output", "prediction_logits", "sop_logits", "logits"):
        value = getattr(out, key, None)
        if value is not None:
            got[key] = value
    return got


def _bertkit_outputs(ckpt, ids, mask) -> dict[str, torch.Tensor]:
    enc = ckpt.encoder
    with torch.no_grad():
        out = enc(ids, mask)
        h = out.last_hidden_state
        got = {}
        heads = ckpt.heads
        if not heads:
            got["last_hidden_state"] = h
            if out.pooler_output is not None:
                got["pooler_output"] = out.pooler_output
        if "mlm" in heads:
            logits = heads["mlm"](h, enc.embeddings.word_embeddings.weight)
            got["prediction_logits" if "nsp" in heads else "logits"] = logits
        if "nsp" in heads:
            got["sop_logits"] = heads["nsp"](out.pooler_output)
        if "rtd" in heads:
            got["logits"] = heads["rtd"](h)
        if "classifier" in heads:
            head = heads["classifier"]
            got["logits"] = head(h[:, 0]) if getattr(head, "reads_first_token", False) else head(out.pooler_output)
        if "token_classifier" in heads:
            got["logits"] = heads["token_classifier"](h)
    return got


@pytest.mark.parametrize("cls_name,heads,pooler", CLASSES, ids=[c[0] for c in CLASSES])
def test_transformers_folder_loads_with_identical_outputs(tmp_path, cls_name, heads, pooler):
    fam = _family(cls_name)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(HF_CONFIGS[fam](num_labels=3 if "Classification" in cls_name else 2)).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 and 0, so a swapped name cannot hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path)
    ckpt = load_pretrained(tmp_path, tokenizer=False)
    assert ckpt.config.model_type == fam
    assert sorted(ckpt.heads) == sorted(heads)
    assert (ckpt.encoder.pooler is not None) == pooler
    ids, mask = _inputs(ckpt.config.pad_token_id)
    assert_outputs_close(_bertkit_outputs(ckpt, ids, mask), _hf_outputs(model, ids, mask), mask)


@pytest.mark.parametrize("cls_name,heads,pooler", CLASSES, ids=[c[0] for c in CLASSES])
def test_bertkit_folder_loads_in_transformers_with_identical_outputs(tmp_path, cls_name, heads, pooler):
    fam = _family(cls_name)
    config = BertConfig.from_dict(
        {**HF_CONFIGS[fam](num_labels=3 if "Classification" in cls_name else 2).to_dict(), "architectures": None}
    )
    torch.manual_seed(0)
    encoder = BertEncoder(config, add_pooler=pooler)
    built = build_heads(config, heads)
    with torch.no_grad():
        for module in (encoder, *built.values()):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    save_pretrained(tmp_path, encoder, built)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [cls_name] and saved["model_type"] == fam
    model = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    ids, mask = _inputs(config.pad_token_id)
    from bertkit.hf import Checkpoint

    for m in (encoder, *built.values()):
        m.eval()
    ours = _bertkit_outputs(Checkpoint(config, encoder, built), ids, mask)
    assert_outputs_close(ours, _hf_outputs(model, ids, mask), mask)


def test_albert_layers_share_one_set_of_weights_and_sum_their_gradients():
    config = from_preset(
        "albert-base",
        num_hidden_layers=4,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        embedding_size=16,
        vocab_size=50,
    )
    enc = BertEncoder(config)
    assert len(enc.layers) == 1 and all(enc.layer_at(i) is enc.layers[0] for i in range(4))
    # One parameter per weight, whatever the depth: a 4-layer and a 1-layer ALBERT have the same count.
    one = BertEncoder(BertConfig(**{**config.__dict__, "num_hidden_layers": 1}))
    assert sum(p.numel() for p in enc.parameters()) == sum(p.numel() for p in one.parameters())
    # The gradient of the shared weight is the sum of its per-depth contributions: compare with an
    # unshared 4-layer BERT whose layers are copies of the one layer.
    ids = torch.randint(0, 50, (2, 7))
    enc(ids).last_hidden_state.pow(2).sum().backward()
    shared_grad = enc.layers[0].ffn.up.weight.grad.clone()
    bert = BertEncoder(BertConfig(**{**config.__dict__, "model_type": "electra"}), add_pooler=True)
    with torch.no_grad():
        bert.embeddings.load_state_dict(enc.embeddings.state_dict())
        bert.project.load_state_dict(enc.project.state_dict())
        for layer in bert.layers:
            layer.load_state_dict(enc.layers[0].state_dict())
    bert(ids).last_hidden_state.pow(2).sum().backward()
    per_depth = sum(layer.ffn.up.weight.grad for layer in bert.layers)
    torch.testing.assert_close(shared_grad, per_depth, atol=1e-5, rtol=1e-4)


def test_albert_base_parameter_count_matches_transformers():
    ours = BertEncoder(from_preset("albert-base"))
    theirs = transformers.AlbertModel(
        transformers.AlbertConfig(
            embedding_size=128, hidden_size=768, num_attention_heads=12, intermediate_size=3072, vocab_size=30000
        )
    )
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in theirs.parameters())
    assert round(n / 1e6, 1) == 11.7  # the ALBERT paper's 12M for ALBERT-base
    rows = dict(parameter_table({"encoder": ours}))
    assert "1 × FFN: H → 4H → H (shared by 12)" in rows and sum(rows.values()) == n


def test_roberta_positions_start_after_the_padding_id():
    config = from_preset("roberta-mini-chinese", vocab_size=60)
    enc = BertEncoder(config).eval()
    assert config.position_offset == 2 and config.max_length == 512
    ids = torch.tensor([[0, 7, 8, 2, 1, 1]])  # <s> a b </s> <pad> <pad>
    pos = torch.tensor([[2, 3, 4, 5, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        a = enc(ids, mask).last_hidden_state
        b = enc(ids, mask, position_ids=pos).last_hidden_state
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="512 positions"):
        enc(torch.full((1, 513), 5))


def test_family_config_mistakes_are_named(tmp_path):
    path = tmp_path / "config.json"
    for data, field in [
        ({"model_type": "albert", "num_hidden_groups": 2}, "num_hidden_groups"),
        ({"model_type": "albert", "inner_group_num": 3}, "inner_group_num"),
        ({"model_type": "bert", "embedding_size": 128}, "embedding_size"),
        ({"model_type": "roberta", "embedding_size": 128}, "embedding_size"),
        ({"model_type": "xlnet"}, "model_type"),
    ]:
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=field) as e:
            BertConfig.from_json(path)
        assert str(path) in str(e.value)
    with pytest.raises(BertkitError, match="rtd"):
        build_heads(from_preset("bert-tiny"), ["rtd"])


def test_config_round_trips_through_json_for_every_family(tmp_path):
    for name in ("albert-tiny-chinese", "roberta-base", "electra-small", "bert-mini"):
        config = from_preset(name, id2label={0: "a", 1: "b"})
        config.save(tmp_path / "config.json")
        assert BertConfig.from_json(tmp_path / "config.json") == config


@pytest.mark.parametrize("family", ["roberta", "electra", "albert"])
def test_family_folders_export_to_onnx_and_match(tmp_path, family):
    pytest.importorskip("onnxruntime")
    from bertkit.bpe import ByteLevelBPETokenizer
    from bertkit.tokenizer import Tokenizer
    from bertkit.use.export import export_onnx

    lines = ["北京欢迎你。", "Hello world, a longer first text.", "今天天气很好，我们去公园散步。"] * 20
    tok = (
        ByteLevelBPETokenizer.train(lines, vocab_size=300)
        if family == "roberta"
        else Tokenizer.train(iter(lines), vocab_size=200)
    )
    preset = {"roberta": "roberta-mini-chinese", "electra": "electra-small", "albert": "albert-base"}[family]
    config = from_preset(
        preset,
        vocab_size=tok.vocab_size,
        pad_token_id=tok.pad_token_id,
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=600,
    )
    torch.manual_seed(0)
    save_pretrained(tmp_path / "m", BertEncoder(config), {}, tok)
    exported = export_onnx(tmp_path / "m", tmp_path / "m.onnx", verbose=False)
    assert exported.max_diff <= 1e-4
    assert ("token_type_ids" in exported.inputs) == (family != "roberta")


def test_a_family_without_a_multiple_choice_head_is_refused_by_name(tmp_path):
    from bertkit.finetune.model import build_model
    from bertkit.tokenizer import Tokenizer

    tok = Tokenizer.train(iter(["北京欢迎你。", "a b c d"] * 10), vocab_size=60)
    config = from_preset("electra-small", **{**SMALL, "vocab_size": tok.vocab_size})
    save_pretrained(tmp_path, BertEncoder(config), {}, tok)
    with pytest.raises(BertkitError, match="ELECTRA's multiple-choice head.*BERT, ALBERT, RoBERTa"):
        build_model(tmp_path, "multiple_choice", ["0"], random_init=True)
