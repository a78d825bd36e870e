"""Fine-tuning: one small head on the encoder, trained by a loop visible in one function, `finetune`.

The conventions are pretraining's (train.py): AdamW without weight decay on biases and LayerNorm, linear
warm-up then linear decay, bf16 autocast where the hardware has it, gradient clipping, a JSONL metrics log, a
PNG of the curves and a progress bar. What fine-tuning adds:
- evaluation on the dev set after every epoch; the best epoch's model is kept as a Hugging Face folder
  (`OUT/model`, loadable by `transformers`' AutoModelFor{Sequence,Token}Classification), and training stops
  early after `patience` epochs without improvement; the test set is scored once, with the best model;
- optional layer-wise learning-rate decay (`layer_decay` < 1): the head trains at `lr`, the top layer at
  `lr * decay`, each lower layer one more factor down, the embeddings at `lr * decay**(L + 1)`;
- `finetune_seeds` runs the same fine-tuning with several seeds and reports the mean and the max, since
  small fine-tuning sets give results that vary from seed to seed;
- `random_init` trains the same architecture from random weights: the notes' control for pretraining.

Heads: `[CLS]` classification reads the tanh pooler, as BertForSequenceClassification (a model folder
without a pooler gets a fresh one); tagging reads every token and drops the pooler, as
BertForTokenClassification. Batches are grouped by length, so little of each batch is padding.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bertkit.config import BertConfig
from bertkit.errors import BertkitError
from bertkit.hf import check_vocab_fits, load_pretrained, save_pretrained
from bertkit.model import BertEncoder, ClassifierHead, init_weights
from bertkit.tasks import (
    BMES_LABELS,
    Pieces,
    TagExample,
    TaskData,
    TextExample,
    accuracy,
    bio_spans,
    bmes_words,
    char_span,
    check_labels,
    entity_scores,
    macro_f1,
    owners,
    recombine,
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
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.1  # a fraction of all steps
    weight_decay: float = 0.01
    layer_decay: float = 1.0  # 1: every layer at `lr`
    max_grad_norm: float = 1.0
    max_seq_length: int = 128  # [CLS] and [SEP]s included
    stride: int | None = None  # tagging windows start this many pieces apart; None: half a window
    patience: int = 0  # stop after this many epochs without a better dev score; 0: never stop early
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_seq_length", "log_every"):
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


# --------------------------------------------------------------------------------------------------- model


class TaskModel(nn.Module):
    """The encoder and one head: logits (B, C) from the pooled [CLS], or (B, T, C) for every token."""

    def __init__(self, encoder: BertEncoder, head: nn.Module, kind: str):
        super().__init__()
        self.encoder, self.head, self.kind = encoder, head, kind

    @property
    def labels(self) -> list[str]:
        return list(self.encoder.config.id2label.values())

    @property
    def scheme(self) -> str | None:
        """How tags decode into spans: "bio" (entities), "bmes" (words), or None (plain tags)."""
        if self.kind != "tagging":
            return None
        if sorted(self.labels) == sorted(BMES_LABELS):
            return "bmes"
        if all(t == "O" or re.fullmatch(r"[BI]-\S+", t) for t in self.labels) and "O" in self.labels:
            return "bio"
        return None

    def heads(self) -> dict[str, nn.Module]:
        return {"classifier" if self.kind == "classification" else "token_classifier": self.head}

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        if self.kind == "classification":
            return self.head(out.pooler_output)  # (B, C)
        return self.head(out.last_hidden_state)  # (B, T, C)


def build_model(folder: str | Path, kind: str, labels: list[str], random_init: bool = False):
    """A fresh head on the encoder of `folder` (or, with `random_init`, on a random encoder of its config).

    Returns (model, tokenizer); the tokenizer always comes from the folder. Call `torch.manual_seed` first:
    the head (and a random encoder) are initialised from the global generator.
    """
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
    if encoder is None:
        encoder = BertEncoder(config, add_pooler=kind == "classification")
    encoder.config = config  # the labels travel with the encoder's config into config.json
    if kind == "classification" and encoder.pooler is None:
        encoder.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        init_weights(encoder.pooler, config.initializer_range)
    if kind == "tagging":
        encoder.pooler = None  # BertForTokenClassification has none; an unused pooler would get no gradient
    return TaskModel(encoder, ClassifierHead(config), kind), tokenizer


def load_task_model(folder: str | Path):
    """(model, tokenizer) of a fine-tuned folder, from bertkit or `transformers`."""
    ckpt = load_pretrained(folder)
    if ckpt.tokenizer is None:
        raise BertkitError(f"{folder}: no vocab.txt or tokenizer.json next to the model")
    if "classifier" in ckpt.heads:
        if ckpt.encoder.pooler is None:
            raise BertkitError(f"{folder}: a sequence classifier without a pooler (bert.pooler.*) cannot run")
        model = TaskModel(ckpt.encoder, ckpt.heads["classifier"], "classification")
    elif "token_classifier" in ckpt.heads:
        model = TaskModel(ckpt.encoder, ckpt.heads["token_classifier"], "tagging")
    else:
        raise BertkitError(
            f"{folder}: no classification head (classifier.*) but {sorted(ckpt.heads) or 'no heads'}; "
            "fine-tune it first with `bertkit finetune`"
        )
    return model.eval(), ckpt.tokenizer


def layerwise_param_groups(model: TaskModel, lr: float, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups: no decay on 1-D tensors (biases, LayerNorm); lr * layer_decay**(L + 1 - depth), where
    depth is 0 for the embeddings, i + 1 for layer i, and L + 1 for the pooler and the head."""
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
        decay = p.ndim >= 2
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
    """A split turned into model inputs. Tagging examples may become several windows each."""

    features: list[dict]  # input_ids, token_type_ids, and label (classification) or labels (tagging)
    pieces: list[Pieces] | None = None  # tagging: per example
    wins: list[list[tuple[int, int]]] | None = None  # tagging: per example, windows over its pieces
    gold: list | None = None  # label names (classification) or tag lists (tagging); None when unlabelled
    truncated: int = 0  # classification inputs cut to max_seq_length


