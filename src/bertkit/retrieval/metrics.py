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
