"""Examples -> model inputs: ids, segment ids and labels per window (`Encoded`), collated into padded batches.

Batches are grouped by length (`length_grouped_batches`), so little of each batch is padding.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from bertkit.errors import BertkitError
from bertkit.finetune.model import TaskModel
from bertkit.finetune.readers import ChoiceExample, QAExample, TextExample
from bertkit.finetune.windows import (
    Context,
    Pieces,
    answer_pieces,
    owners,
    windows,
    word_pieces,
)


# ------------------------------------------------------------------------------------------------ features
@dataclass
class Encoded:
    """A split turned into model inputs. Tagging and QA examples may become several windows each."""

    features: list[dict]  # input_ids, token_type_ids, and what the loss reads (see `collate`)
    pieces: list[Pieces] | None = None  # tagging: per example
    wins: list[list[tuple[int, int]]] | None = None  # tagging: per example, windows over its pieces
    gold: list | None = None  # label names, numbers, tag lists, answer texts or choice indices; None: unlabelled
    truncated: int = 0  # inputs cut to max_seq_length; QA: answers that fit in no window
    contexts: list[Context] | None = None  # QA: per example


def encode_texts(
    tokenizer,
    examples: list[TextExample],
    labels: list[str],
    max_len: int,
    regression: bool = False,
    both_orders: bool = False,
) -> Encoded:
    """[CLS] text [SEP] (or [CLS] A [SEP] B [SEP]), truncated longest-first to `max_len`. Regression labels
    are the numbers themselves. `both_orders`: a pair is encoded as A-B and as B-A, the two sequences side by
    side as a multiple-choice question's (`collate_choices`), and the model adds their logits."""
    if both_orders:
        return _both_orders(tokenizer, examples, labels, max_len, regression)
    label2id = {name: i for i, name in enumerate(labels)}
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair or "" for ex in examples] if any(ex.text_pair for ex in examples) else None
    if not texts:
        return Encoded([], gold=[])
    full = tokenizer(texts, pairs, padding=False, return_tensors=None)["input_ids"]
    enc = tokenizer(texts, pairs, max_length=max_len, padding=False, return_tensors=None)
    features = []
    for ids, types, ex in zip(enc["input_ids"], enc["token_type_ids"], examples, strict=True):
        if regression:
            label = float(ex.label) if ex.label is not None else math.nan
        else:
            label = label2id.get(ex.label, -100)
        features.append({"input_ids": ids, "token_type_ids": types, "label": label})
    gold = None
    if all(ex.label is not None for ex in examples):
        gold = [float(ex.label) if regression else ex.label for ex in examples]
    return Encoded(features, gold=gold, truncated=sum(len(x) > max_len for x in full))


def encode_tags(
    tokenizer, pieces: list[Pieces], tags: list[list[str]] | None, labels: list[str], max_len: int, stride: int
) -> Encoded:
    """Windows of at most `max_len - 2` pieces, each [CLS] pieces [SEP]. A word's tag is the label of its first
    piece in the window that owns that piece (see windows.py); every other position is -100."""
    label2id = {name: i for i, name in enumerate(labels)}
    size = max_len - 2
    features, all_wins = [], []
    for i, pc in enumerate(pieces):
        n = len(pc.ids)
        wins = windows(n, size, min(stride, size))
        own = owners(n, wins)
        first = pc.first_piece
        for w, (s, e) in enumerate(wins):
            labels_w = [-100] * (e - s)
            if tags is not None:
                for p in range(s, e):
                    word = pc.word_of[p]
                    if first[word] == p and own[p] == w:
                        labels_w[p - s] = label2id[tags[i][word]]
            owned = [p for p in range(s, e) if own[p] == w]
            features.append(
                {
                    "input_ids": [tokenizer.cls_token_id, *pc.ids[s:e], tokenizer.sep_token_id],
                    "token_type_ids": [0] * (e - s + 2),
                    "labels": [-100, *labels_w, -100],
                    "example": i,
                    # does the window's labelled stretch begin / end where the sentence does? (crf.py)
                    "crf_start": int(not owned or owned[0] == 0),
                    "crf_end": int(not owned or owned[-1] == n - 1),
                }
            )
        all_wins.append(wins)
    return Encoded(features, pieces, all_wins, gold=tags)