def encode_texts(tokenizer, examples: list[TextExample], labels: list[str], max_len: int) -> Encoded:
    """[CLS] text [SEP] (or [CLS] A [SEP] B [SEP]), truncated longest-first to `max_len`."""
    label2id = {name: i for i, name in enumerate(labels)}
    texts = [ex.text for ex in examples]
    pairs = [ex.text_pair or "" for ex in examples] if any(ex.text_pair for ex in examples) else None
    if not texts:
        return Encoded([], gold=[])
    full = tokenizer(texts, pairs, padding=False, return_tensors=None)["input_ids"]
    enc = tokenizer(texts, pairs, max_length=max_len, padding=False, return_tensors=None)
    features = [
        {"input_ids": ids, "token_type_ids": types, "label": label2id.get(ex.label, -100)}
        for ids, types, ex in zip(enc["input_ids"], enc["token_type_ids"], examples, strict=True)
    ]
    gold = [ex.label for ex in examples] if all(ex.label is not None for ex in examples) else None
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


def encode_split(model: TaskModel, tokenizer, examples: list, max_len: int, stride: int | None) -> Encoded:
    if model.kind == "classification":
        return encode_texts(tokenizer, examples, model.labels, max_len)
    pieces = word_pieces(tokenizer, [ex.words for ex in examples])
    tags = [ex.tags for ex in examples] if examples and all(ex.tags is not None for ex in examples) else None
    return encode_tags(tokenizer, pieces, tags, model.labels, max_len, stride or (max_len - 2) // 2)


def collate(features: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest in the batch: input_ids, token_type_ids, attention_mask, labels; each (B, T) or (B,)."""
    T = max(len(f["input_ids"]) for f in features)
    batch = {
        "input_ids": [f["input_ids"] + [pad_id] * (T - len(f["input_ids"])) for f in features],
        "token_type_ids": [f["token_type_ids"] + [0] * (T - len(f["token_type_ids"])) for f in features],
        "attention_mask": [[1] * len(f["input_ids"]) + [0] * (T - len(f["input_ids"])) for f in features],
    }
    if "labels" in features[0]:
        batch["labels"] = [f["labels"] + [-100] * (T - len(f["labels"])) for f in features]
    else:
        batch["labels"] = [f["label"] for f in features]
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


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


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions (label != -100); 0 when there are none."""
    logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    n = int((labels != -100).sum())
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / max(1, n)


# ------------------------------------------------------------------------------------------- predicting


@torch.no_grad()
def predict_logits(model: TaskModel, features: list[dict], pad_id: int, batch_size: int = 64, bf16: bool = False):
    """Logits per feature in input order: (C,) for classification, (len - 2, C) without [CLS]/[SEP] for tagging."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    out: list[torch.Tensor | None] = [None] * len(features)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        batch = collate([features[i] for i in idx], pad_id)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(
                batch["input_ids"].to(device), batch["attention_mask"].to(device), batch["token_type_ids"].to(device)
            ).float()
        for row, i in enumerate(idx):
            n = len(features[i]["input_ids"])
            out[i] = logits[row] if model.kind == "classification" else logits[row, 1 : n - 1]
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


def evaluate(model: TaskModel, enc: Encoded, pad_id: int, batch_size: int = 64, bf16: bool = False) -> dict:
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
    per_word = word_logits(enc, logits, _default_tag(model))
    label2id = {t: i for i, t in enumerate(labels)}
    flat = torch.cat(per_word)
    gold_ids = torch.tensor([label2id[t] for tags in enc.gold for t in tags])
    pred = [[labels[i] for i in w.argmax(-1).tolist()] for w in per_word]
    result = {
        "loss": float(F.cross_entropy(flat, gold_ids)),
        "tag_accuracy": accuracy([t for g in enc.gold for t in g], [t for p in pred for t in p]),
    }
    if model.scheme == "bio":
        result |= entity_scores(enc.gold, pred)
    elif model.scheme == "bmes":
        result |= word_scores(enc.gold, pred)
    return result | {"examples": len(pred)}


def main_metric(kind: str) -> str:
    return "accuracy" if kind == "classification" else "f1"


def predict_texts(
    model: TaskModel,
    tokenizer,
    texts: list[str],
    pairs: list[str] | None = None,
    max_seq_length: int | None = None,
    batch_size: int = 64,
) -> list[dict]:
    """One record per text. Classification: label, score and every label's probability. Tagging: the
    entities (BIO) or words (BMES) with character offsets into the text, else one tag per word."""
    max_len = max_length_for(model, tokenizer, max_seq_length)
    labels = model.labels
    if model.kind == "classification":
        examples = [TextExample(t, None, p) for t, p in zip(texts, pairs or [None] * len(texts), strict=True)]
        enc = encode_texts(tokenizer, examples, labels, max_len)
        probs = torch.stack(predict_logits(model, enc.features, tokenizer.pad_token_id, batch_size)).softmax(-1)
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
    for text, pc, lg in zip(texts, pieces, per_word, strict=True):
        probs = lg.softmax(-1)
        tags = [labels[i] for i in probs.argmax(-1).tolist()]
        scores = probs.max(-1).values.tolist()
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
    model, tokenizer = build_model(init, task.kind, task.labels, random_init)
    model.to(device)
    if cfg.max_seq_length > model.encoder.config.max_position_embeddings:
        raise BertkitError(
            f"--max-seq-length {cfg.max_seq_length} is more than the model's max_position_embeddings "
            f"({model.encoder.config.max_position_embeddings})"
        )
    tokenizer.model_max_length = cfg.max_seq_length  # saved in tokenizer_config.json; predict reads it back
    pad_id = tokenizer.pad_token_id
    train = encode_split(model, tokenizer, task.train, cfg.max_seq_length, cfg.stride)
    dev = encode_split(model, tokenizer, task.dev, cfg.max_seq_length, cfg.stride) if task.dev else None
    for name, enc, examples in (("train", train, task.train), ("dev", dev, task.dev)):
        if enc is not None and enc.truncated:
            print(f"{name}: {enc.truncated} of {len(examples)} texts truncated to {cfg.max_seq_length} tokens")
        if enc is not None and model.kind == "tagging" and len(enc.features) > len(examples):
            print(f"{name}: {len(examples)} examples read in {len(enc.features)} windows of {cfg.max_seq_length}")

    steps_per_epoch = math.ceil(len(train.features) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = max(1, int(cfg.warmup * total_steps))
    optimizer = torch.optim.AdamW(
        layerwise_param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay), lr=cfg.lr, eps=1e-6
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup_steps, total_steps))
    (out / "finetune_config.json").write_text(
        json.dumps({"task": task.name, "init": str(init), "random_init": random_init, **asdict(cfg)}, indent=2) + "\n"
    )

    metric = main_metric(task.kind)
    lengths = [len(f["input_ids"]) for f in train.features]
    rng = random.Random(cfg.seed)
    best, best_epoch, bad_epochs, step = -math.inf, 0, 0, 0
    history = []
    log = open(out / "metrics.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in `finally`
    bar = tqdm(total=total_steps, disable=not cfg.progress, unit="step", dynamic_ncols=True)
    try:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            epoch_loss, epoch_batches = 0.0, 0
            window = {"loss": 0.0, "steps": 0, "sequences": 0, "t0": time.perf_counter()}
            for idx in length_grouped_batches(lengths, cfg.batch_size, rng):
                batch = {k: v.to(device) for k, v in collate([train.features[i] for i in idx], pad_id).items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                loss = loss_fn(logits, batch["labels"])
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                loss_value = loss.item()
                epoch_loss, epoch_batches = epoch_loss + loss_value, epoch_batches + 1
                window["loss"] += loss_value
                window["steps"] += 1
                window["sequences"] += len(idx)

                # ---- log
                if step % cfg.log_every == 0 or step == total_steps:
                    row = {
                        "step": step,
                        "epoch": epoch,
                        "lr": schedule.get_last_lr()[0],
                        "loss": window["loss"] / window["steps"],
                        "grad_norm": float(grad_norm),
                        "sequences_per_s": window["sequences"] / (time.perf_counter() - window["t0"]),
                    }
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{row['loss']:.4f}", seq_s=f"{row['sequences_per_s']:.0f}")
                    window = {"loss": 0.0, "steps": 0, "sequences": 0, "t0": time.perf_counter()}

            # ---- evaluate on dev; keep the best model
            ev = {"epoch": epoch, "step": step, "train_loss": epoch_loss / max(1, epoch_batches)}
            if dev is not None:
                ev |= evaluate(model, dev, pad_id, bf16=use_bf16)
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
                save_pretrained(out / "model", model.encoder, model.heads(), tokenizer)
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
        test = encode_split(best_model, tok, task.test, cfg.max_seq_length, cfg.stride)
        summary["test"] = evaluate(best_model, test, pad_id, bf16=use_bf16)
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
    ax[1].set(title=f"dev {metric}", xlabel="epoch", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def check_examples(model: TaskModel, examples: list, where: str) -> None:
    """Labelled evaluation data must use only the labels the model was trained with."""
    if model.kind == "classification" and examples and not isinstance(examples[0], TextExample):
        raise BertkitError(f"{where}: the model classifies texts but the task has tagged words")
    if model.kind == "tagging" and examples and not isinstance(examples[0], TagExample):
        raise BertkitError(f"{where}: the model tags words but the task has labelled texts")
    check_labels(examples, model.labels, where)
