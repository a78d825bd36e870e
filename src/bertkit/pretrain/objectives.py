"""Pretraining objectives: modules that wrap an encoder and its heads and report their losses as data.

The protocol (`Objective`) is all the training loop knows of an objective. It calls `units(batch)` on every
micro-batch of a step before any forward pass, `prepare(batch, noise)` once per micro-batch, then
`objective(batch)`, which returns an `ObjectiveOutput`:

- `losses`: `{name: Loss(sum, count, weight)}` — a loss summed over its units (masked tokens, sequences, real
  tokens...), how many units this micro-batch had, and its weight in the step's loss. The step's loss is
  `Σ weight · sum / step_units[name]`, where `step_units[name]` adds `units(batch)[name]` over the step's
  micro-batches (and ranks): every masked token of a step weighs the same, however the tokens fall into
  micro-batches, so gradient accumulation changes nothing.
- `metrics`: `{name: Ratio(numerator, denominator)}` — what the log shows: numerators and denominators are
  summed over the logging window (and the ranks) before dividing.
- `tensors`: named tensors for tools and tests (the MLM logits, ELECTRA's replaced tokens); the loop ignores them.

The loop logs `NAME_loss` for every loss and every metric by its name, sums and plots them, with no objective
named inside it: a new objective (a span boundary loss, a distillation loss, an ERNIE 2.0 task) is a new module,
not a new field in four places. Batches are dicts of named tensors, so an objective asks for the optional fields
it needs (span boundaries, task ids) by name. `PretrainingObjective` gives the protocol's defaults.

The objectives here:
- `BertPretraining(encoder, mlm, nsp)` is BERT's, `L = L_mlm + L_nsp` (the notes' 完形填空 and 句子关系预测);
  with `nsp=None` it is MLM alone (RoBERTa), or a sentence-order head can be passed as `nsp` for ALBERT's SOP
  (the same two-way linear layer on the pooled [CLS]).
- `ElectraPretraining` is ELECTRA's replaced-token detection (below, with the choice each line makes).
- `spanbert.SpanBertPretraining` is SpanBERT's MLM plus span boundary objective; its head is not a transformers
  head, so it writes its own file into the model folder (`save_extra`).

Choices:
- The MLM head runs only at the masked positions: gathering them first means the (N, V) vocabulary
  projection covers 15% of the tokens, not all of them. That projection is most of the work in a small
  model with a 21k vocabulary, so this is the largest single speed-up over a head run on every position.
- The MLM loss is `vocab_cross_entropy`: the vocabulary softmax in row chunks that stay in cache, from the
  (bf16 under autocast) logits, its gradient computed straight into their dtype. On CPU that is ~3x less time
  than upcasting the (N, V) logits and running `F.cross_entropy` (measured at N = 614, V = 21,128: 100 ->
  34 ms forward + backward), and it never holds an (N, V) fp32 copy or log-softmax.
- Accuracy at [MASK] (`cloze_accuracy`) needs to know which inputs were [MASK]: the evaluation passes that as
  the batch field `is_mask`; in training it is not computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import ConfigError
from bertkit.model import BertEncoder, MLMHead, NSPHead, RTDHead
from bertkit.pretrain.masking import IGNORE_INDEX

Batch = dict[str, torch.Tensor]


class Loss(NamedTuple):
    sum: torch.Tensor  # () summed over this micro-batch's units
    count: int  # units in this micro-batch (the log divides the window's sums by the window's counts)
    weight: float = 1.0  # the step's loss adds weight · sum / the step's units


class Ratio(NamedTuple):
    numerator: float
    denominator: float


@dataclass
class ObjectiveOutput:
    losses: dict[str, Loss]
    metrics: dict[str, Ratio] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # for tools and tests; the loop ignores them

    def total(self, step_units: dict[str, int]) -> torch.Tensor:
        """The step's loss: `Σ weight · sum / step_units[name]`, summed in the order the objective gave its losses
        (a weight of 1 multiplies nothing, so a single loss is exactly sum / units)."""
        total = None
        for name, loss in self.losses.items():
            units = max(1, step_units[name])
            term = loss.sum / units if loss.weight == 1 else loss.weight * loss.sum / units
            total = term if total is None else total + term
        if total is None:
            raise ValueError("an objective returned no losses")
        return total


@runtime_checkable
class Objective(Protocol):
    """What the training loop needs of a pretraining objective (see the module docstring)."""

    encoder: BertEncoder  # the model kept: saved as OUT/model with `heads()`

    def heads(self) -> dict[str, nn.Module]:
        """The heads saved with the encoder in OUT/model, by bertkit head name ("mlm", "nsp", "rtd", ...)."""
        ...

    def extra_models(self) -> dict[str, tuple[BertEncoder, dict[str, nn.Module]]]:
        """Other models saved beside OUT/model, by folder name (ELECTRA's generator)."""
        ...

    def save_extra(self, folder: Path) -> None:
        """Write the files of heads that are not transformers heads (SpanBERT's span boundary head) into the model
        folder `folder`, after `hf.save_pretrained` has written it: OUT/model and every checkpoint's model."""
        ...

    def units(self, batch: Batch) -> dict[str, int]:
        """For each loss, the units it is averaged over in this (whole, not per-rank) micro-batch; called before
        any forward pass of the step, so the step's totals are known when its first loss is scaled."""
        ...

    def prepare(self, batch: Batch, noise: torch.Generator) -> Batch:
        """The micro-batch with the fields the objective draws per step (ELECTRA's sampling uniforms), drawn
        for the whole batch from `noise`, seeded by (seed, step, micro-batch) alone: the same whatever the
        number of processes, and again after a resume."""
        ...

    def __call__(self, batch: Batch) -> ObjectiveOutput: ...


class PretrainingObjective(nn.Module):
    """The protocol's defaults: no extra models, no extra files, nothing drawn per step."""

    def extra_models(self) -> dict[str, tuple[BertEncoder, dict[str, nn.Module]]]:
        return {}

    def save_extra(self, folder: Path) -> None:
        pass

    def prepare(self, batch: Batch, noise: torch.Generator) -> Batch:
        return batch


def masked_lm(
    mlm: MLMHead, encoder: BertEncoder, hidden: torch.Tensor, batch: Batch, label_smoothing: float
) -> tuple[Loss, dict[str, Ratio], torch.Tensor]:
    """The MLM loss at the masked positions (labels != -100), its accuracy, and the (N, V) logits; with the batch
    field `is_mask` (evaluation) also the accuracy at the positions shown as [MASK]."""
    labels = batch["labels"]
    masked = labels != IGNORE_INDEX  # (B, T)
    targets = labels[masked]  # (N,)
    logits = mlm(hidden[masked], encoder.embeddings.word_embeddings.weight)  # (N, V)
    loss, correct = vocab_cross_entropy(logits, targets, label_smoothing)
    n = int(targets.numel())
    metrics = {"mlm_accuracy": Ratio(correct, n)}
    if "is_mask" in batch:
        cloze = batch["is_mask"][masked]  # (N,)
        right = (logits.argmax(-1) == targets)[cloze]
        metrics["cloze_accuracy"] = Ratio(int(right.sum()), int(cloze.sum()))
    return Loss(loss, n), metrics, logits


def masked_count(batch: Batch) -> int:
    return int((batch["labels"] != IGNORE_INDEX).sum())


class BertPretraining(PretrainingObjective):
    def __init__(self, encoder: BertEncoder, mlm: MLMHead, nsp: NSPHead | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if nsp is not None and encoder.pooler is None:
            raise ValueError("an NSP/SOP head needs the encoder's pooler")
        self.encoder, self.mlm, self.nsp = encoder, mlm, nsp
        self.label_smoothing = label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm} | ({"nsp": self.nsp} if self.nsp is not None else {})

    def units(self, batch: Batch) -> dict[str, int]:
        # MLM: per masked token of the step; NSP / SOP: per sequence
        return {"mlm": masked_count(batch), "nsp": len(batch["input_ids"])}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads input_ids (masked tokens already replaced), labels (original ids at masked positions, -100
        elsewhere), and if present attention_mask, token_type_ids, position_ids and next_sentence_label
        (1 = B is a random sentence, or the two segments are swapped for SOP)."""
        ids, mask, types = batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids")
        out = self.encoder(ids, mask, types, position_ids=batch.get("position_ids"))
        mlm, metrics, logits = masked_lm(self.mlm, self.encoder, out.last_hidden_state, batch, self.label_smoothing)
        losses = {"mlm": mlm}
        nsp_label = batch.get("next_sentence_label")
        if self.nsp is not None and nsp_label is not None:
            nsp_logits = self.nsp(out.pooler_output).float()  # (B, 2)
            nsp_loss = F.cross_entropy(nsp_logits, nsp_label, reduction="sum", label_smoothing=self.label_smoothing)
            losses["nsp"] = Loss(nsp_loss, len(nsp_label))
            metrics["nsp_accuracy"] = Ratio(int((nsp_logits.argmax(-1) == nsp_label).sum()), len(nsp_label))
        return ObjectiveOutput(losses, metrics, {"mlm_logits": logits})


class ElectraPretraining(PretrainingObjective):
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
      discriminator into the generator, which learns from its MLM loss alone. `prepare` draws u (the batch
      field `sampling_u`) per step from the seed for the whole global batch, so the samples do not depend
      on how many processes share the batch, and a resumed run draws the same ones.
    - Every masked position is replaced by its sample, also the 15% left unmasked in the input (ELECTRA
      masks 85% / keeps 15%, no random tokens: `MaskingConfig(mask_token_prob=0.85, random_token_prob=0)`).
    - A sample equal to the original counts as original: the label is `sampled != original`.
    - The discriminator's loss is the sigmoid cross-entropy over every real token ([CLS] and [SEP] too),
      averaged over real tokens, as the original weights by the input mask.
    - The RTD head's output bias starts at the log-odds of `replaced_prior` (the masked share: at first nearly
      every sample differs), not at 0 (p = 0.5). From 0 the first steps' gradient is the same "fewer replaced"
      for every token; Adam turns it into sign-sized, rank-one updates of every weight matrix along the
      tokens' common direction, and a deep post-LayerNorm stack amplifies that direction until every token's
      last hidden state is the same (measured at 12 x 128: token-to-token spread 0.8 -> 0.00 by layer 7 within
      60-80 steps; RTD loss pinned at the base-rate entropy). The original avoids it with 10k warm-up steps,
      during which the base rate is fitted at a learning rate ~1000x below the peak; a run of a few hundred
      steps cannot, so the head starts at the base rate. `rtd_base_rate_loss` logs that entropy.
    """

    def __init__(
        self,
        generator: BertEncoder,
        mlm: MLMHead,
        discriminator: BertEncoder,
        rtd: RTDHead,
        disc_weight: float = 50.0,
        label_smoothing: float = 0.0,
        replaced_prior: float = 0.15,
    ):
        super().__init__()
        if not 0.0 < replaced_prior < 1.0:
            raise ConfigError(f"replaced_prior {replaced_prior}: the expected replaced share, in (0, 1)")
        if generator.config.hidden_size >= discriminator.config.hidden_size:
            raise ConfigError(
                f"the generator (hidden {generator.config.hidden_size}) must be smaller than the discriminator "
                f"(hidden {discriminator.config.hidden_size}); ELECTRA uses 1/4 to 1/2 of its width"
            )
        if generator.config.embedding_width != discriminator.config.embedding_width:
            raise ConfigError("the generator and the discriminator share embeddings, so need the same embedding_size")
        generator.embeddings = discriminator.embeddings  # one module: tables and LayerNorm shared
        with torch.no_grad():  # the base rate's log-odds: no common-mode first steps (docstring)
            rtd.prediction.bias.fill_(torch.special.logit(torch.tensor(replaced_prior)).item())
        self.encoder, self.rtd = discriminator, rtd
        self.generator, self.mlm = generator, mlm
        self.disc_weight, self.label_smoothing = disc_weight, label_smoothing

    def heads(self) -> dict[str, nn.Module]:
        return {"rtd": self.rtd}  # OUT/model is the discriminator, ElectraForPreTraining

    def extra_models(self) -> dict[str, tuple[BertEncoder, dict[str, nn.Module]]]:
        return {"generator": (self.generator, {"mlm": self.mlm})}  # ElectraForMaskedLM, for fill-mask

    def units(self, batch: Batch) -> dict[str, int]:
        # the generator's MLM per masked token; the discriminator per real token
        return {"mlm": masked_count(batch), "rtd": int(batch["attention_mask"].sum())}

    def prepare(self, batch: Batch, noise: torch.Generator) -> Batch:
        return batch | {"sampling_u": torch.rand(batch["input_ids"].shape, generator=noise)}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads what `BertPretraining` reads (but no sentence labels) and `sampling_u`, (B, T) uniforms in
        [0, 1), one per position; without it they are drawn here from torch's generator."""
        input_ids, labels = batch["input_ids"], batch["labels"]
        attention_mask, token_type_ids = batch.get("attention_mask"), batch.get("token_type_ids")
        position_ids = batch.get("position_ids")
        masked = labels != IGNORE_INDEX  # (B, T)
        gen = self.generator(input_ids, attention_mask, token_type_ids, position_ids=position_ids)
        mlm, metrics, logits = masked_lm(self.mlm, self.generator, gen.last_hidden_state, batch, self.label_smoothing)

        with torch.no_grad():  # the sample is data for the discriminator: no gradient into the generator
            u = batch.get("sampling_u")
            u = u if u is not None else torch.rand(masked.shape, device=logits.device)
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
        n, n_replaced = int(truth.numel()), int(truth.sum())
        p = torch.tensor([n_replaced, n - n_replaced], dtype=torch.float64) / max(1, n)
        metrics |= {
            "rtd_accuracy": Ratio(int((flagged == truth).sum()), n),  # replaced or original, told right
            "rtd_recall": Ratio(int((flagged & truth).sum()), n_replaced),  # of the replaced, how many flagged
            "replaced_share": Ratio(n_replaced, n),  # how many the generator's samples changed
            # The RTD loss of a discriminator that knows only the replaced share p: n · H(p) per micro-batch
            # (H(p) = -p log p - (1-p) log(1-p), the best constant guess). Named `_loss` so that it is logged
            # and drawn beside `rtd_loss`, on the loss panel; it is not trained. Averaged over micro-batches it
            # is at most the entropy of the window's pooled share, so `rtd_loss` below it is below both.
            "rtd_base_rate_loss": Ratio(n * float(torch.special.entr(p).sum()), n),
        }
        return ObjectiveOutput(
            {"mlm": mlm, "rtd": Loss(rtd_loss, n, self.disc_weight)},
            metrics,
            {"mlm_logits": logits, "rtd_labels": replaced, "rtd_input": corrupted},
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
