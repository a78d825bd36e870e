"""finetune/metrics.py: every metric checked by hand."""

import pytest

from bertkit.finetune.metrics import (
    accuracy,
    bio_spans,
    bmes_words,
    comparison_metric,
    entity_scores,
    macro_f1,
    mcnemar_exact,
    paired_comparison,
    pearson,
    spearman,
    squad_em,
    squad_f1,
    squad_normalize,
    word_scores,
)


def test_accuracy_and_macro_f1_by_hand():
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "c"]
    assert accuracy(gold, pred) == 0.75
    # a: tp 1, 1 predicted, 2 gold -> F1 2/3; b: tp 1, 2 predicted, 1 gold -> 2/3; c: 1.
    assert macro_f1(gold, pred) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError):
        accuracy(["a"], [])


def test_bio_spans_are_strict():
    tags = ["B-PER", "I-PER", "I-LOC", "O", "I-PER", "B-LOC", "B-LOC", "I-LOC"]
    # I-LOC after a PER entity ends it and starts nothing; the stray I-PER starts nothing; B-LOC B-LOC is two.
    assert bio_spans(tags) == [("PER", 0, 2), ("LOC", 5, 6), ("LOC", 6, 8)]
    assert bio_spans(["O", "B-ORG"]) == [("ORG", 1, 2)]


def test_entity_scores_with_partial_overlaps():
    gold = [["B-PER", "I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O", "B-LOC"], ["B-LOC", "I-LOC"]]
    # Gold {PER 0-3, LOC 4-5, ORG 0-2}; predicted {PER 0-2 (partial overlap: wrong), LOC 4-5 (right),
    # LOC 0-2 (right span, wrong type: wrong)}: 1 of 3 right both ways.
    s = entity_scores(gold, pred)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert s["per_type"]["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["per_type"]["LOC"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    assert s["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_scores([["O"]], [["O"]])["f1"] == 0.0  # nothing to find, nothing found


def test_bmes_word_f1():
    gold = ["S", "B", "E", "B", "M", "E"]  # 我 | 喜欢 | 吃苹果 -> (0,1) (1,3) (3,6)
    pred = ["S", "B", "E", "S", "S", "S"]  # (0,1) (1,3) (3,4) (4,5) (5,6)
    assert bmes_words(gold) == [(0, 1), (1, 3), (3, 6)]
    s = word_scores([gold], [pred])
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((2 / 5, 2 / 3, 0.5))
    # An invalid prediction still segments every character exactly once.
    assert bmes_words(["B", "B", "M"]) == [(0, 1), (1, 3)]
    assert bmes_words(["M", "E", "E", "S"]) == [(0, 2), (2, 3), (3, 4)]


def test_squad_normalisation_em_and_f1():
    assert squad_normalize("The  Cat's hat!") == "cats hat"
    assert squad_normalize("An apple, a day.") == "apple day"
    assert squad_em("the cat", ["A cat", "dog"]) == 1.0
    assert squad_em("cat.", ["the dog"]) == 0.0
    # pred {big, cat, sat} vs gold {cat, sat, down}: 2 in common -> P = R = 2/3.
    assert squad_f1("the big cat sat", ["a cat sat down"]) == pytest.approx(2 / 3)
    assert squad_f1("the big cat sat", ["a cat sat down", "big cat sat"]) == 1.0  # best gold answer
    assert squad_f1("", [""]) == 1.0 and squad_f1("x", [""]) == 0.0  # SQuAD 2.0 no-answer


def test_cmrc_character_f1_for_chinese():
    # CMRC 2018: characters, punctuation removed, overlap = longest common substring.
    assert squad_f1("北京市", ["北京"]) == pytest.approx(2 * 2 / (3 + 2))
    assert squad_em("北京。", ["北京"]) == 1.0 and squad_em("北京市", ["北京"]) == 0.0
    assert squad_f1("在北京的东城区", ["东城"]) == pytest.approx(2 * 2 / (7 + 2))
    assert squad_f1("京北", ["北京"]) == pytest.approx(2 * 1 / 4)  # common substring "北" (or "京"): 1
    assert squad_f1("2008年北京奥运会", ["2008年"]) == pytest.approx(2 * 2 / (7 + 2))  # "2008" is one token


def test_pearson_and_spearman_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
    # Deviations (-1.5, -0.5, 0.5, 1.5) and (-3, -1, 0, 4): sum of products 11, sums of squares 5 and 26.
    assert pearson(x, y) == pytest.approx(11 / (5 * 26) ** 0.5)
    assert pearson(x, [-v for v in y]) == pytest.approx(-11 / (5 * 26) ** 0.5)
    assert spearman(x, y) == pytest.approx(1.0)  # monotone, though not linear
    # Ties share their mean rank: (1, 2, 2, 3) -> (1, 2.5, 2.5, 4); against (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5).
    assert spearman([1.0, 2.0, 2.0, 3.0], x) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0  # nothing varies: no correlation to measure


def test_mcnemar_exact_is_the_two_sided_binomial_test():
    stats = pytest.importorskip("scipy.stats")
    for only_a, only_b in ((0, 0), (5, 5), (12, 3), (3, 12), (40, 61), (0, 9)):
        expected = 1.0 if only_a + only_b == 0 else stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-9)


