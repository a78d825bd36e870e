"""Embeddings: sentence-transformers parity on the real all-MiniLM-L6-v2, pooling by hand, order, precision, CLI."""

import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bertkit.cli.table import main
from bertkit.errors import BertkitError
from bertkit.use.embed import Embedder, layer_mix, length_batches, load_embedder

sentence_transformers = pytest.importorskip("sentence_transformers")

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "我喜欢吃苹果",
    "苹果和华为哪个牌子好？",
    "Café naïve Ångström — résumé déjà vu! Straße ﬁ ①",
    'Emoji 🤗🚀 and punctuation: (a), [b], {c}; "quoted" ... ?!',
    "a",
    "",
    "   ",
    "  leading and trailing spaces\tand a tab  ",
    "BERT " * 300,  # 302 tokens with [CLS]/[SEP]: truncated to max_seq_length=256
    "长" * 600,
    "supercalifragilistic" * 5000,  # 100,000 characters in one word: [UNK]
    "Short one.",
    "Mixed 中文 and English, 数字 123 and symbols %$#@.",
]
ENGLISH = [TEXTS[i] for i in (0, 3, 4, 8, 12)]


@pytest.fixture(scope="module")
def embedder(minilm_path) -> Embedder:
    return load_embedder(minilm_path)


@pytest.fixture(scope="module")
def reference(minilm_path):
    return sentence_transformers.SentenceTransformer(str(minilm_path), device="cpu")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ---- parity with sentence-transformers ------------------------------------------------------------------


def test_folder_settings_are_read(embedder):
    assert (embedder.pooling, embedder.normalize, embedder.max_seq_length) == ("mean", True, 256)
    assert "sentence-transformers folder" in embedder.source and embedder.dim == 384


@pytest.mark.parametrize("batch_tokens", [4096, 300])  # one batch for most texts; then a batch per long text
def test_vectors_match_sentence_transformers(embedder, reference, batch_tokens):
    ours = embedder.encode(TEXTS, batch_tokens=batch_tokens)
    theirs = reference.encode(TEXTS, batch_size=4)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5


def test_truncation_is_sentence_transformers(embedder):
    ids = embedder.tokenize(["BERT " * 300, "a"])
    assert len(ids[0]) == 256 and ids[0][-1] == embedder.tokenizer.sep_token_id
    assert ids[1] == [embedder.tokenizer.cls_token_id, 1037, embedder.tokenizer.sep_token_id]


def test_token_vectors_match_sentence_transformers(embedder, reference):
    texts = TEXTS[:5] + [TEXTS[9]]
    ours = embedder.encode(texts, output="token")
    theirs = reference.encode(texts, output_value="token_embeddings")
    for text, a, b in zip(texts, ours, theirs, strict=True):
        n = len(embedder.tokenize([text])[0])
        assert a.shape == (n, 384) == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() < 1e-5
    assert embedder.encode("hello world", output="token").shape == (4, 384)  # [CLS] hello world [SEP]


