import json
import random

import numpy as np
import pytest

from bertkit import data
from bertkit.data import (
    BUILTIN_CORPORA,
    build_shards,
    detect_format,
    load_shards,
    peoples_daily_tagged,
    read_documents,
    resolve_corpus,
    split_sentences,
)
from bertkit.errors import BertkitError, DataError
from bertkit.tokenizer import Tokenizer

CHINESE = "我们今天天气很好去公园散步看书学习中国人民北京上海新年快乐朋友问候世界经济发展"
ENGLISH = "the quick brown fox jumps over lazy dog hello world data shards token model".split()


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        zh = "".join(rng.choice(CHINESE) for _ in range(12))
        en = " ".join(rng.choice(ENGLISH) for _ in range(6))
        lines.append(f"{zh}。{en}!")
    return Tokenizer.train(iter(lines), vocab_size=300, min_frequency=1)


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


# ---- reading corpora --------------------------------------------------------------------------------------


def test_google_format_documents_and_sentences(tmp_path):
    path = write(tmp_path / "g.txt", "First one.\n  Second one.  \n\nAlone\n\n\n\nA\nB\nC\n")
    assert list(read_documents(path, fmt="google")) == [
        ["First one.", "Second one."],
        ["Alone"],  # a one-sentence document is kept
        ["A", "B", "C"],
    ]


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("今天天气很好。我们去公园吧！你去吗？", ["今天天气很好。", "我们去公园吧！", "你去吗？"]),
        ("他说：“好！”然后走了。「走吧！」她问", ["他说：“好！”", "然后走了。", "「走吧！」", "她问"]),
        ("真的吗？！（是的。）", ["真的吗？！", "（是的。）"]),
        ("Really?! Yes! (Sure!) Mr. Smith went home.", ["Really?!", "Yes!", "(Sure!)", "Mr. Smith went home."]),
        ('She said "Stop!" and left', ['She said "Stop!"', "and left"]),
        ("line one\nline two。", ["line one", "line two。"]),
        ("   ", []),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_plain_format_one_document_per_line(tmp_path):
    path = write(tmp_path / "p.txt", "第一句。第二句！\n\n   \nHello? World\n只有一句\n")
    assert list(read_documents(path, fmt="plain")) == [["第一句。", "第二句！"], ["Hello?", "World"], ["只有一句"]]


def test_auto_detection(tmp_path):
    google = write(tmp_path / "g.txt", "a\nb\n\nc\nd\n")
    plain = write(tmp_path / "p.txt", "一。二。\n三。\n")
    # Blank lines between single-line paragraphs: plain text, or no paragraph would be split.
    paragraphs = write(tmp_path / "q.txt", "一。二。\n\n三。四。\n\n五。\n")
    assert [detect_format(p) for p in (google, plain, paragraphs)] == ["google", "plain", "plain"]
    assert list(read_documents(google)) == [["a", "b"], ["c", "d"]]
    assert list(read_documents(paragraphs)) == [["一。", "二。"], ["三。", "四。"], ["五。"]]


def test_folder_reads_txt_files_in_order_and_explicit_files_of_any_name(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "b.txt", "B。\n")
    write(tmp_path / "a.txt", "A。\n")
    write(tmp_path / "sub" / "c.txt", "C。\n")
    write(tmp_path / "notes.md", "M。\n")
    assert list(read_documents(tmp_path)) == [["A。"], ["B。"], ["C。"]]
    assert list(read_documents([tmp_path / "notes.md", tmp_path / "a.txt"])) == [["M。"], ["A。"]]


def test_peoples_daily_builtin():
    assert isinstance(resolve_corpus("peoples-daily"), data.BuiltinCorpus)
    assert resolve_corpus("peoples-daily") is BUILTIN_CORPORA["peoples-daily"]
    assert resolve_corpus(["peoples-daily"]) is BUILTIN_CORPORA["peoples-daily"]
    docs = list(read_documents("peoples-daily"))
    assert docs[0][0].startswith("迈向充满希望的新世纪——一九九八年新年讲话")
    assert 100 < len(docs) < 19484
    assert all(doc and all(doc) for doc in docs)
    text = "".join(s for doc in docs for s in doc)
    assert "/n" not in text and "/w" not in text and "  " not in text
    assert "中共中央总书记、国家主席江泽民" in docs[0]  # the sub-headline stays with its article


def test_reviews_builtin_is_the_sentiment_training_texts_and_mixes_with_other_corpora(tmp_path):
    from bertkit.tasks import sentiment_task

    task = sentiment_task()
    docs = list(read_documents("reviews"))
    assert len(docs) == len(task.train)
    texts = {"".join(doc) for doc in docs}
    assert not texts & {ex.text for ex in task.test}  # test reviews never reach pretraining
    write(tmp_path / "mine.txt", "第一句。第二句。\n")
    mixed = resolve_corpus(["reviews", tmp_path / "mine.txt", "peoples-daily"])
    assert mixed[0] is BUILTIN_CORPORA["reviews"] and mixed[2] is BUILTIN_CORPORA["peoples-daily"]
    mixed_docs = list(read_documents(mixed))
    assert len(mixed_docs) == len(docs) + 1 + len(list(read_documents("peoples-daily")))
    assert mixed_docs[len(docs)] == ["第一句。", "第二句。"]


