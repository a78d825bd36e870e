"""SpanBERT's span boundary objective (Joshi et al. 2020; seed 002): `L = L_mlm + L_sbo`.

Every token x_i of a masked span x_s..x_e is predicted twice: by the MLM head from its own output state, and by the
span boundary head from the output states of the two tokens just outside the span, x_{s-1} and x_{e+1}, and a
position embedding p_{i-s+1} of its place in the span (`SpanBoundaryHead`). The span masking unit with boundaries
(`dataset.MASKING_UNITS["span_boundaries"]`) puts s - 1, e + 1 and i - s + 1 in the batch as `sbo_left`,
`sbo_right` and `sbo_pos`.

Choices (checked against facebookresearch/SpanBERT, `BertPairTargetPredictionHead` and `MLPWithLayerNorm`):
- The head is two layers, each linear → GeLU → LayerNorm: `h = LN(GeLU(W1 · [x_{s-1}; x_{e+1}; p_{i-s+1}]))`,
  `y = LN(GeLU(W2 · h))`, then the vocabulary projection tied to the word embeddings, with the head's own bias.
  The second layer goes to the embedding width, so a factorised (ALBERT-style) model ties it as its MLM head does.
- Position embeddings have `max_span` rows (the recipe's, 10) of `SBO_POSITION_SIZE` = 200 wide, as the original's
  `position_embedding_size`. A span is at most `max_span` *words*, so a span of long words can be longer in
  tokens: its tokens past `max_span` share the last row (the original truncates its targets at 20 tokens
  instead; clamping keeps every span token a target).
- Both losses are summed over the span tokens and averaged over the step's span tokens (`units`: "mlm" and "sbo"),
  with weight 1 each, as the paper sums them; single segments (objective "full"), no NSP.
- Its gradient reaches the encoder only through the boundary states (and the tied word embeddings): the head never
  reads the states of the span's own tokens.
- The head is not a transformers head, so it is saved beside the Hugging Face files as `sbo.safetensors` (as the
  CRF is): OUT/model still loads in `BertForMaskedLM` / `BertModel` unchanged, and `--init` reads it back.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bertkit.hf import load_side_module, save_side_tensors
from bertkit.model import ACT2FN, BertEncoder, LayerNorm, MLMHead, init_weights
from bertkit.pretrain.masking import IGNORE_INDEX
from bertkit.pretrain.objectives import (
    Batch,
    Loss,
    ObjectiveOutput,
    PretrainingObjective,
    Ratio,
    masked_lm,
    vocab_cross_entropy,
)

SBO_FILE = "sbo.safetensors"
SBO_POSITION_SIZE = 200  # SpanBERT's position_embedding_size


class SpanBoundaryHead(nn.Module):
    """[x_{s-1}; x_{e+1}; p_{i-s+1}] → linear, GeLU, LayerNorm (H) → linear, GeLU, LayerNorm (E) → tied decoder."""

    def __init__(self, config, max_span: int):
        super().__init__()
        H, E = config.hidden_size, config.embedding_width
        self.position_embeddings = nn.Embedding(max_span, SBO_POSITION_SIZE)
        self.dense1 = nn.Linear(2 * H + SBO_POSITION_SIZE, H)
        self.norm1 = LayerNorm(H, eps=config.layer_norm_eps)
        self.dense2 = nn.Linear(H, E)
        self.norm2 = LayerNorm(E, eps=config.layer_norm_eps)
        self.act = ACT2FN["gelu"]  # the original's gelu, whatever the encoder's activation
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(
        self, left: torch.Tensor, right: torch.Tensor, place: torch.Tensor, word_embeddings: torch.Tensor
    ) -> torch.Tensor:
        # left, right: (N, H) boundary states; place: (N,) 1-based place in the span; word_embeddings (V, E)
        p = self.position_embeddings(place.clamp(1, self.position_embeddings.num_embeddings) - 1)  # (N, P)
        h = self.norm1(self.act(self.dense1(torch.cat([left, right, p.to(left.dtype)], -1))))  # (N, H)
        y = self.norm2(self.act(self.dense2(h)))  # (N, E)
        return nn.functional.linear(y, word_embeddings, self.bias)  # (N, V)

    def save(self, folder: str | Path) -> None:
        """Write `sbo.safetensors` into `folder`, with the sizes in its metadata."""
        sizes = {"max_span": str(self.position_embeddings.num_embeddings), "position_size": str(SBO_POSITION_SIZE)}
        save_side_tensors(Path(folder) / SBO_FILE, self.state_dict(), sizes)

    def load(self, folder: str | Path) -> None:
        """Read `sbo.safetensors`; a missing, unknown or mis-shaped tensor is a CheckpointError naming it."""
        load_side_module(self, Path(folder) / SBO_FILE, "the model's sizes or the recipe's max_span differ")


def span_count(batch: Batch) -> int:
    return int((batch["sbo_pos"] > 0).sum())


class SpanBertPretraining(PretrainingObjective):
    def __init__(self, encoder: BertEncoder, mlm: MLMHead, sbo: SpanBoundaryHead, label_smoothing: float = 0.0):
        super().__init__()
        self.encoder, self.mlm, self.sbo = encoder, mlm, sbo
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm}  # the SBO head is not a transformers head: `save_extra` writes it

    def save_extra(self, folder: Path) -> None:
        self.sbo.save(folder)

    def units(self, batch: Batch) -> dict[str, int]:
        # both per span token (every masked token is one: the masking is by spans)
        return {"mlm": int((batch["labels"] != IGNORE_INDEX).sum()), "sbo": span_count(batch)}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads what `BertPretraining` reads (no sentence labels) and the span fields `sbo_left`, `sbo_right`,
        `sbo_pos` (B, T) of the span masking unit with boundaries."""
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        out = self.encoder(ids, mask, batch.get("token_type_ids"), position_ids=batch.get("position_ids"))
        hidden = out.last_hidden_state  # (B, T, H)
        mlm, metrics, logits = masked_lm(self.mlm, self.encoder, hidden, batch, self.label_smoothing)
        place = batch["sbo_pos"].long()  # (B, T)
        span = place > 0  # (B, T)
        rows = torch.arange(len(ids), device=ids.device)[:, None].expand_as(place)[span]  # (N,)
        left = hidden[rows, batch["sbo_left"].long()[span]]  # (N, H)
        right = hidden[rows, batch["sbo_right"].long()[span]]  # (N, H)
        targets = batch["labels"][span]  # (N,)
        sbo_logits = self.sbo(left, right, place[span], self.encoder.embeddings.word_embeddings.weight)  # (N, V)
        sbo_loss, correct = vocab_cross_entropy(sbo_logits, targets, self.label_smoothing)
        n = int(targets.numel())
        metrics["sbo_accuracy"] = Ratio(correct, n)
        return ObjectiveOutput(
            {"mlm": mlm, "sbo": Loss(sbo_loss, n)}, metrics, {"mlm_logits": logits, "sbo_logits": sbo_logits}
        )
