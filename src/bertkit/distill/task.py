"""Task-specific distillation: a fine-tuned teacher (`bertkit finetune`'s OUT/model) teaches a student on the same
task, trained by the fine-tuning loop (`finetune`) with the distiller's loss in place of the hard one, so the run
has the same dev selection, early stopping, test scoring, log, curves and OUT/model as any fine-tuning.

Choices:
- Prediction layer (`soft_loss_sum`): KL(p_t^T ‖ p_s^T) · T² per unit that `loss_units` counts, the same units as
  the hard loss, so gradient accumulation, the log and the dev loss mean the same thing as in `finetune`:
  classification and multiple choice per example (empty choice slots out of both softmaxes), tagging per
  labelled token on the emission scores (with a CRF as without: the CRF's transitions start as the teacher's,
  and the emissions are what the encoder learns; a CRF teacher implies `--crf`), QA per window, the start and
  end distributions averaged (padding out of both), regression the squared error against the teacher's
  prediction (no temperature).
  KL differs from the soft cross-entropy only by the teacher's entropy: the same gradient, and it reads 0 when
  the student matches. T is 1 by default (TinyBERT's prediction-layer stage); T² keeps the gradient's size.
- `--alpha-hard` adds that many times the usual hard loss; 0 by default: pure soft targets, as TinyBERT.
- The teacher runs in eval mode under `torch.no_grad` (and bf16 autocast where the loop uses it) on the
  student's batch: the vocabularies are equal token for token (checked), so the features are the teacher's too.
- TinyBERT's two stages: `intermediate_stage` first matches the embeddings, hidden states (one projection) and
  attention scores (objectives.tinybert_sums, the general distillation's math) on the task's training inputs for
  `--intermediate-epochs`, and writes the encoder to OUT/intermediate (no dev selection: the head is untrained,
  the last epoch is kept); then the prediction layer is distilled from that folder into OUT/model. The default is
  3 epochs for tinybert (the paper's 10 to 20 run over a set augmented 20-fold; over the plain set, each epoch
  costs a fine-tuning epoch plus a teacher pass) and 0 for distilbert (its student starts as the teacher's layers).
  Each intermediate step is one micro-batch of `--batch-size` (no accumulation), AdamW at `--lr` with the same
  warm-up and linear decay as fine-tuning, in one process (torchrun is refused for it). Without the stage,
  OUT/intermediate holds the DistilBERT student as made: the folder the prediction stage starts from.
- The DistilBERT student without `--student` is the teacher's encoder's layers (`distilbert_encoder`), with a
  fresh head: a DistilBERT classifies from its first token, where a BERT teacher reads its pooler, so the
  teacher's head has no place to go. TinyBERT distils a general-distilled student: `--student` is required.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import BertkitError
from bertkit.finetune.model import TaskModel
from bertkit.finetune.tasks import TaskData

PAD_SCORE = -1e4  # padding and empty choice slots: far below any real logit, finite on both sides (no NaN in KL)
INTERMEDIATE_EPOCHS = {"distilbert": 0, "tinybert": 3}


def soft_kl_sum(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Σ over rows of KL(softmax(teacher / T) ‖ softmax(student / T)) · T²; (N, C) logits each."""
    T = temperature
    log_s, log_t = F.log_softmax(student.float() / T, -1), F.log_softmax(teacher.float() / T, -1)
    return F.kl_div(log_s, log_t, reduction="sum", log_target=True) * T**2


def soft_loss_sum(kind: str, student: torch.Tensor, teacher: torch.Tensor, batch: dict, temperature: float):
    """The prediction-layer loss summed over `loss_units(kind, batch)`; logits as `TaskModel.forward` gives them."""
    if kind == "regression":
        return (student.float()[:, 0] - teacher.float()[:, 0]).pow(2).sum()
    if kind == "qa":  # (B, T, 2): a distribution over positions for the start and one for the end
        pad = ~batch["attention_mask"].bool()[..., None]
        s, t = student.float().masked_fill(pad, PAD_SCORE), teacher.float().masked_fill(pad, PAD_SCORE)
        return sum(soft_kl_sum(s[..., i], t[..., i], temperature) for i in (0, 1)) / 2
    if kind == "multiple_choice":  # (B, K)
        empty = ~batch["choice_mask"]
        student, teacher = student.masked_fill(empty, PAD_SCORE), teacher.masked_fill(empty, PAD_SCORE)
    labelled = batch["labels"] != -100  # (B,) or (B, T): the examples or tokens the hard loss counts
    return soft_kl_sum(student[labelled], teacher[labelled], temperature)