def test_peoples_daily_tagged():
    lines = list(peoples_daily_tagged())
    assert len(lines) == 19484
    assert lines[0][:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]
    assert ("江", "nr") in lines[1] and ("泽民", "nr") in lines[1]


def test_join_words_keeps_a_space_only_between_ascii_words():
    assert data._join_words(["Windows", "98", "中文", "ok", "，", "x"]) == "Windows 98中文ok，x"


# ---- bad input --------------------------------------------------------------------------------------------


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes("第一行\n第二行\n".encode() + "第三行\n".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk\.txt: line 3 is not UTF-8"):
        list(read_documents(path))


def test_binary_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    with pytest.raises(DataError, match="model.txt: .*looks binary"):
        list(read_documents(path))


def test_empty_corpus(tmp_path, tokenizer):
    write(tmp_path / "a.txt", "\n   \n\n")
    write(tmp_path / "b.txt", "")
    with pytest.raises(DataError, match="empty"):
        list(read_documents(tmp_path))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="empty"):
        build_shards(tmp_path, tokenizer, cache, progress=False)
    assert list(cache.iterdir()) == []


def test_missing_path_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="nope.txt: no such file or folder"):
        read_documents(tmp_path / "nope.txt")  # fails when called, before iterating
    with pytest.raises(DataError, match="no .txt files"):
        read_documents(tmp_path)
    with pytest.raises(DataError, match="no .txt files"):
        read_documents(["peoples-daily", tmp_path])  # a mix is checked item by item
    with pytest.raises(BertkitError, match="fmt='tsv'"):
        read_documents("peoples-daily", fmt="tsv")
    with pytest.raises(BertkitError, match="built-in corpus has its own reader"):
        read_documents("peoples-daily", fmt="plain")


# ---- shards -----------------------------------------------------------------------------------------------


def test_shards_hold_each_sentence_s_ids(tmp_path, tokenizer):
    path, docs = corpus(tmp_path)
    shards = build_shards(path, tokenizer, tmp_path / "cache", batch_docs=5, progress=False)
    assert len(shards) == len(docs)
    assert shards.tokens.dtype == np.uint16
    for i, doc in enumerate(docs):
        assert [s.tolist() for s in shards.document(i)] == [ids(tokenizer, s) for s in doc]
    assert [s.tolist() for s in shards.document(-1)] == [ids(tokenizer, s) for s in docs[-1]]
    with pytest.raises(IndexError):
        shards.document(len(docs))
    n_sentences = sum(len(doc) for doc in docs)
    assert shards.sentence_offsets.dtype == shards.document_offsets.dtype == np.int64
    assert shards.sentence_offsets[0] == 0 and shards.sentence_offsets[-1] == shards.num_tokens
    assert np.all(np.diff(shards.sentence_offsets) > 0)  # no empty sentence
    assert shards.document_offsets.tolist() == np.cumsum([0] + [len(doc) for doc in docs]).tolist()
    meta = shards.meta
    assert (meta["num_documents"], meta["num_sentences"], meta["num_tokens"]) == (
        len(docs),
        n_sentences,
        shards.num_tokens,
    )
    assert meta["vocab_size"] == tokenizer.vocab_size and meta["bytes_of_text"] == path.stat().st_size
    reloaded = load_shards(shards.folder)
    assert np.array_equal(reloaded.tokens, shards.tokens) and reloaded.meta == meta


def test_peoples_daily_shards(tmp_path, tokenizer):
    shards = build_shards("peoples-daily", tokenizer, tmp_path, progress=False)
    docs = list(read_documents("peoples-daily"))
    assert shards.folder.name.startswith("peoples-daily-")
    assert len(shards) == len(docs) and shards.meta["corpus"] == "peoples-daily"
    assert shards.meta["bytes_of_text"] == data.peoples_daily_path().stat().st_size
    assert [s.tolist() for s in shards.document(0)] == [ids(tokenizer, s) for s in docs[0]]


def test_cache_is_reused_without_tokenising(tmp_path, tokenizer, monkeypatch):
    path, _ = corpus(tmp_path)
    first = build_shards(path, tokenizer, tmp_path / "cache", progress=False)
    mtime = (first.folder / "tokens.bin").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(Tokenizer, "encode_ids", fail)
    again = build_shards(path, tokenizer, tmp_path / "cache", progress=False)
    assert again.folder == first.folder
    assert (again.folder / "tokens.bin").stat().st_mtime_ns == mtime
    # A different format is another set of shards.
    monkeypatch.undo()
    other = build_shards(path, tokenizer, tmp_path / "cache", fmt="plain", progress=False)
    assert other.folder != first.folder


