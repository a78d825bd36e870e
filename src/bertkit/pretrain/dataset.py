"""Pretraining batches: token shards → an epoch of instances (pairs.py) → masked tensors (masking.py).

Choices:
- An epoch is built from its own seed, so any epoch can be rebuilt exactly: that is what makes resuming
  exact (rebuild the epoch, skip the batches already seen) and what defines static vs dynamic masking.
  *Static* (Google): `dupe_factor` different versions of the data (pairing and masks), cycled — epoch e
  uses version e mod dupe_factor, as if the duplicated files were read again. *Dynamic* (RoBERTa):
  every epoch draws fresh pairs and fresh masks.
- An epoch streams in chunks of about `chunk_tokens` tokens: the epoch's seeded permutation of all documents
  is cut into chunks of whole documents, and each chunk's instances are built, shuffled and masked into padded
  int32 arrays (n, max_seq_length) only when training reaches it, so memory holds one chunk whatever the
  corpus size, and the first step waits for one chunk, not for the whole corpus. One generator runs through
  the chunks in order, so a chunked epoch is as reproducible as a whole one (resuming rebuilds the chunks
  before the resume point, skipping their batches). With `chunk_tokens=0` (or more tokens than the split has;
  `make demo` passes 0) the epoch is one chunk and exactly the epoch bertkit built
  before streaming existed: instances are then shuffled across the whole corpus instead of within a chunk (a
  test holds the two equal). Batches run on across chunk boundaries; only the epoch's ragged last batch is
  dropped.
- Documents are split into training and held-out sets by a seeded permutation, so evaluation never
  sees a training document.
- `unit` picks what is masked, a `MaskingUnit` from `MASKING_UNITS`: single tokens (BERT), whole words
  (`"word"`: Chinese BERT-wwm, with the segmenter's words; English words are a token and its `##` pieces),
  SpanBERT spans or ALBERT n-grams of whole words, ERNIE's phrases (`"phrase"`: segmenter words) and entities
  (`"entity"`: `PretrainingData.entities`' units, every other token alone), each taken whole with one 80/10/10
  decision per unit (ERNIE masks a unit as one; Sun et al. 2019, section 3.2). Words come from
  `shards.MarkedDocuments` (segmented once per corpus, carried as a bit on the ids through pair building; entity
  starts as a second bit); with plain documents each instance is segmented when its epoch is built, which is
  slow on large data. `objective` picks the instances (`INSTANCE_BUILDERS`).
- A batch is a dict of named tensors: the fixed five (`FIXED_FIELDS`) and whatever optional fields the masking
  unit (`Masked`) or the instance builder (`pairs.Instance.fields`) adds, per token or per sequence (`Epoch`).
  They travel with their rows through shuffling, chunks, batches and resume; an objective asks for one by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

from bertkit.errors import DataError
from bertkit.pretrain.masking import (
    IGNORE_INDEX,
    MaskingConfig,
    Segmenter,
    apply_mask,
    choose_spans,
    choose_word_positions,
    mask_batch,
    segment_words,
    sequence_word_ids,
)
from bertkit.pretrain.pairs import create_full_sentence_instances, create_nsp_instances, create_sop_instances
from bertkit.pretrain.shards import ENTITY_START_BIT, WORD_START_BIT, MarkedDocuments
from bertkit.pretrain.tasks import create_distance_instances, create_reorder_instances, create_token_document_instances


class Documents(Protocol):
    def __len__(self) -> int: ...
    def document(self, i: int) -> list[np.ndarray]: ...


@dataclass
class Vocab:
    """The ids the data pipeline needs from a tokenizer."""

    size: int
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    special_ids: tuple[int, ...]
    tokens: tuple[str, ...] = ()  # id -> token string; whole-word and span masking read words from it

    @classmethod
    def of(cls, tokenizer) -> Vocab:
        return cls(
            tokenizer.vocab_size,
            tokenizer.pad_token_id,
            tokenizer.cls_token_id,
            tokenizer.sep_token_id,
            tokenizer.mask_token_id,
            tuple(tokenizer.all_special_ids),
            tuple(tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))),
        )


FIXED_FIELDS = ("input_ids", "labels", "token_type_ids", "attention_mask", "next_sentence_label")


@dataclass
class Epoch:
    input_ids: np.ndarray  # (N, L) int32 masked inputs, padded with [PAD]
    labels: np.ndarray  # (N, L) int32 original ids at masked positions, -100 elsewhere
    token_type_ids: np.ndarray  # (N, L) int8
    lengths: np.ndarray  # (N,) real tokens per instance
    next_sentence_label: np.ndarray  # (N,) int64: 1 = B is random (NSP) or swapped (SOP)
    # Optional named fields that a masking unit or an instance builder adds (span boundaries, task ids), one row
    # per instance: per token (N, L, ...), cut to the batch's length as input_ids is, or per sequence (N, ...).
    # They are shuffled, chunked, batched and resumed with the fixed ones, and reach the batch dict as stored.
    token_fields: dict[str, np.ndarray] = field(default_factory=dict)
    sequence_fields: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [*self.token_fields, *self.sequence_fields]
        clash = [n for n in names if n in FIXED_FIELDS or names.count(n) > 1]
        if clash:
            raise ValueError(f"batch field {clash[0]!r} is given twice (fixed fields: {', '.join(FIXED_FIELDS)})")
        for name, x in {**self.token_fields, **self.sequence_fields}.items():
            if len(x) != len(self.lengths):
                raise ValueError(f"batch field {name!r} has {len(x)} rows, the epoch {len(self.lengths)} instances")

    def __len__(self) -> int:
        return len(self.lengths)

    def take(self, index: np.ndarray) -> Epoch:
        """The rows `index`, every field with them."""
        return self._map(lambda x: x[index])

    @classmethod
    def concat(cls, parts: list[Epoch]) -> Epoch:
        """The rows of `parts`, one after the other; the parts have the same fields."""
        first = parts[0]
        arrays = [np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAYS]
        tokens = {k: np.concatenate([p.token_fields[k] for p in parts]) for k in first.token_fields}
        sequences = {k: np.concatenate([p.sequence_fields[k] for p in parts]) for k in first.sequence_fields}
        return cls(*arrays, tokens, sequences)

    def _map(self, fn) -> Epoch:
        return Epoch(
            *(fn(getattr(self, f)) for f in _ARRAYS),
            {k: fn(v) for k, v in self.token_fields.items()},
            {k: fn(v) for k, v in self.sequence_fields.items()},
        )

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        T = int(self.lengths[index].max())  # pad to the longest instance in the batch, not to L
        ids = torch.from_numpy(self.input_ids[index, :T].astype(np.int64))
        return {
            "input_ids": ids,
            "labels": torch.from_numpy(self.labels[index, :T].astype(np.int64)),
            "token_type_ids": torch.from_numpy(self.token_type_ids[index, :T].astype(np.int64)),
            "attention_mask": (torch.arange(T)[None, :] < torch.from_numpy(self.lengths[index])[:, None]).long(),
            "next_sentence_label": torch.from_numpy(self.next_sentence_label[index]),
            **{k: torch.from_numpy(np.ascontiguousarray(v[index, :T])) for k, v in self.token_fields.items()},
            **{k: torch.from_numpy(np.ascontiguousarray(v[index])) for k, v in self.sequence_fields.items()},
        }


_ARRAYS = ("input_ids", "labels", "token_type_ids", "lengths", "next_sentence_label")


@dataclass
class Masked:
    """What a masking unit gives for a chunk: the inputs, the labels, and any fields it adds (as `Epoch`'s)."""

    input_ids: np.ndarray  # (N, L) corrupted ids
    labels: np.ndarray  # (N, L) original ids at the chosen positions, -100 elsewhere
    token_fields: dict[str, np.ndarray] = field(default_factory=dict)
    sequence_fields: dict[str, np.ndarray] = field(default_factory=dict)


class MaskingUnit(Protocol):
    """What is masked together: a chunk's padded ids in, `Masked` out. `words` says whether it reads word
    boundaries (then `word_ids[row]` is that row's (n,) word ids, -1 at specials; else None). A unit may say
    `marks = "entities"` to get entity units as its words instead of the segmenter's (`WordMasking`)."""

    words: bool

    def __call__(
        self,
        tokens: np.ndarray,
        lengths: np.ndarray,
        word_ids: list[np.ndarray] | None,
        cfg: MaskingConfig,
        vocab: Vocab,
        rng: np.random.Generator,
    ) -> Masked: ...


class NoMasking:
    """Nothing masked: the inputs as they are, no MLM labels (ERNIE 2.0's structure tasks train on clean text)."""

    words = False

    def __call__(self, tokens, lengths, word_ids, cfg, vocab, rng) -> Masked:
        return Masked(tokens.copy(), np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64))


