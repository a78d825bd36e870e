"""Choosing which tokens to predict, and corrupting them: the masked-LM input side of pretraining.

Masking is two steps, kept apart so that every objective shares them:

1. *Choose positions.* `choose_token_positions` picks single tokens (BERT, RoBERTa, ELECTRA's
   generator); `choose_word_positions` picks whole words (BERT-wwm, Chinese wwm with `chinese_word_ids`,
   ERNIE when the "words" are entities or phrases); `choose_spans` / `choose_span_positions` pick
   contiguous spans of geometric length (SpanBERT). `mask_batch` does step 1 and 2 for a whole batch at
   once, for dynamic masking in a collator.
2. *Corrupt them.* `apply_mask` replaces the chosen tokens 80/10/10 and returns the labels (the original
   id at chosen positions, -100 elsewhere, which `torch.nn.functional.cross_entropy` ignores).

Choices:

- Only *candidates* are ever chosen: tokens that are not special (`[CLS]`, `[SEP]`, `[PAD]`, `[UNK]`,
  `[MASK]`, whatever the caller passes in `special_ids`) and not padding. The same `special_ids` are never
  drawn as random replacements.
- How many: with `exact_count=True` (Google's static masking) a sequence gets exactly
  ``min(max_predictions_per_seq, max(1, round(n_candidates * mlm_probability)))`` predictions. Google counts
  all tokens including `[CLS]`/`[SEP]`; we count candidates, so the rate is `mlm_probability` of the tokens
  that can be predicted, whatever the padding. With `exact_count=False` every candidate is chosen
  independently with probability `mlm_probability` (RoBERTa / Hugging Face dynamic masking); that is the same
  as drawing the count from Binomial(n_candidates, p) and then a uniform subset, which is how it is done
  here, so that whole-word and span masking get a Bernoulli mode too. The cap applies in both modes.
- Whole words follow Google's `do_whole_word_mask`: words in random order, each taken whole, a word that
  would overshoot the budget skipped. Which of 80/10/10 applies is still decided per token, as Google does.
- N-grams follow ALBERT: the same span machinery with n ~ p(n) ∝ 1/n for n ≤ 3 (in words), and the
  80/10/10 decision made per token, as ALBERT's create_pretraining_data.py does.
- Spans follow SpanBERT: length in words ~ Geometric(p) restricted to 1..max_span (renormalised, mean 3.8
  for p=0.2, max_span=10), the start drawn uniformly over the candidate tokens not yet chosen, until the
  budget is reached; `apply_mask(groups=...)` makes the 80/10/10 decision once per span, as SpanBERT does.
- Chinese words come from a `Segmenter` (`make_segmenter`, `--segmenter`): jieba by default, or the longest
  match over a user's word list (`words:FILE`).
- ERNIE 1.0 (Sun et al. 2019) masks in three stages: tokens, then phrases, then entities, a unit masked whole
  with one 80/10/10 decision (`apply_mask(groups=...)`), in the same token budget as whole words
  (`choose_word_positions`). A phrase is a segmenter word: the paper finds Chinese phrases with a segmentation
  tool, and jieba is ours. Entities are a `Segmenter` too (`shards.entity_file` for `--entities FILE`,
  `shards.builtin_entities` for the People's Daily's nr / ns / nt tags): the entities found longest-first in a
  sentence's text, every other character a word of its own, so their starts are cached and carried exactly as
  word starts are (a second bit, `shards.ENTITY_START_BIT`).
- All randomness comes from a `numpy.random.Generator` passed in; nothing touches global RNG state.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertkit.errors import ConfigError, DataError, require_file

IGNORE_INDEX = -100  # label at positions that are not predicted; cross_entropy's default ignore_index


@dataclass(frozen=True)
class MaskingConfig:
    mlm_probability: float = 0.15  # fraction of candidate tokens chosen for prediction
    mask_token_prob: float = 0.8  # of chosen: replaced by [MASK]
    random_token_prob: float = 0.1  # of chosen: replaced by a random non-special token; the rest unchanged
    max_predictions_per_seq: int | None = 20  # Google's cap; None = no cap
    exact_count: bool = True  # True: Google's fixed count per sequence; False: Bernoulli(p) per token
    span_p: float = 0.2  # SpanBERT: span lengths in words ~ Geometric(span_p) ...
    max_span: int = 10  # ... restricted to 1..max_span (mean 3.8 for 0.2 and 10)
    max_ngram: int = 3  # ALBERT: n-grams of 1..max_ngram words, p(n) ∝ 1/n

    def __post_init__(self) -> None:
        for name in ("mlm_probability", "mask_token_prob", "random_token_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"MaskingConfig.{name} must be in [0, 1], got {value}")
        if self.mask_token_prob + self.random_token_prob > 1.0:
            raise ConfigError(
                "MaskingConfig.mask_token_prob + random_token_prob must be <= 1, got "
                f"{self.mask_token_prob} + {self.random_token_prob}"
            )
        if not 0.0 < self.span_p <= 1.0:
            raise ConfigError(f"MaskingConfig.span_p must be in (0, 1], got {self.span_p}")
        for name in ("max_span", "max_ngram"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"MaskingConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        cap = self.max_predictions_per_seq
        if cap is not None and (not isinstance(cap, int) or cap < 1):
            raise ConfigError(f"MaskingConfig.max_predictions_per_seq must be None or an int >= 1, got {cap!r}")


# ---------------------------------------------------------------------------------------------------------
# Step 1: choosing positions


def num_to_predict(n_candidates: int, cfg: MaskingConfig, rng: np.random.Generator) -> int:
    """How many of `n_candidates` tokens one sequence predicts (see the module docstring)."""
    if n_candidates == 0:
        return 0
    if cfg.exact_count:
        n = max(1, round(n_candidates * cfg.mlm_probability))
    else:
        n = int(rng.binomial(n_candidates, cfg.mlm_probability))
    if cfg.max_predictions_per_seq is not None:
        n = min(n, cfg.max_predictions_per_seq)
    return min(n, n_candidates)


def candidate_mask(
    input_ids: np.ndarray, special_ids: Sequence[int], attention_mask: np.ndarray | None = None
) -> np.ndarray:
    """True where a token may be chosen: not a special id and, if given, attended. Any shape in and out."""
    candidates = ~np.isin(input_ids, np.asarray(special_ids))
    if attention_mask is not None:
        candidates &= np.asarray(attention_mask).astype(bool)
    return candidates


def choose_token_positions(candidates: np.ndarray, cfg: MaskingConfig, rng: np.random.Generator) -> np.ndarray:
    """Positions to predict, chosen token by token. `candidates`: (T,) bool. Returns sorted (N,) int64."""
    pool = np.flatnonzero(candidates)  # (C,)
    n = num_to_predict(len(pool), cfg, rng)
    return np.sort(rng.choice(pool, size=n, replace=False)).astype(np.int64)


def choose_word_positions(word_ids: np.ndarray, cfg: MaskingConfig, rng: np.random.Generator) -> np.ndarray:
    """Positions to predict, chosen a whole word at a time (Google's whole-word masking).

    `word_ids`: (T,) int, the word each candidate token belongs to, -1 for non-candidates. Words are visited
    in random order and taken whole; the budget is counted in tokens, and a word that would overshoot it is
    skipped (a shorter one later may still fit). Returns sorted (N,) int64 positions.
    """
    word_ids = np.asarray(word_ids)
    positions = np.flatnonzero(word_ids >= 0)  # (C,) candidate positions
    budget = num_to_predict(len(positions), cfg, rng)
    if budget == 0:
        return np.zeros(0, dtype=np.int64)
    # Group candidate positions by word: words[w] is the (sorted) positions of word w.
    _, word_of_position = np.unique(word_ids[positions], return_inverse=True)
    order = np.argsort(word_of_position, kind="stable")
    splits = np.flatnonzero(np.diff(word_of_position[order])) + 1
    words = np.split(positions[order], splits)

    chosen: list[np.ndarray] = []
    n_chosen = 0
    for w in rng.permutation(len(words)):
        if n_chosen >= budget:
            break
        if n_chosen + len(words[w]) > budget:
            continue
        chosen.append(words[w])
        n_chosen += len(words[w])
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def sample_span_lengths(n: int, p: float, max_span: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) span lengths from Geometric(p) restricted to 1..max_span and renormalised, as SpanBERT samples.

    Inverse CDF: P(L <= l) = (1 - (1-p)^l) / (1 - (1-p)^max_span).
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"span p must be in (0, 1], got {p}")
    if max_span < 1:
        raise ValueError(f"max_span must be >= 1, got {max_span}")
    if p == 1.0:
        return np.ones(n, dtype=np.int64)
    u = rng.random(n) * (1.0 - (1.0 - p) ** max_span)
    lengths = np.ceil(np.log1p(-u) / np.log1p(-p)).astype(np.int64)
    return np.clip(lengths, 1, max_span)  # u == 0 gives 0; rounding can give max_span + 1


def sample_ngram_lengths(n: int, max_ngram: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) n-gram lengths with p(k) ∝ 1/k for k = 1..max_ngram, as ALBERT (Lan et al. 2019, section 4.1):
    for 3, p = 6/11, 3/11, 2/11."""
    if max_ngram < 1:
        raise ValueError(f"max_ngram must be >= 1, got {max_ngram}")
    k = np.arange(1, max_ngram + 1)
    return rng.choice(k, size=n, p=(1 / k) / (1 / k).sum()).astype(np.int64)


def choose_spans(
    candidates: np.ndarray,
    cfg: MaskingConfig,
    rng: np.random.Generator,
    p: float = 0.2,
    max_span: int = 10,
    word_ids: np.ndarray | None = None,
    max_ngram: int | None = None,
) -> np.ndarray:
    """SpanBERT's span selection. Returns (S, 2) int64 [start, end) token spans, sorted by start.

    `candidates`: (T,) bool. With `word_ids` (T,) the unit of a span is a word (its length is counted in
    words and it never cuts one); without, each candidate token is its own word. Until the token budget is
    reached: draw a length, draw a start token uniformly among the candidates not yet chosen, move it back
    to its word's first token, and take that many words to the right. A span stops early at a chosen token,
    a non-candidate (so it never crosses [SEP] or padding), the end, or the budget. With word units a word
    that does not fit the remaining budget is never started again, so the loop always ends.
    With `max_ngram` the length is ALBERT's n-gram length (`sample_ngram_lengths`) instead of geometric.
    """
    candidates = np.asarray(candidates, dtype=bool)
    T = len(candidates)
    if word_ids is None:
        word_ids = np.arange(T)
    word_ids = np.where(candidates, np.asarray(word_ids), -1)  # (T,)
    candidates = word_ids >= 0
    budget = num_to_predict(int(candidates.sum()), cfg, rng)
    # A word boundary is before position t when t starts a new word (or is not a candidate).
    starts_word = np.ones(T, dtype=bool)  # (T,)
    starts_word[1:] = word_ids[1:] != word_ids[:-1]

    chosen = np.zeros(T, dtype=bool)  # (T,)
    blocked = np.zeros(T, dtype=bool)  # (T,) tokens of words that no longer fit the budget
    spans: list[tuple[int, int]] = []
    n_chosen = 0
    while n_chosen < budget:
        free = np.flatnonzero(candidates & ~chosen & ~blocked)
        if len(free) == 0:
            break
        if max_ngram is None:
            length = int(sample_span_lengths(1, p, max_span, rng)[0])
        else:
            length = int(sample_ngram_lengths(1, max_ngram, rng)[0])
        anchor = int(rng.choice(free))
        start = anchor
        while start > 0 and not starts_word[start]:
            start -= 1
        end, n_words = start, 0
        while n_words < length and end < T and word_ids[end] >= 0 and not chosen[end]:
            word_end = end + 1
            while word_end < T and not starts_word[word_end]:
                word_end += 1
            if n_chosen + (word_end - start) > budget:
                if n_words == 0:  # the anchor's own word does not fit now, so it never will
                    blocked[start:word_end] = True
                break
            end, n_words = word_end, n_words + 1
        if end > start:
            chosen[start:end] = True
            n_chosen += end - start
            spans.append((start, end))
        else:
            blocked[anchor] = True  # could not start here: never draw this token again
    spans.sort()
    return np.array(spans, dtype=np.int64).reshape(-1, 2)


def choose_span_positions(
    candidates: np.ndarray,
    cfg: MaskingConfig,
    rng: np.random.Generator,
    p: float = 0.2,
    max_span: int = 10,
    word_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted (N,) int64 positions covered by `choose_spans` (same arguments)."""
    spans = choose_spans(candidates, cfg, rng, p=p, max_span=max_span, word_ids=word_ids)  # (S, 2)
    if len(spans) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(s, e) for s, e in spans]).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Step 2: corrupting the chosen positions


def random_non_special_ids(n: int, vocab_size: int, special_ids: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """(n,) ids drawn uniformly from [0, vocab_size) minus `special_ids`."""
    specials = np.unique(np.asarray(special_ids, dtype=np.int64))  # sorted
    specials = specials[(specials >= 0) & (specials < vocab_size)]
    if vocab_size - len(specials) < 1:
        raise ValueError(f"no non-special ids left in a vocabulary of {vocab_size}")
    ids = rng.integers(0, vocab_size - len(specials), size=n)
    for s in specials:  # walk up past each special id in increasing order: a bijection onto the allowed ids
        ids += ids >= s
    return ids


def _corrupt(
    original: np.ndarray,
    cfg: MaskingConfig,
    rng: np.random.Generator,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """80/10/10: the chosen tokens `original` (N,) as the model will see them (N,).

    Why not always [MASK]: [MASK] never appears when the model is fine-tuned or used, so a model that only
    ever predicted at [MASK] would meet a train/test gap. Why random and unchanged tokens: the model cannot
    tell which of its inputs were corrupted, so it has to keep a good representation of every token, not
    only of the masked ones. Random tokens are never special ids (those carry structure, not content).
    """
    if groups is None:
        u = rng.random(len(original))  # (N,) one decision per token
    else:
        _, group_of = np.unique(groups, return_inverse=True)
        u = rng.random(group_of.max(initial=-1) + 1)[group_of]  # (N,) one decision per group
    corrupted = original.copy()
    corrupted[u < cfg.mask_token_prob] = mask_token_id
    use_random = (u >= cfg.mask_token_prob) & (u < cfg.mask_token_prob + cfg.random_token_prob)
    corrupted[use_random] = random_non_special_ids(int(use_random.sum()), vocab_size, special_ids, rng)
    return corrupted


def apply_mask(
    input_ids: np.ndarray,
    positions: np.ndarray,
    cfg: MaskingConfig,
    rng: np.random.Generator,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt `positions` of `input_ids` (T,) 80/10/10. Returns (masked_ids (T,), labels (T,) int64).

    `labels` holds the original id at `positions` and -100 elsewhere. `groups` (N,), optional, gives each
    position a group (SpanBERT: its span) and draws one 80/10/10 decision per group.
    """
    input_ids = np.asarray(input_ids)
    positions = np.asarray(positions, dtype=np.int64)
    labels = np.full(input_ids.shape, IGNORE_INDEX, dtype=np.int64)
    labels[positions] = input_ids[positions]
    masked_ids = input_ids.copy()
    masked_ids[positions] = _corrupt(input_ids[positions], cfg, rng, mask_token_id, vocab_size, special_ids, groups)
    return masked_ids, labels


def _to_numpy(x: Any) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


def mask_batch(
    input_ids: Any,
    cfg: MaskingConfig,
    rng: np.random.Generator,
    *,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    attention_mask: Any | None = None,
    word_ids: Any | None = None,
) -> tuple[Any, Any]:
    """Dynamic masking of a batch: (input_ids (B, T), labels (B, T)), torch in -> torch out, numpy -> numpy.

    Candidates are the tokens that are not in `special_ids` and, if given, have `attention_mask` 1. Token
    masking is vectorised over the whole batch: every candidate gets a uniform score and each row keeps its
    `num_to_predict` lowest scores, which is a uniform random subset of that size. With `word_ids` (B, T)
    (-1 for non-candidates) rows are masked by whole words with `choose_word_positions`, one row at a time.
    """
    ids = _to_numpy(input_ids)  # (B, T)
    B, T = ids.shape
    candidates = candidate_mask(ids, special_ids, None if attention_mask is None else _to_numpy(attention_mask))

    if word_ids is not None:
        word_ids = np.where(candidates, _to_numpy(word_ids), -1)  # (B, T)
        chosen = np.zeros((B, T), dtype=bool)
        for b in range(B):
            chosen[b, choose_word_positions(word_ids[b], cfg, rng)] = True
    else:
        scores = np.where(candidates, rng.random((B, T)), np.inf)  # (B, T)
        n_candidates = candidates.sum(axis=1)  # (B,)
        if cfg.exact_count:
            budget = np.maximum(1, np.round(n_candidates * cfg.mlm_probability)).astype(np.int64)
        else:
            # Bernoulli(p) per candidate: exactly the candidates whose score is below p.
            budget = (scores < cfg.mlm_probability).sum(axis=1)
        if cfg.max_predictions_per_seq is not None:
            budget = np.minimum(budget, cfg.max_predictions_per_seq)
        budget = np.minimum(budget, n_candidates)  # (B,)
        rank = np.argsort(np.argsort(scores, axis=1), axis=1)  # (B, T) 0 = lowest score in the row
        chosen = rank < budget[:, None]  # (B, T)

    labels = np.where(chosen, ids, IGNORE_INDEX).astype(np.int64)  # (B, T)
    masked = ids.copy()
    masked[chosen] = _corrupt(ids[chosen], cfg, rng, mask_token_id, vocab_size, special_ids)
    if isinstance(input_ids, np.ndarray):
        return masked, labels
    import torch

    return torch.from_numpy(masked).to(input_ids.device), torch.from_numpy(labels).to(input_ids.device)


# ---------------------------------------------------------------------------------------------------------
# Words for whole-word masking


def wordpiece_word_ids(
    tokens: Sequence[str], special_tokens: Sequence[str] = ("[CLS]", "[SEP]", "[PAD]")
) -> np.ndarray:
    """(T,) word ids from WordPiece tokens: a `##` token joins the previous token's word; specials get -1."""
    word_ids = np.full(len(tokens), -1, dtype=np.int64)
    specials = set(special_tokens)
    word = -1
    for i, token in enumerate(tokens):
        if token in specials:
            continue
        if not (token.startswith("##") and i > 0 and word_ids[i - 1] >= 0):
            word += 1
        word_ids[i] = word
    return word_ids


def segment_words(text: str) -> list[str]:
    """Split Chinese `text` into words with jieba (accurate mode); whitespace comes back as its own words."""
    import jieba  # lazy: loading its dictionary takes a second

    jieba.setLogLevel(60)  # silence "Building prefix dict..." on stderr
    return list(jieba.cut(text))


# ---------------------------------------------------------------------------------------------------------
# Segmenters: which characters whole-word masking takes together


@dataclass(frozen=True)
class Segmenter:
    """A word segmenter, picked by name from `SEGMENTERS` (`--segmenter NAME` or `NAME:ARGUMENT`).

    `key` names what decides its words (jieba's version; the word file's content hash): the cached word starts
    beside the shards are keyed by it, so another segmenter, or the same file with other words, never reads a
    cache that a different one wrote.
    """

    spec: str  # as given: "jieba", "words:FILE"
    key: str  # "jieba0.42.1", "words-<sha256 of the file, 16 hex>"
    cut: Callable[[str], list[str]] = field(repr=False, compare=False)


def _jieba(argument: str | None) -> Segmenter:
    import jieba

    if argument is not None:
        raise ConfigError(f"--segmenter jieba:{argument}: jieba takes no argument; give --segmenter jieba")
    return Segmenter("jieba", f"jieba{jieba.__version__}", segment_words)


def _word_list(argument: str | None) -> Segmenter:
    """Longest match over the user's words: a domain's terms (drug names, statutes) kept whole where jieba's
    general dictionary splits them. Forward maximum matching is the simplest segmenter a word list defines,
    and what a list of terms without frequencies allows; a character that starts no listed word is a word."""
    if not argument:
        raise ConfigError("--segmenter words needs its word file: --segmenter words:FILE (one word per line)")
    require_file(argument, "word file (one word per line)")
    data = Path(argument).read_bytes()
    try:
        words = {w.strip() for w in data.decode("utf-8-sig").splitlines()} - {""}
    except UnicodeDecodeError as e:
        raise DataError(f"{argument}: not UTF-8 ({e.reason} at byte {e.start}); convert the word file to UTF-8") from e
    if not words:
        raise DataError(f"{argument}: the word file has no words; give one word per line")
    return Segmenter(f"words:{argument}", f"words-{hashlib.sha256(data).hexdigest()[:16]}", _longest_match(words))


def _longest_match(words: set[str]) -> Callable[[str], list[str]]:
    """Forward maximum matching over `words`; a character that starts no listed word is a word of its own."""
    longest = max(map(len, words))

    def cut(text: str) -> list[str]:
        out, i = [], 0
        while i < len(text):
            n = next((n for n in range(min(longest, len(text) - i), 1, -1) if text[i : i + n] in words), 1)
            out.append(text[i : i + n])
            i += n
        return out

    return cut


SEGMENTERS: dict[str, Callable[[str | None], Segmenter]] = {"jieba": _jieba, "words": _word_list}


def make_segmenter(spec: str) -> Segmenter:
    """The segmenter `spec` names: "NAME" or "NAME:ARGUMENT" (`words:FILE`), from `SEGMENTERS`."""
    name, colon, argument = spec.partition(":")
    if name not in SEGMENTERS:
        raise ConfigError(f"--segmenter {spec!r}: choose one of jieba, words:FILE (a word list, one word per line)")
    return SEGMENTERS[name](argument if colon else None)


def _normalise(text: str) -> str:
    """What BERT's basic tokenizer does to characters (uncased): lower-case, drop accents and whitespace."""
    if all("\u4e00" <= c <= "\u9fff" for c in text):  # common CJK: nothing to do (the fast path)
        return text
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn" and not c.isspace())


def chinese_word_ids(
    tokens: Sequence[str],
    words: Sequence[str],
    special_tokens: Sequence[str] = ("[CLS]", "[SEP]", "[PAD]", "[MASK]"),
) -> np.ndarray:
    """(T,) word ids that group BERT tokens (one per CJK character) into segmenter words, for Chinese wwm.

    `words` is the segmenter's output for the same text (`segment_words`). Each token is found in the text
    in order and belongs to the word that covers its first character; a `##` continuation always joins the
    previous token's word; specials get -1. A token that cannot be found (`[UNK]`, text the tokenizer
    changed) becomes a word of its own, numbered after the segmenter's words.
    """
    text_chars: list[str] = []
    owner: list[int] = []  # owner[c] = index of the word covering normalised character c
    for w, word in enumerate(words):
        for c in _normalise(word):
            text_chars.append(c)
            owner.append(w)
    text = "".join(text_chars)

    specials = set(special_tokens)
    word_ids = np.full(len(tokens), -1, dtype=np.int64)
    next_fresh = len(words)
    cursor = 0  # characters of `text` before `cursor` have been matched
    for i, token in enumerate(tokens):
        if token in specials:
            continue
        continuation = token.startswith("##")
        piece = _normalise(token[2:] if continuation else token)
        found = text.find(piece, cursor) if piece and token != "[UNK]" else -1
        if found >= 0:
            cursor = found + len(piece)
        if continuation and i > 0 and word_ids[i - 1] >= 0:
            word_ids[i] = word_ids[i - 1]
        elif found >= 0:
            word_ids[i] = owner[found]
        else:
            word_ids[i] = next_fresh
            next_fresh += 1
    return word_ids


def _is_cjk_char(token: str) -> bool:
    return len(token) == 1 and (
        0x4E00 <= ord(token) <= 0x9FFF
        or 0x3400 <= ord(token) <= 0x4DBF
        or 0x20000 <= ord(token) <= 0x2A6DF
        or 0xF900 <= ord(token) <= 0xFAFF
        or 0x2F800 <= ord(token) <= 0x2FA1F
    )


def sequence_word_ids(
    tokens: Sequence[str],
    special_tokens: Sequence[str] = ("[CLS]", "[SEP]", "[PAD]", "[MASK]"),
    segment: Callable[[str], list[str]] = segment_words,
) -> np.ndarray:
    """(T,) word ids for one model input of WordPiece tokens, Chinese words found by `segment` (jieba unless a
    `Segmenter`'s `cut` is passed); specials get -1.

    What Chinese whole-word masking needs from a sequence that is already tokenised (pretraining shards hold
    ids, not text): each run of tokens between special tokens is turned back into text — CJK characters
    joined directly, other tokens separated by a space, `##` pieces glued to the previous token — segmented
    with `segment`, and matched back with `chinese_word_ids`. So 中华人民共和国 is one word of seven
    tokens, `play ##ing` one word of two (as Google's English wwm), and words never cross a [SEP].
    """
    specials = set(special_tokens)
    word_ids = np.full(len(tokens), -1, dtype=np.int64)
    offset = 0  # word ids stay distinct across the runs of one sequence
    i = 0
    while i < len(tokens):
        if tokens[i] in specials:
            i += 1
            continue
        j = i
        while j < len(tokens) and tokens[j] not in specials:
            j += 1
        run = tokens[i:j]
        parts: list[str] = []
        for k, token in enumerate(run):
            if token.startswith("##"):
                parts.append(token[2:])
            elif k > 0 and not (_is_cjk_char(token) and _is_cjk_char(run[k - 1])):
                parts.append(" " + token)
            else:
                parts.append(token)
        ids = chinese_word_ids(run, segment("".join(parts)), special_tokens)
        word_ids[i:j] = ids + offset
        offset += int(ids.max(initial=-1)) + 1
        i = j
    return word_ids
