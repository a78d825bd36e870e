"""RoBERTa's byte-level BPE: ids identical to transformers' RobertaTokenizer on a varied text set, read from
either file layout; deterministic training; clear errors."""

import itertools
import json
import subprocess
import sys

import pytest
import transformers

from bertkit.bpe import ByteLevelBPETokenizer
from bertkit.builtin import peoples_daily_lines
from bertkit.errors import BertkitError
from bertkit.vocab import load_tokenizer

CHINESE = ["".join(w for w, _ in line) for line in itertools.islice(peoples_daily_lines(), 1500)]
VARIED = [
    "The quick brown fox jumps over the lazy dog.",
    "Héllo wörld, naïve café — déjà vu!",
    "  two  leading spaces\tand a tab",
    "emoji 😀👍🏽 and a flag 🇨🇳",
    "ALL CAPS and MiXeD case",
    "数字 123 和 English 混合，全角：ＡＢＣ",
    "a <mask> b",
    "中文<mask>测试",
    "",
    "\u200b zero width \u00a0nbsp",
    "line\nbreak",
]


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    tok = ByteLevelBPETokenizer.train(CHINESE + VARIED * 30, vocab_size=2000)
    tok.save(folder)
    return folder


def test_trained_vocabulary_has_robertas_special_ids(bpe_folder):
    tok = ByteLevelBPETokenizer.from_folder(bpe_folder)
    assert (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert tok.vocab_size == 2000
    config = json.loads((bpe_folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "RobertaTokenizer"


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab.json + merges.txt"])
def test_ids_equal_transformers_roberta_tokenizer(bpe_folder, tmp_path, layout):
    folder = bpe_folder
    if layout != "tokenizer.json":
        folder = tmp_path
        for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).write_bytes((bpe_folder / name).read_bytes())
    theirs = transformers.RobertaTokenizer.from_pretrained(folder)
    ours = load_tokenizer(str(folder))
    assert isinstance(ours, ByteLevelBPETokenizer)
    for text in VARIED + CHINESE[:50]:
        ids = ours.encode(text).ids
        assert ids == theirs(text)["input_ids"], text
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)
        if "<mask>" not in text:
            assert ours.decode(ids) == text
    for a, b in [(VARIED[0], VARIED[1]), (CHINESE[0], CHINESE[1])]:
        enc = ours.encode(a, b)
        assert enc.ids == theirs(a, b)["input_ids"]
        assert enc.ids.count(ours.sep_token_id) == 3 and set(enc.token_type_ids) == {0}  # <s> A </s></s> B </s>
    batch = ours(VARIED[:3], max_length=8)
    assert batch["input_ids"].shape[1] == 8 and (batch["input_ids"][:, 0] == 0).all()


def test_any_text_round_trips_byte_for_byte(bpe_folder):
    tok = ByteLevelBPETokenizer.from_folder(bpe_folder)
    for text in ["没有见过的字：龘靐齉", "\x07bell", "tab\tend", "😀" * 3, "  x  "]:
        ids = tok.encode(text).ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_training_is_deterministic_across_processes(tmp_path):
    script = (
        "import sys, itertools\n"
        "from bertkit.bpe import ByteLevelBPETokenizer\n"
        "from bertkit.builtin import peoples_daily_lines\n"
        "lines = [''.join(w for w, _ in l) for l in itertools.islice(peoples_daily_lines(), 800)]\n"
        "ByteLevelBPETokenizer.train(lines, vocab_size=1500).save(sys.argv[1])\n"
    )
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True)
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bpe_mistakes_are_named(bpe_folder, tmp_path):
    (tmp_path / "vocab.json").write_bytes((bpe_folder / "vocab.json").read_bytes())
    with pytest.raises(BertkitError, match="merges.txt") as e:
        load_tokenizer(str(tmp_path))
    assert str(tmp_path / "merges.txt") in str(e.value)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nnot-a-token-in-vocab another\n")
    with pytest.raises(BertkitError, match="merges"):
        load_tokenizer(str(tmp_path))
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(BertkitError, match="<s>"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(BertkitError, match="261"):
        ByteLevelBPETokenizer.train(["abc"], vocab_size=100)


def test_tokenizer_train_kind_bpe_from_the_cli(tmp_path):
    from test_cli import run

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CHINESE[:400] + VARIED), encoding="utf-8")
    result = run(
        "tokenizer", "train", str(corpus), "--out", str(tmp_path / "bpe"), "--kind", "bpe", "--vocab-size", "800"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bpe" / "merges.txt").is_file() and not (tmp_path / "bpe" / "vocab.txt").exists()
    result = run("tokenize", "--model", str(tmp_path / "bpe"), "北京 hello")
    assert result.returncode == 0, result.stderr
    assert "ids: 0 " in result.stdout  # <s> first
