"""Distillation objectives: a frozen teacher and a student, the loss terms reported as data (pretrain/objectives.py's
protocol), so the pretraining loop trains, logs, plots, checkpoints and resumes them as any objective.

- `DistilBertDistillation` (Sanh et al. 2019; seed 002): `L = α·L_ce + β·L_mlm + γ·L_cos`, α β γ = 5, 2, 1 and
  T = 2 by default, as Hugging Face's `distiller.py`:
  * `ce`: the teacher's soft targets at temperature T against the student's, at the masked positions: KL(p_t^T ‖
    p_s^T) · T², summed over the positions and averaged over the step's masked tokens. KL differs from the soft
    cross-entropy only by the teacher's entropy, a constant: the same gradient; it reads 0 when the student
    matches. T² keeps the soft gradient's size independent of T (Hinton et al. 2015), as the paper does.
  * `mlm`: the student's own MLM loss on the true tokens.
  * `cos`: 1 − cos(h_s, h_t) between the last hidden states, averaged over every real token.
- `TinyBertDistillation` (Jiao et al. 2020; seed 004), general distillation: for a layer map g (students.py),
  * `embedding`: MSE(E_s W, E_t) between the embedding outputs;
  * `hidden`: Σ_m MSE(H_s^m W, H_t^g(m)), the same projection W (student width → teacher width) for every layer
    and the embeddings, as the released TinyBERT code has one `fit_dense` (the paper writes W_e and W_h);
  * `attention`: Σ_m MSE(A_s^m, A_t^g(m)) on the pre-softmax scores, per head, over real (query, key) pairs only:
    the released code zeroes masked keys on both sides but keeps padded queries, whose rows are noise.
  Each MSE is a mean over the width (or the heads) per token (or pair), averaged over the step's real tokens (or
  pairs) and summed over layers, as the code sums its per-layer means.
- The teacher runs under `torch.no_grad`, in eval mode whatever the loop asks of the student, under the loop's
  autocast (bf16 where the CPU has it); its parameters are frozen and left out of the objective's state (so
  checkpoints hold the student alone). The seconds it takes per micro-batch are logged (`teacher_seconds`).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.model import BertEncoder, MLMHead
from bertkit.pretrain.masking import IGNORE_INDEX
from bertkit.pretrain.objectives import Batch, Loss, ObjectiveOutput, PretrainingObjective, Ratio, masked_lm

TEACHER = "teacher."


class Distillation(PretrainingObjective):
    """What both objectives share: the frozen teacher (eval, no gradient, out of the state dict)."""

    def __init__(self, teacher: BertEncoder, teacher_heads: dict[str, nn.Module]):
        super().__init__()
        self.teacher = nn.ModuleDict({"encoder": teacher, **teacher_heads})
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self._register_state_dict_hook(_drop_teacher)

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # dropout off in the teacher, always
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing, unexpected = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in missing if not k.startswith(TEACHER)]
        if strict and (missing or unexpected):
            raise RuntimeError(f"state dict: missing {missing}, unexpected {unexpected}")
        return missing, unexpected

    @torch.no_grad()
    def teach(self, batch: Batch, **kwargs):
        start = time.perf_counter()
        out = self.teacher["encoder"](
            batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"), **kwargs
        )
        return out, time.perf_counter() - start


def _drop_teacher(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + TEACHER)]:
        del state_dict[key]
    return state_dict


def real_count(batch: Batch) -> int:
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def real_pairs(batch: Batch) -> int:
    mask = batch.get("attention_mask")
    if mask is None:
        return batch["input_ids"].shape[0] * batch["input_ids"].shape[1] ** 2
    return int((mask.sum(1) ** 2).sum())


class DistilBertDistillation(Distillation):
    def __init__(
        self,
        teacher: BertEncoder,
        teacher_mlm: MLMHead,
        student: BertEncoder,
        student_mlm: MLMHead,
        alpha_ce: float = 5.0,
        alpha_mlm: float = 2.0,
        alpha_cos: float = 1.0,
        temperature: float = 2.0,
    ):
        super().__init__(teacher, {"mlm": teacher_mlm})
        self.encoder, self.mlm = student, student_mlm
        self.alpha_ce, self.alpha_mlm, self.alpha_cos, self.temperature = alpha_ce, alpha_mlm, alpha_cos, temperature

    def heads(self) -> dict[str, nn.Module]:
        return {"mlm": self.mlm}

    def units(self, batch: Batch) -> dict[str, int]:
        masked = int((batch["labels"] != IGNORE_INDEX).sum())
        return {"ce": masked, "mlm": masked, "cos": real_count(batch)}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        """Reads input_ids, labels, attention_mask and token_type_ids (the teacher's; the student has no types)."""
        t, seconds = self.teach(batch)
        masked = batch["labels"] != IGNORE_INDEX  # (B, T)
        with torch.no_grad():
            t_word = self.teacher["encoder"].embeddings.word_embeddings.weight
            t_logits = self.teacher["mlm"](t.last_hidden_state[masked], t_word).float()  # (N, V)
        s = self.encoder(batch["input_ids"], batch.get("attention_mask"))
        mlm, metrics, s_logits = masked_lm(self.mlm, self.encoder, s.last_hidden_state, batch, 0.0)
        T = self.temperature
        log_p = F.log_softmax(s_logits.float() / T, -1)  # (N, V)
        ce = F.kl_div(log_p, F.log_softmax(t_logits / T, -1), reduction="sum", log_target=True) * T**2
        real = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(masked)
        cos = F.cosine_similarity(s.last_hidden_state[real].float(), t.last_hidden_state[real].float(), dim=-1)
        n, m = int(masked.sum()), int(real.sum())
        metrics["teacher_agreement"] = Ratio(int((s_logits.argmax(-1) == t_logits.argmax(-1)).sum()), n)
        metrics["teacher_seconds"] = Ratio(seconds, 1)
        losses = {
            "ce": Loss(ce, n, self.alpha_ce),
            "mlm": Loss(mlm.sum, n, self.alpha_mlm),
            "cos": Loss((1 - cos).sum(), m, self.alpha_cos),
        }
        return ObjectiveOutput(losses, metrics, {"mlm_logits": s_logits, "teacher_logits": t_logits})


class TinyBertDistillation(Distillation):
    def __init__(self, teacher: BertEncoder, student: BertEncoder, layer_map: list[int]):
        super().__init__(teacher, {})
        tc, sc = teacher.config, student.config
        if tc.num_attention_heads != sc.num_attention_heads:
            raise ValueError("TinyBERT matches attention head by head: the student needs the teacher's head count")
        if len(layer_map) != sc.num_hidden_layers:
            raise ValueError(f"layer map {layer_map} for a student of {sc.num_hidden_layers} layers")
        self.encoder, self.layer_map = student, list(layer_map)
        self.project = nn.Linear(sc.hidden_size, tc.hidden_size)  # TinyBERT's fit_dense: one for every layer
        nn.init.normal_(self.project.weight, std=sc.initializer_range)
        nn.init.zeros_(self.project.bias)

    def heads(self) -> dict[str, nn.Module]:
        return {}

    def units(self, batch: Batch) -> dict[str, int]:
        tokens = real_count(batch)
        return {"embedding": tokens, "hidden": tokens, "attention": real_pairs(batch)}

    def forward(self, batch: Batch) -> ObjectiveOutput:
        t, seconds = self.teach(batch, output_hidden_states=True, output_scores=True)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        s = self.encoder(ids, mask, batch.get("token_type_ids"), output_hidden_states=True, output_scores=True)
        real = mask.bool() if mask is not None else torch.ones_like(ids, dtype=torch.bool)  # (B, T)
        embedding, hidden, attention = tinybert_sums(s, t, real, self.project, self.layer_map)
        losses = {
            "embedding": Loss(embedding, int(real.sum())),
            "hidden": Loss(hidden, int(real.sum())),
            "attention": Loss(attention, int((real.sum(1) ** 2).sum())),
        }
        return ObjectiveOutput(losses, {"teacher_seconds": Ratio(seconds, 1)})


def tinybert_sums(s, t, real: torch.Tensor, project: nn.Module, layer_map: list[int]):
    """TinyBERT's intermediate losses as sums, (embedding, hidden, attention), to be divided by the real tokens,
    tokens and (query, key) pairs: `s` and `t` are the student's and teacher's encoder outputs with hidden states
    and scores, `real` (B, T) the real tokens, `project` student width → teacher width, `layer_map` g (1-based)."""
    pairs = real[:, None, :, None] & real[:, None, None, :]  # (B, 1, T, T)

    def mse(a, b):  # per token: the mean over the width of the squared difference, summed over tokens
        return (project(a[real]).float() - b[real].float()).pow(2).mean(-1).sum()

    embedding = mse(s.hidden_states[0], t.hidden_states[0])
    hidden = sum(mse(s.hidden_states[m], t.hidden_states[g]) for m, g in enumerate(layer_map, 1))
    heads = s.scores[0].shape[1]
    attention = sum(  # `where`, not a product: a masked key's score may be -inf on both sides (NaN apart)
        torch.where(pairs, s.scores[m - 1].float() - t.scores[g - 1].float(), 0.0).pow(2).sum() / heads
        for m, g in enumerate(layer_map, 1)
    )
    return embedding, hidden, attention
