"""Fine-tuning examples and the readers of a user's labelled files.

Five kinds of task, each a small head on the encoder (loop.py trains them):
- `classification`: one label per text or text pair, from `[CLS]` (`TextExample`);
- `regression`: one real number per text or pair, from `[CLS]` (`TextExample` whose labels parse as floats);
- `tagging`: one tag per word, BIO for named entities or BMES for word segmentation (`TagExample`);
- `qa`: extractive question answering, an answer span in a context (`QAExample`, SQuAD / CMRC 2018 JSON);
- `multiple_choice`: one of several answers to a context and question (`ChoiceExample`, JSONL).

Inputs (`read_text_examples`, `read_tag_examples`, `read_choice_examples`): CSV, TSV and JSONL with named
columns, and CoNLL two-column files for tagging; SQuAD-format JSON for QA (`read_qa_examples`). Every mistake
is a `DataError` naming the file, the line (for JSON: the question id) and the field: an empty file, a missing
column, an empty text, a tag sequence of the wrong length, a regression target that is not a number, a choice
index out of range, an answer that is not at its `answer_start`.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bertkit.errors import DataError, require_file

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


# ------------------------------------------------------------------------------------------------ readers
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) for every record of a CSV, TSV or JSONL file; the header is line 1 of a table.

    CSV uses standard quoting (a field may span lines; its row is numbered by its first line). TSV is read
    without quoting, as GLUE writes it: a quote character is just a character. Blank JSONL lines are skipped.
    """
    path = Path(path)
    require_file(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES and suffix not in JSONL_SUFFIXES:
        raise DataError(f"{path}: unknown format '{suffix}'; use .csv, .tsv or .jsonl")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: Excel's CSVs start with a byte-order mark
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
    rows = _csv_rows(path, reader)
    header = next(rows, None)
    if header is None or not any(h.strip() for h in header):
        raise DataError(f"{path}: empty file (expected a header line naming the columns)")
    header = [h.strip() for h in header]
    twice = next((h for i, h in enumerate(header) if h and h in header[:i]), None)
    if twice is not None:  # a row would keep only the last of the two columns, silently
        raise DataError(f"{path}: line 1: the header names column '{twice}' twice; give each column its own name")
    n_rows, end = 0, reader.line_num
    for fields in rows:
        start, end = end + 1, reader.line_num
        if not fields or not any(x.strip() for x in fields):
            continue
        if len(fields) != len(header):
            unclosed = " (a quote left open?)" if any("\n" in x for x in fields) else ""
            raise DataError(
                f"{path}: line {start}: {len(fields)} fields but the header has {len(header)} ({', '.join(header)})"
                + unclosed
            )
        if [x.strip() for x in fields] == header:  # its "label" would become a class
            raise DataError(f"{path}: line {start} repeats the header line (files joined together?); remove it")
        n_rows += 1
        yield start, dict(zip(header, fields, strict=True))
    if n_rows == 0:
        raise DataError(f"{path}: empty file (a header but no rows)")


def _csv_rows(path: Path, reader) -> Iterator[list[str]]:
    """The csv reader's rows, its own refusals (a field past the size limit: an unclosed quote) named by line, and
    NUL characters refused: valid UTF-8, but no text file holds them (a binary or UTF-16 file does)."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num}: {e} (a quote left open?)") from None
        if any("\x00" in x for x in row):
            raise DataError(
                f"{path}: line {reader.line_num} holds NUL bytes (a binary or UTF-16 file?); give UTF-8 text"
            )
        yield row


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
    require_file(path)
    examples: list[TagExample] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                if "\x00" in line:
                    raise DataError(f"{path}: line {n} holds NUL bytes (a binary or UTF-16 file?); give UTF-8 text")
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
    require_file(path)
    if path.suffix.lower() != ".json":
        raise DataError(f"{path}: QA data is a SQuAD / CMRC 2018 .json file (data / paragraphs / qas)")
    try:
        root = json.loads(path.read_text(encoding="utf-8-sig"))
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
