"""Training files of `bertkit embed-train`, one kind per loss, read whole and checked before anything is written:

- pairs (`--loss in-batch`): JSONL, one object per line with `query`, `positive` and optionally `negatives`, a
  list of strings (hard negatives); field names are flags. CSV/TSV with query and positive columns too.
- scored pairs (`--loss cosent`): CSV, TSV or JSONL with two texts and a score (STS-B's `sentence1`,
  `sentence2`, `score` by default; LCQMC's 0/1 labels are scores too): only the order of the scores counts.
- plain text (`--loss simcse`): one text per line (unsupervised SimCSE: each text is its own positive).

Every mistake names the file, the line and the field: a line without `positive`, an empty query, a negatives
field that is not a list of non-empty strings, a score that is not a number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.errors import DataError
from bertkit.finetune.readers import _field, parse_float, read_rows


@dataclass
class Pair:
    """A query, its positive document and its hard negatives (any number, possibly none)."""

    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    source: str = ""  # file:line, for messages


@dataclass
class ScoredPair:
    a: str
    b: str
    score: float
    source: str = ""


def read_pairs(
    path: str | Path, query: str = "query", positive: str = "positive", negatives: str = "negatives"
) -> list[Pair]:
    """(query, positive, negatives) rows of a JSONL, CSV or TSV file; `negatives` is optional per row (JSONL only:
    a list of strings)."""
    path = Path(path)
    found = []
    for line, row in read_rows(path):
        q = _field(path, line, row, query)
        p = _field(path, line, row, positive)
        negs = row.get(negatives, [])
        if negs is None:
            negs = []
        if not isinstance(negs, list) or not all(isinstance(x, str) and x.strip() for x in negs):
            raise DataError(
                f"{path}: line {line}: field '{negatives}' should be a list of non-empty strings, got "
                f"{json.dumps(negs, ensure_ascii=False)[:80]}"
            )
        found.append(Pair(q, p, list(negs), f"{path}:{line}"))
    return found


def read_scored_pairs(
    path: str | Path, a: str = "sentence1", b: str = "sentence2", score: str = "score"
) -> list[ScoredPair]:
    path = Path(path)
    found = []
    for line, row in read_rows(path):
        value = parse_float(_field(path, line, row, score, kind="number"))
        found.append(ScoredPair(_field(path, line, row, a), _field(path, line, row, b), value, f"{path}:{line}"))
    if len({p.score for p in found}) < 2:
        raise DataError(
            f"{path}: every pair has the same {score!r} ({found[0].score:g}); CoSENT learns from their order"
        )
    return found


def read_texts(path: str | Path) -> list[str]:
    """One text per line (empty lines skipped) for unsupervised SimCSE."""
    from bertkit.use.vector_io import read_lines

    texts = [text for _, text in read_lines(str(path), skip_empty=True)]
    if len(texts) < 2:
        raise DataError(
            f"{path}: {len(texts)} text(s); SimCSE needs at least 2 (the others in a batch are the negatives)"
        )
    return texts


def no_duplicate_batches(keys: list[tuple[str, ...]], order: list[int], batch_size: int) -> list[list[int]]:
    """`order` cut into batches in which no text appears twice (sentence-transformers' NoDuplicatesBatchSampler):
    a query whose positive is also another row's text would be trained to push its own positive away. An example
    whose texts are already in the open batch waits for the next one; a last, short batch is kept."""
    batches: list[list[int]] = []
    waiting = list(order)
    while waiting:
        batch, seen, later = [], set(), []
        for i in waiting:
            if len(batch) < batch_size and not seen.intersection(keys[i]):
                batch.append(i)
                seen.update(keys[i])
            else:
                later.append(i)
        batches.append(batch)
        waiting = later
    return batches
