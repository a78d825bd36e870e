"""Using a trained model: fill-mask now; embeddings and serving build on the same loading path."""

from __future__ import annotations

from functools import lru_cache

import torch

from bertkit.errors import BertkitError
from bertkit.hf import Checkpoint, load_pretrained


@lru_cache(maxsize=4)
def _load(folder: str) -> Checkpoint:
    ckpt = load_pretrained(folder)
    ckpt.encoder.eval()
    return ckpt


@torch.no_grad()
def fill_mask(model: str | Checkpoint, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in `text`, the `top_k` (token, probability) pairs, most likely first."""
    ckpt = _load(str(model)) if not isinstance(model, Checkpoint) else model
    if "mlm" not in ckpt.heads:
        raise BertkitError(f"{model}: the model has no MLM head (cls.predictions.*); fill-mask needs one")
    tok = ckpt.tokenizer
    if tok is None:
        raise BertkitError(f"{model}: the model folder has no vocab.txt or tokenizer.json")
    if not 1 <= top_k <= ckpt.config.vocab_size:
        raise BertkitError(f"--top-k must be in 1..{ckpt.config.vocab_size} (the vocabulary), got {top_k}")
    limit = ckpt.config.max_length
    batch = tok([text], max_length=limit)
    positions = (batch["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    if len(positions) == 0:
        shown = text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"
        if "[MASK]" in text:
            raise BertkitError(
                f"every [MASK] in {shown!r} is past the model's limit of {limit} tokens; shorten the text"
            )
        raise BertkitError(f"no [MASK] in {shown!r}: write [MASK] (upper case) where a token should be predicted")
    hidden = ckpt.encoder(**batch).last_hidden_state[0, positions]  # (M, H)
    probs = ckpt.heads["mlm"](hidden, ckpt.encoder.embeddings.word_embeddings.weight).softmax(-1)  # (M, V)
    top = probs.topk(top_k, dim=-1)
    return [
        [(tok.id_to_token(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]