def encode_qa(tokenizer, examples: list[QAExample], max_len: int, stride: int | None, max_query_length: int) -> Encoded:
    """[CLS] question [SEP] context window [SEP] for every window of each context: the question keeps its
    first `max_query_length` pieces, the windows take the rest of `max_len` and start `stride` pieces apart
    (default: half a window). The target is the first gold answer's first and last piece in a window that
    holds all of it, else [CLS] (position 0), as for an unanswerable question."""
    contexts: list[Context] = []
    if not examples:
        return Encoded([], gold=[], contexts=contexts)
    questions = tokenizer.encode_batch([ex.question for ex in examples], add_special_tokens=False)
    passages = tokenizer.encode_batch([ex.context for ex in examples], add_special_tokens=False)
    features, missed = [], 0
    for i, (ex, q, c) in enumerate(zip(examples, questions, passages, strict=True)):
        q_ids = q.ids[:max_query_length]
        size = max_len - len(q_ids) - 3
        if size < 1:
            raise BertkitError(
                f"--max-seq-length {max_len} leaves no room for a context after a question of {len(q_ids)} "
                "pieces; raise it or lower --max-query-length"
            )
        wins = windows(len(c.ids), size, min(stride or max(1, size // 2), size))
        ctx = Context(ex.context, c.ids, [tuple(o) for o in c.offsets], wins)
        target = None
        if ex.answers:
            text, start = ex.answers[0]
            target = answer_pieces(ctx.offsets, start, start + len(text))
            if target is None:
                raise BertkitError(f"{ex.source}: answer {text!r} is only characters the tokenizer drops")
        offset = len(q_ids) + 2  # where the context starts in each window's sequence
        found = False
        for s, e in wins:
            start_position = end_position = 0
            if target is not None and s <= target[0] and target[1] < e:
                start_position, end_position, found = offset + target[0] - s, offset + target[1] - s, True
            features.append(
                {
                    "input_ids": [tokenizer.cls_token_id, *q_ids, tokenizer.sep_token_id, *c.ids[s:e]]
                    + [tokenizer.sep_token_id],
                    "token_type_ids": [0] * offset + [1] * (e - s + 1),
                    "start_position": start_position,
                    "end_position": end_position,
                    "example": i,
                    "offset": offset,
                }
            )
        missed += target is not None and not found
        contexts.append(ctx)
    return Encoded(features, gold=[ex.answer_texts for ex in examples], truncated=missed, contexts=contexts)


def encode_choices(tokenizer, examples: list[ChoiceExample], max_len: int) -> Encoded:
    """Each choice as the pair [CLS] context [SEP] question choice [SEP] (question and choice joined by a
    space, as the SWAG and RACE set-ups), truncated longest-first to `max_len`."""
    firsts, seconds = [], []
    for ex in examples:
        for choice in ex.choices:
            firsts.append(ex.context)
            seconds.append(f"{ex.question} {choice}" if ex.question.strip() else choice)
    if not firsts:
        return Encoded([], gold=[])
    full = tokenizer(firsts, seconds, padding=False, return_tensors=None)["input_ids"]
    enc = tokenizer(firsts, seconds, max_length=max_len, padding=False, return_tensors=None)
    features, k = [], 0
    for ex in examples:
        choices = [
            {"input_ids": enc["input_ids"][c], "token_type_ids": enc["token_type_ids"][c]}
            for c in range(k, k + len(ex.choices))
        ]
        features.append({"choices": choices, "label": -100 if ex.label is None else ex.label})
        k += len(ex.choices)
    gold = [ex.label for ex in examples] if all(ex.label is not None for ex in examples) else None
    return Encoded(features, gold=gold, truncated=sum(len(x) > max_len for x in full))


def _both_orders(tokenizer, examples: list[TextExample], labels: list[str], max_len: int, regression: bool) -> Encoded:
    if any(not ex.text_pair for ex in examples):
        raise BertkitError("the model reads pairs both ways (pair_orders: both); every example needs a second text")
    swapped = [TextExample(ex.text_pair, ex.label, ex.text) for ex in examples]
    ab = encode_texts(tokenizer, examples, labels, max_len, regression)
    ba = encode_texts(tokenizer, swapped, labels, max_len, regression)
    features = [{"choices": [f, g], "label": f["label"]} for f, g in zip(ab.features, ba.features, strict=True)]
    return Encoded(features, gold=ab.gold, truncated=ab.truncated)


def encode_split(
    model: TaskModel, tokenizer, examples: list, max_len: int, stride: int | None, max_query_length: int = 64
) -> Encoded:
    if model.kind in ("classification", "regression"):
        both = model.encoder.config.pair_orders == "both"
        return encode_texts(tokenizer, examples, model.labels, max_len, model.kind == "regression", both)
    if model.kind == "qa":
        return encode_qa(tokenizer, examples, max_len, stride, max_query_length)
    if model.kind == "multiple_choice":
        return encode_choices(tokenizer, examples, max_len)
    pieces = word_pieces(tokenizer, [ex.words for ex in examples])
    tags = [ex.tags for ex in examples] if examples and all(ex.tags is not None for ex in examples) else None
    return encode_tags(tokenizer, pieces, tags, model.labels, max_len, stride or max(1, (max_len - 2) // 2))


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest in the batch: input_ids, token_type_ids, attention_mask (B, T), and the targets:
    labels (B, T) for tagging, start_positions and end_positions (B,) for QA, else labels (B,) (float for
    regression). Multiple choice: see `collate_choices`."""
    if "choices" in features[0]:
        return collate_choices(features, pad_id)
    T = max(len(f["input_ids"]) for f in features)
    batch = {
        "input_ids": [f["input_ids"] + [pad_id] * (T - len(f["input_ids"])) for f in features],
        "token_type_ids": [f["token_type_ids"] + [0] * (T - len(f["token_type_ids"])) for f in features],
        "attention_mask": [[1] * len(f["input_ids"]) + [0] * (T - len(f["input_ids"])) for f in features],
    }
    if "labels" in features[0]:
        batch["labels"] = [f["labels"] + [-100] * (T - len(f["labels"])) for f in features]
        if "crf_start" in features[0]:
            batch["crf_start"] = [f["crf_start"] for f in features]
            batch["crf_end"] = [f["crf_end"] for f in features]
    elif "start_position" in features[0]:
        batch["start_positions"] = [f["start_position"] for f in features]
        batch["end_positions"] = [f["end_position"] for f in features]
    out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
    if "label" in features[0]:
        labels = [f["label"] for f in features]
        out["labels"] = torch.tensor(labels, dtype=torch.float if isinstance(labels[0], float) else torch.long)
    return out


def collate_choices(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """(B, K, T) inputs for K, the most choices of any question in the batch, labels (B,) and choice_mask
    (B, K). A question with fewer choices repeats its first in the empty slots, masked out of the softmax:
    a real sequence, where an all-padding one would leave attention nothing to attend to."""
    K = max(len(f["choices"]) for f in features)
    T = max(len(c["input_ids"]) for f in features for c in f["choices"])
    ids, types, mask = [], [], []
    for f in features:
        choices = f["choices"] + [f["choices"][0]] * (K - len(f["choices"]))
        ids.append([c["input_ids"] + [pad_id] * (T - len(c["input_ids"])) for c in choices])
        types.append([c["token_type_ids"] + [0] * (T - len(c["token_type_ids"])) for c in choices])
        mask.append([[1] * len(c["input_ids"]) + [0] * (T - len(c["input_ids"])) for c in choices])
    return {
        "input_ids": torch.tensor(ids),
        "token_type_ids": torch.tensor(types),
        "attention_mask": torch.tensor(mask),
        "labels": torch.tensor([f["label"] for f in features]),
        "choice_mask": torch.tensor([[k < len(f["choices"]) for k in range(K)] for f in features]),
    }


def feature_length(f: dict) -> int:
    return max(len(c["input_ids"]) for c in f["choices"]) if "choices" in f else len(f["input_ids"])


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: shuffle, sort within chunks of 50 batches, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = 50 * batch_size
    batches = []
    for c in range(0, len(order), chunk):
        part = sorted(order[c : c + chunk], key=lambda i: lengths[i])
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches
