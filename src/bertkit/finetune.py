"""Fine-tuning: one small head on the encoder, trained by a loop visible in one function, `finetune`.

The conventions are pretraining's (train.py): AdamW without weight decay on biases and LayerNorm, linear
warm-up then linear decay, gradient accumulation, bf16 autocast where the hardware has it, gradient clipping,
a JSONL metrics log, a PNG of the curves and a progress bar. What fine-tuning adds:
- evaluation on the dev set after every epoch; the best epoch's model is kept as a Hugging Face folder
  (`OUT/model`, loadable by `transformers`' AutoModelFor{SequenceClassification, TokenClassification,
  QuestionAnswering, MultipleChoice}), and training stops early after `patience` epochs without
  improvement; the test set is scored once, with the best model;
- optional layer-wise learning-rate decay (`layer_decay` < 1): the head trains at `lr`, the top layer at
  `lr * decay`, each lower layer one more factor down, the embeddings at `lr * decay**(L + 1)`;
- `finetune_seeds` runs the same fine-tuning with several seeds and reports the mean and the max, since
  small fine-tuning sets give results that vary from seed to seed;
- `random_init` trains the same architecture from random weights: the notes' control for pretraining.

Heads, each laid out as its `transformers` class so the folder loads there with identical outputs:
- classification and regression read the tanh pooler, as BertForSequenceClassification (a model folder
  without a pooler gets a fresh one); regression is one output trained with the squared error, and its
  config.json says `"problem_type": "regression"`, which is how transformers knows it too;
- tagging reads every token and drops the pooler, as BertForTokenClassification; with `crf` a linear-chain
  CRF (crf.py) scores whole tag sequences on top, saved beside the weights in `crf.safetensors`;
- QA reads a start and an end logit at every token, without a pooler, as BertForQuestionAnswering;
- multiple choice encodes each choice as its own pair and scores it from the pooler with Linear(H, 1), the
  scores of one question's choices going through one softmax, as BertForMultipleChoice.

Losses are sums over what they average (labelled tokens for tagging, examples or windows otherwise), divided
by that count over the whole optimizer step: with gradient accumulation, every example weighs the same,
whichever micro-batch it fell in, so `batch_size=8` and `batch_size=4, grad_accum=2` take the same steps.
Batches are grouped by length, so little of each batch is padding.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bertkit.config import BertConfig, atomic_write_text
from bertkit.crf import CRF, CRF_FILE, compact
from bertkit.errors import BertkitError, CheckpointError
from bertkit.hf import Checkpoint, check_vocab_fits, load_pretrained, save_pretrained
from bertkit.model import BertEncoder, ClassifierHead, init_weights, span_head
from bertkit.tasks import (
    BMES_LABELS,
    ChoiceExample,
    Context,
    Pieces,
    QAExample,
    QAOptions,
    TagExample,
    TaskData,
    TextExample,
    accuracy,
    answer_pieces,
    best_null_threshold,
    bio_spans,
    bmes_words,
    char_span,
    check_labels,
    entity_scores,
    macro_f1,
    owners,
    parse_float,
    pearson,
    qa_answer,
    recombine,
    spearman,
    squad_em,
    squad_f1,
    text_pieces,
    windows,
    word_pieces,
    word_scores,
)
from bertkit.train import bf16_supported, linear_schedule


@dataclass
class FinetuneConfig:
    out_dir: str
    epochs: int = 3
    batch_size: int = 32  # sequences (tagging and QA: windows; multiple choice: questions) per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5
    warmup: float = 0.1  # a fraction of all steps
    weight_decay: float = 0.01
    layer_decay: float = 1.0  # 1: every layer at `lr`
    max_grad_norm: float = 1.0
    max_seq_length: int = 128  # [CLS] and [SEP]s included
    stride: int | None = None  # tagging and QA windows start this many pieces apart; None: half a window
    crf: bool = False  # tagging: a CRF over the tags
    max_query_length: int = 64  # QA: question pieces kept
    qa: QAOptions = field(default_factory=QAOptions)  # QA: how answers are read (null_threshold None: see finetune)
    patience: int = 0  # stop after this many epochs without a better dev score; 0: never stop early
    dropout: float | None = None  # hidden and attention dropout while fine-tuning; None: the model's config
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "max_seq_length", "max_query_length", "log_every"):
            if getattr(self, name) < 1:
                raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise BertkitError(f"--lr must be positive, got {self.lr}")
        if not 0 < self.layer_decay <= 1:
            raise BertkitError(f"--layer-decay must be in (0, 1], got {self.layer_decay}")
        if self.max_seq_length < 3:
            raise BertkitError(f"--max-seq-length {self.max_seq_length} leaves no room beside [CLS] and [SEP]")
        if self.stride is not None and not 1 <= self.stride <= self.max_seq_length - 2:
            raise BertkitError(f"--stride must be in 1..{self.max_seq_length - 2} (the window), got {self.stride}")
        if self.patience < 0:
            raise BertkitError(f"--patience must be 0 (off) or more, got {self.patience}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise BertkitError(f"--dropout must be in [0, 1), got {self.dropout}")
        check_qa_options(self.qa)


def check_qa_options(opts: QAOptions) -> None:
    for name in ("max_answer_length", "n_best"):
        if getattr(opts, name) < 1:
            raise BertkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(opts, name)}")


# --------------------------------------------------------------------------------------------------- model

# The head's name in hf.py's map, by kind: it decides the tensor names and the architecture in config.json.
HEAD_NAMES = {
    "classification": "classifier",
    "regression": "classifier",
    "tagging": "token_classifier",
    "qa": "qa",
    "multiple_choice": "multiple_choice",
}


class TaskModel(nn.Module):
    """The encoder and one head. Logits: (B, C) from the pooled [CLS] (classification; C = 1 for regression),
    (B, T, C) for every token (tagging), (B, T, 2) start and end (QA), (B, K) for K choices, given as
    (B, K, T) inputs (multiple choice)."""

    def __init__(self, encoder: BertEncoder, head: nn.Module, kind: str, crf: CRF | None = None):
        super().__init__()
        self.encoder, self.head, self.kind, self.crf = encoder, head, kind, crf

    @property
    def labels(self) -> list[str]:
        return list(self.encoder.config.id2label.values())

    @property
    def scheme(self) -> str | None:
        """How tags decode into spans: "bio" (entities), "bmes" (words), or None (plain tags)."""
        if self.kind != "tagging":
            return None
        return tag_scheme(self.labels)

    def heads(self) -> dict[str, nn.Module]:
        return {HEAD_NAMES[self.kind]: self.head}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        if self.kind == "multiple_choice":  # every choice is a sequence of its own: (B, K, T) -> (B * K, T)
            B, K, T = input_ids.shape
            flat = [None if x is None else x.reshape(B * K, T) for x in (input_ids, attention_mask, token_type_ids)]
            return self.head(self.encoder(*flat).pooler_output).view(B, K)  # (B, K)
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        if self.kind in ("classification", "regression"):
            return self.head(out.pooler_output)  # (B, C)
        return self.head(out.last_hidden_state)  # (B, T, C) tags, or (B, T, 2) start and end logits

    def loss_sum(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss summed over what `loss_units` counts; callers divide by the count of the whole step."""
        logits = logits.float()
        if self.kind == "regression":
            return ((logits[:, 0] - batch["labels"]) ** 2).sum()  # MSE, as transformers' regression
        if self.kind == "qa":
            # Padding can never be an answer; [CLS] (position 0) is the "no answer here" target.
            logits = logits.masked_fill(~batch["attention_mask"].bool()[..., None], -1e4)
            start, end = logits.unbind(-1)  # (B, T) each
            ce = F.cross_entropy(start, batch["start_positions"], reduction="sum")
            return (ce + F.cross_entropy(end, batch["end_positions"], reduction="sum")) / 2
        if self.kind == "multiple_choice":
            logits = logits.masked_fill(~batch["choice_mask"], -math.inf)  # (B, K): empty choice slots
        if self.kind == "tagging" and self.crf is not None:
            emissions, tags, mask = compact(logits, batch["labels"])  # the labelled first pieces, in order
            return self.crf.nll(emissions, tags, mask).sum() if len(tags) else logits.sum() * 0
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1), reduction="sum")