class TokenMasking:
    """Single tokens (BERT, RoBERTa, ELECTRA's generator), the whole chunk in one vectorised draw."""

    words = False

    def __call__(self, tokens, lengths, word_ids, cfg, vocab, rng) -> Masked:
        attention = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
        masked, labels = mask_batch(
            tokens,
            cfg,
            rng,
            mask_token_id=vocab.mask_id,
            vocab_size=vocab.size,
            special_ids=vocab.special_ids,
            attention_mask=attention,
        )
        return Masked(masked, labels)


@dataclass(frozen=True)
class WordMasking:
    """Whole words (BERT-wwm), SpanBERT spans of whole words, or ALBERT n-grams of words, one row at a time.

    `span`: None for whole words; "geometric" for SpanBERT (lengths ~ Geometric(`cfg.span_p`) up to
    `cfg.max_span`, one 80/10/10 decision per span, as SpanBERT makes it); "ngram" for ALBERT (n <= `cfg.max_ngram`
    with p(n) ∝ 1/n, the 80/10/10 decision per token, as ALBERT's create_pretraining_data.py makes it).

    `boundaries` (geometric spans only) adds SpanBERT's span-boundary fields, per token, for the span boundary
    objective (`spanbert.SpanBertPretraining`): for each token i of a span s..e (inclusive), `sbo_left` = s - 1 and
    `sbo_right` = e + 1, the positions of the tokens just outside it, and `sbo_pos` = i - s + 1, its place in the
    span from 1; -1, -1 and 0 at every other token. They are computed from the spans already drawn and draw
    nothing, so the masks are the same with or without them.

    `per_unit` (ERNIE's phrases and entities, whole words only) makes one 80/10/10 decision per word instead of
    per token; `marks` says which words: the segmenter's ("words") or entity units ("entities")."""

    span: Literal["geometric", "ngram"] | None = None
    boundaries: bool = False
    per_unit: bool = False
    marks: Literal["words", "entities"] = "words"
    words = True

    def __call__(self, tokens, lengths, word_ids, cfg, vocab, rng) -> Masked:
        masked = tokens.copy()
        labels = np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64)
        if self.boundaries and self.span != "geometric":
            raise ValueError("span boundaries are SpanBERT's: WordMasking(boundaries=True) needs span='geometric'")
        left, right = np.full(tokens.shape, -1, np.int32), np.full(tokens.shape, -1, np.int32)  # (N, L)
        place = np.zeros(tokens.shape, np.int32)  # (N, L)
        for row, w in enumerate(word_ids):
            n = int(lengths[row])
            groups = None
            if self.span is None:
                positions = choose_word_positions(w, cfg, rng)
                if self.per_unit:
                    groups = w[positions]  # (N,) the unit of each chosen position: one decision per unit
            else:
                ngram = cfg.max_ngram if self.span == "ngram" else None
                spans = choose_spans(w >= 0, cfg, rng, cfg.span_p, cfg.max_span, word_ids=w, max_ngram=ngram)  # (S, 2)
                positions = np.concatenate([np.arange(s, e) for s, e in spans] or [np.zeros(0, np.int64)])
                if self.span == "geometric":
                    groups = np.repeat(np.arange(len(spans)), spans[:, 1] - spans[:, 0])
                if self.boundaries:
                    for s, e in spans:  # [s, e): the boundaries are s - 1 and e, both inside the row's [CLS] .. [SEP]
                        left[row, s:e], right[row, s:e], place[row, s:e] = s - 1, e, np.arange(1, e - s + 1)
            masked[row, :n], labels[row, :n] = apply_mask(
                tokens[row, :n],
                positions,
                cfg,
                rng,
                mask_token_id=vocab.mask_id,
                vocab_size=vocab.size,
                special_ids=vocab.special_ids,
                groups=groups,
            )
        fields = {"sbo_left": left, "sbo_right": right, "sbo_pos": place} if self.boundaries else {}
        return Masked(masked, labels, fields)


