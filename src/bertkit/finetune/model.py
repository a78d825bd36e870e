"""The task model: an encoder and one small head, built from a folder and saved as one.

Heads, each laid out as its `transformers` class so the folder loads there with identical outputs:
- classification and regression read the tanh pooler, as BertForSequenceClassification (a model folder
  without a pooler gets a fresh one); regression is one output trained with the squared error, and its
  config.json says `"problem_type": "regression"`, which is how transformers knows it too;
- tagging reads every token and drops the pooler, as BertForTokenClassification; with `crf` a linear-chain
  CRF (crf.py) scores whole tag sequences on top, saved beside the weights in `crf.safetensors`;
- QA reads a start and an end logit at every token, without a pooler, as BertForQuestionAnswering;
- multiple choice encodes each choice as its own pair and scores it from the pooler with Linear(H, 1), the
  scores of one question's choices going through one softmax, as BertForMultipleChoice (DistilBERT has no
  pooler: its first token goes through pre_classifier → ReLU → classifier, as DistilBertForMultipleChoice).

Losses are sums over what they average (labelled tokens for tagging, examples or windows otherwise), divided
by that count over the whole optimizer step: with gradient accumulation, every example weighs the same,
whichever micro-batch it fell in, so `batch_size=8` and `batch_size=4, grad_accum=2` take the same steps.
Batches are grouped by length, so little of each batch is padding.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.config import FAMILY_SPECS, BertConfig, atomic_write_text
from bertkit.errors import BertkitError, CheckpointError
from bertkit.finetune.crf import CRF, CRF_FILE, compact
from bertkit.finetune.tasks import BMES_LABELS
from bertkit.hf import Checkpoint, check_vocab_fits, load_pretrained, save_pretrained
from bertkit.model import (
    BertEncoder,
    ClassifierHead,
    FirstTokenClassifierHead,
    LastTokenChoiceHead,
    LastTokenClassifierHead,
    init_weights,
    last_token,
    span_head,
)

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
        # GPT-1's auxiliary objective (GPT-2 only): λ × the next-token loss on the same inputs, in training
        self.lm_weight = 0.0
        self._lm_inputs: tuple | None = None

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
        if self.kind in ("classification", "regression") and input_ids.dim() == 3:  # a pair read both ways
            B, K, T = input_ids.shape
            flat = [None if x is None else x.reshape(B * K, T) for x in (input_ids, attention_mask, token_type_ids)]
            return self.forward(*flat).view(B, K, -1).sum(1)  # (B, C): the orders' logits added
        if self.kind == "multiple_choice":  # every choice is a sequence of its own: (B, K, T) -> (B * K, T)
            B, K, T = input_ids.shape
            flat = [None if x is None else x.reshape(B * K, T) for x in (input_ids, attention_mask, token_type_ids)]
            out = self.encoder(*flat)
            self._keep_for_lm(out.last_hidden_state, flat[0], flat[1], B)
            if getattr(self.head, "reads_last_token", False):  # GPT-2: each choice's last real token
                return self.head(last_token(out.last_hidden_state, flat[1])).view(B, K)
            if getattr(self.head, "reads_first_token", False):  # DistilBERT: pre_classifier on the first token
                return self.head(out.last_hidden_state[:, 0]).view(B, K)  # (B, K)
            return self.head(out.pooler_output).view(B, K)  # (B, K)
        out = self.encoder(input_ids, attention_mask, token_type_ids)
        self._keep_for_lm(out.last_hidden_state, input_ids, attention_mask, len(input_ids))
        if self.kind in ("classification", "regression"):
            if getattr(self.head, "reads_last_token", False):  # GPT-2: the last real token has seen the whole text
                return self.head(last_token(out.last_hidden_state, attention_mask))  # (B, C)
            if getattr(self.head, "reads_first_token", False):  # RoBERTa / ELECTRA: no pooler, a 2-layer head
                return self.head(out.last_hidden_state[:, 0])  # (B, C)
            return self.head(out.pooler_output)  # (B, C)
        return self.head(out.last_hidden_state)  # (B, T, C) tags, or (B, T, 2) start and end logits

    def _keep_for_lm(self, hidden, input_ids, attention_mask, examples: int) -> None:
        self._lm_inputs = (hidden, input_ids, attention_mask, examples) if self.lm_weight and self.training else None

    def lm_loss_sum(self) -> torch.Tensor:
        """λ × the mean next-token loss of the last forward's inputs × its examples: summed like the task loss,
        then divided by the step's examples (GPT-1: L3 = L2 + λ·L1)."""
        hidden, ids, mask, examples = self._lm_inputs
        real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
        predicts = real[:, 1:] & real[:, :-1]  # position t predicts a real token t + 1
        rows = hidden[:, :-1][predicts]  # bf16 when the forward ran under autocast, as the loop's loss runs outside it
        logits = F.linear(rows, self.encoder.embeddings.word_embeddings.weight.to(rows.dtype))
        nll = F.cross_entropy(logits.float(), ids[:, 1:][predicts])  # the mean over the predicted tokens
        return self.lm_weight * examples * nll

    def loss_sum(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
    ) -> torch.Tensor:
        loss = self._task_loss_sum(logits, batch, label_smoothing)
        if self._lm_inputs is not None:
            loss = loss + self.lm_loss_sum()
        return loss

    def _task_loss_sum(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """The loss summed over what `loss_units` counts; callers divide by the count of the whole step.

        `label_smoothing` (Szegedy et al., 2016; seed 002) mixes the one-hot target with the uniform one; it
        applies to the cross-entropies of classification, tagging without a CRF, and QA (`check_label_smoothing`
        says where it cannot)."""
        logits = logits.float()
        ls = label_smoothing
        if self.kind == "regression":
            return ((logits[:, 0] - batch["labels"]) ** 2).sum()  # MSE, as transformers' regression
        if self.kind == "qa":
            # Padding can never be an answer; [CLS] (position 0) is the "no answer here" target.
            logits = logits.masked_fill(~batch["attention_mask"].bool()[..., None], -1e4)
            start, end = logits.unbind(-1)  # (B, T) each
            ce = F.cross_entropy(start, batch["start_positions"], reduction="sum", label_smoothing=ls)
            return (ce + F.cross_entropy(end, batch["end_positions"], reduction="sum", label_smoothing=ls)) / 2
        if self.kind == "multiple_choice":
            logits = logits.masked_fill(~batch["choice_mask"], -math.inf)  # (B, K): empty choice slots
        if self.kind == "tagging" and self.crf is not None:
            emissions, tags, mask, keep = compact(logits, batch["labels"])  # the labelled first pieces, in order
            if not len(tags):
                return logits.sum() * 0
            # windows cut out of a longer sentence have free edges (crf.py)
            starts, ends = (batch[k][keep].bool() if k in batch else None for k in ("crf_start", "crf_end"))
            return self.crf.nll(emissions, tags, mask, starts, ends).sum()
        flat = logits.reshape(-1, logits.shape[-1])
        return F.cross_entropy(flat, batch["labels"].reshape(-1), reduction="sum", label_smoothing=ls)

    def check_label_smoothing(self, label_smoothing: float) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise BertkitError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and (self.kind in ("regression", "multiple_choice") or self.crf is not None):
            what = "a CRF" if self.crf is not None else self.kind.replace("_", " ")
            raise BertkitError(
                f"--label-smoothing applies to cross-entropy over labels; {what} has none to smooth (use 0)"
            )


def check_lm_weight(folder: str | Path, kind: str) -> None:
    """--lm-weight needs a language-model head to share (GPT-2) and a loss per example to add to."""
    config = BertConfig.from_json(Path(folder) / "config.json")
    if not config.family.causal:
        raise BertkitError(
            f"--lm-weight: {folder} is a {config.family.name}; the auxiliary language-model loss is GPT's (a GPT-2 "
            "folder)"
        )
    if kind not in ("classification", "regression", "multiple_choice"):
        raise BertkitError(f"--lm-weight adds a loss per example: for classification, pairs and regression, not {kind}")


def check_pair_orders(folder: str | Path, task) -> None:
    """--pair-orders both: GPT-1's similarity transformation, for a GPT-2 on a task of text pairs."""
    config = BertConfig.from_json(Path(folder) / "config.json")
    if not config.family.causal:
        raise BertkitError(
            f"--pair-orders both: {folder} is a {config.family.name}, which reads a pair both ways already; reading "
            "it in both orders is GPT's transformation (a GPT-2 folder)"
        )
    if task.kind not in ("classification", "regression") or not any(ex.text_pair for ex in task.train):
        raise BertkitError(
            "--pair-orders both reads text pairs in both orders: give a task of pairs (--text-pair-column)"
        )


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


def build_model(
    folder: str | Path,
    kind: str,
    labels: list[str],
    random_init: bool = False,
    crf: bool = False,
    pair_orders: str = "one",
):
    """A fresh head on the encoder of `folder` (or, with `random_init`, on a random encoder of its config).

    Returns (model, tokenizer); the tokenizer always comes from the folder. Call `torch.manual_seed` first:
    the head (and a random encoder) are initialised from the global generator.
    """
    if crf and kind != "tagging":
        raise BertkitError("--crf is for token classification (ner, peoples-daily-ner, peoples-daily-cws)")
    folder = Path(folder)
    if random_init:
        from bertkit.vocab import tokenizer_from_folder

        config = BertConfig.from_json(folder / "config.json")
        tokenizer = tokenizer_from_folder(folder)
        check_vocab_fits(tokenizer, config, folder)
        encoder = None
    else:
        ckpt = load_pretrained(folder)
        config, tokenizer, encoder = ckpt.config, ckpt.tokenizer, ckpt.encoder
        if tokenizer is None:
            raise BertkitError(f"{folder}: no vocab.txt or tokenizer.json; fine-tuning needs the model's tokenizer")
    config = replace(config, id2label=dict(enumerate(labels)), pair_orders=pair_orders)
    # As each transformers class has it: BERT and ALBERT classify from the pooler; RoBERTa and ELECTRA from
    # the first token through a two-layer head (RoBERTa's multiple choice still reads its pooler; DistilBERT's not).
    first_token = config.family.classifier_reads_first_token and kind in ("classification", "regression")
    first_token |= config.family.choice_reads_first_token and kind == "multiple_choice"
    last = config.family.classifier_reads_last_token and kind in ("classification", "regression", "multiple_choice")
    if last and kind == "multiple_choice":  # GPT2DoubleHeadsModel's choice head scores into num_labels = 1
        config = replace(config, id2label={0: "LABEL_0"})
    if kind == "multiple_choice" and not config.family.multiple_choice:
        having = ", ".join(s.name for s in FAMILY_SPECS.values() if s.multiple_choice)
        raise BertkitError(
            f"{folder}: {config.family.name}'s multiple-choice head is not built by bertkit; "
            f"use a model of {having} for this task"
        )
    pooled = kind in ("classification", "regression", "multiple_choice") and not first_token and not last
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
    elif last:
        head = LastTokenChoiceHead(config, 1) if kind == "multiple_choice" else LastTokenClassifierHead(config)
    elif first_token:
        head = FirstTokenClassifierHead(config, num_labels=1 if kind in ("regression", "multiple_choice") else None)
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
    first_token = any(
        getattr(h, "reads_first_token", False) or getattr(h, "reads_last_token", False) for h in heads.values()
    )  # RoBERTa / ELECTRA / GPT-2 / ...: no pooler
    if ("classifier" in heads or "multiple_choice" in heads) and not first_token and ckpt.encoder.pooler is None:
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
    depth is 0 for the embeddings (and their E → H projection), i + 1 for layer i, and L + 1 for the pooler, the
    head and the CRF. An ALBERT's one shared layer is its only layer (L = 1)."""
    n_layers = len(model.encoder.layers)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith(("encoder.embeddings.", "encoder.project.")):
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
