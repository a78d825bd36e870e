"""ERNIE on the one encoder: BERT's layout plus the task-type table (`extra_embeddings["task_type"]`, config.json's
`use_task_id` / `task_type_vocab_size`). Parity with `transformers`' Ernie classes through the folders, both ways,
with random weights and nonzero task ids; and the commands on an ERNIE folder."""

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

SMALL = dict(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=40,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    type_vocab_size=4,  # ERNIE 3.0's
)
# (transformers class, the bertkit heads it holds, whether its encoder has a pooler)
CLASSES = [
    ("ErnieModel", [], True),
    ("ErnieForPreTraining", ["mlm", "nsp"], True),
    ("ErnieForMaskedLM", ["mlm"], False),
    ("ErnieForSequenceClassification", ["classifier"], True),
    ("ErnieForTokenClassification", ["token_classifier"], False),
    ("ErnieForQuestionAnswering", ["qa"], False),
    ("ErnieForMultipleChoice", ["multiple_choice"], True),
]
CASES = [(*c, task) for c in CLASSES for task in (True, False)]
IDS = [f"{c[0]}-{'task' if c[3] else 'no-task'}" for c in CASES]
K = 2  # choices per question in the multiple-choice case


def hf_config(use_task_id: bool, num_labels: int = 3) -> transformers.ErnieConfig:
    return transformers.ErnieConfig(**SMALL, use_task_id=use_task_id, task_type_vocab_size=5, num_labels=num_labels)


def inputs(cls_name: str, use_task_id: bool) -> dict[str, torch.Tensor]:
    """A padded batch with two segments and, with the task table, task ids other than 0."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 97, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 4:] = 0
    types = (torch.arange(12) >= 6).long().expand(3, -1) * torch.tensor([[1], [3], [2]])
    batch = dict(input_ids=ids, attention_mask=mask, token_type_ids=types)
    if use_task_id:
        batch["task_type_ids"] = torch.randint(0, 5, (3, 12), generator=g)
    if cls_name.endswith("MultipleChoice"):  # (B, K, T): the same rows as K choices, shifted
        batch = {k: torch.stack([v, v.roll(1, 0)], 1) for k, v in batch.items()}
    return batch


def hf_outputs(model, batch) -> dict[str, torch.Tensor]:
    if "task_type_ids" in batch and batch["task_type_ids"].dim() == 3:
        # ErnieForMultipleChoice flattens (B, K, T) inputs to (B * K, T) but passes task_type_ids on as given
        # (transformers 5.25): give them flat, in the order it flattens the others.
        batch = {**batch, "task_type_ids": batch["task_type_ids"].flatten(0, 1)}
    with torch.no_grad():
        out = model(**batch)
    keys = ("last_hidden_state", "pooler_output", "prediction_logits", "seq_relationship_logits", "logits")
    got = {k: getattr(out, k) for k in (*keys, "start_logits", "end_logits") if getattr(out, k, None) is not None}
    return got


def bertkit_outputs(ckpt: Checkpoint, batch) -> dict[str, torch.Tensor]:
    enc, heads = ckpt.encoder, ckpt.heads
    flat = {k: v.flatten(0, 1) if "multiple_choice" in heads else v for k, v in batch.items()}
    extra = {"task_type": flat["task_type_ids"]} if "task_type_ids" in flat else None
    with torch.no_grad():
        out = enc(flat["input_ids"], flat["attention_mask"], flat["token_type_ids"], extra_ids=extra)
        h, got = out.last_hidden_state, {}
        if not heads:
            got.update(last_hidden_state=h, pooler_output=out.pooler_output)
        if "mlm" in heads:
            got["prediction_logits" if "nsp" in heads else "logits"] = heads["mlm"](
                h, enc.embeddings.word_embeddings.weight
            )
        if "nsp" in heads:
            got["seq_relationship_logits"] = heads["nsp"](out.pooler_output)
        if "classifier" in heads:
            got["logits"] = heads["classifier"](out.pooler_output)
        if "token_classifier" in heads:
            got["logits"] = heads["token_classifier"](h)
        if "qa" in heads:
            got["start_logits"], got["end_logits"] = heads["qa"](h).unbind(-1)
        if "multiple_choice" in heads:
            got["logits"] = heads["multiple_choice"](out.pooler_output).view(-1, K)
    return got


def num_labels(cls_name: str) -> int:
    return 3 if "Classification" in cls_name else 2


@pytest.mark.parametrize("cls_name,heads,pooler,use_task_id", CASES, ids=IDS)
def test_transformers_folder_loads_with_identical_outputs(tmp_path, cls_name, heads, pooler, use_task_id):
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(hf_config(use_task_id, num_labels(cls_name))).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 and 0, so a swapped name cannot hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path)
    ckpt = load_pretrained(tmp_path, tokenizer=False)
    assert ckpt.config.model_type == "ernie" and sorted(ckpt.heads) == sorted(heads)
    assert ckpt.config.extra_embeddings == ({"task_type": 5} if use_task_id else {})
    assert (ckpt.encoder.pooler is not None) == pooler
    batch = inputs(cls_name, use_task_id)
    assert_outputs_close(bertkit_outputs(ckpt, batch), hf_outputs(model, batch), batch["attention_mask"])


@pytest.mark.parametrize("cls_name,heads,pooler,use_task_id", CASES, ids=IDS)
def test_bertkit_folder_loads_in_transformers_with_identical_outputs(tmp_path, cls_name, heads, pooler, use_task_id):
    config = BertConfig.from_dict({**hf_config(use_task_id, num_labels(cls_name)).to_dict(), "architectures": None})
    torch.manual_seed(0)
    encoder, built = BertEncoder(config, add_pooler=pooler), build_heads(config, heads)
    with torch.no_grad():
        for module in (encoder, *built.values()):
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    save_pretrained(tmp_path, encoder, built)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [cls_name] and saved["model_type"] == "ernie"
    assert saved["use_task_id"] is use_task_id and "extra_embeddings" not in saved
    model = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    for m in (encoder, *built.values()):
        m.eval()
    batch = inputs(cls_name, use_task_id)
    ours = bertkit_outputs(Checkpoint(config, encoder, built), batch)
    assert_outputs_close(ours, hf_outputs(model, batch), batch["attention_mask"])


def test_no_task_ids_means_task_zero_as_in_transformers(tmp_path):
    """Fine-tuning and embed pass no task ids: the table's row 0 is added, as ErnieEmbeddings does."""
    torch.manual_seed(0)
    model = transformers.ErnieModel(hf_config(True)).eval()
    model.save_pretrained(tmp_path)
    enc = load_pretrained(tmp_path, tokenizer=False).encoder
    batch = inputs("ErnieModel", False)
    zeros = {"task_type": torch.zeros_like(batch["input_ids"])}
    with torch.no_grad():
        plain = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).last_hidden_state
        given = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], extra_ids=zeros)
        theirs = model(**batch).last_hidden_state
    torch.testing.assert_close(plain, given.last_hidden_state)
    keep = batch["attention_mask"].bool()
    torch.testing.assert_close(plain[keep], theirs[keep], atol=1e-5, rtol=1e-5)


