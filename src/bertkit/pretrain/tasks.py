"""The instances of ERNIE 2.0's structure tasks (Sun et al. 2020, section 4.2; seed 002), one document at a time,
as the builders of pairs.py: token–document relation, sentence reordering and sentence distance.

Each builder takes the arguments of `dataset.INSTANCE_BUILDERS` (documents, the document's index, the length, the
short-sequence probability (unused), the generator, [CLS] and [SEP]) and returns `pairs.Instance`s with the task's
labels as named fields: `tdr_labels` per token, `sentence_label` per instance. Token ids may carry the whole-word
and entity marks of `shards.MarkedDocuments` (high bits); the builders compare ids without them and pass them on.

Choices:
- Token–document relation (`tdr`): a document is cut into segments of whole sentences, each at most the length's
  room and at most half the document (so a document of two or more sentences gives two or more segments); every
  segment is an instance, and each of its tokens is labelled by whether the same token occurs in another segment
  of the document. Labels are stored as 2 (occurs elsewhere), 1 (does not), 0 (no label: [CLS], [SEP], padding),
  so the batch's zero padding means "no label". A one-sentence document has no other segment and gives nothing.
- Sentence reordering (`reorder`): consecutive sentences packed up to the length, split into m pieces, the pieces
  shuffled; the label is one of the Σ_{m=1..k} m! (piece count, order) classes, k = `REORDER_MAX_PIECES` = 3
  (9 classes). The label is drawn uniformly over the classes the pack allows, then m and the order follow from
  it: a balanced 9-way task whose majority guess scores 1/9. Pieces are cut at sentence boundaries when the pack
  has m sentences, else at token positions (a one-sentence pack can still be shuffled); the pieces are joined
  with nothing between them, in one segment.
- Sentence distance (`distance`): a pair [CLS] A [SEP] B [SEP], A one sentence of the document, B the next
  sentence (0: adjacent), another sentence of the same document at least two away (1: same document), or a
  sentence of another document (2: other document); the label is drawn uniformly over those the document allows
  (a two-sentence document cannot give 1), one instance per sentence. Cut to fit as NSP pairs are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise, permutations

import numpy as np

from bertkit.pretrain.pairs import (
    Document,
    Instance,
    _check,
    _pair_instance,
    _random_other_document,
    _sentences,
)
from bertkit.pretrain.shards import WORD_START_BIT

ID_MASK = WORD_START_BIT - 1  # a token id without the word and entity marks (bits 24 and 25)
REORDER_MAX_PIECES = 3
# (pieces, order) -> class: one piece (in order) is 0, then the 2 orders of two pieces, then the 6 of three...
REORDER_CLASSES = [(m, p) for m in range(1, REORDER_MAX_PIECES + 1) for p in permutations(range(m))]
DISTANCE_CLASSES = ("adjacent", "same document", "other document")


def _segments(sentences: list[np.ndarray], room: int) -> list[list[np.ndarray]]:
    """Consecutive sentences packed into segments of at most `room` tokens (a longer sentence cut into pieces)."""
    pieces = [s[k : k + room] for s in sentences for k in range(0, len(s), room)]
    packs, current, n = [], [], 0
    for piece in pieces:
        if current and n + len(piece) > room:
            packs.append(current)
            current, n = [], 0
        current.append(piece)
        n += len(piece)
    return packs + [current] if current else packs


def create_token_document_instances(
    documents: Sequence[Document], doc_index: int, max_seq_length: int, rng, cls_id: int, sep_id: int
) -> list[Instance]:
    """[CLS] segment [SEP] for every segment of the document, each token labelled by whether it occurs in the
    document's other segments (`tdr_labels`: 2 yes, 1 no, 0 no label)."""
    room = _check(max_seq_length, 2, 1)
    sentences = _sentences(documents[doc_index])
    total = sum(len(s) for s in sentences)
    if len(sentences) < 2:
        return []
    segments = [np.concatenate(p) for p in _segments(sentences, max(1, min(room, math.ceil(total / 2))))]
    plain = [s & ID_MASK for s in segments]
    counts: dict[int, int] = {}  # token id -> segments it occurs in
    for ids in plain:
        for t in np.unique(ids).tolist():
            counts[t] = counts.get(t, 0) + 1
    instances = []
    for seg, ids in zip(segments, plain, strict=True):
        own = np.unique(ids)
        elsewhere = own[np.array([counts[t] > 1 for t in own.tolist()], dtype=bool)]
        labels = np.zeros(len(seg) + 2, dtype=np.int8)
        labels[1:-1] = 1 + np.isin(ids, elsewhere)
        tokens = np.concatenate([[cls_id], seg, [sep_id]]).astype(np.int64)
        instances.append(Instance(tokens, np.zeros(len(tokens), np.int64), False, {"tdr_labels": labels}))
    return instances


