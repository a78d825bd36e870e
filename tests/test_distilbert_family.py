"""DistilBERT on the one encoder: BERT's post-LayerNorm layer under DistilBertConfig's names, no token types, no
pooler, first-token classifiers (`pre_classifier` → ReLU → `classifier`). Parity with `transformers`' DistilBert
classes through the folders, both ways, with random weights and padding; the config's own names and refusals;
and the commands on a DistilBERT folder."""

import json

import numpy as np
import pytest
import torch
import transformers
from helpers import assert_outputs_close, one_thread  # noqa: F401  (tiny models: one thread)

from bertkit.config import BertConfig, from_preset
from bertkit.errors import ConfigError
from bertkit.hf import Checkpoint, build_heads, load_pretrained, save_pretrained
from bertkit.model import BertEncoder

SMALL = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40)
SMALL.update(dropout=0.0, attention_dropout=0.0, activation="gelu")
# (transformers class, the bertkit heads it holds)
CLASSES = [
    ("DistilBertModel", []),
    ("DistilBertForMaskedLM", ["mlm"]),
    ("DistilBertForSequenceClassification", ["classifier"]),
    ("DistilBertForTokenClassification", ["token_classifier"]),
    ("DistilBertForQuestionAnswering", ["qa"]),
    ("DistilBertForMultipleChoice", ["multiple_choice"]),
]
K = 2  # choices per question in the multiple-choice case


def hf_config(cls_name: str, **kw) -> transformers.DistilBertConfig:
    labels = 3 if cls_name.endswith("Classification") else 2  # DistilBertForQuestionAnswering insists on 2
    return transformers.DistilBertConfig(**{**SMALL, **kw}, num_labels=labels)


