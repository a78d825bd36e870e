"""Rankings for a retrieval set: dense (a model's vectors, exact cosine search), BM25 (characters or jieba
words, by `bm25s`), and hybrid (reciprocal-rank fusion of the two), each as {query id: [document ids, best
first]}; `score_rankings` turns them into per-query metrics.

- Dense: documents and queries embedded by `Embedder.encode` (length-sorted token-budget batches), vectors
  L2-normalised, scores = cosine, the top `depth` by an exact matrix product (the corpora here have thousands of
  documents; `bertkit index` builds a faiss index for larger ones). Ties go to the earlier document.
- BM25: `bm25s` (Lucene's BM25, k1 = 1.5, b = 0.75) over characters (whitespace dropped) or over jieba's words
  (default mode); no stop words, no stemming. Ties (documents sharing no term with the query score 0) go to
  the earlier document.
"""

from __future__ import annotations

import time

import numpy as np

from bertkit.errors import BertkitError
from bertkit.retrieval.benchmark import RetrievalSet
from bertkit.retrieval.metrics import query_metrics, reciprocal_rank_fusion

DEPTH = 100
BM25_UNITS = ("chars", "words")


def top_k(scores: np.ndarray, depth: int) -> np.ndarray:
    """(Q, D) scores -> (Q, min(depth, D)) document indices, best first, ties to the lower index."""
    depth = min(depth, scores.shape[1])
    # a stable sort of the negated scores: equal scores keep document order
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :depth]


def dense_rankings(
    embedder, data: RetrievalSet, depth: int = DEPTH, precision: str = "fp32", batch_tokens: int = 4096
) -> tuple[dict[str, list[str]], dict]:
    """(rankings, timings): timings holds documents/s and queries/s (embedding and search, one thread pool)."""
    doc_ids = list(data.corpus)
    start = time.perf_counter()
    docs = embedder.encode([data.document_text(d) for d in doc_ids], precision=precision, batch_tokens=batch_tokens)
    doc_seconds = time.perf_counter() - start
    docs = _normalised(docs)
    qids = list(data.queries)
    start = time.perf_counter()
    queries = _normalised(
        embedder.encode([data.queries[q] for q in qids], precision=precision, batch_tokens=batch_tokens)
    )
    best = top_k(queries @ docs.T, depth)
    query_seconds = time.perf_counter() - start
    rankings = {q: [doc_ids[j] for j in row] for q, row in zip(qids, best.tolist(), strict=True)}
    return rankings, {"documents_per_s": len(doc_ids) / doc_seconds, "queries_per_s": len(qids) / query_seconds}


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def bm25_tokens(texts: list[str], unit: str) -> list[list[str]]:
    if unit == "chars":
        return [[c for c in t if not c.isspace()] for t in texts]
    if unit == "words":
        import jieba

        jieba.setLogLevel(60)  # its "Building prefix dict" lines are not ours to print
        return [[w for w in jieba.lcut(t) if w.strip()] for t in texts]
    raise BertkitError(f"BM25 unit {unit!r}: use one of {', '.join(BM25_UNITS)}")


def bm25_rankings(data: RetrievalSet, unit: str, depth: int = DEPTH) -> tuple[dict[str, list[str]], dict]:
    try:
        import bm25s
    except ImportError:
        raise BertkitError("BM25 needs the bm25s package: pip install bm25s") from None
    doc_ids = list(data.corpus)
    start = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25_tokens([data.document_text(d) for d in doc_ids], unit), show_progress=False)
    doc_seconds = time.perf_counter() - start
    qids = list(data.queries)
    start = time.perf_counter()
    tokens = bm25_tokens([data.queries[q] for q in qids], unit)
    k = min(depth, len(doc_ids))
    rankings = {}
    for q, toks in zip(qids, tokens, strict=True):
        # every document's score (an empty query scores none), so that ties break by document order
        scores = retriever.get_scores(toks) if toks else np.zeros(len(doc_ids), np.float32)
        rankings[q] = [doc_ids[j] for j in top_k(np.asarray(scores)[None, :], k)[0]]
    query_seconds = time.perf_counter() - start
    return rankings, {"documents_per_s": len(doc_ids) / doc_seconds, "queries_per_s": len(qids) / query_seconds}


def hybrid_rankings(*rankings: dict[str, list[str]], k: int = 60, depth: int = DEPTH) -> dict[str, list[str]]:
    """Reciprocal-rank fusion of several systems' rankings, query by query."""
    return {q: reciprocal_rank_fusion([r[q] for r in rankings], k=k, depth=depth) for q in rankings[0]}


def score_rankings(rankings: dict[str, list[str]], data: RetrievalSet) -> dict[str, dict[str, float]]:
    """Per-query metrics (metrics.METRICS) of `rankings` against the set's qrels."""
    return {q: query_metrics(rankings[q], data.qrels[q]) for q in data.queries}
