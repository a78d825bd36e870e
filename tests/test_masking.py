"""Masking: statistics of 15% / 80-10-10, specials never touched, whole words, spans, Chinese words."""

import numpy as np
import pytest
import torch

from bertkit.errors import ConfigError
from bertkit.pretrain.masking import (
    IGNORE_INDEX,
    MaskingConfig,
    apply_mask,
    candidate_mask,
    chinese_word_ids,
    choose_span_positions,
    choose_spans,
    choose_token_positions,
    choose_word_positions,
    mask_batch,
    random_non_special_ids,
    sample_ngram_lengths,
    sample_span_lengths,
    segment_words,
    wordpiece_word_ids,
)

# bert-base-chinese layout: [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, 21,128 ids.
PAD, UNK, CLS, SEP, MASK = 0, 100, 101, 102, 103
VOCAB = 21128
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
IDS = dict(mask_token_id=MASK, vocab_size=VOCAB, special_ids=SPECIALS)


def make_batch(rng, n=2000, length=128):
    """(n, length) ids: [CLS] A [SEP] B [SEP] [PAD]..., variable length, a few [UNK]s in the text."""
    ids = rng.integers(MASK + 1, VOCAB, size=(n, length))
    ids[rng.random((n, length)) < 0.01] = UNK
    for row, used in zip(ids, rng.integers(length // 2, length + 1, size=n), strict=True):
        mid = int(rng.integers(2, used - 2))
        row[0], row[mid], row[used - 1] = CLS, SEP, SEP
        row[used:] = PAD
    return ids


def check_statistics(original, masked, labels):
    """The 15% / 80-10-10 contract over a batch (B, T)."""
    candidates = candidate_mask(original, SPECIALS)
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~candidates).any(), "a special token or padding was chosen"
    assert (labels[chosen] == original[chosen]).all()
    assert (masked[~chosen] == original[~chosen]).all()
    assert abs(chosen.sum() / candidates.sum() - 0.15) < 0.01

    to_mask = masked[chosen] == MASK
    unchanged = masked[chosen] == original[chosen]
    replaced = ~to_mask & ~unchanged
    assert abs(to_mask.mean() - 0.8) < 0.02
    assert abs(replaced.mean() - 0.1) < 0.02
    assert abs(unchanged.mean() - 0.1) < 0.02
    assert not np.isin(masked[chosen][replaced], SPECIALS).any(), "a special token was inserted"


def mask_rows(ids, cfg, rng):
    masked, labels = np.empty_like(ids), np.empty_like(ids)
    for b, row in enumerate(ids):
        positions = choose_token_positions(candidate_mask(row, SPECIALS), cfg, rng)
        masked[b], labels[b] = apply_mask(row, positions, cfg, rng, **IDS)
    return masked, labels


@pytest.mark.parametrize(
    "cfg",
    [
        MaskingConfig(max_predictions_per_seq=None),
        MaskingConfig(max_predictions_per_seq=1000),
        MaskingConfig(exact_count=False, max_predictions_per_seq=None),
    ],
    ids=["exact-uncapped", "exact-large-cap", "bernoulli"],
)
def test_token_masking_statistics(cfg):
    rng = np.random.default_rng(0)
    ids = make_batch(rng)
    check_statistics(ids, *mask_rows(ids, cfg, rng))
    check_statistics(ids, *mask_batch(ids, cfg, rng, **IDS))


def test_exact_count_is_googles_formula():
    rng = np.random.default_rng(1)
    ids = make_batch(rng, n=200)
    n_candidates = candidate_mask(ids, SPECIALS).sum(axis=1)
    cfg = MaskingConfig(max_predictions_per_seq=None)
    expected = np.maximum(1, np.round(n_candidates * 0.15))
    _, labels = mask_rows(ids, cfg, rng)
    assert ((labels != IGNORE_INDEX).sum(axis=1) == expected).all()
    _, labels = mask_batch(ids, cfg, rng, **IDS)
    assert ((labels != IGNORE_INDEX).sum(axis=1) == expected).all()


@pytest.mark.parametrize("exact_count", [True, False])
def test_cap_on_predictions(exact_count):
    rng = np.random.default_rng(2)
    ids = make_batch(rng, n=100, length=512)
    cfg = MaskingConfig(max_predictions_per_seq=20, exact_count=exact_count)
    for _, labels in (mask_rows(ids, cfg, rng), mask_batch(ids, cfg, rng, **IDS)):
        per_row = (labels != IGNORE_INDEX).sum(axis=1)
        assert per_row.max() == 20  # ~38 candidates at 15% of ~250, so the cap binds


def test_deterministic_given_seed():
    ids = make_batch(np.random.default_rng(3), n=50)
    cfg = MaskingConfig()
    runs = [mask_batch(ids, cfg, np.random.default_rng(seed), **IDS) for seed in (7, 7, 8)]
    assert all((a == b).all() for a, b in zip(runs[0], runs[1], strict=True))
    assert not (runs[0][1] == runs[2][1]).all()
    a = mask_rows(ids, cfg, np.random.default_rng(7))
    b = mask_rows(ids, cfg, np.random.default_rng(7))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def test_mask_batch_torch_in_torch_out_and_attention_mask():
    rng = np.random.default_rng(4)
    ids = make_batch(rng, n=64)
    attention_mask = np.ones_like(ids)
    attention_mask[:, 100:] = 0  # pretend the tail is padding even where ids are not [PAD]
    masked, labels = mask_batch(torch.from_numpy(ids), MaskingConfig(), rng, **IDS,
                                attention_mask=torch.from_numpy(attention_mask))  # fmt: skip
    assert isinstance(masked, torch.Tensor) and masked.dtype == torch.int64 and labels.dtype == torch.int64
    assert masked.shape == labels.shape == ids.shape
    assert (labels[:, 100:] == IGNORE_INDEX).all()
    assert (labels != IGNORE_INDEX).sum(dim=1).min() >= 1


def test_random_replacements_are_uniform_over_non_special_ids():
    rng = np.random.default_rng(5)
    specials = [0, 3, 4, 9]
    draws = random_non_special_ids(60_000, 10, specials, rng)
    allowed = [1, 2, 5, 6, 7, 8]
    assert set(np.unique(draws)) == set(allowed)
    counts = np.bincount(draws, minlength=10)[allowed]
    assert np.abs(counts / len(draws) - 1 / 6).max() < 0.01

    # Through apply_mask with a tiny vocabulary: every chosen token becomes a random one, never special.
    cfg = MaskingConfig(mask_token_prob=0.0, random_token_prob=1.0)
    ids = np.array([1, 2, 5, 6, 7, 8] * 50)
    masked, _ = apply_mask(ids, np.arange(len(ids)), cfg, rng, mask_token_id=4, vocab_size=10, special_ids=specials)
    assert np.isin(masked, allowed).all()


def test_apply_mask_groups_decide_per_span():
    rng = np.random.default_rng(6)
    ids = rng.integers(MASK + 1, VOCAB, size=3000)
    positions = np.arange(3000)
    groups = positions // 10  # 300 spans of 10
    masked, labels = apply_mask(ids, positions, MaskingConfig(), rng, **IDS, groups=groups)
    is_mask = (masked == MASK).reshape(300, 10)
    assert (is_mask.all(axis=1) | ~is_mask.any(axis=1)).all(), "a span was partly [MASK]ed"
    assert abs(is_mask[:, 0].mean() - 0.8) < 0.07
    assert (labels == ids).all()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("mlm_probability", dict(mlm_probability=1.5)),
        ("mask_token_prob", dict(mask_token_prob=-0.1)),
        ("random_token_prob", dict(random_token_prob=2.0)),
        ("mask_token_prob + random_token_prob", dict(mask_token_prob=0.8, random_token_prob=0.3)),
        ("max_predictions_per_seq", dict(max_predictions_per_seq=0)),
    ],
)
def test_config_errors_name_the_field(field, kwargs):
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        MaskingConfig(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Whole words


def random_word_ids(rng, length=128):
    """(length,) word ids: [CLS] words of 1-4 tokens [SEP]."""
    sizes = rng.integers(1, 5, size=length)
    word_ids = np.repeat(np.arange(length), sizes)[: length - 2]
    return np.concatenate([[-1], word_ids, [-1]])


def test_whole_word_masking_takes_words_whole():
    rng = np.random.default_rng(7)
    cfg = MaskingConfig(max_predictions_per_seq=None)
    n_chosen = n_candidates = 0
    for _ in range(1000):
        word_ids = random_word_ids(rng)
        positions = choose_word_positions(word_ids, cfg, rng)
        chosen_words = np.unique(word_ids[positions])
        assert (word_ids[positions] >= 0).all()
        assert np.isin(word_ids, chosen_words).sum() == len(positions), "a word was chosen in part"
        assert len(positions) <= max(1, round((word_ids >= 0).sum() * 0.15))
        n_chosen += len(positions)
        n_candidates += (word_ids >= 0).sum()
    assert abs(n_chosen / n_candidates - 0.15) < 0.01


def test_mask_batch_with_word_ids():
    rng = np.random.default_rng(8)
    word_ids = np.stack([random_word_ids(rng) for _ in range(500)])  # (B, T)
    ids = np.where(word_ids >= 0, rng.integers(MASK + 1, VOCAB, size=word_ids.shape), CLS)
    ids[:, -1] = SEP
    masked, labels = mask_batch(ids, MaskingConfig(max_predictions_per_seq=None), rng, **IDS, word_ids=word_ids)
    chosen = labels != IGNORE_INDEX
    for row_words, row_chosen in zip(word_ids, chosen, strict=True):
        words = np.unique(row_words[row_chosen])
        assert (np.isin(row_words, words) == row_chosen).all()
    assert abs(chosen.sum() / (word_ids >= 0).sum() - 0.15) < 0.01
    assert abs((masked[chosen] == MASK).mean() - 0.8) < 0.03


def test_wordpiece_word_ids_group_continuations():
    tokens = ["[CLS]", "the", "un", "##afford", "##able", "rent", "[SEP]", "##x", "[PAD]"]
    assert wordpiece_word_ids(tokens).tolist() == [-1, 0, 1, 1, 1, 2, -1, 3, -1]


def test_chinese_whole_words_with_jieba():
    words = segment_words("我喜欢吃苹果")
    assert words == ["我", "喜欢", "吃", "苹果"]
    tokens = ["[CLS]", "我", "喜", "欢", "吃", "苹", "果", "[SEP]"]
    word_ids = chinese_word_ids(tokens, words)
    assert word_ids.tolist() == [-1, 0, 1, 1, 2, 3, 3, -1]
    cfg = MaskingConfig(mlm_probability=0.5, max_predictions_per_seq=None)
    rng = np.random.default_rng(9)
    for _ in range(50):
        chosen = set(choose_word_positions(word_ids, cfg, rng).tolist())
        assert ({2, 3} <= chosen or not {2, 3} & chosen) and ({5, 6} <= chosen or not {5, 6} & chosen)


def test_chinese_word_ids_align_mixed_text():
    text = "我用iPhone手机，很好"
    words = segment_words(text)
    tokens = ["[CLS]", "我", "用", "ip", "##hone", "手", "机", "，", "[UNK]", "好", "[SEP]"]
    word_ids = chinese_word_ids(tokens, words)
    owner = {w: i for i, w in enumerate(words)}
    assert word_ids[3] == word_ids[4] == owner["iPhone"]  # lower-cased token, ## joins its word
    assert word_ids[5] == word_ids[6] == owner["手机"]
    assert word_ids[8] >= len(words)  # [UNK] is a word of its own
    assert word_ids[9] == owner["好"]
    assert word_ids[0] == word_ids[-1] == -1


# ---------------------------------------------------------------------------------------------------------
# Spans


def test_span_lengths_follow_the_clipped_geometric():
    rng = np.random.default_rng(10)
    lengths = sample_span_lengths(200_000, 0.2, 10, rng)
    support = np.arange(1, 11)
    pmf = 0.2 * 0.8 ** (support - 1)
    pmf /= pmf.sum()
    assert lengths.min() == 1 and lengths.max() == 10
    assert abs(lengths.mean() - (support * pmf).sum()) < 0.03  # 3.80, SpanBERT's figure
    assert np.abs(np.bincount(lengths, minlength=11)[1:] / len(lengths) - pmf).max() < 0.005


def test_spans_are_contiguous_within_budget_and_geometric():
    rng = np.random.default_rng(11)
    cfg = MaskingConfig(max_predictions_per_seq=None)
    candidates = np.ones(4096, dtype=bool)
    candidates[[0, 2000, 4095]] = False  # [CLS], a [SEP] in the middle, [SEP]
    lengths = []
    for _ in range(30):
        spans = choose_spans(candidates, cfg, rng)
        assert (spans[:, 1] > spans[:, 0]).all() and (spans[1:, 0] >= spans[:-1, 1]).all()  # disjoint
        positions = choose_span_positions(candidates, cfg, np.random.default_rng(0))
        assert candidates[positions].all()
        covered = (spans[:, 1] - spans[:, 0]).sum()
        assert covered == round(candidates.sum() * 0.15)  # token units: the budget is met exactly
        lengths.extend(spans[:, 1] - spans[:, 0])
    lengths = np.array(lengths)
    assert lengths.max() <= 10
    # Spans cut short by the budget or by an earlier span pull the mean a little below 3.80.
    assert 3.3 < lengths.mean() < 3.9


def test_spans_over_whole_words():
    rng = np.random.default_rng(12)
    cfg = MaskingConfig(max_predictions_per_seq=None)
    n_chosen = n_candidates = 0
    for _ in range(300):
        word_ids = random_word_ids(rng, length=256)
        candidates = word_ids >= 0
        spans = choose_spans(candidates, cfg, rng, word_ids=word_ids)
        positions = choose_span_positions(candidates, cfg, np.random.default_rng(1), word_ids=word_ids)
        assert np.isin(word_ids, np.unique(word_ids[positions])).sum() == len(positions)
        for start, end in spans:
            inside = word_ids[start:end]
            assert (inside >= 0).all()
            assert word_ids[start - 1] != inside[0] and word_ids[end] != inside[-1]  # whole words
            assert len(np.unique(inside)) <= 10
        budget = round(candidates.sum() * 0.15)
        covered = (spans[:, 1] - spans[:, 0]).sum()
        assert budget - 4 < covered <= budget  # words of up to 4 tokens may not fit the last gap
        n_chosen += covered
        n_candidates += candidates.sum()
    assert abs(n_chosen / n_candidates - 0.15) < 0.01


def test_span_masking_respects_the_cap():
    rng = np.random.default_rng(13)
    candidates = np.ones(512, dtype=bool)
    for _ in range(20):
        assert len(choose_span_positions(candidates, MaskingConfig(max_predictions_per_seq=20), rng)) == 20


# ---- whole-word and span masking of pretraining instances (dataset.PretrainingData.unit)


def test_sequence_word_ids_groups_chinese_words_and_wordpieces_and_stops_at_sep():
    from bertkit.pretrain.masking import segment_words, sequence_word_ids

    tokens = ["[CLS]", "我", "喜", "欢", "北", "京", "[SEP]", "play", "##ing", "ball", "[SEP]"]
    ids = sequence_word_ids(tokens)
    assert ids[0] == ids[6] == ids[10] == -1
    # jieba's words for 我喜欢北京, mapped onto the character tokens
    words = segment_words("我喜欢北京")
    assert words == ["我", "喜欢", "北京"]
    assert ids[1] != ids[2] and ids[2] == ids[3] and ids[4] == ids[5] and ids[3] != ids[4]
    assert ids[7] == ids[8] != ids[9]  # play ##ing is one word, ball another
    assert len(set(ids[1:6]) & set(ids[7:10])) == 0  # words never cross [SEP]


def _chinese_pretraining_data(unit):
    from bertkit.pretrain.dataset import PretrainingData, Vocab
    from bertkit.tokenizer import Tokenizer

    text = (
        "中华人民共和国成立以来，经济建设取得了巨大成就。我们要继续深化经济体制改革。"
        "全国人民团结一致，开创新局面。新华社记者报道，北京市今天召开会议。"
    )
    sentences = [s + "。" for s in text.split("。") if s]
    tok = Tokenizer.train(iter(sentences * 3), vocab_size=200, show_progress=False)

    class Docs:
        def __init__(self):
            rng = np.random.default_rng(0)
            self.docs = [
                [np.array(tok.encode(sentences[j]).ids[1:-1]) for j in rng.permutation(len(sentences))]
                for _ in range(60)
            ]

        def __len__(self):
            return len(self.docs)

        def document(self, i):
            return self.docs[i]

    data = PretrainingData(Docs(), Vocab.of(tok), np.arange(60), max_seq_length=64, unit=unit, seed=1)
    return data, tok


@pytest.mark.parametrize("unit", ["word", "span", "ngram"])
def test_pretraining_word_units_mask_whole_jieba_words_at_the_right_rates(unit):
    from bertkit.pretrain.masking import sequence_word_ids

    data, tok = _chinese_pretraining_data(unit)
    epoch = data.epoch(0)
    whole, partial, chosen, candidates = 0, 0, 0, 0
    corrupted = {"mask": 0, "random": 0, "same": 0}
    for row in range(len(epoch)):
        n = int(epoch.lengths[row])
        labels = epoch.labels[row, :n]
        original = np.where(labels != -100, labels, epoch.input_ids[row, :n])
        word_ids = sequence_word_ids(tok.convert_ids_to_tokens(original.tolist()))
        picked = labels != -100
        assert not picked[word_ids < 0].any()  # never [CLS] / [SEP]
        for w in np.unique(word_ids[word_ids >= 0]):
            in_word = picked[word_ids == w]
            if in_word.any():
                whole += bool(in_word.all())
                partial += not in_word.all()
        chosen += int(picked.sum())
        candidates += int((word_ids >= 0).sum())
        seen = epoch.input_ids[row, :n][picked]
        corrupted["mask"] += int((seen == tok.mask_token_id).sum())
        corrupted["same"] += int((seen == labels[picked]).sum())
        corrupted["random"] += int(((seen != labels[picked]) & (seen != tok.mask_token_id)).sum())
    assert partial == 0 and whole > 200  # every chosen word is taken whole
    assert abs(chosen / candidates - 0.15) < 0.02
    total = sum(corrupted.values())
    assert abs(corrupted["mask"] / total - 0.8) < 0.05
    # multi-character words exist in the text, so word masking really groups tokens
    assert chosen > whole


def test_ngram_lengths_follow_one_over_n_within_two_percent():
    lengths = sample_ngram_lengths(100_000, 3, np.random.default_rng(3))
    share = np.bincount(lengths, minlength=4)[1:] / len(lengths)
    expected = np.array([6, 3, 2]) / 11  # p(n) ∝ 1/n, n <= 3: ALBERT's n-gram masking
    assert np.abs(share - expected).max() < 0.02 * expected.max()
    with pytest.raises(ValueError, match="max_ngram"):
        sample_ngram_lengths(1, 0, np.random.default_rng(0))


def test_ngram_spans_are_whole_words_with_one_over_n_lengths():
    rng = np.random.default_rng(4)
    cfg = MaskingConfig(mlm_probability=0.03, max_predictions_per_seq=None)  # sparse: few spans collide
    counts = np.zeros(4)
    for _ in range(20):  # long sequences: the budget cuts short only the last of ~250 n-grams
        word_ids = random_word_ids(rng, length=20_000)
        spans = choose_spans(word_ids >= 0, cfg, rng, word_ids=word_ids, max_ngram=3)
        for start, end in spans:
            inside = word_ids[start:end]
            assert (inside >= 0).all() and word_ids[start - 1] != inside[0] and word_ids[end] != inside[-1]
            counts[len(np.unique(inside))] += 1
    share = counts[1:] / counts.sum()
    # Spans cut short (by the budget, an earlier span or [SEP]) move a little mass to shorter n-grams.
    assert np.abs(share - np.array([6, 3, 2]) / 11).max() < 0.03, share


# ---- segmenters: which characters whole-word masking takes together ------------------------------------


def test_a_word_list_segmenter_takes_its_longest_words_and_changes_what_is_masked_together(tmp_path):
    from bertkit.pretrain.masking import make_segmenter, sequence_word_ids

    words = tmp_path / "words.txt"
    words.write_text("北京天安门\n喜欢\n天安\n", encoding="utf-8")
    seg = make_segmenter(f"words:{words}")
    assert seg.cut("我喜欢北京天安门") == ["我", "喜欢", "北京天安门"]  # the longest listed word wins
    assert seg.cut("天安好") == ["天安", "好"]  # an unlisted character is a word of its own
    tokens = list("我喜欢北京天安门")
    jieba_ids = sequence_word_ids(tokens, ())
    listed = sequence_word_ids(tokens, (), seg.cut)
    assert len(set(listed[3:])) == 1 and len(set(jieba_ids[3:])) > 1  # 北京天安门 one word only in the list
    # Through whole-word masking: with 经济体制改革 listed, a chosen character of it brings the other five
    # along; jieba cuts it into 经济 / 体制 / 改革, which are masked apart.
    from dataclasses import replace

    data, tok = _chinese_pretraining_data("word")
    words.write_text("经济体制改革\n", encoding="utf-8")
    target = np.array([tok.get_vocab()[c] for c in "经济体制改革"])
    counts = {}
    for name, segmenter in (("jieba", None), ("words", make_segmenter(f"words:{words}"))):
        epochs = [replace(data, segmenter=segmenter).epoch(e) for e in range(5)]  # the 5 static versions
        whole = partial = 0
        for ids, labels in ((i, x) for epoch in epochs for i, x in zip(epoch.input_ids, epoch.labels, strict=True)):
            original = np.where(labels != -100, labels, ids)
            for start in range(len(original) - len(target) + 1):
                if np.array_equal(original[start : start + len(target)], target):
                    chosen = labels[start : start + len(target)] != -100
                    whole += bool(chosen.all())
                    partial += bool(chosen.any() and not chosen.all())
        counts[name] = (whole, partial)
    assert counts["words"][0] >= 3 and counts["words"][1] == 0
    assert counts["jieba"][1] > 0


def test_segmenter_mistakes_are_one_line_errors(tmp_path, capsys):
    from bertkit.errors import BertkitError, DataError
    from bertkit.pretrain.masking import make_segmenter

    with pytest.raises(DataError, match=r"nope\.txt: no such file"):
        make_segmenter(f"words:{tmp_path / 'nope.txt'}")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: the word file has no words"):
        make_segmenter(f"words:{tmp_path / 'empty.txt'}")
    with pytest.raises(ConfigError, match="--segmenter 'pkuseg': choose one of jieba, words:FILE"):
        make_segmenter("pkuseg")
    with pytest.raises(ConfigError, match="words:FILE"):
        make_segmenter("words")
    with pytest.raises(BertkitError, match="jieba takes no argument"):
        make_segmenter("jieba:x")
    # from the CLI: one line, exit 2, before any corpus is read
    from bertkit.cli import main

    base = f"pretrain --out {tmp_path / 'run'} --cache-dir {tmp_path / 'cache'} --steps 1"
    for flags, message in (
        (f"--masking wwm --segmenter words:{tmp_path / 'empty.txt'}", "empty.txt: the word file has no words"),
        ("--segmenter jieba", "--segmenter finds the words that --masking wwm, span and ngram take whole"),
    ):
        capsys.readouterr()
        assert main(f"{base} {flags}".split()) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "cache").exists()