def loss_units(kind: str, batch: dict[str, torch.Tensor]) -> int:
    """What a loss averages over: labelled tokens (tagging) or labelled examples; QA windows."""
    if kind in ("classification", "tagging", "multiple_choice"):
        return int((batch["labels"] != -100).sum())
    return len(batch["input_ids"])


def tag_scheme(labels: list[str]) -> str | None:
    if sorted(labels) == sorted(BMES_LABELS):
        return "bmes"
    if all(t == "O" or re.fullmatch(r"[BI]-\S+", t) for t in labels) and "O" in labels:
        return "bio"
    return None


def build_model(folder: str | Path, kind: str, labels: list[str], random_init: bool = False, crf: bool = False):
    """A fresh head on the encoder of `folder` (or, with `random_init`, on a random encoder of its config).

    Returns (model, tokenizer); the tokenizer always comes from the folder. Call `torch.manual_seed` first:
    the head (and a random encoder) are initialised from the global generator.
    """
    if crf and kind != "tagging":
        raise BertkitError("--crf is for token classification (ner, peoples-daily-ner, peoples-daily-cws)")
    folder = Path(folder)
    if random_init:
        from bertkit.tokenizer import Tokenizer

        config = BertConfig.from_json(folder / "config.json")
        tokenizer = Tokenizer.from_folder(folder)
        check_vocab_fits(tokenizer, config, folder)
        encoder = None
    else:
        ckpt = load_pretrained(folder)
        config, tokenizer, encoder = ckpt.config, ckpt.tokenizer, ckpt.encoder
        if tokenizer is None:
            raise BertkitError(f"{folder}: no vocab.txt or tokenizer.json; fine-tuning needs the model's tokenizer")
    config = replace(config, id2label=dict(enumerate(labels)))
    pooled = kind in ("classification", "regression", "multiple_choice")  # as the transformers class has it
    if encoder is None:
        encoder = BertEncoder(config, add_pooler=pooled)
    encoder.config = config  # the labels travel with the encoder's config into config.json
    if pooled and encoder.pooler is None:
        encoder.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        init_weights(encoder.pooler, config.initializer_range)
    if not pooled:
        encoder.pooler = None  # an unused pooler would get no gradient
    if kind == "qa":
        head = span_head(config)
    else:
        head = ClassifierHead(config, num_labels=1 if kind in ("regression", "multiple_choice") else None)
    model = TaskModel(encoder, head, kind)
    if crf:
        model.crf = CRF(labels, model.scheme)
    return model, tokenizer


