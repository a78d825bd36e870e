"""word2vec: the paper's pieces exactly (vocabulary, subsampling, noise table, reduced windows that never cross a
sentence), both engines deterministic and resumable, the vectors in the formats gensim reads (identical floats),
and on the built-in corpus neighbours a Chinese reader accepts."""

import json

import numpy as np
import pytest
from helpers import one_thread  # noqa: F401  (small tables: one thread)

from bertkit.cli import main
from bertkit.lineage import w2v_run
from bertkit.lineage.vectors import WordVectors
from bertkit.lineage.word2vec import (
    NOISE_TABLE,
    Corpus,
    TorchEngine,
    Vocab,
    Word2VecSettings,
    cbow_windows,
    chunks,
    skipgram_pairs,
)

gensim = pytest.importorskip("gensim")


def test_vocabulary_is_most_frequent_first_ties_by_first_seen():
    v = Vocab.build([["b", "a", "c"], ["a", "c", "d"], ["d", "e"]], min_count=2)
    assert v.words == ["a", "c", "d"] and v.counts.tolist() == [2, 2, 2]
    v = Vocab.build([["x", "y", "y", "z", "z", "z"]], min_count=1)
    assert v.words == ["z", "y", "x"]


def test_subsampling_keeps_a_word_with_the_papers_probability():
    counts = np.array([10_000, 1_000, 100, 10])
    v = Vocab(["a", "b", "c", "d"], counts)
    t, n = 1e-3, counts.sum()
    expected = np.minimum(1, (np.sqrt(counts / (t * n)) + 1) * (t * n) / counts)
    np.testing.assert_allclose(v.keep_probability(t), expected)
    assert v.keep_probability(0).tolist() == [1, 1, 1, 1]
    # and a chunk keeps that share of each word's occurrences
    ids = np.repeat(np.arange(4), counts)
    engine = TorchEngine(Word2VecSettings(dim=4, min_count=1), v)
    rng = np.random.default_rng(0)
    kept = rng.random(len(ids)) < engine.keep[ids]
    for i, c in enumerate(counts[:3]):
        assert abs(kept[ids == i].mean() - expected[i]) < 3 * np.sqrt(expected[i] * (1 - expected[i]) / c) + 1e-9


def test_the_noise_table_follows_the_unigram_to_the_three_quarters():
    v = Vocab(["a", "b", "c"], np.array([1000, 100, 10]))
    table = TorchEngine(Word2VecSettings(dim=2, min_count=1), v).noise_table
    assert len(table) == NOISE_TABLE
    share = np.bincount(table, minlength=3) / NOISE_TABLE
    expected = v.counts**0.75 / (v.counts**0.75).sum()
    np.testing.assert_allclose(share, expected, atol=1e-6)


def test_skipgram_pairs_follow_each_centres_reduced_window_within_its_sentence():
    sents = np.array([0, 0, 0, 0, 1, 1])
    reduced = np.array([1, 2, 1, 3, 2, 1])
    contexts, centres = skipgram_pairs(sents, reduced, window=3)
    got = sorted(zip(centres.tolist(), contexts.tolist(), strict=True))
    want = sorted(
        (i, j) for i in range(6) for j in range(6) if i != j and sents[i] == sents[j] and abs(i - j) <= reduced[i]
    )
    assert got == want
    ctx, centre = cbow_windows(sents, reduced, window=3)
    for row, i in zip(ctx.tolist(), centre.tolist(), strict=True):
        assert sorted(j for j in row if j >= 0) == [j for c, j in want if c == i]


def test_chunks_cut_between_sentences_and_cover_the_corpus():
    sents = np.repeat(np.arange(50), 7)  # 50 sentences of 7 words
    plan = chunks(sents, 50, chunk_words=20)
    assert plan[0].first == 0 and plan[-1].last == 50 and plan[-1].stop == 350
    for a, b in zip(plan, plan[1:], strict=False):
        assert a.last == b.first and a.stop == b.start
        assert a.stop % 7 == 0  # a chunk ends where a sentence ends
    assert all(c.stop - c.start >= 20 or c is plan[-1] for c in plan)