def test_unpadded_encoder_equals_padded_at_real_tokens(tiny_config):
    from bertkit.model import BertEncoder

    torch.manual_seed(0)
    encoder = BertEncoder(tiny_config).eval()
    ids = torch.randint(5, 120, (3, 9))
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 7 + [0] * 2])
    padded = encoder(ids, mask, output_hidden_states=True)
    unpadded = encoder(ids, mask, output_hidden_states=True, unpad=True)
    real = mask.bool()
    for a, b in zip(padded.hidden_states, unpadded.hidden_states, strict=True):
        assert (a[real] - b[real]).abs().max() < 1e-5 and b[~real].abs().max() == 0
    assert (padded.pooler_output - unpadded.pooler_output).abs().max() < 1e-5
    encoder.train()  # and it trains: gradients reach every parameter through the gather / scatter
    out = encoder(ids, mask, unpad=True)
    (out.last_hidden_state.sum() + out.pooler_output.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


# ---- pooling, layers, order -------------------------------------------------------------------------------


def _hidden_states(embedder, text):
    ids = torch.tensor(embedder.tokenize([text]))
    with torch.no_grad():
        return embedder.encoder(ids, output_hidden_states=True).hidden_states  # each (1, L, H), no padding


@pytest.mark.parametrize("mode", ["cls", "mean", "max", "mean_sqrt_len"])
def test_pooling_by_hand(embedder, mode):
    texts = ["a short text", "a somewhat longer text, so that the batch is padded", "中文"]
    ours = embedder.encode(texts, pooling=mode, normalize=False)
    for text, vec in zip(texts, ours, strict=True):
        h = _hidden_states(embedder, text)[-1][0]  # (L, H)
        expected = {
            "cls": h[0],
            "mean": h.mean(0),
            "max": h.max(0).values,
            "mean_sqrt_len": h.sum(0) / math.sqrt(len(h)),
        }[mode]
        assert np.abs(vec - expected.numpy()).max() < 1e-5


def test_layer_mix_by_hand(embedder):
    texts = ["layers mix in ELMo's way", "一二三"]
    k3 = embedder.encode(texts, layers=3, normalize=False)
    weights = [0.5, -1.0, 2.0, 0.0]
    mixed = embedder.encode(texts, layers=weights, gamma=2.0, normalize=False)
    s = torch.tensor(weights).softmax(0)
    for i, text in enumerate(texts):
        hs = _hidden_states(embedder, text)
        assert np.abs(k3[i] - torch.stack(hs[-3:]).mean(0)[0].mean(0).numpy()).max() < 1e-5
        expected = 2.0 * sum(w * h[0] for w, h in zip(s, hs[-4:], strict=True)).mean(0)
        assert np.abs(mixed[i] - expected.numpy()).max() < 1e-5
    with pytest.raises(BertkitError, match="7 hidden states"):
        layer_mix(8, 1.0, 6)
    with pytest.raises(BertkitError, match="layer weights"):
        layer_mix([], 1.0, 6)


def test_length_batches_cover_every_text_within_budget():
    lengths = [5, 256, 3, 40, 40, 17, 256, 9, 128, 2]
    batches = length_batches(lengths, 300)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 300
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


def test_order_is_restored_and_batching_changes_nothing(embedder):
    texts = [f"text number {i} " + "word " * ((i * 37) % 50) for i in range(24)]
    together = embedder.encode(texts, batch_tokens=512)
    alone = np.stack([embedder.encode(t) for t in texts])
    assert np.abs(together - alone).max() < 1e-5


def test_encode_iter_streams_in_order(embedder):
    texts = [f"sentence {i}" + " more" * (i % 7) for i in range(10)]
    consumed = []

    def source():
        for t in texts:
            consumed.append(t)
            yield t

    chunks = embedder.encode_iter(source(), chunk_size=4)
    first = next(chunks)
    assert first.shape == (4, 384) and len(consumed) == 4  # read one chunk ahead, not the whole input
    rest = list(chunks)
    assert [len(c) for c in rest] == [4, 2]
    assert np.abs(np.concatenate([first, *rest]) - embedder.encode(texts)).max() < 1e-5


def test_bad_arguments(embedder):
    for kwargs, fragment in [
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"precision": "fp16"}, "precision='fp16'"),
        ({"batch_tokens": 100}, "smaller than the model's max_seq_length"),
        ({"output": "matrix"}, "output='matrix'"),
    ]:
        with pytest.raises(BertkitError, match=fragment):
            embedder.encode(["x"], **kwargs)
    with pytest.raises(BertkitError, match="text 1 is a NoneType"):
        embedder.encode(["x", None])
    assert embedder.encode([]).shape == (0, 384)


# ---- precision --------------------------------------------------------------------------------------------


def test_bf16_close_to_fp32(embedder):
    texts = ENGLISH[:3] + ["我喜欢吃苹果"]
    cos = _cos(embedder.encode(texts, precision="bf16"), embedder.encode(texts))
    assert cos.min() >= 0.999, cos


def test_int8_close_to_fp32(embedder):
    cos = _cos(embedder.encode(ENGLISH, precision="int8"), embedder.encode(ENGLISH))
    assert cos.min() >= 0.99, cos
    # Chinese through this English-vocabulary model has the worst activation outliers: without SmoothQuant's
    # smoothing the worst of these was 0.968.
    from bertkit.finetune.tasks import sentiment_task

    chinese = ["我喜欢吃苹果", "苹果和华为哪个牌子好？", "这本书写得很好，推荐大家阅读。"]
    chinese += [e.text for e in sentiment_task().test[:100]]
    cos = _cos(embedder.encode(chinese, precision="int8"), embedder.encode(chinese))
    assert cos.min() >= 0.99, cos.min()


def test_int8_smoothing_leaves_the_fp32_function_unchanged(embedder):
    """Smoothing alone (before any rounding) is an identity: x/s times W*s is x times W."""
    from bertkit.use.int8 import Smoothed

    maxima = embedder._input_maxima()
    assert len(maxima) == 5 * embedder.encoder.config.num_hidden_layers  # Q, K, V, output, FFN up in every layer
    assert torch.equal(maxima["layers.2.attn.query"], maxima["layers.2.attn.value"])  # one shared input
    layer = embedder.encoder.layers[0].attn.query
    x = torch.randn(5, layer.in_features)
    scale = maxima["layers.0.attn.query"].clamp(min=1e-5) ** 0.7
    smoothed = torch.nn.Linear(layer.in_features, layer.out_features)
    with torch.no_grad():
        smoothed.weight.copy_(layer.weight * scale[None, :])
        smoothed.bias.copy_(layer.bias)
    assert torch.allclose(Smoothed(1.0 / scale, smoothed)(x), layer(x), atol=1e-5)


# ---- folders ----------------------------------------------------------------------------------------------


def _link_folder(src, dst, skip=()):
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip and f.is_file():
            os.symlink(f, dst / f.name)
    return dst


def test_plain_bert_folder_uses_mean_pooling(minilm_path, embedder, tmp_path):
    plain = _link_folder(minilm_path, tmp_path / "plain", skip={"modules.json", "sentence_bert_config.json"})
    e = load_embedder(plain)
    assert (e.pooling, e.normalize, e.max_seq_length) == ("mean", False, 512)
    assert "no modules.json" in e.source and "mean pooling" in e.source
    texts = ["a plain BERT folder", "中文"]
    assert np.abs(e.encode(texts) - embedder.encode(texts, normalize=False)).max() < 1e-5
    assert load_embedder(plain, pooling="cls").pooling == "cls"


