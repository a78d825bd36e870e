"""pretrain/shards.py: memory-mapped token shards, their cache, and the word starts of whole-word masking."""

import json

import numpy as np
import pytest
from helpers import corpus, ids, write

from bertkit import builtin
from bertkit.errors import DataError
from bertkit.pretrain.corpus import read_documents
from bertkit.pretrain.shards import (
    WORD_START_BIT,
    MarkedDocuments,
    _token_dtype,
    build_shards,
    load_shards,
    word_starts,
)
from bertkit.tokenizer import Tokenizer

# ---- shards -----------------------------------------------------------------------------------------------


def test_shards_hold_each_sentence_s_ids(tmp_path, mixed_tokenizer):
    path, docs = corpus(tmp_path)
    shards = build_shards(path, mixed_tokenizer, tmp_path / "cache", batch_docs=5, progress=False)
    assert len(shards) == len(docs)
    assert shards.tokens.dtype == np.uint16
    for i, doc in enumerate(docs):
        assert [s.tolist() for s in shards.document(i)] == [ids(mixed_tokenizer, s) for s in doc]
    assert [s.tolist() for s in shards.document(-1)] == [ids(mixed_tokenizer, s) for s in docs[-1]]
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
    assert meta["vocab_size"] == mixed_tokenizer.vocab_size and meta["bytes_of_text"] == path.stat().st_size
    reloaded = load_shards(shards.folder)
    assert np.array_equal(reloaded.tokens, shards.tokens) and reloaded.meta == meta


def test_peoples_daily_shards(tmp_path, mixed_tokenizer):
    shards = build_shards("peoples-daily", mixed_tokenizer, tmp_path, progress=False)
    docs = list(read_documents("peoples-daily"))
    assert shards.folder.name.startswith("peoples-daily-")
    assert len(shards) == len(docs) and shards.meta["corpus"] == "peoples-daily"
    assert shards.meta["bytes_of_text"] == builtin.peoples_daily_path().stat().st_size
    assert [s.tolist() for s in shards.document(0)] == [ids(mixed_tokenizer, s) for s in docs[0]]


def test_cache_is_reused_without_tokenising(tmp_path, mixed_tokenizer, monkeypatch):
    path, _ = corpus(tmp_path)
    first = build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=False)
    mtime = (first.folder / "tokens.bin").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(Tokenizer, "encode_ids", fail)
    again = build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=False)
    assert again.folder == first.folder
    assert (again.folder / "tokens.bin").stat().st_mtime_ns == mtime
    # A different format is another set of shards.
    monkeypatch.undo()
    other = build_shards(path, mixed_tokenizer, tmp_path / "cache", fmt="plain", progress=False)
    assert other.folder != first.folder


def test_rebuild_is_byte_identical(tmp_path, mixed_tokenizer):
    path, _ = corpus(tmp_path)
    a = build_shards(path, mixed_tokenizer, tmp_path / "cache1", batch_docs=3, progress=False)
    b = build_shards(path, mixed_tokenizer, tmp_path / "cache2", batch_docs=3, progress=False)
    assert a.folder.name == b.folder.name
    for name in ("tokens.bin", "sentence_offsets.bin", "document_offsets.bin"):
        assert (a.folder / name).read_bytes() == (b.folder / name).read_bytes()
    # meta.json differs only in the build time.
    meta_a, meta_b = (json.loads((s.folder / "meta.json").read_text()) for s in (a, b))
    assert {**meta_a, "seconds": 0} == {**meta_b, "seconds": 0}


def test_crash_mid_build_leaves_nothing(tmp_path, mixed_tokenizer, monkeypatch):
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
        build_shards(path, mixed_tokenizer, cache, batch_docs=2, progress=False)
    assert list(cache.iterdir()) == []  # neither a complete-looking folder nor a temp folder


def test_load_shards_rejects_incomplete_or_damaged_folders(tmp_path, mixed_tokenizer):
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="half: not a complete shard folder"):
        load_shards(tmp_path / "half")
    path, _ = corpus(tmp_path)
    folder = build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=False).folder
    tokens = folder / "tokens.bin"
    tokens.write_bytes(tokens.read_bytes()[:-2])
    with pytest.raises(DataError, match="tokens.bin: .* damaged"):
        load_shards(folder)


