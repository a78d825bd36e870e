"""Hugging Face interop: exact on real weights, round trips through transformers, loud on bad folders."""

import json
import shutil

import pytest
import torch

from bertkit.config import BertConfig
from bertkit.errors import CheckpointError
from bertkit.hf import build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder

transformers = pytest.importorskip("transformers")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "我喜欢吃苹果",
    "苹果和华为哪个牌子好？",
    "Café naïve Ångström — résumé déjà vu!",
    'Emoji 🤗🚀 and punctuation: (a), [b], {c}; "quoted" ... ?!',
    "BERT " * 150,
]


def _batch(tokenizer, texts):
    return tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")


def test_real_minilm_hidden_states_match_transformers(minilm_path):
    ckpt = load_pretrained(minilm_path, tokenizer=False)
    ref = transformers.BertModel.from_pretrained(str(minilm_path)).eval()
    batch = _batch(transformers.AutoTokenizer.from_pretrained(str(minilm_path)), TEXTS)
    with torch.no_grad():
        ours = ckpt.encoder.eval()(**batch, output_hidden_states=True)
        theirs = ref(**batch, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 7
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        assert (a[mask] - b[mask]).abs().max() < 1e-5
    assert (ours.pooler_output - theirs.pooler_output).abs().max() < 1e-5


def test_position_ids_match_transformers(minilm_path):
    """Explicit (shifted) position ids mean the same as in transformers."""
    ckpt = load_pretrained(minilm_path, tokenizer=False)
    ref = transformers.BertModel.from_pretrained(str(minilm_path)).eval()
    batch = _batch(transformers.AutoTokenizer.from_pretrained(str(minilm_path)), TEXTS[:3])
    T = batch["input_ids"].shape[1]
    position_ids = torch.tensor([[0], [7], [100]]) + torch.arange(T)[None, :]
    with torch.no_grad():
        shifted = ckpt.encoder.eval()(**batch, position_ids=position_ids).last_hidden_state
        theirs = ref(**batch, position_ids=position_ids).last_hidden_state
        default = ckpt.encoder(**batch).last_hidden_state
        explicit = ckpt.encoder(**batch, position_ids=torch.arange(T).expand(3, T)).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert (shifted[mask] - theirs[mask]).abs().max() < 1e-5
    assert torch.equal(default, explicit)
    assert (shifted[1:][mask[1:]] - default[1:][mask[1:]]).abs().max() > 1e-3  # the shift is not a no-op


def test_real_minilm_attentions_match_transformers(minilm_path):
    ckpt = load_pretrained(minilm_path, tokenizer=False)
    ref = transformers.BertModel.from_pretrained(str(minilm_path), attn_implementation="eager").eval()
    batch = _batch(transformers.AutoTokenizer.from_pretrained(str(minilm_path)), TEXTS[:3])
    with torch.no_grad():
        ours = ckpt.encoder.eval()(**batch, output_attentions=True).attentions
        theirs = ref(**batch, output_attentions=True).attentions
    for a, b in zip(ours, theirs, strict=True):
        assert (a - b).abs().max() < 1e-5


def _random_model(tiny_config, heads):
    torch.manual_seed(0)
    config = BertConfig(**{**tiny_config.__dict__, "id2label": {0: "neg", 1: "pos", 2: "neutral"}})
    return BertEncoder(config).eval(), {k: v.eval() for k, v in build_heads(config, heads).items()}


def _inputs():
    torch.manual_seed(1)
    ids = torch.randint(5, 120, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    types = torch.zeros_like(ids)
    types[:, 6:] = 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types)


def test_round_trip_encoder_only(tmp_path, tiny_config):
    encoder, _ = _random_model(tiny_config, [])
    save_pretrained(tmp_path, encoder)
    ref = transformers.AutoModel.from_pretrained(tmp_path).eval()
    x = _inputs()
    with torch.no_grad():
        ours, theirs = encoder(**x), ref(**x)
    m = x["attention_mask"].bool()
    assert (ours.last_hidden_state[m] - theirs.last_hidden_state[m]).abs().max() < 1e-5
    assert (ours.pooler_output - theirs.pooler_output).abs().max() < 1e-5
    back = load_pretrained(tmp_path, tokenizer=False)
    for (n1, p1), (n2, p2) in zip(encoder.state_dict().items(), back.encoder.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


def test_round_trip_pretraining_heads(tmp_path, tiny_config):
    encoder, heads = _random_model(tiny_config, ["mlm", "nsp"])
    save_pretrained(tmp_path, encoder, heads)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    x = _inputs()
    with torch.no_grad():
        out = encoder(**x)
        mlm = heads["mlm"](out.last_hidden_state, encoder.embeddings.word_embeddings.weight)
        nsp = heads["nsp"](out.pooler_output)
        ref = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()(**x)
        mlm_only = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path).eval()(**x)
    m = x["attention_mask"].bool()
    assert (mlm[m] - ref.prediction_logits[m]).abs().max() < 1e-5
    assert (mlm[m] - mlm_only.logits[m]).abs().max() < 1e-5
    assert (nsp - ref.seq_relationship_logits).abs().max() < 1e-5

    # And back: a transformers-written folder loads into bertkit with the same heads and numbers.
    hf_dir = tmp_path / "from_hf"
    transformers.BertForPreTraining.from_pretrained(tmp_path).save_pretrained(hf_dir)
    back = load_pretrained(hf_dir, tokenizer=False)
    assert set(back.heads) == {"mlm", "nsp"}
    with torch.no_grad():
        out2 = back.encoder.eval()(**x)
        mlm2 = back.heads["mlm"](out2.last_hidden_state, back.encoder.embeddings.word_embeddings.weight)
    assert (mlm2 - mlm).abs().max() < 1e-5


def test_round_trip_classifier(tmp_path, tiny_config):
    encoder, heads = _random_model(tiny_config, ["classifier"])
    save_pretrained(tmp_path, encoder, heads)
    ref = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert ref.config.id2label == {0: "neg", 1: "pos", 2: "neutral"}
    x = _inputs()
    with torch.no_grad():
        ours = heads["classifier"](encoder(**x).pooler_output)
        theirs = ref(**x).logits
    assert (ours - theirs).abs().max() < 1e-5
    back = load_pretrained(tmp_path, tokenizer=False)
    assert back.config.id2label == {0: "neg", 1: "pos", 2: "neutral"} and set(back.heads) == {"classifier"}


def test_legacy_names_and_tied_decoder(tmp_path, tiny_config):
    """Old pytorch_model.bin files say LayerNorm.gamma/beta and store the tied decoder; both load."""
    encoder, heads = _random_model(tiny_config, ["mlm"])
    save_pretrained(tmp_path, encoder, heads)
    from safetensors.torch import load_file

    state = load_file(tmp_path / "model.safetensors")
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    legacy["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    legacy["bert.embeddings.position_ids"] = torch.arange(64)[None]
    (tmp_path / "model.safetensors").unlink()
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    back = load_pretrained(tmp_path, tokenizer=False)
    assert torch.equal(back.encoder.embeddings.norm.weight, encoder.embeddings.norm.weight)

    legacy["cls.predictions.decoder.weight"] = torch.randn_like(legacy["cls.predictions.decoder.weight"])
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="untied"):
        load_pretrained(tmp_path, tokenizer=False)


def _copy_minilm(minilm_path, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(minilm_path, dst)
    return dst


def test_missing_folder():
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_pretrained("/nonexistent/model")


def test_wrong_shape_is_named(tmp_path, minilm_path):
    folder = _copy_minilm(minilm_path, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 1024
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.0\.intermediate\.dense\.weight.*shape"):
        load_pretrained(folder, tokenizer=False)


def test_missing_and_unexpected_tensors_are_named(tmp_path, tiny_config):
    encoder, _ = _random_model(tiny_config, [])
    save_pretrained(tmp_path, encoder)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    del state["encoder.layer.1.output.dense.bias"]
    state["encoder.layer.1.adapter.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing.*layer.1.output.dense.bias.*unexpected.*adapter"):
        load_pretrained(tmp_path, tokenizer=False)


def test_unknown_config_key(tmp_path, minilm_path):
    folder = _copy_minilm(minilm_path, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_experts"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(Exception, match="unknown key 'num_experts'"):
        load_pretrained(folder)


def test_vocab_larger_than_embedding(tmp_path, minilm_path):
    folder = _copy_minilm(minilm_path, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 30000  # the file's vocab.txt has 30522 tokens
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()
    encoder = BertEncoder(BertConfig.from_json(folder / "config.json"))
    save_pretrained(folder, encoder)
    with pytest.raises(CheckpointError, match="30522 tokens.*vocab_size=30000"):
        load_pretrained(folder)


def test_save_does_not_touch_existing_folder_on_failure(tmp_path, tiny_config):
    encoder, _ = _random_model(tiny_config, [])
    save_pretrained(tmp_path, encoder)
    before = (tmp_path / "model.safetensors").read_bytes()

    class Broken:
        vocab_size = 10

        def save(self, folder):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_pretrained(tmp_path, BertEncoder(encoder.config), tokenizer=Broken())
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saving")]
