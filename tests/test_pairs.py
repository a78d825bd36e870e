"""Pair building: NSP / SOP labels, contiguity, layout, lengths and the corner cases of small corpora.

The synthetic corpus makes contiguity checkable: token id = BASE + doc * STRIDE + position of the token in
its document, so any id says which document it came from and where.
"""

import numpy as np
import pytest
import torch

from bertkit.errors import ConfigError
from bertkit.pretrain.pairs import (
    Instance,
    create_full_sentence_instances,
    create_nsp_instances,
    create_sop_instances,
    truncate_seq_pair,
)

CLS, SEP = 1, 2
BASE, STRIDE = 10, 100_000


def make_corpus(rng, n_docs=100, sentences=(1, 30), lengths=(2, 20)):
    """Documents of numbered sentences; also returns each document's set of sentence start offsets."""
    documents, starts = [], []
    for d in range(n_docs):
        sizes = rng.integers(lengths[0], lengths[1] + 1, size=int(rng.integers(sentences[0], sentences[1] + 1)))
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        documents.append([BASE + d * STRIDE + np.arange(a, b) for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
        starts.append(set(offsets.tolist()))
    return documents, starts


def where(ids):
    """(doc, position in doc) of each id."""
    return (ids - BASE) // STRIDE, (ids - BASE) % STRIDE


def split_pair(instance: Instance, max_seq_length: int):
    """Check the [CLS] A [SEP] B [SEP] layout; return A and B."""
    tokens, types = instance.tokens, instance.token_type_ids
    assert len(tokens) <= max_seq_length and len(types) == len(tokens)
    assert tokens[0] == CLS and (tokens == CLS).sum() == 1
    seps = np.flatnonzero(tokens == SEP)
    assert len(seps) == 2 and seps[1] == len(tokens) - 1
    assert (types[: seps[0] + 1] == 0).all() and (types[seps[0] + 1 :] == 1).all()
    a, b = tokens[1 : seps[0]], tokens[seps[0] + 1 : -1]
    assert len(a) >= 1 and len(b) >= 1
    return a, b


def check_contiguous(segment):
    """One run of consecutive tokens of one document; returns (doc, first position, last position)."""
    docs, positions = where(segment)
    assert (docs == docs[0]).all() and (np.diff(positions) == 1).all()
    return docs[0], positions[0], positions[-1]


def nsp_instances(documents, max_seq_length=128, short_seq_prob=0.1, epochs=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        instance
        for _ in range(epochs)
        for d in range(len(documents))
        for instance in create_nsp_instances(documents, d, max_seq_length, short_seq_prob, rng, CLS, SEP)
    ]


def test_nsp_instances_are_googles():
    # A chunk of one sentence (the end of a document, or a sentence as long as the target) always gets a
    # random next, so short documents and short targets push the random share above one half. With long
    # documents (as in Wikipedia) and full targets the labels are balanced.
    documents, starts = make_corpus(np.random.default_rng(0), n_docs=100, sentences=(50, 150))
    balanced = nsp_instances(documents, short_seq_prob=0.0)
    assert len(balanced) > 2000
    labels = np.array([instance.is_random_next for instance in balanced])
    assert abs(labels.mean() - 0.5) < 0.03

    instances = balanced + nsp_instances(documents, short_seq_prob=0.1, epochs=1)
    for instance in instances:
        a, b = split_pair(instance, 128)
        doc_a, first_a, last_a = check_contiguous(a)
        doc_b, first_b, last_b = check_contiguous(b)
        truncated = len(instance.tokens) == 128  # only a truncated pair fills max_seq_length exactly
        if instance.is_random_next:
            assert doc_b != doc_a
        else:
            assert doc_b == doc_a and first_b > last_a
            assert first_b - last_a - 1 < 20  # only truncation leaves a gap: less than one sentence
            if not truncated:
                assert first_b == last_a + 1 and first_b in starts[doc_a]
        if not truncated:  # whole sentences
            assert first_a in starts[doc_a] and last_a + 1 in starts[doc_a]
            assert first_b in starts[doc_b] and last_b + 1 in starts[doc_b]


def test_short_seq_prob_gives_short_targets_a_tenth_of_the_time():
    # Sentences of 5 tokens, so an "is next" first instance of a document is full-length (128) exactly when
    # the target was the full 125 tokens, or a short one above 120.
    documents = [[BASE + d * STRIDE + np.arange(5 * k, 5 * k + 5) for k in range(60)] for d in range(3000)]
    rng = np.random.default_rng(1)
    for short_seq_prob, expected in ((0.1, 0.1 * 119 / 124), (0.0, 0.0)):
        short = []
        for d in range(len(documents)):
            first = create_nsp_instances(documents, d, 128, short_seq_prob, rng, CLS, SEP)[0]
            if not first.is_random_next:
                short.append(len(first.tokens) < 128)
        assert abs(np.mean(short) - expected) < 0.025


def test_single_document_corpus_falls_back_to_actual_next():
    documents, starts = make_corpus(np.random.default_rng(2), n_docs=1, sentences=(40, 40))
    instances = nsp_instances(documents, max_seq_length=64, epochs=20)
    assert instances and not any(instance.is_random_next for instance in instances)
    for instance in instances:
        a, b = split_pair(instance, 64)
        assert check_contiguous(a)[2] < check_contiguous(b)[1]
    # One document of one sentence: nothing to pair it with, and no hang.
    assert nsp_instances([[np.arange(10, 20)]], epochs=1) == []


def test_single_sentence_document_and_long_sentence():
    documents, _ = make_corpus(np.random.default_rng(3), n_docs=20)
    documents[5] = [BASE + 5 * STRIDE + np.arange(8)]  # one short sentence
    documents[6] = [BASE + 6 * STRIDE + np.arange(300)]  # one sentence longer than max_seq_length
    rng = np.random.default_rng(4)
    for d in (5, 6):
        (instance,) = create_nsp_instances(documents, d, 128, 0.0, rng, CLS, SEP)
        assert instance.is_random_next  # B can only come from another document
        a, _ = split_pair(instance, 128)
        assert check_contiguous(a)[0] == d
    assert len(instance.tokens) == 128


def test_empty_sentences_and_documents_are_skipped():
    documents = [[[], [10, 11, 12], []], [], [[20, 21], [22, 23, 24]]]
    rng = np.random.default_rng(5)
    for _ in range(50):
        for d in range(3):
            for instance in create_nsp_instances(documents, d, 16, 0.0, rng, CLS, SEP):
                split_pair(instance, 16)
    assert create_nsp_instances(documents, 1, 16, 0.0, rng, CLS, SEP) == []


def test_truncate_seq_pair_matches_one_token_at_a_time():
    def reference_lengths(len_a, len_b, max_num_tokens):
        while len_a + len_b > max_num_tokens:
            if len_a > len_b:
                len_a -= 1
            else:
                len_b -= 1
        return len_a, len_b

    rng = np.random.default_rng(6)
    cut_from_front = cut_from_back = 0
    for _ in range(2000):
        len_a, len_b, max_num_tokens = (int(x) for x in rng.integers(1, 60, size=3))
        a, b = list(range(len_a)), list(range(100, 100 + len_b))
        truncate_seq_pair(a, b, max(max_num_tokens, 2), rng)
        assert (len(a), len(b)) == reference_lengths(len_a, len_b, max(max_num_tokens, 2))
        for kept, first in ((a, 0), (b, 100)):  # what is left is one contiguous run of the original
            assert kept == list(range(kept[0], kept[0] + len(kept)))
            cut_from_front += kept[0] - first
            cut_from_back += (first + (len_a if first == 0 else len_b)) - (kept[-1] + 1)
    assert abs(cut_from_front / (cut_from_front + cut_from_back) - 0.5) < 0.03


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [(dict(max_seq_length=4), "max_seq_length"), (dict(short_seq_prob=1.5), "short_seq_prob")],
)
def test_bad_arguments_name_the_field(kwargs, field):
    args = dict(max_seq_length=128, short_seq_prob=0.1) | kwargs
    documents = [[[10, 11, 12]], [[20, 21]]]
    for create in (create_nsp_instances, create_sop_instances):
        with pytest.raises(ConfigError, match=field):
            create(
                documents,
                0,
                args["max_seq_length"],
                args["short_seq_prob"],
                np.random.default_rng(0),
                CLS,
                SEP,
            )


# ---------------------------------------------------------------------------------------------------------
# SOP


def test_sop_instances_are_ordered_or_swapped_halves_of_one_document():
    documents, starts = make_corpus(np.random.default_rng(7), n_docs=200)
    documents[0] = [BASE + np.arange(7)]  # a one-sentence document still gives an instance
    rng = np.random.default_rng(8)
    instances = [
        (d, instance)
        for _ in range(3)
        for d in range(len(documents))
        for instance in create_sop_instances(documents, d, 128, 0.1, rng, CLS, SEP)
    ]
    swapped = np.array([instance.is_random_next for _, instance in instances])
    assert abs(swapped.mean() - 0.5) < 0.03
    assert any(d == 0 for d, _ in instances)
    for d, instance in instances:
        a, b = split_pair(instance, 128)
        first, second = (b, a) if instance.is_random_next else (a, b)
        doc_1, _, last_1 = check_contiguous(first)
        doc_2, first_2, _ = check_contiguous(second)
        assert doc_1 == doc_2 == d and first_2 > last_1
        if len(instance.tokens) < 128:  # not truncated: the halves meet
            assert first_2 == last_1 + 1


# ---------------------------------------------------------------------------------------------------------
# Full sentences (RoBERTa)


def test_doc_sentences_pack_whole_sentences_of_one_document():
    documents, starts = make_corpus(np.random.default_rng(9), n_docs=50)
    documents[3] = [BASE + 3 * STRIDE + np.arange(300)]  # longer than max_seq_length: split, not dropped
    starts[3] = {0, 126, 252, 300}
    for d, document in enumerate(documents):
        instances = create_full_sentence_instances(documents, d, 128, CLS, SEP)
        content = []
        for instance in instances:
            tokens = instance.tokens
            assert len(tokens) <= 128 and tokens[0] == CLS and tokens[-1] == SEP
            assert (instance.token_type_ids == 0).all() and not instance.is_random_next
            inner = tokens[1:-1]
            doc, first, last = check_contiguous(inner)
            assert doc == d and first in starts[d] and last + 1 in starts[d]
            content.append(inner)
        assert (np.concatenate(content) == np.concatenate(document)).all()  # every token, once, in order
        for instance, following in zip(instances[:-1], instances[1:], strict=True):
            start = where(following.tokens[1])[1]  # greedy: the next sentence did not fit
            end = min(s for s in starts[d] if s > start)
            assert len(instance.tokens) - 2 + end - start > 126
    assert len(create_full_sentence_instances(documents, 3, 128, CLS, SEP)) == 3


def test_full_sentences_cross_document_boundaries():
    rng = np.random.default_rng(10)
    documents, starts = make_corpus(rng, n_docs=30, sentences=(3, 10), lengths=(2, 10))
    for d in range(len(documents)):
        instances = create_full_sentence_instances(documents, d, 64, CLS, SEP, cross_documents=True)
        assert all(len(instance.tokens) <= 64 for instance in instances)
        last = instances[-1].tokens
        assert last[0] == CLS and last[-1] == SEP
        parts = np.split(last[1:-1], np.flatnonzero(last[1:-1] == SEP))
        parts = [parts[0]] + [part[1:] for part in parts[1:]]  # drop the boundary [SEP]s
        docs = [check_contiguous(part)[0] for part in parts]
        assert docs == [(d + k) % len(documents) for k in range(len(parts))]
        for part in parts[1:]:
            assert check_contiguous(part)[1] == 0  # a following document is read from its start
        # The top-up stops only when the next whole sentence (after a boundary [SEP]) would not fit.
        doc, _, last_position = check_contiguous(parts[-1])
        rest = [s for s in sorted(starts[doc]) if s > last_position]
        if len(rest) >= 2:
            needed = rest[1] - rest[0]
        else:
            following = documents[(doc + 1) % len(documents)]
            needed = 1 + len(following[0])
        assert len(last) + needed > 64


def test_an_instance_builders_named_fields_reach_the_batches(monkeypatch):
    """A builder may give each instance fields (ERNIE 2.0's task id): a 0-d value per sequence, a (T,) array per
    token. They are padded, shuffled and batched beside their rows."""
    import itertools

    from bertkit.pretrain import dataset
    from bertkit.pretrain.dataset import PretrainingData, Vocab

    def tagged(docs, d, L, short, rng, cls, sep):
        instances = create_sop_instances(docs, d, L, short, rng, cls, sep)
        for inst in instances:
            inst.fields = {"task_ids": np.int64(d % 3), "n": np.int64(len(inst.tokens)), "original": inst.tokens.copy()}
        return instances

    monkeypatch.setitem(dataset.INSTANCE_BUILDERS, "tagged", tagged)
    documents, _ = make_corpus(np.random.default_rng(0), n_docs=30, sentences=(2, 8), lengths=(2, 9))
    documents = [[s % 90 + 5 for s in doc] for doc in documents]  # ids below the vocabulary's size

    class Docs:
        def __len__(self):
            return len(documents)

        def document(self, i):
            return documents[i]

    vocab = Vocab(size=100, pad_id=0, cls_id=CLS, sep_id=SEP, mask_id=4, special_ids=(0, CLS, SEP, 3, 4))
    data = PretrainingData(Docs(), vocab, np.arange(30), max_seq_length=32, objective="tagged", chunk_tokens=200)
    for _, _, batch in itertools.islice(data.batches(4), 30):
        assert batch["task_ids"].shape == (4,) and set(batch["task_ids"].tolist()) <= {0, 1, 2}
        assert torch.equal(batch["n"], batch["attention_mask"].sum(1))  # each value beside its own row
        assert batch["original"].shape == batch["input_ids"].shape  # cut to the batch's length
        chosen = batch["labels"] != -100
        real = batch["attention_mask"].bool()
        assert torch.equal(batch["original"][~chosen & real], batch["input_ids"][~chosen & real])  # its own row
        assert torch.equal(batch["original"][chosen], batch["labels"][chosen])
        assert not batch["original"][~real].any()  # padded with 0
