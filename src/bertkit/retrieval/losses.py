"""The contrastive losses of embedding training, on sentence vectors (rows of a batch), as sentence-transformers
defines them; each is checked against a hand computation in tests/test_retrieval_losses.py.

- `in_batch_loss` (sentence-transformers' MultipleNegativesRankingLoss; DPR, SimCSE): query i's positive is
  document i; every other document in the batch, and every explicit hard negative, is a negative. Cosine
  similarities times `scale` (20, i.e. a temperature of 0.05) go through a softmax over the documents and the
  loss is the cross-entropy of the diagonal. `symmetric` adds the other direction (each positive picks its
  query among the batch's queries; MultipleNegativesSymmetricRankingLoss) and averages the two.
- Unsupervised SimCSE is `in_batch_loss(f(x), f'(x))`: the same texts encoded twice, the two dropout masks
  being the only difference between a text and its positive (Gao et al. 2021, scale 20 = their τ 0.05).
- `cosent_loss` (CoSENT, Su 2022; sentence-transformers' CoSENTLoss): for scored pairs, every pair (i, j) of
  the batch with score_i > score_j adds exp(scale·(cos_j − cos_i)) inside log(1 + Σ): only the order of the
  cosines is trained, not their values, which is why it beats a squared error on cosine for STS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_SCALE = 20.0  # sentence-transformers' MNRL and CoSENT default; SimCSE's temperature 0.05


def similarities(queries: torch.Tensor, documents: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """(Q, D) cosine similarities times `scale`."""
    return scale * F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T


def in_batch_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    scale: float = DEFAULT_SCALE,
    symmetric: bool = False,
) -> torch.Tensor:
    """queries, positives: (B, H), row i of each a pair; negatives: (B·k, H) hard negatives (of any query: they are
    negatives for every query in the batch, as in sentence-transformers), or None. The mean over the batch."""
    if queries.shape != positives.shape:
        raise ValueError(f"queries {tuple(queries.shape)} and positives {tuple(positives.shape)} differ in shape")
    documents = positives if negatives is None else torch.cat([positives, negatives])
    scores = similarities(queries, documents, scale)  # (B, B + B·k)
    labels = torch.arange(len(queries), device=queries.device)
    forward = F.cross_entropy(scores, labels)
    if not symmetric:
        return forward
    backward = F.cross_entropy(scores[:, : len(queries)].T, labels)  # each positive picks its query
    return (forward + backward) / 2


def cosent_loss(a: torch.Tensor, b: torch.Tensor, scores: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """a, b: (B, H), the two texts of B scored pairs; scores: (B,) gold similarity (any scale: only its order
    counts). log(1 + Σ_{i,j: score_i > score_j} exp(scale · (cos_j − cos_i)))."""
    cos = scale * F.cosine_similarity(a, b, dim=-1)  # (B,)
    diff = cos[None, :] - cos[:, None]  # [i, j] = cos_j − cos_i
    wanted = scores[:, None] > scores[None, :]  # i should be above j
    diff = diff.masked_fill(~wanted, float("-inf"))
    zero = torch.zeros(1, dtype=diff.dtype, device=diff.device)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)
