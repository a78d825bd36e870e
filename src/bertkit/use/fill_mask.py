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
    """For each [MASK] in `text`, the `top_k` (token, probability) pairs, most likely first.

    RoBERTa's mask token is `<mask>`; "[MASK]" in the text is read as it too. Byte-level BPE tokens are shown
    decoded (a Chinese character rather than its byte symbols)."""
    ckpt = _load(str(model)) if not isinstance(model, Checkpoint) else model
    if "mlm" not in ckpt.heads:
        hint = " (an ELECTRA discriminator: use the generator folder beside it)" if "rtd" in ckpt.heads else ""
        if ckpt.config.family.causal:
            hint = f" (a {ckpt.config.family.name} model reads left to right: `bertkit generate` continues a text)"
        raise BertkitError(f"{model}: the model has no MLM head{hint}; fill-mask needs one")
    tok = ckpt.tokenizer
    mask_token = tok.id_to_token(tok.mask_token_id) if tok is not None else "[MASK]"
    if mask_token != "[MASK]":
        text = text.replace("[MASK]", mask_token)
    if tok is None:
        raise BertkitError(f"{model}: the model folder has no vocab.txt or tokenizer.json")
    if not 1 <= top_k <= ckpt.config.vocab_size:
        raise BertkitError(f"--top-k must be in 1..{ckpt.config.vocab_size} (the vocabulary), got {top_k}")
    limit = ckpt.config.max_length
    batch = tok([text], max_length=limit)
    positions = (batch["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    if len(positions) == 0:
        shown = text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"
        if mask_token in text:
            raise BertkitError(
                f"every {mask_token} in {shown!r} is past the model's limit of {limit} tokens; shorten the text"
            )
        raise BertkitError(f"no {mask_token} in {shown!r}: write {mask_token} where a token should be predicted")
    hidden = ckpt.encoder(**batch).last_hidden_state[0, positions]  # (M, H)
    probs = ckpt.heads["mlm"](hidden, ckpt.encoder.embeddings.word_embeddings.weight).softmax(-1)  # (M, V)
    top = probs.topk(top_k, dim=-1)
    from bertkit.bpe import ByteLevelBPETokenizer

    def show(i: int) -> str:
        return (
            tok.decode([i], skip_special_tokens=False) if isinstance(tok, ByteLevelBPETokenizer) else tok.id_to_token(i)
        )

    return [
        [(show(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]
