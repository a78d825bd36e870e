"""Pretraining instances from documents: NSP pairs (BERT), SOP pairs (ALBERT), packed sentences (RoBERTa).

A corpus is a sequence of documents; a document is a sequence of sentences; a sentence is a 1-D array (or
list) of token ids without specials. Each function builds the instances of one document, so a caller loops
over `doc_index` (once per epoch / dupe factor) and shuffles the result. Masking happens afterwards
(`masking.py`), statically or in the collator.

`create_nsp_instances` is Google's `create_pretraining_data.py` algorithm, step for step:

- The target length is `max_seq_length - 3` ([CLS], [SEP], [SEP]); with probability `short_seq_prob` it is
  a random length in [2, max_seq_length - 3] instead, once per document, so the model also sees the short
  inputs it will meet when fine-tuned. The target is a soft goal; `max_seq_length` is a hard limit.
- Sentences accumulate into a chunk until the chunk reaches the target (or the document ends). A random
  number of the chunk's sentences (at least one) form A. Half of the time, and always when the chunk is a
  single sentence, B is a random stretch of another document (random document, random first sentence, as
  many sentences as fill the target) and the chunk's sentences that A did not use are put back, to start
  the next chunk. Otherwise B is the rest of the chunk: the actual next sentences. So the labels are 50/50
  over chunks of two or more sentences; short documents and short targets (many one-sentence chunks) give
  more random nexts, in Google's data as here.
- The pair is cut to fit by `truncate_seq_pair`: one token at a time from the longer side, from its front
  or its back at random, so that the model does not learn that text is always cut at the end.

Where we differ from Google, and why:

- The random document is drawn uniformly from the *other* documents. Google draws up to 10 times and then
  keeps what it drew, which can be the current document; with one document it would use itself. With one
  document there is no random next: B falls back to the actual next sentences when the chunk has two or
  more, and a one-sentence chunk yields no instance (there is nothing honest to pair it with). Empty
  sentences are skipped.
- `truncate_seq_pair` works out how many tokens to cut from each end in one step instead of popping one
  at a time: the same distribution, without quadratic time on a pathological 100k-token "sentence".

`create_sop_instances` is ALBERT's sentence-order prediction: the same chunks, A and B always the two
contiguous parts of a chunk, swapped half of the time (`is_random_next` True = swapped, the field ALBERT's
own code reuses). A one-sentence chunk is split at a random token, since its two halves are still in order;
ALBERT instead draws B from another document there, which gives a "swapped" label to a pair that is not.

`create_full_sentence_instances` is RoBERTa's DOC-SENTENCES (and, with `cross_documents`, FULL-SENTENCES):
whole sentences packed into `[CLS] ... [SEP]` up to `max_seq_length`, one segment, no sentence-level label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bertkit.errors import ConfigError

Sentence = Sequence[int] | np.ndarray
Document = Sequence[Sentence]


@dataclass
class Instance:
    tokens: np.ndarray  # (T,) int64 token ids: [CLS] A [SEP] B [SEP], or [CLS] A [SEP]
    token_type_ids: np.ndarray  # (T,) int64: 0 for [CLS] A [SEP], 1 for B [SEP]
    is_random_next: bool  # NSP: B comes from another document; SOP: A and B are swapped; else False
    # Optional named fields an instance builder adds (ERNIE 2.0's task id): a 0-d value per instance, or a (T,)
    # array per token; they reach the batch under their names (dataset.Epoch).
    fields: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _check(max_seq_length: int, n_specials: int, min_content: int, short_seq_prob: float = 0.0) -> int:
    """Validate the arguments; return how many content tokens fit (`max_num_tokens`)."""
    if max_seq_length - n_specials < min_content:
        raise ConfigError(f"max_seq_length must be at least {n_specials + min_content}, got {max_seq_length}")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ConfigError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
    return max_seq_length - n_specials


def _sentences(document: Document) -> list[np.ndarray]:
    """The document's non-empty sentences as int64 arrays."""
    arrays = (np.asarray(s, dtype=np.int64).reshape(-1) for s in document)
    return [s for s in arrays if len(s) > 0]


def _concat(sentences: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(sentences) if sentences else np.zeros(0, dtype=np.int64)


def _target_length(max_num_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    """Usually fill the sequence; sometimes (short_seq_prob) aim for a random length in [2, max]."""
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_num_tokens + 1))
    return max_num_tokens


