"""One training step's loss and gradients, plain or cached (GradCache, Gao et al. 2021), for any loss on sentence
vectors.

Contrastive losses want large batches (every other document is a negative), but a batch's activations must
fit in memory. The cached step splits the work: (1) every text is embedded in chunks of `chunk` texts without
keeping activations, and the random state before each chunk is recorded; (2) the loss is computed on those
vectors, as leaves, and its gradient with respect to each vector taken; (3) each chunk is embedded again with
its recorded random state (so dropout draws the same masks) and the vectors' gradients pushed through it. The
gradients equal the plain step's up to float rounding whenever the two draw the same dropout masks: always with
dropout off, and with `chunk` ≥ the group size (tests). The random state after the step is the first pass's, so
a run's stream of random numbers does not depend on the replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bertkit.checkpoints import rng_state, set_rng_state
from bertkit.use.embed import pad_batch


def embed_ids(model, ids: list[list[int]], pad_id: int) -> torch.Tensor:
    device = next(model.parameters()).device
    input_ids, attention_mask = pad_batch(ids, pad_id)
    return model(input_ids.to(device), attention_mask.to(device))


def plain_step(model, groups: list[list[list[int]]], loss_fn: Callable[..., torch.Tensor], pad_id: int) -> float:
    """Embed each group (queries, positives, negatives, ...) in one pass, compute `loss_fn(*vectors)`, backward."""
    vectors = [embed_ids(model, g, pad_id) if g else None for g in groups]
    loss = loss_fn(*vectors)
    loss.backward()
    return float(loss.detach())


def cached_step(
    model, groups: list[list[list[int]]], loss_fn: Callable[..., torch.Tensor], pad_id: int, chunk: int
) -> float:
    """The same loss and gradients as `plain_step` (see the module docstring), holding the activations of
    `chunk` texts at a time."""
    states, reps = [], []
    with torch.no_grad():
        for g in groups:
            parts = []
            for i in range(0, len(g), chunk):
                states.append(rng_state())
                parts.append(embed_ids(model, g[i : i + chunk], pad_id))
            reps.append(torch.cat(parts) if parts else None)
    after = rng_state()
    leaves = [None if r is None else r.detach().requires_grad_() for r in reps]
    loss = loss_fn(*leaves)
    loss.backward()
    k = 0
    for g, leaf in zip(groups, leaves, strict=True):
        for i in range(0, len(g), chunk):
            set_rng_state(states[k])
            k += 1
            vectors = embed_ids(model, g[i : i + chunk], pad_id)
            vectors.backward(leaf.grad[i : i + chunk])
    set_rng_state(after)
    return float(loss.detach())