def inputs(cls_name: str) -> dict[str, torch.Tensor]:
    """A padded batch: two rows end in padding, at different lengths."""
    ids = torch.randint(5, 97, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    batch = dict(input_ids=ids, attention_mask=mask)
    if cls_name.endswith("MultipleChoice"):  # (B, K, T): the same rows as K choices, shifted
        batch = {k: torch.stack([v, v.roll(1, 0)], 1) for k, v in batch.items()}
    return batch


def hf_outputs(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch)
    keys = ("last_hidden_state", "logits", "start_logits", "end_logits")
    return {k: getattr(out, k) for k in keys if getattr(out, k, None) is not None}


def bertkit_outputs(ckpt: Checkpoint, batch) -> dict[str, torch.Tensor]:
    enc, heads = ckpt.encoder, ckpt.heads
    flat = {k: v.flatten(0, 1) if "multiple_choice" in heads else v for k, v in batch.items()}
    with torch.no_grad():
        h = enc(flat["input_ids"], flat["attention_mask"]).last_hidden_state
        if not heads:
            return {"last_hidden_state": h}
        (name, head), got = next(iter(heads.items())), {}
        if name == "mlm":
            got["logits"] = head(h, enc.embeddings.word_embeddings.weight)
        elif name in ("classifier", "multiple_choice"):  # both read the first token
            got["logits"] = head(h[:, 0]).view(-1, K) if name == "multiple_choice" else head(h[:, 0])
        elif name == "token_classifier":
            got["logits"] = head(h)
        else:
            got["start_logits"], got["end_logits"] = head(h).unbind(-1)
    return got


def perturb(modules) -> None:
    """LayerNorms and biases away from 1 and 0, so a swapped name cannot hide."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("cls_name,heads", CLASSES, ids=[c[0] for c in CLASSES])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_transformers_folder_loads_with_identical_outputs(tmp_path, cls_name, heads, activation):
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(hf_config(cls_name, activation=activation)).eval()
    perturb([model])
    model.save_pretrained(tmp_path)
    ckpt = load_pretrained(tmp_path, tokenizer=False)
    assert ckpt.config.model_type == "distilbert" and sorted(ckpt.heads) == heads
    assert ckpt.encoder.pooler is None and ckpt.encoder.embeddings.token_type_embeddings is None
    batch = inputs(cls_name)
    assert_outputs_close(bertkit_outputs(ckpt, batch), hf_outputs(model, batch), batch["attention_mask"])


@pytest.mark.parametrize("cls_name,heads", CLASSES, ids=[c[0] for c in CLASSES])
def test_bertkit_folder_loads_in_transformers_with_identical_outputs(tmp_path, cls_name, heads):
    config = BertConfig.from_dict({**hf_config(cls_name).to_dict(), "architectures": None})
    torch.manual_seed(0)
    encoder, built = BertEncoder(config), build_heads(config, heads)
    perturb([encoder, *built.values()])
    save_pretrained(tmp_path, encoder, built)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [cls_name] and saved["model_type"] == "distilbert"
    assert not {"hidden_size", "type_vocab_size", "layer_norm_eps", "position_embedding_type"} & set(saved)
    model = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    for m in (encoder, *built.values()):
        m.eval()
    batch = inputs(cls_name)
    ours = bertkit_outputs(Checkpoint(config, encoder, built), batch)
    assert_outputs_close(ours, hf_outputs(model, batch), batch["attention_mask"])
    assert sorted(load_pretrained(tmp_path, tokenizer=False).heads) == heads  # and back


def test_distilbert_config_round_trips_under_its_own_names(tmp_path):
    path = tmp_path / "config.json"
    for config in (from_preset("distilbert-mini-chinese", id2label={0: "a", 1: "b"}), from_preset("distilbert-base")):
        config.save(path)
        assert BertConfig.from_json(path) == config
    data = json.loads(path.read_text())
    theirs = transformers.DistilBertConfig.from_pretrained(tmp_path)
    assert (theirs.dim, theirs.n_layers, theirs.n_heads, theirs.hidden_dim) == (768, 6, 12, 3072)
    assert data["sinusoidal_pos_embds"] is False and data["seq_classif_dropout"] == 0.2
    # a file transformers wrote, with its qa_dropout and an older file's tie_weights_: read, nothing built from them
    written = {**transformers.DistilBertConfig(**SMALL).to_dict(), "tie_weights_": True}
    assert BertConfig.from_dict(written).hidden_size == 32


@pytest.mark.parametrize(
    "change,message",
    [
        ({"sinusoidal_pos_embds": True}, "'sinusoidal_pos_embds' = true is not supported by bertkit's DistilBERT"),
        ({"layer_norm_eps": 1e-5}, "'layer_norm_eps' is 1e-05; DistilBERT models have 1e-12"),
        ({"type_vocab_size": 2}, "'type_vocab_size' is 2; DistilBERT models have 0"),
        ({"hidden_size": 32}, "has both 'dim' and 'hidden_size'"),
    ],
)
def test_what_distilbert_cannot_be_is_a_one_line_error(tmp_path, change, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**from_preset("distilbert-mini-chinese").to_dict(), **change}))
    with pytest.raises(ConfigError, match=message) as e:
        BertConfig.from_json(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


@pytest.fixture(scope="module")
def distilbert_folder(tmp_path_factory):
    from bertkit.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("distilbert")
    lines = ["北京欢迎你。", "今天天气很好，我们去公园散步。", "这家店的菜很好吃", "服务太差了", "hello world"] * 20
    tok = Tokenizer.train(iter(lines), vocab_size=200)
    small = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    config = from_preset("distilbert-mini-chinese", vocab_size=tok.vocab_size, **small, max_position_embeddings=128)
    torch.manual_seed(0)
    save_pretrained(root / "m", BertEncoder(config), {}, tok)
    (root / "texts.txt").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    return root


def test_commands_run_on_a_distilbert_folder(distilbert_folder, tmp_path):
    from bertkit.cli import main

    m = str(distilbert_folder / "m")
    ft = ["finetune", "--task", "sentiment", "--model", m, "--out", str(tmp_path / "ft"), "--epochs", "1"]
    ft += ["--max-train-examples", "40", "--max-eval-examples", "16", "--max-seq-length", "32", "--lr", "1e-3"]
    assert main(ft) == 0
    saved = json.loads((tmp_path / "ft" / "model" / "config.json").read_text())
    assert saved["architectures"] == ["DistilBertForSequenceClassification"] and "dim" in saved
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft" / "model")
    assert type(theirs).__name__ == "DistilBertForSequenceClassification"
    vectors = tmp_path / "v.npy"
    assert main(["embed", m, "--input", str(distilbert_folder / "texts.txt"), "--output", str(vectors)]) == 0
    assert np.load(vectors).shape == (5, 32)


def test_multiple_choice_fine_tunes_and_loads_in_transformers(distilbert_folder, tmp_path):
    """DistilBERT has no pooler: each choice is scored from its first token (pre_classifier → ReLU → classifier)."""
    from bertkit.cli import main
    from bertkit.finetune.model import load_task_model

    choices = ["很好", "服务太差了", "hello"]
    rows = [{"context": "北京欢迎你。", "question": "今天天气", "choices": choices, "label": k % 3} for k in range(3)]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows * 4), "utf-8")
    run, data = tmp_path / "run", str(tmp_path / "mc.jsonl")
    args = ["finetune", "--task", "multiple-choice", "--model", str(distilbert_folder / "m"), "--out", str(run)]
    assert main([*args, "--train", data, "--dev", data, "--epochs", "1", "--max-seq-length", "32", "--lr", "1e-3"]) == 0
    model, tok = load_task_model(run / "model")
    ref = transformers.AutoModelForMultipleChoice.from_pretrained(run / "model").eval()
    assert model.kind == "multiple_choice" and type(ref).__name__ == "DistilBertForMultipleChoice"
    flat = tok(["北京欢迎你。"] * 3, ["很好", "服务太差了", "hello"])
    batch = {k: v.view(1, 3, -1) for k, v in flat.items() if k != "token_type_ids"}
    with torch.no_grad():
        torch.testing.assert_close(model(**batch), ref(**batch).logits, atol=1e-5, rtol=1e-5)


def test_distilbert_folder_exports_to_onnx_and_embeds_with_onnxruntime(distilbert_folder, tmp_path):
    """No token types: the exported graph takes input_ids and attention_mask only, as the ONNX backend feeds it."""
    pytest.importorskip("onnxruntime")
    from bertkit.cli import main
    from bertkit.use.export import export_onnx

    exported = export_onnx(distilbert_folder / "m", tmp_path / "m.onnx", verbose=False)
    assert exported.max_diff <= 1e-4 and exported.inputs == ["input_ids", "attention_mask"]
    assert main(["export", str(distilbert_folder / "m"), "--onnx", str(tmp_path / "cli.onnx")]) == 0
    texts, out = str(distilbert_folder / "texts.txt"), {}
    for backend in ("torch", "onnxruntime"):
        out[backend] = tmp_path / f"{backend}.npy"
        assert (
            main(
                ["embed", str(distilbert_folder / "m"), "--input", texts, "--output", str(out[backend])]
                + ["--backend", backend]
            )
            == 0
        )
    np.testing.assert_allclose(np.load(out["onnxruntime"]), np.load(out["torch"]), atol=1e-4)
