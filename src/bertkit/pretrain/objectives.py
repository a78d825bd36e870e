"""Pretraining objectives: modules that wrap an encoder and its heads and return losses.

`BertPretraining(encoder, mlm, nsp)` is BERT's objective, `L = L_mlm + L_nsp` (the notes' 完形填空 and
句子关系预测); with `nsp=None` it is MLM alone (RoBERTa, or a sentence-order head can be passed as `nsp`
for ALBERT's SOP — the head is the same two-way linear layer on the pooled [CLS]).

Choices:
- The MLM head runs only at the masked positions: gathering them first means the (N, V) vocabulary
  projection covers 15% of the tokens, not all of them. That projection is most of the work in a small
  model with a 21k vocabulary, so this is the largest single speed-up over a head run on every position.
- `ElectraPretraining` is ELECTRA's replaced-token detection (below, with the choice each line makes).
- The MLM loss is `vocab_cross_entropy`: the vocabulary softmax in row chunks that stay in cache, from the
  (bf16 under autocast) logits, its gradient computed straight into their dtype. On CPU that is ~3x less time
  than upcasting the (N, V) logits and running `F.cross_entropy` (measured at N = 614, V = 21,128: 100 ->
  34 ms forward + backward), and it never holds an (N, V) fp32 copy or log-softmax.
- Losses come back as *sums* with their counts. The training loop divides by the number of masked tokens
  (and sequences) in the whole optimizer step, so gradient accumulation weights every masked token
  equally, however the tokens fall into micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, MLMHead, NSPHead, RTDHead
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
    # ELECTRA's discriminator, over every real token (0 / None for the other objectives):
    rtd_loss_sum: torch.Tensor | None = None  # () summed binary cross-entropy, before the weight λ
    rtd_weight: float = 0.0  # λ: the step's loss adds λ · rtd_loss_sum / real tokens
    rtd_count: int = 0  # real tokens scored
    rtd_correct: int = 0  # tokens classified right (replaced or original)
    rtd_replaced: int = 0  # tokens the generator's sample changed
    rtd_detected: int = 0  # of those, how many the discriminator flagged
    rtd_labels: torch.Tensor | None = None  # (B, T) bool, True where the input was replaced (tests)
    rtd_input: torch.Tensor | None = None  # (B, T) the discriminator's input: the generator's samples filled in


class BertPretraining(nn.Module):
    def __init__(self, encoder: BertEncoder, mlm: MLMHead, nsp: NSPHead | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if nsp is not None and encoder.pooler is None:
            raise ValueError("an NSP/SOP head needs the encoder's pooler")
        self.encoder, self.mlm, self.nsp = encoder, mlm, nsp
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm} | ({"nsp": self.nsp} if self.nsp is not None else {})

    def extra_models(self) -> dict[str, tuple[BertEncoder, dict[str, nn.Module]]]:
        """Models saved beside OUT/model, by folder name: none for BERT."""
        return {}

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
        mlm_loss, mlm_correct = vocab_cross_entropy(logits, targets, self.label_smoothing)
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
            mlm_correct=mlm_correct,
            nsp_loss_sum=nsp_loss,
            nsp_count=nsp_count,
            nsp_correct=nsp_correct,
            mlm_logits=logits if return_logits else None,
        )


class ElectraPretraining(nn.Module):
    """ELECTRA (Clark et al. 2020; seed 002): a small MLM generator fills the masked positions with samples,
    and the discriminator — the model kept for fine-tuning — tells for every token whether it was replaced.
    `L = L_mlm + λ · L_disc`, λ = 50.

    Choices, line by line below (checked against google-research/electra and richarddwang/electra_pytorch,
    the PyTorch reimplementation that reproduced the paper's GLUE):
    - The generator is `generator_size` of the discriminator's width (`electra_generator_config`); the paper
      finds 1/4-1/2 best, though the released ELECTRA-Small used a full-size one (google-research/electra #39).
    - Only the embeddings are shared, and all of them: token, position and segment tables *and* their
      LayerNorm (one `Embeddings` module), as the original with `shared_embeddings`; each model keeps its
      own E → H projection and its own layers.
    - The generator's MLM decoder is tied to those shared word embeddings with its own bias, as the
      original's generator; the discriminator has no MLM decoder at all.
    - Replacements are sampled from the generator's softmax at temperature 1 by inverse CDF (the first token
      whose cumulative probability passes a uniform u: an exact sample, as Gumbel-max is, from one number per
      position instead of one per vocabulary entry), under `no_grad`: no gradient flows from the
      discriminator into the generator, which learns from its MLM loss alone. The loop passes u
      (`sampling_u`, drawn per step from the seed for the whole global batch), so the samples do not depend
      on how many processes share the batch, and a resumed run draws the same ones.
    - Every masked position is replaced by its sample, also the 15% left unmasked in the input (ELECTRA
      masks 85% / keeps 15%, no random tokens: `MaskingConfig(mask_token_prob=0.85, random_token_prob=0)`).
    - A sample equal to the original counts as original: the label is `sampled != original`.
    - The discriminator's loss is the sigmoid cross-entropy over every real token ([CLS] and [SEP] too),
      averaged over real tokens, as the original weights by the input mask.
    """

    def __init__(
        self,
        generator: BertEncoder,
        mlm: MLMHead,
        discriminator: BertEncoder,
        rtd: RTDHead,
        disc_weight: float = 50.0,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if generator.config.hidden_size >= discriminator.config.hidden_size:
            raise ConfigError(
                f"the generator (hidden {generator.config.hidden_size}) must be smaller than the discriminator "
                f"(hidden {discriminator.config.hidden_size}); ELECTRA uses 1/4 to 1/2 of its width"
            )
        if generator.config.embedding_width != discriminator.config.embedding_width:
            raise ConfigError("the generator and the discriminator share embeddings, so need the same embedding_size")
        generator.embeddings = discriminator.embeddings  # one module: tables and LayerNorm shared
        self.encoder, self.rtd = discriminator, rtd
        self.generator, self.mlm = generator, mlm
        self.disc_weight, self.label_smoothing = disc_weight, label_smoothing
        self.nsp = None

    takes_sampling_u = True  # the loop passes one uniform per position (see `forward`)

    def heads(self) -> dict[str, nn.Module]:
        return {"rtd": self.rtd}  # OUT/model is the discriminator, ElectraForPreTraining

    def extra_models(self) -> dict[str, tuple[BertEncoder, dict[str, nn.Module]]]:
        return {"generator": (self.generator, {"mlm": self.mlm})}  # ElectraForMaskedLM, for fill-mask

    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T) with masked tokens already replaced
        labels: torch.Tensor,  # (B, T) original ids at masked positions, -100 elsewhere
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,  # unused: ELECTRA has no sentence-level task
        return_logits: bool = False,
        position_ids: torch.Tensor | None = None,
        sampling_u: torch.Tensor | None = None,  # (B, T) uniforms in [0, 1): one per position; None: drawn here
    ) -> PretrainingOutput:
        masked = labels != IGNORE_INDEX  # (B, T)
        targets = labels[masked]  # (N,)
        gen = self.generator(input_ids, attention_mask, token_type_ids, position_ids=position_ids)
        logits = self.mlm(gen.last_hidden_state[masked], self.generator.embeddings.word_embeddings.weight)  # (N, V)
        mlm_loss, mlm_correct = vocab_cross_entropy(logits, targets, self.label_smoothing)

        with torch.no_grad():  # the sample is data for the discriminator: no gradient into the generator
            u = sampling_u if sampling_u is not None else torch.rand(masked.shape, device=logits.device)
            sampled = sample_softmax(logits, u[masked])
            original = torch.where(masked, labels, input_ids)  # (B, T)
            corrupted = original.clone()
            corrupted[masked] = sampled
            replaced = corrupted != original  # (B, T): a sample equal to the original is original
        real = attention_mask.bool() if attention_mask is not None else torch.ones_like(masked)
        disc = self.encoder(corrupted, attention_mask, token_type_ids, position_ids=position_ids)
        rtd_logits = self.rtd(disc.last_hidden_state[real]).float()  # (M,) one per real token
        truth = replaced[real]
        rtd_loss = F.binary_cross_entropy_with_logits(rtd_logits, truth.float(), reduction="sum")
        flagged = rtd_logits > 0
        return PretrainingOutput(
            mlm_loss_sum=mlm_loss,
            mlm_count=int(targets.numel()),
            mlm_correct=mlm_correct,
            nsp_loss_sum=mlm_loss.new_zeros(()),
            nsp_count=0,
            nsp_correct=0,
            mlm_logits=logits if return_logits else None,
            rtd_loss_sum=rtd_loss,
            rtd_weight=self.disc_weight,
            rtd_count=int(truth.numel()),
            rtd_correct=int((flagged == truth).sum()),
            rtd_replaced=int(truth.sum()),
            rtd_detected=int((flagged & truth).sum()),
            rtd_labels=replaced if return_logits else None,
            rtd_input=corrupted if return_logits else None,
        )


# Rows of the vocabulary softmax per chunk: about 2 MB of fp32 on CPU (it stays in L2 while a chunk's max,
# exp and sum pass over it), large chunks on a GPU, whose kernels want work and whose memory is fast.
CE_CHUNK_ELEMENTS = {"cpu": 2**19, "cuda": 2**26}


def vocab_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """The summed cross-entropy over (N, V) logits of any float dtype, what `F.cross_entropy(logits.float(),
    targets, reduction="sum", label_smoothing=ε)` gives, and how many rows score their target highest (a tie
    counts as right; a max and a gather, cheaper than argmax). Both come from fp32 row chunks
    (`CE_CHUNK_ELEMENTS`) instead of the whole (N, V) at once.

    The forward keeps only the logits (already stored for the decoder's backward) and one log-sum-exp per
    row; the backward recomputes each chunk's softmax from them and writes `g · (softmax − q)` straight in
    the logits' dtype, q being the smoothed target distribution: (1 − ε) on the target plus ε / V on every
    entry. No (N, V) fp32 tensor is ever made.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits (N, V) and targets (N,), got {tuple(logits.shape)} and {tuple(targets.shape)}")
    budget = CE_CHUNK_ELEMENTS["cuda" if logits.is_cuda else "cpu"]
    chunk = max(1, budget // max(1, logits.shape[1]))
    loss, correct = _VocabCrossEntropy.apply(logits, targets, float(label_smoothing), chunk)
    return loss, int(correct)


class _VocabCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, eps, chunk):
        N, V = logits.shape
        lse = torch.empty(N, dtype=torch.float32, device=logits.device)  # log Σ exp, per row
        loss = torch.zeros((), dtype=torch.float32, device=logits.device)
        correct = torch.zeros((), dtype=torch.long, device=logits.device)
        for s in range(0, N, chunk):
            x, t = logits[s : s + chunk].float(), targets[s : s + chunk]
            top = x.amax(-1)  # (n,)
            picked = x.gather(1, t[:, None]).squeeze(1)  # (n,) the target's logit
            correct += (picked >= top).sum()  # a tie at the top counts as right
            row_lse = (x - top[:, None]).exp_().sum(-1).log_().add_(top)
            lse[s : s + chunk] = row_lse
            nll = row_lse - picked
            if eps:  # the smoothed target: (1 − ε) · nll + ε · mean over the vocabulary of −log p
                nll = (1 - eps) * nll + eps * (row_lse - x.mean(-1))
            loss += nll.sum()
        ctx.save_for_backward(logits, targets, lse)
        ctx.eps, ctx.chunk = eps, chunk
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        logits, targets, lse = ctx.saved_tensors
        eps, chunk = ctx.eps, ctx.chunk
        V = logits.shape[1]
        grad = torch.empty_like(logits)
        for s in range(0, logits.shape[0], chunk):
            t = targets[s : s + chunk]
            p = torch.sub(logits[s : s + chunk], lse[s : s + chunk, None]).exp_()  # fp32 softmax
            p[torch.arange(len(t), device=p.device), t] -= 1 - eps
            if eps:
                p -= eps / V
            grad[s : s + chunk] = p.mul_(grad_loss)
        return grad, None, None, None


def sample_softmax(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row from softmax(logits) (N, V), by inverse CDF from the uniforms u (N,) in [0, 1): the
    first token whose cumulative probability exceeds u."""
    cdf = logits.float().softmax(-1).cumsum(-1)
    u = u.to(cdf.device, cdf.dtype).unsqueeze(-1) * cdf[:, -1:]  # scaled: the sum is 1 up to rounding
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)


def electra_generator_config(discriminator, size: float):
    """The generator's config: `size` × the discriminator's hidden width (heads of 64, FFN 4×), the same
    depth and embedding width (the embeddings are shared)."""
    from dataclasses import replace

    if not 0.0 < size < 1.0:
        raise ConfigError(
            f"--generator-size {size}: the generator is a fraction of the discriminator's width, in (0, 1) "
            "(ELECTRA: 0.25 to 0.5)"
        )
    hidden = max(16, int(round(discriminator.hidden_size * size / 16)) * 16)
    heads = max(1, hidden // 64)
    return replace(
        discriminator,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        embedding_size=discriminator.embedding_width,
    )
