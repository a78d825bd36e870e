"""Hard negatives mined with a model's own index (`bertkit mine-negatives`), as sentence-transformers'
`mine_hard_negatives` and FlagEmbedding's hn_mine do.

Each query's candidates are the corpus (by default every positive of the pairs file, which is what such files
have) ranked by the model's cosine, its own positives (every positive any row gives for the same query text)
taken out. The negatives come from a window of ranks, `[low, high)`, not from the top: the first hits of a
decent model are often unlabelled positives (another paragraph of the same article, a paraphrase), and
training against them teaches the model to push true answers away. `count` negatives per query are drawn from
the window at random (seeded) or taken from its top.
"""

from __future__ import annotations

import numpy as np

from bertkit.errors import BertkitError
from bertkit.retrieval.data import Pair
from bertkit.use.embed import Embedder
from bertkit.use.index import VectorIndex


def mine_negatives(
    embedder: Embedder,
    pairs: list[Pair],
    corpus: list[str] | None = None,
    low: int = 10,
    high: int = 50,
    count: int = 1,
    sampling: str = "random",
    seed: int = 0,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[list[Pair], dict]:
    """The pairs with `negatives` set (replacing any they had); and counts: queries that got fewer than `count`."""
    if not 0 <= low < high:
        raise BertkitError(f"--ranks {low}:{high}: the window must be low:high with 0 <= low < high")
    if sampling not in ("random", "top"):
        raise BertkitError(f"--sampling {sampling!r}: use random or top")
    docs = list(dict.fromkeys(corpus if corpus is not None else [p.positive for p in pairs]))
    positives: dict[str, set[str]] = {}
    for p in pairs:
        positives.setdefault(p.query, set()).add(p.positive)
    queries = list(positives)
    doc_vectors = embedder.encode(docs, precision=precision, progress=progress)
    query_vectors = embedder.encode(queries, precision=precision, progress=progress)
    index = VectorIndex.build(doc_vectors, [str(i) for i in range(len(docs))], docs, {"model": "mining"})
    most = max(len(v) for v in positives.values())
    _, found = index.search(query_vectors, high + most)  # the window still whole once the positives are out
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[str]] = {}
    short = 0
    for q, row in zip(queries, found.tolist(), strict=True):
        ranked = [docs[j] for j in row if j >= 0 and docs[j] not in positives[q]]
        window = ranked[low:high]
        if sampling == "random" and len(window) > count:
            window = [window[i] for i in sorted(rng.choice(len(window), count, replace=False))]
        chosen[q] = window[:count]
        short += len(chosen[q]) < count
    mined = [Pair(p.query, p.positive, list(chosen[p.query]), p.source) for p in pairs]
    return mined, {"queries": len(queries), "documents": len(docs), "short": short}