# `PretrainingData.unit` names one of these (or is a `MaskingUnit` itself); a new unit is a new entry.
MASKING_UNITS: dict[str, MaskingUnit] = {
    "none": NoMasking(),
    "token": TokenMasking(),
    "word": WordMasking(),
    "span": WordMasking("geometric"),
    "span_boundaries": WordMasking("geometric", boundaries=True),  # SpanBERT's spans and their boundaries (SBO)
    "ngram": WordMasking("ngram"),
    "phrase": WordMasking(per_unit=True),  # ERNIE's phrase-level masking: segmenter words, each masked as one
    "entity": WordMasking(per_unit=True, marks="entities"),  # ERNIE's entity-level masking
}

# `PretrainingData.objective` names the instances: NSP pairs, SOP pairs, full sentences across documents, or the
# instances of ERNIE 2.0's structure tasks (tasks.py: token-document relation, sentence reordering and distance).
INSTANCE_BUILDERS = {
    "nsp": lambda docs, d, L, short, rng, cls, sep: create_nsp_instances(docs, d, L, short, rng, cls, sep),
    "sop": lambda docs, d, L, short, rng, cls, sep: create_sop_instances(docs, d, L, short, rng, cls, sep),
    "full": lambda docs, d, L, short, rng, cls, sep: create_full_sentence_instances(
        docs, d, L, cls, sep, cross_documents=True
    ),
    "tdr": lambda docs, d, L, short, rng, cls, sep: create_token_document_instances(docs, d, L, rng, cls, sep),
    "reorder": lambda docs, d, L, short, rng, cls, sep: create_reorder_instances(docs, d, L, rng, cls, sep),
    "distance": lambda docs, d, L, short, rng, cls, sep: create_distance_instances(docs, d, L, rng, cls, sep),
}


