"""Fine-tuning metrics, small functions checked by hand in tests/test_metrics.py.

Accuracy, macro-F1, strict entity-level P/R/F1 over BIO spans (as seqeval's strict IOB2 mode: an entity is
B-X followed by I-X; an I-X that does not continue an X entity is no entity; a span counts only if type,
start and end all match), word-level P/R/F1 over BMES segmentations, SQuAD EM/F1 (English normalisation;
CMRC 2018's rules for Chinese) and Pearson / Spearman correlation for regression.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence


# ------------------------------------------------------------------------------------------------ metrics
def accuracy(gold: Sequence, pred: Sequence) -> float:
    _same_length(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))


def macro_f1(gold: Sequence, pred: Sequence) -> float:
    """The mean over classes (those in gold or pred) of each class's F1, as sklearn's average='macro'."""
    _same_length(gold, pred)
    scores = []
    for c in set(gold) | set(pred):
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        n_pred, n_gold = sum(p == c for p in pred), sum(g == c for g in gold)
        scores.append(_f1(tp, n_pred, n_gold))
    return sum(scores) / max(1, len(scores))


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Strict IOB2 entities (type, start, end exclusive): B-X then I-X*; stray I- tags start nothing."""
    spans = []
    etype, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        if etype is not None and tag != f"I-{etype}":
            spans.append((etype, start, i))
            etype = None
        if tag.startswith("B-"):
            etype, start = tag[2:], i
    return spans


def bmes_words(tags: Sequence[str]) -> list[tuple[int, int]]:
    """Words (start, end exclusive) of a BMES tagging. Total: every character is in exactly one word, a word
    ending after E or S and before B or S, so an invalid prediction (B B, a lone M) still segments."""
    words, start = [], 0
    for i, tag in enumerate(tags):
        if i > start and tag in ("B", "S"):
            words.append((start, i))
            start = i
        if tag in ("E", "S"):
            words.append((start, i + 1))
            start = i + 1
    if start < len(tags):
        words.append((start, len(tags)))
    return words


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro precision / recall / F1 over exact entity spans, plus the same per type."""
    _same_length(gold, pred)
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        _same_length(g, p)
        gs, ps = set(bio_spans(g)), set(bio_spans(p))
        tp.update(s[0] for s in gs & ps)
        n_pred.update(s[0] for s in ps)
        n_gold.update(s[0] for s in gs)
    scores = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    scores["per_type"] = {t: _prf(tp[t], n_pred[t], n_gold[t]) for t in sorted(n_gold | n_pred)}
    return scores


def word_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Word segmentation precision / recall / F1: a predicted word is right if its span is a gold word."""
    _same_length(gold, pred)
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        _same_length(g, p)
        gw, pw = set(bmes_words(g)), set(bmes_words(p))
        tp, n_pred, n_gold = tp + len(gw & pw), n_pred + len(pw), n_gold + len(gw)
    return _prf(tp, n_pred, n_gold)


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p, r = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": _f1(tp, n_pred, n_gold)}


def _f1(tp: int, n_pred: int, n_gold: int) -> float:
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} gold items but {len(b)} predictions")


