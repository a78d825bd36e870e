"""export.py: ONNX graphs that onnxruntime runs within 1e-4 of bertkit, for any batch size and length, written
atomically; the CLI command and its one-line errors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import save_tiny_bert

import bertkit.use.export
from bertkit.cli.table import main
from bertkit.errors import BertkitError
from bertkit.hf import load_pretrained
from bertkit.tokenizer import Tokenizer
from bertkit.use.embed import load_embedder, pad_batch
from bertkit.use.export import export_onnx

# Not the texts export.py checks with: new batch sizes and lengths.
TEXTS = ["Paris is the capital of France.", "我喜欢吃苹果", "ok", "x " * 300, "Two sentences. Here is the second."]


def _run(path, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feeds.items()})


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_minilm_sentence_embeddings(minilm_path, tmp_path, capsys):
    out = tmp_path / "minilm.onnx"
    assert main(["export", str(minilm_path), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check: 8 text(s) × 256 tokens: max abs diff" in printed and "<= 1e-04" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["minilm.onnx"]  # no temporary file left behind

    model = onnx.load(str(out))
    assert [(i.name, _dims(i)) for i in model.graph.input] == [
        ("input_ids", ["batch", "sequence"]),
        ("attention_mask", ["batch", "sequence"]),
    ]
    assert [(o.name, _dims(o)) for o in model.graph.output] == [("sentence_embedding", ["batch", 384])]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["bertkit.max_seq_length"] == "256" and meta["bertkit.pooling"] == "mean"

    embedder = load_embedder(minilm_path)
    for texts in (TEXTS[:1], TEXTS, TEXTS[2:4]):  # batch sizes 1, 5, 2; 7 to 256 tokens
        input_ids, attention_mask = pad_batch(embedder.tokenize(texts), embedder.tokenizer.pad_token_id)
        (got,) = _run(out, {"input_ids": input_ids, "attention_mask": attention_mask})
        assert np.abs(got - embedder.encode(texts)).max() <= 1e-4


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    tok = Tokenizer.train(iter(["the cat sat on the mat", "我喜欢吃苹果", "Paris is in France"] * 3), 150, 1)
    return save_tiny_bert(tmp_path_factory.mktemp("tiny"), tok)


def test_bert_hidden_states_and_pooler(tiny_bert, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = export_onnx(tiny_bert, out, verbose=False)
    assert result.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    assert result.outputs == ["last_hidden_state", "pooler_output"]
    assert result.max_diff <= 1e-4 and any("pairs" in name for name, _ in result.diffs)
    shapes = [(o.name, _dims(o)) for o in onnx.load(str(out)).graph.output]
    assert shapes == [("last_hidden_state", ["batch", "sequence", 32]), ("pooler_output", ["batch", 32])]

    ckpt = load_pretrained(tiny_bert)
    batch = ckpt.tokenizer(TEXTS[:3], TEXTS[2:5], max_length=64)  # pairs: segment 1 matters
    hidden, pooled = _run(out, {k: batch[k] for k in result.inputs})
    with torch.no_grad():
        ref = ckpt.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool().numpy()
    assert np.abs(hidden - ref.last_hidden_state.numpy())[real].max() <= 1e-4
    assert np.abs(pooled - ref.pooler_output.numpy()).max() <= 1e-4


def test_a_failed_check_keeps_the_old_file(tiny_bert, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous export")
    monkeypatch.setattr(bertkit.use.export, "check_onnx", lambda path, cases: [("every batch", 0.5)])
    with pytest.raises(BertkitError, match=r"differs from PyTorch by 5.00e-01 .* not written"):
        export_onnx(tiny_bert, out, verbose=False)
    assert out.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--onnx", "{tmp}/model.bin"], "must end in .onnx"),
        (["--onnx", "{tmp}/missing/model.onnx"], "no such folder for the output"),
        (["--onnx", "{tmp}/model.onnx", "--opset", "9"], "--opset must be in 14..20"),
    ],
)
def test_bad_export_arguments_are_one_line_errors(tiny_bert, tmp_path, capsys, args, fragment):
    assert main(["export", str(tiny_bert), *[a.format(tmp=tmp_path) for a in args]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertkit: error:") and fragment in err[0]


def test_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "no such model folder" in capsys.readouterr().err