def set_dropout(model: TaskModel, p: float) -> None:
    """Every dropout of the model (embeddings, attention, hidden, head) to `p`, and its config.json to match.

    A model pretrained without dropout (short runs learn faster without it) usually wants it back for
    fine-tuning on a few thousand examples; `--dropout` does that without editing the folder.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        if hasattr(module, "dropout_p"):
            module.dropout_p = p
    model.encoder.config = replace(
        model.encoder.config, hidden_dropout_prob=p, attention_probs_dropout_prob=p, classifier_dropout=None
    )


def load_task_model(folder: str | Path):
    """(model, tokenizer) of a fine-tuned folder, from bertkit or `transformers`."""
    ckpt = load_pretrained(folder)
    if ckpt.tokenizer is None:
        raise BertkitError(f"{folder}: no vocab.txt or tokenizer.json next to the model")
    return task_model(ckpt, folder).eval(), ckpt.tokenizer


def task_model(ckpt: Checkpoint, folder: str | Path) -> TaskModel:
    """The task model of a loaded checkpoint; `folder` supplies what lies outside the weights: a regression
    head's problem_type (config.json) and a CRF (crf.safetensors)."""
    folder = Path(folder)
    heads = ckpt.heads
    if ("classifier" in heads or "multiple_choice" in heads) and ckpt.encoder.pooler is None:
        what = "a multiple-choice head" if "multiple_choice" in heads else "a sequence classifier"
        raise CheckpointError(f"{folder}: {what} without a pooler (bert.pooler.*) cannot run")
    if "classifier" in heads:
        # As transformers: regression when config.json says so, or says nothing and there is one output.
        problem_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("problem_type")
        regression = problem_type == "regression" or (problem_type is None and ckpt.config.num_labels == 1)
        model = TaskModel(ckpt.encoder, heads["classifier"], "regression" if regression else "classification")
    elif "token_classifier" in heads:
        model = TaskModel(ckpt.encoder, heads["token_classifier"], "tagging")
    elif "qa" in heads:
        model = TaskModel(ckpt.encoder, heads["qa"], "qa")
    elif "multiple_choice" in heads:
        model = TaskModel(ckpt.encoder, heads["multiple_choice"], "multiple_choice")
    else:
        raise BertkitError(
            f"{folder}: no classification head (classifier.*, qa_outputs.*) but {sorted(heads) or 'no heads'}; "
            "fine-tune it first with `bertkit finetune`"
        )
    if (folder / CRF_FILE).is_file():
        if model.kind != "tagging":
            raise CheckpointError(f"{folder / CRF_FILE}: a CRF beside a model that does not tag tokens")
        model.crf = CRF(model.labels, model.scheme)
        model.crf.load(folder)
    return model


