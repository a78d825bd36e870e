"""The autoregressive side of seed 004's two self-supervised families on the same blocks as BERT: GPT's
left-to-right language model (seed 003: one direction, where BERT reads both), and XLNet's permutation language
model (seed 002: autoregressive over a random order, so each token is predicted from context on both sides).

`CausalLMPretraining(encoder, lm)`: the encoder's family is causal (GPT-2: every position attends to itself and the
positions before it), and each position predicts the next token, `L = -Σ_t log p(x_{t+1} | x_{≤t})`, averaged over
the step's predicted tokens (every real token but each sequence's first: the loss's units are real tokens minus one
per sequence). The text comes unmasked (the recipe's masking unit "none"), as full sentences packed across
documents, [CLS] first and [SEP] last with the WordPiece vocabulary (UER's gpt2-chinese convention, so [CLS] is the
start of a text and [SEP] its end when generating). The logits are the last hidden states against the word
embeddings (GPT-2's tied lm_head), computed only at the positions that predict something, through the same
chunked cross-entropy as the MLM (`objectives.vocab_cross_entropy`).

`PermutationLMPretraining(encoder, mlm, ...)`: XLNet's objective (Yang et al. 2019) on a bidirectional encoder,
`max E_z Σ_t log p(x_{z_t} | x_{z_<t})` over factorisation orders z:
- A random order per sequence, drawn in `prepare` from the step's seed (the batch field `perm_rank`: each
  position's place in the order). The input is never reordered: the order lives in the attention masks. Special
  tokens ([CLS], [SEP]) come first in every order, so they are always context and never predicted.
- Two streams through the same layer weights (`BertEncoder`'s `query_stream`): the content stream h, where
  position i attends to every j with rank(j) <= rank(i), itself included (it is BERT's forward when every rank is
  equal); and the query stream g, where i attends to the content of every j with rank(j) < rank(i) - its position,
  never its own token. The prediction of x_i reads g at i.
- g starts from the [MASK] token's embedding at each position (the word table's [MASK] row, plus the position and
  token-type embeddings): XLNet learns a separate start vector w; the [MASK] row is that vector here, so the
  model stays a plain BERT folder and nothing needs a file of its own.
- Partial prediction: only the last 1/K of each order is predicted (K = 6 as XLNet-Large, `predict_fraction`
  1/6 of the non-special tokens, at least one), the rest is context; the content stream serves both.
- Positions are BERT's absolute embeddings, where XLNet has Transformer-XL's relative positions and a memory of the
  previous segment. Why: the model must stay the encoder that BERT's heads, folders and fine-tuning use; with
  absolute positions the query stream learns which position it predicts from its position embedding (MPNet does
  the same), and the memory matters only for texts longer than one segment, which 128-token pretraining never
  has. Fine-tuning reads the content stream with nothing hidden: BERT's forward, BERT's heads.
- The head is BERT's MLM head (transform + decoder tied to the word embeddings) on the query stream, saved as a
  BertForMaskedLM folder.
"""

from __future__ import annotations

import torch
from torch import nn

from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, LMHead, MLMHead
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


class PermutationLMPretraining(PretrainingObjective):
    def __init__(
        self,
        encoder: BertEncoder,
        mlm: MLMHead,
        mask_id: int,
        special_ids: tuple[int, ...],
        predict_fraction: float = 1 / 6,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if encoder.config.family.causal:
            raise ConfigError(
                f"the permutation language model reads both sides; a {encoder.config.family.name} is causal"
            )
        if not 0.0 < predict_fraction <= 1.0:
            raise ConfigError(f"predict_fraction {predict_fraction}: the share of each order predicted, in (0, 1]")
        self.encoder, self.mlm = encoder, mlm
        self.mask_id, self.predict_fraction, self.label_smoothing = mask_id, predict_fraction, label_smoothing
        self.register_buffer("special_ids", torch.tensor(sorted(special_ids), dtype=torch.long), persistent=False)

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm}

    def _context(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real, special, n_predicted): (B, T) real tokens, (B, T) special tokens, (B,) predictions per row."""
        ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)
        special = torch.isin(ids, self.special_ids.to(ids.device)) & real
        plain = (real & ~special).sum(1)  # (B,)
        n_predicted = torch.where(plain > 0, (plain * self.predict_fraction).round().clamp(min=1), 0).long()
        return real, special, n_predicted

    def units(self, batch: Batch) -> dict[str, int]:
        return {"plm": int(self._context(batch)[2].sum())}

    def prepare(self, batch: Batch, noise: torch.Generator) -> Batch:
        """Draw each row's order: specials first, then the other real tokens in random order, padding last."""
        real, special, _ = self._context(batch)
        keys = torch.rand(real.shape, generator=noise).to(real.device)
        keys = torch.where(special, keys - 2, torch.where(real, keys, keys + 2))
        return batch | {"perm_rank": keys.argsort(1).argsort(1)}

    def masks(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(content mask, query mask, targets): (B, 1, T, T) booleans (True = may attend) and (B, T) the predicted
        positions, the last n_predicted of each order."""
        real, special, n_predicted = self._context(batch)
        rank = batch["perm_rank"]  # (B, T)
        targets = real & ~special & (rank >= real.sum(1, keepdim=True) - n_predicted[:, None])
        content = rank[:, None, :] <= rank[:, :, None]  # [b, i, j]: rank(j) <= rank(i)
        eye = torch.eye(rank.shape[1], dtype=torch.bool, device=rank.device)
        query = content & ~(targets[:, :, None] & eye)  # a predicted token never sees itself
        return content[:, None], query[:, None], targets

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads input_ids, attention_mask, token_type_ids and perm_rank (drawn by `prepare`)."""
        ids, mask, types = batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids")
        content, query, targets = self.masks(batch)
        start = self.encoder.embeddings(torch.full_like(ids, self.mask_id), types, batch.get("position_ids"))
        if self.encoder.project is not None:
            start = self.encoder.project(start)
        out = self.encoder(
            ids,
            mask,
            types,
            position_ids=batch.get("position_ids"),
            attn_mask=content,
            query_stream=start,
            query_mask=query,
        )
        logits = self.mlm(out.query_state[targets], self.encoder.embeddings.word_embeddings.weight)  # (N, V)
        loss, correct = vocab_cross_entropy(logits, ids[targets], self.label_smoothing)
        n = int(targets.sum())
        return ObjectiveOutput({"plm": Loss(loss, n)}, {"plm_accuracy": Ratio(correct, n)}, {"plm_logits": logits})
