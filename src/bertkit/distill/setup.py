"""Everything a general distillation needs from a teacher folder and a corpus: the teacher (frozen), the student
made from it (students.py), the objective (objectives.py) and the training and held-out data, built with the
teacher's tokenizer by the pretraining pipeline (shards, streaming, seeded epochs), so the pretraining loop trains
it with the same logs, plots, checkpoints, resume and torchrun.

Choices:
- The data is single segments of whole sentences (RoBERTa's FULL-SENTENCES instances), as DistilBERT distils
  on text without sentence pairs (and its student has no token types); masked dynamically, 15% with 80/10/10,
  for DistilBERT's MLM and soft targets. TinyBERT's general distillation matches the teacher's states on clean
  text (no masking): the student learns how the teacher reads the text it will be fine-tuned on.
- The student keeps the teacher's vocabulary (the soft targets are over the teacher's vocabulary).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from bertkit.errors import BertkitError

METHODS = ("distilbert", "tinybert")


def load_teacher(folder: str, method: str):
    """The teacher's checkpoint, with the MLM head DistilBERT's soft targets need."""
    from bertkit.distill.students import check_teacher
    from bertkit.hf import load_pretrained

    ckpt = load_pretrained(folder)
    if ckpt.tokenizer is None:
        raise BertkitError(f"--teacher {folder}: the model folder has no vocab.txt or tokenizer.json")
    check_teacher(ckpt.config, method)
    if method == "distilbert" and "mlm" not in ckpt.heads:
        raise BertkitError(
            f"--teacher {folder}: --method distilbert distils the teacher's masked-LM predictions, and this folder "
            "has no MLM head (a ...ForMaskedLM or ...ForPreTraining folder has one); give such a teacher, or "
            "--method tinybert"
        )
    return ckpt


def build_distillation(
    corpus: list[str],
    teacher,
    method: str = "distilbert",
    student_layers: int | None = None,
    student_hidden: int | None = None,
    layer_map: str | None = None,
    weights: tuple[float, float, float] = (5.0, 2.0, 1.0),
    temperature: float = 2.0,
    max_seq_length: int = 128,
    eval_fraction: float = 0.02,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
    chunk_tokens: int = 1_000_000,
):
    """(objective, tokenizer, train data, held-out data) of a general distillation of `teacher` on `corpus`."""
    from bertkit.distill.objectives import DistilBertDistillation, TinyBertDistillation
    from bertkit.distill.students import distilbert_student, parse_layer_map, tinybert_student, uniform_layer_map
    from bertkit.pretrain.corpus import resolve_corpus
    from bertkit.pretrain.dataset import PretrainingData
    from bertkit.pretrain.setup import Recipe, _data

    if method not in METHODS:
        raise BertkitError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    ckpt = load_teacher(teacher, method) if isinstance(teacher, str | Path) else teacher  # a path or its checkpoint
    tc = ckpt.config
    if max_seq_length > tc.max_length:
        raise BertkitError(f"--max-seq-length {max_seq_length} is more than the teacher's {tc.max_length} positions")
    layers = student_layers or max(1, tc.num_hidden_layers // 2)
    if method == "distilbert":
        if student_hidden is not None or layer_map is not None:
            raise BertkitError(
                "--student-hidden and --layer-map are TinyBERT's; a DistilBERT student has the teacher's width and "
                "starts from its layers"
            )
        student, mlm, _ = distilbert_student(ckpt.encoder, ckpt.heads["mlm"], layers)
        model = DistilBertDistillation(ckpt.encoder, ckpt.heads["mlm"], student, mlm, *weights, temperature)
    else:
        student = tinybert_student(tc, layers, student_hidden or tc.hidden_size)
        g = (
            parse_layer_map(layer_map, tc.num_hidden_layers, layers)
            if layer_map
            else uniform_layer_map(tc.num_hidden_layers, layers)
        )
        model = TinyBertDistillation(ckpt.encoder, student, g)
    row = Recipe(method, "bert-mini-chinese", "full", "token", dynamic=True, beta2=0.999, source="")
    cache = Path(cache_dir or os.environ.get("BERTKIT_CACHE", Path.home() / ".cache" / "bertkit"))
    common = _data(resolve_corpus(corpus), ckpt.tokenizer, row, cache, max_seq_length, eval_fraction, seed, progress)
    if method == "tinybert":
        common["unit"] = "none"  # clean text: the student matches the teacher's states, nothing is predicted
    train_ids, eval_ids = common.pop("split")
    train = PretrainingData(doc_ids=train_ids, dynamic=True, chunk_tokens=chunk_tokens, **common)
    held_out = replace(train, doc_ids=eval_ids, chunk_tokens=1_000_000) if len(eval_ids) else None
    return model, ckpt.tokenizer, train, held_out