def test_one_sentence_documents_kept_and_empty_ones_dropped(tmp_path, mixed_tokenizer):
    # Control characters normalise away: that sentence has no tokens, so its document disappears.
    path = write(tmp_path / "c.txt", "今天\n\n\x01\x02\n\n我们\n\x03\n学习\n")
    shards = build_shards(path, mixed_tokenizer, tmp_path / "cache", fmt="google", progress=False)
    assert len(shards) == 2
    assert [s.tolist() for s in shards.document(0)] == [ids(mixed_tokenizer, "今天")]
    assert [s.tolist() for s in shards.document(1)] == [ids(mixed_tokenizer, "我们"), ids(mixed_tokenizer, "学习")]


def test_a_100k_character_line_is_one_long_sentence(tmp_path, mixed_tokenizer):
    line = ("我们今天去公园散步" + "hello world ") * 5000
    assert len(line) > 100_000
    path = write(tmp_path / "long.txt", line + "\n")
    shards = build_shards(path, mixed_tokenizer, tmp_path / "cache", fmt="plain", progress=False)
    (sentence,) = shards.document(0)
    assert sentence.tolist() == ids(mixed_tokenizer, line)
    assert len(sentence) > 50_000


def test_progress_bar_on_stderr(tmp_path, mixed_tokenizer, capsys):
    path, _ = corpus(tmp_path)
    build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=True)
    err = capsys.readouterr().err
    assert "tokenising" in err and "100%" in err


def test_token_dtype_widens_past_uint16():
    assert _token_dtype(65535) == np.uint16
    assert _token_dtype(65536) == np.int32


# ---- word starts for whole-word masking ----------------------------------------------------------------


def test_word_starts_are_jieba_words_cached_and_carried_by_marked_documents(tmp_path, mixed_tokenizer):
    from bertkit.pretrain.masking import sequence_word_ids

    path, _ = corpus(tmp_path)
    shards = build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=False)
    vocab = mixed_tokenizer.convert_ids_to_tokens(range(mixed_tokenizer.vocab_size))
    starts = word_starts(shards, vocab, progress=False)
    assert starts.shape == (shards.num_tokens,) and set(np.unique(starts)) <= {0, 1}
    marked = MarkedDocuments(shards, starts)
    n_multi = 0
    for d in range(len(shards)):
        for plain, tagged in zip(shards.document(d), marked.document(d), strict=True):
            assert np.array_equal(tagged & (WORD_START_BIT - 1), plain)
            w = sequence_word_ids(mixed_tokenizer.convert_ids_to_tokens(plain.tolist()))
            expected = np.r_[True, w[1:] != w[:-1]]
            assert np.array_equal((tagged & WORD_START_BIT) != 0, expected)
            n_multi += int(len(plain) - expected.sum())
    assert n_multi > 0  # some words really span several tokens
    # a second call reads the cached file instead of segmenting again
    cached = list(shards.folder.glob("word_starts-*.bin"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    assert np.array_equal(word_starts(shards, vocab, progress=False), starts)
    assert cached[0].stat().st_mtime_ns == before


def test_word_starts_are_cached_per_segmenter_and_word_file_content(tmp_path, mixed_tokenizer):
    import jieba

    from bertkit.pretrain.masking import make_segmenter

    path, _ = corpus(tmp_path)
    shards = build_shards(path, mixed_tokenizer, tmp_path / "cache", progress=False)
    vocab = mixed_tokenizer.convert_ids_to_tokens(range(mixed_tokenizer.vocab_size))
    by_jieba = word_starts(shards, vocab, progress=False)
    assert (shards.folder / f"word_starts-jieba{jieba.__version__}.bin").is_file()  # jieba's name as before
    words = tmp_path / "words.txt"
    words.write_text("".join(f"{w}\n" for w in ("一二三四五六七八九十", "的了是")), encoding="utf-8")
    listed = make_segmenter(f"words:{words}")
    by_list = word_starts(shards, vocab, progress=False, segmenter=listed)
    assert (shards.folder / f"word_starts-{listed.key}.bin").is_file()
    assert not np.array_equal(by_jieba, by_list)  # the other cache was not read
    words.write_text("的了\n", encoding="utf-8")  # the same file with other words: another key, another cache
    relisted = make_segmenter(f"words:{words}")
    assert relisted.key != listed.key and relisted.key.startswith("words-")
    word_starts(shards, vocab, progress=False, segmenter=relisted)
    assert len(list(shards.folder.glob("word_starts-*.bin"))) == 3
