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
- `unit` picks what is masked: single tokens (BERT), whole words (`"word"`: Chinese BERT-wwm, with jieba
  words; English words are a token and its `##` pieces) or SpanBERT spans of whole words. Words come from
  `shards.MarkedDocuments` (segmented once per corpus, carried as a bit on the ids through pair building);
  with plain documents each instance is segmented when its epoch is built, which is slow on large data.
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
    apply_mask,
    choose_spans,
    choose_word_positions,
    mask_batch,
    sequence_word_ids,
)
from bertkit.pretrain.pairs import create_full_sentence_instances, create_nsp_instances, create_sop_instances
from bertkit.pretrain.shards import WORD_START_BIT, MarkedDocuments


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


@dataclass
class Epoch:
    input_ids: np.ndarray  # (N, L) int32 masked inputs, padded with [PAD]
    labels: np.ndarray  # (N, L) int32 original ids at masked positions, -100 elsewhere
    token_type_ids: np.ndarray  # (N, L) int8
    lengths: np.ndarray  # (N,) real tokens per instance
    next_sentence_label: np.ndarray  # (N,) int64: 1 = B is random (NSP) or swapped (SOP)

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, index: np.ndarray) -> dict[str, torch.Tensor]:
        T = int(self.lengths[index].max())  # pad to the longest instance in the batch, not to L
        ids = torch.from_numpy(self.input_ids[index, :T].astype(np.int64))
        return {
            "input_ids": ids,
            "labels": torch.from_numpy(self.labels[index, :T].astype(np.int64)),
            "token_type_ids": torch.from_numpy(self.token_type_ids[index, :T].astype(np.int64)),
            "attention_mask": (torch.arange(T)[None, :] < torch.from_numpy(self.lengths[index])[:, None]).long(),
            "next_sentence_label": torch.from_numpy(self.next_sentence_label[index]),
        }


@dataclass
class PretrainingData:
    documents: Documents
    vocab: Vocab
    doc_ids: np.ndarray  # which documents of `documents` this split uses
    max_seq_length: int = 128
    objective: Literal["nsp", "sop", "full"] = "nsp"
    short_seq_prob: float = 0.1
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    unit: Literal["token", "word", "span", "ngram"] = "token"  # tokens, whole words (wwm), spans, ALBERT n-grams
    dynamic: bool = False
    dupe_factor: int = 5
    seed: int = 0
    chunk_tokens: int = 1_000_000  # tokens per streamed chunk (whole documents); 0: the whole epoch at once

    def epoch(self, epoch: int) -> Epoch:
        """The whole epoch in memory (evaluation, tests); training streams it with `chunks`."""
        parts = list(self.chunks(epoch))
        if len(parts) == 1:
            return parts[0]
        return Epoch(*(np.concatenate([getattr(p, f) for p in parts]) for f in Epoch.__dataclass_fields__))

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
        if self.unit == "token":
            attention = np.arange(L)[None, :] < lengths[:, None]
            masked, labels = mask_batch(
                tokens,
                self.masking,
                rng,
                mask_token_id=self.vocab.mask_id,
                vocab_size=self.vocab.size,
                special_ids=self.vocab.special_ids,
                attention_mask=attention,
            )
        else:
            starts = None
            if isinstance(self.documents, MarkedDocuments):  # word starts travel as a bit on the ids
                starts = (tokens & WORD_START_BIT) != 0
                tokens &= WORD_START_BIT - 1
            masked, labels = self._mask_words(tokens, lengths, rng, starts)
        return Epoch(masked.astype(np.int32), labels.astype(np.int32), types, lengths, nsp)

    def _mask_words(
        self, tokens: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, starts: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Whole-word (Chinese words by jieba, English words by `##`), SpanBERT span or ALBERT n-gram masking.

        `starts` (N, L) bool marks each word's first token (from `data.word_starts`, segmented once per
        corpus); without it, words are found here by segmenting every instance (slow: for small data).
        """
        v = self.vocab
        if starts is None and len(v.tokens) != v.size:
            raise DataError(f"--masking {self.unit}: the vocabulary's token strings are needed to find words")
        specials = [v.tokens[i] for i in v.special_ids] if v.tokens else []
        special_ids = np.asarray(v.special_ids)
        masked = tokens.copy()
        labels = np.full(tokens.shape, IGNORE_INDEX, dtype=np.int64)
        for row in range(len(tokens)):
            n = int(lengths[row])
            ids = tokens[row, :n]
            if starts is None:
                word_ids = sequence_word_ids([v.tokens[i] for i in ids], specials)  # (n,) -1 at specials
            else:
                special = np.isin(ids, special_ids)  # (n,)
                begins = starts[row, :n].copy()
                begins[0] = True
                begins[1:] |= special[:-1]  # a word never continues across [SEP] (or a trimmed edge)
                word_ids = np.where(special, -1, np.cumsum(begins) - 1)
            groups = None
            if self.unit == "word":
                positions = choose_word_positions(word_ids, self.masking, rng)
            else:
                ngram = 3 if self.unit == "ngram" else None
                spans = choose_spans(word_ids >= 0, self.masking, rng, word_ids=word_ids, max_ngram=ngram)  # (S, 2)
                positions = np.concatenate([np.arange(s, e) for s, e in spans] or [np.zeros(0, np.int64)])
                if self.unit == "span":  # SpanBERT: one 80/10/10 decision per span; ALBERT: per token
                    groups = np.repeat(np.arange(len(spans)), spans[:, 1] - spans[:, 0])
            masked[row, :n], labels[row, :n] = apply_mask(
                ids,
                positions,
                self.masking,
                rng,
                mask_token_id=v.mask_id,
                vocab_size=v.size,
                special_ids=v.special_ids,
                groups=groups,
            )
        return masked, labels

    def _instances(self, docs: _DocView, d: int, rng: np.random.Generator) -> list:
        v, L = self.vocab, self.max_seq_length
        if self.objective == "nsp":
            return create_nsp_instances(docs, d, L, self.short_seq_prob, rng, v.cls_id, v.sep_id)
        if self.objective == "sop":
            return create_sop_instances(docs, d, L, self.short_seq_prob, rng, v.cls_id, v.sep_id)
        return create_full_sentence_instances(docs, d, L, v.cls_id, v.sep_id, cross_documents=True)

    def batches(self, batch_size: int, epoch: int = 0, start: int = 0) -> Iterator[tuple[int, int, dict]]:
        """Endless stream of (epoch, index_in_epoch, batch), starting at batch `start` of `epoch`.

        Chunks are consumed in order; the rows left over at the end of a chunk start the next batch, and
        only the epoch's ragged last batch is dropped (every step sees `batch_size`)."""
        fields = list(Epoch.__dataclass_fields__)
        while True:
            i, seen, carry = 0, 0, None
            for chunk in self.chunks(epoch):
                seen += len(chunk)
                if carry is not None:
                    chunk = Epoch(*(np.concatenate([getattr(carry, f), getattr(chunk, f)]) for f in fields))
                n_batches = len(chunk) // batch_size
                for b in range(n_batches):
                    if i >= start:
                        yield epoch, i, chunk.batch(np.arange(b * batch_size, (b + 1) * batch_size))
                    i += 1
                rest = np.arange(n_batches * batch_size, len(chunk))
                carry = Epoch(*(getattr(chunk, f)[rest] for f in fields)) if len(rest) else None
            if i == 0:
                raise DataError(f"an epoch has {seen} instances, fewer than one batch of {batch_size}")
            epoch, start = epoch + 1, 0


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