def reorder_label(pieces: int, order: Sequence[int]) -> int:
    """The class of `pieces` pieces shown in `order` (order[j] = which original piece stands at place j)."""
    return REORDER_CLASSES.index((pieces, tuple(order)))


def _cut(pack: list[np.ndarray], m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The pack in m non-empty contiguous pieces: at sentence boundaries when it has m sentences, else anywhere."""
    if len(pack) >= m:
        gaps = np.sort(rng.choice(np.arange(1, len(pack)), m - 1, replace=False))
        bounds = [0, *gaps.tolist(), len(pack)]
        return [np.concatenate(pack[a:b]) for a, b in pairwise(bounds)]
    flat = np.concatenate(pack)
    gaps = np.sort(rng.choice(np.arange(1, len(flat)), m - 1, replace=False))
    return np.split(flat, gaps)


def create_reorder_instances(
    documents: Sequence[Document], doc_index: int, max_seq_length: int, rng, cls_id: int, sep_id: int
) -> list[Instance]:
    """[CLS] shuffled pieces [SEP] for every pack of consecutive sentences, with its class (`sentence_label`)."""
    room = _check(max_seq_length, 2, 1)
    instances = []
    for pack in _segments(_sentences(documents[doc_index]), room):
        n = sum(len(s) for s in pack)
        allowed = [c for c, (m, _) in enumerate(REORDER_CLASSES) if m <= n]  # m pieces need m tokens
        label = int(allowed[int(rng.integers(len(allowed)))])
        m, order = REORDER_CLASSES[label]
        pieces = _cut(pack, m, rng)
        tokens = np.concatenate([[cls_id], *(pieces[j] for j in order), [sep_id]]).astype(np.int64)
        instances.append(Instance(tokens, np.zeros(len(tokens), np.int64), False, {"sentence_label": np.int64(label)}))
    return instances


def create_distance_instances(
    documents: Sequence[Document], doc_index: int, max_seq_length: int, rng, cls_id: int, sep_id: int
) -> list[Instance]:
    """[CLS] A [SEP] B [SEP] for every sentence A of the document, B adjacent (0), of the same document at least two
    sentences away (1) or of another document (2), the label drawn uniformly over those possible (`sentence_label`)."""
    room = _check(max_seq_length, 3, 2)
    sentences = _sentences(documents[doc_index])
    instances = []
    for i, a in enumerate(sentences):
        far = [j for j in range(len(sentences)) if abs(j - i) >= 2]
        allowed = [c for c, ok in enumerate((i + 1 < len(sentences), bool(far), len(documents) > 1)) if ok]
        if not allowed:
            continue
        label = allowed[int(rng.integers(len(allowed)))]
        if label == 0:
            b = sentences[i + 1]
        elif label == 1:
            b = sentences[far[int(rng.integers(len(far)))]]
        else:
            other = _random_other_document(documents, doc_index, rng)
            if other is None:  # every other document is empty
                continue
            b = other[int(rng.integers(len(other)))]
        inst = _pair_instance(a, b, room, rng, cls_id, sep_id, is_random_next=False)
        inst.fields["sentence_label"] = np.int64(label)
        instances.append(inst)
    return instances
