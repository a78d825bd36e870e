"""Scoring and predicting with a task model: logits over windows recombined, tags decoded (Viterbi with a
CRF), QA answers read from start / end logits, metrics per kind of task, and predictions for raw texts with
character offsets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import BertkitError
from bertkit.finetune.features import (
    Encoded,
    collate,
    encode_choices,
    encode_qa,
    encode_tags,
    encode_texts,
    feature_length,
)
from bertkit.finetune.metrics import (
    accuracy,
    best_null_threshold,
    bio_spans,
    bmes_words,
    entity_scores,
    macro_f1,
    pearson,
    spearman,
    squad_em,
    squad_f1,
    word_scores,
)
from bertkit.finetune.model import TaskModel
from bertkit.finetune.readers import ChoiceExample, QAExample, TagExample, TextExample, parse_float
from bertkit.finetune.tasks import check_labels
from bertkit.finetune.windows import (
    Pieces,
    QAOptions,
    char_span,
    qa_answer,
    recombine,
    text_pieces,
)
from bertkit.training import all_gather_lists, distributed


# ------------------------------------------------------------------------------------------- predicting
@torch.no_grad()
def predict_logits(model: TaskModel, features: list[dict], pad_id: int, batch_size: int = 64, bf16: bool = False):
    """Logits per feature in input order: (C,) for classification and regression, (len - 2, C) without
    [CLS]/[SEP] for tagging, (len, 2) start and end for QA ([CLS], at 0, gives the null score), (K,) for K
    choices."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: feature_length(features[i]))
    out: list[torch.Tensor | None] = [None] * len(features)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        batch = collate([features[i] for i in idx], pad_id)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(
                batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["token_type_ids"].to(device)
            ).float()
        for row, i in enumerate(idx):
            f = features[i]
            if model.kind == "tagging":
                out[i] = logits[row, 1 : len(f["input_ids"]) - 1]
            elif model.kind == "qa":
                out[i] = logits[row, : len(f["input_ids"])]
            elif model.kind == "multiple_choice":
                out[i] = logits[row, : len(f["choices"])]
            else:
                out[i] = logits[row]
    model.train(was_training)
    return [x.cpu() for x in out]


def word_logits(enc: Encoded, logits: list[torch.Tensor], default: int) -> list[torch.Tensor]:
    """Per example, (n_words, C) logits read at each word's first piece, windows recombined. A word without
    a piece gets logits that pick label `default` ("O" for BIO, "S" for BMES)."""
    by_example: list[list[torch.Tensor]] = [[] for _ in enc.pieces]
    for f, lg in zip(enc.features, logits, strict=True):
        by_example[f["example"]].append(lg)
    out = []
    for pc, wins, lgs in zip(enc.pieces, enc.wins, by_example, strict=True):
        piece_logits = recombine(lgs, wins, len(pc.ids))  # (n_pieces, C)
        words = torch.full((len(pc.spans), lgs[0].shape[-1]), -1e4)
        words[:, default] = 0.0
        for w, p in enumerate(pc.first_piece):
            if p is not None:
                words[w] = piece_logits[p]
        out.append(words)
    return out


def _default_tag(model: TaskModel) -> int:
    return model.labels.index({"bmes": "S", "bio": "O"}[model.scheme]) if model.scheme else 0


def _padded(per_word: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, C) emissions and their (B, N) mask from per-example (n_i, C) word logits."""
    emissions = nn.utils.rnn.pad_sequence(per_word, batch_first=True)
    lengths = torch.tensor([len(w) for w in per_word])
    return emissions, torch.arange(emissions.shape[1]) < lengths[:, None]


def decode_tags(model: TaskModel, per_word: list[torch.Tensor]) -> list[list[int]]:
    """Tag ids per word: the CRF's best sequence (Viterbi) when the model has one, else each word's argmax."""
    if model.crf is None or not any(len(w) for w in per_word):
        return [w.argmax(-1).tolist() for w in per_word]
    return model.crf.decode(*_padded(per_word))


def qa_answers(enc: Encoded, logits: list[torch.Tensor], opts: QAOptions) -> list[dict]:
    """Per question, `tasks.qa_answer` over its windows' logits (its features come in window order)."""
    by_example: list[list[torch.Tensor]] = [[] for _ in enc.contexts]
    nulls: list[list[float]] = [[] for _ in enc.contexts]
    for f, lg in zip(enc.features, logits, strict=True):
        by_example[f["example"]].append(lg[f["offset"] : len(f["input_ids"]) - 1])  # the window's context pieces
        nulls[f["example"]].append(float(lg[0, 0] + lg[0, 1]))
    return [qa_answer(c, lgs, n, opts) for c, lgs, n in zip(enc.contexts, by_example, nulls, strict=True)]