@dataclass
class PretrainingData:
    documents: Documents
    vocab: Vocab
    doc_ids: np.ndarray  # which documents of `documents` this split uses
    max_seq_length: int = 128
    objective: str = "nsp"  # a key of INSTANCE_BUILDERS: "nsp", "sop", "full"
    short_seq_prob: float = 0.1
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    unit: str | MaskingUnit = (
        "token"  # a key of MASKING_UNITS: tokens, whole words (wwm), spans (+ boundaries), n-grams
    )
    dynamic: bool = False
    dupe_factor: int = 5
    seed: int = 0
    chunk_tokens: int = 1_000_000  # tokens per streamed chunk (whole documents); 0: the whole epoch at once
    segmenter: Segmenter | None = None  # finds the words of plain documents (jieba when None); see `_word_ids`
    entities: Segmenter | None = None  # finds the entity units of plain documents, for the "entity" unit

    def epoch(self, epoch: int) -> Epoch:
        """The whole epoch in memory (evaluation, tests); training streams it with `chunks`."""
        parts = list(self.chunks(epoch))
        return parts[0] if len(parts) == 1 else Epoch.concat(parts)

    def chunks(self, epoch: int) -> Iterator[Epoch]:
        """The epoch's chunks in order, each built when asked for (see the module docstring)."""
        version = epoch if self.dynamic else epoch % self.dupe_factor
        rng = np.random.default_rng([self.seed, version])
        docs = _DocView(self.documents, self.doc_ids)
        order = rng.permutation(len(docs))
        budget = self.chunk_tokens if self.chunk_tokens > 0 else float("inf")
        any_instances = False
        instances, tokens = [], 0
        for k, d in enumerate(order):
            new = self._instances(docs, int(d), rng)
            instances += new
            tokens += sum(len(x.tokens) for x in new)  # the chunk's size in instance tokens
            if (tokens >= budget or k == len(order) - 1) and instances:
                any_instances = True
                yield self._build(instances, rng)
                instances, tokens = [], 0
        if not any_instances:
            raise DataError(
                f"the corpus gives no training instances at --max-seq-length {self.max_seq_length}: it needs at "
                "least two non-empty sentences, each with room beside [CLS] and [SEP]; check the corpus or the length"
            )

    def _build(self, instances: list, rng: np.random.Generator) -> Epoch:
        """Shuffle, pad and mask one chunk's instances."""
        order = rng.permutation(len(instances))
        N, L = len(instances), self.max_seq_length
        tokens = np.full((N, L), self.vocab.pad_id, dtype=np.int32)
        types = np.zeros((N, L), dtype=np.int8)
        lengths = np.zeros(N, dtype=np.int64)
        nsp = np.zeros(N, dtype=np.int64)
        for row, k in enumerate(order):
            inst = instances[k]
            n = len(inst.tokens)
            tokens[row, :n], types[row, :n], lengths[row], nsp[row] = (
                inst.tokens,
                inst.token_type_ids,
                n,
                inst.is_random_next,
            )
        token_fields, sequence_fields = _instance_fields([instances[k] for k in order], L)
        starts = entity_starts = None
        if isinstance(self.documents, MarkedDocuments):  # word (and entity) starts travel as bits on the ids
            starts = (tokens & WORD_START_BIT) != 0
            if self.documents.entity_starts is not None:
                entity_starts = (tokens & ENTITY_START_BIT) != 0
            tokens &= WORD_START_BIT - 1
        unit = MASKING_UNITS[self.unit] if isinstance(self.unit, str) else self.unit
        word_ids = None
        if unit.words and getattr(unit, "marks", "words") == "entities":
            if entity_starts is None and (isinstance(self.documents, MarkedDocuments) or self.entities is None):
                raise DataError(f"--masking {self.unit}: no entities for this corpus; give --entities FILE")
            word_ids = self._word_ids(tokens, lengths, entity_starts, self.entities)
        elif unit.words:
            word_ids = self._word_ids(tokens, lengths, starts, self.segmenter)
        out = unit(tokens, lengths, word_ids, self.masking, self.vocab, rng)
        return Epoch(
            out.input_ids.astype(np.int32),
            out.labels.astype(np.int32),
            types,
            lengths,
            nsp,
            token_fields | out.token_fields,
            sequence_fields | out.sequence_fields,
        )

    def _word_ids(
        self, tokens: np.ndarray, lengths: np.ndarray, starts: np.ndarray | None, segmenter: Segmenter | None
    ) -> list[np.ndarray]:
        """Each row's (n,) word ids, -1 at specials: Chinese words by the segmenter, English words by `##`.

        `starts` (N, L) bool marks each word's first token (from `shards.word_starts`, segmented once per
        corpus); without it, words are found here by segmenting every instance (slow: for small data).
        """
        v = self.vocab
        if starts is None and len(v.tokens) != v.size:
            raise DataError(f"--masking {self.unit}: the vocabulary's token strings are needed to find words")
        specials = [v.tokens[i] for i in v.special_ids] if v.tokens else []
        special_ids = np.asarray(v.special_ids)
        segment = segmenter.cut if segmenter is not None else segment_words
        found = []
        for row in range(len(tokens)):
            ids = tokens[row, : int(lengths[row])]
            if starts is None:
                found.append(sequence_word_ids([v.tokens[i] for i in ids], specials, segment))  # (n,)
                continue
            special = np.isin(ids, special_ids)  # (n,)
            begins = starts[row, : len(ids)].copy()
            begins[0] = True
            begins[1:] |= special[:-1]  # a word never continues across [SEP] (or a trimmed edge)
            found.append(np.where(special, -1, np.cumsum(begins) - 1))
        return found

    def _instances(self, docs: _DocView, d: int, rng: np.random.Generator) -> list:
        if self.objective not in INSTANCE_BUILDERS:
            raise DataError(f"objective {self.objective!r}: choose one of {', '.join(INSTANCE_BUILDERS)}")
        v, build = self.vocab, INSTANCE_BUILDERS[self.objective]
        return build(docs, d, self.max_seq_length, self.short_seq_prob, rng, v.cls_id, v.sep_id)

    def batches(self, batch_size: int, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, int, dict]]:
        """Endless stream of (epoch, index_in_epoch, batch), starting at batch `start` of `epoch`.

        Chunks are consumed in order; the rows left over at the end of a chunk start the next batch, and
        only the epoch's ragged last batch is dropped (every step sees `batch_size`)."""
        while True:
            i, seen, carry = 0, 0, None
            for chunk in self.chunks(epoch):
                seen += len(chunk)
                if carry is not None:
                    chunk = Epoch.concat([carry, chunk])
                n_batches = len(chunk) // batch_size
                for b in range(n_batches):
                    if i >= start:
                        yield epoch, i, chunk.batch(np.arange(b * batch_size, (b + 1) * batch_size))
                    i += 1
                rest = np.arange(n_batches * batch_size, len(chunk))
                carry = chunk.take(rest) if len(rest) else None
            if i == 0:
                raise DataError(f"an epoch has {seen} instances, fewer than one batch of {batch_size}")
            epoch, start = epoch + 1, 0


