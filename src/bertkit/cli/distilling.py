"""`bertkit distill`: general distillation on a corpus, or task-specific distillation of a fine-tuned teacher
(`--task`, read as `finetune` reads it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.finetuning import TASK_HELP, TASKS
from bertkit.cli.table import COUNT, NON_NEGATIVE, SEED, Range, command
from bertkit.errors import BertkitError


@command("distill")
def distill_cmd(
    *,
    teacher: Annotated[str, "the teacher model folder (its vocabulary is the student's); with --task a fine-tuned one"],
    out: Annotated[
        str,
        "run folder: model/ (the student), metrics.jsonl, curves.png; checkpoints/ (general), intermediate/ and "
        "summary.json (--task)",
    ],
    method: Annotated[
        Literal["distilbert", "tinybert"],
        "distilbert: the teacher's layers spread (half by default), soft targets + MLM + cosine; tinybert: a "
        "smaller BERT matching the teacher's embeddings, hidden states and attention scores",
    ] = "distilbert",
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    task: Annotated[TASKS | None, "task-specific distillation on this task (as finetune): " + TASK_HELP] = None,
    train: Annotated[str | None, "--task: training file (the tasks that read your files)"] = None,
    dev: Annotated[str | None, "--task: dev file: scored every epoch, picks the best epoch"] = None,
    test: Annotated[str | None, "--task: test file: scored once, with the best epoch's student"] = None,
    text_column: Annotated[str, "--task: column (or JSON field) holding the text"] = "text",
    text_pair_column: Annotated[str | None, "--task: column holding the second text of a pair"] = None,
    label_column: Annotated[str, "--task: column holding the label (multiple-choice: its index)"] = "label",
    tokens_column: Annotated[str, "--task ner JSONL: field holding the list of tokens"] = "tokens",
    tags_column: Annotated[str, "--task ner JSONL: field holding the list of BIO tags"] = "tags",
    context_column: Annotated[str, "--task multiple-choice JSONL: field holding the context"] = "context",
    question_column: Annotated[str, "--task multiple-choice JSONL: field holding the question"] = "question",
    choices_column: Annotated[str, "--task multiple-choice JSONL: field holding the choices"] = "choices",
    student: Annotated[
        str | None,
        "--task: the student model folder (e.g. a general-distilled one; the teacher's vocabulary); required by "
        "tinybert; distilbert's default: the fine-tuned teacher's layers",
    ] = None,
    intermediate_epochs: Annotated[
        int | None,
        "--task: epochs matching embeddings, hidden states and attention first (default 3 for tinybert, 0 for "
        "distilbert)",
        NON_NEGATIVE,
    ] = None,
    alpha_hard: Annotated[float, "--task: weight of the usual hard loss beside the soft targets", NON_NEGATIVE] = 0.0,
    epochs: Annotated[int, "--task: passes over the training data (prediction-layer stage)", Range(1, 100_000)] = 3,
    stride: Annotated[int | None, "--task: NER and QA windows start this many pieces apart", COUNT] = None,
    crf: Annotated[bool, "--task tagging: a CRF over the tags, starting as the teacher's"] = False,
    patience: Annotated[int, "--task: stop after this many epochs without a better dev score", NON_NEGATIVE] = 0,
    max_train_examples: Annotated[int | None, "--task: use only the first N training examples", COUNT] = None,
    max_eval_examples: Annotated[int | None, "--task: use only the first N dev and N test examples", COUNT] = None,
    overwrite: Annotated[bool, "--task: replace the run already in --out (else that is an error)"] = False,
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
        float | None,
        "softmax temperature of the soft targets, both sides (default: 2 for general distilbert, 1 with --task)",
        Range(0, None, low_open=True),
    ] = None,
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
    lr: Annotated[
        float | None,
        "peak learning rate (default 5e-4; with --task finetune's middle rate for the student's width)",
        Range(0, 1, low_open=True),
    ] = None,
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
    """Distil a teacher into a smaller student on a corpus (general distillation), or a fine-tuned teacher on its
    task (--task): DistilBERT or TinyBERT."""
    given = dict(locals())
    if task is not None:
        return _distill_task(given)
    for name, default in TASK_ONLY.items():
        if given[name] != default:
            raise BertkitError(f"--{name.replace('_', '-')} is for task-specific distillation: give --task too")
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
    temperature, lr = temperature or 2.0, lr or 5e-4
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


TASK_ONLY = {  # flags of task-specific distillation, and their defaults: given without --task, they are a mistake
    "train": None, "dev": None, "test": None, "text_column": "text", "text_pair_column": None, "label_column": "label",
    "tokens_column": "tokens", "tags_column": "tags", "context_column": "context", "question_column": "question",
    "choices_column": "choices", "student": None, "intermediate_epochs": None, "alpha_hard": 0.0, "epochs": 3,
    "stride": None, "crf": False, "patience": 0, "max_train_examples": None, "max_eval_examples": None,
    "overwrite": False,
}  # fmt: skip
GENERAL_ONLY = {  # flags of general distillation, and their defaults: given with --task, they are a mistake
    "corpus": ["peoples-daily"], "student_hidden": None, "layer_map": None, "alpha_ce": 5.0, "alpha_mlm": 2.0,
    "alpha_cos": 1.0, "chunk_tokens": 1_000_000, "steps": 1000, "eval_every": 200, "save_every": 500,
    "keep_checkpoints": 2, "resume": False, "cache_dir": None,
}  # fmt: skip


def _distill_task(a: dict) -> None:
    """`distill --task`: task-specific distillation (distill/task.py), the task read as `finetune` reads it."""
    from bertkit.cli.finetuning import _check_length_fits, _refuse_flags_the_task_ignores, default_lrs
    from bertkit.config import BertConfig
    from bertkit.distill.task import distill_task
    from bertkit.finetune.loop import FinetuneConfig, check_run_dir, replacing_run
    from bertkit.finetune.tasks import load_task_cut
    from bertkit.training import distributed

    if distributed()[0] != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - under torchrun only rank 0 talks

    for name, default in GENERAL_ONLY.items():
        if a[name] != default:
            raise BertkitError(
                f"--{name.replace('_', '-')} is for general distillation on a corpus; leave it out with --task"
            )
    check_run_dir(a["out"], a["overwrite"])
    if not (Path(a["teacher"]) / "config.json").is_file():
        raise BertkitError(f"--teacher {a['teacher']}: no config.json there; give a fine-tuned model folder")
    if a["student"] is not None and not (Path(a["student"]) / "config.json").is_file():
        raise BertkitError(f"--student {a['student']}: no config.json there; give a model folder")
    columns = tuple(
        a[f"{c}_column"] for c in ("text", "text_pair", "label", "tokens", "tags", "question", "context", "choices")
    )
    files = (a["train"], a["dev"], a["test"])
    data = load_task_cut(a["task"], files, columns, a["max_train_examples"], a["max_eval_examples"])
    _refuse_flags_the_task_ignores(data.kind, crf=a["crf"], stride=a["stride"])
    max_seq_length = a["max_seq_length"] or min(
        128, BertConfig.from_json(Path(a["teacher"]) / "config.json").max_length
    )
    _check_length_fits(a["teacher"], data, max_seq_length)
    cfg = FinetuneConfig(
        out_dir=a["out"], epochs=a["epochs"], batch_size=a["batch_size"], grad_accum=a["grad_accum"],
        lr=a["lr"] or default_lrs(a["student"] or a["teacher"])[1], warmup=a["warmup"], max_seq_length=max_seq_length,
        stride=a["stride"], crf=a["crf"], patience=a["patience"], precision=a["precision"], seed=a["seed"],
        log_every=a["log_every"], progress=sys.stderr.isatty(),
    )  # fmt: skip
    print(f"task {data.name}: {len(data.train)} train, {len(data.dev)} dev, {len(data.test)} test examples")
    with replacing_run(a["out"]):  # every flag checked; an old run goes only once the new one is complete
        run = distill_task(
            data, a["teacher"], cfg, a["method"], a["student"], a["student_layers"], a["intermediate_epochs"],
            a["temperature"] or 1.0, a["alpha_hard"],
        )  # fmt: skip
    metric = run["metric"]
    scores = [f"{split} {metric} {run[split][metric]:.4f}" for split in ("dev", "test") if metric in run[split]]
    print(f"student: best epoch {run['best_epoch']}" + "".join(f", {x}" for x in scores) + f"; model {run['model']}")
    print(f"curves: {a['out']}/curves.png  log: {a['out']}/metrics.jsonl")
