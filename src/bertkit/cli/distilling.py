"""`bertkit distill`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, NON_NEGATIVE, SEED, Range, command
from bertkit.errors import BertkitError


@command("distill")
def distill_cmd(
    *,
    teacher: Annotated[str, "the teacher model folder (its vocabulary is the student's)"],
    out: Annotated[str, "run folder: model/ (the student), checkpoints/, metrics.jsonl, curves.png"],
    method: Annotated[
        Literal["distilbert", "tinybert"],
        "distilbert: the teacher's layers spread (half by default), soft targets + MLM + cosine; tinybert: a "
        "smaller BERT matching the teacher's embeddings, hidden states and attention scores",
    ] = "distilbert",
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    student_layers: Annotated[int | None, "the student's layers (default: half the teacher's)", Range(1, 256)] = None,
    student_hidden: Annotated[
        int | None,
        "tinybert: the student's width, a multiple of the teacher's head count (default: the teacher's)",
        Range(1, 65_536),
    ] = None,  # fmt: skip
    layer_map: Annotated[
        str | None,
        "tinybert: the teacher layer (1-based) each student layer learns from, e.g. 3,6,9,12 (default: uniform, m·N/M)",
    ] = None,  # fmt: skip
    alpha_ce: Annotated[float, "distilbert: weight of the soft-target loss", NON_NEGATIVE] = 5.0,
    alpha_mlm: Annotated[float, "distilbert: weight of the student's own MLM loss", NON_NEGATIVE] = 2.0,
    alpha_cos: Annotated[float, "distilbert: weight of the hidden-state cosine loss", NON_NEGATIVE] = 1.0,
    temperature: Annotated[
        float, "distilbert: softmax temperature of the soft targets (both sides)", Range(0, None, low_open=True)
    ] = 2.0,
    max_seq_length: Annotated[
        int | None,
        "tokens per instance, [CLS] and [SEP] included (default 128, or the teacher's positions if fewer)",
        Range(8, 1 << 20),
    ] = None,  # fmt: skip
    chunk_tokens: Annotated[
        int, "corpus tokens built and masked at a time; 0: the whole epoch", NON_NEGATIVE
    ] = 1_000_000,
    steps: Annotated[int, "optimizer steps", Range(1, 10**9)] = 1000,
    batch_size: Annotated[int, "sequences per micro-batch", Range(1, 65_536)] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step", Range(1, 65_536)] = 1,
    lr: Annotated[float, "peak learning rate", Range(0, 1, low_open=True)] = 5e-4,
    warmup: Annotated[float, "warm-up: a fraction of steps (<1) or a number of steps", NON_NEGATIVE] = 0.06,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    eval_every: Annotated[int, "evaluate on held-out documents every N steps", COUNT] = 200,
    log_every: Annotated[int, "write a metrics.jsonl row every N steps", COUNT] = 10,
    save_every: Annotated[int, "write a resumable checkpoint every N steps", COUNT] = 500,
    keep_checkpoints: Annotated[int, "keep the newest N checkpoints", COUNT] = 2,
    seed: Annotated[int, "random seed (data, masks, init)", SEED] = 0,
    resume: Annotated[bool, "continue from OUT's last checkpoint if there is one"] = False,
    cache_dir: Annotated[
        str | None, "where token shards are cached (default $BERTKIT_CACHE or ~/.cache/bertkit)"
    ] = None,
) -> None:
    """Distil a teacher into a smaller student on a corpus (general distillation): DistilBERT or TinyBERT."""
    import torch

    from bertkit.distill.setup import build_distillation, load_teacher
    from bertkit.pretrain.corpus import BUILTIN_CORPORA
    from bertkit.pretrain.loop import TrainConfig, pretrain
    from bertkit.pretrain.runs import check_out_dir, check_resume
    from bertkit.training import barrier, distributed

    check_out_dir(out, resume)
    if not (Path(teacher) / "config.json").is_file():
        raise BertkitError(f"--teacher {teacher}: no config.json there; give a model folder")
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise BertkitError(f"--cache-dir {cache_dir} is a file; give a folder for the token shards")
    ckpt = load_teacher(teacher, method)  # every check on the teacher before the corpus is read
    max_seq_length = max_seq_length or min(128, ckpt.config.max_length)
    settings = {
        "teacher": str(Path(teacher).resolve()),
        "method": method,
        "corpus": [c if c in BUILTIN_CORPORA else str(Path(c).resolve()) for c in corpus],
        **dict(student_layers=student_layers, student_hidden=student_hidden, layer_map=layer_map),
        **dict(alpha_ce=alpha_ce, alpha_mlm=alpha_mlm, alpha_cos=alpha_cos, temperature=temperature),
        **dict(max_seq_length=max_seq_length, chunk_tokens=chunk_tokens, batch_size=batch_size),
        **dict(grad_accum=grad_accum, lr=lr, warmup=warmup, seed=seed),
    }
    if resume:
        check_resume(out, steps, settings)
    rank, world = distributed()
    torch.manual_seed(seed)
    cfg = TrainConfig(
        out_dir=out, steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, warmup=warmup,
        precision=precision, seed=seed, eval_every=eval_every, log_every=log_every, save_every=save_every,
        keep_checkpoints=keep_checkpoints, settings=settings,
    )  # fmt: skip
    if rank != 0:
        barrier(world)  # rank 0 builds the token shards first
    model, tok, train_data, eval_data = build_distillation(
        corpus, ckpt, method, student_layers, student_hidden, layer_map, (alpha_ce, alpha_mlm, alpha_cos),
        temperature, max_seq_length, seed=seed, cache_dir=cache_dir, progress=sys.stderr.isatty(),
        chunk_tokens=chunk_tokens,
    )  # fmt: skip
    if rank == 0:
        barrier(world)
    say = print if rank == 0 else (lambda *a, **k: None)
    t, s = model.teacher["encoder"].config, model.encoder.config
    n_t = sum(p.numel() for p in model.teacher.parameters())
    n_s = sum(p.numel() for p in model.encoder.parameters())
    say(
        f"{method}: teacher {t.model_type} {t.num_hidden_layers} × {t.hidden_size} ({n_t:,} parameters) -> student "
        f"{s.model_type} {s.num_hidden_layers} × {s.hidden_size} ({n_s:,}, {n_s / n_t:.0%}); "
        f"{len(train_data.doc_ids)} training documents"
    )
    summary = pretrain(model, tok, train_data, eval_data, cfg, resume=resume)
    ev = summary["eval"]
    if "cloze_accuracy" in ev:
        say(f"held-out student accuracy at [MASK] {ev['cloze_accuracy']:.3f} (unigram {ev['unigram_accuracy']:.3f})")
    say(f"student: {summary['model']}  curves: {out}/curves.png  log: {out}/metrics.jsonl")