# ---- extractive QA: SQuAD (English) and CMRC 2018 (Chinese)
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalisation: lower-case, drop punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(c for c in text.lower() if c not in _ASCII_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def _cmrc_segments(text: str) -> list[str]:
    """CMRC 2018: lower-case, punctuation removed, every CJK character a token, other runs split into words
    (the official script uses nltk's word_tokenize there; whitespace and punctuation splitting is close)."""
    out, run = [], []
    for c in text.lower().strip():
        if _is_punct(c):
            c = " "
        if "\u4e00" <= c <= "\u9fff":
            out += "".join(run).split()
            run = []
            out.append(c)
        else:
            run.append(c)
    return out + "".join(run).split()


def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCTUATION or unicodedata.category(c).startswith("P") or c in "～￥＄＾｀｜＋＝＜＞"


def _longest_common_substring(a: list[str], b: list[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def squad_em(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the prediction equals any gold answer after normalisation (CMRC's, when the answers are
    Chinese: lower-case, punctuation removed, whitespace kept out)."""
    if any(_has_cjk(a) for a in answers):
        norm = lambda s: "".join(_cmrc_segments(s))  # noqa: E731
    else:
        norm = squad_normalize
    return float(any(norm(prediction) == norm(a) for a in answers))


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best F1 over gold answers. English: bag-of-words overlap of normalised tokens (SQuAD). Chinese:
    CMRC 2018's character-level F1, where the overlap is the longest common substring of the segments."""
    scores = []
    for answer in answers:
        if _has_cjk(answer):
            a, p = _cmrc_segments(answer), _cmrc_segments(prediction)
            common = _longest_common_substring(a, p)
        else:
            a, p = squad_normalize(answer).split(), squad_normalize(prediction).split()
            if not a or not p:  # SQuAD 2.0: an empty answer matches only an empty prediction
                scores.append(float(a == p))
                continue
            common = sum((Counter(a) & Counter(p)).values())
        scores.append(0.0 if common == 0 else 2 * common / (len(a) + len(p)))
    return max(scores, default=0.0)


def best_null_threshold(
    diffs: Sequence[float], span_scores: Sequence[float], null_scores: Sequence[float]
) -> tuple[float, float]:
    """The SQuAD 2.0 no-answer threshold that maximises a metric over a labelled set, and the metric's mean.

    Per question: `diffs[i]` = its null score minus its best span's score, `span_scores[i]` and
    `null_scores[i]` the metric (EM or F1) of answering with that span and of answering nothing. A question
    goes unanswered when its diff is above the threshold. Candidates, as in the official evaluation script:
    each diff (answer every question up to it), and one below them all (answer nothing).
    """
    _same_length(diffs, span_scores)
    _same_length(diffs, null_scores)
    if not diffs:
        return 0.0, 0.0
    order = sorted(range(len(diffs)), key=diffs.__getitem__)
    best_total = total = float(sum(null_scores))  # nothing answered
    best_threshold = diffs[order[0]] - 1.0
    for rank, i in enumerate(order):
        total += span_scores[i] - null_scores[i]
        last_of_tie = rank + 1 == len(order) or diffs[order[rank + 1]] != diffs[i]
        if last_of_tie and total > best_total:
            best_total, best_threshold = total, diffs[i]
    return best_threshold, best_total / len(diffs)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation; 0.0 when either side is constant (no linear relation can be measured)."""
    _same_length(x, y)
    n = len(x)
    if n == 0:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's correlation: Pearson's of the ranks, tied values sharing their mean rank (as scipy's)."""
    return pearson(_ranks(x), _ranks(y))


def _ranks(x: Sequence[float]) -> list[float]:
    order = sorted(range(len(x)), key=x.__getitem__)
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# ------------------------------------------------------------------------------------------------ significance
def paired_comparison(
    gold: Sequence, runs_a: Sequence[Sequence], run_b: Sequence, resamples: int = 10_000, seed: int = 0
) -> dict:
    """How sure is "A beats B" on one test set? A is one run or several (seeds) of one system, B one run.

    Both were scored on the same examples, so the comparison is paired (Dietterich 1998; Berg-Kirkpatrick et al.
    2012): the examples are resampled with replacement `resamples` times (seeded: the same inputs give the same
    interval), A's and B's scores are computed on each resample, and the 2.5th and 97.5th percentiles of their
    difference make the 95% interval. A's score is the mean over its runs. The score is accuracy for labels,
    and micro F1 for tag sequences (entities for BIO tags, words for BMES), resampled by sentence: every example
    contributes (right, predicted, gold) counts and the score is 2·right / (predicted + gold), of which accuracy
    is the case (correct, 1, 1). For one run of a classifier also McNemar's exact two-sided p (the examples
    only one side got right: under "no difference" each side's count is Binomial(n, 1/2))."""
    import numpy as np

    if not runs_a or not gold:
        raise ValueError("a paired comparison needs at least one run of A and one example")
    metric = comparison_metric(gold)
    stats_a = np.stack([_example_counts(gold, run, metric) for run in runs_a])  # (R, N, 3)
    stats_b = _example_counts(gold, run_b, metric)  # (N, 3)

    def score(counts):  # (..., 3) summed counts -> (...)
        total = counts[..., 1] + counts[..., 2]
        return np.where(total > 0, 2 * counts[..., 0] / np.maximum(total, 1), 0.0)

    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for start in range(0, resamples, 500):  # (500, N) index draws at a time: bounded memory
        idx = rng.integers(0, len(gold), size=(min(500, resamples - start), len(gold)))
        a = score(stats_a[:, idx].sum(axis=2)).mean(axis=0)  # (R, draws, N, 3) -> (draws,)
        diffs[start : start + len(idx)] = a - score(stats_b[idx].sum(axis=1))
    low, high = np.percentile(diffs, [2.5, 97.5])
    score_a, score_b = float(score(stats_a.sum(axis=1)).mean()), float(score(stats_b.sum(axis=0)))
    result = {
        "metric": metric,
        "examples": len(gold),
        "runs_a": len(runs_a),
        "score_a": score_a,
        "score_b": score_b,
        "difference": score_a - score_b,
        "ci95": (float(low), float(high)),
    }
    if len(runs_a) == 1 and metric == "accuracy":
        right_a, right_b = stats_a[0, :, 0], stats_b[:, 0]
        only_a, only_b = int((right_a > right_b).sum()), int((right_a < right_b).sum())
        result |= {"only_a": only_a, "only_b": only_b, "mcnemar_p": mcnemar_exact(only_a, only_b)}
    return result


def comparison_metric(gold: Sequence) -> str:
    """What `paired_comparison` scores: "accuracy" for labels; for tag sequences "word F1" when every tag is
    B, M, E or S (segmentation), else "entity F1" (BIO)."""
    if not gold or not isinstance(gold[0], list | tuple):
        return "accuracy"
    return "word F1" if all(t in ("B", "M", "E", "S") for tags in gold for t in tags) else "entity F1"


def _example_counts(gold: Sequence, pred: Sequence, metric: str):
    """(N, 3) int array: per example, (right, predicted, gold) items: spans for tags, (correct, 1, 1) for labels."""
    import numpy as np

    _same_length(gold, pred)
    if metric == "accuracy":
        return np.array([(int(g == p), 1, 1) for g, p in zip(gold, pred, strict=True)], dtype=np.int64)
    units = bmes_words if metric == "word F1" else bio_spans
    rows = []
    for g, p in zip(gold, pred, strict=True):
        _same_length(g, p)
        gs, ps = set(units(g)), set(units(p))
        rows.append((len(gs & ps), len(ps), len(gs)))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: P(a count at least as far from n/2 as the smaller one) under Binomial(n, 1/2)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