def save_task_model(folder: str | Path, model: TaskModel, tokenizer) -> None:
    """The Hugging Face folder, plus what transformers keeps outside the weights: `"problem_type":
    "regression"` in config.json, and the CRF in crf.safetensors (a stale one from an earlier run is
    removed when the model has none, so it can never be loaded with the wrong weights)."""
    folder = Path(folder)
    save_pretrained(folder, model.encoder, model.heads(), tokenizer)
    if model.kind == "regression":
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        text = json.dumps({**config, "problem_type": "regression"}, indent=2, ensure_ascii=False) + "\n"
        atomic_write_text(folder / "config.json", text)
    if model.crf is not None:
        model.crf.save(folder)
    else:
        (folder / CRF_FILE).unlink(missing_ok=True)


def layerwise_param_groups(model: TaskModel, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no decay on 1-D tensors (biases, LayerNorm); lr * layer_decay**(L + 1 - depth), where
    depth is 0 for the embeddings, i + 1 for layer i, and L + 1 for the pooler, the head and the CRF."""
    n_layers = len(model.encoder.layers)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder.embeddings."):
            depth = 0
        elif m := re.match(r"encoder\.layers\.(\d+)\.", name):
            depth = int(m.group(1)) + 1
        else:
            depth = n_layers + 1
        decay = p.ndim >= 2 and not name.startswith("crf.")  # CRF scores are log-potentials, not weights
        group = groups.setdefault(
            (depth, decay),
            {
                "params": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * layer_decay ** (n_layers + 1 - depth),
            },
        )
        group["params"].append(p)
    return list(groups.values())


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
    tokenizer, examples: list[TextExample], labels: list[str], max_len: int, regression: bool = False
) -> Encoded:
    """[CLS] text [SEP] (or [CLS] A [SEP] B [SEP]), truncated longest-first to `max_len`. Regression labels
    are the numbers themselves."""
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
    piece in the window that owns that piece (see tasks.py); every other position is -100."""
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
            features.append(
                {
                    "input_ids": [tokenizer.cls_token_id, *pc.ids[s:e], tokenizer.sep_token_id],
                    "token_type_ids": [0] * (e - s + 2),
                    "labels": [-100, *labels_w, -100],
                    "example": i,
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


def encode_split(
    model: TaskModel, tokenizer, examples: list, max_len: int, stride: int | None, max_query_length: int = 64
) -> Encoded:
    if model.kind in ("classification", "regression"):
        return encode_texts(tokenizer, examples, model.labels, max_len, model.kind == "regression")
    if model.kind == "qa":
        return encode_qa(tokenizer, examples, max_len, stride, max_query_length)
    if model.kind == "multiple_choice":
        return encode_choices(tokenizer, examples, max_len)
    pieces = word_pieces(tokenizer, [ex.words for ex in examples])
    tags = [ex.tags for ex in examples] if examples and all(ex.tags is not None for ex in examples) else None
    return encode_tags(tokenizer, pieces, tags, model.labels, max_len, stride or (max_len - 2) // 2)


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
    model: TaskModel, enc: Encoded, pad_id: int, batch_size: int = 64, bf16: bool = False, qa: QAOptions | None = None
) -> dict:
    """Loss and the task's metrics on an encoded, labelled split."""
    logits = predict_logits(model, enc.features, pad_id, batch_size, bf16)
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
        }
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
    return result | {"examples": len(pred)}


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


def predict_texts(
    model: TaskModel,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
) -> list[dict]:
    """One record per text. Classification: label, score and every label's probability. Regression: the
    value. Tagging: the entities (BIO) or words (BMES) with character offsets into the text, else one tag
    per word; with a CRF the tags are its best sequence, each scored by its token's probability."""
    if model.kind in ("qa", "multiple_choice"):
        raise BertkitError(f"a {model.kind} model answers questions: use predict_qa / predict_choices")
    max_len = max_length_for(model, tokenizer, max_seq_length)
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
    enc = encode_tags(tokenizer, pieces, None, labels, max_len, (max_len - 2) // 2)
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
    enc = encode_qa(tokenizer, examples, max_len, stride, max_query_length)
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


def max_length_for(model: TaskModel, tokenizer, max_seq_length: int | None) -> int:
    """`max_seq_length`, or else the length the model was fine-tuned with (tokenizer_config.json's
    model_max_length), never more than its position embeddings."""
    limit = model.encoder.config.max_position_embeddings
    max_len = max_seq_length or min(tokenizer.model_max_length, limit)
    if max_len > limit:
        raise BertkitError(f"--max-seq-length {max_len} is more than the model's max_position_embeddings ({limit})")
    return max_len


# ---------------------------------------------------------------------------------------------- training


def finetune(task: TaskData, init: str | Path, cfg: FinetuneConfig, random_init: bool = False, device=None) -> dict:
    """Fine-tune `init` (a model folder) on `task`; writes OUT/model, metrics.jsonl, curves.png, summary.json."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_supported(device))
    if not task.train:
        raise BertkitError(f"task {task.name}: no training examples")
    torch.manual_seed(cfg.seed)
    model, tokenizer = build_model(init, task.kind, task.labels, random_init, cfg.crf)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    model.to(device)
    if cfg.max_seq_length > model.encoder.config.max_position_embeddings:
        raise BertkitError(
            f"--max-seq-length {cfg.max_seq_length} is more than the model's max_position_embeddings "
            f"({model.encoder.config.max_position_embeddings})"
        )
    qa = cfg.qa
    if task.kind == "qa" and qa.null_threshold is None and any(not ex.answers for ex in task.train + task.dev):
        qa = replace(qa, null_threshold=0.0)  # SQuAD 2.0 data: unanswerable questions can be left unanswered
        print("unanswerable questions in the data (SQuAD 2.0): answers are empty when the null score wins")
    tokenizer.model_max_length = cfg.max_seq_length  # saved in tokenizer_config.json; predict reads it back
    pad_id = tokenizer.pad_token_id

    def encode(examples):
        return encode_split(model, tokenizer, examples, cfg.max_seq_length, cfg.stride, cfg.max_query_length)

    train = encode(task.train)
    dev = encode(task.dev) if task.dev else None
    for name, enc, examples in (("train", train, task.train), ("dev", dev, task.dev)):
        if enc is None:
            continue
        if enc.truncated and task.kind == "qa":
            print(f"{name}: {enc.truncated} answers are longer than a window and train as 'no answer here'")
        elif enc.truncated:
            print(f"{name}: {enc.truncated} of {len(examples)} texts truncated to {cfg.max_seq_length} tokens")
        if task.kind in ("tagging", "qa") and len(enc.features) > len(examples):
            print(f"{name}: {len(examples)} examples read in {len(enc.features)} windows of {cfg.max_seq_length}")

    n_batches = math.ceil(len(train.features) / cfg.batch_size)
    total_steps = math.ceil(n_batches / cfg.grad_accum) * cfg.epochs
    warmup_steps = max(1, int(cfg.warmup * total_steps))
    optimizer = torch.optim.AdamW(
        layerwise_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, eps=1e-6
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup_steps, total_steps))
    (out / "finetune_config.json").write_text(
        json.dumps({"task": task.name, "init": str(init), "random_init": random_init, **asdict(cfg)}, indent=2) + "\n"
    )

    metric = main_metric(task.kind)
    lengths = [feature_length(f) for f in train.features]
    rng = random.Random(cfg.seed)
    best, best_epoch, bad_epochs, step = -math.inf, 0, 0, 0
    history = []
    log = open(out / "metrics.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in `finally`
    bar = tqdm(total=total_steps, disable=not cfg.progress, unit="step", dynamic_ncols=True)
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            epoch_loss, epoch_units = 0.0, 0
            window = {"loss": 0.0, "units": 0, "sequences": 0, "t0": time.perf_counter()}
            batches = length_grouped_batches(lengths, cfg.batch_size, rng)
            for first in range(0, len(batches), cfg.grad_accum):
                # ---- one optimizer step over up to `grad_accum` micro-batches (fewer at the end of an epoch)
                group = batches[first : first + cfg.grad_accum]
                micro = [collate([train.features[i] for i in idx], pad_id) for idx in group]
                units = sum(loss_units(task.kind, b) for b in micro)  # what the step's loss is a mean over
                step_loss = 0.0
                for batch in micro:
                    batch = {k: v.to(device) for k, v in batch.items()}
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                    loss = model.loss_sum(logits, batch)
                    (loss / max(1, units)).backward()
                    step_loss += loss.item()
                    window["sequences"] += len(batch["input_ids"])
                epoch_loss, epoch_units = epoch_loss + step_loss, epoch_units + units
                window["loss"] += step_loss
                window["units"] += units
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)

                # ---- log
                if step % cfg.log_every == 0 or step == total_steps:
                    row = {
                        "step": step,
                        "epoch": epoch,
                        "lr": schedule.get_last_lr()[0],
                        "loss": window["loss"] / max(1, window["units"]),
                        "grad_norm": float(grad_norm),
                        "sequences_per_s": window["sequences"] / (time.perf_counter() - window["t0"]),
                    }
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4f}", seq_s=f"{row['sequences_per_s']:.0f}")
                    window = {"loss": 0.0, "units": 0, "sequences": 0, "t0": time.perf_counter()}

            # ---- evaluate on dev; keep the best model
            ev = {"epoch": epoch, "step": step, "train_loss": epoch_loss / max(1, epoch_units)}
            if dev is not None:
                ev |= evaluate(model, dev, pad_id, bf16=use_bf16, qa=qa)
            history.append(ev)
            log.write(json.dumps({"eval": ev}) + "\n")
            log.flush()
            score = ev.get(metric, -math.inf if dev is not None else epoch)  # no dev set: the last epoch is best
            bar.write(
                f"epoch {epoch}: train loss {ev['train_loss']:.4f}"
                + (f", dev loss {ev['loss']:.4f}, dev {metric} {score:.4f}" if dev is not None else "")
            )
            if score > best:
                best, best_epoch, bad_epochs = score, epoch, 0
                save_task_model(out / "model", model, tokenizer)
            else:
                bad_epochs += 1
                if cfg.patience and bad_epochs >= cfg.patience:
                    bar.write(f"early stop: no better dev {metric} for {bad_epochs} epochs")
                    break
    finally:
        bar.close()
        log.close()
    plot_curves(out / "metrics.jsonl", out / "curves.png", metric)

    # ---- score the test set once, with the best model, read back from its folder as a user would
    summary = {
        "task": task.name,
        "metric": metric,
        "seed": cfg.seed,
        "random_init": random_init,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "steps": step,
        "precision": "bf16" if use_bf16 else "fp32",
        "model": str(out / "model"),
        "dev": {k: v for k, v in history[best_epoch - 1].items() if k not in ("epoch", "step")} if dev else {},
        "test": {},
    }
    if task.test:
        best_model, tok = load_task_model(out / "model")
        best_model.to(device)
        test = encode_split(best_model, tok, task.test, cfg.max_seq_length, cfg.stride, cfg.max_query_length)
        summary["test"] = evaluate(best_model, test, pad_id, bf16=use_bf16, qa=qa)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def finetune_seeds(
    task: TaskData, init: str | Path, cfg: FinetuneConfig, seeds: list[int], random_init: bool = False
) -> dict:
    """One run per seed (OUT/seed-N/ when there are several), and the mean and max of the main metric."""
    if not seeds:
        raise BertkitError("--seeds needs at least one seed")
    if len(seeds) == 1:
        run = finetune(task, init, replace(cfg, seed=seeds[0]), random_init)
        return {"task": task.name, "metric": run["metric"], "runs": [run], **_aggregate([run])}
    runs = [
        finetune(task, init, replace(cfg, seed=s, out_dir=str(Path(cfg.out_dir) / f"seed-{s}")), random_init)
        for s in seeds
    ]
    summary = {"task": task.name, "metric": runs[0]["metric"], "runs": runs, **_aggregate(runs)}
    (Path(cfg.out_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _aggregate(runs: list[dict]) -> dict:
    metric, result = runs[0]["metric"], {}
    for split in ("dev", "test"):
        values = [r[split][metric] for r in runs if metric in r[split]]
        if values:
            result[split] = {"mean": sum(values) / len(values), "max": max(values), "values": values}
    return result


def plot_curves(log_path: Path, png_path: Path, metric: str) -> None:
    """Training loss by step with the dev loss by epoch, and the dev metric by epoch, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "eval" not in r]
    evals = [r["eval"] for r in rows if "eval" in r]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    if evals and "loss" in evals[0]:
        ax[0].plot([e["step"] for e in evals], [e["loss"] for e in evals], "o-", label="dev")
    ax[0].set(title="loss", xlabel="step")
    ax[0].legend()
    if evals and metric in evals[0]:
        ax[1].plot([e["epoch"] for e in evals], [e[metric] for e in evals], "o-")
    ax[1].set(title=f"dev {metric}", xlabel="epoch", ylim=(-1, 1) if metric == "pearson" else (0, 1))
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


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
