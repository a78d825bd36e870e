"""Text from a left-to-right language model (GPT-2 family): greedy, or sampled with temperature, top-k and top-p,
with a KV cache.

Choices:
- Greedy unless asked to sample (transformers' `generate` default too): the same prompt gives the same text. A
  sample is drawn from a generator seeded by `seed` alone, so a seed gives the same text again.
- Top-k keeps the k most likely tokens; top-p (nucleus, Holtzman et al. 2020) keeps the fewest most likely tokens
  whose probabilities reach p, the most likely always; both after the temperature, as transformers' warpers.
- The KV cache (`model.KVCache`) keeps every layer's keys and values, so each new token runs one position through
  the layers instead of the whole text; `use_cache=False` recomputes everything each step (the test holds the
  two to the same tokens, and benchmarks/bench_generate.py measures both).
- Generation stops at the end-of-text token (the tokenizer's [SEP] or </s>; config.json's eos_token_id for a folder
  without a tokenizer) or after `max_new_tokens`. A prompt with the new tokens beyond the model's positions is
  refused before anything runs, as is an empty prompt: there is no position to continue from.
- With the WordPiece vocabulary a prompt is "[CLS] text" (no [SEP]: the text goes on); with byte-level BPE
  "<s> text"; the special tokens are left out of what is printed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bertkit.errors import BertkitError
from bertkit.hf import Checkpoint, load_pretrained
from bertkit.model import KVCache


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (the most likely), or drawn after temperature, top-k and top-p."""

    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: all tokens
    top_p: float = 1.0  # 1: all tokens

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise BertkitError(
                f"--temperature must be above 0 (1: the model's own distribution), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise BertkitError(f"--top-p must be in (0, 1] (1: no cut), got {self.top_p}")
        if self.top_k < 0:
            raise BertkitError(f"--top-k must be 0 (no cut) or more, got {self.top_k}")


def next_token(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids."""
    if not sampling.sample or sampling.temperature < torch.finfo(torch.float32).tiny:
        return logits.argmax(-1)  # a temperature below float32's range is the limit T -> 0: greedy
    logits = logits.float()
    # the best logit moved to 0 first (softmax does not see the shift): a tiny temperature then sends the others to
    # -inf, i.e. greedy, where dividing the raw logits would overflow to inf and leave no distribution to draw from
    logits = (logits - logits.max(-1, keepdim=True).values) / sampling.temperature
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if sampling.top_p < 1:
        probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
        before = probs.cumsum(-1) - probs  # the mass of the tokens more likely than each
        drop = before >= sampling.top_p
        # the most likely token has 0 before it and is always kept: said outright, since a top-p below float32's
        # range rounds to 0 in the comparison and would drop every token
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), -torch.inf)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def prompt_ids(ckpt: Checkpoint, prompt: str) -> list[int]:
    """The prompt's ids: the start token, then the text's tokens (no end token)."""
    if not prompt.strip():
        raise BertkitError("the prompt is empty; give some text to continue")
    tok = ckpt.tokenizer
    if tok is None:
        raise BertkitError("the model folder has no vocab.txt or tokenizer.json; generation needs its tokenizer")
    return [tok.cls_token_id, *tok.encode(prompt, add_special_tokens=False).ids]


def end_token(ckpt: Checkpoint) -> int | None:
    return ckpt.tokenizer.sep_token_id if ckpt.tokenizer is not None else ckpt.config.eos_token_id


def check_generator(ckpt: Checkpoint, where: object) -> None:
    if "lm" not in ckpt.heads:
        what = "a masked-LM (BERT-style) model" if "mlm" in ckpt.heads else f"a {ckpt.config.family.name} folder"
        raise BertkitError(
            f"{where}: {what} without a left-to-right language-model head; generate needs a GPT-2 folder "
            "(GPT2LMHeadModel: `bertkit pretrain --recipe gpt`)"
        )


def check_room(ckpt: Checkpoint, n_prompt: int, max_new_tokens: int, what: str = "the prompt") -> None:
    """The prompt and the new tokens must fit in the model's positions."""
    limit = ckpt.config.max_length
    if n_prompt + max_new_tokens > limit:
        raise BertkitError(
            f"{what}: its {n_prompt} tokens and --max-new-tokens {max_new_tokens} pass the model's {limit} positions; "
            f"give --max-new-tokens {max(1, limit - n_prompt)} or less, or a shorter prompt"
        )


@torch.no_grad()
def generate_ids(
    ckpt: Checkpoint,
    ids: list[int],
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    use_cache: bool = True,
    eos_id: int | None = None,
) -> list[int]:
    """The new token ids after `ids` (the end token included when reached)."""
    encoder, lm = ckpt.encoder, ckpt.heads["lm"]
    if not ids:
        raise BertkitError("the prompt is empty; give some text to continue")
    check_room(ckpt, len(ids), max_new_tokens)
    encoder.eval()
    generator = torch.Generator().manual_seed(seed)
    sequence = torch.tensor([ids])
    cache = KVCache(ckpt.config.num_hidden_layers) if use_cache else None
    step_input, new = sequence, []
    word_embeddings = encoder.embeddings.word_embeddings.weight
    for _ in range(max_new_tokens):
        hidden = encoder(step_input, cache=cache).last_hidden_state[:, -1]  # (1, H)
        token = next_token(lm(hidden, word_embeddings), sampling, generator)  # (1,)
        new.append(int(token))
        if eos_id is not None and new[-1] == eos_id:
            break
        sequence = torch.cat([sequence, token[:, None]], dim=1)
        step_input = token[:, None] if use_cache else sequence
    return new


def generate(
    model: str | Checkpoint,
    prompt: str,
    max_new_tokens: int = 50,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    use_cache: bool = True,
) -> str:
    """The prompt's continuation as text."""
    ckpt = load_pretrained(model) if not isinstance(model, Checkpoint) else model
    check_generator(ckpt, model)
    new = generate_ids(ckpt, prompt_ids(ckpt, prompt), max_new_tokens, sampling, seed, use_cache, end_token(ckpt))
    return decode(ckpt, new)


def decode(ckpt: Checkpoint, ids: list[int]) -> str:
    """Text of generated ids, special tokens left out; WordPiece puts spaces between Chinese characters, which
    are taken out again (between two CJK characters only)."""
    import re

    text = ckpt.tokenizer.decode(ids, skip_special_tokens=True)
    cjk = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"
    return re.sub(rf"(?<={cjk}) (?={cjk})", "", text)


def lm_logits(ckpt: Checkpoint, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) ids -> (B, T, V) next-token logits: the whole sequence at once (tests, scoring)."""
    hidden = ckpt.encoder(ids).last_hidden_state
    return F.linear(hidden, ckpt.encoder.embeddings.word_embeddings.weight)