def evaluate(
    model: TaskModel,
    enc: Encoded,
    pad_id: int,
    batch_size: int = 64,
    bf16: bool = False,
    qa: QAOptions | None = None,
    shared: bool = False,
    keep_predictions: bool = False,
) -> dict:
    """Loss and the task's metrics on an encoded, labelled split. Under torchrun each rank scores a contiguous
    slice of the features and the logits are gathered in order, so every rank gets the same metrics — when
    `shared` says every rank calls this (the fine-tuning loop does). `keep_predictions`: a classification
    or tagging result also holds "predictions", each example's label or tags in order (for `write_predictions`)."""
    rank, world = distributed() if shared else (0, 1)
    if world == 1:
        logits = predict_logits(model, enc.features, pad_id, batch_size, bf16)
    else:
        n = len(enc.features)
        mine = enc.features[rank * n // world : (rank + 1) * n // world]
        logits = all_gather_lists(predict_logits(model, mine, pad_id, batch_size, bf16), world)
    labels = model.labels
    if model.kind == "classification":
        stacked = torch.stack(logits)  # (N, C)
        gold_ids = torch.tensor([f["label"] for f in enc.features])
        pred = [labels[i] for i in stacked.argmax(-1).tolist()]
        return {
            "loss": float(F.cross_entropy(stacked, gold_ids)),
            "accuracy": accuracy(enc.gold, pred),
            "macro_f1": macro_f1(enc.gold, pred),
            "examples": len(pred),
        } | ({"predictions": pred} if keep_predictions else {})
    if model.kind == "regression":
        values = torch.stack(logits)[:, 0].tolist()
        mse = sum((v - g) ** 2 for v, g in zip(values, enc.gold, strict=True)) / max(1, len(values))
        return {
            "loss": mse,
            "mse": mse,
            "pearson": pearson(enc.gold, values),
            "spearman": spearman(enc.gold, values),
            "examples": len(values),
        }
    if model.kind == "multiple_choice":
        losses = [float(F.cross_entropy(lg, torch.tensor(g))) for lg, g in zip(logits, enc.gold, strict=True)]
        pred = [int(lg.argmax()) for lg in logits]
        return {"loss": _mean(losses), "accuracy": accuracy(enc.gold, pred), "examples": len(pred)}
    if model.kind == "qa":
        return evaluate_qa(enc, logits, qa or QAOptions())
    per_word = word_logits(enc, logits, _default_tag(model))
    label2id = {t: i for i, t in enumerate(labels)}
    gold_ids = [torch.tensor([label2id[t] for t in tags]) for tags in enc.gold]
    if model.crf is None:
        loss = float(F.cross_entropy(torch.cat(per_word), torch.cat(gold_ids)))
    else:  # the CRF's negative log-likelihood per word
        emissions, mask = _padded(per_word)
        tags = nn.utils.rnn.pad_sequence(gold_ids, batch_first=True)
        with torch.no_grad():
            loss = float(model.crf.nll(emissions, tags, mask).sum()) / max(1, int(mask.sum()))
    pred = [[labels[i] for i in ids] for ids in decode_tags(model, per_word)]
    result = {
        "loss": loss,
        "tag_accuracy": accuracy([t for g in enc.gold for t in g], [t for p in pred for t in p]),
    }
    if model.scheme == "bio":
        result |= entity_scores(enc.gold, pred)
    elif model.scheme == "bmes":
        result |= word_scores(enc.gold, pred)
    return result | {"examples": len(pred)} | ({"predictions": pred} if keep_predictions else {})


def evaluate_qa(enc: Encoded, logits: list[torch.Tensor], opts: QAOptions) -> dict:
    """SQuAD exact match and F1 (CMRC 2018's for Chinese answers), each in [0, 1], and the mean start / end
    cross-entropy over the windows. With unanswerable questions (SQuAD 2.0) also the F1 on the answerable
    ones, the share of unanswerable ones left unanswered, and the null threshold that would have been best."""
    answers = qa_answers(enc, logits, opts)
    loss = sum(
        float(F.cross_entropy(lg.T, torch.tensor([f["start_position"], f["end_position"]]), reduction="sum"))
        for f, lg in zip(enc.features, logits, strict=True)
    ) / max(1, 2 * len(logits))
    em = [squad_em(a["text"], g) for a, g in zip(answers, enc.gold, strict=True)]
    f1 = [squad_f1(a["text"], g) for a, g in zip(answers, enc.gold, strict=True)]
    result = {"loss": loss, "exact_match": _mean(em), "f1": _mean(f1)}
    answerable = [g != [""] for g in enc.gold]
    if not all(answerable):
        best_spans = [a["n_best"][0]["text"] if a["n_best"] else "" for a in answers]
        span_f1 = [squad_f1(text, g) for text, g in zip(best_spans, enc.gold, strict=True)]
        threshold, best = best_null_threshold(
            [a["null_score"] - a["score"] for a in answers], span_f1, [float(not h) for h in answerable]
        )
        result |= {
            "has_answer_f1": _mean([x for x, h in zip(f1, answerable, strict=True) if h]),
            "no_answer_accuracy": _mean([x for x, h in zip(em, answerable, strict=True) if not h]),
            "null_threshold": opts.null_threshold,
            "best_null_threshold": threshold,
            "best_f1": best,
        }
    return result | {"examples": len(answers)}


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


MAIN_METRICS = {
    "classification": "accuracy",
    "regression": "pearson",
    "tagging": "f1",
    "qa": "f1",
    "multiple_choice": "accuracy",
}


def main_metric(kind: str) -> str:
    return MAIN_METRICS[kind]


# A classification or tagging run's test predictions, beside its summary.json (fine-tuning and baseline alike),
# so that two runs scored on the same test split can be compared example by example (`bertkit compare`).
PREDICTIONS_FILE = "test_predictions.jsonl"


def write_predictions(folder: str | Path, gold: list, predicted: list) -> Path:
    """One JSON line per test example, in the split's order: {"gold": ..., "predicted": ...} (a label, or a
    list of tags); written whole or not at all (a temporary file, then renamed)."""
    from bertkit.config import atomic_write_text

    lines = (json.dumps({"gold": g, "predicted": p}, ensure_ascii=False) for g, p in zip(gold, predicted, strict=True))
    path = Path(folder) / PREDICTIONS_FILE
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


def read_predictions(path: str | Path) -> tuple[list, list]:
    """(gold, predicted) from a file `write_predictions` wrote; a damaged line is an error naming it. Every line
    holds the same kind: two labels (classification) or two tag lists of one length (tagging)."""
    gold, predicted, kinds = [], [], []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BertkitError(
                    f"{path}, line {number}: not UTF-8 text; give a {PREDICTIONS_FILE} that finetune or baseline wrote"
                ) from None
            if not line.strip():
                continue
            g, p, kind = _prediction_line(path, number, line)
            if kinds and kind != kinds[0]:
                raise BertkitError(
                    f"{path}, line {number}: {PREDICTION_KINDS[kind]}, but line 1 has {PREDICTION_KINDS[kinds[0]]}"
                )
            gold.append(g)
            predicted.append(p)
            kinds.append(kind)
    if not gold:
        raise BertkitError(
            f"{path}: empty file (no prediction lines); give a {PREDICTIONS_FILE} that finetune or baseline wrote"
        )
    return gold, predicted


PREDICTION_KINDS = {"classification": "a label per example", "tagging": "a list of tags per example"}


def _prediction_line(path: str | Path, number: int, line: str) -> tuple[object, object, str]:
    """(gold, predicted, kind) of one line: labels are strings (or numbers), tags lists of strings."""
    want = 'want {"gold": ..., "predicted": ...}, each a label or a list of tags'
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise BertkitError(f"{path}, line {number}: not a prediction line: not JSON ({want})") from None
    if not isinstance(row, dict) or "gold" not in row or "predicted" not in row:
        raise BertkitError(f"{path}, line {number}: not a prediction line ({want})")
    g, p = row["gold"], row["predicted"]

    def is_label(x):
        return isinstance(x, (str, int)) and not isinstance(x, bool)

    def is_tags(x):
        return isinstance(x, list) and all(isinstance(t, str) for t in x)

    if is_label(g) and is_label(p):
        return g, p, "classification"
    if is_tags(g) and is_tags(p):
        if len(g) != len(p):
            raise BertkitError(f"{path}, line {number}: {len(g)} gold tags but {len(p)} predicted; one tag per word")
        return g, p, "tagging"
    raise BertkitError(f"{path}, line {number}: not a prediction line ({want}, both of one kind)")


def prediction_kind(gold: list) -> str:
    """What a file `read_predictions` read holds: "classification" (labels) or "tagging" (tag lists)."""
    return "tagging" if isinstance(gold[0], list) else "classification"


def predict_texts(
    model: TaskModel,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
    stride: int | None = None,
) -> list[dict]:
    """One record per text. Classification: label, score and every label's probability. Regression: the
    value. Tagging: the entities (BIO) or words (BMES) with character offsets into the text, else one tag
    per word; with a CRF the tags are its best sequence, each scored by its token's probability."""
    if model.kind in ("qa", "multiple_choice"):
        raise BertkitError(f"a {model.kind} model answers questions: use predict_qa / predict_choices")
    max_len = max_length_for(model, tokenizer, max_seq_length, pairs is not None)
    labels = model.labels
    if model.kind in ("classification", "regression"):
        examples = [TextExample(t, None, p) for t, p in zip(texts, pairs or [None] * len(texts), strict=True)]
        enc = encode_texts(tokenizer, examples, labels, max_len, model.kind == "regression")
        logits = torch.stack(predict_logits(model, enc.features, tokenizer.pad_token_id, batch_size))
        if model.kind == "regression":
            return [{"text": t, "value": round(float(v), 6)} for t, v in zip(texts, logits[:, 0], strict=True)]
        probs = logits.softmax(-1)
        return [
            {
                "text": t,
                "label": labels[int(p.argmax())],
                "score": round(float(p.max()), 6),
                "scores": {name: round(float(x), 6) for name, x in zip(labels, p, strict=True)},
            }
            for t, p in zip(texts, probs, strict=True)
        ]
    pieces = text_pieces(tokenizer, texts)
    stride = check_stride(stride, max_len) or max(1, (max_len - 2) // 2)  # a window of one piece moves by one
    enc = encode_tags(tokenizer, pieces, None, labels, max_len, stride)
    logits = predict_logits(model, enc.features, tokenizer.pad_token_id, batch_size)
    per_word = word_logits(enc, logits, _default_tag(model))
    records = []
    for text, pc, lg, ids in zip(texts, pieces, per_word, decode_tags(model, per_word), strict=True):
        tags = [labels[i] for i in ids]
        scores = lg.softmax(-1)[torch.arange(len(ids)), torch.tensor(ids, dtype=torch.long)].tolist()
        rec: dict = {"text": text}
        if model.scheme == "bio":
            rec["entities"] = [{"type": etype, **_span(text, pc, a, b, scores)} for etype, a, b in bio_spans(tags)]
        elif model.scheme == "bmes":
            rec["words"] = [_span(text, pc, a, b, scores) for a, b in bmes_words(tags)]
        else:
            rec["tags"] = [_span(text, pc, w, w + 1, scores) | {"tag": t} for w, t in enumerate(tags)]
        records.append(rec)
    return records


def _span(text: str, pc: Pieces, a: int, b: int, scores: list[float]) -> dict:
    """Words a..b-1 as a character span of `text`, with the mean probability of their tags."""
    start, end = char_span(pc, a, b)
    return {"text": text[start:end], "start": start, "end": end, "score": round(sum(scores[a:b]) / (b - a), 6)}


def predict_qa(
    model: TaskModel,
    tokenizer,
    examples: list[QAExample],
    max_seq_length: int | None = None,
    batch_size: int = 64,
    stride: int | None = None,
    max_query_length: int = 64,
    opts: QAOptions | None = None,
) -> list[dict]:
    """One record per question: its id, the answer text and its character start and end in the context
    (null and "" for no answer), and the answer's probability among the n best (see tasks.qa_answer)."""
    max_len = max_length_for(model, tokenizer, max_seq_length)
    enc = encode_qa(tokenizer, examples, max_len, check_stride(stride, max_len), max_query_length)
    logits = predict_logits(model, enc.features, tokenizer.pad_token_id, batch_size)
    return [
        {
            "id": ex.id,
            "question": ex.question,
            "answer": a["text"],
            "start": a["start"],
            "end": a["end"],
            "score": None if a["probability"] is None else round(a["probability"], 6),
        }
        for ex, a in zip(examples, qa_answers(enc, logits, opts or QAOptions()), strict=True)
    ]


def predict_choices(
    model: TaskModel, tokenizer, examples: list[ChoiceExample], max_seq_length: int | None = None, batch_size: int = 64
) -> list[dict]:
    """One record per question: the index of the chosen answer, its text, and every choice's probability."""
    max_len = max_length_for(model, tokenizer, max_seq_length)
    enc = encode_choices(tokenizer, examples, max_len)
    records = []
    for ex, lg in zip(examples, predict_logits(model, enc.features, tokenizer.pad_token_id, batch_size), strict=True):
        probs = lg.softmax(-1)
        best = int(probs.argmax())
        records.append(
            {
                "question": ex.question,
                "label": best,
                "choice": ex.choices[best],
                "score": round(float(probs[best]), 6),
                "scores": [round(float(p), 6) for p in probs],
            }
        )
    return records


def max_length_for(model: TaskModel, tokenizer, max_seq_length: int | None, pairs: bool = False) -> int:
    """`max_seq_length`, or else the length the model was fine-tuned with (tokenizer_config.json's
    model_max_length), never more than its position embeddings. `pairs`: the inputs are text pairs (a multiple
    choice always is), which need room for a token of each text."""
    limit = model.encoder.config.max_length
    if max_seq_length is not None:
        pairs = pairs or model.kind == "multiple_choice"
        tokenizer.check_max_length(max_seq_length, pairs, f"--max-seq-length {max_seq_length}")
    max_len = max_seq_length or min(tokenizer.model_max_length, limit)
    if max_len > limit:
        raise BertkitError(f"--max-seq-length {max_len} is more than the model's max_position_embeddings ({limit})")
    return max_len


def check_stride(stride: int | None, max_len: int) -> int | None:
    if stride is not None and not 1 <= stride <= max_len - 2:
        raise BertkitError(f"--stride must be in 1..{max_len - 2} (a window of {max_len} tokens), got {stride}")
    return stride


# What each kind of model does, and what each kind of example holds, for `check_examples`' messages.
MODEL_DOES = {
    "classification": "classifies texts",
    "regression": "scores texts with a number",
    "tagging": "tags words",
    "qa": "answers questions from a context",
    "multiple_choice": "picks one of several choices",
}
EXAMPLE_KINDS = {
    "classification": (TextExample, "labelled texts"),
    "regression": (TextExample, "labelled texts"),
    "tagging": (TagExample, "tagged words"),
    "qa": (QAExample, "questions with answers in a context"),
    "multiple_choice": (ChoiceExample, "multiple-choice questions"),
}


def check_examples(model: TaskModel, examples: list, where: str) -> None:
    """Labelled evaluation data must be of the model's kind and use only the labels it was trained with."""
    if not examples:
        return
    kind, has = next((k, name) for k, (cls, name) in EXAMPLE_KINDS.items() if isinstance(examples[0], cls))
    if not isinstance(examples[0], EXAMPLE_KINDS[model.kind][0]):
        raise BertkitError(f"{where}: the model {MODEL_DOES[model.kind]} but the task has {has}")
    if model.kind == "regression":
        for ex in examples:
            if ex.label is not None and not math.isfinite(parse_float(ex.label)):
                raise BertkitError(f"{ex.source}: label {ex.label!r} is not a number, and the model predicts numbers")
    elif model.kind in ("classification", "tagging"):
        check_labels(examples, model.labels, where)