def test_dense_module_matches_sentence_transformers(minilm_path, tmp_path):
    from safetensors.torch import save_file

    folder = _link_folder(minilm_path, tmp_path / "dense", skip={"modules.json"})
    shutil.copytree(minilm_path / "1_Pooling", folder / "1_Pooling")
    (folder / "2_Dense").mkdir()
    config = {"in_features": 384, "out_features": 64, "bias": True}  # no activation named: Tanh
    (folder / "2_Dense" / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    save_file(
        {"linear.weight": torch.randn(64, 384) * 0.1, "linear.bias": torch.randn(64)},
        str(folder / "2_Dense" / "model.safetensors"),
    )
    modules = json.loads((minilm_path / "modules.json").read_text())  # Transformer, Pooling, Normalize
    modules[2].update(idx=3, name="3", path="3_Normalize")
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    e = load_embedder(folder)
    assert e.dim == 64 and "1 Dense" in e.source
    theirs = sentence_transformers.SentenceTransformer(str(folder), device="cpu").encode(TEXTS[:5])
    assert np.abs(e.encode(TEXTS[:5]) - theirs).max() < 1e-5


def test_unsupported_modules_are_named(minilm_path, tmp_path):
    folder = _link_folder(minilm_path, tmp_path / "lstm", skip={"modules.json"})
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(BertkitError, match="'sentence_transformers.models.LSTM' is not supported"):
        load_embedder(folder)
    (folder / "modules.json").write_text(json.dumps(modules[:1] + [{**modules[1], "path": "p", "type": "Pooling"}]))
    (folder / "p").mkdir()
    (folder / "p" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_max_tokens": 1})
    )
    with pytest.raises(BertkitError, match="pooling modes cls \\+ max"):
        load_embedder(folder)


def test_word_vectors_differ_by_context(embedder):
    a = embedder.word_vector("我喜欢吃苹果", "苹果")
    b = embedder.word_vector("苹果和华为哪个牌子好", "苹果")
    assert a.shape == (384,) and 0 < _cos(a, b) < 0.95
    with pytest.raises(BertkitError, match="does not occur"):
        embedder.word_vector("我喜欢吃苹果", "香蕉")
    with pytest.raises(BertkitError, match="max_seq_length"):
        embedder.word_vector("长" * 300 + "苹果", "苹果")


# ---- CLI --------------------------------------------------------------------------------------------------

CLI_TEXTS = ["The quick brown fox.", "我喜欢吃苹果", "Café 🤗", "BERT " * 300]


def _stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def _one_line_error(capsys, fragment):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bertkit: error:") and fragment in err[0], err


def test_cli_embed_formats(minilm_path, embedder, tmp_path, capsys, monkeypatch):
    expected = embedder.encode(CLI_TEXTS)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(CLI_TEXTS) + "\n", encoding="utf-8")

    assert main(["embed", str(minilm_path), "--input", str(src), "--output", str(tmp_path / "v.npy")]) == 0
    assert "embedded 4 texts" in capsys.readouterr().err
    assert np.abs(np.load(tmp_path / "v.npy") - expected).max() < 1e-6

    from safetensors.numpy import load_file

    assert main(["embed", str(minilm_path), "--input", str(src), "--output", str(tmp_path / "v.safetensors")]) == 0
    st = load_file(tmp_path / "v.safetensors")
    assert np.abs(st["embeddings"] - expected).max() < 1e-6 and st["lines"].tolist() == [1, 2, 3, 4]

    _stdin(monkeypatch, ("\n".join(CLI_TEXTS) + "\n").encode())
    assert main(["embed", str(minilm_path)]) == 0  # stdin in, JSONL on stdout
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4]
    assert np.abs(np.array([r["embedding"] for r in records], dtype=np.float32) - expected).max() == 0

    out = tmp_path / "tokens.jsonl"
    assert main(["embed", str(minilm_path), "--input", str(src), "--output", str(out), "--tokens"]) == 0
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["tokens"][0] == "[CLS]" and len(first["embeddings"]) == len(first["tokens"]) == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_embed_options(minilm_path, embedder, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("first\n\n  \nsecond\n", encoding="utf-8")
    out = tmp_path / "v.safetensors"
    args = ["embed", str(minilm_path), "--input", str(src), "--output", str(out)]
    assert main([*args, "--skip-empty", "--pooling", "cls", "--no-normalize", "--layers", "2"]) == 0
    assert "skipped 2 empty line(s)" in capsys.readouterr().err
    from safetensors.numpy import load_file

    st = load_file(out)
    assert st["lines"].tolist() == [1, 4]
    expected = embedder.encode(["first", "second"], pooling="cls", normalize=False, layers=2)
    assert np.abs(st["embeddings"] - expected).max() < 1e-6


def test_cli_embed_bad_input(minilm_path, tmp_path, capsys, monkeypatch):
    model = str(minilm_path)
    out = tmp_path / "v.npy"
    out.write_bytes(b"keep me")
    _stdin(monkeypatch, b"fine\n\xff\xfe broken\n")
    assert main(["embed", model, "--output", str(out)]) == 2
    _one_line_error(capsys, "stdin: line 2 is not UTF-8")
    assert out.read_bytes() == b"keep me" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    (tmp_path / "gaps.txt").write_text("one\n\nthree\n", encoding="utf-8")
    assert main(["embed", model, "--input", str(tmp_path / "gaps.txt"), "--output", str(out)]) == 2
    _one_line_error(capsys, "line 2 is empty")

    for args, fragment in [
        (["embed", str(tmp_path / "missing")], "no such model folder"),
        (["embed", model, "--output", str(tmp_path / "v.csv")], "must end in .npy, .safetensors, .jsonl"),
        (["embed", model, "--output", str(out), "--tokens"], "write .safetensors or .jsonl"),
        (["embed", model, "--input", str(tmp_path / "nope.txt")], "no such file"),
        (["embed", model, "--layers", "2", "--layer-weights", "1", "2"], "give one"),
        (["similarity", model, "我喜欢吃苹果", "苹果", "--word", "香蕉"], "does not occur"),
    ]:
        assert main(args) == 2
        _one_line_error(capsys, fragment)


def test_cli_similarity(minilm_path, capsys):
    assert main(["similarity", str(minilm_path), "我喜欢吃苹果", "苹果和华为哪个牌子好", "--word", "苹果"]) == 0
    out = capsys.readouterr().out
    cosine = float(out.split("cosine ")[1].split()[0])
    assert 0 < cosine < 0.95 and "static" in out
    assert main(["similarity", str(minilm_path), "I like apples.", "Apples are my favourite fruit."]) == 0
    assert 0.5 < float(capsys.readouterr().out.split()[1]) < 1


def test_cli_invalid_utf8_on_stdin_as_a_user_runs_it(minilm_path):
    exe = shutil.which("bertkit", path=os.path.dirname(sys.executable)) or "bertkit"
    result = subprocess.run([exe, "embed", str(minilm_path)], input=b"ok\n\xc3\x28\n", capture_output=True, timeout=300)
    err = result.stderr.decode().strip().splitlines()
    assert result.returncode == 2 and len(err) == 1 and "stdin: line 2 is not UTF-8" in err[0], err