def _trim_counts(len_a: int, len_b: int, max_num_tokens: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(a_front, a_back, b_front, b_back): tokens `truncate_seq_pair` cuts from each end.

    Cutting one token at a time from the longer side (B on ties) first evens the two out, then alternates
    B, A, B, ...; each cut is from the front or the back with probability 1/2, so the front count is
    Binomial(cuts, 1/2).
    """
    excess = max(0, len_a + len_b - max_num_tokens)
    gap = abs(len_a - len_b)
    if excess <= gap:
        cut_a, cut_b = (excess, 0) if len_a > len_b else (0, excess)
    else:
        rest = excess - gap
        cut_a = (gap if len_a > len_b else 0) + rest // 2
        cut_b = (gap if len_b >= len_a else 0) + (rest + 1) // 2
    a_front = int(rng.binomial(cut_a, 0.5))
    b_front = int(rng.binomial(cut_b, 0.5))
    return a_front, cut_a - a_front, b_front, cut_b - b_front


def truncate_seq_pair(a: list, b: list, max_num_tokens: int, rng: np.random.Generator) -> None:
    """Cut lists `a` and `b` in place until len(a) + len(b) <= max_num_tokens (see `_trim_counts`)."""
    a_front, a_back, b_front, b_back = _trim_counts(len(a), len(b), max_num_tokens, rng)
    del a[len(a) - a_back :]
    del a[:a_front]
    del b[len(b) - b_back :]
    del b[:b_front]


def _pair_instance(
    a: np.ndarray,
    b: np.ndarray,
    max_num_tokens: int,
    rng: np.random.Generator,
    cls_id: int,
    sep_id: int,
    is_random_next: bool,
) -> Instance:
    """[CLS] A [SEP] B [SEP] after truncation; token types 0 up to the first [SEP], 1 after."""
    a_front, a_back, b_front, b_back = _trim_counts(len(a), len(b), max_num_tokens, rng)
    a = a[a_front : len(a) - a_back]
    b = b[b_front : len(b) - b_back]
    cls, sep = np.array([cls_id], dtype=np.int64), np.array([sep_id], dtype=np.int64)
    tokens = np.concatenate([cls, a, sep, b, sep])
    token_type_ids = np.zeros(len(tokens), dtype=np.int64)
    token_type_ids[len(a) + 2 :] = 1
    return Instance(tokens=tokens, token_type_ids=token_type_ids, is_random_next=is_random_next)


def _random_other_document(
    documents: Sequence[Document], doc_index: int, rng: np.random.Generator
) -> list[np.ndarray] | None:
    """The sentences of a document drawn uniformly from those other than `doc_index`; None if there is
    none with a sentence (10 draws, so a corpus of mostly empty documents cannot hang us)."""
    if len(documents) < 2:
        return None
    for _ in range(10):
        other = int(rng.integers(len(documents) - 1))
        other += other >= doc_index  # skip doc_index itself
        sentences = _sentences(documents[other])
        if sentences:
            return sentences
    return None


# ---------------------------------------------------------------------------------------------------------
# Instance builders


def create_nsp_instances(
    documents: Sequence[Document],
    doc_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    cls_id: int,
    sep_id: int,
) -> list[Instance]:
    """NSP instances from `documents[doc_index]`, as Google builds them (see the module docstring)."""
    max_num_tokens = _check(max_seq_length, 3, 2, short_seq_prob)  # A and B need a token each
    document = _sentences(documents[doc_index])
    target_length = _target_length(max_num_tokens, short_seq_prob, rng)

    instances: list[Instance] = []
    chunk: list[np.ndarray] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_length:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1  # sentences in A
            a = _concat(chunk[:a_end])
            b = None
            is_random_next = len(chunk) == 1 or rng.random() < 0.5
            if is_random_next:
                other = _random_other_document(documents, doc_index, rng)
                if other is not None:
                    start = int(rng.integers(len(other)))
                    taken, taken_length = [], 0
                    for sentence in other[start:]:
                        taken.append(sentence)
                        taken_length += len(sentence)
                        if taken_length >= target_length - len(a):
                            break
                    b = _concat(taken)
                    i -= len(chunk) - a_end  # put back the sentences A did not use
                else:
                    is_random_next = False  # no other document: fall back to the actual next
            if b is None and len(chunk) >= 2:
                b = _concat(chunk[a_end:])
            if b is not None:
                instances.append(_pair_instance(a, b, max_num_tokens, rng, cls_id, sep_id, is_random_next))
            chunk, chunk_length = [], 0
        i += 1
    return instances


def create_sop_instances(
    documents: Sequence[Document],
    doc_index: int,
    max_seq_length: int,
    short_seq_prob: float,
    rng: np.random.Generator,
    cls_id: int,
    sep_id: int,
) -> list[Instance]:
    """ALBERT's sentence-order instances from `documents[doc_index]`: `is_random_next` True = swapped."""
    max_num_tokens = _check(max_seq_length, 3, 2, short_seq_prob)  # A and B need a token each
    document = _sentences(documents[doc_index])
    target_length = _target_length(max_num_tokens, short_seq_prob, rng)

    instances: list[Instance] = []
    chunk: list[np.ndarray] = []
    chunk_length = 0
    for i, sentence in enumerate(document):
        chunk.append(sentence)
        chunk_length += len(sentence)
        if i == len(document) - 1 or chunk_length >= target_length:
            if len(chunk) >= 2:
                a_end = int(rng.integers(1, len(chunk)))
                a, b = _concat(chunk[:a_end]), _concat(chunk[a_end:])
            elif len(sentence) >= 2:  # one sentence: its two halves are still in order
                cut = int(rng.integers(1, len(sentence)))
                a, b = sentence[:cut], sentence[cut:]
            else:
                a = b = None  # a one-token sentence alone: nothing to order
            if a is not None:
                swapped = bool(rng.random() < 0.5)
                if swapped:
                    a, b = b, a
                instances.append(_pair_instance(a, b, max_num_tokens, rng, cls_id, sep_id, swapped))
            chunk, chunk_length = [], 0
    return instances


def create_full_sentence_instances(
    documents: Sequence[Document],
    doc_index: int,
    max_seq_length: int,
    cls_id: int,
    sep_id: int,
    cross_documents: bool = False,
) -> list[Instance]:
    """RoBERTa's packed inputs from `documents[doc_index]`: `[CLS] s1 s2 ... [SEP]`, one segment, no label.

    Whole sentences are packed in order while they fit in `max_seq_length - 2` tokens; a sentence longer
    than that on its own is split into full-length pieces rather than dropped. DOC-SENTENCES
    (`cross_documents=False`) stops at the end of the document, so its last instance may be short.
    FULL-SENTENCES (`cross_documents=True`) fills that last instance with sentences from the start of the
    following documents (wrapping round), after a [SEP] that marks each document boundary, as RoBERTa adds
    an extra separator there. Those sentences are seen again when their own document is packed, at most one
    instance's worth per document; packing the corpus as one stream would avoid it but is not per document.
    No randomness is involved, so there is no `rng`.
    """
    max_num_tokens = _check(max_seq_length, 2, 1)
    pieces: list[np.ndarray] = []
    for sentence in _sentences(documents[doc_index]):
        pieces.extend(sentence[k : k + max_num_tokens] for k in range(0, len(sentence), max_num_tokens))

    packs: list[list[np.ndarray]] = []
    current: list[np.ndarray] = []
    current_length = 0
    for piece in pieces:
        if current_length + len(piece) > max_num_tokens:
            packs.append(current)
            current, current_length = [], 0
        current.append(piece)
        current_length += len(piece)

    if current and cross_documents:
        boundary = np.array([sep_id], dtype=np.int64)
        for step in range(1, len(documents)):
            following = _sentences(documents[(doc_index + step) % len(documents)])
            if not following:
                continue
            if current_length + 1 + len(following[0]) > max_num_tokens:
                break
            current.append(boundary)
            current_length += 1
            n_taken = 0
            for sentence in following:
                if current_length + len(sentence) > max_num_tokens:
                    break
                current.append(sentence)
                current_length += len(sentence)
                n_taken += 1
            if n_taken < len(following):
                break
    if current:
        packs.append(current)

    cls, sep = np.array([cls_id], dtype=np.int64), np.array([sep_id], dtype=np.int64)
    instances = []
    for pack in packs:
        tokens = np.concatenate([cls, *pack, sep])
        instances.append(Instance(tokens, np.zeros(len(tokens), dtype=np.int64), is_random_next=False))
    return instances