class TaskDistiller:
    """The fine-tuning loop's training loss for a student of `teacher` (FinetuneRun.distiller)."""

    def __init__(self, teacher: TaskModel, temperature: float = 1.0, alpha_hard: float = 0.0):
        self.teacher, self.temperature, self.alpha_hard = teacher, temperature, alpha_hard
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.use_bf16 = False

    @torch.no_grad()
    def start(self, model: TaskModel, device, use_bf16: bool) -> None:
        """The teacher beside the student; a student's CRF starts as the teacher's transitions."""
        if model.kind != self.teacher.kind:
            raise BertkitError(f"--teacher is a {self.teacher.kind} model; this task is {model.kind}")
        self.teacher.to(device)
        self.use_bf16 = use_bf16
        if model.crf is not None and self.teacher.crf is not None:
            model.crf.load_state_dict(self.teacher.crf.state_dict())

    def loss_sum(self, model: TaskModel, logits: torch.Tensor, batch: dict, label_smoothing: float = 0.0):
        with torch.no_grad(), torch.autocast(logits.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            self.teacher.eval()  # dropout off, whatever the loop asks of the student
            t_logits = self.teacher(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss = soft_loss_sum(model.kind, logits, t_logits, batch, self.temperature)
        if self.alpha_hard:
            loss = loss + self.alpha_hard * model.loss_sum(logits, batch, label_smoothing)
        return loss


# ----------------------------------------------------------------------------------------------- set-up
def load_task_teacher(folder: str | Path, task: TaskData) -> tuple[TaskModel, object]:
    """(teacher, tokenizer) of a fine-tuned folder, checked against the task: its kind and its labels."""
    from bertkit.finetune.model import load_task_model

    teacher, tok = load_task_model(folder)
    if teacher.kind != task.kind:
        raise BertkitError(
            f"--teacher {folder} is fine-tuned for {teacher.kind.replace('_', ' ')}; --task {task.name} is "
            f"{task.kind.replace('_', ' ')}: give a teacher fine-tuned on this task"
        )
    if task.kind in ("classification", "tagging") and teacher.labels != task.labels:
        raise BertkitError(
            f"--teacher {folder} predicts labels {', '.join(teacher.labels)}; --task {task.name} has "
            f"{', '.join(task.labels)}: give a teacher fine-tuned on this task's labels"
        )
    return teacher, tok


def check_same_vocabulary(student_folder: str | Path, student_tok, teacher_folder: str | Path, teacher_tok) -> None:
    """The soft targets and the shared batches assume one vocabulary: token for token, id for id."""
    s, t = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s != t:
        differ = sorted(set(s.items()) ^ set(t.items()), key=lambda x: x[1])[:1]
        where = f" (first difference at {differ[0][0]!r})" if differ else ""
        raise BertkitError(
            f"--student {student_folder}: its vocabulary is not the teacher's ({teacher_folder}): {len(s)} tokens "
            f"against {len(t)}{where}; distil a student made from this teacher (bertkit distill --teacher)"
        )


def student_encoder(teacher: TaskModel, method: str, folder: str | Path | None, layers: int | None):
    """(encoder, layer map g, where it came from) of the student: a folder's encoder, or DistilBERT's layers of
    the teacher. g maps each student layer (1-based) to the teacher layer it matches in the intermediate stage."""
    from bertkit.distill.students import distilbert_encoder, uniform_layer_map
    from bertkit.hf import load_pretrained

    tc = teacher.encoder.config
    if folder is None:
        if method == "tinybert":
            raise BertkitError(
                "--method tinybert with --task distils a general-distilled student: give --student DIR (made by "
                "`bertkit distill --method tinybert` from the teacher's pretrained model)"
            )
        encoder, chosen = distilbert_encoder(teacher.encoder, layers or max(1, tc.num_hidden_layers // 2))
        return encoder, [j + 1 for j in chosen]
    if layers is not None:
        raise BertkitError("--student-layers makes a student from the teacher; a --student folder has its own")
    encoder = load_pretrained(folder).encoder
    sc = encoder.config
    return encoder, uniform_layer_map(tc.num_hidden_layers, sc.num_hidden_layers)


def check_intermediate(teacher: TaskModel, student, folder) -> None:
    tc, sc = teacher.encoder.config, student.config
    if tc.num_attention_heads != sc.num_attention_heads:
        raise BertkitError(
            f"--student {folder}: {sc.num_attention_heads} attention heads, the teacher {tc.num_attention_heads}; "
            "the intermediate stage matches attention head by head (--intermediate-epochs 0 skips it)"
        )


def distill_task(
    task: TaskData,
    teacher_folder: str | Path,
    cfg,
    method: str = "distilbert",
    student_folder: str | Path | None = None,
    student_layers: int | None = None,
    intermediate_epochs: int | None = None,
    temperature: float = 1.0,
    alpha_hard: float = 0.0,
    say=print,
) -> dict:
    """Distil the fine-tuned `teacher_folder` into a student on `task`: OUT/intermediate (the student the
    prediction stage starts from, after the intermediate stage if any), then `finetune` into OUT/model. Every
    check runs before anything is written. Returns `finetune`'s summary."""
    from bertkit.finetune.loop import finetune
    from bertkit.hf import save_pretrained
    from bertkit.training import barrier, distributed
    from bertkit.vocab import tokenizer_from_folder

    teacher, tok = load_task_teacher(teacher_folder, task)
    if cfg.max_seq_length > teacher.encoder.config.max_length:
        raise BertkitError(
            f"--max-seq-length {cfg.max_seq_length} is more than the teacher's {teacher.encoder.config.max_length} "
            "positions"
        )
    if cfg.crf and teacher.crf is None:
        raise BertkitError(f"--crf: the teacher {teacher_folder} tags without a CRF; leave --crf out")
    if teacher.crf is not None and not cfg.crf:
        say("the teacher tags with a CRF: so does the student, starting from the teacher's transitions")
        cfg = replace(cfg, crf=True)
    encoder, layer_map = student_encoder(teacher, method, student_folder, student_layers)
    tc, sc = teacher.encoder.config, encoder.config
    n_t, n_s = (sum(p.numel() for p in m.parameters()) for m in (teacher.encoder, encoder))
    say(
        f"{method}: teacher {tc.num_hidden_layers} × {tc.hidden_size} ({n_t:,} parameters) -> student "
        f"{sc.num_hidden_layers} × {sc.hidden_size} ({n_s:,}, {n_s / n_t:.0%})"
    )
    if student_folder is not None:
        check_same_vocabulary(student_folder, tokenizer_from_folder(student_folder), teacher_folder, tok)
    epochs = INTERMEDIATE_EPOCHS[method] if intermediate_epochs is None else intermediate_epochs
    if epochs:
        check_intermediate(teacher, encoder, student_folder or "made from the teacher")
        if distributed()[1] > 1:
            raise BertkitError(
                "--intermediate-epochs: the intermediate stage runs in one process; run it without torchrun"
            )
    init = Path(cfg.out_dir) / "intermediate"
    if epochs:
        intermediate_stage(teacher, encoder, layer_map, tok, task, cfg, epochs, init, say)
    elif student_folder is None:  # the DistilBERT student as made: kept, and the folder the loop starts from
        rank, world = distributed()
        if rank == 0:
            save_pretrained(init, encoder, {}, tok)
        barrier(world)
    else:
        init = Path(student_folder)
    return finetune(task, init, cfg, distiller=TaskDistiller(teacher, temperature, alpha_hard))


# ----------------------------------------------------------------------------------------- intermediate
def intermediate_stage(
    teacher: TaskModel, student, layer_map: list[int], tokenizer, task: TaskData, cfg, epochs: int, out: Path, say
) -> Path:
    """TinyBERT's intermediate-layer distillation on the task's training inputs; the encoder saved to `out`."""
    from bertkit.distill.objectives import tinybert_sums
    from bertkit.finetune.features import collate, encode_split, feature_length, length_grouped_batches
    from bertkit.hf import save_pretrained
    from bertkit.training import choose_precision, default_device, linear_schedule

    device = default_device(None)
    use_bf16 = choose_precision(cfg.precision, device)[0]
    torch.manual_seed(cfg.seed)
    tc, sc = teacher.encoder.config, student.config
    project = nn.Linear(sc.hidden_size, tc.hidden_size)  # TinyBERT's fit_dense, a training device not kept
    nn.init.normal_(project.weight, std=sc.initializer_range)
    nn.init.zeros_(project.bias)
    teacher.to(device).eval()
    student.to(device).train()
    project.to(device)
    train = encode_split(teacher, tokenizer, task.train, cfg.max_seq_length, cfg.stride, cfg.max_query_length)
    lengths = [feature_length(f) for f in train.features]
    rng = random.Random(cfg.seed)
    total = math.ceil(len(lengths) / cfg.batch_size) * epochs
    warmup = max(1, int(cfg.warmup * total) if cfg.warmup < 1 else min(int(cfg.warmup), total))
    params = [*student.parameters(), *project.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, warmup, total))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for epoch in range(1, epochs + 1):
        sums, t0 = {"embedding": 0.0, "hidden": 0.0, "attention": 0.0, "steps": 0}, time.perf_counter()
        for idx in length_grouped_batches(lengths, cfg.batch_size, rng):
            batch = collate([train.features[i] for i in idx], tokenizer.pad_token_id)
            ids, mask, types = (batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids"))
            if ids.dim() == 3:  # multiple choice: every choice is a sequence of its own
                ids, mask, types = (x.reshape(-1, x.shape[-1]) for x in (ids, mask, types))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                with torch.no_grad():
                    t = teacher.encoder(ids, mask, types, output_hidden_states=True, output_scores=True)
                s = student(ids, mask, types, output_hidden_states=True, output_scores=True)
                real = mask.bool()  # (B, T)
                embedding, hidden, attention = tinybert_sums(s, t, real, project, layer_map)
            tokens, pairs = int(real.sum()), int((real.sum(1) ** 2).sum())
            terms = {"embedding": embedding / tokens, "hidden": hidden / tokens, "attention": attention / pairs}
            sum(terms.values()).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            for k, v in terms.items():
                sums[k] += float(v.detach())
            sums["steps"] += 1
        n = sums.pop("steps")
        row = {"epoch": epoch, **{k: v / n for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
        rows.append(row)
        say(f"intermediate epoch {epoch}: " + ", ".join(f"{k} {row[k]:.4f}" for k in terms))
    student.cpu()
    save_pretrained(out, student, {}, tokenizer)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out
