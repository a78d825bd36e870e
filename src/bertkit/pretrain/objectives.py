"""Pretraining objectives: modules that wrap an encoder and its heads and return losses.

`BertPretraining(encoder, mlm, nsp)` is BERT's objective, `L = L_mlm + L_nsp` (the notes' 完形填空 and
句子关系预测); with `nsp=None` it is MLM alone (RoBERTa, or a sentence-order head can be passed as `nsp`
for ALBERT's SOP — the head is the same two-way linear layer on the pooled [CLS]).

Choices:
- The MLM head runs only at the masked positions: gathering them first means the (N, V) vocabulary
  projection covers 15% of the tokens, not all of them. That projection is most of the work in a small
  model with a 21k vocabulary, so this is the largest single speed-up over a head run on every position.
- Losses come back as *sums* with their counts. The training loop divides by the number of masked tokens
  (and sequences) in the whole optimizer step, so gradient accumulation weights every masked token
  equally, however the tokens fall into micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.model import BertEncoder, MLMHead, NSPHead
from bertkit.pretrain.masking import IGNORE_INDEX


@dataclass
class PretrainingOutput:
    mlm_loss_sum: torch.Tensor  # () summed cross-entropy over masked tokens
    mlm_count: int  # masked tokens in the batch
    mlm_correct: int  # masked tokens whose arg-max prediction is the original token
    nsp_loss_sum: torch.Tensor  # () summed cross-entropy over sequences (0 without an NSP head)
    nsp_count: int
    nsp_correct: int
    mlm_logits: torch.Tensor | None = None  # (N, V) at the masked positions, for fill-mask and tests


class BertPretraining(nn.Module):
    def __init__(self, encoder: BertEncoder, mlm: MLMHead, nsp: NSPHead | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if nsp is not None and encoder.pooler is None:
            raise ValueError("an NSP/SOP head needs the encoder's pooler")
        self.encoder, self.mlm, self.nsp = encoder, mlm, nsp
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm} | ({"nsp": self.nsp} if self.nsp is not None else {})

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) with masked tokens already replaced
        labels: torch.Tensor,  # (B, T) original ids at masked positions, -100 elsewhere
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,  # (B,) 1 = B is a random sentence
        return_logits: bool = False,
        position_ids: torch.Tensor | None = None,  # (B, T); None: 0..T-1
    ) -> PretrainingOutput:
        out = self.encoder(input_ids, attention_mask, token_type_ids, position_ids=position_ids)
        masked = labels != IGNORE_INDEX  # (B, T)
        targets = labels[masked]  # (N,)
        logits = self.mlm(out.last_hidden_state[masked], self.encoder.embeddings.word_embeddings.weight)  # (N, V)
        mlm_loss = F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=self.label_smoothing)
        zero = mlm_loss.new_zeros(())
        nsp_loss, nsp_count, nsp_correct = zero, 0, 0
        if self.nsp is not None and next_sentence_label is not None:
            nsp_logits = self.nsp(out.pooler_output).float()  # (B, 2)
            nsp_loss = F.cross_entropy(
                nsp_logits, next_sentence_label, reduction="sum", label_smoothing=self.label_smoothing
            )
            nsp_count = len(next_sentence_label)
            nsp_correct = int((nsp_logits.argmax(-1) == next_sentence_label).sum())
        return PretrainingOutput(
            mlm_loss_sum=mlm_loss,
            mlm_count=int(targets.numel()),
            mlm_correct=int((logits.argmax(-1) == targets).sum()),
            nsp_loss_sum=nsp_loss,
            nsp_count=nsp_count,
            nsp_correct=nsp_correct,
            mlm_logits=logits if return_logits else None,
        )
