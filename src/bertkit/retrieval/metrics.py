"""Retrieval metrics per query, as trec_eval defines them (tests check each against `pytrec_eval` on the same runs):

- recall@k: the share of the query's relevant documents (qrels score > 0) in its first k results;
- MRR@10: 1 / the rank of the first relevant result, 0 when none is in the first 10 (trec_eval's recip_rank on
  a run cut at 10);
- nDCG@10: Σ_{i≤10} rel_i / log2(i + 1) over the ranking, divided by the same sum over the ideal ordering of
  the qrels (trec_eval's ndcg_cut_10: the gain is the relevance grade itself).

Per query, so that `bertkit compare` can pair two systems query by query; the mean over queries is the
figure. Rankings are given in rank order: how ties are broken is the caller's (the searches sort by score, then
by document order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10")


def query_metrics(ranking: Sequence[str], relevant: dict[str, int]) -> dict[str, float]:
    """`ranking`: document ids, best first (at least the first 100 where the corpus has them); `relevant`:
    document id -> relevance grade (> 0 relevant)."""
    grades = {d: g for d, g in relevant.items() if g > 0}
    if not grades:
        raise ValueError("a query without relevant documents has no recall or nDCG")
    out = {}
    for k in (1, 10, 100):
        out[f"recall@{k}"] = sum(1 for d in ranking[:k] if d in grades) / len(grades)
    first = next((i for i, d in enumerate(ranking[:10], 1) if d in grades), None)
    out["mrr@10"] = 1.0 / first if first else 0.0
    dcg = sum(grades.get(d, 0) / math.log2(i + 1) for i, d in enumerate(ranking[:10], 1))
    ideal = sorted(grades.values(), reverse=True)[:10]
    out["ndcg@10"] = dcg / sum(g / math.log2(i + 1) for i, g in enumerate(ideal, 1))
    return out


def mean_metrics(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries."""
    n = len(per_query)
    return {m: sum(q[m] for q in per_query.values()) / n for m in METRICS} if n else {}


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60, depth: int = 100) -> list[str]:
    """Reciprocal-rank fusion (Cormack et al. 2009): each document scores Σ 1 / (k + rank) over the rankings
    it appears in; the first `depth` by that score, ties by first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, d in enumerate(ranking, 1):
            scores[d] = scores.get(d, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: -scores[d])[:depth]  # sorted() is stable: ties keep first appearance


SCORES_FILE = "query_scores.jsonl"  # `bertkit retrieval eval`'s per-query metrics, which `bertkit compare` pairs


def read_query_scores(path) -> dict[str, dict[str, float]]:
    """query id -> its metrics, from a `retrieval eval` run's query_scores.jsonl."""
    import json

    found = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                found[row["query"]] = {m: float(row[m]) for m in METRICS}
            except (ValueError, KeyError, TypeError):
                from bertkit.errors import DataError

                raise DataError(
                    f"{path}: line {n} is not a retrieval eval row (query and {', '.join(METRICS)})"
                ) from None
    return found


def paired_query_comparison(
    runs_a: list[dict[str, float]], b: dict[str, float], resamples: int = 10_000, seed: int = 0
) -> dict:
    """A (one run, or the mean of several) against B on one metric, paired by query: the mean difference and its
    paired-bootstrap 95% interval over the queries (resampled with replacement, seeded)."""
    import numpy as np

    queries = list(b)
    a = np.array([[run[q] for q in queries] for run in runs_a]).mean(axis=0)  # (Q,)
    diff = a - np.array([b[q] for q in queries])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):
        idx = rng.integers(0, len(queries), size=(min(1000, resamples - start), len(queries)))
        means[start : start + len(idx)] = diff[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    score_a, score_b = float(a.mean()), float(np.mean([b[q] for q in queries]))
    return {
        "queries": len(queries),
        "score_a": score_a,
        "score_b": score_b,
        "difference": score_a - score_b,
        "ci95": (float(low), float(high)),
    }