def _instance_fields(instances: list, L: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The instances' own fields (`pairs.Instance.fields`), stacked in row order: a (T,) value per token padded
    with 0 to (N, L), a 0-d value per sequence to (N,)."""
    token_fields, sequence_fields = {}, {}
    for name, first in instances[0].fields.items() if instances else ():
        values = [np.asarray(inst.fields[name]) for inst in instances]
        if np.ndim(first) == 0:
            sequence_fields[name] = np.stack(values)
        else:
            padded = np.zeros((len(values), L, *values[0].shape[1:]), dtype=values[0].dtype)
            for row, x in enumerate(values):
                padded[row, : len(x)] = x
            token_fields[name] = padded
    return token_fields, sequence_fields


class _DocView:
    """A subset of documents, indexable like a list of documents (what pairs.py expects)."""

    def __init__(self, documents: Documents, doc_ids: np.ndarray):
        self.documents, self.doc_ids = documents, doc_ids

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __getitem__(self, i: int) -> list[np.ndarray]:
        return self.documents.document(int(self.doc_ids[i]))


def split_documents(n_documents: int, eval_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_ids, eval_ids): a seeded split by document; at least one of each when there are two."""
    order = np.random.default_rng([seed, 12345]).permutation(n_documents)
    n_eval = int(round(n_documents * eval_fraction))
    if eval_fraction > 0 and n_documents >= 2:
        n_eval = min(max(n_eval, 1), n_documents - 1)
    return np.sort(order[n_eval:]), np.sort(order[:n_eval])