def test_ernie_config_round_trips_and_its_mistakes_are_named(tmp_path):
    path = tmp_path / "config.json"
    for config in (from_preset("ernie-mini-chinese", id2label={0: "a", 1: "b"}), from_preset("ernie-mini-chinese")):
        config.save(path)
        assert BertConfig.from_json(path) == config
    data = json.loads(path.read_text())
    assert (data["use_task_id"], data["task_type_vocab_size"]) == (True, 3) and "extra_embeddings" not in data
    for change, field in [
        ({"use_task_id": "yes"}, "use_task_id"),
        ({"task_type_vocab_size": 0}, "task_type_vocab_size"),
        ({"extra_embeddings": {"task_type": 3}}, "extra_embeddings"),
    ]:
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ConfigError, match=field):
            BertConfig.from_json(path)
    off = {**data, "use_task_id": False, "task_type_vocab_size": 16}  # a size for no table: read, not built
    path.write_text(json.dumps(off))
    assert BertConfig.from_json(path).extra_embeddings == {}


@pytest.fixture(scope="module")
def ernie_folder(tmp_path_factory):
    from bertkit.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("ernie")
    lines = ["北京欢迎你。", "今天天气很好，我们去公园散步。", "这家店的菜很好吃", "服务太差了", "hello world"] * 20
    tok = Tokenizer.train(iter(lines), vocab_size=200)
    config = from_preset(
        "ernie-mini-chinese",
        vocab_size=tok.vocab_size,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    save_pretrained(root / "m", BertEncoder(config), {}, tok)
    (root / "texts.txt").write_text("\n".join(lines[:5]) + "\n", encoding="utf-8")
    return root


def test_commands_run_on_an_ernie_folder(ernie_folder, tmp_path):
    from bertkit.cli import main

    m = str(ernie_folder / "m")
    ft = ["finetune", "--task", "sentiment", "--model", m, "--out", str(tmp_path / "ft"), "--epochs", "1"]
    ft += ["--max-train-examples", "32", "--max-eval-examples", "16", "--max-seq-length", "32", "--lr", "1e-3"]
    assert main(ft) == 0
    saved = json.loads((tmp_path / "ft" / "model" / "config.json").read_text())
    assert saved["architectures"] == ["ErnieForSequenceClassification"] and saved["use_task_id"] is True
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft" / "model")
    assert type(theirs).__name__ == "ErnieForSequenceClassification"
    vectors = tmp_path / "v.npy"
    assert main(["embed", m, "--input", str(ernie_folder / "texts.txt"), "--output", str(vectors)]) == 0
    assert np.load(vectors).shape == (5, 32)
    from starlette.testclient import TestClient

    from bertkit.use.serve import ServeConfig, create_app, load_model

    served = load_model(tmp_path / "ft" / "model")
    with TestClient(create_app(served, ServeConfig())) as client:
        for route, body in (("/classify", {"texts": ["这家店的菜很好吃"]}), ("/embed", {"texts": ["北京欢迎你。"]})):
            assert client.post(route, json=body).status_code == 200, route


def test_ernie_folder_exports_to_onnx_and_matches(ernie_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from bertkit.use.export import export_onnx

    exported = export_onnx(ernie_folder / "m", tmp_path / "m.onnx", verbose=False)
    assert exported.max_diff <= 1e-4