def test_paired_comparison_by_hand():
    gold = ["p", "n"] * 50  # 100 examples
    b = list(gold)
    for i in range(0, 30):  # B wrong on the first 30
        b[i] = "n" if gold[i] == "p" else "p"
    a = list(gold)
    for i in range(25, 35):  # A wrong on 25..34: both wrong on 25..29; A alone on 30..34; B alone on 0..24
        a[i] = "n" if gold[i] == "p" else "p"
    r = paired_comparison(gold, [a], b, resamples=2000)
    assert (r["score_a"], r["score_b"], r["difference"]) == pytest.approx((0.90, 0.70, 0.20))
    assert r["metric"] == "accuracy"
    assert (r["only_a"], r["only_b"]) == (25, 5) and r["mcnemar_p"] == pytest.approx(mcnemar_exact(25, 5))
    low, high = r["ci95"]
    assert 0.05 < low < 0.20 < high < 0.35  # the discordant pairs make the difference clearly positive
    assert paired_comparison(gold, [a], b, resamples=2000) == r  # seeded: same inputs, same interval
    # the same run on both sides: no difference, an interval of one point, p = 1
    same = paired_comparison(gold, [b], b, resamples=500)
    assert same["difference"] == 0 and same["ci95"] == (0.0, 0.0) and same["mcnemar_p"] == 1.0
    # several runs of A (seeds): their mean correctness per example, no McNemar (it is for one run)
    mean = paired_comparison(gold, [a, b], b, resamples=500)
    assert mean["difference"] == pytest.approx(0.10) and "mcnemar_p" not in mean and mean["runs_a"] == 2
    with pytest.raises(ValueError):
        paired_comparison(gold, [a[:-1]], b)


def test_paired_comparison_of_taggers_resamples_sentences_and_scores_micro_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"], ["B-LOC", "O"]] * 10
    a = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "I-ORG"], ["B-LOC", "O"]] * 10  # misses one LOC a triple
    b = [["B-PER", "O", "O", "B-LOC"], ["O", "B-ORG", "O"], ["O", "O"]] * 10  # gets only one entity of four
    r = paired_comparison(gold, [a], b, resamples=1000)
    assert r["metric"] == "entity F1" and "mcnemar_p" not in r  # McNemar is for labels
    assert r["score_a"] == pytest.approx(entity_scores(gold, a)["f1"])
    assert r["score_b"] == pytest.approx(entity_scores(gold, b)["f1"])
    low, high = r["ci95"]
    assert 0 < low < r["difference"] < high  # A is ahead on every resample of these sentences
    words = [["B", "E", "S"], ["S", "B", "M", "E"]] * 5
    w = paired_comparison(words, [words], [["S", "S", "S"], ["S", "B", "M", "E"]] * 5, resamples=200)
    assert w["metric"] == "word F1" and w["score_a"] == 1.0
    assert w["score_b"] == pytest.approx(word_scores(words, [["S", "S", "S"], ["S", "B", "M", "E"]] * 5)["f1"])
    assert comparison_metric(["pos"]) == "accuracy" and comparison_metric([["O", "B-X"]]) == "entity F1"
