"""Shared test helpers (importable from any test module: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from bertkit.config import BertConfig
from bertkit.hf import save_pretrained
from bertkit.model import BertEncoder


def tiny_config(vocab_size: int, max_position_embeddings: int = 64) -> BertConfig:
    """A 2-layer, 32-wide BERT config: big enough to learn a toy task in seconds on one thread."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
    )


def save_tiny_bert(folder: Path, tokenizer, max_position_embeddings: int = 64, seed: int = 0) -> Path:
    """A random `tiny_config` encoder (with pooler, no heads) and its tokenizer, saved as an HF folder."""
    torch.manual_seed(seed)
    save_pretrained(folder, BertEncoder(tiny_config(tokenizer.vocab_size, max_position_embeddings)), {}, tokenizer)
    return folder


def model_folders(root: Path) -> Path:
    """The bad-input tests' tiny folders under `root`: plain (encoder and pooler), mlm (with an MLM head), clf
    (a neg/pos classifier), ner (an O/B-LOC/I-LOC tagger) and gpt (a GPT-2 with its LM head), on one small mixed
    vocabulary. Returns plain."""
    from dataclasses import replace

    from bertkit.config import from_preset
    from bertkit.finetune.model import build_model, save_task_model
    from bertkit.hf import build_heads, load_pretrained
    from bertkit.tokenizer import Tokenizer

    lines = ["我们今天在北京开会。", "the cat sat on the mat", "好 差 一般 很好"] * 5
    tok = Tokenizer.train(iter(lines), vocab_size=120, min_frequency=1)
    plain = save_tiny_bert(root / "plain", tok)
    ckpt = load_pretrained(plain)
    save_pretrained(root / "mlm", ckpt.encoder, build_heads(ckpt.config, ["mlm"]), tok)
    for name, kind, labels in (("clf", "classification", ["neg", "pos"]), ("ner", "tagging", ["O", "B-LOC", "I-LOC"])):
        model, model_tok = build_model(plain, kind, labels)
        save_task_model(root / name, model, model_tok)
    gpt = from_preset("gpt2-tiny-chinese", vocab_size=tok.vocab_size, hidden_size=32, max_position_embeddings=64)
    gpt = replace(gpt, pad_token_id=tok.pad_token_id, num_attention_heads=4, intermediate_size=64)
    save_pretrained(root / "gpt", BertEncoder(gpt), build_heads(gpt, ["lm"]), tok)
    return plain


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Import into a test module to run it on one thread: tiny models on a shared 2-core machine lose more to
    thread synchronisation than a second thread gains (10x slower matrix multiplies under load were measured)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the corpus and shard tests' small mixed-language corpus ------------------------------------------------

CHINESE = "我们今天天气很好去公园散步看书学习中国人民北京上海新年快乐朋友问候世界经济发展"
ENGLISH = "the quick brown fox jumps over lazy dog hello world data shards token model".split()


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def ids(tokenizer, sentence):
    return tokenizer.encode_batch([sentence], add_special_tokens=False)[0].ids


def corpus(tmp_path, n_docs=12):
    """A Google-format corpus of n_docs documents with 1..4 sentences each."""
    rng = random.Random(1)
    docs = []
    for d in range(n_docs):
        sentences = []
        for _ in range(1 + d % 4):
            zh = "".join(rng.choice(CHINESE) for _ in range(rng.randint(3, 15)))
            sentences.append(f"{zh}，{rng.choice(ENGLISH)} {rng.choice(ENGLISH)}。")
        docs.append(sentences)
    write(tmp_path / "corpus.txt", "\n\n".join("\n".join(doc) for doc in docs) + "\n")
    return tmp_path / "corpus.txt", docs


# ---- the bad-input invariant, shared by every bad-input test and the fuzzer ----------------------------------


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file under `root` with its bytes: compared before and after a command that must change nothing."""
    return {p: p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}


def check_mistake(argv: list[str], root: Path, capsys, message: str) -> str:
    """A user's mistake: `bertkit argv` exits 2 with exactly one stderr line, `bertkit: error: ...` holding
    `message`, no traceback, and every file under `root` as it was (nothing changed, nothing left behind).
    Returns the line."""
    from bertkit.cli import main

    before = snapshot(root)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(err) == 1 and err[0].startswith("bertkit: error:"), (argv, err)
    assert message in err[0], (argv, message, err[0])
    assert snapshot(root) == before, argv
    return err[0]


def fuzz_settings(default: int, *health_checks):
    """The fuzzers' Hypothesis settings: `default` draws per property, derandomised so that CI draws the same ones
    every time; BERTKIT_FUZZ_EXAMPLES=N draws N per property at random, to explore. No deadline (a draw may
    train a tiny model) and no example database (what a larger budget finds is kept as explicit examples)."""
    import os

    from hypothesis import HealthCheck, settings

    examples = int(os.environ.get("BERTKIT_FUZZ_EXAMPLES", "0"))
    return settings(
        max_examples=examples or default,
        deadline=None,
        derandomize=not examples,
        suppress_health_check=[HealthCheck.too_slow, *health_checks],
        database=None,
    )


def assert_outputs_close(ours: dict, theirs: dict, mask) -> None:
    """The same output names, each within 1e-5 of transformers'; per-token outputs compared at real tokens only."""
    import torch

    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        a, b = ours[key], value
        if a.dim() >= 2 and a.shape[:2] == mask.shape:  # per-token outputs: compare real tokens
            a, b = a[mask.bool()], b[mask.bool()]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=key)


# The texts both graph-engine backends (onnxruntime, OpenVINO) are checked on: English, Chinese, one letter, one
# past max_seq_length (truncated before the graph sees it), mixed scripts; three times, so batches hold several.
ENGINE_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "我喜欢吃苹果",
    "a",
    "BERT " * 300,
    "Mixed 中文 and English, 数字 123 and symbols %$#@.",
    "Short one.",
] * 3