def small_corpus(tmp_path):
    rng = np.random.default_rng(0)
    groups = [list("甲乙丙丁"), list("春夏秋冬"), list("东南西北")]
    lines = []
    for _ in range(2000):
        g = groups[rng.integers(3)]
        lines.append("".join(rng.choice(g, 8)) + "。")
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(tmp_path, name, corpus, *extra):
    out = tmp_path / name
    argv = ["word2vec", "train", "--out", str(out), "--corpus", str(corpus), "--unit", "char", "--dim", "16"]
    argv += ["--min-count", "1", "--epochs", "3", "--save-every", "1", "--threads", "1", "--sample", "0"]
    argv += ["--batch", "256", *extra]
    assert main(argv) == 0
    return out


@pytest.mark.parametrize("engine", ["torch", "gensim"])
def test_same_seed_same_bits_and_words_of_a_group_come_together(tmp_path, engine):
    corpus = small_corpus(tmp_path)
    a = train(tmp_path, "a", corpus, "--engine", engine)
    b = train(tmp_path, "b", corpus, "--engine", engine)
    assert (a / "vectors.bin").read_bytes() == (b / "vectors.bin").read_bytes()
    wv = WordVectors.load(a / "vectors.bin")
    for word, group in (("甲", "乙丙丁"), ("春", "夏秋冬")):
        nearest = [w for w, _ in wv.most_similar([word], topn=3)]
        assert set(nearest) == set(group), (engine, word, nearest)
    rows = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["sgns_loss"] < rows[0]["sgns_loss"]  # the loss falls
    assert (a / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("engine", ["torch", "gensim"])
def test_a_resumed_run_ends_with_the_uninterrupted_runs_vectors(tmp_path, engine, monkeypatch):
    corpus = small_corpus(tmp_path)
    whole = train(tmp_path, "whole", corpus, "--engine", engine, "--epochs", "4")
    real = w2v_run.save_checkpoint
    calls = []

    def killed_after_two(out, step, *args, **kwargs):
        folder = real(out, step, *args, **kwargs)
        calls.append(step)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run is stopped right after its second checkpoint
        return folder

    monkeypatch.setattr(w2v_run, "save_checkpoint", killed_after_two)
    out = tmp_path / "cut"
    argv = ["word2vec", "train", "--out", str(out), "--corpus", str(corpus), "--unit", "char", "--dim", "16"]
    argv += ["--min-count", "1", "--epochs", "4", "--save-every", "1", "--threads", "1", "--engine", engine]
    argv += ["--sample", "0", "--batch", "256"]
    assert main(argv) == 130  # "interrupted", as Ctrl-C
    assert not (out / "vectors.bin").exists() and calls == [1, 2]
    monkeypatch.setattr(w2v_run, "save_checkpoint", real)
    assert main([*argv, "--resume"]) == 0
    assert (out / "vectors.bin").read_bytes() == (whole / "vectors.bin").read_bytes()
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # each chunk logged once


def test_gensim_reads_both_formats_with_identical_vectors_and_we_read_gensims(tmp_path):
    rng = np.random.default_rng(0)
    words = ["北京", "上海", "a", "的", "word2vec", "𠀀"]
    vectors = (rng.standard_normal((6, 7)) * 10.0 ** rng.integers(-8, 3, (6, 7))).astype(np.float32)
    ours = WordVectors(words, vectors)
    for binary, name in ((False, "v.txt"), (True, "v.bin")):
        ours.save(tmp_path / name, binary=binary)
        kv = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / name), binary=binary)
        assert kv.index_to_key == words
        assert np.array_equal(kv.vectors, vectors)
        back = WordVectors.load(tmp_path / name)
        assert back.words == words and np.array_equal(back.vectors, vectors)
        kv.save_word2vec_format(str(tmp_path / f"gensim-{name}"), binary=binary)
        theirs = WordVectors.load(tmp_path / f"gensim-{name}")
        assert theirs.words == words and np.array_equal(theirs.vectors, vectors)
    with pytest.raises(Exception, match="whitespace"):
        WordVectors(["a b"], vectors[:1]).save(tmp_path / "bad.txt", binary=False)