def test_rebuild_is_byte_identical(tmp_path, tokenizer):
    path, _ = corpus(tmp_path)
    a = build_shards(path, tokenizer, tmp_path / "cache1", batch_docs=3, progress=False)
    b = build_shards(path, tokenizer, tmp_path / "cache2", batch_docs=3, progress=False)
    assert a.folder.name == b.folder.name
    for name in ("tokens.bin", "sentence_offsets.bin", "document_offsets.bin"):
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes()
    # meta.json differs only in the build time.
    meta_a, meta_b = (json.loads((s.folder / "meta.json").read_text()) for s in (a, b))
    assert {**meta_a, "seconds": 0} == {**meta_b, "seconds": 0}


def test_crash_mid_build_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    path, _ = corpus(tmp_path)
    real = Tokenizer.encode_ids
    calls = []

    def crash_on_second_batch(self, texts, *args, **kwargs):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Tokenizer, "encode_ids", crash_on_second_batch)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="killed"):
        build_shards(path, tokenizer, cache, batch_docs=2, progress=False)
    assert list(cache.iterdir()) == []  # neither a complete-looking folder nor a temp folder


def test_load_shards_rejects_incomplete_or_damaged_folders(tmp_path, tokenizer):
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="half: not a complete shard folder"):
        load_shards(tmp_path / "half")
    path, _ = corpus(tmp_path)
    folder = build_shards(path, tokenizer, tmp_path / "cache", progress=False).folder
    tokens = folder / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    with pytest.raises(DataError, match="tokens.bin: .* damaged"):
        load_shards(folder)


def test_one_sentence_documents_kept_and_empty_ones_dropped(tmp_path, tokenizer):
    # Control characters normalise away: that sentence has no tokens, so its document disappears.
    path = write(tmp_path / "c.txt", "今天\n\n\x01\x02\n\n我们\n\x03\n学习\n")
    shards = build_shards(path, tokenizer, tmp_path / "cache", fmt="google", progress=False)
    assert len(shards) == 2
    assert [s.tolist() for s in shards.document(0)] == [ids(tokenizer, "今天")]
    assert [s.tolist() for s in shards.document(1)] == [ids(tokenizer, "我们"), ids(tokenizer, "学习")]


def test_a_100k_character_line_is_one_long_sentence(tmp_path, tokenizer):
    line = ("我们今天去公园散步" + "hello world ") * 5000
    assert len(line) > 100_000
    path = write(tmp_path / "long.txt", line + "\n")
    shards = build_shards(path, tokenizer, tmp_path / "cache", fmt="plain", progress=False)
    (sentence,) = shards.document(0)
    assert sentence.tolist() == ids(tokenizer, line)
    assert len(sentence) > 50_000


def test_progress_bar_on_stderr(tmp_path, tokenizer, capsys):
    path, _ = corpus(tmp_path)
    build_shards(path, tokenizer, tmp_path / "cache", progress=True)
    err = capsys.readouterr().err
    assert "tokenising" in err and "100%" in err


def test_token_dtype_widens_past_uint16():
    assert data._token_dtype(65535) == np.uint16
    assert data._token_dtype(65536) == np.int32


# ---- word starts for whole-word masking ----------------------------------------------------------------


def test_word_starts_are_jieba_words_cached_and_carried_by_marked_documents(tmp_path, tokenizer):
    from bertkit.masking import sequence_word_ids

    path, _ = corpus(tmp_path)
    shards = build_shards(path, tokenizer, tmp_path / "cache", progress=False)
    vocab = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    starts = data.word_starts(shards, vocab, progress=False)
    assert starts.shape == (shards.num_tokens,) and set(np.unique(starts)) <= {0, 1}
    marked = data.MarkedDocuments(shards, starts)
    n_multi = 0
    for d in range(len(shards)):
        for plain, tagged in zip(shards.document(d), marked.document(d), strict=True):
            assert np.array_equal(tagged & (data.WORD_START_BIT - 1), plain)
            w = sequence_word_ids(tokenizer.convert_ids_to_tokens(plain.tolist()))
            expected = np.r_[True, w[1:] != w[:-1]]
            assert np.array_equal((tagged & data.WORD_START_BIT) != 0, expected)
            n_multi += int(len(plain) - expected.sum())
    assert n_multi > 0  # some words really span several tokens
    # a second call reads the cached file instead of segmenting again
    cached = list(shards.folder.glob("word_starts-*.bin"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    assert np.array_equal(data.word_starts(shards, vocab, progress=False), starts)
    assert cached[0].stat().st_mtime_ns == before
