"""The autoregressive side of seed 004's two self-supervised families: GPT's left-to-right language model on the
same blocks as BERT (seed 003: one direction, where BERT reads both).

`CausalLMPretraining(encoder, lm)`: the encoder's family is causal (GPT-2: every position attends to itself and the
positions before it), and each position predicts the next token, `L = -Σ_t log p(x_{t+1} | x_{≤t})`, averaged over
the step's predicted tokens (every real token but each sequence's first: the loss's units are real tokens minus one
per sequence). The text comes unmasked (the recipe's masking unit "none"), as full sentences packed across
documents, [CLS] first and [SEP] last with the WordPiece vocabulary (UER's gpt2-chinese convention, so [CLS] is the
start of a text and [SEP] its end when generating). The logits are the last hidden states against the word
embeddings (GPT-2's tied lm_head), computed only at the positions that predict something, through the same
chunked cross-entropy as the MLM (`objectives.vocab_cross_entropy`).
"""

from __future__ import annotations

import torch
from torch import nn

from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, LMHead
from bertkit.pretrain.objectives import Batch, Loss, ObjectiveOutput, PretrainingObjective, Ratio, vocab_cross_entropy


def next_token_targets(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T-1) booleans, True where position t predicts a real token t+1, and the (N,) targets there."""
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
    predicts = real[:, 1:] & real[:, :-1]  # (B, T-1)
    return predicts, ids[:, 1:][predicts]


class CausalLMPretraining(PretrainingObjective):
    def __init__(self, encoder: BertEncoder, lm: LMHead, label_smoothing: float = 0.0):
        super().__init__()
        if not encoder.config.family.causal:
            raise ConfigError(
                f"a left-to-right language model needs a causal family (GPT-2); this is a {encoder.config.family.name}"
            )
        self.encoder, self.lm = encoder, lm
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"lm": self.lm}

    def units(self, batch: Batch) -> dict[str, int]:
        return {"lm": int(next_token_targets(batch)[0].sum())}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads input_ids and attention_mask (right padding); the labels of a masked batch are not used."""
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        hidden = self.encoder(ids, mask, position_ids=batch.get("position_ids")).last_hidden_state  # (B, T, H)
        predicts, targets = next_token_targets(batch)
        logits = self.lm(hidden[:, :-1][predicts], self.encoder.embeddings.word_embeddings.weight)  # (N, V)
        loss, correct = vocab_cross_entropy(logits, targets, self.label_smoothing)
        n = int(targets.numel())
        return ObjectiveOutput({"lm": Loss(loss, n)}, {"lm_accuracy": Ratio(correct, n)}, {"lm_logits": logits})