def test_analogy_and_neighbours_are_gensims(tmp_path):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(50)]
    ours = WordVectors(words, rng.standard_normal((50, 8)).astype(np.float32))
    ours.save(tmp_path / "v.bin", binary=True)
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin"), binary=True)
    for got, want in (
        (ours.most_similar(["w3"], topn=5), kv.most_similar("w3", topn=5)),
        (
            ours.most_similar(["w1", "w2"], ["w0"], topn=5),
            kv.most_similar(positive=["w1", "w2"], negative=["w0"], topn=5),
        ),
    ):
        assert [w for w, _ in got] == [w for w, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


# (query, words a Chinese reader accepts among its ten nearest: at least one must be there)
NEIGHBOURS = [
    ("北京", {"上海", "天津", "南京", "广州", "杭州", "深圳", "重庆", "武汉", "西安", "成都", "沈阳", "大连"}),
    ("足球", {"篮球", "排球", "乒乓球", "世界杯", "男篮", "女排", "体操", "联赛", "甲A"}),
    ("经济", {"国民经济", "宏观经济", "金融", "经济社会", "贸易", "产业", "经济发展"}),
    ("银行", {"商业银行", "金融机构", "证券公司", "外汇", "贷款", "金融", "中央银行", "储蓄"}),
    ("美国", {"日本", "英国", "法国", "俄罗斯", "德国", "加拿大", "美方"}),
]


@pytest.mark.slow
def test_on_the_built_in_corpus_neighbours_are_what_a_reader_expects(tmp_path):
    out = tmp_path / "pd"
    argv = ["word2vec", "train", "--out", str(out), "--engine", "torch", "--epochs", "3", "--save-every", "100"]
    assert main(argv) == 0
    wv = WordVectors.load(out / "vectors.bin")
    for word, accepted in NEIGHBOURS:
        nearest = {w for w, _ in wv.most_similar([word], topn=10)}
        assert nearest & accepted, (word, nearest)


def test_corpus_encoding_drops_rare_words_and_keeps_sentences_apart():
    sentences = [["a", "b", "rare"], ["b", "a"]]
    vocab = Vocab.build(sentences, min_count=2)
    corpus = Corpus.encode(sentences, vocab)
    assert [vocab.words[i] for i in corpus.ids] == ["a", "b", "b", "a"]
    assert corpus.sents.tolist() == [0, 0, 1, 1]


def test_word2vec_features_feed_the_baselines_models_and_pair_with_compare(tmp_path, capsys):
    """Vectors that put 好 and 差 far apart make the mean-pooled classifier right; the CRF tags from vectors alone."""
    from bertkit.lineage.w2v_features import mean_vector, token_attributes, unit_of

    words = ["好", "差", "今", "天", "北", "京"]
    vectors = np.zeros((6, 4), np.float32)
    vectors[0, 0], vectors[1, 0] = 1, -1
    vectors[4, 1] = vectors[5, 1] = 1  # 北京 together
    wv = WordVectors(words, vectors)
    assert unit_of(wv) == "char" and unit_of(WordVectors(["北京"], vectors[:1])) == "word"
    np.testing.assert_allclose(mean_vector(wv, "今天好x", "char"), vectors[[2, 3, 0]].mean(0))  # x: not there
    assert not mean_vector(wv, "xyz", "char").any()
    attrs = token_attributes(wv, ["北", "京"])
    assert attrs[0]["v1"] == 1 and attrs[0]["n1"] == 1 and attrs[0]["p1"] == 0 and "BOS" in attrs[0]
    wv.save(tmp_path / "v.bin", binary=True)
    rows = [("今天好", "pos"), ("今天差", "neg"), ("好好", "pos"), ("差差", "neg")] * 6
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.csv").write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows), "utf-8")
    files = f"--train {tmp_path}/train.csv --dev {tmp_path}/dev.csv --test {tmp_path}/test.csv"
    argv = f"baseline --task classification {files} --word2vec {tmp_path}/v.bin --out {tmp_path}/w2v"
    assert main(argv.split()) == 0
    summary = json.loads((tmp_path / "w2v" / "summary.json").read_text())
    assert summary["test"]["accuracy"] == 1.0 and "word2vec" in summary["method"]
    assert main(f"baseline --task classification {files} --out {tmp_path}/tfidf".split()) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "w2v"), str(tmp_path / "tfidf")]) == 0
    assert "w2v" in capsys.readouterr().out
    tagged = [{"tokens": list("我在北京"), "tags": ["O", "O", "B-LOC", "I-LOC"]}] * 12
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tagged), "utf-8")
    files = f"--train {tmp_path}/train.jsonl --dev {tmp_path}/dev.jsonl --test {tmp_path}/test.jsonl"
    assert main(f"baseline --task ner {files} --word2vec {tmp_path}/v.bin --out {tmp_path}/ner".split()) == 0
    assert json.loads((tmp_path / "ner" / "summary.json").read_text())["test"]["f1"] == 1.0
