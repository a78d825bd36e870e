"""Students made from a teacher (seed 002, 004): DistilBERT's, initialised from the teacher's own layers, and
TinyBERT's, a smaller BERT of any depth and width trained from random weights; and the layer maps between them.

Choices:
- DistilBERT's student keeps `layers` of the teacher's N layers, spread from the first to the last:
  `round(i · (N − 1) / (layers − 1))`. For 6 of 12 that is 0, 2, 4, 7, 9, 11, the layers Hugging Face's
  `extract_distilbert.py` copies for DistilBERT-base; for 2 of 4, 0 and 3.
- DistilBERT has no token types and no pooler (its paper: "token-type embeddings and the pooler are removed").
  The teacher adds its token-type row 0 to every token of a one-segment input, and that row is folded into the
  student's position table (and likewise ERNIE's task-type row 0): the student's embeddings then equal the
  teacher's exactly on one-segment input, where dropping the row (as `extract_distilbert.py` does) starts the
  student off by a constant vector. A RoBERTa teacher's positions, counted from pad + 1, are copied from that
  row on. The MLM head is the teacher's.
- TinyBERT's uniform layer map: student layer m (1..M) learns from teacher layer g(m) = round(m · N / M), and the
  embeddings (layer 0) from the teacher's embeddings; 4 of 12 gives 3, 6, 9, 12 and 2 of 4 gives 2, 4 (the
  paper's g(m) = 3m for 4 of 12). `--layer-map` gives any increasing map instead.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from bertkit.errors import BertkitError
from bertkit.model import BertEncoder, MLMHead


def distilbert_layers(teacher_layers: int, layers: int) -> list[int]:
    """The teacher layers (0-based) a DistilBERT student of `layers` layers starts from: first to last, spread."""
    if not 1 <= layers <= teacher_layers:
        raise BertkitError(
            f"--student-layers {layers}: the teacher has {teacher_layers} layers; give 1 to {teacher_layers}"
        )
    if layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (layers - 1)) for i in range(layers)]


def uniform_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """TinyBERT's g: for student layers 1..M, the teacher layer (1-based; 0 is the embeddings) each learns from."""
    if not 1 <= student_layers <= teacher_layers:
        raise BertkitError(
            f"--student-layers {student_layers}: a student is no deeper than its teacher ({teacher_layers} layers)"
        )
    return [round(m * teacher_layers / student_layers) for m in range(1, student_layers + 1)]


def parse_layer_map(text: str, teacher_layers: int, student_layers: int) -> list[int]:
    """`--layer-map 3,6,9,12`: one teacher layer (1-based) per student layer, increasing."""
    try:
        layers = [int(x) for x in text.split(",")]
    except ValueError:
        raise BertkitError(f"--layer-map {text!r}: give teacher layers joined by commas, e.g. 3,6,9,12") from None
    if len(layers) != student_layers:
        raise BertkitError(f"--layer-map {text!r}: {len(layers)} layers given, the student has {student_layers}")
    if any(not 1 <= g <= teacher_layers for g in layers) or any(
        a >= b for a, b in zip(layers, layers[1:], strict=False)
    ):
        raise BertkitError(f"--layer-map {text!r}: increasing teacher layers from 1 to {teacher_layers}")
    return layers


def check_teacher(config, method: str) -> None:
    """A teacher the student can be made from and compared with, layer by layer."""
    fam = config.family
    if fam.causal:
        raise BertkitError(
            f"--teacher: a {fam.name} teacher reads left to right; DistilBERT and TinyBERT students are bidirectional "
            "BERT encoders matched to a bidirectional teacher: give a BERT, RoBERTa or ERNIE teacher"
        )
    if fam.shares_layers or config.embedding_width != config.hidden_size:
        raise BertkitError(
            f"--teacher: a {fam.name} teacher (shared layers or embeddings of another width than its layers) has no "
            f"layers a {method} student can copy or match one by one; give a BERT, RoBERTa or ERNIE teacher"
        )
    if config.norm_position != "post":
        raise BertkitError("--teacher: a pre-LayerNorm teacher; DistilBERT and TinyBERT students are post-LayerNorm")


@torch.no_grad()
def distilbert_student(
    teacher: BertEncoder, teacher_mlm: MLMHead, layers: int
) -> tuple[BertEncoder, MLMHead, list[int]]:
    """A DistilBERT of `layers` of the teacher's layers (`distilbert_layers`), its embeddings and MLM head."""
    student, chosen = distilbert_encoder(teacher, layers)
    mlm = MLMHead(student.config)
    mlm.load_state_dict(teacher_mlm.state_dict())
    return student, mlm, chosen


@torch.no_grad()
def distilbert_encoder(teacher: BertEncoder, layers: int) -> tuple[BertEncoder, list[int]]:
    """`distilbert_student` without a head: the encoder alone (a fine-tuned teacher has no MLM head to copy)."""
    tc = teacher.config
    check_teacher(tc, "DistilBERT")
    chosen = distilbert_layers(tc.num_hidden_layers, layers)
    config = replace(
        tc,
        model_type="distilbert",
        num_hidden_layers=layers,
        type_vocab_size=0,
        max_position_embeddings=tc.max_length,
        extra_embeddings={},
        classifier_dropout=None,
        id2label={},
        layer_norm_eps=1e-12,
    )
    student = BertEncoder(config, add_pooler=False)
    te, se = teacher.embeddings, student.embeddings
    se.word_embeddings.weight.copy_(te.word_embeddings.weight)
    constant = torch.zeros(tc.hidden_size)
    if te.token_type_embeddings is not None:
        constant += te.token_type_embeddings.weight[0]
    for table in (te.extra_embeddings or {}).values():
        constant += table.weight[0]
    offset = tc.position_offset
    se.position_embeddings.weight.copy_(te.position_embeddings.weight[offset : offset + tc.max_length] + constant)
    se.norm.load_state_dict(te.norm.state_dict())
    for i, j in enumerate(chosen):
        student.layers[i].load_state_dict(teacher.layers[j].state_dict())
    return student, chosen


def tinybert_student(teacher_config, layers: int, hidden: int, intermediate: int | None = None) -> BertEncoder:
    """A BERT of `layers` × `hidden` on the teacher's vocabulary, as many positions, random weights, and as many
    heads as the teacher (TinyBERT matches attention head by head)."""
    check_teacher(teacher_config, "TinyBERT")
    heads = teacher_config.num_attention_heads
    if hidden > teacher_config.hidden_size:
        raise BertkitError(f"--student-hidden {hidden}: wider than the teacher ({teacher_config.hidden_size})")
    if hidden % heads:
        raise BertkitError(
            f"--student-hidden {hidden}: the student has the teacher's {heads} attention heads (TinyBERT matches "
            f"attention head by head), so its width must be a multiple of {heads}"
        )
    uniform_layer_map(teacher_config.num_hidden_layers, layers)  # the depth check
    config = replace(
        teacher_config,
        model_type="bert",
        max_position_embeddings=teacher_config.max_length,
        type_vocab_size=max(1, teacher_config.type_vocab_size),
        num_hidden_layers=layers,
        hidden_size=hidden,
        intermediate_size=intermediate or 4 * hidden,
        embedding_size=None,
        extra_embeddings={},
        id2label={},
    )
    return BertEncoder(config, add_pooler=True)