# ---- a masking unit's own batch fields ---------------------------------------------------------------


def test_a_masking_units_named_fields_ride_through_chunks_batches_and_resume():
    """A unit may add fields (SpanBERT's span boundaries, say): here the chosen positions per token and their
    count per sequence, which must stay beside their rows through shuffling, chunking, carrying and resuming."""
    import itertools
    from dataclasses import replace

    from bertkit.pretrain.dataset import FIXED_FIELDS, Masked, PretrainingData, TokenMasking, Vocab

    class Flagged(TokenMasking):
        def __call__(self, tokens, lengths, word_ids, cfg, vocab, rng):
            out = super().__call__(tokens, lengths, word_ids, cfg, vocab, rng)
            chosen = out.labels != IGNORE_INDEX  # (N, L)
            return Masked(out.input_ids, out.labels, {"chosen": chosen}, {"n_chosen": chosen.sum(1)})

    rng = np.random.default_rng(0)
    docs = [[rng.integers(10, 100, size=rng.integers(3, 12)) for _ in range(rng.integers(2, 6))] for _ in range(80)]

    class Docs:
        def __len__(self):
            return len(docs)

        def document(self, i):
            return docs[i]

    vocab = Vocab(size=100, pad_id=0, cls_id=2, sep_id=3, mask_id=4, special_ids=(0, 1, 2, 3, 4))
    plain = PretrainingData(Docs(), vocab, np.arange(80), max_seq_length=24, chunk_tokens=300)
    flagged = replace(plain, unit=Flagged())
    assert len(list(plain.chunks(0))) > 3  # rows are carried across chunk boundaries
    full = list(itertools.islice(flagged.batches(8), 40))  # past the end of epoch 0
    for (_, _, mine), (_, _, theirs) in zip(full, itertools.islice(plain.batches(8), 40), strict=True):
        assert set(theirs) == set(FIXED_FIELDS)  # the default batch is what it was
        assert set(mine) == {*FIXED_FIELDS, "chosen", "n_chosen"}
        for k in theirs:
            assert torch.equal(mine[k], theirs[k])  # the unit draws what token masking draws
        assert mine["chosen"].shape == mine["input_ids"].shape  # cut to the batch's length
        assert torch.equal(mine["chosen"], mine["labels"] != IGNORE_INDEX)
        assert torch.equal(mine["n_chosen"], (mine["labels"] != IGNORE_INDEX).sum(1))
    resumed = list(itertools.islice(flagged.batches(8, start=13), 27))
    for (_, _, a), (_, _, b) in zip(resumed, full[13:], strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole = flagged.epoch(0)  # the chunks concatenated keep the fields too
    assert whole.token_fields["chosen"].shape == whole.input_ids.shape
